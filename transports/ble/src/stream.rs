//! A byte stream over a packet link: [`Channel`] driven by any link that
//! sends and receives GATT-sized packets (a GATT characteristic's writes and
//! notifications, or a fake radio in tests). It implements futures'
//! `AsyncRead` and `AsyncWrite`, so Noise and yamux run on top of it like on
//! a TCP socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite, Sink, Stream};

use crate::channel::Channel;
use crate::error::Error;

/// What carries packets: a sink and a stream of packets, and the largest
/// packet the link takes now (ATT MTU − 3; it may change).
pub trait PacketLink:
    Sink<Vec<u8>, Error = io::Error> + Stream<Item = io::Result<Vec<u8>>> + Send + Unpin + 'static
{
    /// The largest packet the link carries now.
    fn max_packet(&self) -> usize;
}

/// The outgoing buffer of a stream, in bytes.
pub const SEND_BUFFER: usize = 64 * 1024;

/// A byte stream over a [`PacketLink`].
#[derive(Debug)]
pub struct PacketStream<L> {
    channel: Channel,
    link: L,
    /// A packet taken from the channel that the link did not take yet.
    outgoing: Option<Vec<u8>>,
    /// The link ended (no more packets will come).
    link_ended: bool,
}

fn broken(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<L: PacketLink> PacketStream<L> {
    /// A stream over `link`.
    pub fn new(link: L) -> Self {
        Self { channel: Channel::new(SEND_BUFFER), link, outgoing: None, link_ended: false }
    }

    /// Sends what the channel has to send (data, credits, the close) until
    /// the link pushes back; `Ready` once nothing is left to hand over.
    fn pump_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.outgoing.is_none() {
                self.outgoing = self.channel.poll_transmit(self.link.max_packet());
            }
            let Some(packet) = self.outgoing.take() else { break };
            let sent = match Pin::new(&mut self.link).poll_ready(cx) {
                Poll::Ready(Ok(())) => Pin::new(&mut self.link).start_send(packet),
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => {
                    self.outgoing = Some(packet);
                    return Poll::Pending;
                }
            };
            if let Err(e) = sent {
                return Poll::Ready(self.moot(e));
            }
        }
        match Pin::new(&mut self.link).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(self.moot(e)),
            other => other,
        }
    }

    /// A send that failed once both ways are done (the peer, finished, let
    /// go of the link before a last credit went out) is no failure.
    fn moot(&self, e: io::Error) -> io::Result<()> {
        if self.channel.finished() { Ok(()) } else { Err(e) }
    }

    /// Takes every packet the link has received.
    fn pump_in(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while !self.link_ended {
            match Pin::new(&mut self.link).poll_next(cx) {
                Poll::Ready(Some(Ok(packet))) => self.channel.receive(&packet).map_err(broken)?,
                Poll::Ready(Some(Err(e))) => return Err(e),
                Poll::Ready(None) => self.link_ended = true,
                Poll::Pending => break,
            }
        }
        Ok(())
    }
}

impl<L: PacketLink> AsyncRead for PacketStream<L> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.pump_in(cx)?;
        match this.channel.read(buf) {
            Ok(n) => {
                // Reading freed room: the credit goes out now if it can. The
                // bytes are the caller's either way: a link that cannot take
                // the credit says so at the next call, not by losing them.
                let _ = this.pump_out(cx);
                Poll::Ready(Ok(n))
            }
            Err(Error::WouldBlock) if this.link_ended => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the link ended mid-stream")))
            }
            Err(Error::WouldBlock) => match this.pump_out(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
            Err(e) => Poll::Ready(Err(broken(e))),
        }
    }
}

impl<L: PacketLink> AsyncWrite for PacketStream<L> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.pump_in(cx)?;
        let n = this.channel.write(buf).map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
        if let Poll::Ready(Err(e)) = this.pump_out(cx) {
            return Poll::Ready(Err(e));
        }
        if n == 0 && !buf.is_empty() {
            // The buffer is full: waiting for the link or for credit, both
            // of which wake this task.
            return Poll::Pending;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.pump_in(cx)?;
        match this.pump_out(cx) {
            Poll::Ready(Ok(())) if this.channel.unsent() == 0 => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Pending,
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.channel.close();
        let this = &mut *self;
        this.pump_in(cx)?;
        match this.pump_out(cx) {
            // A half-close: the close packet is out, and the link stays up,
            // since credits for the peer's data still have to go over it.
            // Dropping the stream drops the link.
            Poll::Ready(Ok(())) if this.channel.unsent() == 0 && this.outgoing.is_none() => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::channel::mpsc;
    use futures::{AsyncReadExt, AsyncWriteExt, SinkExt, StreamExt};

    use super::*;

    /// One end of a fake radio: bounded queues both ways and a packet size
    /// the test changes while data flows.
    struct FakeLink {
        tx: mpsc::Sender<Vec<u8>>,
        rx: mpsc::Receiver<Vec<u8>>,
        max_packet: Arc<AtomicUsize>,
    }

    fn pair(max_packet: &Arc<AtomicUsize>) -> (FakeLink, FakeLink) {
        let (a_tx, b_rx) = mpsc::channel(8);
        let (b_tx, a_rx) = mpsc::channel(8);
        let a = FakeLink { tx: a_tx, rx: a_rx, max_packet: Arc::clone(max_packet) };
        let b = FakeLink { tx: b_tx, rx: b_rx, max_packet: Arc::clone(max_packet) };
        (a, b)
    }

    impl Sink<Vec<u8>> for FakeLink {
        type Error = io::Error;
        fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.tx.poll_ready_unpin(cx).map_err(|_| io::ErrorKind::BrokenPipe.into())
        }
        fn start_send(mut self: Pin<&mut Self>, packet: Vec<u8>) -> io::Result<()> {
            self.tx.start_send_unpin(packet).map_err(|_| io::ErrorKind::BrokenPipe.into())
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.tx.poll_flush_unpin(cx).map_err(|_| io::ErrorKind::BrokenPipe.into())
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.tx.poll_close_unpin(cx).map_err(|_| io::ErrorKind::BrokenPipe.into())
        }
    }

    impl Stream for FakeLink {
        type Item = io::Result<Vec<u8>>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.rx.poll_next_unpin(cx).map(|p| p.map(Ok))
        }
    }

    impl PacketLink for FakeLink {
        fn max_packet(&self) -> usize {
            self.max_packet.load(Ordering::Relaxed)
        }
    }

    fn byte(i: usize) -> u8 {
        (i * 7 % 253) as u8
    }

    /// A quarter megabyte each way at once over small, changing packets arrives
    /// whole; closing gives the reader the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quarter_megabyte_each_way_over_changing_packet_sizes() {
        const LEN: usize = 1 << 18;
        let max_packet = Arc::new(AtomicUsize::new(20));
        let (a, b) = pair(&max_packet);
        let (a, b) = (PacketStream::new(a), PacketStream::new(b));
        let side = |stream: PacketStream<FakeLink>, sizes: Arc<AtomicUsize>| async move {
            let (mut reader, mut writer) = stream.split();
            let write = async move {
                let data: Vec<u8> = (0..LEN).map(byte).collect();
                for (i, chunk) in data.chunks(3001).enumerate() {
                    sizes.store([20, 244, 509, 100][i % 4], Ordering::Relaxed);
                    writer.write_all(chunk).await.unwrap();
                }
                writer.close().await.unwrap();
            };
            let read = async move {
                let mut got = Vec::with_capacity(LEN);
                reader.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), got) = futures::join!(write, read);
            got
        };
        let (got_a, got_b) = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            futures::join!(
                tokio::spawn(side(a, Arc::clone(&max_packet))),
                tokio::spawn(side(b, Arc::clone(&max_packet)))
            )
        })
        .await
        .expect("both streams finish");
        let expected: Vec<u8> = (0..LEN).map(byte).collect();
        assert!(got_a.unwrap() == expected && got_b.unwrap() == expected);
    }
}
