//! The framing of `/veil/frame/2` and `/veil/contact/1` (see
//! `veil_transports::codec`, which re-exports all of it): length-prefixed frames
//! and acknowledgement counts. Only `std` and `futures` here: the fuzz
//! targets (`integration-tests/fuzz`) compile this file as it is, without
//! libp2p.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Reads one acknowledgement: the count of frames it acknowledges, checked
/// against the `unacknowledged` frames the sender has written
/// ([`check_ack`]).
pub async fn read_ack<T: AsyncRead + Unpin>(io: &mut T, unacknowledged: usize) -> io::Result<usize> {
    let mut count = [0u8; 4];
    io.read_exact(&mut count).await?;
    check_ack(u32::from_be_bytes(count), unacknowledged)
}

/// Validates an acknowledgement count: at least one frame, and no more than
/// are waiting for an acknowledgement. Anything else is a protocol violation
/// ([`io::ErrorKind::InvalidData`]).
pub fn check_ack(count: u32, unacknowledged: usize) -> io::Result<usize> {
    match usize::try_from(count) {
        Ok(n) if n >= 1 && n <= unacknowledged => Ok(n),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "acknowledgement of frames that were not sent")),
    }
}

/// Appends the acknowledgements of `count` frames to `out` (several
/// acknowledgements if `count` exceeds `u32::MAX`).
pub fn encode_acks(mut count: u64, out: &mut Vec<u8>) {
    while count > 0 {
        let n = u32::try_from(count).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        count -= u64::from(n);
    }
}

/// Appends one length-prefixed frame to `out`; refuses frames over `max`
/// bytes with [`io::ErrorKind::InvalidInput`] (nothing is appended then).
pub fn encode_frame(frame: &[u8], max: usize, out: &mut Vec<u8>) -> io::Result<()> {
    let len = u32::try_from(frame.len())
        .ok()
        .filter(|_| frame.len() <= max)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame exceeds the maximum size"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
    Ok(())
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "frame exceeds the maximum size")
}
