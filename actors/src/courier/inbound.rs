//! Frames from the network: each is taken apart, the entries it carries
//! are handed to the group's log, and a peer leaving or the network
//! restarting ends its sessions.

use super::*;
use crate::supervision::GuardedMap;

impl Courier {
    /// Handles one inbound frame, except the entries it carries: those are
    /// returned with their group, to be received with the other entries of
    /// the same peer and group that came with it.
    fn take_frame(
        &mut self,
        ctx: &mut Context<Self>,
        peer: PeerId,
        bytes: Vec<u8>,
    ) -> Option<(GroupId, Vec<SealedEntry>)> {
        let frame = match GroupFrame::decode(&bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(actor = NAME, error = %e, "not a group frame; ignored");
                self.deps.refusals.frame();
                let _ = self.events.send(NodeEvent::FrameRefused { peer, reason: e.to_string() });
                return None;
            }
        };
        if let GroupBody::Nearby(tokens) = &frame.body {
            if self.proximity {
                self.nearby_offered(ctx, peer, &frame.session_tag, tokens);
                // The replication role recognises its own groups' tokens.
                if let Some(fallback) = &self.fallback {
                    let _ = fallback.try_send(InboundFrame { peer, frame: bytes });
                }
            }
            return None;
        }
        let Some((group, replica)) = self.group_of(&peer, &frame.session_tag) else {
            match &self.fallback {
                Some(fallback) => {
                    let _ = fallback.try_send(InboundFrame { peer, frame: bytes });
                }
                None => tracing::debug!(actor = NAME, "frame for no group of ours; ignored"),
            }
            return None;
        };
        if replica {
            self.sessions.join_as_replica(group, peer);
        } else if self.sessions.prove(peer) {
            self.learn_relays_of(ctx, peer);
        }
        // The peer proved it knows the group: it is one of its members, and
        // online, so whatever we owe it can go now.
        self.join_session(ctx, group, peer);
        match frame.body {
            GroupBody::Entries(entries) => return Some((group, entries)),
            GroupBody::Heads { metadata, messages } => {
                // Asked for at the next tick, if still missing: what a peer
                // offers has usually just been pushed by its author, and
                // asking at once would fetch it twice. The first heads of a
                // session are asked for at once: a member coming back must
                // not wait a tick to start catching up.
                if self.pulls(&group) {
                    let heads: Vec<EntryHash> = metadata.into_iter().chain(messages).collect();
                    let first = self.gossip.told(group, peer, heads.clone());
                    if first {
                        self.want(ctx, group, peer, heads);
                        self.pull_sync.heads_due(group);
                    } else {
                        self.pull_sync.heard(group, peer, heads);
                    }
                }
            }
            GroupBody::Want(hashes) => {
                if self.pulls(&group) {
                    self.serve(ctx, group, peer, hashes);
                }
            }
            GroupBody::Reconcile(ranges) => {
                if self.pulls(&group) {
                    self.reconcile(ctx, group, peer, Some(ranges));
                }
            }
            GroupBody::Nearby(_) => {}
            // Multi-member groups acknowledge metadata only: what their
            // logs hold; contact groups acknowledge what the outbox owes.
            GroupBody::Ack(hashes) if self.pull_only(&group) => {
                let route = self.routes.get(&group)?;
                let log = route.log.clone();
                ctx.spawn(
                    async move {
                        if log.send(EntriesHeld { hashes }).await.is_err() {
                            tracing::debug!(actor = NAME, "the group log stopped; an ack was not recorded");
                        }
                    }
                    .into_actor(self),
                );
            }
            GroupBody::Ack(hashes) => {
                let route = self.routes.get(&group)?;
                let members = route.members.clone();
                let weight = hashes.len();
                self.acks.add(Ack { group, members, hashes }, weight);
                self.record_acks(ctx);
            }
        }
        None
    }

    /// Hands `entries` from `peer` to `group`'s log and acknowledges what
    /// it stored; the receiver resolves once that is done.
    fn receive_entries(
        &mut self,
        ctx: &mut Context<Self>,
        group: GroupId,
        peer: PeerId,
        entries: Vec<SealedEntry>,
    ) -> Option<oneshot::Receiver<()>> {
        let route = self.routes.get(&group)?;
        let me = self.me?;
        let tag = self.tag(&group, &me, &peer)?;
        let (log, pull) = (route.log.clone(), route.pull);
        // Entries pulled (a contact group's asked for while catching up)
        // move the heads and may show a gap worth reconciling; a contact
        // group's pushed entries do neither: the outbox resends.
        let pulled = pull || self.pull_sync.has_asked(&group);
        let syncing = self.acks_syncing.clone();
        let (done, finished) = oneshot::channel();
        ctx.spawn(
            async move { log.send(ReceiveEntries { entries }).await.map_err(mailbox("group-log"))? }
                .into_actor(self)
                .guarded_map(NAME, move |r, act, ctx| {
                    // Told once the batch is stored and its ack has room.
                    let mut done = Some(done);
                    let r = r.map(|receipt| {
                        // Pulled messages are owed to nobody: only
                        // metadata is acknowledged (a joining or
                        // leaving device learns its announcement is
                        // held elsewhere). The ack is not waited for:
                        // both sides may be receiving at once.
                        let hashes = if pull { receipt.metadata } else { receipt.ack };
                        // Acknowledged once durable, with the other
                        // receipts of the next few milliseconds; the frames
                        // after these are taken meanwhile, up to a bound
                        // (see `MAX_ACKS_SYNCING`).
                        let stored = done.take();
                        if !hashes.is_empty() {
                            let entries = u32::try_from(hashes.len().min(MAX_ACKS_SYNCING)).unwrap_or(1);
                            let unsynced = receipt.unsynced;
                            let room = syncing.acquire_many_owned(entries).into_actor(act).map(
                                move |permit, act: &mut Self, ctx| {
                                    if let Some(stored) = stored {
                                        let _ = stored.send(());
                                    }
                                    // Closed only if the courier is going away.
                                    let Ok(permit) = permit else { return };
                                    let weight = hashes.len();
                                    act.receipts
                                        .add(Receipt { peer, local: me, tag, hashes, unsynced, permit }, weight);
                                    act.send_receipts(ctx);
                                },
                            );
                            ctx.spawn(room);
                        } else if let Some(stored) = stored {
                            let _ = stored.send(());
                        }
                        (receipt.waiting, receipt.wants_metadata)
                    });
                    if r.is_ok() && pulled {
                        // What was stored may have moved the heads.
                        act.heads_changed(group);
                    }
                    match r {
                        // Something is missing (a parent, an announcement),
                        // maybe much: reconcile with the sender.
                        Ok((true, _)) if pulled => act.open_reconciliation(ctx, group, peer),
                        Ok((false, _)) if pulled => act.pull_sync.caught_up(group, peer),
                        // Pushed, waiting for metadata another device of
                        // this account may have acknowledged: the outbox
                        // will not bring it, the sender's log will. (Not
                        // for a parent: pushed entries overtake each other
                        // all the time, and the outbox resends those.)
                        Ok((_, true)) => act.open_reconciliation(ctx, group, peer),
                        Ok(_) => {}
                        Err(e) => tracing::debug!(actor = NAME, error = %e, "receiving entries failed"),
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }),
        );
        Some(finished)
    }
}

impl Handler<InboundFrames> for Courier {
    // Resolves once the entries the frames carry are stored: the transport
    // manager waits for that before the network reads on, so a sender far
    // ahead gets back-pressure instead of filling this node's memory. The
    // entries of one peer in one group go to its log as one batch (one
    // transaction, one acknowledgement) however many frames carried them.
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, InboundFrames { frames }: InboundFrames, ctx: &mut Self::Context) -> Self::Result {
        // Network input: a panic reading it restarts the courier; the
        // entries were neither stored nor acknowledged, so their senders'
        // outboxes push them again.
        match guarded_with(NAME, ctx, |ctx| Ok(self.take_frames(frames, ctx))) {
            Ok(stored) => stored,
            Err(_) => Box::pin(actix::fut::ready(())),
        }
    }
}

impl Courier {
    /// Sends the entries `frames` carry to their logs; resolves once they
    /// are stored.
    fn take_frames(&mut self, frames: Vec<InboundFrame>, ctx: &mut Context<Self>) -> ResponseActFuture<Self, ()> {
        let mut incoming: Vec<(GroupId, PeerId, Vec<SealedEntry>)> = Vec::new();
        for InboundFrame { peer, frame } in frames {
            let Some((group, entries)) = self.take_frame(ctx, peer, frame) else { continue };
            match incoming.iter_mut().find(|(g, p, _)| *g == group && *p == peer) {
                Some((_, _, batch)) => batch.extend(entries),
                None => incoming.push((group, peer, entries)),
            }
        }
        let mut finished: Vec<oneshot::Receiver<()>> = incoming
            .into_iter()
            .filter_map(|(group, peer, entries)| self.receive_entries(ctx, group, peer, entries))
            .collect();
        // Too many acknowledgements waiting: read on once the batch being
        // recorded is done.
        let full = self.acks.weight() >= MAX_PENDING_ACKS;
        let recorded = full.then(|| self.acks_recorded.clone().notified_owned());
        Box::pin(
            async move {
                for f in finished.drain(..) {
                    let _ = f.await;
                }
                if let Some(recorded) = recorded {
                    recorded.await;
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<PeerLeft> for Courier {
    type Result = ();

    fn handle(&mut self, msg: PeerLeft, ctx: &mut Self::Context) {
        // Entries pushed on the closed connection may have lost their acks.
        self.disruptions += 1;
        self.gossip.forget(&msg.peer);
        self.pull_sync.forget_peer(&msg.peer);
        self.nearby.left(&msg.peer);
        self.lanes.forget_peer(&msg.peer);
        for group in self.sessions.leave(&msg.peer) {
            if let Some(route) = self.routes.get_mut(&group) {
                route.pace.reset(Some(&msg.peer));
            }
            ctx.spawn(self.reschedule(group).into_actor(self));
        }
    }
}

impl Handler<Proximity> for Courier {
    type Result = ();

    fn handle(&mut self, msg: Proximity, ctx: &mut Self::Context) {
        match msg {
            Proximity::Found(peer) => {
                if self.nearby.found(peer) && self.proximity {
                    self.offer_nearby(ctx, peer);
                }
            }
            Proximity::Allowed(allowed) => self.proximity = allowed,
        }
    }
}

impl Handler<NetworkRestarted> for Courier {
    type Result = ();

    fn handle(&mut self, msg: NetworkRestarted, ctx: &mut Self::Context) {
        self.disruptions += 1;
        self.me = Some(msg.peer_id);
        self.awaiting_new_peer_id = false;
        self.forget_sessions();
        self.nearby.restarted();
        // The new peer id must be announced at every group's points.
        let groups: Vec<GroupId> = self.routes.keys().copied().collect();
        for group in groups {
            ctx.spawn(self.reschedule(group).into_actor(self));
            let route = self.routes.get_mut(&group);
            if let Some(change) = route.and_then(|r| {
                r.pace.reset(None);
                r.looked = false;
                r.announcements.reset()
            }) {
                self.apply_change(ctx, group, change);
            }
            self.deliver(ctx, group);
        }
    }
}
