//! Wire formats of veil's own protocols.
//!
//! * `/veil/frame/2` ([`FRAME_PROTOCOL`]): one persistent stream per sender
//!   and connection. The sender writes frames, each a 4-byte big-endian
//!   length and that many bytes ([`read_frame`], [`write_frame`]); the
//!   receiver writes acknowledgements, each a 4-byte big-endian count `n ≥ 1`
//!   meaning "the next `n` frames were accepted" ([`read_ack`],
//!   [`encode_acks`], [`check_ack`]).
//! * `/veil/contact/1` ([`CONTACT_PROTOCOL`]): request-response, one request
//!   and one response per stream, each length-prefixed like a frame
//!   ([`FrameCodec`]).
//!
//! A length over the configured maximum, or an acknowledgement of frames that
//! were never sent, is refused before anything is allocated.

use std::io;

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use libp2p::request_response;

pub use crate::framing::{check_ack, encode_acks, encode_frame, read_ack, read_frame, write_frame};

/// The frame protocol's name (persistent, acknowledged streams).
pub const FRAME_PROTOCOL: StreamProtocol = StreamProtocol::new("/veil/frame/2");

/// The contact protocol's name (request-response, used by the contact
/// handshake).
pub const CONTACT_PROTOCOL: StreamProtocol = StreamProtocol::new("/veil/contact/1");

/// The default largest frame: 256 KiB.
pub const DEFAULT_MAX_FRAME: usize = 256 * 1024;

/// The largest response [`FrameCodec::new`] accepts.
pub const MAX_ACK: usize = 1024;

/// A length-prefixed request-response codec: requests of at most `max_frame`
/// bytes, responses of at most [`MAX_ACK`] ([`FrameCodec::new`]) or of the
/// same maximum ([`FrameCodec::symmetric`], used by `/veil/contact/1`).
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
    max_ack: usize,
}

impl FrameCodec {
    /// A codec accepting frames up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame, max_ack: MAX_ACK }
    }

    /// A codec whose responses may be as large as requests (for benchmarks
    /// and protocols that answer with data).
    pub fn symmetric(max: usize) -> Self {
        Self { max_frame: max, max_ack: max }
    }

    /// The largest frame, in bytes, this codec reads or writes; a longer
    /// one is refused before its bytes are read.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_frame).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_ack).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.max_frame).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.max_ack).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures::executor::block_on;
    use futures::io::Cursor;
    use proptest::prelude::*;

    use super::*;

    fn encode(frame: &[u8]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        block_on(write_frame(&mut out, frame, usize::MAX)).unwrap();
        out.into_inner()
    }

    #[test]
    fn oversize_refused_before_allocation() {
        // A 4 GiB length prefix with no body: must fail on the length, not try
        // to allocate or read.
        let mut input = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let err = block_on(read_frame(&mut input, DEFAULT_MAX_FRAME)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Exactly the maximum is fine, one more is not.
        let ok = encode(&vec![7; 1000]);
        assert_eq!(block_on(read_frame(&mut Cursor::new(ok.clone()), 1000)).unwrap().len(), 1000);
        assert_eq!(block_on(read_frame(&mut Cursor::new(ok), 999)).unwrap_err().kind(), io::ErrorKind::InvalidData);
        // The writer refuses too.
        let mut out = Cursor::new(Vec::new());
        let err = block_on(write_frame(&mut out, &[0; 11], 10)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.into_inner().is_empty());
    }

    #[test]
    fn truncated_is_an_error() {
        let mut bytes = encode(b"hello");
        bytes.pop();
        assert_eq!(
            block_on(read_frame(&mut Cursor::new(bytes), 100)).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(block_on(read_frame(&mut Cursor::new(vec![0, 0]), 100)).is_err());
    }

    #[test]
    fn acks() {
        let mut wire = Vec::new();
        encode_acks(3, &mut wire);
        encode_acks(0, &mut wire);
        assert_eq!(wire, vec![0, 0, 0, 3]);
        assert_eq!(block_on(read_ack(&mut Cursor::new(wire.clone()), 3)).unwrap(), 3);
        // More than were sent, or zero: a protocol violation.
        assert_eq!(block_on(read_ack(&mut Cursor::new(wire), 2)).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(check_ack(0, 5).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut big = Vec::new();
        encode_acks(u64::from(u32::MAX) + 2, &mut big);
        assert_eq!(big, vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2]);
        // encode_frame matches write_frame and refuses oversize frames.
        let mut out = Vec::new();
        encode_frame(b"hello", 5, &mut out).unwrap();
        assert_eq!(out, encode(b"hello"));
        assert!(encode_frame(b"hello", 4, &mut out).is_err());
        assert_eq!(out, encode(b"hello"));
    }

    proptest! {
        #[test]
        fn ack_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..16), unacked in 0usize..1000) {
            match block_on(read_ack(&mut Cursor::new(bytes.clone()), unacked)) {
                Ok(n) => {
                    prop_assert!(n >= 1 && n <= unacked);
                    prop_assert_eq!(n as u32, u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                }
                Err(e) => prop_assert!(matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof)),
            }
        }

        #[test]
        fn acks_round_trip(counts in prop::collection::vec(1u64..1_000_000, 0..8)) {
            let total: u64 = counts.iter().sum();
            let mut wire = Vec::new();
            for c in &counts {
                encode_acks(*c, &mut wire);
            }
            let mut input = Cursor::new(wire);
            let mut left = total as usize;
            for c in &counts {
                prop_assert_eq!(block_on(read_ack(&mut input, left)).unwrap() as u64, *c);
                left -= *c as usize;
            }
        }

        #[test]
        fn round_trip(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..2048), 0..8)) {
            let mut wire = Vec::new();
            for f in &frames {
                wire.extend(encode(f));
            }
            let mut input = Cursor::new(wire);
            for f in &frames {
                prop_assert_eq!(&block_on(read_frame(&mut input, 2048)).unwrap(), f);
            }
        }

        #[test]
        fn garbage_never_panics_and_respects_max(bytes in prop::collection::vec(any::<u8>(), 0..64), max in 0usize..32) {
            match block_on(read_frame(&mut Cursor::new(bytes.clone()), max)) {
                Ok(frame) => {
                    prop_assert!(frame.len() <= max);
                    prop_assert_eq!(&bytes[4..4 + frame.len()], &frame[..]);
                }
                Err(e) => prop_assert!(matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof)),
            }
        }

        #[test]
        fn length_over_max_is_refused(len in 1u32.., max in 0usize..1_000_000) {
            prop_assume!(len as usize > max);
            let mut input = Cursor::new(len.to_be_bytes().to_vec());
            prop_assert_eq!(block_on(read_frame(&mut input, max)).unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
    }
}
