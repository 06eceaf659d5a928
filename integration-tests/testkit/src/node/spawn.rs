//! Starting nodes: the rendezvous node and peers.

use std::{sync::Arc, time::Duration};

use veil_actors::{
    Node, NodeBuilder, RetryPolicy,
    crypto::{rendezvous::Schedule, time::ManualClock},
    storage::keystore::KdfParams,
    transports::{
        Memory, NetworkConfig, Quic, Tcp, TransportPlugin,
        libp2p::{Multiaddr, multiaddr::Protocol},
    },
};

/// Transports to start a node with: each plug-in and the address it listens on.
pub type Transports = Vec<(Arc<dyn TransportPlugin>, Multiaddr)>;

/// The tests' rendezvous period, in seconds.
pub const PERIOD: u64 = 60;
/// How long, in seconds, the previous period's points still answer.
pub const GRACE: u64 = 10;
/// A period start, in Unix seconds: tests move the clock relative to it.
pub const T0: u64 = 1_800_000_000 - 1_800_000_000 % PERIOD;

/// A node serving rendezvous on the memory transport and on loopback TCP and
/// QUIC, keeping its peer id (clients address it by it); returns it and its
/// dialable addresses, `/p2p/…` included.
pub async fn rendezvous_server(dir: &tempfile::TempDir) -> (Node, Vec<Multiaddr>) {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.rendezvous_server = true;
    let mut builder = Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .network_config(config)
        .rotate_network_key_each_period(false);
    for (transport, addr) in memory().into_iter().chain(both_transports()) {
        builder = builder.transport(transport).listen(addr);
    }
    let node = builder.spawn().await.unwrap();
    let status = node.network_status().await.unwrap();
    let p2p = Protocol::P2p(status.peer_id);
    (node, status.listen_addrs.into_iter().map(|a| a.with(p2p.clone())).collect())
}

/// The memory transport: nodes of this process reach each other without a
/// socket.
pub fn memory() -> Transports {
    vec![(Arc::new(Memory::new()), "/memory/0".parse().unwrap())]
}

/// Loopback TCP only.
pub fn tcp() -> Transports {
    vec![(Arc::new(Tcp::new()), "/ip4/127.0.0.1/tcp/0".parse().unwrap())]
}

/// TCP and QUIC on loopback.
pub fn both_transports() -> Transports {
    vec![
        (Arc::new(Tcp::new()), "/ip4/127.0.0.1/tcp/0".parse().unwrap()),
        (Arc::new(Quic::new()), "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()),
    ]
}

/// The tests' rendezvous schedule: one-minute periods, ten seconds of grace.
pub fn schedule() -> Schedule {
    Schedule::new(PERIOD, GRACE).unwrap()
}

/// A peer on the memory transport, using `server` for rendezvous.
pub async fn peer(dir: &tempfile::TempDir, clock: &ManualClock, server: &[Multiaddr]) -> Node {
    peer_on(dir, clock, server, memory(), schedule()).await
}

/// A peer on the given transports and schedule, using `server` for rendezvous.
pub async fn peer_on(
    dir: &tempfile::TempDir,
    clock: &ManualClock,
    server: &[Multiaddr],
    transports: Transports,
    schedule: Schedule,
) -> Node {
    peer_builder(dir, clock, server, transports, schedule).spawn().await.unwrap()
}

/// The builder of [`peer_on`], for tests that set more. The peer is given
/// all of `server`'s addresses, and uses those its transports can dial.
pub fn peer_builder(
    dir: &tempfile::TempDir,
    clock: &ManualClock,
    server: &[Multiaddr],
    transports: Transports,
    schedule: Schedule,
) -> NodeBuilder {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.rendezvous_servers = server.to_vec();
    let mut builder = Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .clock(Arc::new(clock.clone()))
        .rendezvous_schedule(schedule)
        .rotation_check_interval(Duration::from_millis(50))
        .contact_retry(RetryPolicy { base: Duration::from_millis(100), max: Duration::from_secs(1) })
        .sync_interval(Duration::from_millis(100))
        .network_config(config);
    for (transport, addr) in transports {
        builder = builder.transport(transport).listen(addr);
    }
    builder
}
