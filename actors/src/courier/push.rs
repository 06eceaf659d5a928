//! Pushing what a group's members are owed (the outbox), acknowledging
//! what arrived, and telling senders their messages were read (receipts).

use super::*;
use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;

impl Courier {
    /// Pushes what `group` owes to `peer`, unless a push is under way: the
    /// entries written since the last push if any wait in memory, else
    /// what the outbox says is due.
    pub(super) fn push(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId) {
        let (Some(me), Some(route)) = (self.me, self.routes.get(&group)) else { return };
        let members = route.members.clone();
        let Some(tag) = self.tag(&group, &me, &peer) else { return };
        if !self.busy.insert((group, Some(peer))) {
            self.again.insert((group, peer));
            return;
        }
        let disruptions = self.disruptions;
        let job = Push {
            store: self.store.clone(),
            network: self.network.clone(),
            clock: self.clock.clone(),
            timing: self.timing,
            members,
            me,
            peer,
            tag,
            next: self.lanes.next(group, peer),
        };
        ctx.spawn(job.run().into_actor(self).guarded_map(NAME, move |pushed, act, ctx| {
            act.busy.remove(&(group, Some(peer)));
            if let Some(e) = pushed.error {
                tracing::debug!(actor = NAME, error = %e, "push failed; the outbox keeps the entries");
            }
            if !pushed.unsent.is_empty() {
                // Made due by the next push, before anything newer.
                act.lanes.through_outbox(group, peer, pushed.unsent);
            }
            if let Some(drained) = pushed.drained
                && act.lanes.outbox_pushed(group, peer, drained)
            {
                act.again.insert((group, peer));
            }
            if act.disruptions != disruptions {
                act.again.remove(&(group, peer));
                ctx.spawn(
                    act.reschedule(group)
                        .into_actor(act)
                        .guarded_map(NAME, move |(), act, ctx| act.deliver(ctx, group)),
                );
            } else if act.again.remove(&(group, peer)) {
                act.push(ctx, group, peer);
            }
        }));
    }

    /// What `items` has due now; when they wait, `again` runs once `delay`
    /// passed.
    pub(super) fn due<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        items: fn(&mut Self) -> &mut Coalesced<T>,
        delay: Duration,
        again: fn(&mut Self, &mut Context<Self>),
    ) -> Option<Vec<T>> {
        match items(self).next_step() {
            Due::Now(batch) => Some(batch),
            Due::AfterDelay => {
                ctx.guarded_later(&self.time, NAME, delay, move |act, ctx| {
                    items(act).waited();
                    again(act, ctx);
                });
                None
            }
            Due::Nothing => None,
        }
    }

    /// Records the acknowledgements waiting, in one transaction, once
    /// [`ACK_DELAY`] passed or enough wait, and unless a batch is being
    /// recorded (then they go next).
    pub(super) fn record_acks(&mut self, ctx: &mut Context<Self>) {
        let Some(batch) = self.due(ctx, |act| &mut act.acks, ACK_DELAY, Self::record_acks) else { return };
        let (store, events) = (self.store.clone(), self.events.clone());
        let fut = async move {
            let removed = store.ack_many(&ack_rows(&batch)).await;
            match removed {
                Ok(removed) => {
                    for ack in delivered(&batch, &removed) {
                        let _ =
                            events.send(NodeEvent::EntriesDelivered { group: ack.group, hashes: ack.hashes.clone() });
                    }
                }
                Err(e) => tracing::debug!(actor = NAME, error = %e, "recording acks failed; the entries go again"),
            }
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, |(), act, ctx| {
            act.acks.done();
            act.acks_recorded.notify_waiters();
            act.record_acks(ctx);
        }));
    }

    /// Sends the acknowledgements owed once the store synced what they
    /// acknowledge: one sync and one frame per peer and group for all that
    /// waited [`RECEIPT_DELAY`] (or enough of them), while the next wait.
    pub(super) fn send_receipts(&mut self, ctx: &mut Context<Self>) {
        let Some(batch) = self.due(ctx, |act| &mut act.receipts, RECEIPT_DELAY, Self::send_receipts) else { return };
        let store = self.store.clone();
        // A sync covers every commit that returned before it began.
        let unsynced = batch.iter().filter_map(|r| r.unsynced).max();
        let synced = async move {
            match unsynced {
                Some(unsynced) => store.sync(unsynced).await,
                None => Ok(()),
            }
        };
        ctx.spawn(synced.into_actor(self).guarded_map(NAME, move |synced, act, ctx| {
            act.receipts.done();
            match synced {
                // Each peer's frames go on their own: a slow peer holds up
                // no other's.
                Ok(()) => {
                    for ToPeer { peer, local, frames, permits } in receipt_frames(batch) {
                        let network = act.network.clone();
                        ctx.spawn(
                            async move {
                                let _permits = permits;
                                for frame in frames {
                                    if let Err(e) = network.send_frame_as(local, peer, frame).await {
                                        tracing::debug!(actor = NAME, error = %e, "an ack was not delivered");
                                        return;
                                    }
                                }
                            }
                            .into_actor(act),
                        );
                    }
                }
                // Never acknowledged: the senders send them again.
                Err(e) => tracing::debug!(actor = NAME, error = %e, "a sync failed; acks not sent"),
            }
            act.send_receipts(ctx);
        }));
    }

    /// Makes everything owed to `group`'s members due now.
    pub(super) fn reschedule(&self, group: GroupId) -> impl Future<Output = ()> + 'static {
        let members = self.routes.get(&group).map(|r| r.members.clone()).unwrap_or_default();
        let (store, now) = (self.store.clone(), self.clock.now());
        async move {
            for m in &members {
                if let Err(e) = store.reschedule(m, now).await {
                    tracing::debug!(actor = NAME, error = %e, "cannot reschedule owed entries");
                }
            }
        }
    }

    /// Pushes to the group's connected members, or looks them up if there
    /// are none.
    pub(super) fn deliver(&mut self, ctx: &mut Context<Self>, group: GroupId) {
        let Some(route) = self.routes.get(&group) else { return };
        let peers = self.peers_of(&group);
        let (pull, owes) = (route.pull, !route.members.is_empty());
        // Multi-member groups keep looking (at their own pace) for members
        // they are not connected to yet, so new entries reach everyone
        // directly; contact groups look while they reach nobody.
        let look = if pull { route.pace.due(self.ticks) } else { peers.is_empty() };
        if look {
            self.look_up(ctx, group);
            self.wants_members = true;
        }
        let slow = pull && self.ticks.is_multiple_of(SLOW_TICKS);
        // A replication node offers nothing by itself: what other members
        // left there comes by reconciling now and then.
        if slow {
            for peer in peers.iter().filter(|p| self.sessions.is_replica(&group, p)).copied().collect::<Vec<_>>() {
                self.open_reconciliation(ctx, group, peer);
            }
        }
        if owes {
            for peer in peers {
                self.push(ctx, group, peer);
            }
        }
        if slow {
            // Read again now and then, whatever was missed.
            self.own_heads.changed(group);
        }
        if self.pull_sync.take_heads_due(&group) || slow {
            self.offer_heads(ctx, group, None);
        }
    }
}

/// One push of owed entries to one peer.
struct Push {
    store: Arc<Store>,
    network: NetworkHandle,
    clock: Arc<dyn Clock>,
    timing: CourierTiming,
    members: Vec<Addressee>,
    /// This node's peer id the tag was made for: frames leave from it only.
    me: PeerId,
    peer: PeerId,
    tag: [u8; 32],
    /// What to send (see `outgoing::Lanes`).
    next: Next,
}

/// How a push went.
#[derive(Default)]
struct Pushed {
    error: Option<Error>,
    /// Entries written lately that a failed frame carried (or that came
    /// after it): they go through the outbox next.
    unsent: Vec<EntryHash>,
    /// A push through the outbox: whether it found less due than it could
    /// take (nothing is left).
    drained: Option<bool>,
}

impl Push {
    async fn run(mut self) -> Pushed {
        let now = self.clock.now();
        match std::mem::replace(&mut self.next, Next::Live(Vec::new())) {
            Next::Live(live) if !live.is_empty() => self.send_live(live).await,
            Next::Live(_) => match self.send_due(now).await {
                Ok(_) => Pushed::default(),
                Err(e) => Pushed { error: Some(e), ..Pushed::default() },
            },
            Next::Outbox { make_due } => {
                let pushed = async {
                    for member in &self.members {
                        self.store.defer(member, &make_due, now).await?;
                    }
                    self.send_due(now).await
                };
                match pushed.await {
                    Ok(drained) => Pushed { drained: Some(drained), ..Pushed::default() },
                    // The entries are due (or still to be made due): next time.
                    Err(e) => Pushed { error: Some(e), unsent: make_due, drained: Some(false) },
                }
            }
        }
    }

    /// Sends what the outbox says is due, up to `PUSH_LIMIT` per member;
    /// `true` if that was all of it.
    async fn send_due(&self, now: veil_crypto::time::UnixTime) -> Result<bool> {
        let resend = veil_crypto::time::UnixTime(now.0.saturating_add(self.timing.resend_after.as_secs()));
        let mut drained = true;
        for member in &self.members {
            let due = self.store.outbox_due(member, now, PUSH_LIMIT).await?;
            drained &= due.len() < PUSH_LIMIT as usize;
            let entries = due.into_iter().map(|item| (item.hash, item.sealed)).collect();
            for batch in
                fill(entries, |(_, e): &(EntryHash, SealedEntry)| GroupFrame::entry_cost(e), self.timing.budget())
            {
                self.send(member, batch, resend).await?;
            }
        }
        Ok(drained)
    }

    /// Sends entries just written. Those a failed frame carried, and those
    /// after it, are handed back: they go through the outbox next.
    async fn send_live(&self, live: Vec<(EntryHash, SealedEntry)>) -> Pushed {
        let hashes: Vec<EntryHash> = live.iter().map(|(hash, _)| *hash).collect();
        let mut sent = 0;
        for batch in fill(live, |(_, e): &(EntryHash, SealedEntry)| GroupFrame::entry_cost(e), self.timing.budget()) {
            let count = batch.len();
            let frame = GroupFrame {
                session_tag: self.tag,
                body: GroupBody::Entries(batch.into_iter().map(|(_, sealed)| sealed).collect()),
            };
            if let Err(e) = self.network.send_frame_as(self.me, self.peer, frame.encode()).await {
                return Pushed { error: Some(e.into()), unsent: hashes[sent..].to_vec(), drained: None };
            }
            sent += count;
        }
        Pushed::default()
    }

    async fn send(
        &self,
        member: &Addressee,
        batch: Vec<(EntryHash, SealedEntry)>,
        resend: veil_crypto::time::UnixTime,
    ) -> Result<()> {
        let hashes: Vec<EntryHash> = batch.iter().map(|(hash, _)| *hash).collect();
        let frame = GroupFrame {
            session_tag: self.tag,
            body: GroupBody::Entries(batch.into_iter().map(|(_, sealed)| sealed).collect()),
        };
        self.network.send_frame_as(self.me, self.peer, frame.encode()).await?;
        // Sent; it leaves the outbox when the member acknowledges it.
        self.store.defer(member, &hashes, resend).await?;
        Ok(())
    }
}
