//! Connection limits (issue 20): a node flooded with connections keeps
//! only as many as its limits allow. Raw TCP connections that send nothing
//! or junk are closed (at once beyond the pending limit, after the handshake
//! timeout otherwise); established connections beyond the global limit are
//! closed; once the flood's connections go idle and close, a genuine peer
//! connects and delivers as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use veil_testkit::network::*;
use veil_transports::{Policy, Tcp};

/// Raw TCP connections opened at once.
const RAW: usize = 200;
/// Established connections the flooded node accepts.
const MAX_INCOMING: u32 = 8;
/// Peers that connect to it.
const PEERS: usize = 20;

/// Waits until `check` holds, re-checking every 50 ms, at most [`PATIENCE`].
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    timeout(PATIENCE, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_held_to_the_limits_and_a_genuine_peer_still_gets_through() {
    let mut config = config();
    config.max_pending_incoming = 16;
    config.max_incoming_connections = MAX_INCOMING;
    config.handshake_timeout = Duration::from_secs(1);
    config.idle_connection_timeout = Duration::from_secs(1);
    let b = spawn_with(Policy::Direct, vec![Arc::new(Tcp::new())], config);
    drain(b.events);
    let b_addr = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    let target = socket_of(&b_addr);

    // Raw connections: half silent, half sending junk. Every one is closed
    // by the node, none is left holding a slot.
    let raw = (0..RAW).map(|i| async move {
        let mut stream = TcpStream::connect(target).await.unwrap();
        if i % 2 == 1 {
            let junk: Vec<u8> = (0..1024).map(|j| (i * 31 + j * 7) as u8).collect();
            let _ = stream.write_all(&junk).await;
        }
        let mut sink = Vec::new();
        timeout(PATIENCE, stream.read_to_end(&mut sink)).await.is_ok()
    });
    let closed = join_all(raw).await.into_iter().filter(|c| *c).count();
    assert_eq!(closed, RAW, "the node closed every raw connection");

    // Genuine libp2p peers: no more than the limit stay connected.
    let peers: Vec<_> = (0..PEERS).map(|_| spawn(Policy::Direct, vec![Arc::new(Tcp::new())])).collect();
    let dials = peers.iter().map(|p| {
        let (handle, addr) = (p.handle.clone(), b_addr.clone());
        async move { handle.dial(addr).await }
    });
    join_all(dials).await;
    let held = b.handle.connected_peers().await.unwrap().len();
    assert!(held as u32 <= MAX_INCOMING, "{held} connections held, limit {MAX_INCOMING}");
    assert!(held > 0, "connections up to the limit are accepted");

    // The flood's connections carry nothing and close when idle; then a
    // newcomer connects and its frame arrives.
    drop(peers);
    until("the flood's connections to close", || async { b.handle.connected_peers().await.unwrap().is_empty() }).await;
    let mut c = spawn(Policy::Direct, vec![Arc::new(Tcp::new())]);
    let b_peer = c.handle.dial(b_addr.clone()).await.unwrap();
    wait_connected(&mut c.events, b_peer).await;
    drain(c.events);
    c.handle.send_frame(b_peer, frame("after the flood", 0)).await.unwrap();
}
