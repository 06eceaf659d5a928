//! Finding members: announcements and lookups at the group's rendezvous
//! points, sessions with the members found, relays learnt from them, and
//! membership offers to peers nearby.

use super::*;
use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;

impl Courier {
    /// Records that `peer` serves `group`. A new session first makes every
    /// entry owed to the group's members due again (acks lost with an old
    /// connection would otherwise wait out their resend delay), then pushes.
    pub(super) fn join_session(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId) {
        if Some(peer) == self.me {
            return;
        }
        if !self.sessions.join(group, peer) {
            // A session under way: its pushes run as entries are written
            // and at every tick.
            return;
        }
        // Everything owed goes from the outbox first, in order.
        self.lanes.through_outbox(group, peer, Vec::new());
        let fut = self.reschedule(group);
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, move |(), act, ctx| act.push(ctx, group, peer)));
        self.offer_heads(ctx, group, Some(peer));
    }

    /// Learns the relays a proven contact or member is reachable through,
    /// so that relay draws can use them. A replication node is not a
    /// contact: its relays are not learned.
    pub(super) fn learn_relays_of(&mut self, ctx: &mut Context<Self>, peer: PeerId) {
        let (network, events) = (self.network.clone(), self.events.clone());
        ctx.spawn(async move { network.learn_relays_of(peer).await }.into_actor(self).guarded_map(
            NAME,
            move |learned, _, _| match learned {
                Ok(relays) if !relays.is_empty() => {
                    tracing::debug!(actor = NAME, count = relays.len(), "relays learned");
                    let _ = events.send(NodeEvent::RelaysLearned { relays });
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(actor = NAME, error = %e, "learning a contact's relays failed"),
            },
        ));
    }

    /// Looks members of `group` up at its points, if it owes them anything,
    /// then dials every peer found (at once: stale registrations of peers
    /// gone offline must not hold up the live ones) and pushes to those
    /// reached.
    pub(super) fn look_up(&mut self, ctx: &mut Context<Self>, group: GroupId) {
        let Some(route) = self.routes.get(&group) else { return };
        let Some(points) = route.points else { return };
        if !self.busy.insert((group, None)) {
            return;
        }
        let (network, store, members, pull) =
            (self.network.clone(), self.store.clone(), route.members.clone(), route.pull);
        let first_look = !route.looked;
        // Pull-synced groups also look for a replication node of theirs.
        let replica_points = route.replica.points.filter(|_| pull);
        let fut = async move {
            let mut owed = 0;
            for m in &members {
                owed += store.outbox_len(m).await.unwrap_or(0);
            }
            // Pull-synced groups always look for members: the log says
            // nothing about who is owed what. Contact groups look once
            // after a start whatever they owe, to catch up.
            if owed == 0 && !pull && !first_look {
                return (Vec::new(), Vec::new());
            }
            let look = |points: ActivePoints| {
                let network = network.clone();
                async move {
                    let mut found = Vec::new();
                    for point in points.all() {
                        match network.lookup(point.0).await {
                            Ok(peers) => found.extend(peers.into_iter().map(|(peer, _)| peer)),
                            Err(e) => tracing::debug!(actor = NAME, error = %e, "lookup failed"),
                        }
                    }
                    found.sort();
                    found.dedup();
                    found
                }
            };
            let replicas = match replica_points {
                Some(p) => look(p).await,
                None => Vec::new(),
            };
            (look(points).await, replicas)
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, move |(found, replicas), act, ctx| {
            act.busy.remove(&(group, None));
            if let Some(route) = act.routes.get_mut(&group) {
                route.looked = true;
            }
            let mut found: Vec<(PeerId, bool)> =
                found.into_iter().map(|p| (p, false)).chain(replicas.into_iter().map(|p| (p, true))).collect();
            found.retain(|(peer, _)| {
                let known = act.sessions.serves(peer, &group);
                !known && Some(*peer) != act.me
            });
            // Pull-synced groups dial peers not seen before or not reached, and look
            // again sooner if some were new.
            let base = if act.peers_of(&group).is_empty() { 1 } else { SLOW_TICKS };
            if let Some(route) = act.routes.get_mut(&group).filter(|r| r.pull) {
                let new: HashSet<PeerId> =
                    route.pace.looked(act.ticks, base, found.iter().map(|(p, _)| *p)).into_iter().collect();
                found.retain(|(peer, _)| new.contains(peer));
            }
            for (peer, replica) in found {
                let network = act.network.clone();
                ctx.spawn(async move { network.dial_peer(peer).await }.into_actor(act).guarded_map(NAME, move |dialed, act, ctx| {
                    if let Some(route) = act.routes.get_mut(&group) {
                        route.pace.dialed(peer, dialed.is_ok());
                    }
                    match dialed {
                        Ok(()) if replica => act.join_replica(ctx, group, peer),
                        Ok(()) => act.join_session(ctx, group, peer),
                        Err(e) => {
                            tracing::debug!(actor = NAME, error = %e, "a peer found at a group point is unreachable")
                        }
                    }
                }));
            }
        }));
    }

    /// Announces `group` at the current period's point and withdraws the
    /// points it no longer uses; while a new peer id is awaited, only
    /// records the wish (see `announce.rs`).
    pub(super) fn announce(&mut self, ctx: &mut Context<Self>, group: GroupId, points: ActivePoints) {
        let Some(route) = self.routes.get_mut(&group) else { return };
        route.points = Some(points);
        if self.awaiting_new_peer_id {
            route.announcements.hold();
        }
        if let Some(change) = route.announcements.want(vec![points.current]) {
            self.apply_change(ctx, group, change);
        }
    }

    pub(super) fn apply_change(&mut self, ctx: &mut Context<Self>, group: GroupId, change: Change) {
        let (network, ttl) = (self.network.clone(), self.ttl);
        ctx.spawn(change.apply(network, ttl).into_actor(self).guarded_map(NAME, move |applied, act, ctx| {
            match act.routes.get_mut(&group).map(|r| r.announcements.done(applied)) {
                Some(After::Apply(next)) => act.apply_change(ctx, group, next),
                Some(After::RetryIn(wait)) => {
                    ctx.guarded_later(&act.time, NAME, wait, move |act, ctx| {
                        if let Some(again) = act.routes.get_mut(&group).and_then(|r| r.announcements.retry()) {
                            act.apply_change(ctx, group, again);
                        }
                    });
                }
                Some(After::Nothing) | None => {}
            }
        }));
    }

    /// Offers `peer`, found nearby, a token for every group of this node,
    /// and for each multi-member group one under its replication session
    /// seed (a replication node nearby recognises that one).
    pub(super) fn offer_nearby(&mut self, ctx: &mut Context<Self>, peer: PeerId) {
        let Some(me) = self.me else { return };
        let seeds =
            self.routes.values().flat_map(|r| std::iter::once(&r.seed).chain(r.pull.then_some(&r.replica.seed)));
        let frames = match nearby::offer(seeds, &me, &peer, &mut OsEntropy) {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!(actor = NAME, error = %e, "no randomness for a nearby offer");
                return;
            }
        };
        self.nearby.offered(peer, self.ticks);
        let sent = nearby::send(self.network.clone(), me, peer, frames);
        ctx.spawn(sent.into_actor(self).guarded_map(NAME, move |sent, act, _| {
            if let Err(e) = sent {
                tracing::debug!(actor = NAME, error = %e, "a nearby peer is unreachable");
                act.nearby.left(&peer);
            }
        }));
    }

    /// `peer` offered its tokens under `salt`: the groups it shares with
    /// this node are served to it, and ours are offered back if owed.
    pub(super) fn nearby_offered(
        &mut self,
        ctx: &mut Context<Self>,
        peer: PeerId,
        salt: &[u8; 32],
        tokens: &[[u8; 32]],
    ) {
        let Some(me) = self.me else { return };
        let shared = nearby::recognise(self.routes.iter().map(|(g, r)| (g, &r.seed)), salt, tokens, &peer, &me);
        let pulled = self.routes.iter().filter(|(_, r)| r.pull);
        let replicated = nearby::recognise(pulled.map(|(g, r)| (g, &r.replica.seed)), salt, tokens, &peer, &me);
        // It found this node nearby (or is connected to it): it is offered
        // ours in return, once per connection and change of our groups, and
        // whenever it names a group we have not shown it we share (it may
        // have joined the group since our last offer).
        self.nearby.found(peer);
        let known: HashSet<GroupId> = self.sessions.groups_of(&peer).copied().collect();
        if self.nearby.owes_answer(&peer) || shared.iter().chain(&replicated).any(|g| !known.contains(g)) {
            self.offer_nearby(ctx, peer);
        }
        for group in shared {
            if self.sessions.prove(peer) {
                self.learn_relays_of(ctx, peer);
            }
            self.join_session(ctx, group, peer);
        }
        for group in replicated {
            if !known.contains(&group) {
                self.join_replica(ctx, group, peer);
            }
        }
    }
}
