//! Pull sync: heads offered and compared, entries asked for and served,
//! and range reconciliation when heads alone do not tell what is missing.

use super::*;
use crate::supervision::GuardedMap;

impl Courier {
    /// Tells some of `group`'s session peers the heads of both its logs
    /// (pull-synced groups), so they can ask for what they lack: see
    /// [`HeadsGossip`] for who hears them when (`fresh`: `peer` just joined
    /// and hears them regardless).
    pub(super) fn offer_heads(&mut self, ctx: &mut Context<Self>, group: GroupId, fresh: Option<PeerId>) {
        // A contact group's entries travel through the outbox: its heads
        // are offered only when a session starts, for a device that was
        // away to catch up; offering them as messages flow would make the
        // peer ask for what is on its way.
        if !self.pulls(&group) || (!self.pull_only(&group) && fresh.is_none()) {
            return;
        }
        if let Some(peer) = fresh {
            self.gossip.met(group, peer);
        }
        if let Some(heads) = self.own_heads.current(&group).cloned() {
            self.spread_heads(ctx, group, heads);
            return;
        }
        let (store, generation) = (self.store.clone(), self.own_heads.reading(&group));
        let fut = async move {
            let metadata = store.heads(&group, EntryKind::Metadata).await?;
            let messages = store.heads(&group, EntryKind::Message).await?;
            Ok::<_, Error>(Heads { metadata: cap(metadata), messages: cap(messages) })
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, move |heads, act, ctx| match heads {
            Ok(heads) => {
                act.own_heads.read(group, generation, heads.clone());
                act.spread_heads(ctx, group, heads);
            }
            Err(e) => tracing::debug!(actor = NAME, error = %e, "cannot read heads"),
        }));
    }

    /// Something may have been stored in `group`: its heads are read again
    /// and offered at the next tick.
    pub(super) fn heads_changed(&mut self, group: GroupId) {
        self.own_heads.changed(group);
        self.pull_sync.heads_due(group);
    }

    /// Sends `heads` to the peers of `group` that should hear them now.
    pub(super) fn spread_heads(&mut self, ctx: &mut Context<Self>, group: GroupId, heads: Heads) {
        let slow = self.ticks.is_multiple_of(SLOW_TICKS);
        let peers = self.peers_of(&group);
        for peer in self.gossip.recipients(group, &heads.all(), &peers, slow) {
            let body = GroupBody::Heads { metadata: heads.metadata.clone(), messages: heads.messages.clone() };
            self.send(ctx, group, peer, body);
        }
    }

    /// Asks `peer` for the entries of `hashes` that are not stored (what
    /// they name and we lack comes by reconciliation).
    pub(super) fn want(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId, mut hashes: Vec<EntryHash>) {
        // Our own heads are stored: a peer in step with us costs no lookup.
        if let Some(ours) = self.own_heads.current(&group) {
            hashes.retain(|h| !ours.metadata.contains(h) && !ours.messages.contains(h));
        }
        if hashes.is_empty() {
            return;
        }
        let store = self.store.clone();
        let fut = async move {
            let stored: HashSet<EntryHash> = store.sync_order(&group, &hashes).await?.into_iter().collect();
            let mut wanted: Vec<EntryHash> = hashes.into_iter().filter(|h| !stored.contains(h)).collect();
            wanted.sort();
            wanted.dedup();
            Ok::<_, Error>(cap(wanted))
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, move |wanted, act, ctx| match wanted {
            Ok(missing) => {
                // Not again while an answer may still be on its way.
                let w = act.pull_sync.ask_now(group, peer, missing, act.time.now());
                if !w.is_empty() {
                    act.send(ctx, group, peer, GroupBody::Want(w));
                }
            }
            Err(e) => tracing::debug!(actor = NAME, error = %e, "cannot work out what is missing"),
        }));
    }

    /// Sends `peer` the stored entries of `group` among `hashes`, in sync
    /// order (announcements first, parents before children), in frames that
    /// fit, one after another.
    pub(super) fn serve(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId, hashes: Vec<EntryHash>) {
        let Some(me) = self.me else { return };
        let Some(tag) = self.tag(&group, &me, &peer) else { return };
        let (store, network, budget) = (self.store.clone(), self.network.clone(), self.timing.budget());
        let fut = async move {
            let order = store.sync_order(&group, &hashes).await?;
            for chunk in order.chunks(SERVE_CHUNK) {
                let sealed = store.sealed_entries_of(&group, chunk).await?;
                for batch in fill(sealed, GroupFrame::entry_cost, budget) {
                    let frame = GroupFrame { session_tag: tag, body: GroupBody::Entries(batch) };
                    network.send_frame_as(me, peer, frame.encode()).await?;
                }
            }
            Ok::<_, Error>(())
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, |r, _, _| {
            if let Err(e) = r {
                tracing::debug!(actor = NAME, error = %e, "serving entries failed");
            }
        }));
    }

    /// Opens a reconciliation of `group` with `peer`, unless one this node
    /// opened is still under way.
    pub(super) fn open_reconciliation(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId) {
        if self.pull_sync.may_reconcile(group, peer, self.time.now()) {
            self.reconcile(ctx, group, peer, None);
        }
    }

    /// One step of set reconciliation with `peer` (`incoming`: its last
    /// message; `None` opens): answers, asks for what this side lacks and
    /// serves what the peer lacks.
    pub(super) fn reconcile(
        &mut self,
        ctx: &mut Context<Self>,
        group: GroupId,
        peer: PeerId,
        incoming: Option<Vec<HashRange>>,
    ) {
        let store = self.store.clone();
        let fut = async move {
            let mine = store.group_hashes(&group).await?;
            Ok::<_, Error>(match incoming {
                None => Step { reply: initial(&mine), ..Step::default() },
                Some(ranges) => respond(&mine, &ranges),
            })
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, move |step, act, ctx| {
            let step = match step {
                Ok(s) => s,
                Err(e) => return tracing::debug!(actor = NAME, error = %e, "cannot reconcile"),
            };
            let (bodies, give) = step_frames(step);
            for body in bodies {
                act.send(ctx, group, peer, body);
            }
            if !give.is_empty() {
                act.serve(ctx, group, peer, give);
            }
        }));
    }

    /// Starts a session with `group`'s replication node: it hears the
    /// heads, and a reconciliation brings both sides up to date.
    pub(super) fn join_replica(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId) {
        self.sessions.join_as_replica(group, peer);
        self.join_session(ctx, group, peer);
        self.open_reconciliation(ctx, group, peer);
    }
}

/// What one reconciliation step sends (its answer, then what it asks for,
/// a frame's worth at a time) and the entries it has to serve.
pub(crate) fn step_frames(step: Step) -> (Vec<GroupBody>, Vec<EntryHash>) {
    let mut bodies = Vec::new();
    if !step.reply.is_empty() {
        bodies.push(GroupBody::Reconcile(step.reply));
    }
    bodies.extend(step.want.chunks(MAX_ACK_HASHES).map(|chunk| GroupBody::Want(chunk.to_vec())));
    (bodies, step.give)
}

/// At most as many hashes as one frame may carry.
pub(super) fn cap(mut hashes: Vec<EntryHash>) -> Vec<EntryHash> {
    hashes.truncate(veil_proto::sync::MAX_ACK_HASHES);
    hashes
}
