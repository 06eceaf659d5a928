//! The packets of a veil link over GATT (docs/PROTOCOL.md, "BLE link"):
//! one packet per GATT write or notification, at most the link's ATT MTU
//! minus 3 bytes.
//!
//! ```text
//! data:   0x01 | seq (u16, big-endian) | 1..=509 bytes of the stream
//! credit: 0x02 | limit (u16, big-endian)      the peer may send seq < limit
//! close:  0x03 | end (u16, big-endian)         no data from seq `end` on
//! ```

use crate::error::{Error, Result};

/// Bytes before a data packet's payload.
pub const HEADER_LEN: usize = 3;
/// The longest packet: the longest attribute value ATT carries.
pub const MAX_PACKET: usize = 512;
/// The shortest packet size a link must allow (the default ATT MTU of 23,
/// less the 3-byte ATT header).
pub const MIN_PACKET: usize = 20;

const DATA: u8 = 0x01;
const CREDIT: u8 = 0x02;
const CLOSE: u8 = 0x03;

/// A decoded packet, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// The next piece of the stream: 1 to 509 bytes.
    Data {
        /// Its place in the stream, counted in packets and wrapping at 2^16.
        seq: u16,
        /// Its bytes (never empty).
        payload: &'a [u8],
    },
    /// The sender of this packet accepts data with sequence numbers before `limit`.
    Credit {
        /// The first sequence number not yet allowed.
        limit: u16,
    },
    /// The sender of this packet sends no data from `end` on (the packet
    /// may overtake the last data packets: `end` says how many there are).
    Close {
        /// The first sequence number never sent.
        end: u16,
    },
}

impl<'a> Packet<'a> {
    /// Parses one packet; anything malformed or longer than [`MAX_PACKET`]
    /// is an error.
    pub fn decode(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() > MAX_PACKET {
            return Err(Error::TooLarge { len: bytes.len(), max: MAX_PACKET });
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Malformed("shorter than a packet header"));
        }
        let field = u16::from_be_bytes([bytes[1], bytes[2]]);
        match bytes[0] {
            DATA if bytes.len() == HEADER_LEN => Err(Error::Malformed("a data packet without data")),
            DATA => Ok(Self::Data { seq: field, payload: &bytes[HEADER_LEN..] }),
            CREDIT if bytes.len() == HEADER_LEN => Ok(Self::Credit { limit: field }),
            CLOSE if bytes.len() == HEADER_LEN => Ok(Self::Close { end: field }),
            CREDIT | CLOSE => Err(Error::Malformed("a control packet with trailing bytes")),
            _ => Err(Error::Malformed("unknown packet kind")),
        }
    }

    /// The packet's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::Data { seq, payload } => {
                let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
                out.push(DATA);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(payload);
                out
            }
            Self::Credit { limit } => {
                let [hi, lo] = limit.to_be_bytes();
                vec![CREDIT, hi, lo]
            }
            Self::Close { end } => {
                let [hi, lo] = end.to_be_bytes();
                vec![CLOSE, hi, lo]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_kind_has_one_form() {
        assert_eq!(Packet::Data { seq: 0x0102, payload: b"hi" }.encode(), vec![1, 1, 2, b'h', b'i']);
        assert_eq!(Packet::Credit { limit: 0xfffe }.encode(), vec![2, 0xff, 0xfe]);
        assert_eq!(Packet::Close { end: 7 }.encode(), vec![3, 0, 7]);
        for bad in [&[][..], &[1, 0], &[1, 0, 0], &[2, 0, 0, 0], &[3, 0, 1, 0], &[9, 0, 0], &[0, 0, 0, 1]] {
            assert!(Packet::decode(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(Packet::decode(&[1; MAX_PACKET + 1]), Err(Error::TooLarge { .. })));
    }

    proptest! {
        #[test]
        fn packets_round_trip(seq in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 1..MAX_PACKET - HEADER_LEN)) {
            for p in [Packet::Data { seq, payload: &payload }, Packet::Credit { limit: seq }, Packet::Close { end: seq }] {
                let bytes = p.encode();
                prop_assert!(bytes.len() <= MAX_PACKET);
                prop_assert_eq!(Packet::decode(&bytes).unwrap(), p);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(p) = Packet::decode(&bytes) {
                prop_assert_eq!(p.encode(), bytes);
            }
        }
    }
}
