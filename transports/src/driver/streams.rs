//! Frame streams: opened per peer on demand, retried, and the frames that
//! arrive on them.

use super::*;

impl Driver {
    /// Sets up (or finds) the outbound frame stream to `peer`.
    pub(super) fn open_stream(&mut self, peer: PeerId, reply: Reply<FrameSender>) {
        if let Some(sender) = self.streams.get(&peer) {
            let _ = reply.send(Ok(sender));
            return;
        }
        // The behaviour sets it up (and dials if it must).
        self.swarm_state.swarm.behaviour_mut().streams.open_stream(peer, reply);
    }

    pub(super) fn settings(&mut self, connection: ConnectionId) -> StreamSettings {
        let closed =
            self.swarm_state.stream_guards.entry(connection).or_insert_with(|| watch::channel(false).0).subscribe();
        StreamSettings {
            local: *self.swarm_state.swarm.local_peer_id(),
            closed,
            max_frame: self.config.max_frame_size,
            max_in_flight: self.config.max_frames_in_flight,
            ack_timeout: self.config.request_timeout,
            idle_timeout: self.config.idle_connection_timeout,
            stop: self.swarm_state.stop.subscribe(),
            table: self.streams.clone(),
        }
    }

    pub(super) fn stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Outbound { peer, connection, stream, waiters } => {
                let settings = self.settings(connection);
                let sender = stream::spawn_outbound(&self.runtime, peer, stream, settings);
                for reply in waiters {
                    let _ = reply.send(Ok(sender.clone()));
                }
            }
            StreamEvent::Inbound { peer, connection, stream } => {
                let slots = self.swarm_state.inbound_streams.entry(connection).or_default().clone();
                if slots.fetch_add(1, Ordering::AcqRel) >= stream::MAX_INBOUND_PER_CONNECTION {
                    slots.fetch_sub(1, Ordering::AcqRel);
                    tracing::debug!(%peer, "too many frame streams on one connection; one refused");
                    return;
                }
                let deliver = self.inbound_tx.clone();
                let settings = self.settings(connection);
                stream::spawn_inbound(&self.runtime, peer, stream, self.generation, deliver, slots, settings);
            }
        }
    }

    pub(super) fn dial_peer(&mut self, peer: PeerId, reply: Reply<()>) {
        if self.swarm_state.usable_connection(&peer).is_some() {
            let _ = reply.send(Ok(()));
            return;
        }
        let waiting = self.swarm_state.peer_dials.entry(peer).or_default();
        waiting.push(reply);
        if waiting.len() > 1 {
            return;
        }
        if self.policy == Policy::Relayed {
            self.allow_relays_of(peer);
        }
        let opts = DialOpts::peer_id(peer).condition(PeerCondition::NotDialing).build();
        match self.swarm_state.swarm.dial(opts) {
            // A dial already under way reports its outcome too.
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => {
                for reply in self.swarm_state.peer_dials.remove(&peer).into_iter().flatten() {
                    let _ = reply.send(Err(Error::Dial(DialFailure::from(&e))));
                }
            }
        }
    }

    /// Queues a frame an inbound frame stream read; it is acknowledged once accepted.
    pub(super) fn inbound_frame(&mut self, item: Inbound) {
        if item.generation != self.generation || !item.acks.is_open() {
            return;
        }
        self.outbox.push_back(Outgoing {
            event: NetworkEvent::FrameReceived { peer: item.peer, frame: item.frame },
            ack: Some(item.acks),
        });
    }
}
