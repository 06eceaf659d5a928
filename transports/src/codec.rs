//! The `/veil/frame/1` codec: one length-prefixed frame per request, one
//! length-prefixed acknowledgement per response.
//!
//! Wire format (both directions): a 4-byte big-endian length, then that many
//! bytes. A length over the configured maximum is refused before anything is
//! allocated.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// The frame protocol's name.
pub const FRAME_PROTOCOL: StreamProtocol = StreamProtocol::new("/veil/frame/1");

/// The default largest frame: 256 KiB.
pub const DEFAULT_MAX_FRAME: usize = 256 * 1024;

/// The largest acknowledgement accepted (acknowledgements are empty today).
pub const MAX_ACK: usize = 1024;

/// Reads one length-prefixed frame of at most `max` bytes.
///
/// A length above `max` fails with [`io::ErrorKind::InvalidData`] before the
/// frame buffer is allocated.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = usize::try_from(u32::from_be_bytes(len)).map_err(|_| too_large())?;
    if len > max {
        return Err(too_large());
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one length-prefixed frame; refuses frames over `max` bytes with
/// [`io::ErrorKind::InvalidInput`].
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, frame: &[u8], max: usize) -> io::Result<()> {
    let len = u32::try_from(frame.len())
        .ok()
        .filter(|_| frame.len() <= max)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame exceeds the maximum size"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.flush().await
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "frame exceeds the maximum size")
}

/// The request-response codec for `/veil/frame/1`: requests are frames of at
/// most `max_frame` bytes, responses acknowledgements of at most [`MAX_ACK`].
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

    /// The largest frame accepted.
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

    proptest! {
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
