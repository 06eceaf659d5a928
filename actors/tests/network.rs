//! The transport manager through the node facade: frames between nodes over
//! memory, TCP and QUIC; hot swap in the middle of a stream; policy
//! refusals; supervision; peer-id rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::{sync::broadcast, time::timeout};
use veil_actors::{ActorKind, Error, Node, NodeEvent};
use veil_storage::keystore::KdfParams;
use veil_transports::{
    Memory, NetworkConfig, Policy, Quic, Tcp, TransportId, TransportPlugin,
    libp2p::{Multiaddr, PeerId},
};

const WAIT: Duration = Duration::from_secs(30);

async fn node(dir: &tempfile::TempDir, transports: Vec<Arc<dyn TransportPlugin>>, policy: Policy) -> Node {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    let mut b = Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .policy(policy)
        .network_config(config);
    for t in transports {
        b = b.transport(t);
    }
    b.spawn().await.unwrap()
}

/// Frames carry a big-endian sequence number; collects distinct ones.
async fn receive(events: &mut broadcast::Receiver<NodeEvent>, from: PeerId, seen: &mut BTreeSet<u32>, until: usize) {
    while seen.len() < until {
        match timeout(WAIT, events.recv()).await.expect("frames keep arriving").expect("event channel open") {
            NodeEvent::FrameReceived { peer, frame } if peer == from => {
                seen.insert(u32::from_be_bytes(frame[..4].try_into().unwrap()));
            }
            _ => {}
        }
    }
}

/// Sends frame `i`, retrying while the network or the manager is being
/// swapped or restarted (what the storage outbox does for real traffic).
async fn send_reliably(from: &Node, to: PeerId, i: u32, redial: Option<&Multiaddr>) {
    for _ in 0..200 {
        match from.send_frame(to, i.to_be_bytes().to_vec()).await {
            Ok(()) => return,
            Err(Error::Network(_)) | Err(Error::Restarting(_)) | Err(Error::Unavailable(_)) => {
                if let Some(addr) = redial {
                    let _ = from.dial(addr.clone()).await;
                }
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    panic!("frame {i} could not be delivered");
}

#[tokio::test]
async fn frames_flow_between_two_nodes_over_memory_tcp_and_quic() {
    for (name, transport, listen) in [
        ("memory", Arc::new(Memory::new()) as Arc<dyn TransportPlugin>, "/memory/0"),
        ("tcp", Arc::new(Tcp::new()), "/ip4/127.0.0.1/tcp/0"),
        ("quic", Arc::new(Quic::new()), "/ip4/127.0.0.1/udp/0/quic-v1"),
    ] {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = node(&da, vec![transport.clone()], Policy::Direct).await;
        let b = node(&db, vec![transport], Policy::Direct).await;
        let addr = a.listen(listen.parse().unwrap()).await.unwrap();
        let a_id = b.dial(addr).await.unwrap();
        assert_eq!(a.network_status().await.unwrap().peer_id, a_id, "{name}");
        let b_id = b.network_status().await.unwrap().peer_id;
        let mut a_events = a.events();
        for i in 0..50u32 {
            b.send_frame(a_id, i.to_be_bytes().to_vec()).await.unwrap();
        }
        let mut seen = BTreeSet::new();
        receive(&mut a_events, b_id, &mut seen, 50).await;
        assert_eq!(seen, (0..50).collect(), "{name}");
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn detaching_tcp_and_attaching_quic_mid_stream_loses_nothing() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tcp = || Arc::new(Tcp::new()) as Arc<dyn TransportPlugin>;
    let a = node(&da, vec![tcp()], Policy::Direct).await;
    let b = node(&db, vec![tcp()], Policy::Direct).await;
    let mut a_events = a.events();
    let tcp_addr = a.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap();
    let a_id = b.dial(tcp_addr).await.unwrap();
    let b_id = b.network_status().await.unwrap().peer_id;

    const N: u32 = 200;
    let mut seen = BTreeSet::new();
    for i in 0..N / 2 {
        send_reliably(&b, a_id, i, None).await;
    }
    // Swap: TCP out, QUIC in, on both sides, while frames are still owed.
    for n in [&a, &b] {
        n.detach_transport(TransportId::TCP).await.unwrap();
        n.attach_transport(Arc::new(Quic::new())).await.unwrap();
        assert_eq!(n.network_status().await.unwrap().transports, vec![TransportId::QUIC]);
    }
    let quic_addr = a.listen("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()).await.unwrap();
    for i in N / 2..N {
        send_reliably(&b, a_id, i, Some(&quic_addr)).await;
    }
    receive(&mut a_events, b_id, &mut seen, N as usize).await;
    assert_eq!(seen, (0..N).collect(), "every frame arrived");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_policy_refuses_forbidden_dials_and_listens() {
    let d = tempfile::tempdir().unwrap();
    let n = node(&d, vec![Arc::new(Tcp::new())], Policy::Anonymous).await;
    let err = n.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::Network(veil_transports::Error::PolicyForbids { .. })), "{err}");
    let err = n.dial("/ip4/127.0.0.1/tcp/9".parse().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::Network(veil_transports::Error::PolicyForbids { .. })), "{err}");
    assert_eq!(n.network_status().await.unwrap().policy, Policy::Anonymous);
    n.set_policy(Policy::Direct).await.unwrap();
    n.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap();
    n.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_transport_manager_recovers_from_a_panic_mid_stream() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mem = || Arc::new(Memory::new()) as Arc<dyn TransportPlugin>;
    let a = node(&da, vec![mem()], Policy::Direct).await;
    let b = node(&db, vec![mem()], Policy::Direct).await;
    let mut a_events = a.events();
    let addr = a.listen("/memory/0".parse().unwrap()).await.unwrap();
    let a_id = b.dial(addr).await.unwrap();
    let b_id = b.network_status().await.unwrap().peer_id;
    let sender = {
        let b = b.clone();
        tokio::spawn(async move {
            for i in 0..300u32 {
                send_reliably(&b, a_id, i, None).await;
            }
        })
    };
    assert!(matches!(b.inject_panic(ActorKind::TransportManager).await, Err(Error::Restarting(_))));
    assert!(matches!(a.inject_panic(ActorKind::TransportManager).await, Err(Error::Restarting(_))));
    timeout(WAIT, sender).await.unwrap().unwrap();
    let mut seen = BTreeSet::new();
    receive(&mut a_events, b_id, &mut seen, 300).await;
    assert_eq!(seen.len(), 300);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn rotating_the_network_key_changes_the_peer_id() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&da, vec![Arc::new(Tcp::new())], Policy::Direct).await;
    let b = node(&db, vec![Arc::new(Tcp::new())], Policy::Direct).await;
    let before = a.network_status().await.unwrap().peer_id;
    let after = a.rotate_network_key().await.unwrap();
    assert_ne!(before, after);
    assert_eq!(a.network_status().await.unwrap().peer_id, after);
    let account = a.identity().await.unwrap().account.signing.to_bytes();
    let account_peer = PeerId::from_public_key(&veil_transports::libp2p::identity::PublicKey::from(
        veil_transports::libp2p::identity::ed25519::PublicKey::try_from_bytes(&account).unwrap(),
    ));
    assert!(before != account_peer && after != account_peer, "the peer id is never the account key");
    let addr = a.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap();
    assert_eq!(b.dial(addr).await.unwrap(), after);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
