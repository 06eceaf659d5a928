//! Frames between networks over memory, loopback TCP and QUIC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use veil_testkit::network::*;
use veil_transports::{Error, Memory, Policy, Quic, Tcp, TransportId, TransportPlugin};

const N: usize = 200;

fn memory() -> Vec<Arc<dyn TransportPlugin>> {
    vec![Arc::new(Memory::new())]
}

/// `a` sends N frames to `b` one at a time; they arrive once each, in order.
async fn two_nodes(plugins: fn() -> Vec<Arc<dyn TransportPlugin>>, listen: &str, transport: TransportId) {
    let mut a = spawn(Policy::Direct, plugins());
    let mut b = spawn(Policy::Direct, plugins());
    let b_addr = b.handle.listen(ma(listen)).await.unwrap();
    assert_eq!(a.handle.dial(b_addr).await.unwrap(), b.peer);
    assert_eq!(wait_connected(&mut a.events, b.peer).await, transport);
    assert_eq!(wait_connected(&mut b.events, a.peer).await, transport);
    drain(a.events);

    let sender = a.handle.clone();
    let b_peer = b.peer;
    let send = tokio::spawn(async move {
        for i in 0..N {
            sender.send_frame(b_peer, frame("a", i)).await.unwrap();
        }
    });
    let got = recv_frames(&mut b.events, N).await;
    send.await.unwrap();
    let expected: Vec<_> = (0..N).map(|i| (a.peer, frame("a", i))).collect();
    assert_eq!(got, expected);

    // 64 in flight: every frame arrives exactly once (order is not promised).
    let mut in_flight = FuturesUnordered::new();
    for i in 0..N {
        let h = a.handle.clone();
        in_flight.push(async move { h.send_frame(b_peer, frame("p", i)).await });
        if in_flight.len() == 64 {
            in_flight.next().await.unwrap().unwrap();
        }
    }
    let receive = recv_frames(&mut b.events, N);
    let (got, ()) = tokio::join!(receive, async {
        while let Some(r) = in_flight.next().await {
            r.unwrap();
        }
    });
    let mut got: Vec<_> = got.into_iter().map(|(_, f)| f).collect();
    got.sort();
    assert_eq!(got, (0..N).map(|i| frame("p", i)).collect::<Vec<_>>());

    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
    assert!(matches!(a.handle.connected_peers().await, Err(Error::Shutdown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_memory() {
    two_nodes(memory, "/memory/0", TransportId::MEMORY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_tcp() {
    two_nodes(|| vec![Arc::new(Tcp::new())], "/ip4/127.0.0.1/tcp/0", TransportId::TCP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_quic() {
    two_nodes(|| vec![Arc::new(Quic::new())], "/ip4/127.0.0.1/udp/0/quic-v1", TransportId::QUIC).await;
}

/// Three nodes, each sending N frames to both others at once (sequentially
/// per destination): everything arrives once, in order per sender.
async fn three_nodes(plugins: fn() -> Vec<Arc<dyn TransportPlugin>>, listen: &str) {
    let mut nodes =
        vec![spawn(Policy::Direct, plugins()), spawn(Policy::Direct, plugins()), spawn(Policy::Direct, plugins())];
    let mut addrs = Vec::new();
    for n in &nodes {
        addrs.push(n.handle.listen(ma(listen)).await.unwrap());
    }
    // 0 → 1, 0 → 2, 1 → 2
    nodes[0].handle.dial(addrs[1].clone()).await.unwrap();
    nodes[0].handle.dial(addrs[2].clone()).await.unwrap();
    nodes[1].handle.dial(addrs[2].clone()).await.unwrap();
    let peers: Vec<_> = nodes.iter().map(|n| n.peer).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        let others: Vec<_> = peers.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect();
        wait_all_connected(&mut n.events, &others).await;
    }

    let mut senders = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for (j, &p) in peers.iter().enumerate() {
            if i == j {
                continue;
            }
            let h = n.handle.clone();
            let tag = format!("{i}to{j}");
            senders.push(tokio::spawn(async move {
                for k in 0..N {
                    h.send_frame(p, frame(&tag, k)).await.unwrap();
                }
            }));
        }
    }
    let mut receivers = Vec::new();
    for n in nodes.iter_mut() {
        receivers.push(recv_frames(&mut n.events, 2 * N));
    }
    let received = futures::future::join_all(receivers).await;
    for s in senders {
        s.await.unwrap();
    }
    for (j, got) in received.into_iter().enumerate() {
        let mut by_sender: HashMap<_, Vec<Vec<u8>>> = HashMap::new();
        for (peer, f) in got {
            by_sender.entry(peer).or_default().push(f);
        }
        assert_eq!(by_sender.len(), 2);
        for (i, &p) in peers.iter().enumerate() {
            if i == j {
                continue;
            }
            let tag = format!("{i}to{j}");
            assert_eq!(by_sender[&p], (0..N).map(|k| frame(&tag, k)).collect::<Vec<_>>(), "{tag}");
        }
    }
    for n in &nodes {
        n.handle.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_memory() {
    three_nodes(memory, "/memory/0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tcp() {
    three_nodes(|| vec![Arc::new(Tcp::new())], "/ip4/127.0.0.1/tcp/0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_quic() {
    three_nodes(|| vec![Arc::new(Quic::new())], "/ip4/127.0.0.1/udp/0/quic-v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frames_are_refused() {
    let mut cfg = config();
    cfg.max_frame_size = 1024;
    let mut a = spawn_with(Policy::Direct, memory(), cfg.clone());
    let mut b = spawn_with(Policy::Direct, memory(), cfg);
    let b_addr = b.handle.listen(ma("/memory/0")).await.unwrap();
    a.handle.dial(b_addr).await.unwrap();
    wait_connected(&mut a.events, b.peer).await;

    // Refused locally before anything is sent.
    match a.handle.send_frame(b.peer, vec![0; 1025]).await {
        Err(Error::FrameTooLarge { len: 1025, max: 1024 }) => {}
        other => panic!("unexpected {other:?}"),
    }
    // Exactly the maximum goes through.
    a.handle.send_frame(b.peer, vec![1; 1024]).await.unwrap();
    let got = recv_frames(&mut b.events, 1).await;
    assert_eq!(got[0].1.len(), 1024);

    // A peer with a larger maximum is refused by the receiver's codec (before
    // it allocates): the send fails and nothing is delivered.
    let mut big = config();
    big.max_frame_size = 4096;
    let mut c = spawn_with(Policy::Direct, memory(), big);
    c.handle.dial(b.handle.listen_addrs().await.unwrap()[0].clone()).await.unwrap();
    wait_connected(&mut c.events, b.peer).await;
    assert!(matches!(c.handle.send_frame(b.peer, vec![2; 4096]).await, Err(Error::SendFailed(_))));
    // b is still fine: the next frame is the only one it sees.
    c.handle.send_frame(b.peer, b"small".to_vec()).await.unwrap();
    let got = recv_frames(&mut b.events, 1).await;
    assert_eq!(got[0], (c.peer, b"small".to_vec()));
}

/// A frame the receiver's application never takes is never acknowledged:
/// the send fails after `request_timeout`, and goes through once resent to a
/// consumer that reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_frames_time_out() {
    let mut a_cfg = config();
    a_cfg.request_timeout = Duration::from_millis(400);
    let mut b_cfg = config();
    b_cfg.event_capacity = 1;
    let mut a = spawn_with(Policy::Direct, memory(), a_cfg);
    let mut b = spawn_with(Policy::Direct, memory(), b_cfg);
    // `Listening` fills b's one-slot channel and nobody reads it yet.
    let b_addr = b.handle.listen(ma("/memory/0")).await.unwrap();
    a.handle.dial(b_addr).await.unwrap();
    wait_connected(&mut a.events, b.peer).await;
    let sent = tokio::time::timeout(PATIENCE, a.handle.send_frame(b.peer, b"stalled".to_vec())).await.unwrap();
    assert!(matches!(sent, Err(Error::SendFailed(_))), "{sent:?}");

    // b's consumer reads again; the resent frame is acknowledged.
    let (got, sent) = tokio::join!(recv_frames(&mut b.events, 1), a.handle.send_frame(b.peer, b"stalled".to_vec()));
    sent.unwrap();
    assert_eq!(got[0], (a.peer, b"stalled".to_vec()));
}

/// A frame stream closes after `idle_connection_timeout` without frames, then
/// the connection; the next frame dials the peer again by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_close_and_reopen() {
    let mut cfg = config();
    cfg.idle_connection_timeout = Duration::from_millis(300);
    let mut a = spawn_with(Policy::Direct, vec![Arc::new(Tcp::new())], cfg.clone());
    let mut b = spawn_with(Policy::Direct, vec![Arc::new(Tcp::new())], cfg);
    let b_addr = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    a.handle.dial(b_addr).await.unwrap();
    a.handle.send_frame(b.peer, b"one".to_vec()).await.unwrap();
    b.handle.send_frame(a.peer, b"two".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await[0].1, b"one");
    assert_eq!(recv_frames(&mut a.events, 1).await[0].1, b"two");
    wait_disconnected(&mut a.events, b.peer).await;
    wait_disconnected(&mut b.events, a.peer).await;
    assert!(a.handle.connected_peers().await.unwrap().is_empty());

    // Not connected: the frame dials b (by peer id, with the address a used before).
    a.handle.send_frame(b.peer, b"three".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await[0], (a.peer, b"three".to_vec()));
}

/// A peer nobody knows an address of cannot be sent to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_peer_fails() {
    let a = spawn(Policy::Direct, memory());
    let stranger = veil_transports::peer_id_of(&key()).unwrap();
    let sent = tokio::time::timeout(PATIENCE, a.handle.send_frame(stranger, b"hello?".to_vec())).await.unwrap();
    assert!(matches!(sent, Err(Error::SendFailed(_))), "{sent:?}");
}
