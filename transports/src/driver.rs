//! The task that owns the swarm: executes commands, turns swarm events into
//! [`NetworkEvent`]s, and rebuilds the swarm on rotation or a policy change.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::{ListenerId, TransportError};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, identify, mdns, relay, swarm};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::error::{Error, Result};
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
    SendFrame { peer: PeerId, frame: Vec<u8>, reply: Reply<()> },
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

/// An event waiting for room in the event channel; a frame's acknowledgement
/// is sent only once its event is accepted.
struct Outgoing {
    event: NetworkEvent,
    ack: Option<ResponseChannel<Vec<u8>>>,
}

/// One swarm and what is tied to it (replaced wholesale on restart).
struct Node {
    swarm: Swarm<Behaviour>,
    switch: SwitchHandle,
    /// The transport each open connection went over.
    connections: HashMap<ConnectionId, (PeerId, TransportId)>,
    sends: HashMap<OutboundRequestId, Reply<()>>,
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
        let behaviour = Behaviour::new(keypair, relay_client, policy, config)?;
        let swarm = Swarm::new(
            transport,
            behaviour,
            peer_id,
            swarm::Config::with_tokio_executor().with_idle_connection_timeout(config.idle_connection_timeout),
        );
        Ok(Self {
            swarm,
            switch,
            connections: HashMap::new(),
            sends: HashMap::new(),
            dials: HashMap::new(),
            listens: HashMap::new(),
            listeners: HashMap::new(),
        })
    }

    /// Fails every pending request with `error()`.
    fn fail_pending(&mut self, error: impl Fn() -> Error) {
        for (_, reply) in self.sends.drain() {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in self.dials.drain() {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in self.listens.drain() {
            let _ = reply.send(Err(error()));
        }
    }

    fn connected_peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.connections.values().map(|(p, _)| *p).collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}

pub(crate) struct Driver {
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
    pub(crate) fn new(
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
        Ok(Self {
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
        self.node.fail_pending(|| Error::Shutdown);
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
                // Fails only if the connection closed meanwhile; the sender resends.
                let _ = self.node.swarm.behaviour_mut().frame.send_response(ack, Vec::new());
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
            Command::SendFrame { peer, frame, reply } => {
                let id = self.node.swarm.behaviour_mut().frame.send_request(&peer, frame);
                self.node.sends.insert(id, reply);
            }
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
        old.fail_pending(|| Error::Restarted);
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
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                let known = self.node.connections.remove(&connection_id).is_some();
                if known && !self.node.connections.values().any(|(p, _)| *p == peer_id) {
                    self.emit(NetworkEvent::PeerDisconnected { peer: peer_id });
                }
                tracing::debug!(peer = %peer_id, remaining = num_established, "connection closed");
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                if let Some(reply) = self.node.dials.remove(&connection_id) {
                    let _ = reply.send(Err(Error::Dial(error.to_string())));
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
            BehaviourEvent::Frame(event) => self.frame_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if self.policy == Policy::Direct && info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in &info.listen_addrs {
                        self.node.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
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

    fn frame_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.outbox.push_back(Outgoing {
                        event: NetworkEvent::FrameReceived { peer, frame: request },
                        ack: Some(channel),
                    });
                }
                request_response::Message::Response { request_id, .. } => {
                    if let Some(reply) = self.node.sends.remove(&request_id) {
                        let _ = reply.send(Ok(()));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = self.node.sends.remove(&request_id) {
                    let _ = reply.send(Err(Error::SendFailed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound frame failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
