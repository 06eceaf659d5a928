//! What the node listens on and dials, checked against the privacy policy
//! first; transports attached and detached; the swarm restarted under a new
//! key or policy.

use super::*;

impl Driver {
    /// The kind of the transport that would carry `addr`.
    pub(super) fn kind_for(&self, addr: &Multiaddr) -> Result<crate::TransportKind> {
        self.swarm_state
            .switch
            .route(addr)
            .map(|(_, kind)| kind)
            .ok_or_else(|| Error::NoTransport { addr: addr.clone() })
    }

    pub(super) fn check_listen(&self, addr: &Multiaddr) -> Result<()> {
        let verdict = match policy::relay_hop(addr) {
            Some(hop) => policy::check_circuit_listen(self.policy, self.kind_for(&hop)?, addr, &self.relays),
            None => policy::check_listen(self.policy, self.kind_for(addr)?, addr),
        };
        verdict.map_err(|reason| forbidden(self.policy, addr, reason))
    }

    pub(super) fn check_dial(&self, addr: &Multiaddr) -> Result<()> {
        let verdict = match policy::relay_hop(addr) {
            Some(hop) => policy::check_circuit_dial(self.policy, self.kind_for(&hop)?, addr, &self.relays),
            None => policy::check_dial(self.policy, self.kind_for(addr)?, addr, &self.relays),
        };
        verdict.map_err(|reason| forbidden(self.policy, addr, reason))
    }

    pub(super) fn listen(&mut self, addr: Multiaddr) -> Result<ListenerId> {
        self.check_listen(&addr)?;
        let id = self.swarm_state.swarm.listen_on(addr.clone()).map_err(|e| match e {
            TransportError::MultiaddrNotSupported(addr) => Error::NoTransport { addr },
            TransportError::Other(e) => Error::Listen(ListenFailure::Io(e.kind())),
        })?;
        // Listening there again by hand: no longer held for a later policy.
        self.held.retain(|held| held != &addr);
        self.swarm_state.listeners.insert(id, addr);
        Ok(id)
    }

    /// Listens through `relay` (an address ending in `/p2p/<relay id>`) and
    /// stops listening through any other relay; answers with the circuit
    /// address once the reservation is accepted.
    pub(super) fn use_relay(&mut self, relay: Multiaddr, reply: Reply<Multiaddr>) {
        let Some(relay_id) = policy::peer_of(&relay) else {
            let _ = reply.send(Err(Error::Config("relay addresses must end in /p2p/<peer id>")));
            return;
        };
        let through = |addr: &Multiaddr| policy::relay_hop(addr).as_ref().and_then(policy::peer_of);
        let others: Vec<ListenerId> = self
            .swarm_state
            .listeners
            .iter()
            .filter(|(_, a)| policy::is_circuit(a) && through(a) != Some(relay_id))
            .map(|(id, _)| *id)
            .collect();
        for id in others {
            self.swarm_state.listeners.remove(&id);
            self.swarm_state.swarm.remove_listener(id);
        }
        if let Some(addr) = self.swarm_state.swarm.listeners().find(|a| through(a) == Some(relay_id)) {
            let _ = reply.send(Ok(addr.clone()));
            return;
        }
        // A listener through this relay still waiting for its reservation
        // (one reopened by a restart) answers when it is accepted. A second
        // reservation would fail instead: the relay client dials the relay
        // only if no dial to it is under way, and drops the request if its
        // dial is refused for that, closing the listener.
        if let Some(pending) =
            self.swarm_state.listeners.iter().find(|(_, a)| through(a) == Some(relay_id)).map(|(id, _)| *id)
        {
            self.swarm_state.listens.entry(pending).or_default().push(reply);
            return;
        }
        match self.listen(relay.with(libp2p::multiaddr::Protocol::P2pCircuit)) {
            Ok(id) => {
                self.swarm_state.listens.entry(id).or_default().push(reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Starts a dial; `Ok(None)` if the reply was already sent.
    pub(super) fn dial(&mut self, addr: Multiaddr) -> Result<Option<ConnectionId>> {
        self.check_dial(&addr)?;
        if self.policy == Policy::Relayed
            && let Some(relay) = policy::relay_hop(&addr).as_ref().and_then(policy::peer_of)
        {
            self.relays.add_dialed(relay);
            self.swarm_state.switch.allow_relay(relay);
        }
        let opts = match policy::peer_of(&addr) {
            Some(peer) => DialOpts::peer_id(peer).addresses(vec![addr]).condition(PeerCondition::Always).build(),
            None => DialOpts::unknown_peer_id().address(addr).build(),
        };
        let id = opts.connection_id();
        match self.swarm_state.swarm.dial(opts) {
            Ok(()) => Ok(Some(id)),
            Err(e) => Err(Error::Dial(DialFailure::from(&e))),
        }
    }

    pub(super) fn attach(&mut self, plugin: Arc<dyn TransportPlugin>) -> Result<()> {
        let id = plugin.id();
        if self.plugins.iter().any(|p| p.id() == id) {
            return Err(Error::AlreadyAttached(id));
        }
        let transport = plugin.build(&self.keypair)?;
        self.swarm_state.switch.attach(plugin.clone(), transport)?;
        self.plugins.push(plugin);
        Ok(())
    }

    pub(super) fn detach(&mut self, id: &TransportId) -> Result<()> {
        self.swarm_state.switch.detach(id)?;
        self.plugins.retain(|p| &p.id() != id);
        let doomed: Vec<ConnectionId> =
            self.swarm_state.connections.iter().filter(|(_, (_, t, _))| t == id).map(|(c, _)| *c).collect();
        tracing::debug!(transport = %id, connections = doomed.len(), "closing the detached transport's connections");
        for c in doomed {
            self.swarm_state.close(c);
        }
        Ok(())
    }

    /// Replaces the swarm with one for `keypair` and `policy`.
    pub(super) fn restart(&mut self, keypair: Keypair, policy: Policy) -> Result<PeerId> {
        let swarm_state = SwarmState::build(
            &keypair,
            policy,
            &self.relays,
            &self.plugins,
            &self.config,
            &peers_of(&self.rendezvous),
        )?;
        // The old swarm's listeners close now, before the new one listens
        // in their place: a transport's own state (a memory port, Tor's
        // service status) is then released before it is taken again, not
        // whenever the old swarm's last reference goes.
        self.swarm_state.switch.close_listeners();
        let mut old = std::mem::replace(&mut self.swarm_state, swarm_state);
        self.keypair = keypair;
        self.policy = policy;
        old.fail_pending(Stop::Restarted, || Error::Restarted);
        self.streams.clear();
        self.generation += 1;
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
        let peer_id = *self.swarm_state.swarm.local_peer_id();
        tracing::debug!(peer = %peer_id, %policy, "swarm restarted");
        self.emit(NetworkEvent::Restarted { peer_id });
        for addr in requested {
            match self.listen(addr.clone()) {
                // A circuit listener waits for a relay round trip: commands do not.
                Ok(id) if !policy::is_circuit(&addr) => {
                    self.swarm_state.starting.insert(id);
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
                self.swarm_state.swarm.add_external_address(addr);
            }
        }
        self.seed_addresses();
        self.flush();
        Ok(peer_id)
    }
}
