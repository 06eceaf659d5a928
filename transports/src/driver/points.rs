//! Announcing and looking up rendezvous points: at the rendezvous servers
//! and in the DHT, answered with what came in time.

use super::*;

impl Driver {
    /// The DHT, if it runs and knows at least one peer.
    pub(super) fn kad_ready(&mut self) -> Option<&mut kad::Behaviour<kad::store::MemoryStore>> {
        let kad = self.node.swarm.behaviour_mut().kad.as_mut()?;
        let known: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
        (known > 0).then_some(kad)
    }

    pub(super) fn discovery_allowed(&self, what: &'static str) -> Result<()> {
        if self.policy.discovery() { Ok(()) } else { Err(Error::NotUnderPolicy { policy: self.policy, what }) }
    }

    /// The servers to ask (never this node itself), each once: a server
    /// configured with several addresses is one server.
    pub(super) fn servers(&self) -> Vec<PeerId> {
        let me = *self.node.swarm.local_peer_id();
        let mut servers: Vec<PeerId> = self.rendezvous.iter().map(|(p, _)| *p).filter(|p| *p != me).collect();
        servers.sort();
        servers.dedup();
        servers
    }

    /// The servers to ask and the number of answers to wait for (one per
    /// server, one for the DHT if it can be asked); `None` if there is nobody.
    pub(super) fn sources(&mut self) -> Option<(Vec<PeerId>, usize)> {
        let servers = self.servers();
        let parts = servers.len() + usize::from(self.kad_ready().is_some());
        (parts > 0).then_some((servers, parts))
    }

    pub(super) fn announce(&mut self, point: [u8; 32], ttl: Duration, reply: Reply<()>) {
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
    pub(super) fn is_still(&self, as_peer: Option<PeerId>) -> Result<()> {
        match as_peer {
            Some(peer) if peer != *self.node.swarm.local_peer_id() => Err(Error::Restarted),
            _ => Ok(()),
        }
    }

    /// Makes the announcements that waited for an address.
    pub(super) fn announce_deferred(&mut self) {
        let waiting: Vec<_> = self.node.deferred.drain(..).collect();
        for (point, ttl, reply) in waiting {
            if !reply.is_closed() {
                self.announce(point, ttl, reply);
            }
        }
    }

    pub(super) fn withdraw(&mut self, point: [u8; 32]) -> Result<()> {
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

    pub(super) fn lookup(&mut self, point: [u8; 32], reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>>) {
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
    pub(super) fn discovery_patience(&self) -> Duration {
        self.config.request_timeout.saturating_mul(2)
    }

    /// Asks `server` who is registered under `ns` (its answer comes as an event).
    pub(super) fn discover(&mut self, server: PeerId, ns: String) {
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
    pub(super) fn discovered(
        &mut self,
        server: PeerId,
        outcome: Result<(), String>,
        found: Vec<rendezvous::Registration>,
    ) {
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

    pub(super) fn rendezvous_event(&mut self, event: rendezvous::client::Event) {
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

    pub(super) fn rendezvous_server_event(&mut self, event: rendezvous::server::Event) {
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

    pub(super) fn kad_event(&mut self, query: kad::QueryId, result: kad::QueryResult, last: bool) {
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
}
