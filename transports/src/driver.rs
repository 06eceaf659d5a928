//! The task that owns the swarm: executes commands, turns swarm events into
//! [`NetworkEvent`]s, and rebuilds the swarm on rotation or a policy change.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::core::Endpoint;
use libp2p::core::transport::{ListenerId, TransportError, timeout::TransportTimeout};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, dcutr, identify, kad, mdns, ping, relay, rendezvous, swarm};
use tokio::sync::{mpsc, oneshot, watch};

use crate::behaviour::{Behaviour, BehaviourEvent, Features, KAD_PROTOCOL};
use crate::discovery::{self, Discovery, MAX_LOOKUP_PEERS};
use crate::error::{Error, Result};
use crate::learned::{AddressSource, LearnedAddress, LearnedAddresses};
use crate::link::{self, Acks, Inbound, LinkEvent, LinkSender, LinkSettings, LinkTable, Stop};
use crate::network::{InboundRequestId, NetworkConfig, NetworkEvent, servers_of};
use crate::plugin::{TransportId, TransportPlugin, authenticate_and_multiplex};
use crate::policy::{self, KnownRelay, Policy, RelaySet};
use crate::route::{OpenConnection, Route};
use crate::switchable::{SwitchHandle, SwitchableTransport};

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
    OpenLink { peer: PeerId, reply: Reply<LinkSender> },
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

/// An outbound frame link being set up.
struct Opening {
    waiters: Vec<Reply<LinkSender>>,
    /// The connection the stream was requested on (`None`: waiting for a connection).
    on: Option<ConnectionId>,
}

/// One swarm and what is tied to it (replaced wholesale on restart).
struct Node {
    swarm: Swarm<Behaviour>,
    switch: SwitchHandle,
    /// The transport each open connection went over.
    connections: HashMap<ConnectionId, (PeerId, TransportId, Route)>,
    /// Connections being closed (detached transport): no new links on them.
    closing: HashSet<ConnectionId>,
    /// Open inbound frame links per connection.
    inbound_links: HashMap<ConnectionId, Arc<AtomicUsize>>,
    /// Per connection with links: set when it closes, which ends them.
    link_guards: HashMap<ConnectionId, watch::Sender<bool>>,
    opening: HashMap<PeerId, Opening>,
    /// Tells every link of this swarm to stop.
    stop: watch::Sender<Option<Stop>>,
    dials: HashMap<ConnectionId, Reply<PeerId>>,
    /// `dial_peer` callers waiting for a connection to a peer.
    peer_dials: HashMap<PeerId, Vec<Reply<()>>>,
    /// Contact requests waiting for their response.
    requests: HashMap<OutboundRequestId, Reply<Vec<u8>>>,
    /// Contact requests received and not answered yet.
    responders: HashMap<request_response::InboundRequestId, ResponseChannel<Vec<u8>>>,
    discovery: Discovery,
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

impl Node {
    fn build(
        keypair: &Keypair,
        policy: Policy,
        relays: &RelaySet,
        plugins: &[Arc<dyn TransportPlugin>],
        config: &NetworkConfig,
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
        let mut behaviour = Behaviour::new(keypair, relay_client, policy, features, config)?;
        if let Some(kad) = behaviour.kad.as_mut() {
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
        let bootstrap_due = swarm.behaviour().kad.is_enabled() && !config.bootstrap.is_empty();
        let (stop, _) = watch::channel(None);
        Ok(Self {
            swarm,
            switch,
            connections: HashMap::new(),
            closing: HashSet::new(),
            inbound_links: HashMap::new(),
            link_guards: HashMap::new(),
            opening: HashMap::new(),
            stop,
            dials: HashMap::new(),
            peer_dials: HashMap::new(),
            requests: HashMap::new(),
            responders: HashMap::new(),
            discovery: Discovery::default(),
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

    /// Stops every link and fails every pending request with `error()`.
    fn fail_pending(&mut self, why: Stop, error: impl Fn() -> Error) {
        let _ = self.stop.send(Some(why));
        for (_, opening) in self.opening.drain() {
            for reply in opening.waiters {
                let _ = reply.send(Err(error()));
            }
        }
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
        self.discovery.fail_all(&error);
        for (_, _, reply) in self.deferred.drain(..) {
            let _ = reply.send(Err(error()));
        }
        for reply in self.listens.drain().flat_map(|(_, waiting)| waiting) {
            let _ = reply.send(Err(error()));
        }
    }

    /// An open connection to `peer` that is not being closed.
    fn usable_connection(&self, peer: &PeerId) -> Option<ConnectionId> {
        self.connections.iter().filter(|(c, (p, _, _))| p == peer && !self.closing.contains(c)).map(|(c, _)| *c).max()
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
    links: Arc<LinkTable>,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound_rx: mpsc::Receiver<Inbound>,
    /// Counts swarm restarts; frames read under an older swarm are dropped.
    epoch: u64,
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
    node: Node,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    outbox: VecDeque<Outgoing>,
    /// Every address learned for each peer (kept across restarts).
    learned: LearnedAddresses,
}

/// Sleeps until `deadline` (for ever if there is none).
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn no_sources() -> Error {
    Error::Rendezvous("no rendezvous server or DHT peer is known".into())
}

fn forbidden(policy: Policy, addr: &Multiaddr, reason: policy::Reason) -> Error {
    Error::PolicyForbids { policy, addr: addr.clone(), reason }
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        links: Arc<LinkTable>,
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
        let node = Node::build(&keypair, policy, &relays, &plugins, &config)?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.event_capacity);
        let rendezvous = servers_of(&config.rendezvous_servers)?;
        let mut driver = Self {
            runtime,
            links,
            inbound_tx,
            inbound_rx,
            epoch: 0,
            keypair,
            policy,
            relays,
            rendezvous,
            config,
            plugins,
            external: Vec::new(),
            held: Vec::new(),
            node,
            commands,
            events,
            outbox: VecDeque::new(),
            learned: LearnedAddresses::default(),
        };
        driver.seed_addresses();
        for addr in driver.config.listen.clone() {
            let id = driver.listen(addr)?;
            driver.node.starting.insert(id);
        }
        driver.start_listening();
        Ok(driver)
    }

    /// Marks the start: commands (and the first dials) wait until the
    /// listeners in `starting` have an address, or the wait runs out.
    fn start_listening(&mut self) {
        self.node.starting_until = tokio::time::Instant::now() + crate::network::STARTUP_LISTEN_WAIT;
        self.started();
    }

    /// Once no starting listener is waited for: the deferred bootstrap.
    fn started(&mut self) {
        if self.node.starting() || !std::mem::take(&mut self.node.bootstrap_due) {
            return;
        }
        if let Some(kad) = self.node.swarm.behaviour_mut().kad.as_mut()
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

    pub(crate) async fn run(mut self) {
        let mut inbound = Vec::with_capacity(BATCH);
        let shutdown_reply = 'run: loop {
            // Stop reading from the swarm while the consumer is behind: this
            // is the backpressure (nothing is acknowledged meanwhile).
            let room = self.outbox.len() < self.config.event_capacity;
            let starting = self.node.starting();
            let expiry = self.node.discovery.next_deadline();
            tokio::select! {
                command = self.commands.recv(), if !starting => {
                    // Take what else is queued too, so a burst of sends costs
                    // one swarm poll, not one each.
                    let mut command = command;
                    for _ in 0..BATCH {
                        match command {
                            Some(Command::Shutdown { reply }) => break 'run Some(reply),
                            Some(c) => self.command(c),
                            None => break 'run None,
                        }
                        command = match self.commands.try_recv() {
                            Ok(c) => Some(c),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => None,
                        };
                    }
                },
                // Frames read by the inbound links.
                n = self.inbound_rx.recv_many(&mut inbound, BATCH), if room => {
                    for item in inbound.drain(..n) {
                        self.inbound_frame(item);
                    }
                    self.flush();
                },
                // Room in the event channel again (the permit is released
                // at once; `flush` takes it back).
                open = self.events.reserve().map(|permit| permit.is_ok()), if !self.outbox.is_empty() => {
                    if open { self.flush() } else { self.outbox.clear() }
                },
                // Announcements and lookups whose servers did not all answer
                // in time are answered with what came.
                () = until(expiry), if expiry.is_some() => {
                    self.node.discovery.expire(tokio::time::Instant::now());
                },
                // Listeners that never answer do not hold commands for good.
                () = tokio::time::sleep_until(self.node.starting_until), if starting => {
                    self.node.starting.clear();
                    self.started();
                },
                event = self.node.swarm.select_next_some(), if room => {
                    self.swarm_event(event);
                    self.flush();
                    // Handle whatever else is ready in the same turn.
                    for _ in 1..BATCH {
                        if self.outbox.len() >= self.config.event_capacity {
                            break;
                        }
                        match futures::poll!(self.node.swarm.next()) {
                            std::task::Poll::Ready(Some(event)) => {
                                self.swarm_event(event);
                                self.flush();
                            }
                            _ => break,
                        }
                    }
                },
            }
        };
        self.node.fail_pending(Stop::Shutdown, || Error::Shutdown);
        self.links.clear();
        let local = *self.node.swarm.local_peer_id();
        drop(self);
        tracing::debug!(peer = %local, "network stopped");
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Gives `addrs` of `peer` to the address book for dials by peer id, and
    /// records where they came from.
    fn remember(&mut self, peer: PeerId, addrs: &[Multiaddr], source: AddressSource) {
        self.learned.record_all(peer, addrs, source);
        self.node.swarm.behaviour_mut().links.add_addresses(peer, addrs.iter().cloned());
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
                // Lost if the link closes meanwhile; the sender then resends.
                ack.accept();
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Listen { addr, reply } => match self.listen(addr) {
                Ok(id) => {
                    self.node.listens.entry(id).or_default().push(reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Dial { addr, reply } => match self.dial(addr) {
                Ok(Some(id)) => {
                    self.node.dials.insert(id, reply);
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::OpenLink { peer, reply } => self.open_link(peer, reply),
            Command::DialPeer { peer, reply } => self.dial_peer(peer, reply),
            Command::Request { peer, request, reply } => {
                let id = self.node.swarm.behaviour_mut().contact.send_request(&peer, request);
                self.node.requests.insert(id, reply);
            }
            Command::Respond { id, response, reply } => {
                let channel = (id.epoch == self.epoch).then(|| self.node.responders.remove(&id.id)).flatten();
                let result = match channel {
                    None => Err(Error::NoSuchRequest),
                    Some(channel) => self
                        .node
                        .swarm
                        .behaviour_mut()
                        .contact
                        .send_response(channel, response)
                        .map_err(|_| Error::RequestFailed("the requester is gone".into())),
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
                let _ = reply.send(self.node.switch.attached());
            }
            Command::SetPolicy { policy, reply } => {
                let result =
                    if policy == self.policy { Ok(()) } else { self.restart(self.keypair.clone(), policy).map(|_| ()) };
                let _ = reply.send(result);
            }
            Command::SetRelays { addrs, reply } => {
                let result = if self.relays.replace_configured(&addrs) {
                    self.config.relays = addrs;
                    self.node.switch.set_guard(self.policy, self.relays.clone());
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
                    self.node.swarm.add_external_address(addr.clone());
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
                let _ = reply.send(*self.node.swarm.local_peer_id());
            }
            Command::Policy { reply } => {
                let _ = reply.send(self.policy);
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.node.connected_peers());
            }
            Command::FoundNearby { peer, addrs, reply } => {
                let _ = reply.send(self.found_nearby(peer, &addrs, AddressSource::Proximity));
            }
            Command::Connections { reply } => {
                let open = self.node.connections.iter().filter(|(c, _)| !self.node.closing.contains(c));
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
                let _ = reply.send(self.node.swarm.listeners().cloned().collect());
            }
            Command::Shutdown { reply } => {
                // Handled by `run`; unreachable in practice.
                let _ = reply.send(());
            }
        }
    }

    /// The relays named in the circuit addresses `peer` gave itself
    /// (identify, its signed rendezvous record) or that reached it before.
    fn relays_of(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let trusted = [AddressSource::Connection, AddressSource::Identify, AddressSource::Rendezvous];
        self.learned
            .addrs_of(peer)
            .filter(|(_, sources)| sources.iter().any(|s| trusted.contains(s)))
            .filter_map(|(addr, _)| policy::relay_hop(addr))
            .collect()
    }

    /// Lets a dial of `peer` by peer id go through the relays of its own
    /// circuit addresses, as a dial of one of those addresses would (the
    /// relay sees this node's IP address: the price of reaching a contact
    /// that drew another relay). Relays named by third parties (the DHT)
    /// stay refused.
    fn allow_relays_of(&mut self, peer: PeerId) {
        for relay in self.relays_of(&peer).iter().filter_map(policy::peer_of) {
            self.relays.add_dialed(relay);
            self.node.switch.allow_relay(relay);
        }
    }

    /// Learns the relays `peer` is reachable through: the relay part of each
    /// circuit address the peer gave itself (identify, its signed rendezvous
    /// record) or that reached it (a dialed connection). Third-party sources
    /// (the DHT, the address book, mDNS) are not trusted for this. Returns
    /// the relays that are new.
    fn learn_relays_of(&mut self, peer: PeerId) -> Vec<Multiaddr> {
        let new: Vec<Multiaddr> =
            self.relays_of(&peer).into_iter().filter(|hop| self.relays.add_learned(hop)).collect();
        if !new.is_empty() {
            self.node.switch.set_guard(self.policy, self.relays.clone());
            tracing::debug!(count = new.len(), "relays learned from a contact");
        }
        new
    }

    /// The kind of the transport that would carry `addr`.
    fn kind_for(&self, addr: &Multiaddr) -> Result<crate::TransportKind> {
        self.node.switch.route(addr).map(|(_, kind)| kind).ok_or_else(|| Error::NoTransport { addr: addr.clone() })
    }

    fn check_listen(&self, addr: &Multiaddr) -> Result<()> {
        let verdict = match policy::relay_hop(addr) {
            Some(hop) => policy::check_circuit_listen(self.policy, self.kind_for(&hop)?, addr, &self.relays),
            None => policy::check_listen(self.policy, self.kind_for(addr)?, addr),
        };
        verdict.map_err(|reason| forbidden(self.policy, addr, reason))
    }

    fn check_dial(&self, addr: &Multiaddr) -> Result<()> {
        let verdict = match policy::relay_hop(addr) {
            Some(hop) => policy::check_circuit_dial(self.policy, self.kind_for(&hop)?, addr, &self.relays),
            None => policy::check_dial(self.policy, self.kind_for(addr)?, addr, &self.relays),
        };
        verdict.map_err(|reason| forbidden(self.policy, addr, reason))
    }

    fn listen(&mut self, addr: Multiaddr) -> Result<ListenerId> {
        self.check_listen(&addr)?;
        let id = self.node.swarm.listen_on(addr.clone()).map_err(|e| match e {
            TransportError::MultiaddrNotSupported(addr) => Error::NoTransport { addr },
            TransportError::Other(e) => Error::Listen(e.to_string()),
        })?;
        // Listening there again by hand: no longer held for a later policy.
        self.held.retain(|held| held != &addr);
        self.node.listeners.insert(id, addr);
        Ok(id)
    }

    /// Listens through `relay` (an address ending in `/p2p/<relay id>`) and
    /// stops listening through any other relay; answers with the circuit
    /// address once the reservation is accepted.
    fn use_relay(&mut self, relay: Multiaddr, reply: Reply<Multiaddr>) {
        let Some(relay_id) = policy::peer_of(&relay) else {
            let _ = reply.send(Err(Error::Config("relay addresses must end in /p2p/<peer id>")));
            return;
        };
        let through = |addr: &Multiaddr| policy::relay_hop(addr).as_ref().and_then(policy::peer_of);
        let others: Vec<ListenerId> = self
            .node
            .listeners
            .iter()
            .filter(|(_, a)| policy::is_circuit(a) && through(a) != Some(relay_id))
            .map(|(id, _)| *id)
            .collect();
        for id in others {
            self.node.listeners.remove(&id);
            self.node.swarm.remove_listener(id);
        }
        if let Some(addr) = self.node.swarm.listeners().find(|a| through(a) == Some(relay_id)) {
            let _ = reply.send(Ok(addr.clone()));
            return;
        }
        // A listener through this relay still waiting for its reservation
        // (one reopened by a restart) answers when it is accepted. A second
        // reservation would fail instead: the relay client dials the relay
        // only if no dial to it is under way, and drops the request if its
        // dial is refused for that, closing the listener.
        if let Some(pending) = self.node.listeners.iter().find(|(_, a)| through(a) == Some(relay_id)).map(|(id, _)| *id)
        {
            self.node.listens.entry(pending).or_default().push(reply);
            return;
        }
        match self.listen(relay.with(libp2p::multiaddr::Protocol::P2pCircuit)) {
            Ok(id) => {
                self.node.listens.entry(id).or_default().push(reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Starts a dial; `Ok(None)` if the reply was already sent.
    fn dial(&mut self, addr: Multiaddr) -> Result<Option<ConnectionId>> {
        self.check_dial(&addr)?;
        if self.policy == Policy::Relayed
            && let Some(relay) = policy::relay_hop(&addr).as_ref().and_then(policy::peer_of)
        {
            self.relays.add_dialed(relay);
            self.node.switch.allow_relay(relay);
        }
        let opts = match policy::peer_of(&addr) {
            Some(peer) => DialOpts::peer_id(peer).addresses(vec![addr]).condition(PeerCondition::Always).build(),
            None => DialOpts::unknown_peer_id().address(addr).build(),
        };
        let id = opts.connection_id();
        match self.node.swarm.dial(opts) {
            Ok(()) => Ok(Some(id)),
            Err(DialError::Transport(errors)) => {
                let reason = errors.iter().map(|(_, e)| e.to_string()).collect::<Vec<_>>().join("; ");
                Err(Error::Dial(reason))
            }
            Err(e) => Err(Error::Dial(e.to_string())),
        }
    }

    fn attach(&mut self, plugin: Arc<dyn TransportPlugin>) -> Result<()> {
        let id = plugin.id();
        if self.plugins.iter().any(|p| p.id() == id) {
            return Err(Error::AlreadyAttached(id));
        }
        let transport = plugin.build(&self.keypair)?;
        self.node.switch.attach(plugin.clone(), transport)?;
        self.plugins.push(plugin);
        Ok(())
    }

    fn detach(&mut self, id: &TransportId) -> Result<()> {
        self.node.switch.detach(id)?;
        self.plugins.retain(|p| &p.id() != id);
        let doomed: Vec<ConnectionId> =
            self.node.connections.iter().filter(|(_, (_, t, _))| t == id).map(|(c, _)| *c).collect();
        tracing::debug!(transport = %id, connections = doomed.len(), "closing the detached transport's connections");
        for c in doomed {
            self.node.closing.insert(c);
            self.node.swarm.close_connection(c);
        }
        Ok(())
    }

    /// Replaces the swarm with one for `keypair` and `policy`.
    fn restart(&mut self, keypair: Keypair, policy: Policy) -> Result<PeerId> {
        let node = Node::build(&keypair, policy, &self.relays, &self.plugins, &self.config)?;
        // The old swarm's listeners close now, before the new one listens
        // in their place: a transport's own state (a memory port, Tor's
        // service status) is then released before it is taken again, not
        // whenever the old swarm's last reference goes.
        self.node.switch.close_listeners();
        let mut old = std::mem::replace(&mut self.node, node);
        self.keypair = keypair;
        self.policy = policy;
        old.fail_pending(Stop::Restarted, || Error::Restarted);
        self.links.clear();
        self.epoch += 1;
        // Frames not yet accepted by the consumer are dropped unacknowledged:
        // their senders see the connection close and resend.
        self.outbox.retain(|o| o.ack.is_none());
        let peers = old.connected_peers();
        let mut requested: Vec<Multiaddr> = old.listeners.values().cloned().collect();
        requested.append(&mut self.held);
        // Dropping the old swarm closes its listeners and connections, freeing
        // fixed ports before they are reopened.
        drop(old);
        for peer in peers {
            self.emit(NetworkEvent::PeerDisconnected { peer });
        }
        let peer_id = *self.node.swarm.local_peer_id();
        tracing::debug!(peer = %peer_id, %policy, "swarm restarted");
        self.emit(NetworkEvent::Restarted { peer_id });
        for addr in requested {
            match self.listen(addr.clone()) {
                // A circuit listener waits for a relay round trip: commands do not.
                Ok(id) if !policy::is_circuit(&addr) => {
                    self.node.starting.insert(id);
                }
                Ok(_) => {}
                // Held for a later policy that allows it (a circuit listener
                // is not: the relay draw of that policy chooses its own).
                Err(e @ Error::PolicyForbids { .. }) if !policy::is_circuit(&addr) => {
                    tracing::debug!(error = %e, "listener closed until a policy allows it");
                    self.held.push(addr);
                }
                Err(e) => tracing::debug!(error = %e, "listener not reopened after restart"),
            }
        }
        self.start_listening();
        for addr in self.external.clone() {
            if self.policy.may_advertise(&addr) {
                self.node.swarm.add_external_address(addr);
            }
        }
        self.seed_addresses();
        self.flush();
        Ok(peer_id)
    }

    /// `peer` was found nearby at `addrs` (by `source`): they are kept for
    /// dials, and whoever needs nearby peers hears of it.
    fn found_nearby(&mut self, peer: PeerId, addrs: &[Multiaddr], source: AddressSource) -> Result<()> {
        if !self.policy.proximity() {
            return Err(Error::Config("the privacy policy has no proximity discovery"));
        }
        // Only addresses the policy lets this node dial are kept.
        let mut refused = None;
        let addrs: Vec<Multiaddr> = addrs
            .iter()
            .filter(|a| match self.check_dial(a) {
                Ok(()) => true,
                Err(e) => {
                    refused = Some(e);
                    false
                }
            })
            .cloned()
            .collect();
        if let (true, Some(e)) = (addrs.is_empty(), refused) {
            return Err(e);
        }
        self.learned.record_all(peer, &addrs, source);
        for addr in &addrs {
            self.node.swarm.add_peer_address(peer, addr.clone());
        }
        self.emit(NetworkEvent::PeerDiscovered { peer, addrs });
        Ok(())
    }

    /// A hole punch with `peer` ended: on success the new connection is
    /// marked upgraded and the relayed ones to the peer close (their links
    /// reopen on the direct connection; frames in flight on them are resent
    /// by their senders, like on any lost connection).
    fn hole_punched(&mut self, peer: PeerId, result: Result<ConnectionId, dcutr::Error>) {
        let upgraded = match result {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "hole punching failed; the connection stays relayed");
                return;
            }
        };
        let Some(open) = self.node.connections.get_mut(&upgraded) else { return };
        open.2 = Route::Upgraded;
        tracing::debug!(%peer, "hole punched: a direct connection replaces the relayed one");
        let relayed: Vec<ConnectionId> = self
            .node
            .connections
            .iter()
            .filter(|(_, (p, _, route))| *p == peer && *route == Route::Relayed)
            .map(|(c, _)| *c)
            .collect();
        for c in relayed {
            self.node.closing.insert(c);
            self.node.swarm.close_connection(c);
        }
    }

    fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                tracing::debug!(%address, "listening");
                if self.node.starting.remove(&listener_id) {
                    self.started();
                }
                // A relay's reservations carry its external addresses: without
                // one, every reservation would be refused.
                if self.config.relay_server
                    && self.policy.advertises_listen_addrs()
                    && !policy::is_circuit(&address)
                    && !self.node.swarm.external_addresses().any(|a| a == &address)
                {
                    self.node.swarm.add_external_address(address.clone());
                }
                // An onion service is reachable (the Tor transport reports its
                // address once the descriptor is out) and reveals no IP address:
                // it is what an `anonymous` node registers and identify sends.
                if policy::is_onion(&address) && !self.node.swarm.external_addresses().any(|a| a == &address) {
                    self.node.swarm.add_external_address(address.clone());
                }
                for reply in self.node.listens.remove(&listener_id).into_iter().flatten() {
                    let _ = reply.send(Ok(address.clone()));
                }
                self.emit(NetworkEvent::Listening { addr: address });
                if !self.node.deferred.is_empty() {
                    self.announce_deferred();
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if policy::is_onion(&address) {
                    self.node.swarm.remove_external_address(&address);
                }
                self.emit(NetworkEvent::ListenAddrExpired { addr: address });
            }
            SwarmEvent::ListenerClosed { listener_id, addresses, reason } => {
                self.node.listeners.remove(&listener_id);
                if self.node.starting.remove(&listener_id) {
                    self.started();
                }
                let why = match reason {
                    Ok(()) => "listener closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                for reply in self.node.listens.remove(&listener_id).into_iter().flatten() {
                    let _ = reply.send(Err(Error::Listen(why.clone())));
                }
                for addr in addresses {
                    if policy::is_onion(&addr) {
                        self.node.swarm.remove_external_address(&addr);
                    }
                    self.emit(NetworkEvent::ListenAddrExpired { addr });
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::debug!(%error, "listener error");
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, num_established, .. } => {
                let transport = self.transport_of(&endpoint);
                match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => {
                        // Remembered for dials by peer id (a later frame link).
                        self.remember(peer_id, std::slice::from_ref(address), AddressSource::Connection);
                    }
                    // Whoever comes in through an onion service has no address.
                    ConnectedPoint::Listener { send_back_addr, .. } if !policy::is_onion(send_back_addr) => {
                        self.learned.record(peer_id, send_back_addr, AddressSource::Connection);
                    }
                    ConnectedPoint::Listener { .. } => {}
                }
                if let Some(reply) = self.node.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                let Some((transport, kind)) = transport else {
                    // Raced with a detach: the transport is gone, so is the connection.
                    tracing::debug!(peer = %peer_id, "closing a connection over a detached transport");
                    self.node.swarm.close_connection(connection_id);
                    return;
                };
                tracing::debug!(peer = %peer_id, %transport, total = num_established, "connection established");
                // Counted from our own table: a connection closed at once
                // (detached transport) must not hide the next one.
                let first = !self.node.connections.values().any(|(p, _, _)| *p == peer_id);
                let route = if endpoint.is_relayed() { Route::Relayed } else { Route::Direct };
                self.node.connections.insert(connection_id, (peer_id, transport.clone(), route));
                if first {
                    self.emit(NetworkEvent::PeerConnected { peer: peer_id, transport });
                }
                for reply in self.node.peer_dials.remove(&peer_id).into_iter().flatten() {
                    let _ = reply.send(Ok(()));
                }
                // A link waiting for a connection to this peer.
                if let Some(opening) = self.node.opening.get_mut(&peer_id)
                    && opening.on.is_none()
                {
                    opening.on = Some(connection_id);
                    self.node.swarm.behaviour_mut().links.open(peer_id, connection_id);
                }
                // A connection over a proximity transport (BLE) is a peer in
                // range, whichever side dialed: found nearby, as by mDNS.
                if kind == crate::TransportKind::Proximity && self.policy.proximity() {
                    let dialed = match &endpoint {
                        ConnectedPoint::Dialer { address, .. } => vec![address.clone()],
                        ConnectedPoint::Listener { .. } => Vec::new(),
                    };
                    if let Err(e) = self.found_nearby(peer_id, &dialed, AddressSource::Proximity) {
                        tracing::debug!(peer = %peer_id, error = %e, "a peer in range not taken as nearby");
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                let known = self.node.connections.remove(&connection_id).is_some();
                self.node.closing.remove(&connection_id);
                self.node.inbound_links.remove(&connection_id);
                if let Some(guard) = self.node.link_guards.remove(&connection_id) {
                    let _ = guard.send(true);
                }
                if self.node.opening.get(&peer_id).is_some_and(|o| o.on == Some(connection_id)) {
                    // The stream was requested on this connection: try another.
                    self.retry_link(peer_id);
                }
                if known && !self.node.connections.values().any(|(p, _, _)| *p == peer_id) {
                    self.emit(NetworkEvent::PeerDisconnected { peer: peer_id });
                }
                tracing::debug!(peer = %peer_id, remaining = num_established, "connection closed");
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, peer_id } => {
                let reason = error.to_string();
                if let Some(reply) = self.node.dials.remove(&connection_id) {
                    let _ = reply.send(Err(Error::Dial(reason.clone())));
                }
                if let Some(peer) = peer_id
                    && self.node.usable_connection(&peer).is_none()
                {
                    if self.node.opening.get(&peer).is_some_and(|o| o.on.is_none()) {
                        self.fail_link(peer, &reason);
                    }
                    for reply in self.node.peer_dials.remove(&peer).into_iter().flatten() {
                        let _ = reply.send(Err(Error::Dial(reason.clone())));
                    }
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } if !self.policy.may_advertise(&address) => {
                tracing::debug!(%address, "dropping an external address the policy does not advertise");
                self.node.swarm.remove_external_address(&address);
            }
            SwarmEvent::ExternalAddrConfirmed { .. } if !self.node.deferred.is_empty() => self.announce_deferred(),
            SwarmEvent::Behaviour(event) => self.behaviour_event(event),
            _ => {}
        }
    }

    /// The transport a connection went over, judged from its local or remote address.
    fn transport_of(&self, endpoint: &ConnectedPoint) -> Option<(TransportId, crate::TransportKind)> {
        let addr = match endpoint {
            ConnectedPoint::Dialer { address, .. } => address,
            ConnectedPoint::Listener { local_addr, .. } => local_addr,
        };
        if policy::is_circuit(addr) {
            return Some((TransportId::RELAY, crate::TransportKind::Ip));
        }
        self.node.switch.route(addr)
    }

    fn behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Links(event) => self.link_event(event),
            BehaviourEvent::Contact(event) => self.contact_event(event),
            BehaviourEvent::Rendezvous(event) => self.rendezvous_event(event),
            BehaviourEvent::RendezvousServer(event) => self.rendezvous_server_event(event),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed { id, result, step, .. }) => {
                self.kad_event(id, result, step.last);
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, addresses, .. }) => {
                self.learned.record_all(peer, addresses.iter(), AddressSource::Dht);
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.remember(peer_id, &info.listen_addrs, AddressSource::Identify);
                let behaviour = self.node.swarm.behaviour_mut();
                if self.policy == Policy::Direct
                    && info.protocols.contains(&KAD_PROTOCOL)
                    && let Some(kad) = behaviour.kad.as_mut()
                {
                    for addr in &info.listen_addrs {
                        kad.add_address(&peer_id, addr.clone());
                    }
                }
                self.emit(NetworkEvent::PeerIdentified { peer: peer_id, listen_addrs: info.listen_addrs });
            }
            BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => self.hole_punched(remote_peer_id, result),
            // A connection that does not answer pings is dead (the peer is
            // gone, or the path to it: a partition, a lost NAT mapping); TCP
            // alone would keep it for hours and every send would time out on
            // it. Closed, the next send dials anew. (A peer that does not
            // speak ping is not judged by it.)
            BehaviourEvent::Ping(ping::Event { peer, connection, result: Err(e) })
                if !matches!(e, ping::Failure::Unsupported) =>
            {
                tracing::debug!(%peer, error = %e, "closing a connection that stopped answering pings");
                self.node.swarm.close_connection(connection);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    if let Err(e) = self.found_nearby(peer, &addrs, AddressSource::Mdns) {
                        tracing::debug!(error = %e, "an mDNS sighting refused");
                    }
                }
            }
            _ => {}
        }
    }

    /// Sets up (or finds) the outbound frame link to `peer`.
    fn open_link(&mut self, peer: PeerId, reply: Reply<LinkSender>) {
        if let Some(link) = self.links.get(&peer) {
            let _ = reply.send(Ok(link));
            return;
        }
        if let Some(opening) = self.node.opening.get_mut(&peer) {
            opening.waiters.push(reply);
            return;
        }
        self.node.opening.insert(peer, Opening { waiters: vec![reply], on: None });
        self.retry_link(peer);
    }

    /// Requests the stream of a link being set up on a usable connection, or
    /// dials the peer (by id, with the addresses the behaviours know).
    fn retry_link(&mut self, peer: PeerId) {
        let Some(opening) = self.node.opening.get_mut(&peer) else { return };
        opening.on = None;
        if let Some(connection) = self.node.usable_connection(&peer) {
            if let Some(opening) = self.node.opening.get_mut(&peer) {
                opening.on = Some(connection);
            }
            self.node.swarm.behaviour_mut().links.open(peer, connection);
            return;
        }
        let opts = DialOpts::peer_id(peer).condition(PeerCondition::NotDialing).build();
        match self.node.swarm.dial(opts) {
            // A dial already under way reports its outcome too.
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => self.fail_link(peer, &e.to_string()),
        }
    }

    fn fail_link(&mut self, peer: PeerId, reason: &str) {
        if let Some(opening) = self.node.opening.remove(&peer) {
            tracing::debug!(%peer, %reason, "frame link not opened");
            for reply in opening.waiters {
                let _ = reply.send(Err(Error::SendFailed(reason.to_owned())));
            }
        }
    }

    fn settings(&mut self, connection: ConnectionId) -> LinkSettings {
        let closed = self.node.link_guards.entry(connection).or_insert_with(|| watch::channel(false).0).subscribe();
        LinkSettings {
            closed,
            max_frame: self.config.max_frame_size,
            max_in_flight: self.config.max_frames_in_flight,
            ack_timeout: self.config.request_timeout,
            idle_timeout: self.config.idle_connection_timeout,
            stop: self.node.stop.subscribe(),
            table: self.links.clone(),
        }
    }

    fn link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Outbound { peer, connection, stream } => {
                if self.node.opening.get(&peer).is_none_or(|o| o.on != Some(connection)) {
                    // Nobody waits for it any more (dropping it closes it).
                    return;
                }
                match stream {
                    Ok(stream) => {
                        let settings = self.settings(connection);
                        let link = link::spawn_outbound(&self.runtime, peer, stream, settings);
                        if let Some(opening) = self.node.opening.remove(&peer) {
                            for reply in opening.waiters {
                                let _ = reply.send(Ok(link.clone()));
                            }
                        }
                    }
                    Err(reason) => self.fail_link(peer, &reason),
                }
            }
            LinkEvent::Inbound { peer, connection, stream } => {
                let slots = self.node.inbound_links.entry(connection).or_default().clone();
                if slots.fetch_add(1, Ordering::AcqRel) >= link::MAX_INBOUND_PER_CONNECTION {
                    slots.fetch_sub(1, Ordering::AcqRel);
                    tracing::debug!(%peer, "too many frame links on one connection; one refused");
                    return;
                }
                let deliver = self.inbound_tx.clone();
                let settings = self.settings(connection);
                link::spawn_inbound(&self.runtime, peer, stream, self.epoch, deliver, slots, settings);
            }
        }
    }

    fn dial_peer(&mut self, peer: PeerId, reply: Reply<()>) {
        if self.node.usable_connection(&peer).is_some() {
            let _ = reply.send(Ok(()));
            return;
        }
        let waiting = self.node.peer_dials.entry(peer).or_default();
        waiting.push(reply);
        if waiting.len() > 1 {
            return;
        }
        if self.policy == Policy::Relayed {
            self.allow_relays_of(peer);
        }
        let opts = DialOpts::peer_id(peer).condition(PeerCondition::NotDialing).build();
        match self.node.swarm.dial(opts) {
            // A dial already under way reports its outcome too.
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => {
                for reply in self.node.peer_dials.remove(&peer).into_iter().flatten() {
                    let _ = reply.send(Err(Error::Dial(e.to_string())));
                }
            }
        }
    }

    fn contact_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request_id, request, channel } => {
                    if self.node.responders.len() >= RESPONDERS_PRUNE_AT {
                        self.node.responders.retain(|_, c| c.is_open());
                    }
                    self.node.responders.insert(request_id, channel);
                    let id = InboundRequestId { epoch: self.epoch, id: request_id };
                    self.emit(NetworkEvent::RequestReceived { peer, id, request });
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.node.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = self.node.requests.remove(&request_id) {
                    let error = match error {
                        request_response::OutboundFailure::Timeout => Error::Timeout,
                        other => Error::RequestFailed(other.to_string()),
                    };
                    let _ = reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure { peer, request_id, error, .. } => {
                tracing::debug!(%peer, %error, "inbound contact request failed");
                self.node.responders.remove(&request_id);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// The DHT, if it runs and knows at least one peer.
    fn kad_ready(&mut self) -> Option<&mut kad::Behaviour<kad::store::MemoryStore>> {
        let kad = self.node.swarm.behaviour_mut().kad.as_mut()?;
        let known: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
        (known > 0).then_some(kad)
    }

    fn discovery_allowed(&self, what: &'static str) -> Result<()> {
        if self.policy.discovery() { Ok(()) } else { Err(Error::NotUnderPolicy { policy: self.policy, what }) }
    }

    /// The servers to ask (never this node itself), each once: a server
    /// configured with several addresses is one server.
    fn servers(&self) -> Vec<PeerId> {
        let me = *self.node.swarm.local_peer_id();
        let mut servers: Vec<PeerId> = self.rendezvous.iter().map(|(p, _)| *p).filter(|p| *p != me).collect();
        servers.sort();
        servers.dedup();
        servers
    }

    /// The servers to ask and the number of answers to wait for (one per
    /// server, one for the DHT if it can be asked); `None` if there is nobody.
    fn sources(&mut self) -> Option<(Vec<PeerId>, usize)> {
        let servers = self.servers();
        let parts = servers.len() + usize::from(self.kad_ready().is_some());
        (parts > 0).then_some((servers, parts))
    }

    fn announce(&mut self, point: [u8; 32], ttl: Duration, reply: Reply<()>) {
        if let Err(e) = self.discovery_allowed("rendezvous announcements") {
            let _ = reply.send(Err(e));
            return;
        }
        if self.policy.advertises_listen_addrs() {
            // A Direct node's listen addresses are what it can be reached at.
            let external: HashSet<Multiaddr> = self.node.swarm.external_addresses().cloned().collect();
            let listen: Vec<Multiaddr> = self.node.swarm.listeners().cloned().collect();
            for addr in listen {
                if !external.contains(&addr) && !policy::is_unspecified_addr(&addr) {
                    self.node.swarm.add_external_address(addr);
                }
            }
        }
        let Some((servers, parts)) = self.sources() else {
            let _ = reply.send(Err(no_sources()));
            return;
        };
        if self.node.swarm.external_addresses().next().is_none() {
            // Nothing to register yet (not listening yet, or no relay circuit
            // yet): wait for an address.
            if self.node.deferred.len() >= MAX_DEFERRED
                && let Some((_, _, oldest)) = self.node.deferred.pop_front()
            {
                let _ = oldest.send(Err(Error::Rendezvous("too many announcements wait for an address".into())));
            }
            self.node.deferred.push_back((point, ttl, reply));
            return;
        }
        let ns = discovery::namespace(&point);
        let deadline = tokio::time::Instant::now() + self.discovery_patience();
        let id = self.node.discovery.announce(parts, deadline, reply);
        for server in servers {
            let registered =
                match (rendezvous::Namespace::new(ns.clone()), self.node.swarm.behaviour_mut().rendezvous.as_mut()) {
                    (Ok(namespace), Some(client)) => {
                        client.register(namespace, server, Some(ttl.as_secs())).map_err(|e| e.to_string())
                    }
                    (Err(e), _) => Err(e.to_string()),
                    (_, None) => Err("no rendezvous client".to_owned()),
                };
            match registered {
                Ok(()) => self.node.discovery.registering(server, ns.clone(), id),
                Err(e) => self.node.discovery.announce_part(id, Err(e)),
            }
        }
        if let Some(kad) = self.kad_ready() {
            match kad.start_providing(kad::RecordKey::new(&point)) {
                Ok(query) => self.node.discovery.kad_announce(query, id),
                Err(e) => self.node.discovery.announce_part(id, Err(e.to_string())),
            }
        }
    }

    /// Refuses work meant for another peer id (the swarm restarted since).
    fn is_still(&self, as_peer: Option<PeerId>) -> Result<()> {
        match as_peer {
            Some(peer) if peer != *self.node.swarm.local_peer_id() => Err(Error::Restarted),
            _ => Ok(()),
        }
    }

    /// Makes the announcements that waited for an address.
    fn announce_deferred(&mut self) {
        let waiting: Vec<_> = self.node.deferred.drain(..).collect();
        for (point, ttl, reply) in waiting {
            if !reply.is_closed() {
                self.announce(point, ttl, reply);
            }
        }
    }

    fn withdraw(&mut self, point: [u8; 32]) -> Result<()> {
        self.node.deferred.retain(|(p, _, _)| p != &point);
        if !self.policy.discovery() {
            return Ok(());
        }
        let servers = self.servers();
        let behaviour = self.node.swarm.behaviour_mut();
        if let (Ok(namespace), Some(client)) =
            (rendezvous::Namespace::new(discovery::namespace(&point)), behaviour.rendezvous.as_mut())
        {
            for server in servers {
                client.unregister(namespace.clone(), server);
            }
        }
        if let Some(kad) = behaviour.kad.as_mut() {
            kad.stop_providing(&kad::RecordKey::new(&point));
        }
        Ok(())
    }

    fn lookup(&mut self, point: [u8; 32], reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>>) {
        if let Err(e) = self.discovery_allowed("rendezvous lookups") {
            let _ = reply.send(Err(e));
            return;
        }
        let Some((servers, parts)) = self.sources() else {
            let _ = reply.send(Err(no_sources()));
            return;
        };
        let me = *self.node.swarm.local_peer_id();
        let ns = discovery::namespace(&point);
        let deadline = tokio::time::Instant::now() + self.discovery_patience();
        let id = self.node.discovery.lookup(me, parts, deadline, reply);
        for server in servers {
            if let Some(ns) = self.node.discovery.queue_discovery(server, ns.clone(), id) {
                self.discover(server, ns);
            }
        }
        if let Some(kad) = self.kad_ready() {
            let query = kad.get_providers(kad::RecordKey::new(&point));
            self.node.discovery.kad_lookup(query, id);
        }
    }

    /// How long an announcement or lookup waits for its servers: twice a
    /// request's timeout, so a first dial to a server (an onion service)
    /// fits, while a server that does not answer holds up the others' no
    /// longer.
    fn discovery_patience(&self) -> Duration {
        self.config.request_timeout.saturating_mul(2)
    }

    /// Asks `server` who is registered under `ns` (its answer comes as an event).
    fn discover(&mut self, server: PeerId, ns: String) {
        let namespace = match rendezvous::Namespace::new(ns) {
            Ok(n) => n,
            Err(e) => return self.discovered(server, Err(e.to_string()), Vec::new()),
        };
        match self.node.swarm.behaviour_mut().rendezvous.as_mut() {
            Some(client) => client.discover(Some(namespace), None, Some(MAX_LOOKUP_PEERS as u64), server),
            None => self.discovered(server, Err("no rendezvous client".into()), Vec::new()),
        }
    }

    /// A server answered the discovery in flight; asks it the next one.
    fn discovered(&mut self, server: PeerId, outcome: Result<(), String>, found: Vec<rendezvous::Registration>) {
        let (done, next) = self.node.discovery.discovered(server);
        if let Some((ns, id)) = done {
            for registration in found.into_iter().filter(|r| r.namespace.to_string() == ns) {
                let peer = registration.record.peer_id();
                let addrs = registration.record.addresses().to_vec();
                self.remember(peer, &addrs, AddressSource::Rendezvous);
                if let Some(found) = self.node.discovery.found(id) {
                    found.add(peer, addrs);
                }
            }
            self.node.discovery.lookup_part(id, outcome);
        }
        if let Some(ns) = next {
            self.discover(server, ns);
        }
    }

    fn rendezvous_event(&mut self, event: rendezvous::client::Event) {
        use rendezvous::client::Event;
        match event {
            Event::Registered { rendezvous_node, namespace, .. } => {
                if let Some(id) = self.node.discovery.registered(rendezvous_node, namespace.to_string()) {
                    self.node.discovery.announce_part(id, Ok(()));
                }
            }
            Event::RegisterFailed { rendezvous_node, namespace, error } => {
                if let Some(id) = self.node.discovery.registered(rendezvous_node, namespace.to_string()) {
                    self.node.discovery.announce_part(id, Err(format!("registration refused: {error:?}")));
                }
            }
            Event::Discovered { rendezvous_node, registrations, .. } => {
                self.discovered(rendezvous_node, Ok(()), registrations);
            }
            Event::DiscoverFailed { rendezvous_node, error, .. } => {
                self.discovered(rendezvous_node, Err(format!("discovery failed: {error:?}")), Vec::new());
            }
            Event::Expired { .. } => {}
        }
    }

    fn rendezvous_server_event(&mut self, event: rendezvous::server::Event) {
        use rendezvous::server::Event;
        let (peer, namespace, registered) = match event {
            Event::PeerRegistered { peer, registration } => (peer, registration.namespace, true),
            Event::PeerUnregistered { peer, namespace } => (peer, namespace, false),
            Event::RegistrationExpired(r) => (r.record.peer_id(), r.namespace, false),
            _ => return,
        };
        let namespace = namespace.to_string();
        self.emit(if registered {
            NetworkEvent::RendezvousRegistered { peer, namespace }
        } else {
            NetworkEvent::RendezvousUnregistered { peer, namespace }
        });
    }

    fn kad_event(&mut self, query: kad::QueryId, result: kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::StartProviding(outcome) => {
                if let Some(id) = self.node.discovery.kad_announce_done(&query) {
                    let outcome = outcome.map(|_| ()).map_err(|e| format!("DHT: {e}"));
                    self.node.discovery.announce_part(id, outcome);
                }
            }
            kad::QueryResult::GetProviders(outcome) => {
                let Some(id) = self.node.discovery.kad_lookup_of(&query, last) else { return };
                let outcome = match outcome {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        for peer in providers {
                            // The providers' addresses are known to Kademlia
                            // only while the query runs.
                            let addrs = self.node.swarm.behaviour_mut().kad.as_mut().map(|kad| {
                                kad.handle_pending_outbound_connection(
                                    ConnectionId::new_unchecked(0),
                                    Some(peer),
                                    &[],
                                    Endpoint::Dialer,
                                )
                            });
                            let addrs = addrs.and_then(|r| r.ok()).unwrap_or_default();
                            self.remember(peer, &addrs, AddressSource::Dht);
                            if let Some(found) = self.node.discovery.found(id) {
                                found.add(peer, addrs);
                            }
                        }
                        Ok(())
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => Ok(()),
                    Err(e) => Err(format!("DHT: {e}")),
                };
                if last {
                    self.node.discovery.lookup_part(id, outcome);
                }
            }
            _ => {}
        }
    }

    /// Queues a frame an inbound link read; it is acknowledged once accepted.
    fn inbound_frame(&mut self, item: Inbound) {
        if item.epoch != self.epoch || !item.acks.is_open() {
            return;
        }
        self.outbox.push_back(Outgoing {
            event: NetworkEvent::FrameReceived { peer: item.peer, frame: item.frame },
            ack: Some(item.acks),
        });
    }
}
