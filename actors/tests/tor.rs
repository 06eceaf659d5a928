//! Nodes under `anonymous`, with Tor as their only transport, on a private
//! Tor network on loopback: a group whose members are never online
//! together converges through a blind replication node, every one of them
//! (and the rendezvous server) reachable only as an onion service. Needs
//! the `tor` binary; without it the test skips with the reason, or fails
//! when `VEIL_FULL_TESTS=1` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::{sync::Arc, time::Duration};

use veil_actors::Node;
use veil_crypto::time::{ManualClock, UnixTime};
use veil_storage::keystore::KdfParams;
use veil_testkit::node::{self, T0, until_within};
use veil_tor::{Tor, TorConfig, testnet::TestNetwork};
use veil_transports::{NetworkConfig, Policy, TransportPlugin, libp2p::Multiaddr, libp2p::multiaddr::Protocol};

const NETWORK_START: Duration = Duration::from_secs(150);
/// How long one step over Tor may take on one busy core (`just stress`).
const TOR_WAIT: Duration = Duration::from_secs(240);

fn tor(dir: &tempfile::TempDir, net: &TestNetwork) -> Tor {
    Tor::start(TorConfig::new(dir.path().join("tor")).on_network(net.network())).unwrap()
}

/// Waits until `node` listens on its onion service; that address.
async fn onion_of(node: &Node) -> Multiaddr {
    let mut events = node.events();
    let onion = || async {
        node.network_status().await.unwrap().listen_addrs.into_iter().find(veil_transports::policy::is_onion)
    };
    until_within(TOR_WAIT, &mut events, || async { onion().await.is_some() }).await;
    onion().await.unwrap()
}

async fn anonymous(dir: &tempfile::TempDir, clock: &ManualClock, tor: &Tor, server: &[Multiaddr]) -> Node {
    let plugin: Arc<dyn TransportPlugin> = Arc::new(tor.clone());
    node::peer_builder(dir, clock, server, vec![(plugin, tor.listen_addr())], node::schedule())
        .policy(Policy::Anonymous)
        .join_timeout(TOR_WAIT)
        .spawn()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_node_reached_over_tor_brings_an_absent_member_up_to_date() {
    if let Err(reason) = veil_tor::testnet::available() {
        assert!(std::env::var("VEIL_FULL_TESTS").as_deref() != Ok("1"), "VEIL_FULL_TESTS=1 but {reason}");
        eprintln!("skipped: {reason}");
        return;
    }
    const COUNT: usize = 10;
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut net = TestNetwork::start(&dirs[4].path().join("tornet")).unwrap();
    tokio::task::block_in_place(|| net.wait_ready(NETWORK_START)).unwrap();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let tors: Vec<Tor> = dirs[..4].iter().map(|d| tor(d, &net)).collect();

    // The rendezvous server: an onion service, keeping its peer id.
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.rendezvous_server = true;
    let server = Node::builder()
        .data_dir(dirs[0].path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .network_config(config)
        .policy(Policy::Anonymous)
        .rotate_network_key_each_period(false)
        .transport(Arc::new(tors[0].clone()))
        .listen(tors[0].listen_addr())
        .spawn()
        .await
        .unwrap();
    let server_id = server.network_status().await.unwrap().peer_id;
    let addr = vec![onion_of(&server).await.with(Protocol::P2p(server_id))];

    let a = anonymous(&dirs[1], &clock, &tors[1], &addr).await;
    let b = anonymous(&dirs[2], &clock, &tors[2], &addr).await;
    let r = anonymous(&dirs[3], &clock, &tors[3], &addr).await;
    let (group, _) = node::group_between_within(TOR_WAIT, &a, &b).await;
    let replication = r.replicate(&a.replication_credential(&group).await.unwrap()).await.unwrap();

    // B goes away; A writes and the replication node takes it all; then A
    // goes away too, and B comes back: only the replica can serve B.
    b.shutdown().await.unwrap();
    drop(b);
    for i in 0..COUNT {
        a.send(&group, format!("kept by the replica {i}").as_bytes()).await.unwrap();
    }
    let written: Vec<Vec<u8>> = a.history(&group, None, 100).await.unwrap().into_iter().map(|h| h.payload).collect();
    node::until_replicated_within(TOR_WAIT, &r, &replication, &a, &group).await;
    a.shutdown().await.unwrap();
    drop(a);
    let b = anonymous(&dirs[2], &clock, &tors[2], &addr).await;
    let mut events = b.events();
    until_within(TOR_WAIT, &mut events, || async { b.history(&group, None, 100).await.unwrap().len() == COUNT }).await;
    let read: Vec<Vec<u8>> = b.history(&group, None, 100).await.unwrap().into_iter().map(|h| h.payload).collect();
    assert_eq!(read, written);

    // Over Tor only: every node listens on an onion address and nothing else.
    for n in [&b, &r, &server] {
        let status = n.network_status().await.unwrap();
        assert!(status.listen_addrs.iter().all(veil_transports::policy::is_onion), "{status:?}");
        assert!(status.connections.iter().all(|c| c.transport.as_str() == "tor"), "{status:?}");
    }
    for n in [b, r, server] {
        n.shutdown().await.unwrap();
    }
}
