//! The task that owns the swarm: executes commands, turns swarm events into
//! [`NetworkEvent`]s, and rebuilds the swarm on rotation or a policy change.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::{ListenerId, TransportError};
use libp2p::identity::Keypair;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, identify, mdns, relay, swarm};
use tokio::sync::{mpsc, oneshot, watch};

use crate::behaviour::{Behaviour, BehaviourEvent, Features, KAD_PROTOCOL};
use crate::error::{Error, Result};
use crate::link::{self, Acks, Inbound, LinkEvent, LinkSender, LinkSettings, LinkTable, Stop};
use crate::network::{NetworkConfig, NetworkEvent};
use crate::plugin::{TransportId, TransportPlugin, authenticate_and_multiplex};
use crate::policy::{self, Policy, RelaySet};
use crate::switchable::{SwitchHandle, SwitchableTransport};

type Reply<T> = oneshot::Sender<Result<T>>;

/// The most commands or swarm events handled in one turn of the loop.
const BATCH: usize = 64;

/// A request from a [`NetworkHandle`](crate::NetworkHandle).
pub(crate) enum Command {
    Listen { addr: Multiaddr, reply: Reply<Multiaddr> },
    Dial { addr: Multiaddr, reply: Reply<PeerId> },
    OpenLink { peer: PeerId, reply: Reply<LinkSender> },
    Attach { plugin: Arc<dyn TransportPlugin>, reply: Reply<()> },
    Detach { id: TransportId, reply: Reply<()> },
    Transports { reply: oneshot::Sender<Vec<TransportId>> },
    SetPolicy { policy: Policy, reply: Reply<()> },
    SetRelays { relays: RelaySet, reply: oneshot::Sender<()> },
    AddExternal { addr: Multiaddr, reply: Reply<()> },
    Rotate { keypair: Keypair, reply: Reply<PeerId> },
    LocalPeerId { reply: oneshot::Sender<PeerId> },
    ConnectedPeers { reply: oneshot::Sender<Vec<PeerId>> },
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
    connections: HashMap<ConnectionId, (PeerId, TransportId)>,
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
    listens: HashMap<ListenerId, Reply<Multiaddr>>,
    /// The address each live listener was asked for (to reopen on restart).
    listeners: HashMap<ListenerId, Multiaddr>,
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
        let transport = relay_transport.or_transport(switchable).map(|either, _| either.into_inner()).boxed();
        let features = Features::new(policy, config, relays);
        let mut behaviour = Behaviour::new(keypair, relay_client, policy, features, config)?;
        if let Some(kad) = behaviour.kad.as_mut() {
            for addr in &config.bootstrap {
                if let Some(peer) = policy::peer_of(addr) {
                    kad.add_address(&peer, addr.clone());
                }
            }
        }
        let mut swarm = Swarm::new(
            transport,
            behaviour,
            peer_id,
            swarm::Config::with_tokio_executor().with_idle_connection_timeout(config.idle_connection_timeout),
        );
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut()
            && !config.bootstrap.is_empty()
            && let Err(e) = kad.bootstrap()
        {
            tracing::debug!(error = %e, "Kademlia bootstrap not started");
        }
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
            listens: HashMap::new(),
            listeners: HashMap::new(),
        })
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
        for (_, reply) in self.listens.drain() {
            let _ = reply.send(Err(error()));
        }
    }

    /// An open connection to `peer` that is not being closed.
    fn usable_connection(&self, peer: &PeerId) -> Option<ConnectionId> {
        self.connections.iter().filter(|(c, (p, _))| p == peer && !self.closing.contains(c)).map(|(c, _)| *c).max()
    }

    fn connected_peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.connections.values().map(|(p, _)| *p).collect();
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
    config: NetworkConfig,
    plugins: Vec<Arc<dyn TransportPlugin>>,
    external: Vec<Multiaddr>,
    node: Node,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    outbox: VecDeque<Outgoing>,
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
        Ok(Self {
            runtime,
            links,
            inbound_tx,
            inbound_rx,
            epoch: 0,
            keypair,
            policy,
            relays,
            config,
            plugins,
            external: Vec::new(),
            node,
            commands,
            events,
            outbox: VecDeque::new(),
        })
    }

    pub(crate) async fn run(mut self) {
        let mut inbound = Vec::with_capacity(BATCH);
        let shutdown_reply = 'run: loop {
            // Stop reading from the swarm while the consumer is behind: this
            // is the backpressure (nothing is acknowledged meanwhile).
            let room = self.outbox.len() < self.config.event_capacity;
            tokio::select! {
                command = self.commands.recv() => {
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
                    self.node.listens.insert(id, reply);
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
            Command::Attach { plugin, reply } => {
                let _ = reply.send(self.attach(plugin));
            }
            Command::Detach { id, reply } => {
                let _ = reply.send(self.detach(&id));
            }
            Command::Transports { reply } => {
                let _ = reply.send(self.node.switch.attached().into_iter().map(|(id, _)| id).collect());
            }
            Command::SetPolicy { policy, reply } => {
                let result =
                    if policy == self.policy { Ok(()) } else { self.restart(self.keypair.clone(), policy).map(|_| ()) };
                let _ = reply.send(result);
            }
            Command::SetRelays { relays, reply } => {
                self.relays = relays;
                self.node.switch.set_guard(self.policy, self.relays.clone());
                let _ = reply.send(());
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
            Command::LocalPeerId { reply } => {
                let _ = reply.send(*self.node.swarm.local_peer_id());
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.node.connected_peers());
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
        self.node.listeners.insert(id, addr);
        Ok(id)
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
            self.node.connections.iter().filter(|(_, (_, t))| t == id).map(|(c, _)| *c).collect();
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
        let requested: Vec<Multiaddr> = old.listeners.values().cloned().collect();
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
            if let Err(e) = self.listen(addr) {
                tracing::debug!(error = %e, "listener not reopened after restart");
            }
        }
        for addr in self.external.clone() {
            if self.policy.may_advertise(&addr) {
                self.node.swarm.add_external_address(addr);
            }
        }
        self.flush();
        Ok(peer_id)
    }

    fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                tracing::debug!(%address, "listening");
                if let Some(reply) = self.node.listens.remove(&listener_id) {
                    let _ = reply.send(Ok(address.clone()));
                }
                self.emit(NetworkEvent::Listening { addr: address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.emit(NetworkEvent::ListenAddrExpired { addr: address });
            }
            SwarmEvent::ListenerClosed { listener_id, addresses, reason } => {
                self.node.listeners.remove(&listener_id);
                if let Some(reply) = self.node.listens.remove(&listener_id) {
                    let why = match reason {
                        Ok(()) => "listener closed".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    let _ = reply.send(Err(Error::Listen(why)));
                }
                for addr in addresses {
                    self.emit(NetworkEvent::ListenAddrExpired { addr });
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::debug!(%error, "listener error");
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, num_established, .. } => {
                let transport = self.transport_of(&endpoint);
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    // Remembered for dials by peer id (a later frame link).
                    self.node.swarm.behaviour_mut().links.add_addresses(peer_id, [address.clone()]);
                }
                if let Some(reply) = self.node.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                let Some(transport) = transport else {
                    // Raced with a detach: the transport is gone, so is the connection.
                    tracing::debug!(peer = %peer_id, "closing a connection over a detached transport");
                    self.node.swarm.close_connection(connection_id);
                    return;
                };
                tracing::debug!(peer = %peer_id, %transport, total = num_established, "connection established");
                // Counted from our own table: a connection closed at once
                // (detached transport) must not hide the next one.
                let first = !self.node.connections.values().any(|(p, _)| *p == peer_id);
                self.node.connections.insert(connection_id, (peer_id, transport.clone()));
                if first {
                    self.emit(NetworkEvent::PeerConnected { peer: peer_id, transport });
                }
                // A link waiting for a connection to this peer.
                if let Some(opening) = self.node.opening.get_mut(&peer_id)
                    && opening.on.is_none()
                {
                    opening.on = Some(connection_id);
                    self.node.swarm.behaviour_mut().links.open(peer_id, connection_id);
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
                if known && !self.node.connections.values().any(|(p, _)| *p == peer_id) {
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
                    && self.node.opening.get(&peer).is_some_and(|o| o.on.is_none())
                    && self.node.usable_connection(&peer).is_none()
                {
                    self.fail_link(peer, &reason);
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } if !self.policy.may_advertise(&address) => {
                tracing::debug!(%address, "dropping an external address the policy does not advertise");
                self.node.swarm.remove_external_address(&address);
            }
            SwarmEvent::Behaviour(event) => self.behaviour_event(event),
            _ => {}
        }
    }

    /// The transport a connection went over, judged from its local or remote address.
    fn transport_of(&self, endpoint: &ConnectedPoint) -> Option<TransportId> {
        let addr = match endpoint {
            ConnectedPoint::Dialer { address, .. } => address,
            ConnectedPoint::Listener { local_addr, .. } => local_addr,
        };
        if policy::is_circuit(addr) {
            return Some(TransportId::RELAY);
        }
        self.node.switch.route(addr).map(|(id, _)| id)
    }

    fn behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Links(event) => self.link_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let behaviour = self.node.swarm.behaviour_mut();
                behaviour.links.add_addresses(peer_id, info.listen_addrs.iter().cloned());
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
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    for addr in &addrs {
                        self.node.swarm.add_peer_address(peer, addr.clone());
                    }
                    self.emit(NetworkEvent::PeerDiscovered { peer, addrs });
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
