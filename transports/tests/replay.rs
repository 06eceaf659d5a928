//! Bytes captured on the wire and replayed (issue 20): what a relay, a
//! router or anyone on the path holds of a connection is its bytes. Sent
//! again to the same node on a new connection, they open nothing: the
//! node's Noise handshake answers with a fresh ephemeral key, so the
//! captured third handshake message (and everything sealed after it) no
//! longer decrypts, and the connection is closed with no peer and no frame.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use veil_testkit::network::*;
use veil_transports::{NetworkEvent, Policy, Tcp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_captured_on_the_wire_and_replayed_opens_nothing() {
    let a = spawn(Policy::Direct, vec![Arc::new(Tcp::new())]);
    let mut b = spawn(Policy::Direct, vec![Arc::new(Tcp::new())]);
    let b_addr = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    let proxy = Proxy::to(socket_of(&b_addr)).await;
    let through_proxy = ma(&format!("/ip4/127.0.0.1/tcp/{}", proxy.addr.port()));
    assert_eq!(a.handle.dial(through_proxy).await.unwrap(), b.peer);
    wait_connected(&mut b.events, a.peer).await;
    drain(a.events);
    a.handle.send_frame(b.peer, frame("captured", 0)).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await, vec![(a.peer, frame("captured", 0))]);
    let captured = proxy.recorded();
    assert!(captured.len() > 100, "the handshake and the frame were captured ({} bytes)", captured.len());

    // The capture, sent again on a new connection: B closes it.
    let mut replay = TcpStream::connect(socket_of(&b_addr)).await.unwrap();
    let _ = replay.write_all(&captured).await;
    let mut sink = Vec::new();
    let closed = timeout(PATIENCE, replay.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "B closed the replayed connection");

    // A genuine frame still arrives, and it is the only one since.
    a.handle.send_frame(b.peer, frame("genuine", 1)).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await, vec![(a.peer, frame("genuine", 1))]);
    while let Ok(event) = b.events.try_recv() {
        assert!(
            !matches!(event, NetworkEvent::FrameReceived { .. } | NetworkEvent::PeerConnected { .. }),
            "the replay opened something: {event:?}"
        );
    }
}
