//! Swarm events: connections opening and closing, listeners, and what each
//! behaviour reports, turned into network events.

use super::*;

impl Driver {
    pub(super) fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                tracing::debug!(%address, "listening");
                if self.swarm_state.starting.remove(&listener_id) {
                    self.started();
                }
                // A relay's reservations carry its external addresses: without
                // one, every reservation would be refused.
                if self.config.relay_server
                    && self.policy.advertises_listen_addrs()
                    && !policy::is_circuit(&address)
                    && !self.swarm_state.swarm.external_addresses().any(|a| a == &address)
                {
                    self.swarm_state.swarm.add_external_address(address.clone());
                }
                // An onion service is reachable (the Tor transport reports its
                // address once the descriptor is out) and reveals no IP address:
                // it is what an `anonymous` node registers and identify sends.
                if policy::is_onion(&address) && !self.swarm_state.swarm.external_addresses().any(|a| a == &address) {
                    self.swarm_state.swarm.add_external_address(address.clone());
                }
                for reply in self.swarm_state.listens.remove(&listener_id).into_iter().flatten() {
                    let _ = reply.send(Ok(address.clone()));
                }
                self.emit(NetworkEvent::Listening { addr: address });
                if !self.swarm_state.deferred.is_empty() {
                    self.announce_deferred();
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if policy::is_onion(&address) {
                    self.swarm_state.swarm.remove_external_address(&address);
                }
                self.emit(NetworkEvent::ListenAddrExpired { addr: address });
            }
            SwarmEvent::ListenerClosed { listener_id, addresses, reason } => {
                self.swarm_state.listeners.remove(&listener_id);
                if self.swarm_state.starting.remove(&listener_id) {
                    self.started();
                }
                let why = match reason {
                    Ok(()) => ListenFailure::Closed,
                    Err(e) => ListenFailure::Io(e.kind()),
                };
                for reply in self.swarm_state.listens.remove(&listener_id).into_iter().flatten() {
                    let _ = reply.send(Err(Error::Listen(why)));
                }
                for addr in addresses {
                    if policy::is_onion(&addr) {
                        self.swarm_state.swarm.remove_external_address(&addr);
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
                        // Remembered for dials by peer id (a later frame stream).
                        self.remember(peer_id, std::slice::from_ref(address), AddressSource::Connection);
                    }
                    // Whoever comes in through an onion service has no address.
                    ConnectedPoint::Listener { send_back_addr, .. } if !policy::is_onion(send_back_addr) => {
                        self.learned.record(peer_id, send_back_addr, AddressSource::Connection);
                    }
                    ConnectedPoint::Listener { .. } => {}
                }
                if let Some(reply) = self.swarm_state.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                let Some((transport, kind)) = transport else {
                    // Raced with a detach: the transport is gone, so is the connection.
                    tracing::debug!(peer = %peer_id, "closing a connection over a detached transport");
                    self.swarm_state.close(connection_id);
                    return;
                };
                tracing::debug!(peer = %peer_id, %transport, total = num_established, "connection established");
                // Counted from our own table: a connection closed at once
                // (detached transport) must not hide the next one.
                let first = !self.swarm_state.connections.values().any(|(p, _, _)| *p == peer_id);
                let route = if endpoint.is_relayed() { Route::Relayed } else { Route::Direct };
                self.swarm_state.connections.insert(connection_id, (peer_id, transport.clone(), route));
                if first {
                    self.emit(NetworkEvent::PeerConnected { peer: peer_id, transport });
                }
                for reply in self.swarm_state.peer_dials.remove(&peer_id).into_iter().flatten() {
                    let _ = reply.send(Ok(()));
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
                let known = self.swarm_state.connections.remove(&connection_id).is_some();
                self.swarm_state.inbound_streams.remove(&connection_id);
                if let Some(guard) = self.swarm_state.stream_guards.remove(&connection_id) {
                    let _ = guard.send(true);
                }
                if known && !self.swarm_state.connections.values().any(|(p, _, _)| *p == peer_id) {
                    self.emit(NetworkEvent::PeerDisconnected { peer: peer_id });
                }
                tracing::debug!(peer = %peer_id, remaining = num_established, "connection closed");
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, peer_id } => {
                let reason = DialFailure::from(&error);
                if let Some(reply) = self.swarm_state.dials.remove(&connection_id) {
                    let _ = reply.send(Err(Error::Dial(reason.clone())));
                }
                if let Some(peer) = peer_id
                    && self.swarm_state.usable_connection(&peer).is_none()
                {
                    for reply in self.swarm_state.peer_dials.remove(&peer).into_iter().flatten() {
                        let _ = reply.send(Err(Error::Dial(reason.clone())));
                    }
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } if !self.policy.may_advertise(&address) => {
                tracing::debug!(%address, "dropping an external address the policy does not advertise");
                self.swarm_state.swarm.remove_external_address(&address);
            }
            SwarmEvent::ExternalAddrConfirmed { .. } if !self.swarm_state.deferred.is_empty() => {
                self.announce_deferred()
            }
            SwarmEvent::Behaviour(event) => self.behaviour_event(event),
            _ => {}
        }
    }

    /// The transport a connection went over, judged from its local or remote address.
    pub(super) fn transport_of(&self, endpoint: &ConnectedPoint) -> Option<(TransportId, crate::TransportKind)> {
        let addr = match endpoint {
            ConnectedPoint::Dialer { address, .. } => address,
            ConnectedPoint::Listener { local_addr, .. } => local_addr,
        };
        if policy::is_circuit(addr) {
            return Some((TransportId::RELAY, crate::TransportKind::Ip));
        }
        self.swarm_state.switch.route(addr)
    }

    pub(super) fn behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Streams(event) => self.stream_event(event),
            BehaviourEvent::Contact(event) => self.contact_event(event),
            BehaviourEvent::RendezvousServer(event) => self.rendezvous_server_event(event),
            BehaviourEvent::Discovery(event) => self.discovery_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.remember(peer_id, &info.listen_addrs, AddressSource::Identify);
                let behaviour = self.swarm_state.swarm.behaviour_mut();
                if self.policy == Policy::Direct
                    && info.protocols.contains(&KAD_PROTOCOL)
                    && let Some(kad) = behaviour.discovery.kad()
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
                self.swarm_state.swarm.close_connection(connection);
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

    pub(super) fn contact_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request_id, request, channel } => {
                    if self.swarm_state.responders.len() >= RESPONDERS_PRUNE_AT {
                        self.swarm_state.responders.retain(|_, c| c.is_open());
                    }
                    self.swarm_state.responders.insert(request_id, channel);
                    let id = InboundRequestId { generation: self.generation, id: request_id };
                    self.emit(NetworkEvent::RequestReceived { peer, id, request });
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.swarm_state.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = self.swarm_state.requests.remove(&request_id) {
                    let error = match error {
                        request_response::OutboundFailure::Timeout => Error::Timeout,
                        other => Error::RequestFailed(RequestFailure::from(&other)),
                    };
                    let _ = reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure { peer, request_id, error, .. } => {
                tracing::debug!(%peer, %error, "inbound contact request failed");
                self.swarm_state.responders.remove(&request_id);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
