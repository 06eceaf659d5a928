//! Relayed nodes in one process: two contacts that reach each other only
//! through a relay (which also serves rendezvous), a conversation that
//! continues across a period boundary where both take new peer ids, and
//! nothing but circuit addresses learned for either.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use veil_actors::{Node, NodeEvent, RetryPolicy, audit::Observer};
use veil_crypto::time::{ManualClock, UnixTime};
use veil_storage::keystore::KdfParams;
use veil_testkit::node::*;
use veil_transports::{KnownRelay, RelayOrigin};
use veil_transports::{
    NetworkConfig, Policy, Tcp,
    libp2p::{Multiaddr, PeerId, multiaddr::Protocol},
    policy::{is_circuit, peer_of, relay_hop},
};

/// A Direct node serving relay and rendezvous on loopback TCP.
async fn relay(dir: &tempfile::TempDir) -> (Node, Multiaddr) {
    server(dir, true, true).await
}

/// A Direct node serving the roles asked for on loopback TCP, with a stable peer id;
/// returns it and its dialable address.
async fn server(dir: &tempfile::TempDir, relay: bool, rendezvous: bool) -> (Node, Multiaddr) {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.relay_server = relay;
    config.rendezvous_server = rendezvous;
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
    relayed_with(dir, clock, vec![relay.clone()], relay).await
}

/// A relayed node knowing `relays`, with `rendezvous` as its rendezvous server.
async fn relayed_with(
    dir: &tempfile::TempDir,
    clock: &ManualClock,
    relays: Vec<Multiaddr>,
    rendezvous: &Multiaddr,
) -> Node {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.relays = relays;
    config.rendezvous_servers = vec![rendezvous.clone()];
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

/// The relay peer id of a circuit address.
fn through(addr: &Multiaddr) -> Option<PeerId> {
    relay_hop(addr).as_ref().and_then(peer_of)
}

/// Waits until the node listens through `relay` only.
async fn reachable_through(node: &Node, relay: &Multiaddr) {
    let relay = peer_of(relay);
    let mut events = node.events();
    until(&mut events, || async {
        let addrs = node.network_status().await.unwrap().listen_addrs;
        !addrs.is_empty() && addrs.iter().all(|a| through(a) == relay)
    })
    .await;
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

/// Two contacts on different relays: each learns the other's relay once the
/// other proved it is the contact, and a relayed node whose relay went away
/// moves to the relay it learned (its only configured relay is gone), where
/// the conversation goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_learned_from_a_contact_takes_over_when_the_configured_one_is_gone() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 1));
    // The rendezvous server serves no relay; it is listed among the relays
    // only because a relayed node talks directly to relays alone. Its
    // refused reservations are left out of later draws of the period, so
    // A ends up on R1 and B on R2.
    let (server_node, server_addr) = server(&dirs[0], false, true).await;
    let (r1_node, r1) = server(&dirs[1], true, false).await;
    let (r2_node, r2) = server(&dirs[2], true, false).await;
    let a = relayed_with(&dirs[3], &clock, vec![server_addr.clone(), r1.clone()], &server_addr).await;
    let b = relayed_with(&dirs[4], &clock, vec![server_addr.clone(), r2.clone()], &server_addr).await;
    reachable_through(&a, &r1).await;
    reachable_through(&b, &r2).await;
    let configured = |addr: &Multiaddr| KnownRelay { addr: addr.clone(), origin: RelayOrigin::Configured };
    assert_eq!(a.known_relays().await.unwrap(), vec![configured(&server_addr), configured(&r1)]);

    let (mut a_events, mut b_events) = (a.events(), b.events());
    let link = b.share_link().await.unwrap().uri;
    let group = befriend(&a, &b, &link).await;
    exchange(&a, &b, &group, b"from r1 to r2").await;
    exchange(&b, &a, &group, b"from r2 to r1").await;

    // Each learned the relay the other is reachable through.
    let learned = |relay: Multiaddr| {
        move |e| match e {
            NodeEvent::RelaysLearned { relays } if relays.contains(&relay) => Some(()),
            _ => None,
        }
    };
    wait_for(&mut a_events, learned(r2.clone())).await;
    wait_for(&mut b_events, learned(r1.clone())).await;
    let a_known = a.known_relays().await.unwrap();
    assert_eq!(a_known[2..], [KnownRelay { addr: r2.clone(), origin: RelayOrigin::Learned }]);
    let report = a.audit().await.unwrap();
    let relay_row = report.exposures.iter().find(|e| e.observer == Observer::Relay).unwrap();
    assert!(relay_row.learns.iter().any(|l| l.contains("among 3 known (1 learned from contacts)")), "{relay_row:?}");

    // R1 goes away: A's draws leave out what failed and land on R2, which
    // it knows only from B.
    r1_node.shutdown().await.unwrap();
    reachable_through(&a, &r2).await;
    exchange(&b, &a, &group, b"to you on r2").await;
    exchange(&a, &b, &group, b"from r2 too").await;

    for n in [a, b, server_node, r2_node] {
        n.shutdown().await.unwrap();
    }
}
