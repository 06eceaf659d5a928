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

use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;
use crate::time::Time;
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
use veil_storage::{Addressee, GroupKind, Store};
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
    pull::PullSync,
    receipts::{RECEIPT_DELAY, Receipt, ToPeer, receipt_frames},
    sessions::Sessions,
    supervision::{guarded_with, mailbox},
};

mod discovery;
mod groups;
mod inbound;
mod push;
mod sync;

pub(crate) use sync::step_frames;

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
/// Every this many ticks, heads go to one peer that told other heads
/// (anti-entropy), own heads are read again, and replication nodes are
/// reconciled with; the base wait between lookups of a connected
/// multi-member group.
const SLOW_TICKS: u64 = 10;

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
    members: Vec<Addressee>,
    /// The group's announcements.
    announcements: Announcements,
    /// The points to look members up at.
    points: Option<ActivePoints>,
    /// Delivered by pulling alone (heads, then wanted entries): multi-member
    /// groups, whose members are learned from the log; they keep looking
    /// for members and acknowledge metadata only. Contact groups push
    /// through the outbox (and pull too, for the account's other devices).
    pull: bool,
    /// Where a replication node of the group would be, and the seed of the
    /// session tags spoken with it (multi-member groups).
    replica: ReplicaRoute,
    /// When to look members up next (multi-member groups).
    pace: LookupPace,
    /// A contact group looked its peers up since the node (or its network)
    /// started: it looks again only while it owes them something. The one
    /// look lets a device that was away catch up, from the contact or from
    /// the account's other devices.
    looked: bool,
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
    /// Where its timers read the time.
    time: Time,
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
    /// Who serves which group, and who proved it is a contact or member.
    sessions: Sessions,
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
    /// What pull sync has under way (asks, reconciliations, heads due).
    pull_sync: PullSync,
    /// Ticks so far.
    ticks: u64,
    /// The latest points of every group the rotator reported, including
    /// groups whose route is not started yet.
    points: HashMap<GroupId, ActivePoints>,
    /// The latest points of every group's replication node, likewise.
    replica_points: HashMap<veil_crypto::ReplicationId, ActivePoints>,
    /// Where frames for no group of ours go: the replication role.
    fallback: Option<Recipient<InboundFrame>>,
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
    /// The node's store: the courier reads the outbox and sync ranges from it and records acknowledgements in it.
    pub store: Arc<Store>,
    /// The handle frames, lookups and announcements go out through; it outlives a transport manager restart.
    pub network: NetworkHandle,
    /// The clock resend times and retention are measured on (a `ManualClock` in tests).
    pub clock: Arc<dyn Clock>,
    /// The tick, the resend delay and the largest frame it sends.
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
    /// Where its timers read the time.
    pub time: Time,
}

impl Courier {
    pub(crate) fn new(deps: CourierDeps, registry: Recipient<LogChanged>) -> Self {
        Self {
            store: deps.store,
            network: deps.network,
            clock: deps.clock,
            time: deps.time,
            timing: deps.timing,
            ttl: deps.ttl,
            events: deps.events,
            deps: deps.group_log,
            rotator: deps.rotator,
            registry,
            me: None,
            awaiting_new_peer_id: false,
            routes: HashMap::new(),
            sessions: Sessions::default(),
            busy: HashSet::new(),
            again: HashSet::new(),
            disruptions: 0,
            points: HashMap::new(),
            gossip: HeadsGossip::default(),
            own_heads: OwnHeads::default(),
            pull_sync: PullSync::default(),
            ticks: 0,
            replica_points: HashMap::new(),
            fallback: deps.fallback,
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
        let seed = if self.sessions.is_replica(group, peer) { &route.replica.seed } else { &route.seed };
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
        let known = self.sessions.groups_of(peer).find_map(&matches);
        known.or_else(|| self.routes.keys().find_map(&matches))
    }

    /// Forgets every session and what was learned through them (the
    /// network restarted, or this actor did): lookups and inbound frames
    /// rebuild them.
    fn forget_sessions(&mut self) {
        self.sessions.clear();
        self.gossip.clear();
        self.pull_sync.forget_sessions();
        self.lanes.clear();
    }

    fn pulls(&self, group: &GroupId) -> bool {
        // Every group: a contact group's entries are pushed through the
        // outbox to the other account, but the devices of one account
        // catch up with each other (and with a contact that holds what
        // they missed) by heads and reconciliation, like members.
        self.routes.contains_key(group)
    }

    /// Whether `group` is delivered by pulling alone (multi-member groups):
    /// no outbox, metadata acknowledged only.
    fn pull_only(&self, group: &GroupId) -> bool {
        self.routes.get(group).is_some_and(|r| r.pull)
    }

    /// Sends `body` to `peer` in `group`'s session.
    fn send(&mut self, ctx: &mut Context<Self>, group: GroupId, peer: PeerId, body: GroupBody) {
        let Some(me) = self.me else { return };
        let Some(tag) = self.tag(&group, &me, &peer) else { return };
        let network = self.network.clone();
        let frame = GroupFrame { session_tag: tag, body }.encode();
        ctx.spawn(async move { network.send_frame_as(me, peer, frame).await }.into_actor(self).guarded_map(
            NAME,
            |r, _, _| {
                if let Err(e) = r {
                    tracing::debug!(actor = NAME, error = %e, "a sync frame was not delivered");
                }
            },
        ));
    }

    fn peers_of(&self, group: &GroupId) -> Vec<PeerId> {
        self.sessions.peers_of(group)
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // Heads heard last tick are asked for now, if still missing; groups
        // deliver (and at slow ticks run their anti-entropy).
        self.ticks += 1;
        for (group, peer, heads) in self.pull_sync.take_heard() {
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
            for peer in self.nearby.stale(self.ticks, |p| self.sessions.serves_any(p)) {
                self.offer_nearby(ctx, peer);
            }
        }
    }
}

/// The members of a group that entries are owed to: for a contact group,
/// the other account.
pub(crate) async fn members_of(store: &Store, group: &GroupId) -> Result<Vec<Addressee>> {
    let members = crate::group_log::contact_recipients(store, group).await?;
    Ok(members.iter().map(|m| Addressee(m.signing.to_bytes())).collect())
}

impl Actor for Courier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        let network = self.network.clone();
        ctx.wait(
            async move { network.local_peer_id().await }
                .into_actor(self)
                .guarded_map(NAME, |id, act, _| act.me = id.ok()),
        );
        ctx.guarded_interval(&self.time, NAME, self.timing.tick, |act, ctx| {
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

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for Courier {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        crate::supervision::guarded(NAME, ctx, || panic!("injected fault"))
    }
}
