//! The `Courier`: starts each group's `GroupLog`, finds the group's members
//! at its rotating rendezvous point, and carries entries between the logs
//! and the network.
//!
//! * **Announce and look up.** For every group it announces this node at the
//!   group's active points (from the `RendezvousRotator`) and, while members
//!   are owed entries and none is connected, looks them up there.
//! * **Push.** Entries owed to a member (the storage outbox) go out in
//!   `GroupFrame`s to every peer of the group's session, and leave the
//!   outbox only when the member's `EntryAck` comes back. This device's
//!   messages are pushed from memory as they are written (their rows come
//!   due only after the resend delay); the outbox is read for what must go
//!   again: a new session, a lost connection, a failed push, a resend delay
//!   run out, and, in order, everything for a peer that fell behind (see
//!   `outgoing::Lanes`). A lost ack means a resend, which the receiver drops as a
//!   duplicate (and acknowledges again). Acks are recorded in batches.
//! * **Receive.** An inbound frame names its group by its session tag
//!   (`HMAC(group rendezvous seed, sender ‖ receiver peer ids)`); the entries
//!   go to that group's log, and what the log stored is acknowledged.
//!
//! Sessions (which peer serves which group) live in memory only: they are
//! rebuilt from lookups and inbound frames, and dropped when the peer
//! disconnects or the network restarts with a new peer id.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Recipient, ResponseActFuture, Supervised, WrapFuture,
};
use tokio::sync::{Notify, broadcast, oneshot};
use veil_crypto::{
    GroupId, GroupKeys, OsEntropy, RendezvousSeed,
    envelope::{EntryHash, EntryKind, SealedEntry},
    rendezvous::{ActivePoints, session_tag},
    time::Clock,
};
use veil_proto::{
    reconcile::{HashRange, Step, initial, respond},
    sync::{GroupBody, GroupFrame, MAX_ACK_HASHES, MAX_BATCH_ENTRIES},
};
use veil_storage::{GroupKind, Peer, Store};
use veil_transports::{NetworkHandle, libp2p::PeerId};

use crate::{
    Error, GroupLog, NodeEvent, Result,
    announce::{After, Announcements, Change},
    coalesce::{Coalesced, Due},
    group_log::GroupLogDeps,
    heads::{Heads, HeadsGossip, OwnHeads},
    messages::{
        courier::{
            EntriesOwed, InboundFrame, InboundFrames, NetworkRestarted, PeerLeft, Proximity, StartGroup, StopGroup,
        },
        group::{ApplyRetention, EntriesHeld, ReceiveEntries},
        registry::LogChanged,
        rendezvous::{PointsRotated, Refresh, WatchKey},
    },
    nearby::{self, Nearby},
    outgoing::{ACK_BATCH, ACK_DELAY, Ack, Lanes, MAX_PENDING_ACKS, Next, ack_rows, delivered},
    pace::LookupPace,
    receipts::{RECEIPT_DELAY, Receipt, ToPeer, receipt_frames},
    supervision::{guarded_with, mailbox},
};

const NAME: &str = "courier";

/// Most received entries whose acknowledgement waits for the store's sync;
/// beyond, the next frames wait (the network reads on once some are
/// synced). Counted in entries, not batches: at a conversation's pace every
/// entry is a batch of its own, and a bound of 16 batches held the network
/// for as long as one slow fsync took: with every fsync made to take 20 ms
/// (an `LD_PRELOAD` shim), 1 000 msg/s went from p50 15.9 ms / p99 59 ms to
/// p50 0.76 ms with this and the sender's bound counted in messages.
const MAX_ACKS_SYNCING: usize = 4096;

/// Most entries read from the outbox for one peer per push.
const PUSH_LIMIT: u32 = 256;
/// Most entries read from storage at once when serving a peer.
const SERVE_CHUNK: usize = 256;
/// How long a reconciliation this node opened with a peer runs before it
/// may open another with the same peer (a transfer in flight must not be
/// asked for twice).
const RECONCILE_PAUSE: Duration = Duration::from_secs(5);
/// Every this many ticks, heads go to one peer that told other heads
/// (anti-entropy), own heads are read again, and replication nodes are
/// reconciled with; the base wait between lookups of a connected
/// multi-member group.
const SLOW_TICKS: u64 = 10;
/// How long an entry asked for is not asked for again.
const ASK_AGAIN: Duration = Duration::from_secs(2);

/// How the courier paces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CourierTiming {
    /// How often it looks for members it owes entries to, and re-pushes.
    pub tick: Duration,
    /// How long a pushed entry waits for its acknowledgement before it is
    /// pushed again (measured on the injected clock).
    pub resend_after: Duration,
    /// Largest `GroupFrame` it sends (kept under the network's frame limit).
    pub max_frame: usize,
}

impl CourierTiming {
    /// Room for entries in one frame (the rest is the tag and framing).
    fn budget(&self) -> usize {
        self.max_frame.saturating_sub(64)
    }
}

/// Splits `items` into frame batches: each within `budget` by `cost` (an
/// item larger than the budget goes alone) and at most
/// [`MAX_BATCH_ENTRIES`] long.
pub(crate) fn fill<T>(items: Vec<T>, cost: impl Fn(&T) -> usize, budget: usize) -> Vec<Vec<T>> {
    let (mut batches, mut batch, mut size) = (Vec::new(), Vec::new(), 0);
    for item in items {
        let c = cost(&item);
        if !batch.is_empty() && (size + c > budget || batch.len() == MAX_BATCH_ENTRIES) {
            batches.push(std::mem::take(&mut batch));
            size = 0;
        }
        size += c;
        batch.push(item);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

struct Route {
    seed: RendezvousSeed,
    log: Addr<GroupLog>,
    /// The members entries are owed to (the other account, in a contact group).
    members: Vec<Peer>,
    /// The group's announcements.
    announcements: Announcements,
    /// The points to look members up at.
    points: Option<ActivePoints>,
    /// Synced by pulling (heads, then wanted entries) rather than by the
    /// outbox: multi-member groups, whose members are learned from the log.
    pull: bool,
    /// Where a replication node of the group would be, and the seed of the
    /// session tags spoken with it (multi-member groups).
    replica: ReplicaRoute,
    /// When to look members up next (multi-member groups).
    pace: LookupPace,
}

/// How members meet a group's replication node: at the points of its
/// credential's rendezvous seed, under tags of its session seed.
struct ReplicaRoute {
    id: veil_crypto::ReplicationId,
    seed: RendezvousSeed,
    points: Option<ActivePoints>,
}

/// Carries entries between group logs and the network.
pub struct Courier {
    store: Arc<Store>,
    network: NetworkHandle,
    clock: Arc<dyn Clock>,
    timing: CourierTiming,
    ttl: Duration,
    events: broadcast::Sender<NodeEvent>,
    deps: GroupLogDeps,
    rotator: Recipient<Refresh>,
    registry: Recipient<LogChanged>,
    me: Option<PeerId>,
    /// A new period's peer id is awaited: announcements wait for the restart.
    awaiting_new_peer_id: bool,
    routes: HashMap<GroupId, Route>,
    sessions: HashMap<PeerId, HashSet<GroupId>>,
    /// Pushes and lookups in progress, so ticks do not pile them up.
    busy: HashSet<(GroupId, Option<PeerId>)>,
    /// Pushes asked for while one was in progress: run again after it.
    again: HashSet<(GroupId, PeerId)>,
    /// Counts network restarts and lost connections. A push that spans one
    /// may have deferred entries whose frame went out under a stale tag or
    /// lost its ack *after* they were made due again: it makes them due
    /// once more when it ends (otherwise they would wait out the resend
    /// delay).
    disruptions: u64,
    /// Who hears this node's heads of each pull-synced group, and when.
    gossip: HeadsGossip,
    /// This node's heads of each pull-synced group, as last read.
    own_heads: OwnHeads,
    /// Pull-synced groups whose heads may have changed, or that owe a peer
    /// an answer: their heads are offered at the next tick.
    heads_due: HashSet<GroupId>,
    /// When this node last opened a reconciliation with each peer.
    reconciling: HashMap<(GroupId, PeerId), std::time::Instant>,
    /// Ticks so far.
    ticks: u64,
    /// Entries asked for lately: of whom, and when.
    asked: HashMap<(GroupId, EntryHash), (PeerId, std::time::Instant)>,
    /// The heads each peer last offered and this node has not looked at.
    heard: HashMap<(GroupId, PeerId), Vec<EntryHash>>,
    /// The latest points of every group the rotator reported, including
    /// groups whose route is not started yet.
    points: HashMap<GroupId, ActivePoints>,
    /// The latest points of every group's replication node, likewise.
    replica_points: HashMap<veil_crypto::ReplicationId, ActivePoints>,
    /// Peers serving as a replication node of a group (their sessions use
    /// the replica's tags).
    replicas: HashSet<(GroupId, PeerId)>,
    /// Where frames for no group of ours go: the replication role.
    fallback: Option<Recipient<InboundFrame>>,
    /// Peers connected now that proved they are a contact or member (a
    /// frame under a group's session tag): the relays they are reachable
    /// through were learned for the relay draws.
    proven: HashSet<PeerId>,
    /// How entries reach each peer: from memory, or through the outbox.
    lanes: Lanes,
    /// Acknowledgements waiting to be recorded.
    acks: Coalesced<Ack>,
    /// Told when a batch of acknowledgements was recorded.
    acks_recorded: Arc<Notify>,
    /// Received entries whose acknowledgement waits (see `MAX_ACKS_SYNCING`).
    acks_syncing: Arc<tokio::sync::Semaphore>,
    /// Acknowledgements owed, waiting for the store's next sync.
    receipts: Coalesced<Receipt>,
    /// Peers found nearby and what they were offered.
    nearby: Nearby,
    /// Whether the policy allows proximity discovery.
    proximity: bool,
    /// A group looked for members this tick: nearby peers are offered
    /// tokens again if their offer is stale.
    wants_members: bool,
}

impl core::fmt::Debug for Courier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Courier").field("groups", &self.routes.len()).finish_non_exhaustive()
    }
}

/// What the courier needs from the rest of the node.
pub(crate) struct CourierDeps {
    /// The store.
    pub store: Arc<Store>,
    /// The network.
    pub network: NetworkHandle,
    /// The injected clock.
    pub clock: Arc<dyn Clock>,
    /// Pacing.
    pub timing: CourierTiming,
    /// How long an announcement lives (a period plus the grace window).
    pub ttl: Duration,
    /// The node's event channel.
    pub events: broadcast::Sender<NodeEvent>,
    /// What each group log needs.
    pub group_log: GroupLogDeps,
    /// Told of new groups (watches their points).
    pub rotator: Recipient<Refresh>,
    /// Frames naming no group of ours (for the replication role).
    pub fallback: Option<Recipient<InboundFrame>>,
    /// Whether the policy allows proximity discovery at start.
    pub proximity: bool,
}

impl Courier {
    pub(crate) fn new(deps: CourierDeps, registry: Recipient<LogChanged>) -> Self {
        Self {
            store: deps.store,
            network: deps.network,
            clock: deps.clock,
            timing: deps.timing,
            ttl: deps.ttl,
            events: deps.events,
            deps: deps.group_log,
            rotator: deps.rotator,
            registry,
            me: None,
            awaiting_new_peer_id: false,
            routes: HashMap::new(),
            sessions: HashMap::new(),
            busy: HashSet::new(),
            again: HashSet::new(),
            disruptions: 0,
            points: HashMap::new(),
            gossip: HeadsGossip::default(),
            own_heads: OwnHeads::default(),
            heads_due: HashSet::new(),
            reconciling: HashMap::new(),
            ticks: 0,
            heard: HashMap::new(),
            asked: HashMap::new(),
            replicas: HashSet::new(),
            replica_points: HashMap::new(),
            fallback: deps.fallback,
            proven: HashSet::new(),
            lanes: Lanes::default(),
            acks: Coalesced::new(ACK_BATCH),
            acks_recorded: Arc::new(Notify::new()),
            acks_syncing: Arc::new(tokio::sync::Semaphore::new(MAX_ACKS_SYNCING)),
            receipts: Coalesced::new(ACK_BATCH),
            nearby: Nearby::default(),
            proximity: deps.proximity,
            wants_members: false,
        }
    }

    /// The tag of `group`'s session from this node to `peer` (a member's,
    /// or a replication node's).
    fn tag(&self, group: &GroupId, me: &PeerId, peer: &PeerId) -> Option<[u8; 32]> {
        let route = self.routes.get(group)?;
        let seed = if self.replicas.contains(&(*group, *peer)) { &route.replica.seed } else { &route.seed };
        Some(session_tag(seed, &me.to_bytes(), &peer.to_bytes()))
    }

    /// The group an inbound frame from `peer` names, if any, and whether
    /// `peer` speaks as its replication node. The groups of the peer's
    /// session are tried first: on a busy session that is one HMAC per
    /// frame instead of one per group.
    fn group_of(&self, peer: &PeerId, tag: &[u8; 32]) -> Option<(GroupId, bool)> {
        let me = self.me?;
        let (from, to) = (peer.to_bytes(), me.to_bytes());
        let matches = |g: &GroupId| {
            let route = self.routes.get(g)?;
            if &session_tag(&route.seed, &from, &to) == tag {
                Some((*g, false))
            } else if route.pull && &session_tag(&route.replica.seed, &from, &to) == tag {
                Some((*g, true))
            } else {
                None
            }
        };
        let known = self.sessions.get(peer).into_iter().flatten().find_map(&matches);
        known.or_else(|| self.routes.keys().find_map(&matches))
    }

    /// Pushes what `group` owes to `peer`, unless a push is under way: the
    /// entries written since the last push if any wait in memory, else
    /// what the outbox says is due.
    fn push(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId) {
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
            peer,
            tag,
            next: self.lanes.next(group, peer),
        };
        ctx.spawn(job.run().into_actor(self).map(move |pushed, act, ctx| {
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
                ctx.spawn(act.reschedule(group).into_actor(act).map(move |(), act, ctx| act.deliver(ctx, group)));
            } else if act.again.remove(&(group, peer)) {
                act.push(ctx, group, peer);
            }
        }));
    }

    /// Records that `peer` serves `group`. A new session first makes every
    /// entry owed to the group's members due again (acks lost with an old
    /// connection would otherwise wait out their resend delay), then pushes.
    fn join_session(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId) {
        if Some(peer) == self.me {
            return;
        }
        if !self.sessions.entry(peer).or_default().insert(group) {
            // A session under way: its pushes run as entries are written
            // and at every tick.
            return;
        }
        // Everything owed goes from the outbox first, in order.
        self.lanes.through_outbox(group, peer, Vec::new());
        let fut = self.reschedule(group);
        ctx.spawn(fut.into_actor(self).map(move |(), act, ctx| act.push(ctx, group, peer)));
        self.offer_heads(ctx, group, Some(peer));
    }

    /// Learns the relays a proven contact or member is reachable through,
    /// so that relay draws can use them. A replication node is not a
    /// contact: its relays are not learned.
    fn learn_relays_of(&mut self, ctx: &mut Context<Self>, peer: PeerId) {
        let (network, events) = (self.network.clone(), self.events.clone());
        ctx.spawn(async move { network.learn_relays_of(peer).await }.into_actor(self).map(move |learned, _, _| {
            match learned {
                Ok(relays) if !relays.is_empty() => {
                    tracing::debug!(actor = NAME, count = relays.len(), "relays learned");
                    let _ = events.send(NodeEvent::RelaysLearned { relays });
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(actor = NAME, error = %e, "learning a contact's relays failed"),
            }
        }));
    }

    /// Forgets every session and what was learned through them (the
    /// network restarted, or this actor did): lookups and inbound frames
    /// rebuild them.
    fn forget_sessions(&mut self) {
        self.sessions.clear();
        self.replicas.clear();
        self.proven.clear();
        self.gossip.clear();
        self.reconciling.clear();
        self.heard.clear();
        self.asked.clear();
        self.lanes.clear();
    }

    fn pulls(&self, group: &GroupId) -> bool {
        self.routes.get(group).is_some_and(|r| r.pull)
    }

    /// Sends `body` to `peer` in `group`'s session.
    fn send(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId, body: GroupBody) {
        let Some(me) = self.me else { return };
        let Some(tag) = self.tag(&group, &me, &peer) else { return };
        let network = self.network.clone();
        let frame = GroupFrame { session_tag: tag, body }.encode();
        ctx.spawn(async move { network.send_frame(peer, frame).await }.into_actor(self).map(|r, _, _| {
            if let Err(e) = r {
                tracing::debug!(actor = NAME, error = %e, "a sync frame was not delivered");
            }
        }));
    }

    /// Tells some of `group`'s session peers the heads of both its logs
    /// (pull-synced groups), so they can ask for what they lack: see
    /// [`HeadsGossip`] for who hears them when (`fresh`: `peer` just joined
    /// and hears them regardless).
    fn offer_heads(&mut self, ctx: &mut Context<Self>, group: GroupId, fresh: Option<PeerId>) {
        if !self.pulls(&group) {
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
        ctx.spawn(fut.into_actor(self).map(move |heads, act, ctx| match heads {
            Ok(heads) => {
                act.own_heads.read(group, generation, heads.clone());
                act.spread_heads(ctx, group, heads);
            }
            Err(e) => tracing::debug!(actor = NAME, error = %e, "cannot read heads"),
        }));
    }

    /// Something may have been stored in `group`: its heads are read again
    /// and offered at the next tick.
    fn heads_changed(&mut self, group: GroupId) {
        self.own_heads.changed(group);
        self.heads_due.insert(group);
    }

    /// Sends `heads` to the peers of `group` that should hear them now.
    fn spread_heads(&mut self, ctx: &mut Context<Self>, group: GroupId, heads: Heads) {
        let slow = self.ticks.is_multiple_of(SLOW_TICKS);
        let peers = self.peers_of(&group);
        for peer in self.gossip.recipients(group, &heads.all(), &peers, slow) {
            let body = GroupBody::Heads { metadata: heads.metadata.clone(), messages: heads.messages.clone() };
            self.send(ctx, group, peer, body);
        }
    }

    /// Asks `peer` for the entries of `hashes` that are not stored (what
    /// they name and we lack comes by reconciliation).
    fn want(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId, mut hashes: Vec<EntryHash>) {
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
        ctx.spawn(fut.into_actor(self).map(move |wanted, act, ctx| match wanted {
            Ok(w) => {
                // Not again while an answer may still be on its way.
                let now = std::time::Instant::now();
                act.asked.retain(|_, (_, at)| now.duration_since(*at) < ASK_AGAIN);
                // Asking again must not push the time back: heads heard
                // every second would hold the entry back for ever.
                let w: Vec<EntryHash> = w
                    .into_iter()
                    .filter(|h| match act.asked.entry((group, *h)) {
                        std::collections::hash_map::Entry::Occupied(_) => false,
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert((peer, now));
                            true
                        }
                    })
                    .collect();
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
    fn serve(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId, hashes: Vec<EntryHash>) {
        let Some(me) = self.me else { return };
        let Some(tag) = self.tag(&group, &me, &peer) else { return };
        let (store, network, budget) = (self.store.clone(), self.network.clone(), self.timing.budget());
        let fut = async move {
            let order = store.sync_order(&group, &hashes).await?;
            for chunk in order.chunks(SERVE_CHUNK) {
                let sealed = store.sealed_entries_of(&group, chunk).await?;
                for batch in fill(sealed, GroupFrame::entry_cost, budget) {
                    let frame = GroupFrame { session_tag: tag, body: GroupBody::Entries(batch) };
                    network.send_frame(peer, frame.encode()).await?;
                }
            }
            Ok::<_, Error>(())
        };
        ctx.spawn(fut.into_actor(self).map(|r, _, _| {
            if let Err(e) = r {
                tracing::debug!(actor = NAME, error = %e, "serving entries failed");
            }
        }));
    }

    /// Opens a reconciliation of `group` with `peer`, unless one this node
    /// opened is still under way.
    fn open_reconciliation(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId) {
        let now = std::time::Instant::now();
        if self.reconciling.get(&(group, peer)).is_some_and(|t| now.duration_since(*t) < RECONCILE_PAUSE) {
            return;
        }
        self.reconciling.insert((group, peer), now);
        self.reconcile(ctx, group, peer, None);
    }

    /// One step of set reconciliation with `peer` (`incoming`: its last
    /// message; `None` opens): answers, asks for what this side lacks and
    /// serves what the peer lacks.
    fn reconcile(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId, incoming: Option<Vec<HashRange>>) {
        let store = self.store.clone();
        let fut = async move {
            let mine = store.group_hashes(&group).await?;
            Ok::<_, Error>(match incoming {
                None => Step { reply: initial(&mine), ..Step::default() },
                Some(ranges) => respond(&mine, &ranges),
            })
        };
        ctx.spawn(fut.into_actor(self).map(move |step, act, ctx| {
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

    /// What `items` has due now; when they wait, `again` runs once `delay`
    /// passed.
    fn due<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        items: fn(&mut Self) -> &mut Coalesced<T>,
        delay: Duration,
        again: fn(&mut Self, &mut Context<Self>),
    ) -> Option<Vec<T>> {
        match items(self).next_step() {
            Due::Now(batch) => Some(batch),
            Due::AfterDelay => {
                ctx.run_later(delay, move |act, ctx| {
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
    fn record_acks(&mut self, ctx: &mut Context<Self>) {
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
        ctx.spawn(fut.into_actor(self).map(|(), act, ctx| {
            act.acks.done();
            act.acks_recorded.notify_waiters();
            act.record_acks(ctx);
        }));
    }

    /// Sends the acknowledgements owed once the store synced what they
    /// acknowledge: one sync and one frame per peer and group for all that
    /// waited [`RECEIPT_DELAY`] (or enough of them), while the next wait.
    fn send_receipts(&mut self, ctx: &mut Context<Self>) {
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
        ctx.spawn(synced.into_actor(self).map(move |synced, act, ctx| {
            act.receipts.done();
            match synced {
                // Each peer's frames go on their own: a slow peer holds up
                // no other's.
                Ok(()) => {
                    for ToPeer { peer, frames, permits } in receipt_frames(batch) {
                        let network = act.network.clone();
                        ctx.spawn(
                            async move {
                                let _permits = permits;
                                for frame in frames {
                                    if let Err(e) = network.send_frame(peer, frame).await {
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
    fn reschedule(&self, group: GroupId) -> impl Future<Output = ()> + 'static {
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

    /// Looks members of `group` up at its points, if it owes them anything,
    /// then dials every peer found (at once: stale registrations of peers
    /// gone offline must not hold up the live ones) and pushes to those
    /// reached.
    fn look_up(&mut self, ctx: &mut Context<Self>, group: GroupId) {
        let Some(route) = self.routes.get(&group) else { return };
        let Some(points) = route.points else { return };
        if !self.busy.insert((group, None)) {
            return;
        }
        let (network, store, members, pull) =
            (self.network.clone(), self.store.clone(), route.members.clone(), route.pull);
        // Pull-synced groups also look for a replication node of theirs.
        let replica_points = route.replica.points.filter(|_| pull);
        let fut = async move {
            let mut owed = 0;
            for m in &members {
                owed += store.outbox_len(m).await.unwrap_or(0);
            }
            // Pull-synced groups always look for members: the log says
            // nothing about who is owed what.
            if owed == 0 && !pull {
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
        ctx.spawn(fut.into_actor(self).map(move |(found, replicas), act, ctx| {
            act.busy.remove(&(group, None));
            let mut found: Vec<(PeerId, bool)> =
                found.into_iter().map(|p| (p, false)).chain(replicas.into_iter().map(|p| (p, true))).collect();
            found.retain(|(peer, _)| {
                let known = act.sessions.get(peer).is_some_and(|g| g.contains(&group));
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
                ctx.spawn(async move { network.dial_peer(peer).await }.into_actor(act).map(move |dialed, act, ctx| {
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

    /// Starts a session with `group`'s replication node: it hears the
    /// heads, and a reconciliation brings both sides up to date.
    fn join_replica(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId) {
        self.replicas.insert((group, peer));
        self.join_session(ctx, group, peer);
        self.open_reconciliation(ctx, group, peer);
    }

    fn peers_of(&self, group: &GroupId) -> Vec<PeerId> {
        self.sessions.iter().filter(|(_, groups)| groups.contains(group)).map(|(p, _)| *p).collect()
    }

    /// Pushes to the group's connected members, or looks them up if there
    /// are none.
    fn deliver(&mut self, ctx: &mut Context<Self>, group: GroupId) {
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
            for peer in peers.iter().filter(|p| self.replicas.contains(&(group, **p))).copied().collect::<Vec<_>>() {
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
        if self.heads_due.remove(&group) || slow {
            self.offer_heads(ctx, group, None);
        }
    }

    /// Announces `group` at the current period's point and withdraws the
    /// points it no longer uses; while a new peer id is awaited, only
    /// records the wish (see `announce.rs`).
    fn announce(&mut self, ctx: &mut Context<Self>, group: GroupId, points: ActivePoints) {
        let Some(route) = self.routes.get_mut(&group) else { return };
        route.points = Some(points);
        if self.awaiting_new_peer_id {
            route.announcements.hold();
        }
        if let Some(change) = route.announcements.want(vec![points.current]) {
            self.apply_change(ctx, group, change);
        }
    }

    fn apply_change(&mut self, ctx: &mut Context<Self>, group: GroupId, change: Change) {
        let (network, ttl) = (self.network.clone(), self.ttl);
        ctx.spawn(change.apply(network, ttl).into_actor(self).map(move |applied, act, ctx| {
            match act.routes.get_mut(&group).map(|r| r.announcements.done(applied)) {
                Some(After::Apply(next)) => act.apply_change(ctx, group, next),
                Some(After::RetryIn(wait)) => {
                    ctx.run_later(wait, move |act, ctx| {
                        if let Some(again) = act.routes.get_mut(&group).and_then(|r| r.announcements.retry()) {
                            act.apply_change(ctx, group, again);
                        }
                    });
                }
                Some(After::Nothing) | None => {}
            }
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // Heads heard last tick are asked for now, if still missing; groups
        // deliver (and at slow ticks run their anti-entropy).
        self.ticks += 1;
        for ((group, peer), heads) in std::mem::take(&mut self.heard) {
            self.want(ctx, group, peer, heads);
        }
        let groups: Vec<GroupId> = self.routes.keys().copied().collect();
        for group in groups {
            self.deliver(ctx, group);
        }
        // Now and then, what a conversation keeps no longer is erased.
        // Each log erases its own (a full mailbox skips a turn).
        if self.ticks.is_multiple_of(SLOW_TICKS) {
            let now = self.clock.now();
            for route in self.routes.values() {
                let _ = route.log.try_send(ApplyRetention { now });
            }
        }
        // Members nobody serves may be nearby: stale offers are renewed.
        if std::mem::take(&mut self.wants_members) && self.proximity {
            for peer in self.nearby.stale(self.ticks, |p| self.sessions.get(p).is_some_and(|g| !g.is_empty())) {
                self.offer_nearby(ctx, peer);
            }
        }
    }

    /// Offers `peer`, found nearby, a token for every group of this node,
    /// and for each multi-member group one under its replication session
    /// seed (a replication node nearby recognises that one).
    fn offer_nearby(&mut self, ctx: &mut Context<Self>, peer: PeerId) {
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
        let sent = nearby::send(self.network.clone(), peer, frames);
        ctx.spawn(sent.into_actor(self).map(move |sent, act, _| {
            if let Err(e) = sent {
                tracing::debug!(actor = NAME, error = %e, "a nearby peer is unreachable");
                act.nearby.left(&peer);
            }
        }));
    }

    /// `peer` offered its tokens under `salt`: the groups it shares with
    /// this node are served to it, and ours are offered back if owed.
    fn nearby_offered(&mut self, ctx: &mut Context<Self>, peer: PeerId, salt: &[u8; 32], tokens: &[[u8; 32]]) {
        let Some(me) = self.me else { return };
        let shared = nearby::recognise(self.routes.iter().map(|(g, r)| (g, &r.seed)), salt, tokens, &peer, &me);
        let pulled = self.routes.iter().filter(|(_, r)| r.pull);
        let replicated = nearby::recognise(pulled.map(|(g, r)| (g, &r.replica.seed)), salt, tokens, &peer, &me);
        // It found this node nearby (or is connected to it): it is offered
        // ours in return, once per connection and change of our groups, and
        // whenever it names a group we have not shown it we share (it may
        // have joined the group since our last offer).
        self.nearby.found(peer);
        let known: HashSet<GroupId> = self.sessions.get(&peer).cloned().unwrap_or_default();
        if self.nearby.owes_answer(&peer) || shared.iter().chain(&replicated).any(|g| !known.contains(g)) {
            self.offer_nearby(ctx, peer);
        }
        for group in shared {
            if self.proven.insert(peer) {
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

/// One push of owed entries to one peer.
struct Push {
    store: Arc<Store>,
    network: NetworkHandle,
    clock: Arc<dyn Clock>,
    timing: CourierTiming,
    members: Vec<Peer>,
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
            if let Err(e) = self.network.send_frame(self.peer, frame.encode()).await {
                return Pushed { error: Some(e.into()), unsent: hashes[sent..].to_vec(), drained: None };
            }
            sent += count;
        }
        Pushed::default()
    }

    async fn send(
        &self,
        member: &Peer,
        batch: Vec<(EntryHash, SealedEntry)>,
        resend: veil_crypto::time::UnixTime,
    ) -> Result<()> {
        let hashes: Vec<EntryHash> = batch.iter().map(|(hash, _)| *hash).collect();
        let frame = GroupFrame {
            session_tag: self.tag,
            body: GroupBody::Entries(batch.into_iter().map(|(_, sealed)| sealed).collect()),
        };
        self.network.send_frame(self.peer, frame.encode()).await?;
        // Sent; it leaves the outbox when the member acknowledges it.
        self.store.defer(member, &hashes, resend).await?;
        Ok(())
    }
}

/// The members of a group that entries are owed to: for a contact group,
/// the other account.
pub(crate) async fn members_of(store: &Store, group: &GroupId) -> Result<Vec<Peer>> {
    let members = crate::group_log::contact_recipients(store, group).await?;
    Ok(members.iter().map(|m| Peer(m.signing.to_bytes())).collect())
}

impl Actor for Courier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        let network = self.network.clone();
        ctx.wait(async move { network.local_peer_id().await }.into_actor(self).map(|id, act, _| act.me = id.ok()));
        ctx.run_interval(self.timing.tick, |act, ctx| {
            let _ = guarded_with(NAME, ctx, |ctx| {
                act.tick(ctx);
                Ok(())
            });
        });
    }
}

impl Supervised for Courier {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; sessions are rebuilt by lookups");
        self.forget_sessions();
        self.busy.clear();
        self.again.clear();
    }
}

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
            .then(move |loaded, act, ctx| {
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
                        Route { seed, log: log.clone(), members, announcements, points, pull, replica, pace },
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
                let (rotator, registry) = (act.rotator.clone(), act.registry.clone());
                async move {
                    let (_, log) = started?;
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
            ctx.spawn(change.apply(network, ttl).into_actor(self).map(|_, _, _| ()));
        }
        let registry = self.registry.clone();
        ctx.spawn(
            async move { registry.send(LogChanged { group, log: None }).await }.into_actor(self).map(|_, _, _| ()),
        );
        self.points.remove(&group);
        self.heads_due.remove(&group);
        for groups in self.sessions.values_mut() {
            groups.remove(&group);
        }
        self.busy.retain(|(g, _)| *g != group);
        self.again.retain(|(g, _)| *g != group);
        self.reconciling.retain(|(g, _), _| *g != group);
        self.asked.retain(|(g, _), _| *g != group);
        self.heard.retain(|(g, _), _| *g != group);
        self.replicas.retain(|(g, _)| *g != group);
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
        if self.pulls(&group) {
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
            self.replicas.insert((group, peer));
        } else if self.proven.insert(peer) {
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
                    } else {
                        self.heard.insert((group, peer), heads);
                    }
                    self.heads_due.insert(group);
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
            GroupBody::Ack(hashes) if self.pulls(&group) => {
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
        let syncing = self.acks_syncing.clone();
        let (done, finished) = oneshot::channel();
        ctx.spawn(
            async move { log.send(ReceiveEntries { entries }).await.map_err(mailbox("group-log"))? }
                .into_actor(self)
                .map(move |r, act, ctx| {
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
                                    act.receipts.add(Receipt { peer, tag, hashes, unsynced, permit }, weight);
                                    act.send_receipts(ctx);
                                },
                            );
                            ctx.spawn(room);
                        } else if let Some(stored) = stored {
                            let _ = stored.send(());
                        }
                        receipt.waiting
                    });
                    if r.is_ok() && pull {
                        // What was stored may have moved the heads.
                        act.heads_changed(group);
                    }
                    match r {
                        // Something is missing (a parent, an announcement),
                        // maybe much: reconcile with the sender.
                        Ok(true) if pull => act.open_reconciliation(ctx, group, peer),
                        Ok(false) if pull => {
                            act.reconciling.remove(&(group, peer));
                        }
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
        self.reconciling.retain(|(_, p), _| *p != msg.peer);
        self.heard.retain(|(_, p), _| *p != msg.peer);
        // Answers it owed will not come.
        self.asked.retain(|_, (p, _)| *p != msg.peer);
        self.replicas.retain(|(_, p)| *p != msg.peer);
        self.proven.remove(&msg.peer);
        self.nearby.left(&msg.peer);
        self.lanes.forget_peer(&msg.peer);
        for group in self.sessions.remove(&msg.peer).unwrap_or_default() {
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
                r.announcements.reset()
            }) {
                self.apply_change(ctx, group, change);
            }
            self.deliver(ctx, group);
        }
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for Courier {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        crate::supervision::guarded(NAME, ctx, || panic!("injected fault"))
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
fn cap(mut hashes: Vec<EntryHash>) -> Vec<EntryHash> {
    hashes.truncate(veil_proto::sync::MAX_ACK_HASHES);
    hashes
}
