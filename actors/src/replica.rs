//! `Replica`: the blind replication node role. Given a group's replication
//! credential (never its secret) it announces itself at the credential's
//! rotating points, and stores and serves the group's entries so members
//! who are never online together still converge.
//!
//! It speaks the members' sync protocol (`GroupFrame`s: entries, want,
//! heads, reconciliation) under session tags keyed by the credential's
//! session seed. Every entry is checked before it is kept: its tag under
//! the entry-auth key (so outsiders cannot fill it), its position under the
//! link key, and its parents (stored, same log, earlier), so the DAG it
//! serves has no holes or cycles. Headers and bodies stay sealed: it learns
//! neither authors nor content (docs/THREATS.md).

use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;
use crate::time::Time;
use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, Recipient, ResponseActFuture, WrapFuture};
use tokio::sync::broadcast;
use veil_crypto::{
    OsEntropy, RendezvousSeed, ReplicationCredential, ReplicationId,
    envelope::{EntryHash, EntryKind},
    rendezvous::session_tag,
};
use veil_proto::{
    reconcile::{Step, respond},
    sync::{GroupBody, GroupFrame},
};
use veil_storage::{ReplicaEntry, Store};
use veil_transports::{NetworkHandle, libp2p::PeerId};

use crate::{
    Error, NodeEvent, Result,
    announce::{After, Announcements, Change},
    messages::{
        courier::{InboundFrame, NetworkRestarted},
        rendezvous::{PointsRotated, Refresh, WatchKey},
        replica::AddReplica,
    },
    nearby,
    supervision::{guarded_with, mailbox},
};

const NAME: &str = "replica";

/// Most entries read from storage at once when serving a member.
const SERVE_CHUNK: usize = 256;

/// One replicated group.
struct Replicated {
    credential: ReplicationCredential,
    session_seed: RendezvousSeed,
    announcements: Announcements,
}

/// What the replica needs from the rest of the node.
pub(crate) struct ReplicaDeps {
    pub store: Arc<Store>,
    pub network: NetworkHandle,
    pub events: broadcast::Sender<NodeEvent>,
    /// Told of new credentials (watches their points).
    pub rotator: Recipient<Refresh>,
    /// How long an announcement lives.
    pub ttl: Duration,
    /// Room for entries in one frame.
    pub budget: usize,
    /// Where its timers read the time.
    pub time: Time,
}

/// Stores and serves the ciphertext of the groups it replicates.
pub(crate) struct Replica {
    deps: ReplicaDeps,
    me: Option<PeerId>,
    /// A new period's peer id is awaited: announcements wait for the restart.
    awaiting_new_peer_id: bool,
    groups: HashMap<ReplicationId, Replicated>,
}

impl core::fmt::Debug for Replica {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replica").field("groups", &self.groups.len()).finish_non_exhaustive()
    }
}

impl Replica {
    pub(crate) fn new(deps: ReplicaDeps) -> Self {
        Self { deps, me: None, awaiting_new_peer_id: false, groups: HashMap::new() }
    }

    fn add(&mut self, credential: ReplicationCredential) {
        let session_seed = credential.session_seed();
        self.groups.entry(credential.replication_id).or_insert(Replicated {
            credential,
            session_seed,
            announcements: Announcements::default(),
        });
    }

    /// The replicated group an inbound frame from `peer` names, if any.
    fn group_of(&self, peer: &PeerId, tag: &[u8; 32]) -> Option<ReplicationId> {
        let me = self.me?;
        let (from, to) = (peer.to_bytes(), me.to_bytes());
        self.groups.iter().find(|(_, g)| &session_tag(&g.session_seed, &from, &to) == tag).map(|(id, _)| *id)
    }

    /// The tag of `id`'s session with `peer`, and the local peer id it was
    /// made for (frames under it leave from that peer id only).
    fn tag(&self, id: &ReplicationId, peer: &PeerId) -> Option<(PeerId, [u8; 32])> {
        let me = self.me?;
        Some((me, session_tag(&self.groups.get(id)?.session_seed, &me.to_bytes(), &peer.to_bytes())))
    }

    /// A nearby member offered its tokens (routed here by the courier):
    /// if one names a group this node replicates, this node offers its own
    /// under the session seeds, so the member recognises its replication
    /// node and reconciles with it (docs/PROTOCOL.md §11.4).
    fn nearby_offered(&mut self, ctx: &mut Context<Self>, peer: PeerId, salt: &[u8; 32], tokens: &[[u8; 32]]) {
        let Some(me) = self.me else { return };
        let seeds = self.groups.iter().map(|(id, g)| (id, &g.session_seed));
        if nearby::recognise(seeds, salt, tokens, &peer, &me).is_empty() {
            return;
        }
        let frames = match nearby::offer(self.groups.values().map(|g| &g.session_seed), &me, &peer, &mut OsEntropy) {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!(actor = NAME, error = %e, "no randomness for a nearby offer");
                return;
            }
        };
        let sent = nearby::send(self.deps.network.clone(), me, peer, frames);
        ctx.spawn(sent.into_actor(self).guarded_map(NAME, |sent, _, _| {
            if let Err(e) = sent {
                tracing::debug!(actor = NAME, error = %e, "a nearby member is unreachable");
            }
        }));
    }

    fn send(&self, ctx: &mut Context<Self>, id: ReplicationId, peer: PeerId, body: GroupBody) {
        let Some((me, tag)) = self.tag(&id, &peer) else { return };
        let network = self.deps.network.clone();
        let frame = GroupFrame { session_tag: tag, body }.encode();
        ctx.spawn(async move { network.send_frame_as(me, peer, frame).await }.into_actor(self).guarded_map(
            NAME,
            |r, _, _| {
                if let Err(e) = r {
                    tracing::debug!(actor = NAME, error = %e, "a replica frame was not delivered");
                }
            },
        ));
    }

    fn apply_change(&mut self, ctx: &mut Context<Self>, id: ReplicationId, change: Change) {
        let (network, ttl) = (self.deps.network.clone(), self.deps.ttl);
        ctx.spawn(change.apply(network, ttl).into_actor(self).guarded_map(NAME, move |applied, act, ctx| {
            match act.groups.get_mut(&id).map(|g| g.announcements.done(applied)) {
                Some(After::Apply(next)) => act.apply_change(ctx, id, next),
                Some(After::RetryIn(wait)) => {
                    ctx.guarded_later(&act.deps.time, NAME, wait, move |act, ctx| {
                        if let Some(again) = act.groups.get_mut(&id).and_then(|g| g.announcements.retry()) {
                            act.apply_change(ctx, id, again);
                        }
                    });
                }
                Some(After::Nothing) | None => {}
            }
        }));
    }

    /// Verifies and stores entries a member sent: tag, position, and parents
    /// stored (or earlier in the batch), in the same log and earlier. The
    /// metadata entries it holds are acknowledged, as members do.
    fn receive(
        &self,
        ctx: &mut Context<Self>,
        id: ReplicationId,
        peer: PeerId,
        entries: Vec<veil_crypto::envelope::SealedEntry>,
    ) {
        let Some(group) = self.groups.get(&id) else { return };
        let credential = group.credential.clone();
        let (store, events) = (self.deps.store.clone(), self.deps.events.clone());
        let fut = async move {
            let mut checked = Vec::with_capacity(entries.len());
            for sealed in entries {
                if sealed.verify_tag(&credential.entry_auth_key).is_err() {
                    continue;
                }
                let Ok(position) = sealed.open_position(&credential.position_key) else { continue };
                checked.push((sealed, position));
            }
            checked.sort_by_key(|(e, l)| (l.kind != EntryKind::Metadata, l.lamport, e.hash()));
            let asked: Vec<EntryHash> =
                checked.iter().flat_map(|(e, l)| l.parents.iter().copied().chain(std::iter::once(e.hash()))).collect();
            let mut positions: HashMap<EntryHash, (EntryKind, u64)> =
                store.replica_positions(&id, &asked).await?.into_iter().map(|(h, k, l)| (h, (k, l))).collect();
            let mut keep = Vec::new();
            let (mut waiting, mut metadata) = (false, Vec::new());
            for (sealed, position) in checked {
                let hash = sealed.hash();
                if position.kind == EntryKind::Metadata && !metadata.contains(&hash) {
                    metadata.push(hash);
                }
                if positions.contains_key(&hash) {
                    continue;
                }
                let parents_in_order =
                    position.parents.iter().map(|p| positions.get(p)).try_fold((), |(), p| match p {
                        None => Err(true),
                        Some((kind, lamport)) if *kind != position.kind || *lamport >= position.lamport => Err(false),
                        Some(_) => Ok(()),
                    });
                match parents_in_order {
                    Ok(()) => {
                        positions.insert(hash, (position.kind, position.lamport));
                        keep.push(ReplicaEntry { sealed, kind: position.kind, lamport: position.lamport });
                    }
                    Err(missing) => {
                        waiting |= missing;
                        metadata.retain(|h| *h != hash);
                    }
                }
            }
            let stored = store.replica_store(&id, &keep).await?.into_iter().filter(|new| *new).count();
            if stored > 0 {
                let _ = events.send(NodeEvent::EntriesReplicated { replication: id, stored });
            }
            Ok::<_, Error>((waiting, metadata))
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, move |r, act, ctx| match r {
            Ok((waiting, metadata)) => {
                if !metadata.is_empty() {
                    act.send(ctx, id, peer, GroupBody::Ack(metadata));
                }
                // Something is missing: reconcile with the member.
                if waiting {
                    act.reconcile(ctx, id, peer, None);
                }
            }
            Err(e) => tracing::debug!(actor = NAME, error = %e, "storing replicated entries failed"),
        }));
    }

    /// Sends `peer` the stored entries among `hashes`, in sync order.
    fn serve(&self, ctx: &mut Context<Self>, id: ReplicationId, peer: PeerId, hashes: Vec<EntryHash>) {
        let Some((me, tag)) = self.tag(&id, &peer) else { return };
        let (store, network, budget) = (self.deps.store.clone(), self.deps.network.clone(), self.deps.budget);
        let fut = async move {
            let entries = store.replica_entries(&id, &hashes).await?;
            for chunk in entries.chunks(SERVE_CHUNK) {
                for batch in crate::courier::fill(chunk.to_vec(), GroupFrame::entry_cost, budget) {
                    let frame = GroupFrame { session_tag: tag, body: GroupBody::Entries(batch) };
                    network.send_frame_as(me, peer, frame.encode()).await?;
                }
            }
            Ok::<_, Error>(())
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, |r, _, _| {
            if let Err(e) = r {
                tracing::debug!(actor = NAME, error = %e, "serving replicated entries failed");
            }
        }));
    }

    /// One step of set reconciliation with a member (`None` opens one).
    fn reconcile(
        &self,
        ctx: &mut Context<Self>,
        id: ReplicationId,
        peer: PeerId,
        incoming: Option<Vec<veil_proto::reconcile::HashRange>>,
    ) {
        let store = self.deps.store.clone();
        let fut = async move {
            let mine = store.replica_hashes(&id).await?;
            Ok::<_, Error>(match incoming {
                None => Step { reply: veil_proto::reconcile::initial(&mine), ..Step::default() },
                Some(ranges) => respond(&mine, &ranges),
            })
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, move |step, act, ctx| {
            let step = match step {
                Ok(s) => s,
                Err(e) => return tracing::debug!(actor = NAME, error = %e, "cannot reconcile"),
            };
            let (bodies, give) = crate::courier::step_frames(step);
            for body in bodies {
                act.send(ctx, id, peer, body);
            }
            if !give.is_empty() {
                act.serve(ctx, id, peer, give);
            }
        }));
    }

    /// Asks for the offered heads it does not hold.
    fn want(&self, ctx: &mut Context<Self>, id: ReplicationId, peer: PeerId, heads: Vec<EntryHash>) {
        let store = self.deps.store.clone();
        let fut = async move {
            let held: Vec<EntryHash> = store.replica_positions(&id, &heads).await?.into_iter().map(|p| p.0).collect();
            Ok::<_, Error>(heads.into_iter().filter(|h| !held.contains(h)).collect::<Vec<_>>())
        };
        ctx.spawn(fut.into_actor(self).guarded_map(NAME, move |wanted, act, ctx| match wanted {
            Ok(w) if !w.is_empty() => act.send(ctx, id, peer, GroupBody::Want(w)),
            Ok(_) => {}
            Err(e) => tracing::debug!(actor = NAME, error = %e, "cannot work out what is missing"),
        }));
    }
}

impl actix::Supervised for Replica {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; reloading credentials from storage");
        self.groups.clear();
    }
}

impl Actor for Replica {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        let (network, store) = (self.deps.network.clone(), self.deps.store.clone());
        ctx.wait(async move { (network.local_peer_id().await.ok(), store.replicas().await) }.into_actor(self).map(
            |(me, credentials), act, _| {
                act.me = me;
                match credentials {
                    Ok(list) => list.into_iter().for_each(|c| act.add(c)),
                    Err(e) => tracing::warn!(actor = NAME, error = %e, "cannot load replication credentials"),
                }
            },
        ));
    }
}

impl Handler<AddReplica> for Replica {
    type Result = ResponseActFuture<Self, Result<bool>>;

    fn handle(&mut self, msg: AddReplica, _: &mut Self::Context) -> Self::Result {
        let (store, rotator) = (self.deps.store.clone(), self.deps.rotator.clone());
        let credential = msg.credential;
        Box::pin(
            async move {
                let added = store.add_replica(&credential).await?;
                Ok::<_, Error>((added, credential))
            }
            .into_actor(self)
            .guarded_map(NAME, |r, act, _| {
                r.map(|(added, credential)| {
                    act.add(credential);
                    added
                })
            })
            .then(move |added, act, _| {
                async move {
                    let added = added?;
                    // Watch its points (the answer comes as PointsRotated).
                    rotator.send(Refresh).await.map_err(mailbox("rendezvous-rotator"))??;
                    Ok(added)
                }
                .into_actor(act)
            }),
        )
    }
}

impl Handler<PointsRotated> for Replica {
    type Result = ();

    fn handle(&mut self, msg: PointsRotated, ctx: &mut Self::Context) {
        let WatchKey::Replica(id) = msg.key else { return };
        self.awaiting_new_peer_id |= msg.awaits_new_peer_id;
        let Some(group) = self.groups.get_mut(&id) else { return };
        // Held until the restart when a new peer id is awaited (see announce.rs).
        if self.awaiting_new_peer_id {
            group.announcements.hold();
        }
        if let Some(change) = group.announcements.want(msg.to_announce()) {
            self.apply_change(ctx, id, change);
        }
    }
}

impl Handler<InboundFrame> for Replica {
    type Result = ();

    fn handle(&mut self, InboundFrame { peer, frame }: InboundFrame, ctx: &mut Self::Context) {
        // Network input: a panic in handling it restarts the actor.
        let _ = guarded_with(NAME, ctx, |ctx| {
            self.inbound(ctx, peer, &frame);
            Ok(())
        });
    }
}

impl Replica {
    fn inbound(&mut self, ctx: &mut Context<Self>, peer: PeerId, frame: &[u8]) {
        let Ok(frame) = GroupFrame::decode(frame) else { return };
        if let GroupBody::Nearby(tokens) = &frame.body {
            self.nearby_offered(ctx, peer, &frame.session_tag, tokens);
            return;
        }
        let Some(id) = self.group_of(&peer, &frame.session_tag) else {
            tracing::debug!(actor = NAME, "frame for no replicated group; ignored");
            return;
        };
        match frame.body {
            GroupBody::Entries(entries) => self.receive(ctx, id, peer, entries),
            GroupBody::Want(hashes) => self.serve(ctx, id, peer, hashes),
            GroupBody::Reconcile(ranges) => self.reconcile(ctx, id, peer, Some(ranges)),
            GroupBody::Heads { metadata, messages } => {
                self.want(ctx, id, peer, metadata.into_iter().chain(messages).collect())
            }
            // Nearby offers were taken above; acks need no answer.
            GroupBody::Ack(_) | GroupBody::Nearby(_) => {}
        }
    }
}

impl Handler<NetworkRestarted> for Replica {
    type Result = ();

    fn handle(&mut self, msg: NetworkRestarted, ctx: &mut Self::Context) {
        self.me = Some(msg.peer_id);
        self.awaiting_new_peer_id = false;
        // The new peer id must be announced at every replicated group's points.
        let ids: Vec<ReplicationId> = self.groups.keys().copied().collect();
        for id in ids {
            if let Some(change) = self.groups.get_mut(&id).and_then(|g| g.announcements.reset()) {
                self.apply_change(ctx, id, change);
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for Replica {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        crate::supervision::guarded(NAME, ctx, || panic!("injected fault"))
    }
}
