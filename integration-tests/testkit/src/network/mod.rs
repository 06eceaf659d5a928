//! Bare transports networks (no actors) in this process, waits on their
//! events, and a TCP proxy that records and freezes.

mod proxy;

pub use proxy::Proxy;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use veil_actors::crypto::{NetworkKey, OsEntropy};
use veil_actors::transports::libp2p::{Multiaddr, PeerId};
use veil_actors::transports::{
    Network, NetworkConfig, NetworkEvent, NetworkHandle, Policy, TransportId, TransportPlugin,
};

/// How long any single expected event may take (a bound, not a synchronisation).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running network: its handle, its events, its peer id.
#[derive(Debug)]
pub struct RunningNetwork {
    /// Commands to the network.
    pub handle: NetworkHandle,
    /// What it reports.
    pub events: mpsc::Receiver<NetworkEvent>,
    /// Its peer id (of the key it started with).
    pub peer: PeerId,
}

/// A fresh network key.
pub fn key() -> NetworkKey {
    NetworkKey::generate(&mut OsEntropy).unwrap()
}

/// The default configuration without mDNS (tests never multicast).
pub fn config() -> NetworkConfig {
    let mut c = NetworkConfig::default();
    c.mdns = false;
    c
}

/// A network under `policy` with `plugins` and [`config`].
pub fn spawn(policy: Policy, plugins: Vec<Arc<dyn TransportPlugin>>) -> RunningNetwork {
    spawn_with(policy, plugins, config())
}

/// A network under `policy` with `plugins` and `config`.
pub fn spawn_with(policy: Policy, plugins: Vec<Arc<dyn TransportPlugin>>, config: NetworkConfig) -> RunningNetwork {
    let key = key();
    let peer = veil_actors::transports::peer_id_of(&key).unwrap();
    let (handle, events) = Network::spawn(&key, policy, plugins, config).unwrap();
    RunningNetwork { handle, events, peer }
}

/// `s` as an address (a test's literal).
pub fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

/// Waits (bounded by [`PATIENCE`]) for the first event `pick` accepts.
pub async fn wait_for<T>(
    events: &mut mpsc::Receiver<NetworkEvent>,
    mut pick: impl FnMut(NetworkEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let event = events.recv().await.expect("network stopped");
            if let Some(t) = pick(event) {
                return t;
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// Waits for `peer` to connect; returns the transport it came over.
pub async fn wait_connected(events: &mut mpsc::Receiver<NetworkEvent>, peer: PeerId) -> TransportId {
    wait_for(events, |e| match e {
        NetworkEvent::PeerConnected { peer: p, transport } if p == peer => Some(transport),
        _ => None,
    })
    .await
}

/// Waits until every one of `peers` connected, in whatever order the
/// events come (waiting for them one by one would drop the others).
pub async fn wait_all_connected(events: &mut mpsc::Receiver<NetworkEvent>, peers: &[PeerId]) {
    let mut missing: std::collections::HashSet<PeerId> = peers.iter().copied().collect();
    wait_for(events, |e| {
        if let NetworkEvent::PeerConnected { peer, .. } = e {
            missing.remove(&peer);
        }
        missing.is_empty().then_some(())
    })
    .await
}

/// Waits for `peer`'s last connection to close.
pub async fn wait_disconnected(events: &mut mpsc::Receiver<NetworkEvent>, peer: PeerId) {
    wait_for(events, |e| match e {
        NetworkEvent::PeerDisconnected { peer: p } if p == peer => Some(()),
        _ => None,
    })
    .await
}

/// Collects `n` frames (with their senders).
pub async fn recv_frames(events: &mut mpsc::Receiver<NetworkEvent>, n: usize) -> Vec<(PeerId, Vec<u8>)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let f = wait_for(events, |e| match e {
            NetworkEvent::FrameReceived { peer, frame } => Some((peer, frame)),
            _ => None,
        })
        .await;
        out.push(f);
    }
    out
}

/// Consumes a node's events in the background (so its channel never fills).
pub fn drain(mut events: mpsc::Receiver<NetworkEvent>) {
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

/// Frame `i` of a numbered series tagged `tag`.
pub fn frame(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag}-{i:06}").into_bytes()
}

/// The socket address of a `/ip4/<ip>/tcp/<port>…` address.
pub fn socket_of(addr: &Multiaddr) -> std::net::SocketAddr {
    use veil_actors::transports::libp2p::multiaddr::Protocol;
    let mut ip = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(v4) => ip = Some(v4),
            Protocol::Tcp(port) => return std::net::SocketAddr::from((ip.unwrap(), port)),
            _ => {}
        }
    }
    panic!("not a TCP address: {addr}")
}
