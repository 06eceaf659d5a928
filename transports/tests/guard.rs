//! The network task is guarded like an actor: a panic inside it (here a
//! buggy plug-in's `build`) rebuilds the swarm with the same identity
//! instead of ending the task; the handle and the event channel carry on,
//! and a frame sent across the panic arrives (sent again by its sender).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use veil_testkit::network::*;
use veil_testkit::plugins::Buggy;
use veil_transports::{Error, Memory, NetworkEvent, Policy, TransportId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_network_task_rebuilds_its_swarm_and_the_network_carries_on() {
    let mut a = spawn(Policy::Direct, vec![Arc::new(Memory::new())]);
    let mut b = spawn(Policy::Direct, vec![Arc::new(Memory::new())]);
    let b_addr = b.handle.listen(ma("/memory/0")).await.unwrap();
    a.handle.dial(b_addr.clone()).await.unwrap();
    a.handle.send_frame(b.peer, b"before".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await[0], (a.peer, b"before".to_vec()));

    // The panic ends the call that caused it, not the network.
    assert!(matches!(a.handle.attach(Arc::new(Buggy)).await, Err(Error::Shutdown)));
    wait_for(&mut a.events, |e| matches!(e, NetworkEvent::Restarted { peer_id } if peer_id == a.peer).then_some(()))
        .await;
    wait_disconnected(&mut b.events, a.peer).await;
    assert_eq!(a.handle.local_peer_id().await.unwrap(), a.peer, "the same identity");
    assert_eq!(a.handle.transports().await.unwrap(), vec![TransportId::MEMORY], "the buggy plug-in is not attached");

    // Reachable both ways again.
    a.handle.dial(b_addr).await.unwrap();
    a.handle.send_frame(b.peer, b"after".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await[0], (a.peer, b"after".to_vec()));
    b.handle.send_frame(a.peer, b"reply".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut a.events, 1).await[0], (b.peer, b"reply".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_task_that_keeps_panicking_stops_instead_of_spinning() {
    let a = spawn(Policy::Direct, vec![Arc::new(Memory::new())]);
    // Five panics within the minute are survived; the sixth stops the task
    // (the budget itself is unit-tested with stepped time).
    for _ in 0..5 {
        assert!(a.handle.attach(Arc::new(Buggy)).await.is_err());
        assert_eq!(a.handle.local_peer_id().await.unwrap(), a.peer);
    }
    assert!(a.handle.attach(Arc::new(Buggy)).await.is_err());
    assert!(matches!(a.handle.local_peer_id().await, Err(Error::Shutdown)));
}
