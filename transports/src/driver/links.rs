//! Frame links: opened per peer on demand, retried, and the frames that
//! arrive on them.

use super::*;

impl Driver {
    /// Sets up (or finds) the outbound frame link to `peer`.
    pub(super) fn open_link(&mut self, peer: PeerId, reply: Reply<LinkSender>) {
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
    pub(super) fn retry_link(&mut self, peer: PeerId) {
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

    pub(super) fn fail_link(&mut self, peer: PeerId, reason: &str) {
        if let Some(opening) = self.node.opening.remove(&peer) {
            tracing::debug!(%peer, %reason, "frame link not opened");
            for reply in opening.waiters {
                let _ = reply.send(Err(Error::SendFailed(reason.to_owned())));
            }
        }
    }

    pub(super) fn settings(&mut self, connection: ConnectionId) -> LinkSettings {
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

    pub(super) fn link_event(&mut self, event: LinkEvent) {
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

    pub(super) fn dial_peer(&mut self, peer: PeerId, reply: Reply<()>) {
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

    /// Queues a frame an inbound link read; it is acknowledged once accepted.
    pub(super) fn inbound_frame(&mut self, item: Inbound) {
        if item.epoch != self.epoch || !item.acks.is_open() {
            return;
        }
        self.outbox.push_back(Outgoing {
            event: NetworkEvent::FrameReceived { peer: item.peer, frame: item.frame },
            ack: Some(item.acks),
        });
    }
}
