//! Relayed nodes in one process: two contacts that reach each other only
//! through a relay (which also serves rendezvous), a conversation that
//! continues across a period boundary where both take new peer ids, and
//! nothing but circuit addresses learned for either.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use veil_actors::{Node, NodeEvent, RetryPolicy, audit::Observer};
use veil_crypto::time::{ManualClock, UnixTime};
use veil_storage::keystore::KdfParams;
use veil_transports::{
    NetworkConfig, Policy, Tcp,
    libp2p::{Multiaddr, PeerId, multiaddr::Protocol},
    policy::is_circuit,
};

/// A Direct node serving relay and rendezvous on loopback TCP, with a
/// stable peer id; returns it and its dialable address.
async fn relay(dir: &tempfile::TempDir) -> (Node, Multiaddr) {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.relay_server = true;
    config.rendezvous_server = true;
    let node = Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .network_config(config)
        .rotate_network_key_each_period(false)
        .transport(Arc::new(Tcp::new()))
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .spawn()
        .await
        .unwrap();
    let status = node.network_status().await.unwrap();
    let addr = status.listen_addrs[0].clone().with(Protocol::P2p(status.peer_id));
    (node, addr)
}

/// A relayed node using `relay` for circuits and rendezvous; it listens on nothing itself.
async fn relayed(dir: &tempfile::TempDir, clock: &ManualClock, relay: &Multiaddr) -> Node {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.relays = vec![relay.clone()];
    config.rendezvous_servers = vec![relay.clone()];
    Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .clock(Arc::new(clock.clone()))
        .rendezvous_schedule(schedule())
        .rotation_check_interval(Duration::from_millis(50))
        .contact_retry(RetryPolicy { base: Duration::from_millis(100), max: Duration::from_secs(1) })
        .sync_interval(Duration::from_millis(100))
        .policy(Policy::Relayed)
        .network_config(config)
        .transport(Arc::new(Tcp::new()))
        .spawn()
        .await
        .unwrap()
}

/// Waits until the node listens through a relay; returns its peer id.
async fn reachable(node: &Node) -> PeerId {
    let mut events = node.events();
    until(&mut events, || async { node.network_status().await.unwrap().listen_addrs.iter().any(is_circuit) }).await;
    let status = node.network_status().await.unwrap();
    assert!(status.listen_addrs.iter().all(is_circuit), "{:?}", status.listen_addrs);
    status.peer_id
}

async fn exchange(from: &Node, to: &Node, group: &veil_crypto::GroupId, text: &[u8]) {
    let mut events = to.events();
    let hash = from.send(group, text).await.unwrap();
    wait_for(&mut events, |e| matches!(e, NodeEvent::MessageReceived { hash: h, .. } if h == hash).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_contacts_talk_through_the_relay_across_a_rotation() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 1));
    let (relay_node, relay_addr) = relay(&dirs[0]).await;
    let a = relayed(&dirs[1], &clock, &relay_addr).await;
    let b = relayed(&dirs[2], &clock, &relay_addr).await;
    let (a_before, b_before) = (reachable(&a).await, reachable(&b).await);

    let link = b.share_link().await.unwrap().uri;
    let group = befriend(&a, &b, &link).await;
    exchange(&a, &b, &group, b"hello through the relay").await;
    exchange(&b, &a, &group, b"hello back").await;

    // A period boundary: both take a new peer id and the conversation continues.
    let (mut a_events, mut b_events) = (a.events(), b.events());
    clock.advance(PERIOD);
    let restarted = |e| matches!(e, NodeEvent::NetworkRestarted { .. }).then_some(());
    wait_for(&mut a_events, restarted).await;
    wait_for(&mut b_events, restarted).await;
    let (a_after, b_after) = (reachable(&a).await, reachable(&b).await);
    assert_ne!(a_after, a_before);
    assert_ne!(b_after, b_before);
    exchange(&a, &b, &group, b"after the rotation").await;
    exchange(&b, &a, &group, b"still here").await;

    // Everything either learned about the other's peer ids is a circuit.
    for (node, other) in [(&b, [a_before, a_after]), (&a, [b_before, b_after])] {
        let learned = node.learned_addresses().await.unwrap();
        let about: Vec<_> = learned.iter().filter(|l| other.contains(&l.peer)).collect();
        assert!(!about.is_empty(), "{learned:?}");
        // A connection accepted through the relay names its peer only (`/p2p/<id>`).
        let no_network_address = |a: &Multiaddr| a.iter().all(|p| matches!(p, Protocol::P2p(_)));
        assert!(about.iter().all(|l| is_circuit(&l.addr) || no_network_address(&l.addr)), "{about:?}");
    }

    // The audit says the same: only the relay sees the IP.
    let report = a.audit().await.unwrap();
    assert_eq!(report.policy, Policy::Relayed);
    assert!(report.rotating_peer_id);
    let relay_row = report.exposures.iter().find(|e| e.observer == Observer::Relay).unwrap();
    assert!(relay_row.applies && relay_row.learns.iter().any(|l| l.contains("IP address")));
    let contact_row = report.exposures.iter().find(|e| e.observer == Observer::Contact).unwrap();
    assert!(contact_row.learns.iter().all(|l| !l.contains("your IP address")));

    for n in [a, b, relay_node] {
        n.shutdown().await.unwrap();
    }
}
