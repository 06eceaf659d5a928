//! The network: a libp2p swarm in a tokio task, driven through a cloneable
//! handle and reporting on a bounded event channel.

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use veil_crypto::NetworkKey;

use crate::codec::DEFAULT_MAX_FRAME;
use crate::driver::{self, Command};
use crate::error::{Error, Result};
use crate::link::{Delivery, LinkTable, OutFrame};
use crate::plugin::{TransportId, TransportPlugin};
use crate::policy::{Policy, RelaySet};

/// Settings of a [`Network`]. Server roles are off by default; any node can
/// enable them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// Serve as a circuit relay for other nodes.
    pub relay_server: bool,
    /// Serve as a rendezvous point for other nodes.
    pub rendezvous_server: bool,
    /// Announce and discover peers on the LAN with mDNS. Only honoured under
    /// [`Policy::Direct`]; [`Policy::Offline`] always runs mDNS, the other
    /// policies never do.
    pub mdns: bool,
    /// The largest frame sent or accepted, in bytes (default 256 KiB). Larger
    /// inbound frames are refused before anything is allocated.
    pub max_frame_size: usize,
    /// Relays this node may connect to and listen through under
    /// [`Policy::Relayed`]; each address must end in `/p2p/<relay peer id>`.
    pub relays: Vec<Multiaddr>,
    /// How long a frame may wait for its acknowledgement, a request for its
    /// response, and a Kademlia query for its answer (default 10 s).
    pub request_timeout: Duration,
    /// How long a frame link with nothing to send stays open, and then how
    /// long a connection without open streams stays open (default 60 s).
    pub idle_connection_timeout: Duration,
    /// Concurrent request-response streams per connection, both directions
    /// (default 256).
    pub max_concurrent_streams: usize,
    /// Frames written to a peer and not yet acknowledged, per link (default
    /// 256). Further sends wait.
    pub max_frames_in_flight: usize,
    /// Check connections with libp2p ping at this interval (default `None`:
    /// no ping; a dead connection is noticed when a frame times out).
    pub ping_interval: Option<Duration>,
    /// Take part in the Kademlia DHT even without bootstrap peers (for a
    /// bootstrap node). Kademlia also runs whenever `bootstrap` is non-empty;
    /// never under [`Policy::Offline`].
    pub kad: bool,
    /// Kademlia peers to join the DHT through, each ending in `/p2p/<peer id>`
    /// (default none).
    pub bootstrap: Vec<Multiaddr>,
    /// Capacity of the command channel (default 256).
    pub command_capacity: usize,
    /// Capacity of the event channel (default 256). Behind a full channel up
    /// to as many events more wait in the network's queue; when that is full
    /// too, the network stops reading from its connections (and acknowledges
    /// nothing) until the consumer catches up. If the receiver is dropped,
    /// events are discarded and frames are no longer acknowledged.
    pub event_capacity: usize,
    /// When this node is a relay: the longest circuit it carries (default 1 h).
    pub relay_circuit_duration: Duration,
    /// When this node is a relay: the most bytes per circuit (default 64 MiB).
    pub relay_circuit_bytes: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            relay_server: false,
            rendezvous_server: false,
            mdns: true,
            max_frame_size: DEFAULT_MAX_FRAME,
            relays: Vec::new(),
            request_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(60),
            max_concurrent_streams: 256,
            max_frames_in_flight: 256,
            ping_interval: None,
            kad: false,
            bootstrap: Vec::new(),
            command_capacity: 256,
            event_capacity: 256,
            relay_circuit_duration: Duration::from_secs(3600),
            relay_circuit_bytes: 64 << 20,
        }
    }
}

impl NetworkConfig {
    pub(crate) fn validate(&self) -> Result<RelaySet> {
        if self.max_frame_size == 0 || u32::try_from(self.max_frame_size).is_err() {
            return Err(Error::Config("max_frame_size must be between 1 and 2^32 - 1"));
        }
        if self.command_capacity == 0
            || self.event_capacity == 0
            || self.max_concurrent_streams == 0
            || self.max_frames_in_flight == 0
        {
            return Err(Error::Config("capacities must be at least 1"));
        }
        if self.bootstrap.iter().any(|a| crate::policy::peer_of(a).is_none()) {
            return Err(Error::Config("bootstrap addresses must end in /p2p/<peer id>"));
        }
        RelaySet::from_addrs(&self.relays).ok_or(Error::Config("relay addresses must end in /p2p/<peer id>"))
    }
}

/// What the network reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetworkEvent {
    /// The node listens on a new address.
    Listening {
        /// The address.
        addr: Multiaddr,
    },
    /// The node no longer listens on an address (its listener or transport went away).
    ListenAddrExpired {
        /// The address.
        addr: Multiaddr,
    },
    /// The first connection to a peer is up.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// The transport carrying the connection.
        transport: TransportId,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A frame arrived. It is acknowledged to the sender once this event has
    /// been accepted by the event channel.
    FrameReceived {
        /// The sender.
        peer: PeerId,
        /// The frame.
        frame: Vec<u8>,
    },
    /// A peer told us (identify) which addresses it listens on.
    PeerIdentified {
        /// The peer.
        peer: PeerId,
        /// The listen addresses it announced.
        listen_addrs: Vec<Multiaddr>,
    },
    /// mDNS found a peer on the LAN (its addresses are remembered for dials).
    PeerDiscovered {
        /// The peer.
        peer: PeerId,
        /// Its LAN addresses.
        addrs: Vec<Multiaddr>,
    },
    /// The swarm restarted (after [`NetworkHandle::rotate`] or
    /// [`NetworkHandle::set_policy`]); every connection of the old swarm is gone.
    Restarted {
        /// The node's peer id from now on.
        peer_id: PeerId,
    },
}

/// Starts networks. See the [crate documentation](crate) for an example.
#[derive(Debug)]
pub enum Network {}

impl Network {
    /// Builds a swarm with the identity of `key`, under `policy`, with
    /// `plugins` attached, and runs it in a tokio task.
    ///
    /// Returns the handle controlling it and the receiver of its events. The
    /// network runs until [`NetworkHandle::shutdown`] or until every handle is
    /// dropped. Must be called from within a tokio runtime.
    pub fn spawn(
        key: &NetworkKey,
        policy: Policy,
        plugins: Vec<Arc<dyn TransportPlugin>>,
        config: NetworkConfig,
    ) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>)> {
        let keypair = keypair_from(key)?;
        Self::spawn_with_keypair(keypair, policy, plugins, config)
    }

    fn spawn_with_keypair(
        keypair: Keypair,
        policy: Policy,
        plugins: Vec<Arc<dyn TransportPlugin>>,
        config: NetworkConfig,
    ) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>)> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let relays = config.validate()?;
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_capacity);
        let (event_tx, event_rx) = mpsc::channel(config.event_capacity);
        let max_frame = config.max_frame_size;
        let links = Arc::new(LinkTable::default());
        let driver = {
            let _guard = runtime.enter();
            driver::Driver::new(
                runtime.clone(),
                links.clone(),
                keypair,
                policy,
                relays,
                plugins,
                config,
                cmd_rx,
                event_tx,
            )?
        };
        runtime.spawn(driver.run());
        Ok((NetworkHandle { tx: cmd_tx, links, max_frame }, event_rx))
    }
}

/// The libp2p identity of a network key (its Ed25519 seed).
pub fn keypair_from(key: &NetworkKey) -> Result<Keypair> {
    let mut seed = key.to_seed();
    Keypair::ed25519_from_bytes(&mut seed[..]).map_err(|_| Error::InvalidKey)
}

/// The peer id a network key gives.
pub fn peer_id_of(key: &NetworkKey) -> Result<PeerId> {
    Ok(keypair_from(key)?.public().to_peer_id())
}

/// Controls a running [`Network`]. Cheap to clone; every method sends a
/// command on a bounded channel and waits for the answer.
///
/// After [`shutdown`](Self::shutdown) (or if the network task ended) every
/// method returns [`Error::Shutdown`].
#[derive(Clone)]
pub struct NetworkHandle {
    tx: mpsc::Sender<Command>,
    /// The open frame links: frames go straight to them, not through the
    /// network task.
    links: Arc<LinkTable>,
    max_frame: usize,
}

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkHandle").field("max_frame", &self.max_frame).finish_non_exhaustive()
    }
}

impl NetworkHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// Listens on `addr` (checked against the policy first) and returns the
    /// first address the listener reports (with port 0 resolved). A
    /// `/p2p-circuit` address listens through that relay and resolves once the
    /// reservation is accepted.
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr> {
        self.ask(|reply| Command::Listen { addr, reply }).await?
    }

    /// Dials `addr` (checked against the policy first) and returns the peer
    /// once the connection is established. Always opens a new connection.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Sends one frame to `peer`; resolves when the peer acknowledged it, i.e.
    /// its application accepted it (its `FrameReceived` event was taken by
    /// the bounded event channel).
    ///
    /// Frames travel on the peer's frame link (one persistent stream), opened
    /// on first use over an existing connection, or after dialing the peer by
    /// id with the addresses the network knows. Frames sent one after another
    /// arrive in order. While `max_frames_in_flight` frames wait for their
    /// acknowledgement, further sends wait.
    ///
    /// An error means the frame may or may not have arrived: keep it in the
    /// outbox and send it again (receivers must tolerate duplicates). A frame
    /// larger than `max_frame_size` is refused at once with
    /// [`Error::FrameTooLarge`].
    pub async fn send_frame(&self, peer: PeerId, frame: Vec<u8>) -> Result<()> {
        if frame.len() > self.max_frame {
            return Err(Error::FrameTooLarge { len: frame.len(), max: self.max_frame });
        }
        let mut frame = frame;
        // A link that closes before writing the frame gives it back; it is
        // then tried on a new link (a bounded number of times).
        for _ in 0..3 {
            let link = match self.links.get(&peer) {
                Some(link) => link,
                None => self.ask(|reply| Command::OpenLink { peer, reply }).await??,
            };
            let (reply, outcome) = oneshot::channel();
            if let Err(back) = link.send(OutFrame { frame, reply }).await {
                frame = back.frame;
                continue;
            }
            match outcome.await {
                Ok(Delivery::Done(result)) => return result,
                Ok(Delivery::Unsent(back)) => frame = back,
                Err(_) => return Err(Error::Shutdown),
            }
        }
        Err(Error::SendFailed("the frame link kept closing".into()))
    }

    /// Attaches a transport while the network runs.
    pub async fn attach(&self, plugin: Arc<dyn TransportPlugin>) -> Result<()> {
        self.ask(|reply| Command::Attach { plugin, reply }).await?
    }

    /// Detaches a transport: its listeners end and every connection it
    /// carries is closed (frames in flight on them fail).
    pub async fn detach(&self, id: TransportId) -> Result<()> {
        self.ask(|reply| Command::Detach { id, reply }).await?
    }

    /// The attached transports.
    pub async fn transports(&self) -> Result<Vec<TransportId>> {
        self.ask(|reply| Command::Transports { reply }).await
    }

    /// Changes the privacy policy. The swarm restarts with the same identity
    /// (as in [`rotate`](Self::rotate), frames in flight fail); listeners the
    /// new policy forbids are not reopened.
    ///
    /// Moving to a stricter policy keeps the peer id, which peers may already
    /// link to an IP address; rotate the network key as well to avoid that.
    pub async fn set_policy(&self, policy: Policy) -> Result<()> {
        self.ask(|reply| Command::SetPolicy { policy, reply }).await?
    }

    /// Replaces the relays a [`Policy::Relayed`] node may use (each address
    /// ending in `/p2p/<relay peer id>`).
    pub async fn set_relays(&self, relays: Vec<Multiaddr>) -> Result<()> {
        let set = RelaySet::from_addrs(&relays).ok_or(Error::Config("relay addresses must end in /p2p/<peer id>"))?;
        self.ask(|reply| Command::SetRelays { relays: set, reply }).await
    }

    /// Declares an address at which this node is reachable (for server roles);
    /// identify and rendezvous announce it. Refused if the policy forbids
    /// advertising it.
    pub async fn add_external_address(&self, addr: Multiaddr) -> Result<()> {
        self.ask(|reply| Command::AddExternal { addr, reply }).await?
    }

    /// Restarts the swarm with the identity of a new network key. The handle
    /// stays valid and the event channel stays the same; listeners are reopened
    /// (a port 0 gets a new port). Returns the new peer id.
    ///
    /// Every connection of the old identity closes. Frames in flight fail with
    /// [`Error::Restarted`] and must be sent again by the caller (whose outbox
    /// lives in storage); received frames not yet taken from the event channel
    /// are dropped unacknowledged, so their senders resend them too.
    pub async fn rotate(&self, key: &NetworkKey) -> Result<PeerId> {
        let keypair = keypair_from(key)?;
        self.ask(|reply| Command::Rotate { keypair, reply }).await?
    }

    /// The node's current peer id.
    pub async fn local_peer_id(&self) -> Result<PeerId> {
        self.ask(|reply| Command::LocalPeerId { reply }).await
    }

    /// The peers with at least one open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>> {
        self.ask(|reply| Command::ConnectedPeers { reply }).await
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Stops the network: connections close, frames in flight fail with
    /// [`Error::Shutdown`]. Returns once the swarm is gone.
    pub async fn shutdown(&self) -> Result<()> {
        self.ask(|reply| Command::Shutdown { reply }).await
    }
}
