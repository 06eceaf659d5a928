//! The network: a libp2p swarm in a tokio task, driven through a cloneable
//! handle and reporting on a bounded event channel.

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use veil_crypto::NetworkKey;

use crate::driver::{self, Command};
use crate::error::{Error, Result, SendFailure};
use crate::plugin::{TransportId, TransportPlugin};
use crate::policy::{KnownRelay, Policy};
use crate::stream::{Delivery, OutFrame, StreamTable};

mod config;
mod event;

pub use config::NetworkConfig;
pub(crate) use config::{STARTUP_LISTEN_WAIT, servers_of};
pub use event::{InboundRequestId, NetworkEvent};

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
        let (max_frame, request_timeout) = (config.max_frame_size, config.request_timeout);
        let streams = Arc::new(StreamTable::default());
        let driver = {
            let _guard = runtime.enter();
            driver::Driver::new(
                runtime.clone(),
                streams.clone(),
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
        Ok((NetworkHandle { tx: cmd_tx, streams, max_frame, request_timeout }, event_rx))
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
    /// The open frame streams: frames go straight to them, not through the
    /// network task.
    streams: Arc<StreamTable>,
    max_frame: usize,
    request_timeout: Duration,
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
    /// Frames travel on the peer's frame stream (one persistent substream),
    /// opened on first use over an existing connection, or after dialing the
    /// peer by id with the addresses the network knows. Frames sent one
    /// after another arrive in order. While `max_frames_in_flight` frames
    /// wait for their acknowledgement, further sends wait.
    ///
    /// An error means the frame may or may not have arrived: keep it in the
    /// outbox and send it again (receivers must tolerate duplicates). A frame
    /// larger than `max_frame_size` is refused at once with
    /// [`Error::FrameTooLarge`].
    pub async fn send_frame(&self, peer: PeerId, frame: Vec<u8>) -> Result<()> {
        self.send_frame_from(None, peer, frame).await
    }

    /// [`send_frame`](Self::send_frame), but only from `local`: a frame
    /// that would leave under another local peer id (the network rotated
    /// its key since the caller looked) is refused with
    /// [`Error::Restarted`] and not sent. For frames whose content is bound
    /// to the sender's peer id (veil's session tags): sent from another,
    /// such a frame would link the two peer ids.
    pub async fn send_frame_as(&self, local: PeerId, peer: PeerId, frame: Vec<u8>) -> Result<()> {
        self.send_frame_from(Some(local), peer, frame).await
    }

    async fn send_frame_from(&self, local: Option<PeerId>, peer: PeerId, frame: Vec<u8>) -> Result<()> {
        if frame.len() > self.max_frame {
            return Err(Error::FrameTooLarge { len: frame.len(), max: self.max_frame });
        }
        let mut frame = frame;
        // A frame stream that closes before writing the frame gives it back;
        // it is then tried on a new one (a bounded number of times).
        for _ in 0..3 {
            let sender = match self.streams.get(&peer) {
                Some(sender) => sender,
                None => self.ask(|reply| Command::OpenStream { peer, as_peer: local, reply }).await??,
            };
            if local.is_some_and(|local| local != sender.local) {
                return Err(Error::Restarted);
            }
            let (reply, outcome) = oneshot::channel();
            if let Err(back) = sender.send(OutFrame { frame, reply }).await {
                frame = back.frame;
                continue;
            }
            match outcome.await {
                Ok(Delivery::Done(result)) => return result,
                Ok(Delivery::Unsent(back)) => frame = back,
                Err(_) => return Err(Error::Shutdown),
            }
        }
        Err(Error::SendFailed(SendFailure::KeptClosing))
    }

    /// Connects to `peer` by its id, with the addresses the network knows
    /// (from [`lookup`](Self::lookup), mDNS, identify, earlier dials);
    /// resolves once connected, at once if it already is.
    pub async fn dial_peer(&self, peer: PeerId) -> Result<()> {
        self.ask(|reply| Command::DialPeer { peer, reply }).await?
    }

    /// Sends `request` to `peer` on `/veil/contact/1` (over an existing
    /// connection, or after [dialing](Self::dial_peer) it) and resolves with
    /// its response, which may be empty.
    ///
    /// Fails with [`Error::FrameTooLarge`] at once if the request exceeds
    /// `max_frame_size`, with [`Error::Timeout`] if no response came within
    /// `request_timeout`, and with [`Error::RequestFailed`] otherwise (the peer
    /// could not be reached, does not speak the protocol, or refused an
    /// oversize request).
    pub async fn request(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>> {
        if request.len() > self.max_frame {
            return Err(Error::FrameTooLarge { len: request.len(), max: self.max_frame });
        }
        let answer = self.ask(|reply| Command::Request { peer, request, reply });
        tokio::time::timeout(self.request_timeout, answer).await.map_err(|_| Error::Timeout)??
    }

    /// Answers the request `id` of a [`NetworkEvent::RequestReceived`]. An
    /// empty response is allowed; what it means is up to the application.
    /// A request stays answerable for twice `request_timeout` (the requester
    /// gives up after one).
    ///
    /// Fails with [`Error::NoSuchRequest`] if the request was answered
    /// already or is unknown (from before a restart), and with
    /// [`Error::RequestFailed`] if the requester is gone (it timed out or the
    /// connection closed).
    pub async fn respond(&self, id: InboundRequestId, response: Vec<u8>) -> Result<()> {
        if response.len() > self.max_frame {
            return Err(Error::FrameTooLarge { len: response.len(), max: self.max_frame });
        }
        self.ask(|reply| Command::Respond { id, response, reply }).await?
    }

    /// Announces this node at the rendezvous point `point` for `ttl`.
    ///
    /// Registers under the namespace "`point` in lowercase hex" at every
    /// configured rendezvous server (connecting to it if needed), and starts
    /// providing the key `point` in the Kademlia DHT when Kademlia runs and
    /// knows peers. Resolves once every server (and the DHT) answered: `Ok`
    /// if at least one accepted, [`Error::Rendezvous`] otherwise or if there
    /// is nowhere to announce.
    ///
    /// If the node has no address to announce yet (it is not listening yet,
    /// or under [`Policy::Relayed`] has no relay circuit yet), the
    /// announcement waits for one and is made as soon as one appears; the
    /// call fails with [`Error::Timeout`] if that and the registrations take
    /// more than twice `request_timeout` (the announcement is still made when
    /// an address appears, until the swarm restarts or the point is
    /// withdrawn).
    ///
    /// What is registered is the node's external addresses: under
    /// [`Policy::Relayed`] and [`Policy::Anonymous`] only relay circuit
    /// addresses can be external, so nothing else is ever announced. Under
    /// [`Policy::Direct`] the
    /// current listen addresses are declared external first (a `Direct` node
    /// advertises them anyway; with Kademlia this also lets the node serve the
    /// DHT). Under [`Policy::Offline`] it fails with [`Error::NotUnderPolicy`].
    ///
    /// `ttl` must lie between [`MIN_ANNOUNCE_TTL`](crate::MIN_ANNOUNCE_TTL)
    /// (what veil's rendezvous servers accept) and
    /// [`MAX_ANNOUNCE_TTL`](crate::MAX_ANNOUNCE_TTL). Registrations are not
    /// renewed: the caller announces again before `ttl` runs out (every
    /// rendezvous period). DHT provider records are republished by Kademlia
    /// until [`withdraw`](Self::withdraw).
    pub async fn announce(&self, point: [u8; 32], ttl: Duration) -> Result<()> {
        self.announce_inner(point, ttl, None).await
    }

    /// [`announce`](Self::announce), but only while the node's peer id is
    /// `peer`: after a restart under another id it fails with
    /// [`Error::Restarted`] and registers nothing. A caller that decided what
    /// to announce before a key rotation so never registers it under the
    /// new id (which would let a rendezvous server link the two ids).
    pub async fn announce_as(&self, point: [u8; 32], ttl: Duration, peer: PeerId) -> Result<()> {
        self.announce_inner(point, ttl, Some(peer)).await
    }

    async fn announce_inner(&self, point: [u8; 32], ttl: Duration, as_peer: Option<PeerId>) -> Result<()> {
        if !(crate::MIN_ANNOUNCE_TTL..=crate::MAX_ANNOUNCE_TTL).contains(&ttl) {
            return Err(Error::Config("announcement ttl must be between 60 s and 72 h"));
        }
        let done = self.ask(|reply| Command::Announce { point, ttl, as_peer, reply });
        tokio::time::timeout(self.request_timeout.saturating_mul(2), done).await.map_err(|_| Error::Timeout)??
    }

    /// Withdraws an announcement at `point`: unregisters at every configured
    /// rendezvous server and stops providing the key in the DHT. Resolves once
    /// the requests are sent (servers do not answer unregistrations).
    pub async fn withdraw(&self, point: [u8; 32]) -> Result<()> {
        self.ask(|reply| Command::Withdraw { point, as_peer: None, reply }).await?
    }

    /// [`withdraw`](Self::withdraw), but only while the node's peer id is
    /// `peer` (see [`announce_as`](Self::announce_as)).
    pub async fn withdraw_as(&self, point: [u8; 32], peer: PeerId) -> Result<()> {
        self.ask(|reply| Command::Withdraw { point, as_peer: Some(peer), reply }).await?
    }

    /// Looks up who announced themselves at `point`: asks every configured
    /// rendezvous server and, when Kademlia runs and knows peers, the DHT,
    /// and merges the answers (at most
    /// [`MAX_LOOKUP_PEERS`](crate::MAX_LOOKUP_PEERS) peers with at most
    /// [`MAX_LOOKUP_ADDRS`](crate::MAX_LOOKUP_ADDRS) addresses each; never
    /// this node). The addresses found are remembered, so
    /// [`dial_peer`](Self::dial_peer), [`request`](Self::request) and
    /// [`send_frame`](Self::send_frame) can reach the peers by id.
    ///
    /// `Ok` (possibly empty) if at least one source answered,
    /// [`Error::Rendezvous`] if none did or none is configured,
    /// [`Error::NotUnderPolicy`] under [`Policy::Offline`].
    pub async fn lookup(&self, point: [u8; 32]) -> Result<Vec<(PeerId, Vec<Multiaddr>)>> {
        self.ask(|reply| Command::Lookup { point, reply }).await?
    }

    /// Replaces the rendezvous servers (each address ending in
    /// `/p2p/<peer id>`). Registrations at the old servers are left to expire.
    pub async fn set_rendezvous_servers(&self, servers: Vec<Multiaddr>) -> Result<()> {
        let servers = servers_of(&servers)?;
        self.ask(|reply| Command::SetRendezvousServers { servers, reply }).await
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

    /// The ids of the plug-ins attached now (configured at start, or attached since).
    pub async fn transports(&self) -> Result<Vec<TransportId>> {
        Ok(self.attached().await?.into_iter().map(|(id, _)| id).collect())
    }

    /// The attached transports with their kinds, in routing order.
    pub async fn attached(&self) -> Result<Vec<(TransportId, crate::TransportKind)>> {
        self.ask(|reply| Command::Transports { reply }).await
    }

    /// Changes the privacy policy. The swarm restarts with the same identity
    /// (as in [`rotate`](Self::rotate), frames in flight fail); listeners the
    /// new policy forbids are closed and held, and reopened by a later policy
    /// change to a policy that allows them (`direct` → `anonymous` →
    /// `direct` listens on TCP again). Circuit listeners are not held: each
    /// relayed period draws its relay.
    ///
    /// Moving to a stricter policy keeps the peer id, which peers may already
    /// link to an IP address; rotate the network key as well to avoid that.
    pub async fn set_policy(&self, policy: Policy) -> Result<()> {
        self.ask(|reply| Command::SetPolicy { policy, reply }).await?
    }

    /// Replaces the relays a [`Policy::Relayed`] node may use (each address
    /// ending in `/p2p/<relay peer id>`).
    /// Relays learned from contacts are kept.
    pub async fn set_relays(&self, relays: Vec<Multiaddr>) -> Result<()> {
        self.ask(|reply| Command::SetRelays { addrs: relays, reply }).await?
    }

    /// Learns the relays `peer` is reachable through, for the relay draws
    /// of [`Policy::Relayed`]: call it once `peer` has proved it is a
    /// contact. Only what the peer said of itself (identify, its signed
    /// rendezvous record) or a connection to it counts. Returns the relays
    /// that are new (at most [`crate::policy::MAX_LEARNED_RELAYS`] are kept).
    pub async fn learn_relays_of(&self, peer: PeerId) -> Result<Vec<Multiaddr>> {
        self.ask(|reply| Command::LearnRelaysOf { peer, reply }).await
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

    /// Reserves a slot on `relay` (an address ending in `/p2p/<relay peer
    /// id>`, a known relay under [`Policy::Relayed`]) and
    /// stops listening through any other relay. Resolves with the
    /// `/p2p-circuit` address once the reservation is accepted (at once if
    /// the node already listens through it).
    pub async fn use_relay(&self, relay: Multiaddr) -> Result<Multiaddr> {
        let done = self.ask(|reply| Command::UseRelay { relay, reply });
        tokio::time::timeout(self.request_timeout.saturating_mul(2), done).await.map_err(|_| Error::Timeout)??
    }

    /// The relays the node may listen through: the configured ones (as in
    /// [`NetworkConfig::relays`]), then those learned from contacts.
    pub async fn known_relays(&self) -> Result<Vec<KnownRelay>> {
        self.ask(|reply| Command::KnownRelays { reply }).await
    }

    /// Every address this node learned for each peer and where from
    /// (connections, identify, the address book, the DHT, rendezvous
    /// records, mDNS), since the network started, across restarts.
    pub async fn learned_addresses(&self) -> Result<Vec<crate::LearnedAddress>> {
        self.ask(|reply| Command::LearnedAddresses { reply }).await
    }

    /// The privacy policy in force (the one given at spawn, or the last [`set_policy`](Self::set_policy)).
    pub async fn policy(&self) -> Result<Policy> {
        self.ask(|reply| Command::Policy { reply }).await
    }

    /// The node's current peer id.
    pub async fn local_peer_id(&self) -> Result<PeerId> {
        self.ask(|reply| Command::LocalPeerId { reply }).await
    }

    /// The peers with at least one open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>> {
        self.ask(|reply| Command::ConnectedPeers { reply }).await
    }

    /// Reports `peer` as found nearby at `addrs` by other means than mDNS
    /// (a proximity transport such as BLE, which sees who is in range): the
    /// addresses are remembered for dials and a
    /// [`NetworkEvent::PeerDiscovered`] follows, exactly as for a LAN peer
    /// mDNS found. Refused under policies without proximity discovery.
    pub async fn found_nearby(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<()> {
        self.ask(|reply| Command::FoundNearby { peer, addrs, reply }).await?
    }

    /// Every open connection: its peer, transport and route (direct,
    /// relayed, or upgraded by hole punching).
    pub async fn connections(&self) -> Result<Vec<crate::OpenConnection>> {
        self.ask(|reply| Command::Connections { reply }).await
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
