//! One side of a veil link over GATT, as a state machine without I/O: bytes
//! written go out as data packets cut to the link's current packet size,
//! within the credit the peer granted; packets received (in any order,
//! duplicated or not) come back out as the same byte stream, in order.
//!
//! Flow control is by credit: a side accepts data with sequence numbers
//! from the first chunk its reader has not finished to [`WINDOW`] past it,
//! and says how far that reaches (a credit packet) as its reader catches
//! up. So each direction holds at most [`WINDOW`] chunks in the receiver
//! and the sender's buffer (`send_capacity`) — every buffer is bounded.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::packet::{HEADER_LEN, MAX_PACKET, MIN_PACKET, Packet};

/// Chunks a receiver holds per direction: what a sender may have in flight
/// before the first is read. A power of two (sequence numbers wrap at 2^16).
pub const WINDOW: u16 = 32;

/// Whether sequence number `a` comes before `b`, in wrapping order.
fn before(a: u16, b: u16) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000
}

/// One side of a link.
#[derive(Debug)]
pub struct Channel {
    // Sending.
    unsent: VecDeque<u8>,
    send_capacity: usize,
    next_seq: u16,
    peer_limit: u16,
    closing: bool,
    close_sent: bool,
    // Receiving: chunk `seq` lives in `slots[seq % WINDOW]` while
    // `consumed <= seq < consumed + WINDOW`.
    slots: Vec<Option<Vec<u8>>>,
    consumed: u16,
    read_offset: usize,
    expected: u16,
    advertised: u16,
    /// The peer's end of data, once it closed.
    peer_end: Option<u16>,
}

impl Channel {
    /// A new side whose outgoing buffer holds at most `send_capacity` bytes.
    pub fn new(send_capacity: usize) -> Self {
        Self {
            unsent: VecDeque::new(),
            send_capacity,
            next_seq: 0,
            peer_limit: WINDOW,
            closing: false,
            close_sent: false,
            slots: vec![None; usize::from(WINDOW)],
            consumed: 0,
            read_offset: 0,
            expected: 0,
            advertised: WINDOW,
            peer_end: None,
        }
    }

    /// Queues as much of `data` as the outgoing buffer takes; how much.
    pub fn write(&mut self, data: &[u8]) -> Result<usize> {
        if self.closing {
            return Err(Error::Closed);
        }
        let n = data.len().min(self.send_capacity - self.unsent.len());
        self.unsent.extend(&data[..n]);
        Ok(n)
    }

    /// Bytes queued and not yet sent.
    pub fn unsent(&self) -> usize {
        self.unsent.len()
    }

    /// Both ways are done: this side's close went out and the peer's came
    /// in. Only credits could still go, and the peer sends nothing more to
    /// spend them on.
    pub fn finished(&self) -> bool {
        self.close_sent && self.peer_end.is_some()
    }

    /// No more data from this side: a close packet follows what is queued.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// The next packet to send on a link that carries packets of at most
    /// `max_packet` bytes (ATT MTU − 3; it may change between calls), if any:
    /// a credit when the reader freed room, else data within the peer's
    /// credit, else the close.
    pub fn poll_transmit(&mut self, max_packet: usize) -> Option<Vec<u8>> {
        let limit = self.consumed.wrapping_add(WINDOW);
        if limit != self.advertised && self.peer_end.is_none() {
            self.advertised = limit;
            return Some(Packet::Credit { limit }.encode());
        }
        if !self.unsent.is_empty() && before(self.next_seq, self.peer_limit) {
            let room = max_packet.clamp(MIN_PACKET, MAX_PACKET) - HEADER_LEN;
            let take = room.min(self.unsent.len());
            let payload: Vec<u8> = self.unsent.drain(..take).collect();
            let seq = self.next_seq;
            self.next_seq = seq.wrapping_add(1);
            return Some(Packet::Data { seq, payload: &payload }.encode());
        }
        if self.closing && self.unsent.is_empty() && !self.close_sent {
            self.close_sent = true;
            return Some(Packet::Close { end: self.next_seq }.encode());
        }
        None
    }

    /// Takes a packet from the peer. Duplicates and data already delivered
    /// are ignored; data beyond the credit this side granted, a credit for
    /// data never sent, data past the end the peer closed at, or a second
    /// different close end the link.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<()> {
        match Packet::decode(bytes)? {
            Packet::Data { seq, payload } => {
                if self.peer_end.is_some_and(|end| !before(seq, end)) {
                    return Err(Error::Protocol("data past the end of the stream"));
                }
                if before(seq, self.expected) {
                    return Ok(()); // delivered already: a duplicate
                }
                if !before(seq, self.consumed.wrapping_add(WINDOW)) {
                    return Err(Error::Protocol("data beyond the credit granted"));
                }
                let slot = &mut self.slots[usize::from(seq % WINDOW)];
                if slot.is_none() {
                    *slot = Some(payload.to_vec());
                }
                while self.slots[usize::from(self.expected % WINDOW)].is_some()
                    && before(self.expected, self.consumed.wrapping_add(WINDOW))
                {
                    self.expected = self.expected.wrapping_add(1);
                }
                Ok(())
            }
            Packet::Credit { limit } => {
                // A credit reaches at most WINDOW past what was sent; an
                // older one than the last is stale (reordered): ignored.
                if before(self.next_seq.wrapping_add(WINDOW), limit) {
                    return Err(Error::Protocol("credit for data never sent"));
                }
                if before(self.peer_limit, limit) {
                    self.peer_limit = limit;
                }
                Ok(())
            }
            Packet::Close { end } => {
                if self.peer_end.is_some_and(|e| e != end) {
                    return Err(Error::Protocol("two different ends of the stream"));
                }
                if before(end, self.expected) || before(self.consumed.wrapping_add(WINDOW), end) {
                    return Err(Error::Protocol("an end outside what could have been sent"));
                }
                self.peer_end = Some(end);
                Ok(())
            }
        }
    }

    /// Copies bytes received in order into `buf`; how many. `Ok(0)` with a
    /// non-empty `buf` means the peer closed and everything was read;
    /// [`Error::WouldBlock`] that nothing is there yet.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.consumed != self.expected {
            let index = usize::from(self.consumed % WINDOW);
            let Some(chunk) = self.slots[index].as_ref() else { break };
            let take = (chunk.len() - self.read_offset).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&chunk[self.read_offset..self.read_offset + take]);
            n += take;
            self.read_offset += take;
            if self.read_offset == chunk.len() {
                self.slots[index] = None;
                self.read_offset = 0;
                self.consumed = self.consumed.wrapping_add(1);
            }
        }
        match n {
            0 if buf.is_empty() || self.peer_end == Some(self.consumed) => Ok(0),
            0 => Err(Error::WouldBlock),
            n => Ok(n),
        }
    }
}
