//! Groups starting and stopping, their points rotating, and entries their
//! logs wrote that are owed to members.

use super::*;
use crate::supervision::GuardedMap;

impl Handler<StartGroup> for Courier {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: StartGroup, _: &mut Self::Context) -> Self::Result {
        let group = msg.group;
        let store = self.store.clone();
        Box::pin(
            async move {
                let record = store.group(&group).await?.ok_or(Error::UnknownGroup)?;
                let members = members_of(&store, &group).await?;
                let pull = record.kind == GroupKind::MultiMember;
                Ok::<_, Error>((GroupKeys::derive(&record.secret), members, pull))
            }
            .into_actor(self)
            .guarded_map(NAME, move |loaded, act, ctx| {
                let started = loaded.map(|(keys, members, pull)| {
                    let seed = keys.rendezvous_seed.clone();
                    let credential = keys.replication_credential();
                    let existing = act.routes.get(&group).map(|r| r.log.clone());
                    let new = existing.is_none();
                    let log = existing.unwrap_or_else(|| GroupLog::start(group, act.deps.clone(), members.clone()));
                    let (announcements, points) =
                        act.routes.remove(&group).map(|r| (r.announcements, r.points)).unwrap_or_default();
                    let replica = ReplicaRoute {
                        id: credential.replication_id,
                        seed: credential.session_seed(),
                        points: act.replica_points.get(&credential.replication_id).copied(),
                    };
                    let pace = LookupPace::default();
                    act.routes.insert(
                        group,
                        Route {
                            seed,
                            log: log.clone(),
                            members,
                            announcements,
                            points,
                            pull,
                            replica,
                            pace,
                            looked: false,
                        },
                    );
                    (new, log)
                });
                // Nearby peers may share the new group: they hear of it now.
                if started.as_ref().is_ok_and(|(new, _)| *new) {
                    for peer in act.nearby.groups_changed() {
                        if act.proximity {
                            act.offer_nearby(ctx, peer);
                        }
                    }
                }
                // Points reported before the route existed (at start, the
                // rotator reports stored groups before they are started):
                // announce, and look members up now rather than at a tick.
                if started.is_ok()
                    && let Some(points) = act.points.get(&group).copied()
                {
                    act.announce(ctx, group, points);
                    act.deliver(ctx, group);
                }
                started.map(|(_, log)| log)
            })
            .then(move |started, act, _| {
                let (rotator, registry) = (act.rotator.clone(), act.registry.clone());
                async move {
                    let log = started?;
                    // Registered before the answer, so the caller finds the log.
                    registry.send(LogChanged { group, log: Some(log) }).await.map_err(mailbox("group-registry"))?;
                    // Watch the group's points (the answer comes as PointsRotated).
                    rotator.send(Refresh).await.map_err(mailbox("rendezvous-rotator"))?
                }
                .into_actor(act)
            }),
        )
    }
}

impl Handler<StopGroup> for Courier {
    type Result = ();

    fn handle(&mut self, StopGroup { group }: StopGroup, ctx: &mut Self::Context) {
        // Dropping the route and the registry's entry drops the last
        // handles of the group's log, which then stops.
        if let Some(mut route) = self.routes.remove(&group)
            && let Some(change) = route.announcements.want(Vec::new())
        {
            let (network, ttl) = (self.network.clone(), self.ttl);
            ctx.spawn(change.apply(network, ttl).into_actor(self).guarded_map(NAME, |_, _, _| ()));
        }
        let registry = self.registry.clone();
        ctx.spawn(
            async move { registry.send(LogChanged { group, log: None }).await }
                .into_actor(self)
                .guarded_map(NAME, |_, _, _| ()),
        );
        self.points.remove(&group);
        self.sessions.stop_group(&group);
        self.busy.retain(|(g, _)| *g != group);
        self.again.retain(|(g, _)| *g != group);
        self.pull_sync.forget_group(&group);
        self.lanes.forget_group(&group);
        self.nearby.groups_changed();
    }
}

impl Handler<PointsRotated> for Courier {
    type Result = ();

    fn handle(&mut self, msg: PointsRotated, ctx: &mut Self::Context) {
        match msg.key {
            WatchKey::Group(group) => {
                self.awaiting_new_peer_id |= msg.awaits_new_peer_id;
                self.points.insert(group, msg.points);
                if let Some(route) = self.routes.get_mut(&group) {
                    route.pace.reset(None);
                }
                self.announce(ctx, group, msg.points);
                self.deliver(ctx, group);
            }
            WatchKey::Replica(id) => {
                self.replica_points.insert(id, msg.points);
                for route in self.routes.values_mut().filter(|r| r.replica.id == id) {
                    route.replica.points = Some(msg.points);
                }
            }
            _ => {}
        }
    }
}

impl Handler<EntriesOwed> for Courier {
    type Result = ();

    fn handle(&mut self, msg: EntriesOwed, ctx: &mut Self::Context) {
        let group = msg.group;
        self.heads_changed(group);
        let peers = self.peers_of(&group);
        if peers.is_empty() {
            // Nobody to push to: look members up.
            return self.deliver(ctx, group);
        }
        if self.pull_only(&group) {
            // Live: straight to every connected member.
            for peer in peers {
                self.serve(ctx, group, peer, msg.fresh.clone());
            }
            return;
        }
        if msg.pushed.is_empty() {
            return self.deliver(ctx, group);
        }
        let entries: Vec<(EntryHash, SealedEntry)> = msg.fresh.into_iter().zip(msg.pushed).collect();
        // Usually one peer (the contact's device): the entries move to it.
        let (last, others) = peers.split_last().map_or((None, &[][..]), |(l, o)| (Some(*l), o));
        for peer in others {
            self.lanes.add(group, *peer, entries.clone());
            self.push(ctx, group, *peer);
        }
        if let Some(peer) = last {
            self.lanes.add(group, peer, entries);
            self.push(ctx, group, peer);
        }
    }
}
