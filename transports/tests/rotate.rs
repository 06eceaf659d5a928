//! Rotating the network key: a new peer id, same handle, reachable again;
//! nothing made for the old peer id leaves from the new one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use veil_testkit::network::*;
use veil_transports::{Error, Memory, NetworkEvent, Policy, Tcp, TransportPlugin};

async fn rotate_over(plugins: fn() -> Vec<Arc<dyn TransportPlugin>>, listen: &str) {
    let mut a = spawn(Policy::Direct, plugins());
    let mut b = spawn(Policy::Direct, plugins());
    let b_addr = b.handle.listen(ma(listen)).await.unwrap();
    a.handle.dial(b_addr).await.unwrap();
    a.handle.send_frame(b.peer, b"before".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await[0], (a.peer, b"before".to_vec()));
    assert_eq!(b.handle.local_peer_id().await.unwrap(), b.peer);

    let new_key = key();
    let new_peer = veil_transports::peer_id_of(&new_key).unwrap();
    let rotated = b.handle.rotate(&new_key).await.unwrap();
    assert_eq!(rotated, new_peer);
    assert_ne!(rotated, b.peer);
    assert_eq!(b.handle.local_peer_id().await.unwrap(), new_peer);

    // The old identity's connection is gone on both sides.
    wait_disconnected(&mut b.events, a.peer).await;
    wait_for(&mut b.events, |e| matches!(e, NetworkEvent::Restarted { peer_id } if peer_id == new_peer).then_some(()))
        .await;
    wait_disconnected(&mut a.events, b.peer).await;
    // Sending to the old peer id fails (it no longer exists).
    assert!(matches!(a.handle.send_frame(b.peer, b"lost".to_vec()).await, Err(Error::SendFailed(_))));

    // b listens again (on a fresh port) and is reachable under the new id.
    let new_addr = wait_for(&mut b.events, |e| match e {
        NetworkEvent::Listening { addr } => Some(addr),
        _ => None,
    })
    .await;
    assert_eq!(a.handle.dial(new_addr).await.unwrap(), new_peer);
    a.handle.send_frame(new_peer, b"after".to_vec()).await.unwrap();
    let got = recv_frames(&mut b.events, 1).await;
    assert_eq!(got[0], (a.peer, b"after".to_vec()));
    // A frame made for the old identity is never sent from the new one,
    // whether a frame stream must be opened for it or one is open.
    let (old, handle) = (b.peer, b.handle.clone());
    let stale = || handle.send_frame_as(old, a.peer, b"stale".to_vec());
    assert!(matches!(stale().await, Err(Error::Restarted)));
    // And it can send under the new identity.
    b.handle.send_frame_as(new_peer, a.peer, b"reply".to_vec()).await.unwrap();
    assert!(matches!(stale().await, Err(Error::Restarted)));
    b.handle.send_frame(a.peer, b"reply 2".to_vec()).await.unwrap();
    let got = recv_frames(&mut a.events, 2).await;
    assert_eq!(got, [(new_peer, b"reply".to_vec()), (new_peer, b"reply 2".to_vec())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_over_memory() {
    rotate_over(|| vec![Arc::new(Memory::new())], "/memory/0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_over_tcp() {
    rotate_over(|| vec![Arc::new(Tcp::new())], "/ip4/127.0.0.1/tcp/0").await;
}

/// A consumer that does not read gets no frames acknowledged (the network
/// stops reading from its connections), and frames in flight when the key
/// rotates fail on both sides, to be resent by the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_and_frames_in_flight_on_rotation() {
    let mut cfg = config();
    cfg.event_capacity = 1;
    let mut a = spawn(Policy::Direct, vec![Arc::new(Memory::new())]);
    let mut b = spawn_with(Policy::Direct, vec![Arc::new(Memory::new())], cfg);
    // `Listening` fills b's one-slot channel; b's consumer does not read yet,
    // so `PeerConnected` waits in b's queue and b stops reading the swarm.
    let addr = b.handle.listen(ma("/memory/0")).await.unwrap();
    a.handle.dial(addr).await.unwrap();
    wait_connected(&mut a.events, b.peer).await;

    // a's frame to the stalled b: not acknowledged.
    let a_to_b = {
        let h = a.handle.clone();
        let b_peer = b.peer;
        tokio::spawn(async move { h.send_frame(b_peer, b"to b".to_vec()).await })
    };
    // b's own frame, queued before the rotation (one poll enqueues the command).
    let mut b_to_a = Box::pin(b.handle.send_frame(a.peer, b"to a".to_vec()));
    assert!(futures::poll!(&mut b_to_a).is_pending());

    let old = b.peer;
    let new_peer = b.handle.rotate(&key()).await.unwrap();
    assert_ne!(new_peer, old);
    // In flight on the rotating side: it fails, to be resent — `Restarted`,
    // or, when the stalled swarm had not registered a's connection yet and
    // its dial found no address before the rotation, `SendFailed` (1 run in
    // ~40 here). Either way it was not delivered (checked below).
    let in_flight = b_to_a.await;
    assert!(matches!(in_flight, Err(Error::Restarted | Error::SendFailed(_))), "{in_flight:?}");
    // In flight towards it: the connection went away.
    let result = tokio::time::timeout(PATIENCE, a_to_b).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::SendFailed(_))), "{result:?}");
    wait_disconnected(&mut a.events, old).await;

    // b's consumer catches up: the unacknowledged frame was never delivered,
    // and the old identity's events come first.
    wait_for(&mut b.events, |e| match e {
        NetworkEvent::FrameReceived { .. } => panic!("an unacknowledged frame was delivered"),
        NetworkEvent::Restarted { peer_id } => {
            assert_eq!(peer_id, new_peer);
            Some(())
        }
        _ => None,
    })
    .await;
    let new_addr = wait_for(&mut b.events, |e| match e {
        NetworkEvent::FrameReceived { .. } => panic!("an unacknowledged frame was delivered"),
        NetworkEvent::Listening { addr } => Some(addr),
        _ => None,
    })
    .await;

    // Resent after reconnecting, both frames arrive.
    assert_eq!(a.handle.dial(new_addr).await.unwrap(), new_peer);
    let (from_a, ()) = tokio::join!(recv_frames(&mut b.events, 1), async {
        a.handle.send_frame(new_peer, b"to b".to_vec()).await.unwrap();
    });
    assert_eq!(from_a[0], (a.peer, b"to b".to_vec()));
    b.handle.send_frame(a.peer, b"to a".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut a.events, 1).await[0], (new_peer, b"to a".to_vec()));
}
