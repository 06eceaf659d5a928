//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use veil_crypto::{NetworkKey, OsEntropy};
use veil_transports::{Network, NetworkConfig, NetworkEvent, NetworkHandle, Policy, TransportId, TransportPlugin};

/// How long any single expected event may take (a bound, not a synchronisation).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Node {
    pub handle: NetworkHandle,
    pub events: mpsc::Receiver<NetworkEvent>,
    pub peer: PeerId,
}

pub fn key() -> NetworkKey {
    NetworkKey::generate(&mut OsEntropy).unwrap()
}

pub fn config() -> NetworkConfig {
    let mut c = NetworkConfig::default();
    c.mdns = false;
    c
}

pub fn plugins(list: &[Arc<dyn TransportPlugin>]) -> Vec<Arc<dyn TransportPlugin>> {
    list.to_vec()
}

pub fn spawn(policy: Policy, plugins: Vec<Arc<dyn TransportPlugin>>) -> Node {
    spawn_with(policy, plugins, config())
}

pub fn spawn_with(policy: Policy, plugins: Vec<Arc<dyn TransportPlugin>>, config: NetworkConfig) -> Node {
    let key = key();
    let peer = veil_transports::peer_id_of(&key).unwrap();
    let (handle, events) = Network::spawn(&key, policy, plugins, config).unwrap();
    Node { handle, events, peer }
}

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

pub fn frame(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag}-{i:06}").into_bytes()
}

/// The socket address of a `/ip4/<ip>/tcp/<port>…` address.
pub fn socket_of(addr: &Multiaddr) -> std::net::SocketAddr {
    use libp2p::multiaddr::Protocol;
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

/// A loopback TCP proxy to a target, for one connection: it records what
/// its client sends, and can be frozen (nothing passes either way, nothing
/// is closed: a partition, as the two ends see it).
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    recording: Arc<std::sync::Mutex<Vec<u8>>>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn to(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recording = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (frozen, _) = tokio::sync::watch::channel(false);
        let (kept, to_server, to_client) = (recording.clone(), frozen.subscribe(), frozen.subscribe());
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(target).await.unwrap();
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pipe(server_read, client_write, to_client, None));
            pipe(client_read, server_write, to_server, Some(kept)).await;
        });
        Self { addr, recording, frozen }
    }

    /// What the client sent so far.
    pub fn recorded(&self) -> Vec<u8> {
        self.recording.lock().unwrap().clone()
    }

    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
    record: Option<Arc<std::sync::Mutex<Vec<u8>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if frozen.wait_for(|f| !f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as the proxy froze wait for the thaw too.
        if frozen.wait_for(|f| !f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some(record) = &record {
            record.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    }
}
