//! Rendezvous points: the policy's say and this node's addresses before an
//! announcement, which the `Discovery` behaviour then makes at the servers
//! and in the DHT; and what this node, as a rendezvous server, records.

use super::*;

impl Driver {
    pub(super) fn discovery_allowed(&self, what: &'static str) -> Result<()> {
        if self.policy.discovery() { Ok(()) } else { Err(Error::NotUnderPolicy { policy: self.policy, what }) }
    }

    pub(super) fn announce(&mut self, point: [u8; 32], ttl: Duration, reply: Reply<()>) {
        if let Err(e) = self.discovery_allowed("rendezvous announcements") {
            let _ = reply.send(Err(e));
            return;
        }
        if self.policy.advertises_listen_addrs() {
            // A Direct node's listen addresses are what it can be reached at.
            let external: HashSet<Multiaddr> = self.swarm_state.swarm.external_addresses().cloned().collect();
            let listen: Vec<Multiaddr> = self.swarm_state.swarm.listeners().cloned().collect();
            for addr in listen {
                if !external.contains(&addr) && !policy::is_unspecified_addr(&addr) {
                    self.swarm_state.swarm.add_external_address(addr);
                }
            }
        }
        if let Err(e) = self.swarm_state.swarm.behaviour_mut().discovery.check_sources() {
            let _ = reply.send(Err(e));
            return;
        }
        if self.swarm_state.swarm.external_addresses().next().is_none() {
            // Nothing to register yet (not listening yet, or no relay circuit
            // yet): wait for an address.
            if self.swarm_state.deferred.len() >= MAX_DEFERRED
                && let Some((_, _, oldest)) = self.swarm_state.deferred.pop_front()
            {
                let _ = oldest.send(Err(Error::Rendezvous("too many announcements wait for an address".into())));
            }
            self.swarm_state.deferred.push_back((point, ttl, reply));
            return;
        }
        self.swarm_state.swarm.behaviour_mut().discovery.announce(point, ttl, reply);
    }

    /// Refuses work meant for another peer id (the swarm restarted since).
    pub(super) fn is_still(&self, as_peer: Option<PeerId>) -> Result<()> {
        match as_peer {
            Some(peer) if peer != *self.swarm_state.swarm.local_peer_id() => Err(Error::Restarted),
            _ => Ok(()),
        }
    }

    /// Makes the announcements that waited for an address.
    pub(super) fn announce_deferred(&mut self) {
        let waiting: Vec<_> = self.swarm_state.deferred.drain(..).collect();
        for (point, ttl, reply) in waiting {
            if !reply.is_closed() {
                self.announce(point, ttl, reply);
            }
        }
    }

    pub(super) fn withdraw(&mut self, point: [u8; 32]) -> Result<()> {
        self.swarm_state.deferred.retain(|(p, _, _)| p != &point);
        if self.policy.discovery() {
            self.swarm_state.swarm.behaviour_mut().discovery.withdraw(point);
        }
        Ok(())
    }

    pub(super) fn lookup(&mut self, point: [u8; 32], reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>>) {
        if let Err(e) = self.discovery_allowed("rendezvous lookups") {
            let _ = reply.send(Err(e));
            return;
        }
        self.swarm_state.swarm.behaviour_mut().discovery.lookup(point, reply);
    }

    /// What discovery learned: addresses it found for a peer (already in its
    /// own book for dials) and the DHT's routing table, for the audit.
    pub(super) fn discovery_event(&mut self, event: DiscoveryEvent) {
        match event {
            DiscoveryEvent::Learned { peer, addrs, source } => self.learned.record_all(peer, &addrs, source),
            DiscoveryEvent::Routed { peer, addrs } => self.learned.record_all(peer, addrs.iter(), AddressSource::Dht),
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
}
