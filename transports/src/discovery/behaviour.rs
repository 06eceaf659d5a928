//! The `Discovery` behaviour: rendezvous points announced and looked up at
//! the rendezvous servers (libp2p rendezvous) and in the DHT (Kademlia) at
//! once, each command answered with what came in time. Peers it finds are
//! remembered for dials by peer id.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, kad, rendezvous};
use tokio::time::Instant;

use super::{MAX_LOOKUP_PEERS, Pending, Reply, namespace};
use crate::address_book::AddressBook;
use crate::error::{Error, Result};
use crate::learned::AddressSource;

/// The two protocols discovery speaks, each present only when the policy
/// and configuration run it.
#[derive(NetworkBehaviour)]
pub(crate) struct Protocols {
    rendezvous: Toggle<rendezvous::client::Behaviour>,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
}

/// What discovery tells the network task.
#[derive(Debug)]
pub(crate) enum DiscoveryEvent {
    /// Addresses of `peer` a server or the DHT gave; discovery already uses
    /// them for dials by peer id.
    Learned { peer: PeerId, addrs: Vec<Multiaddr>, source: AddressSource },
    /// The DHT's routing table now holds `peer` at `addrs`.
    Routed { peer: PeerId, addrs: Vec<Multiaddr> },
}

/// Announcements and lookups at rendezvous points, and their bookkeeping.
pub(crate) struct Discovery {
    protocols: Protocols,
    pending: Pending,
    /// This node's peer id (never asked, never found).
    me: PeerId,
    /// The rendezvous servers to ask, each once.
    servers: Vec<PeerId>,
    /// How long an announcement or lookup waits for its servers.
    patience: Duration,
    /// Addresses of the peers found, for dials by peer id.
    book: AddressBook,
    events: VecDeque<DiscoveryEvent>,
    waker: Option<Waker>,
}

impl Discovery {
    /// Discovery for `me` through `rendezvous` and `kad` (either may be
    /// absent), asking `servers`; a command waits `patience` for answers.
    pub(crate) fn new(
        me: PeerId,
        rendezvous: Option<rendezvous::client::Behaviour>,
        kad: Option<kad::Behaviour<kad::store::MemoryStore>>,
        servers: &[PeerId],
        patience: Duration,
    ) -> Self {
        let mut discovery = Self {
            protocols: Protocols { rendezvous: rendezvous.into(), kad: kad.into() },
            pending: Pending::default(),
            me,
            servers: Vec::new(),
            patience,
            book: AddressBook::default(),
            events: VecDeque::new(),
            waker: None,
        };
        discovery.set_servers(servers);
        discovery
    }

    /// The rendezvous servers to ask from now on (this node itself excluded;
    /// a server named with several addresses is one server).
    pub(crate) fn set_servers(&mut self, servers: &[PeerId]) {
        let mut servers: Vec<PeerId> = servers.iter().copied().filter(|p| *p != self.me).collect();
        servers.sort();
        servers.dedup();
        self.servers = servers;
    }

    /// The DHT, if it runs.
    pub(crate) fn kad(&mut self) -> Option<&mut kad::Behaviour<kad::store::MemoryStore>> {
        self.protocols.kad.as_mut()
    }

    /// Whether the DHT runs.
    pub(crate) fn kad_enabled(&self) -> bool {
        self.protocols.kad.is_enabled()
    }

    /// The DHT, if it runs and knows at least one peer.
    fn kad_ready(&mut self) -> Option<&mut kad::Behaviour<kad::store::MemoryStore>> {
        let kad = self.protocols.kad.as_mut()?;
        let known: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
        (known > 0).then_some(kad)
    }

    /// The number of answers a command waits for (one per server, one for
    /// the DHT if it can be asked); `None` if there is nobody to ask.
    fn parts(&mut self) -> Option<usize> {
        let parts = self.servers.len() + usize::from(self.kad_ready().is_some());
        (parts > 0).then_some(parts)
    }

    /// Fails unless there is someone to ask: a rendezvous server, or a DHT
    /// that knows a peer.
    pub(crate) fn check_sources(&mut self) -> Result<()> {
        self.parts().map(|_| ()).ok_or_else(no_sources)
    }

    /// When the earliest command in flight gives up waiting.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.next_deadline()
    }

    /// Answers the commands whose wait is over with what came in time.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.pending.expire(now);
    }

    /// Fails every command in flight with `error()` (the swarm stops).
    pub(crate) fn fail_all(&mut self, error: &impl Fn() -> Error) {
        self.pending.fail_all(error);
    }

    /// Registers this node under `point` for `ttl` at every server and as a
    /// provider in the DHT; succeeds once any of them accepted. The caller
    /// checked that the policy allows it and that the node has an address.
    pub(crate) fn announce(&mut self, point: [u8; 32], ttl: Duration, reply: Reply<()>) {
        let Some(parts) = self.parts() else {
            let _ = reply.send(Err(no_sources()));
            return;
        };
        let ns = namespace(&point);
        let deadline = Instant::now() + self.patience;
        let id = self.pending.announce(parts, deadline, reply);
        for server in self.servers.clone() {
            let registered = match (rendezvous::Namespace::new(ns.clone()), self.protocols.rendezvous.as_mut()) {
                (Ok(namespace), Some(client)) => {
                    client.register(namespace, server, Some(ttl.as_secs())).map_err(|e| e.to_string())
                }
                (Err(e), _) => Err(e.to_string()),
                (_, None) => Err("no rendezvous client".to_owned()),
            };
            match registered {
                Ok(()) => self.pending.registering(server, ns.clone(), id),
                Err(e) => self.pending.announce_part(id, Err(e)),
            }
        }
        if let Some(kad) = self.kad_ready() {
            match kad.start_providing(kad::RecordKey::new(&point)) {
                Ok(query) => self.pending.kad_announce(query, id),
                Err(e) => self.pending.announce_part(id, Err(e.to_string())),
            }
        }
    }

    /// Withdraws this node's registrations under `point`.
    pub(crate) fn withdraw(&mut self, point: [u8; 32]) {
        if let (Ok(namespace), Some(client)) =
            (rendezvous::Namespace::new(namespace(&point)), self.protocols.rendezvous.as_mut())
        {
            for server in &self.servers {
                client.unregister(namespace.clone(), *server);
            }
        }
        if let Some(kad) = self.protocols.kad.as_mut() {
            kad.stop_providing(&kad::RecordKey::new(&point));
        }
    }

    /// Who is registered under `point`, merged from every server and the
    /// DHT (at most [`MAX_LOOKUP_PEERS`]).
    pub(crate) fn lookup(&mut self, point: [u8; 32], reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>>) {
        let Some(parts) = self.parts() else {
            let _ = reply.send(Err(no_sources()));
            return;
        };
        let ns = namespace(&point);
        let deadline = Instant::now() + self.patience;
        let id = self.pending.lookup(self.me, parts, deadline, reply);
        for server in self.servers.clone() {
            if let Some(ns) = self.pending.queue_discovery(server, ns.clone(), id) {
                self.discover(server, ns);
            }
        }
        if let Some(kad) = self.kad_ready() {
            let query = kad.get_providers(kad::RecordKey::new(&point));
            self.pending.kad_lookup(query, id);
        }
    }

    /// Asks `server` who is registered under `ns` (its answer comes as an event).
    fn discover(&mut self, server: PeerId, ns: String) {
        let namespace = match rendezvous::Namespace::new(ns) {
            Ok(n) => n,
            Err(e) => return self.discovered(server, Err(e.to_string()), Vec::new()),
        };
        match self.protocols.rendezvous.as_mut() {
            Some(client) => client.discover(Some(namespace), None, Some(MAX_LOOKUP_PEERS as u64), server),
            None => self.discovered(server, Err("no rendezvous client".into()), Vec::new()),
        }
    }

    /// A server answered the discovery in flight; asks it the next one.
    fn discovered(&mut self, server: PeerId, outcome: Result<(), String>, found: Vec<rendezvous::Registration>) {
        let (done, next) = self.pending.discovered(server);
        if let Some((ns, id)) = done {
            for registration in found.into_iter().filter(|r| r.namespace.to_string() == ns) {
                let peer = registration.record.peer_id();
                let addrs = registration.record.addresses().to_vec();
                self.learn(peer, &addrs, AddressSource::Rendezvous);
                if let Some(found) = self.pending.found(id) {
                    found.add(peer, addrs);
                }
            }
            self.pending.lookup_part(id, outcome);
        }
        if let Some(ns) = next {
            self.discover(server, ns);
        }
    }

    /// Remembers `addrs` of `peer` for dials by peer id and reports them.
    fn learn(&mut self, peer: PeerId, addrs: &[Multiaddr], source: AddressSource) {
        if peer == self.me || addrs.is_empty() {
            return;
        }
        for addr in addrs {
            self.book.add(peer, addr.clone());
        }
        self.push(DiscoveryEvent::Learned { peer, addrs: addrs.to_vec(), source });
    }

    fn push(&mut self, event: DiscoveryEvent) {
        self.events.push_back(event);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn rendezvous_event(&mut self, event: rendezvous::client::Event) {
        use rendezvous::client::Event;
        match event {
            Event::Registered { rendezvous_node, namespace, .. } => {
                if let Some(id) = self.pending.registered(rendezvous_node, namespace.to_string()) {
                    self.pending.announce_part(id, Ok(()));
                }
            }
            Event::RegisterFailed { rendezvous_node, namespace, error } => {
                if let Some(id) = self.pending.registered(rendezvous_node, namespace.to_string()) {
                    self.pending.announce_part(id, Err(format!("registration refused: {error:?}")));
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

    fn kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => self.kad_query(id, result, step.last),
            kad::Event::RoutingUpdated { peer, addresses, .. } => {
                self.push(DiscoveryEvent::Routed { peer, addrs: addresses.into_vec() });
            }
            _ => {}
        }
    }

    fn kad_query(&mut self, query: kad::QueryId, result: kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::StartProviding(outcome) => {
                if let Some(id) = self.pending.kad_announce_done(&query) {
                    let outcome = outcome.map(|_| ()).map_err(|e| format!("DHT: {e}"));
                    self.pending.announce_part(id, outcome);
                }
            }
            kad::QueryResult::GetProviders(outcome) => {
                let Some(id) = self.pending.kad_lookup_of(&query, last) else { return };
                let outcome = match outcome {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        for peer in providers {
                            let addrs = self.kad_addresses_of(peer);
                            self.learn(peer, &addrs, AddressSource::Dht);
                            if let Some(found) = self.pending.found(id) {
                                found.add(peer, addrs);
                            }
                        }
                        Ok(())
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => Ok(()),
                    Err(e) => Err(format!("DHT: {e}")),
                };
                if last {
                    self.pending.lookup_part(id, outcome);
                }
            }
            _ => {}
        }
    }

    /// The addresses Kademlia knows for `peer`: its routing table's, and
    /// those the queries under way learned (a provider's, while its lookup
    /// runs). Kademlia gives them out only when the swarm dials, so they are
    /// read the way a dial reads them (Kademlia ignores the connection id).
    fn kad_addresses_of(&mut self, peer: PeerId) -> Vec<Multiaddr> {
        let Some(kad) = self.protocols.kad.as_mut() else { return Vec::new() };
        kad.handle_pending_outbound_connection(ConnectionId::new_unchecked(0), Some(peer), &[], Endpoint::Dialer)
            .unwrap_or_default()
    }
}

fn no_sources() -> Error {
    Error::Rendezvous("no rendezvous server or DHT peer is known".into())
}

impl NetworkBehaviour for Discovery {
    type ConnectionHandler = <Protocols as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = DiscoveryEvent;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> std::result::Result<(), ConnectionDenied> {
        self.protocols.handle_pending_inbound_connection(connection, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> std::result::Result<THandler<Self>, ConnectionDenied> {
        self.protocols.handle_established_inbound_connection(connection, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> std::result::Result<Vec<Multiaddr>, ConnectionDenied> {
        let mut addrs = self.protocols.handle_pending_outbound_connection(connection, peer, addresses, role)?;
        if let Some(peer) = peer {
            addrs.extend(self.book.get(&peer));
        }
        Ok(addrs)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> std::result::Result<THandler<Self>, ConnectionDenied> {
        self.protocols.handle_established_outbound_connection(connection, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.protocols.on_swarm_event(event);
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, connection: ConnectionId, event: THandlerOutEvent<Self>) {
        self.protocols.on_connection_handler_event(peer, connection, event);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(ToSwarm::GenerateEvent(event));
            }
            match self.protocols.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(ProtocolsEvent::Rendezvous(event))) => self.rendezvous_event(event),
                Poll::Ready(ToSwarm::GenerateEvent(ProtocolsEvent::Kad(event))) => self.kad_event(event),
                Poll::Ready(other) => {
                    return Poll::Ready(other.map_out(|_| unreachable!("protocol events are handled above")));
                }
                Poll::Pending => {
                    self.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}
