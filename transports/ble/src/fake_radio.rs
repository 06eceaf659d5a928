//! An in-process fake radio between two channels, for property tests: it
//! carries packets of a packet size that changes as it likes (an MTU
//! renegotiation), delivers them in any order, and sometimes twice.

use proptest::prelude::*;

use crate::channel::Channel;
use crate::error::Error;

/// What the test does next.
#[derive(Debug, Clone)]
enum Op {
    /// `side` writes this many bytes of its stream.
    Write { side: usize, len: usize },
    /// `side` sends its next packet on a link of this packet size.
    Transmit { side: usize, max_packet: usize },
    /// The radio delivers one of the packets in flight towards `side`
    /// (picked by `pick`), and keeps a copy to deliver again if `twice`.
    Deliver { side: usize, pick: usize, twice: bool },
    /// `side` reads up to this many bytes.
    Read { side: usize, len: usize },
    /// `side` closes.
    Close { side: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let side = 0usize..2;
    prop_oneof![
        (side.clone(), 1usize..3000).prop_map(|(side, len)| Op::Write { side, len }),
        (side.clone(), 0usize..600).prop_map(|(side, max_packet)| Op::Transmit { side, max_packet }),
        (side.clone(), any::<usize>(), prop::bool::weighted(0.1)).prop_map(|(side, pick, twice)| Op::Deliver {
            side,
            pick,
            twice
        }),
        (side.clone(), 1usize..4000).prop_map(|(side, len)| Op::Read { side, len }),
        side.prop_map(|side| Op::Close { side }),
    ]
}

/// Byte `i` of side `side`'s stream.
fn byte(side: usize, i: usize) -> u8 {
    ((i * 31 + side * 101 + 7) % 251) as u8
}

struct Link {
    sides: [Channel; 2],
    /// Packets in flight towards each side.
    air: [Vec<Vec<u8>>; 2],
    written: [usize; 2],
    read: [Vec<u8>; 2],
    eof: [bool; 2],
}

impl Link {
    fn new() -> Self {
        Self {
            sides: [Channel::new(4096), Channel::new(4096)],
            air: [Vec::new(), Vec::new()],
            written: [0, 0],
            read: [Vec::new(), Vec::new()],
            eof: [false, false],
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Write { side, len } => {
                let data: Vec<u8> = (self.written[side]..self.written[side] + len).map(|i| byte(side, i)).collect();
                if let Ok(n) = self.sides[side].write(&data) {
                    self.written[side] += n;
                }
            }
            Op::Transmit { side, max_packet } => {
                if let Some(packet) = self.sides[side].poll_transmit(max_packet) {
                    assert!(packet.len() <= max_packet.clamp(crate::packet::MIN_PACKET, crate::packet::MAX_PACKET));
                    self.air[1 - side].push(packet);
                }
            }
            Op::Deliver { side, pick, twice } => {
                if self.air[side].is_empty() {
                    return;
                }
                let index = pick % self.air[side].len();
                let packet = if twice { self.air[side][index].clone() } else { self.air[side].remove(index) };
                self.sides[side].receive(&packet).expect("a packet of an honest peer is taken");
            }
            Op::Read { side, len } => {
                let mut buf = vec![0; len];
                match self.sides[side].read(&mut buf) {
                    Ok(0) => self.eof[side] = true,
                    Ok(n) => self.read[side].extend_from_slice(&buf[..n]),
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
            Op::Close { side } => self.sides[side].close(),
        }
    }

    /// What each side read is the start of what the other wrote.
    fn check_prefix(&self) {
        for side in 0..2 {
            let from = 1 - side;
            let expected: Vec<u8> = (0..self.read[side].len()).map(|i| byte(from, i)).collect();
            assert_eq!(self.read[side], expected, "side {side} read something else");
            assert!(self.read[side].len() <= self.written[from]);
        }
    }

    /// Runs the link in order until nothing moves; bounded.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for side in 0..2 {
                if let Some(packet) = self.sides[side].poll_transmit(244) {
                    self.air[1 - side].push(packet);
                    moved = true;
                }
                if !self.air[side].is_empty() {
                    let packet = self.air[side].remove(0);
                    self.sides[side].receive(&packet).unwrap();
                    moved = true;
                }
                let mut buf = [0u8; 1024];
                match self.sides[side].read(&mut buf) {
                    Ok(0) => self.eof[side] = true,
                    Ok(n) => {
                        self.read[side].extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(_) => {}
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the link never settled");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the radio does (packet sizes changing, reordering,
    /// duplicates), each side reads exactly the other's stream, in order,
    /// and the end once the other closed.
    #[test]
    fn streams_arrive_whole_and_in_order(ops in proptest::collection::vec(op(), 0..400)) {
        let mut link = Link::new();
        for op in &ops {
            link.apply(op);
            link.check_prefix();
        }
        link.drain();
        link.check_prefix();
        for side in 0..2 {
            prop_assert_eq!(link.read[side].len(), link.written[1 - side]);
            let closed = ops.iter().any(|o| matches!(o, Op::Close { side: s } if *s == 1 - side));
            prop_assert_eq!(link.eof[side], closed);
        }
    }
}

#[test]
fn a_sender_stops_at_the_credit_and_goes_on_when_the_reader_reads() {
    let mut a = Channel::new(1 << 20);
    let mut b = Channel::new(16);
    a.write(&vec![1u8; 100_000]).unwrap();
    let mut sent = 0;
    while let Some(p) = a.poll_transmit(100) {
        b.receive(&p).unwrap();
        sent += 1;
    }
    assert_eq!(sent, usize::from(crate::channel::WINDOW), "one window, then nothing until credit");
    let mut buf = vec![0u8; 97 * 3];
    assert_eq!(b.read(&mut buf).unwrap(), 97 * 3);
    let credit = b.poll_transmit(100).unwrap();
    a.receive(&credit).unwrap();
    let mut more = 0;
    while a.poll_transmit(100).is_some() {
        more += 1;
    }
    assert_eq!(more, 3, "three chunks read, three more may go");
}

#[test]
fn a_misbehaving_peer_ends_the_link() {
    use crate::packet::Packet;
    let mut b = Channel::new(16);
    let beyond = Packet::Data { seq: crate::channel::WINDOW, payload: b"x" }.encode();
    assert!(matches!(b.receive(&beyond), Err(Error::Protocol(_))));
    let mut a = Channel::new(16);
    let generous = Packet::Credit { limit: 1000 }.encode();
    assert!(matches!(a.receive(&generous), Err(Error::Protocol(_))));
    let mut c = Channel::new(16);
    c.receive(&Packet::Close { end: 1 }.encode()).unwrap();
    assert!(c.receive(&Packet::Data { seq: 1, payload: b"late" }.encode()).is_err(), "past the end");
    assert!(c.receive(&Packet::Close { end: 2 }.encode()).is_err(), "a second end");
    assert!(matches!(c.read(&mut [0; 4]), Err(Error::WouldBlock)), "chunk 0 is still owed");
    c.receive(&Packet::Data { seq: 0, payload: b"last" }.encode()).unwrap();
    let mut buf = [0; 8];
    assert_eq!(c.read(&mut buf).unwrap(), 4);
    assert_eq!(c.read(&mut buf).unwrap(), 0, "then the end");
}
