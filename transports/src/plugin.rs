//! The transport plug-in API and the built-in plug-ins.
//!
//! A transport plug-in names itself ([`TransportId`]), says what kind of
//! network it uses ([`TransportKind`], which the privacy [`Policy`](crate::Policy)
//! decides on), tells which addresses it can carry ([`TransportPlugin::handles`])
//! and builds a libp2p transport producing authenticated, multiplexed
//! connections. Transports that only provide byte streams (BLE L2CAP channels,
//! Tor streams) get Noise and yamux from [`authenticate_and_multiplex`].

use std::borrow::Cow;
use std::fmt;

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Transport, noise, quic, tcp, yamux};

use crate::error::Error;

/// The output of every transport the network uses: the authenticated remote
/// peer and a stream multiplexer over the connection.
pub type Connection = (PeerId, StreamMuxerBox);

/// A boxed libp2p transport producing [`Connection`]s.
pub type BoxedTransport = Boxed<Connection>;

/// A transport's short, stable name ("tcp", "quic", "memory", "ble", "tor").
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId(Cow<'static, str>);

impl TransportId {
    /// The built-in TCP transport.
    pub const TCP: Self = Self::from_static("tcp");
    /// The built-in QUIC transport.
    pub const QUIC: Self = Self::from_static("quic");
    /// The built-in in-process memory transport.
    pub const MEMORY: Self = Self::from_static("memory");
    /// Connections through a circuit relay (`/p2p-circuit`). Not a plug-in: the
    /// relay client is part of every network; the hop to the relay goes over a
    /// plug-in transport, and detaching that transport ends the circuits.
    pub const RELAY: Self = Self::from_static("relay");

    /// An id from a static string (no allocation; for built-in plug-ins).
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// An id from a string made at run time (for plug-ins named by configuration).
    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    /// The id as shown in `veil status` and in routes, e.g. `"tcp"`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TransportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransportId({})", self.0)
    }
}

/// What kind of network a transport uses; the privacy policy decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// The IP network (TCP, QUIC, WebSocket, …): reveals the IP address to the peer.
    Ip,
    /// In-process channels (tests). Treated like a LAN: allowed offline, only to
    /// relays when relayed, never when anonymous.
    Memory,
    /// Short-range radio links (BLE): reveal physical presence, not an IP address.
    Proximity,
    /// A mixnet or onion network (Tor): hides the IP address from the peer.
    Mixnet,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ip => "ip",
            Self::Memory => "memory",
            Self::Proximity => "proximity",
            Self::Mixnet => "mixnet",
        })
    }
}

/// A transport that can be attached to (and detached from) a running network.
///
/// Implementations are cheap configuration objects: [`build`](Self::build) is
/// called again whenever the network restarts with a new identity, so it must
/// not consume anything.
pub trait TransportPlugin: Send + Sync + 'static {
    /// The transport's name; unique among the attached transports.
    fn id(&self) -> TransportId;

    /// The kind of network this transport uses.
    fn kind(&self) -> TransportKind;

    /// Whether this transport can dial/listen on `addr` (routing, no I/O).
    ///
    /// A trailing `/p2p/<peer id>` must be accepted; `/p2p-circuit` addresses
    /// must not be (the relay client handles those).
    fn handles(&self, addr: &Multiaddr) -> bool;

    /// Builds the libp2p transport producing authenticated, multiplexed connections.
    fn build(&self, keypair: &Keypair) -> Result<BoxedTransport, Error>;
}

/// Turns a byte-stream transport into one producing authenticated, multiplexed
/// connections: multistream-select 1.0, Noise XX with `keypair`, then yamux.
///
/// This is all a byte-stream transport (BLE L2CAP, Tor streams, TCP) needs to
/// become a [`TransportPlugin`].
pub fn authenticate_and_multiplex<T>(transport: T, keypair: &Keypair) -> Result<BoxedTransport, noise::Error>
where
    T: Transport + Send + Unpin + 'static,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    let noise = noise::Config::new(keypair)?;
    Ok(transport
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

fn build_error(id: TransportId, e: impl fmt::Display) -> Error {
    Error::Build { id, reason: e.to_string() }
}

/// Whether `rest` is empty or a single `/p2p/<peer id>`.
fn only_peer_id<'a>(mut rest: impl Iterator<Item = Protocol<'a>>) -> bool {
    match rest.next() {
        None => true,
        Some(Protocol::P2p(_)) => rest.next().is_none(),
        Some(_) => false,
    }
}

/// TCP over tokio with `TCP_NODELAY`, Noise and yamux. Handles
/// `/ip4|ip6/<ip>/tcp/<port>[/p2p/<peer>]`.
#[derive(Debug, Clone, Default)]
pub struct Tcp {
    _private: (),
}

impl Tcp {
    /// The TCP plug-in.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TransportPlugin for Tcp {
    fn id(&self) -> TransportId {
        TransportId::TCP
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Ip
    }

    fn handles(&self, addr: &Multiaddr) -> bool {
        let mut it = addr.iter();
        matches!(it.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)))
            && matches!(it.next(), Some(Protocol::Tcp(_)))
            && only_peer_id(it)
    }

    fn build(&self, keypair: &Keypair) -> Result<BoxedTransport, Error> {
        let tcp = tcp::tokio::Transport::new(tcp::Config::new().nodelay(true));
        authenticate_and_multiplex(tcp, keypair).map_err(|e| build_error(self.id(), e))
    }
}

/// QUIC v1 (TLS 1.3 and QUIC's own multiplexing). Handles
/// `/ip4|ip6/<ip>/udp/<port>/quic-v1[/p2p/<peer>]`.
#[derive(Debug, Clone, Default)]
pub struct Quic {
    _private: (),
}

impl Quic {
    /// The QUIC plug-in.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TransportPlugin for Quic {
    fn id(&self) -> TransportId {
        TransportId::QUIC
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Ip
    }

    fn handles(&self, addr: &Multiaddr) -> bool {
        let mut it = addr.iter();
        matches!(it.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)))
            && matches!(it.next(), Some(Protocol::Udp(_)))
            && matches!(it.next(), Some(Protocol::QuicV1))
            && only_peer_id(it)
    }

    fn build(&self, keypair: &Keypair) -> Result<BoxedTransport, Error> {
        Ok(quic::tokio::Transport::new(quic::Config::new(keypair))
            .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
            .boxed())
    }
}

/// The in-process memory transport (`/memory/<port>[/p2p/<peer>]`), with Noise
/// and yamux like TCP. For tests.
///
/// [`Memory::emulating`] gives a memory transport that claims another id and
/// kind, so policy behaviour (a mixnet, a proximity link) can be tested in
/// process.
#[derive(Debug, Clone)]
pub struct Memory {
    id: TransportId,
    kind: TransportKind,
}

impl Default for Memory {
    fn default() -> Self {
        Self { id: TransportId::MEMORY, kind: TransportKind::Memory }
    }
}

impl Memory {
    /// The memory plug-in (id "memory", kind [`TransportKind::Memory`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A memory transport presenting itself as `id` of kind `kind` (tests of
    /// policies with stand-ins for BLE or Tor).
    pub fn emulating(id: TransportId, kind: TransportKind) -> Self {
        Self { id, kind }
    }
}

impl TransportPlugin for Memory {
    fn id(&self) -> TransportId {
        self.id.clone()
    }

    fn kind(&self) -> TransportKind {
        self.kind
    }

    fn handles(&self, addr: &Multiaddr) -> bool {
        let mut it = addr.iter();
        matches!(it.next(), Some(Protocol::Memory(_))) && only_peer_id(it)
    }

    fn build(&self, keypair: &Keypair) -> Result<BoxedTransport, Error> {
        authenticate_and_multiplex(MemoryTransport::default(), keypair).map_err(|e| build_error(self.id(), e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn routing() {
        let peer = PeerId::random();
        let tcp = Tcp::new();
        let quic = Quic::new();
        let mem = Memory::new();
        assert!(tcp.handles(&ma("/ip4/127.0.0.1/tcp/1")));
        assert!(tcp.handles(&ma(&format!("/ip6/::1/tcp/1/p2p/{peer}"))));
        assert!(!tcp.handles(&ma("/ip4/127.0.0.1/udp/1/quic-v1")));
        assert!(!tcp.handles(&ma(&format!("/ip4/1.2.3.4/tcp/1/p2p/{peer}/p2p-circuit"))));
        assert!(!tcp.handles(&ma("/ip4/127.0.0.1/tcp/1/ws")));
        assert!(quic.handles(&ma("/ip4/127.0.0.1/udp/1/quic-v1")));
        assert!(quic.handles(&ma(&format!("/ip4/127.0.0.1/udp/1/quic-v1/p2p/{peer}"))));
        assert!(!quic.handles(&ma("/ip4/127.0.0.1/udp/1/quic")));
        assert!(!quic.handles(&ma("/ip4/127.0.0.1/tcp/1")));
        assert!(mem.handles(&ma("/memory/5")));
        assert!(mem.handles(&ma(&format!("/memory/5/p2p/{peer}"))));
        assert!(!mem.handles(&ma("/ip4/127.0.0.1/tcp/1")));
        assert!(!mem.handles(&ma(&format!("/memory/5/p2p/{peer}/p2p-circuit"))));
    }

    #[test]
    fn ids() {
        assert_eq!(TransportId::new("tcp"), TransportId::TCP);
        assert_eq!(TransportId::QUIC.to_string(), "quic");
        let m = Memory::emulating(TransportId::from_static("tor"), TransportKind::Mixnet);
        assert_eq!(m.id().as_str(), "tor");
        assert_eq!(m.kind(), TransportKind::Mixnet);
    }
}
