//! Privacy policies enforced by running networks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use veil_testkit::network::*;
use veil_transports::policy::is_circuit;
use veil_transports::{Error, Memory, NetworkEvent, Policy, Quic, Tcp, TransportId, TransportKind, TransportPlugin};

fn tcp() -> Arc<dyn TransportPlugin> {
    Arc::new(Tcp::new())
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, Error>, policy: Policy) {
    match r {
        Err(Error::PolicyForbids { policy: p, .. }) => assert_eq!(p, policy),
        other => panic!("expected PolicyForbids, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_refuses_ip_and_talks_over_a_mixnet() {
    let mut target = spawn(Policy::Direct, vec![tcp()]);
    let target_addr = target.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();

    let tor = || {
        Arc::new(Memory::emulating(TransportId::from_static("tor"), TransportKind::Mixnet)) as Arc<dyn TransportPlugin>
    };
    let mut anon = spawn(Policy::Anonymous, vec![tcp(), Arc::new(Quic::new()), tor()]);
    forbidden(anon.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await, Policy::Anonymous);
    forbidden(anon.handle.listen(ma("/ip4/127.0.0.1/udp/0/quic-v1")).await, Policy::Anonymous);
    forbidden(anon.handle.dial(target_addr.clone()).await, Policy::Anonymous);
    // Nothing reached libp2p: no listener, no connection.
    assert!(anon.handle.listen_addrs().await.unwrap().is_empty());
    assert!(anon.handle.connected_peers().await.unwrap().is_empty());
    assert!(target.handle.connected_peers().await.unwrap().is_empty());

    // The mixnet stand-in works.
    let mut other = spawn(Policy::Anonymous, vec![tor()]);
    let addr = other.handle.listen(ma("/memory/0")).await.unwrap();
    anon.handle.dial(addr).await.unwrap();
    assert_eq!(wait_connected(&mut anon.events, other.peer).await.as_str(), "tor");
    anon.handle.send_frame(other.peer, b"via tor".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut other.events, 1).await[0].1, b"via tor");

    // Switching an IP-connected node to Anonymous drops its IP listener and connections.
    let mut direct = spawn(Policy::Direct, vec![tcp()]);
    direct.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    direct.handle.dial(target_addr).await.unwrap();
    wait_connected(&mut direct.events, target.peer).await;
    direct.handle.set_policy(Policy::Anonymous).await.unwrap();
    wait_disconnected(&mut direct.events, target.peer).await;
    wait_disconnected(&mut target.events, direct.peer).await;
    assert!(direct.handle.listen_addrs().await.unwrap().is_empty());
}

/// Back from a stricter policy, the listeners it closed open again, even
/// while a listener it allowed (an onion service) is open: a conversation
/// moved to Tor and back must be reachable over TCP again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_a_policy_closed_reopen_when_a_policy_allows_them() {
    let tor = || Arc::new(Memory::emulating(TransportId::from_static("tor"), TransportKind::Mixnet));
    let mut node = spawn(Policy::Direct, vec![tcp(), tor()]);
    node.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    for _ in 0..2 {
        node.handle.set_policy(Policy::Anonymous).await.unwrap();
        listening(&mut node, &[]).await;
        node.handle.listen(ma("/memory/0")).await.unwrap();
        node.handle.set_policy(Policy::Direct).await.unwrap();
        // One TCP listener, not one per round trip.
        listening(&mut node, &["ip4", "memory"]).await;
        node.handle.detach(TransportId::from_static("tor")).await.unwrap();
        listening(&mut node, &["ip4"]).await;
        node.handle.attach(tor()).await.unwrap();
    }
}

/// Waits (bounded by [`PATIENCE`]) until `node` listens on exactly one
/// address of each of `kinds` (the first protocol of each address, sorted):
/// checked now and again at each event.
async fn listening(node: &mut RunningNetwork, kinds: &[&str]) {
    let now = async |node: &RunningNetwork| {
        let mut now: Vec<String> = node
            .handle
            .listen_addrs()
            .await
            .unwrap()
            .iter()
            .map(|a| a.iter().next().map(|p| p.tag().to_owned()).unwrap_or_default())
            .collect();
        now.sort();
        now
    };
    let reached = tokio::time::timeout(PATIENCE, async {
        while now(node).await != kinds {
            node.events.recv().await.expect("network stopped");
        }
    })
    .await;
    assert!(reached.is_ok(), "listening on {:?}, not {kinds:?}", now(node).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_refuses_direct_dial_and_listen() {
    let target = spawn(Policy::Direct, vec![tcp()]);
    let target_addr = target.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    let relayed = spawn(Policy::Relayed, vec![tcp()]);
    forbidden(relayed.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await, Policy::Relayed);
    forbidden(relayed.handle.listen(ma("/ip4/0.0.0.0/tcp/0")).await, Policy::Relayed);
    forbidden(relayed.handle.dial(target_addr.clone()).await, Policy::Relayed);
    let with_peer = target_addr.with_p2p(target.peer).unwrap();
    forbidden(relayed.handle.dial(with_peer.clone()).await, Policy::Relayed);
    // A circuit through a relay that is not configured cannot be listened on.
    let circuit = with_peer.with(libp2p::multiaddr::Protocol::P2pCircuit);
    forbidden(relayed.handle.listen(circuit).await, Policy::Relayed);
    assert!(relayed.handle.listen_addrs().await.unwrap().is_empty());
    assert!(target.handle.connected_peers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_allows_only_the_lan() {
    let mut cfg = config();
    cfg.mdns = false; // Offline turns mDNS on regardless; it may be unavailable here.
    let mut a = spawn_with(Policy::Offline, vec![tcp()], cfg.clone());
    let mut b = spawn_with(Policy::Offline, vec![tcp()], cfg);
    forbidden(a.handle.dial(ma("/ip4/8.8.8.8/tcp/4001")).await, Policy::Offline);
    forbidden(a.handle.dial(ma("/ip6/2001:4860:4860::8888/tcp/4001")).await, Policy::Offline);
    forbidden(a.handle.listen(ma("/ip4/8.8.8.8/tcp/0")).await, Policy::Offline);

    // A private address is not refused by the policy (the dial itself may fail
    // or hang: nothing listens there).
    let lan = tokio::time::timeout(Duration::from_secs(2), a.handle.dial(ma("/ip4/192.168.77.77/tcp/9"))).await;
    assert!(!matches!(lan, Ok(Err(Error::PolicyForbids { .. }))), "a LAN address was refused: {lan:?}");
    // Loopback works end to end.
    let addr = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    a.handle.dial(addr).await.unwrap();
    wait_connected(&mut a.events, b.peer).await;
    a.handle.send_frame(b.peer, b"lan".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await[0].1, b"lan");
}

/// A relayed node is reachable only through its relay, and identify tells
/// neither the relay nor its contacts any address but the circuit's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_node_is_reachable_only_through_its_relay() {
    let memory = || vec![Arc::new(Memory::new()) as Arc<dyn TransportPlugin>];
    // The relay: a Direct node with the relay server role and a declared address.
    let mut relay_cfg = config();
    relay_cfg.relay_server = true;
    let mut relay = spawn_with(Policy::Direct, memory(), relay_cfg);
    let relay_addr = relay.handle.listen(ma("/memory/0")).await.unwrap();
    relay.handle.add_external_address(relay_addr.clone()).await.unwrap();
    let relay_full = relay_addr.clone().with_p2p(relay.peer).unwrap();

    // x starts Direct with a direct listener, then turns Relayed.
    let mut x_cfg = config();
    x_cfg.relays = vec![relay_full.clone()];
    let mut x = spawn_with(Policy::Direct, memory(), x_cfg);
    let direct_addr = x.handle.listen(ma("/memory/0")).await.unwrap();
    x.handle.set_policy(Policy::Relayed).await.unwrap();
    // The direct listener was not reopened, and cannot be.
    assert!(x.handle.listen_addrs().await.unwrap().is_empty());
    forbidden(x.handle.listen(ma("/memory/0")).await, Policy::Relayed);
    // Forbidden: the policy-refused external address.
    forbidden(x.handle.add_external_address(direct_addr.clone()).await, Policy::Relayed);

    // Listen through the relay.
    let circuit = relay_full.clone().with(libp2p::multiaddr::Protocol::P2pCircuit);
    let x_circuit = x.handle.listen(circuit).await.unwrap();
    assert!(is_circuit(&x_circuit), "{x_circuit}");

    // Control: the Direct relay does announce its listen address to x.
    let relay_told = wait_for(&mut x.events, |e| match e {
        NetworkEvent::PeerIdentified { peer, listen_addrs } if peer == relay.peer => Some(listen_addrs),
        _ => None,
    })
    .await;
    assert!(relay_told.contains(&relay_addr), "{relay_told:?}");

    // What x told the relay about itself.
    let told_relay = wait_for(&mut relay.events, |e| match e {
        NetworkEvent::PeerIdentified { peer, listen_addrs } if peer == x.peer => Some(listen_addrs),
        _ => None,
    })
    .await;
    assert!(told_relay.iter().all(is_circuit), "x announced {told_relay:?}");
    assert!(!told_relay.contains(&direct_addr));

    // A contact reaches x through the circuit and sends a frame.
    let mut c = spawn(Policy::Direct, memory());
    let x_via_relay = x_circuit.clone().with_p2p(x.peer).unwrap_or(x_circuit.clone());
    assert_eq!(c.handle.dial(x_via_relay).await.unwrap(), x.peer);
    assert_eq!(wait_connected(&mut c.events, x.peer).await, TransportId::RELAY);
    let told_contact = wait_for(&mut c.events, |e| match e {
        NetworkEvent::PeerIdentified { peer, listen_addrs } if peer == x.peer => Some(listen_addrs),
        _ => None,
    })
    .await;
    assert!(told_contact.iter().all(is_circuit), "x announced {told_contact:?}");
    eprintln!("relayed x announced to the relay {told_relay:?}, to a contact {told_contact:?}");
    c.handle.send_frame(x.peer, b"through the relay".to_vec()).await.unwrap();
    let got = wait_for(&mut x.events, |e| match e {
        NetworkEvent::FrameReceived { peer, frame } => Some((peer, frame)),
        _ => None,
    })
    .await;
    assert_eq!(got, (c.peer, b"through the relay".to_vec()));

    // x cannot dial the contact directly.
    let c_addr = c.handle.listen(ma("/memory/0")).await.unwrap();
    forbidden(x.handle.dial(c_addr.with_p2p(c.peer).unwrap()).await, Policy::Relayed);
}
