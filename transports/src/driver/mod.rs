//! The task that owns the swarm: executes commands, turns swarm events into
//! [`NetworkEvent`]s, and rebuilds the swarm on rotation or a policy change.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libp2p::core::ConnectedPoint;
use libp2p::core::transport::{ListenerId, TransportError, timeout::TransportTimeout};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, dcutr, identify, mdns, ping, relay, rendezvous, swarm};
use tokio::sync::{mpsc, oneshot, watch};

use crate::behaviour::{Behaviour, BehaviourEvent, Features, KAD_PROTOCOL};
use crate::discovery::DiscoveryEvent;
use crate::error::{DialFailure, Error, ListenFailure, RequestFailure, Result};
use crate::learned::{AddressSource, LearnedAddress, LearnedAddresses};
use crate::network::{InboundRequestId, NetworkConfig, NetworkEvent, servers_of};
use crate::plugin::{TransportId, TransportPlugin, authenticate_and_multiplex};
use crate::policy::{self, KnownRelay, Policy, RelaySet};
use crate::route::{OpenConnection, Route};
use crate::stream::{self, Acks, FrameSender, Inbound, Stop, StreamEvent, StreamSettings, StreamTable};
use crate::switchable::{SwitchHandle, SwitchableTransport};

mod events;
mod listening;
mod points;
mod relays;
mod streams;
mod turn;

type Reply<T> = oneshot::Sender<Result<T>>;

/// The most commands or swarm events handled in one turn of the loop.
const BATCH: usize = 64;

/// Unanswered inbound requests kept before those whose requester left are dropped.
const RESPONDERS_PRUNE_AT: usize = 1024;

/// Announcements that may wait for an address; beyond, the oldest fails.
const MAX_DEFERRED: usize = 64;

/// A request from a [`NetworkHandle`](crate::NetworkHandle). `as_peer`:
/// only while the local peer id is that one.
pub(crate) enum Command {
    Listen { addr: Multiaddr, reply: Reply<Multiaddr> },
    Dial { addr: Multiaddr, reply: Reply<PeerId> },
    OpenStream { peer: PeerId, as_peer: Option<PeerId>, reply: Reply<FrameSender> },
    DialPeer { peer: PeerId, reply: Reply<()> },
    Request { peer: PeerId, request: Vec<u8>, reply: Reply<Vec<u8>> },
    Respond { id: InboundRequestId, response: Vec<u8>, reply: Reply<()> },
    Announce { point: [u8; 32], ttl: Duration, as_peer: Option<PeerId>, reply: Reply<()> },
    Withdraw { point: [u8; 32], as_peer: Option<PeerId>, reply: Reply<()> },
    Lookup { point: [u8; 32], reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>> },
    SetRendezvousServers { servers: Vec<(PeerId, Multiaddr)>, reply: oneshot::Sender<()> },
    Attach { plugin: Arc<dyn TransportPlugin>, reply: Reply<()> },
    Detach { id: TransportId, reply: Reply<()> },
    Transports { reply: oneshot::Sender<Vec<(TransportId, crate::TransportKind)>> },
    SetPolicy { policy: Policy, reply: Reply<()> },
    SetRelays { addrs: Vec<Multiaddr>, reply: Reply<()> },
    LearnRelaysOf { peer: PeerId, reply: oneshot::Sender<Vec<Multiaddr>> },
    AddExternal { addr: Multiaddr, reply: Reply<()> },
    Rotate { keypair: Keypair, reply: Reply<PeerId> },
    UseRelay { relay: Multiaddr, reply: Reply<Multiaddr> },
    KnownRelays { reply: oneshot::Sender<Vec<KnownRelay>> },
    LearnedAddresses { reply: oneshot::Sender<Vec<LearnedAddress>> },
    LocalPeerId { reply: oneshot::Sender<PeerId> },
    Policy { reply: oneshot::Sender<Policy> },
    ConnectedPeers { reply: oneshot::Sender<Vec<PeerId>> },
    Connections { reply: oneshot::Sender<Vec<OpenConnection>> },
    FoundNearby { peer: PeerId, addrs: Vec<Multiaddr>, reply: Reply<()> },
    ListenAddrs { reply: oneshot::Sender<Vec<Multiaddr>> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// An event waiting for room in the event channel; a frame is counted as
/// accepted (and so acknowledged) only once its event is accepted.
struct Outgoing {
    event: NetworkEvent,
    ack: Option<Arc<Acks>>,
}

/// One swarm and what is tied to it, replaced wholesale on restart (each
/// restart also bumps the driver's `generation`).
struct SwarmState {
    swarm: Swarm<Behaviour>,
    switch: SwitchHandle,
    /// The transport each open connection went over.
    connections: HashMap<ConnectionId, (PeerId, TransportId, Route)>,
    /// Open inbound frame streams per connection.
    inbound_streams: HashMap<ConnectionId, Arc<AtomicUsize>>,
    /// Per connection with frame streams: set when it closes, which ends them.
    stream_guards: HashMap<ConnectionId, watch::Sender<bool>>,
    /// Tells every frame stream of this swarm to stop.
    stop: watch::Sender<Option<Stop>>,
    dials: HashMap<ConnectionId, Reply<PeerId>>,
    /// `dial_peer` callers waiting for a connection to a peer.
    peer_dials: HashMap<PeerId, Vec<Reply<()>>>,
    /// Contact requests waiting for their response.
    requests: HashMap<OutboundRequestId, Reply<Vec<u8>>>,
    /// Contact requests received and not answered yet.
    responders: HashMap<request_response::InboundRequestId, ResponseChannel<Vec<u8>>>,
    /// Announcements waiting for an address to announce (oldest first).
    deferred: VecDeque<([u8; 32], Duration, Reply<()>)>,
    /// Callers waiting for a listener's first address.
    listens: HashMap<ListenerId, Vec<Reply<Multiaddr>>>,
    /// The address each live listener was asked for (to reopen on restart).
    listeners: HashMap<ListenerId, Multiaddr>,
    /// Listeners opened at start (or reopened by a restart) without an
    /// address yet, and until when commands wait for them.
    starting: HashSet<ListenerId>,
    starting_until: tokio::time::Instant,
    /// A Kademlia bootstrap waits for the starting listeners.
    bootstrap_due: bool,
}

impl SwarmState {
    fn build(
        keypair: &Keypair,
        policy: Policy,
        relays: &RelaySet,
        plugins: &[Arc<dyn TransportPlugin>],
        config: &NetworkConfig,
        rendezvous_servers: &[PeerId],
    ) -> Result<Self> {
        let peer_id = keypair.public().to_peer_id();
        let (switchable, switch) = SwitchableTransport::new(policy, relays.clone());
        for plugin in plugins {
            switch.attach(plugin.clone(), plugin.build(keypair)?)?;
        }
        let (relay_transport, relay_client) = relay::client::new(peer_id);
        let relay_transport = authenticate_and_multiplex(relay_transport, keypair)
            .map_err(|e| Error::Build { id: TransportId::RELAY, reason: e.to_string() })?;
        let transport = relay_transport.or_transport(switchable).map(|either, _| either.into_inner());
        let transport = TransportTimeout::with_ingoing_timeout(
            TransportTimeout::with_outgoing_timeout(transport, config.dial_timeout),
            config.handshake_timeout,
        )
        .boxed();
        let features = Features::new(policy, config, relays);
        let mut behaviour = Behaviour::new(keypair, relay_client, policy, features, config, rendezvous_servers)?;
        if let Some(kad) = behaviour.discovery.kad() {
            for addr in &config.bootstrap {
                if let Some(peer) = policy::peer_of(addr) {
                    kad.add_address(&peer, addr.clone());
                }
            }
        }
        let swarm = Swarm::new(
            transport,
            behaviour,
            peer_id,
            swarm::Config::with_tokio_executor().with_idle_connection_timeout(config.idle_connection_timeout),
        );
        let bootstrap_due = swarm.behaviour().discovery.kad_enabled() && !config.bootstrap.is_empty();
        let (stop, _) = watch::channel(None);
        Ok(Self {
            swarm,
            switch,
            connections: HashMap::new(),
            inbound_streams: HashMap::new(),
            stream_guards: HashMap::new(),
            stop,
            dials: HashMap::new(),
            peer_dials: HashMap::new(),
            requests: HashMap::new(),
            responders: HashMap::new(),
            deferred: VecDeque::new(),
            listens: HashMap::new(),
            listeners: HashMap::new(),
            starting: HashSet::new(),
            starting_until: tokio::time::Instant::now(),
            bootstrap_due,
        })
    }

    /// Whether listeners opened at start still wait for their first address.
    fn starting(&self) -> bool {
        !self.starting.is_empty() && tokio::time::Instant::now() < self.starting_until
    }

    /// Stops every frame stream and fails every pending request with `error()`.
    fn fail_pending(&mut self, why: Stop, error: impl Fn() -> Error) {
        let _ = self.stop.send(Some(why));
        self.swarm.behaviour_mut().streams.fail_all(&error);
        for (_, reply) in self.dials.drain() {
            let _ = reply.send(Err(error()));
        }
        for reply in self.peer_dials.drain().flat_map(|(_, w)| w) {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in self.requests.drain() {
            let _ = reply.send(Err(error()));
        }
        self.responders.clear();
        self.swarm.behaviour_mut().discovery.fail_all(&error);
        for (_, _, reply) in self.deferred.drain(..) {
            let _ = reply.send(Err(error()));
        }
        for reply in self.listens.drain().flat_map(|(_, waiting)| waiting) {
            let _ = reply.send(Err(error()));
        }
    }

    /// An open connection to `peer` that is not being closed.
    fn usable_connection(&self, peer: &PeerId) -> Option<ConnectionId> {
        self.swarm.behaviour().streams.usable(peer)
    }

    /// Closes `connection` (its transport was detached, or its relay was
    /// dropped); no new frame stream goes on it meanwhile.
    fn close(&mut self, connection: ConnectionId) {
        self.swarm.behaviour_mut().streams.closing(connection);
        self.swarm.close_connection(connection);
    }

    fn connected_peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.connections.values().map(|(p, _, _)| *p).collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}

pub(crate) struct Driver {
    runtime: tokio::runtime::Handle,
    streams: Arc<StreamTable>,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound_rx: mpsc::Receiver<Inbound>,
    /// Counts swarm restarts (the swarm generation); frames read and requests
    /// received under an older swarm are dropped.
    generation: u64,
    keypair: Keypair,
    policy: Policy,
    relays: RelaySet,
    /// The rendezvous servers announcements and lookups go to.
    rendezvous: Vec<(PeerId, Multiaddr)>,
    config: NetworkConfig,
    plugins: Vec<Arc<dyn TransportPlugin>>,
    external: Vec<Multiaddr>,
    /// Listen addresses a policy change closed (the new policy forbids
    /// them): reopened by the next restart whose policy allows them.
    held: Vec<Multiaddr>,
    swarm_state: SwarmState,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    outbox: VecDeque<Outgoing>,
    /// Every address learned for each peer (kept across restarts).
    learned: LearnedAddresses,
    /// How many more panics the task survives.
    panics: turn::PanicBudget,
}

/// The peer ids of `servers`.
fn peers_of(servers: &[(PeerId, Multiaddr)]) -> Vec<PeerId> {
    servers.iter().map(|(peer, _)| *peer).collect()
}

fn forbidden(policy: Policy, addr: &Multiaddr, reason: policy::Reason) -> Error {
    Error::PolicyForbids { policy, addr: addr.clone(), reason }
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        streams: Arc<StreamTable>,
        keypair: Keypair,
        policy: Policy,
        relays: RelaySet,
        plugins: Vec<Arc<dyn TransportPlugin>>,
        config: NetworkConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
    ) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        for p in &plugins {
            if !seen.insert(p.id()) {
                return Err(Error::AlreadyAttached(p.id()));
            }
        }
        let rendezvous = servers_of(&config.rendezvous_servers)?;
        let swarm_state = SwarmState::build(&keypair, policy, &relays, &plugins, &config, &peers_of(&rendezvous))?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.event_capacity);
        let mut driver = Self {
            runtime,
            streams,
            inbound_tx,
            inbound_rx,
            generation: 0,
            keypair,
            policy,
            relays,
            rendezvous,
            config,
            plugins,
            external: Vec::new(),
            held: Vec::new(),
            swarm_state,
            commands,
            events,
            outbox: VecDeque::new(),
            learned: LearnedAddresses::default(),
            panics: turn::PanicBudget::default(),
        };
        driver.seed_addresses();
        for addr in driver.config.listen.clone() {
            let id = driver.listen(addr)?;
            driver.swarm_state.starting.insert(id);
        }
        driver.start_listening();
        Ok(driver)
    }

    /// Marks the start: commands (and the first dials) wait until the
    /// listeners in `starting` have an address, or the wait runs out.
    fn start_listening(&mut self) {
        self.swarm_state.starting_until = tokio::time::Instant::now() + crate::network::STARTUP_LISTEN_WAIT;
        self.started();
    }

    /// Once no starting listener is waited for: the deferred bootstrap.
    fn started(&mut self) {
        if self.swarm_state.starting() || !std::mem::take(&mut self.swarm_state.bootstrap_due) {
            return;
        }
        if let Some(kad) = self.swarm_state.swarm.behaviour_mut().discovery.kad()
            && let Err(e) = kad.bootstrap()
        {
            tracing::debug!(error = %e, "Kademlia bootstrap not started");
        }
    }

    /// Gives the swarm the addresses of the configured servers and DHT peers,
    /// so it can dial them by peer id.
    fn seed_addresses(&mut self) {
        let known = self
            .rendezvous
            .iter()
            .cloned()
            .chain(self.config.bootstrap.iter().filter_map(|a| policy::peer_of(a).map(|p| (p, a.clone()))));
        let known: Vec<(PeerId, Multiaddr)> = known.collect();
        for (peer, addr) in known {
            self.remember(peer, &[addr], AddressSource::PeerStore);
        }
    }

    /// Gives `addrs` of `peer` to the address book for dials by peer id, and
    /// records where they came from.
    fn remember(&mut self, peer: PeerId, addrs: &[Multiaddr], source: AddressSource) {
        self.learned.record_all(peer, addrs, source);
        self.swarm_state.swarm.behaviour_mut().streams.add_addresses(peer, addrs.iter().cloned());
    }

    /// Queues an event for the consumer.
    fn emit(&mut self, event: NetworkEvent) {
        if !self.events.is_closed() {
            self.outbox.push_back(Outgoing { event, ack: None });
        }
    }

    /// Moves queued events into the channel while it has room; acknowledges
    /// each frame as its event is accepted.
    fn flush(&mut self) {
        while let Some(front) = self.outbox.front() {
            // A sender that gave up (timeout, closed connection) resends the
            // frame; delivering this copy would only make a duplicate.
            if front.ack.as_ref().is_some_and(|ack| !ack.is_open()) {
                self.outbox.pop_front();
                continue;
            }
            let permit = match self.events.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(())) => return,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    self.outbox.clear();
                    return;
                }
            };
            let Some(Outgoing { event, ack }) = self.outbox.pop_front() else { return };
            permit.send(event);
            if let Some(ack) = ack {
                // Lost if the frame stream closes meanwhile; the sender then resends.
                ack.accept();
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Listen { addr, reply } => match self.listen(addr) {
                Ok(id) => {
                    self.swarm_state.listens.entry(id).or_default().push(reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Dial { addr, reply } => match self.dial(addr) {
                Ok(Some(id)) => {
                    self.swarm_state.dials.insert(id, reply);
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::OpenStream { peer, as_peer, reply } => match self.is_still(as_peer) {
                Ok(()) => self.open_stream(peer, reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::DialPeer { peer, reply } => self.dial_peer(peer, reply),
            Command::Request { peer, request, reply } => {
                let id = self.swarm_state.swarm.behaviour_mut().contact.send_request(&peer, request);
                self.swarm_state.requests.insert(id, reply);
            }
            Command::Respond { id, response, reply } => {
                let channel =
                    (id.generation == self.generation).then(|| self.swarm_state.responders.remove(&id.id)).flatten();
                let result = match channel {
                    None => Err(Error::NoSuchRequest),
                    Some(channel) => self
                        .swarm_state
                        .swarm
                        .behaviour_mut()
                        .contact
                        .send_response(channel, response)
                        .map_err(|_| Error::RequestFailed(RequestFailure::RequesterGone)),
                };
                let _ = reply.send(result);
            }
            Command::Announce { point, ttl, as_peer, reply } => {
                if let Err(e) = self.is_still(as_peer) {
                    let _ = reply.send(Err(e));
                } else {
                    self.announce(point, ttl, reply);
                }
            }
            Command::Withdraw { point, as_peer, reply } => {
                let _ = reply.send(self.is_still(as_peer).and_then(|()| self.withdraw(point)));
            }
            Command::Lookup { point, reply } => self.lookup(point, reply),
            Command::SetRendezvousServers { servers, reply } => {
                self.swarm_state.swarm.behaviour_mut().discovery.set_servers(&peers_of(&servers));
                self.rendezvous = servers;
                self.seed_addresses();
                let _ = reply.send(());
            }
            Command::Attach { plugin, reply } => {
                let _ = reply.send(self.attach(plugin));
            }
            Command::Detach { id, reply } => {
                let _ = reply.send(self.detach(&id));
            }
            Command::Transports { reply } => {
                let _ = reply.send(self.swarm_state.switch.attached());
            }
            Command::SetPolicy { policy, reply } => {
                let result =
                    if policy == self.policy { Ok(()) } else { self.restart(self.keypair.clone(), policy).map(|_| ()) };
                let _ = reply.send(result);
            }
            Command::SetRelays { addrs, reply } => {
                let result = if self.relays.replace_configured(&addrs) {
                    self.config.relays = addrs;
                    self.swarm_state.switch.set_guard(self.policy, self.relays.clone());
                    Ok(())
                } else {
                    Err(Error::Config("relay addresses must end in /p2p/<peer id>"))
                };
                let _ = reply.send(result);
            }
            Command::LearnRelaysOf { peer, reply } => {
                let _ = reply.send(self.learn_relays_of(peer));
            }
            Command::AddExternal { addr, reply } => {
                let result = if self.policy.may_advertise(&addr) {
                    self.swarm_state.swarm.add_external_address(addr.clone());
                    if !self.external.contains(&addr) {
                        self.external.push(addr);
                    }
                    Ok(())
                } else {
                    Err(forbidden(self.policy, &addr, "this policy never advertises the node's own addresses"))
                };
                let _ = reply.send(result);
            }
            Command::Rotate { keypair, reply } => {
                let _ = reply.send(self.restart(keypair, self.policy));
            }
            Command::UseRelay { relay, reply } => self.use_relay(relay, reply),
            Command::KnownRelays { reply } => {
                let _ = reply.send(self.relays.known());
            }
            Command::LearnedAddresses { reply } => {
                let _ = reply.send(self.learned.snapshot());
            }
            Command::LocalPeerId { reply } => {
                let _ = reply.send(*self.swarm_state.swarm.local_peer_id());
            }
            Command::Policy { reply } => {
                let _ = reply.send(self.policy);
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm_state.connected_peers());
            }
            Command::FoundNearby { peer, addrs, reply } => {
                let _ = reply.send(self.found_nearby(peer, &addrs, AddressSource::Proximity));
            }
            Command::Connections { reply } => {
                let streams = &self.swarm_state.swarm.behaviour().streams;
                let open = self.swarm_state.connections.iter().filter(|(c, _)| !streams.is_closing(c));
                let mut open: Vec<OpenConnection> = open
                    .map(|(_, (peer, transport, route))| OpenConnection {
                        peer: *peer,
                        transport: transport.clone(),
                        route: *route,
                    })
                    .collect();
                open.sort_by_key(|c| (c.peer, c.route as u8));
                let _ = reply.send(open);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm_state.swarm.listeners().cloned().collect());
            }
            Command::Shutdown { reply } => {
                // Handled by `run`; unreachable in practice.
                let _ = reply.send(());
            }
        }
    }
}
