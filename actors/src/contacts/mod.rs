//! The `ContactBook`: this account's contact link and every contact request,
//! in both directions. Its state lives in storage.
//!
//! * **Link.** Share, enable, disable, reset. While enabled the node is
//!   announced at the current period's link point (under that period's
//!   peer id only); disabling or resetting withdraws every announcement at
//!   once.
//! * **Outgoing requests** are stored, then retried with exponential backoff
//!   (and after every restart) until one is delivered: look the responder up
//!   at its current points, run the Noise XK handshake over
//!   `/veil/contact/1`, and on success open the 1:1 group, whose first entry
//!   announces this device to the responder.
//! * **Incoming requests** are answered only when message 1 proves it knows
//!   one of the link's active points, so a reset or disabled link gets no
//!   answer at all. A request from a blocked account is acknowledged like any
//!   other and dropped; a request crossing one of ours is accepted at once.

use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;
use crate::time::Time;
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Recipient, ResponseActFuture, Supervised, WrapFuture,
};
use tokio::sync::broadcast;
use veil_crypto::{
    AccountPublic, ContactLink, GroupId, OsEntropy, RendezvousSeed, VerifyKey,
    rendezvous::{ActivePoints, RendezvousPoint, Topic, check_point_proof, point_proof},
    time::{Clock, UnixTime},
};
use veil_proto::{
    handshake::{ContactRequest, HandshakeFrame},
    link,
};
use veil_storage::{ContactRecord, ContactState, GroupKind, LinkLimits, Store};
use veil_transports::{NetworkHandle, libp2p::PeerId};

use crate::{
    Error, NodeEvent, Result,
    announce::{self, Announcements},
    messages::{
        contacts::{
            Contact, ContactJoined, Decide, Decision, GetContacts, InboundRequest, LanPeerFound, LinkInfo,
            RemoveContact, RenameContact, ResetLink, SendRequest, SetDisplayName, SetLinkEnabled, ShareLink,
        },
        courier::{NetworkRestarted, StartGroup, StopGroup},
        rendezvous::{PointsRotated, Refresh, WatchKey},
        vault::{
            AddGroup, AnswerRequest, BeginRequest, ContinueRequest, DeriveContactGroup, GetIdentity, GroupRemoved,
            HandshakeId, PublicIdentity, ReadRequest,
        },
    },
    supervision::{guarded_with, mailbox},
};

mod answers;
mod own_link;
mod requests;
mod synced;

use own_link::*;
use requests::*;

const NAME: &str = "contact-book";

/// The setting holding the display name sent with requests.
/// The setting holding the name this account introduces itself by.
pub(crate) const DISPLAY_NAME: &str = "display-name";

/// Most handshakes answered and waiting for message 3 (one per peer).
const MAX_ANSWERING: usize = 64;

/// Most LAN peers remembered as candidates for pending requests.
const MAX_LAN_PEERS: usize = 32;

/// How requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First retry delay, doubled after every failed attempt.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base: Duration::from_secs(5), max: Duration::from_secs(600) }
    }
}

/// The vault's handshake and key operations the contact book uses.
#[derive(Clone)]
pub(crate) struct VaultPort {
    /// Public identity.
    pub identity: Recipient<GetIdentity>,
    /// Requester, message 1.
    pub begin: Recipient<BeginRequest>,
    /// Requester, message 3.
    pub continue_request: Recipient<ContinueRequest>,
    /// Responder, message 2.
    pub answer: Recipient<AnswerRequest>,
    /// Responder, reading message 3.
    pub read: Recipient<ReadRequest>,
    /// The 1:1 group secret.
    pub derive: Recipient<DeriveContactGroup>,
    /// Records a 1:1 group under a device key made in the vault.
    pub add_group: Recipient<AddGroup>,
    /// Forgets the device key of a removed contact's 1:1 group.
    pub remove_group: Recipient<GroupRemoved>,
}

/// What the contact book needs from the rest of the node.
pub(crate) struct ContactBookDeps {
    /// The node's store: the contact book writes the contacts, the contact link and its state.
    pub store: Arc<Store>,
    /// The network (lookups, announcements, the contact protocol).
    pub network: NetworkHandle,
    /// The wall clock the link's expiry is checked against (a `ManualClock` in tests).
    pub clock: Arc<dyn Clock>,
    /// How long an announcement lives.
    pub ttl: Duration,
    /// Request retries.
    pub retry: RetryPolicy,
    /// The identity vault's handshake and key operations; the keys themselves stay in the vault.
    pub vault: VaultPort,
    /// Told when the link or the outgoing requests change.
    pub rotator: Recipient<Refresh>,
    /// Computes rendezvous points (the rotator: the contact book keeps no
    /// schedule of its own).
    pub points: Recipient<crate::messages::rendezvous::PointsOf>,
    /// Starts 1:1 groups.
    pub groups: Recipient<StartGroup>,
    /// Stops the 1:1 group of a removed contact.
    pub stop_group: Recipient<StopGroup>,
    /// The node's event channel.
    pub events: broadcast::Sender<NodeEvent>,
    /// What the node refused.
    pub refusals: Arc<crate::refusals::RefusalCounters>,
    /// Where its timers read the time.
    pub time: Time,
    /// Device-link frames, which share the contact protocol.
    pub devices: Recipient<InboundRequest>,
}

#[derive(Clone, Copy)]
struct Backoff {
    failures: u32,
    next: Instant,
}

/// Manages the contact link and contact requests.
pub struct ContactBook {
    deps: Arc<ContactBookDeps>,
    /// Own-link announcements.
    link: Announcements,
    /// Outgoing requests: when to try each next.
    backoff: HashMap<VerifyKey, Backoff>,
    attempting: Vec<VerifyKey>,
    /// Handshakes answered, waiting for message 3, by peer (oldest first).
    answering: VecDeque<(PeerId, HandshakeId)>,
    /// Peers mDNS found on the LAN, most recent last.
    lan: VecDeque<PeerId>,
    /// When the link expires, while it is announced: it is withdrawn then.
    link_expires: Option<UnixTime>,
}

impl core::fmt::Debug for ContactBook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContactBook").finish_non_exhaustive()
    }
}

impl ContactBook {
    /// A contact book with nothing in memory; requests stored earlier are retried from its first tick.
    pub(crate) fn new(deps: ContactBookDeps) -> Self {
        Self {
            deps: Arc::new(deps),
            link: Announcements::default(),
            backoff: HashMap::new(),
            attempting: Vec::new(),
            answering: VecDeque::new(),
            lan: VecDeque::new(),
            link_expires: None,
        }
    }

    /// The link stopped answering (expired or used up): its announcements
    /// are withdrawn and the rotator stops watching its points.
    fn link_spent(&mut self, ctx: &mut Context<Self>) {
        self.link_expires = None;
        self.announce_link(ctx, Vec::new());
        let rotator = self.deps.rotator.clone();
        ctx.spawn(
            async move {
                if rotator.send(Refresh).await.is_err() {
                    tracing::debug!(actor = NAME, "the rotator stopped; a spent link stays watched");
                }
            }
            .into_actor(self),
        );
    }

    /// Sets the own-link announcements to `points` (none: withdraw all).
    fn announce_link(&mut self, ctx: &mut Context<Self>, points: Vec<RendezvousPoint>) {
        if let Some(change) = self.link.want(points) {
            self.apply_change(ctx, change);
        }
    }

    fn apply_change(&mut self, ctx: &mut Context<Self>, change: announce::Change) {
        let (network, ttl) = (self.deps.network.clone(), self.deps.ttl);
        ctx.spawn(change.apply(network, ttl).into_actor(self).guarded_map(NAME, |applied, act, ctx| {
            match act.link.done(applied) {
                announce::After::Apply(next) => act.apply_change(ctx, next),
                announce::After::RetryIn(wait) => {
                    ctx.guarded_later(&act.deps.time, NAME, wait, |act, ctx| {
                        if let Some(again) = act.link.retry() {
                            act.apply_change(ctx, again);
                        }
                    });
                }
                announce::After::Nothing => {}
            }
        }));
    }

    /// Tries every outgoing request that is due.
    fn retry_due(&mut self, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        ctx.spawn(async move { deps.store.contacts(Some(ContactState::OutgoingEnqueued)).await }.into_actor(self).map(
            |found, act, ctx| match found {
                Ok(contacts) => {
                    let now = act.deps.time.now();
                    for c in contacts {
                        let due = act.backoff.get(&c.account.signing).is_none_or(|b| b.next <= now);
                        if due {
                            act.attempt(ctx, c);
                        }
                    }
                }
                Err(e) => tracing::debug!(actor = NAME, error = %e, "cannot list requests"),
            },
        ));
    }

    /// Tries to deliver `contact`'s request to the peers at its rendezvous
    /// points and to the peers mDNS found on the LAN.
    fn attempt(&mut self, ctx: &mut Context<Self>, contact: ContactRecord) {
        let who = contact.account.signing;
        if self.attempting.contains(&who) {
            return;
        }
        self.attempting.push(who);
        let (deps, lan) = (self.deps.clone(), self.lan.iter().copied().collect());
        ctx.spawn(deliver(deps, contact, lan).into_actor(self).guarded_map(NAME, move |result, act, _| {
            act.attempting.retain(|k| *k != who);
            match result {
                Ok(true) => {
                    act.backoff.remove(&who);
                    let _ = act.deps.events.send(NodeEvent::ContactRequestDelivered { account: who });
                }
                other => {
                    if let Err(e) = other {
                        tracing::debug!(actor = NAME, error = %e, "request attempt failed");
                    }
                    let retry = act.deps.retry;
                    let b = act.backoff.entry(who).or_insert(Backoff { failures: 0, next: act.deps.time.now() });
                    let delay = retry.base.saturating_mul(1 << b.failures.min(16)).min(retry.max);
                    b.failures = b.failures.saturating_add(1);
                    b.next = act.deps.time.now() + delay;
                    let failures = b.failures;
                    let _ = act.deps.events.send(NodeEvent::ContactRequestUndelivered { account: who, failures });
                }
            }
        }));
    }
}

impl Actor for ContactBook {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        // Requests enqueued before a restart are retried from the first tick.
        let every = self.deps.retry.base.min(Duration::from_secs(1)).max(Duration::from_millis(50));
        ctx.guarded_interval(&self.deps.time, NAME, every, |act, ctx| {
            let _ = guarded_with(NAME, ctx, |ctx| {
                act.retry_due(ctx);
                if act.link_expires.is_some_and(|t| act.deps.clock.now() >= t) {
                    act.link_spent(ctx);
                }
                Ok(())
            });
        });
        // A link with an expiry, from an earlier run.
        let store = self.deps.store.clone();
        let now = self.deps.clock.now();
        ctx.spawn(async move { store.link().await }.into_actor(self).guarded_map(NAME, move |link, act, _| {
            if let Ok(Some(link)) = link {
                act.link_expires = link.limits.expires_at.filter(|_| link.answers_at(now));
            }
        }));
    }
}

impl Supervised for ContactBook {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting (its state is in storage)");
        self.attempting.clear();
        self.answering.clear();
    }
}

/// The name this account introduces itself by, if one is set.
pub(crate) async fn display_name(store: &Store) -> Result<Option<veil_crypto::Name>> {
    let text = store.setting(DISPLAY_NAME).await?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    Ok(text.and_then(|t| veil_crypto::Name::new(&t).ok()))
}

/// The active points of `topic` under `seed`, as the rotator computes them.
async fn points_of(deps: &ContactBookDeps, topic: Topic, seed: RendezvousSeed) -> Result<ActivePoints> {
    deps.points
        .send(crate::messages::rendezvous::PointsOf { topic, seed })
        .await
        .map_err(mailbox("rendezvous-rotator"))?
}

fn refused() -> Error {
    Error::Refused("the peer did not answer the contact request")
}

/// Creates (or finds) the 1:1 group with `peer`, links it to the contact in
/// `state`, and starts it.
async fn open_contact_group(deps: &ContactBookDeps, peer: &AccountPublic, state: ContactState) -> Result<GroupId> {
    let existing = deps.store.contact(&peer.signing).await?.and_then(|c| c.group);
    let group = match existing {
        Some(g) => g,
        None => {
            let secret = deps
                .vault
                .derive
                .send(DeriveContactGroup { peer: *peer })
                .await
                .map_err(mailbox("identity-vault"))??;
            let add = AddGroup { kind: GroupKind::Contact, name: None, secret, epochs: Vec::new() };
            deps.vault.add_group.send(add).await.map_err(mailbox("identity-vault"))??
        }
    };
    deps.store.set_contact_state(&peer.signing, state, Some(&group)).await?;
    deps.groups.send(StartGroup { group }).await.map_err(mailbox("courier"))??;
    Ok(group)
}

/// Tells the node's subscribers (the account's sync among them) that a
/// contact changed here.
fn changed(deps: &ContactBookDeps, account: AccountPublic, state: Option<ContactState>, synced: bool) {
    let _ = deps.events.send(NodeEvent::ContactChanged { account, state, synced });
}

/// Removes a contact, and its conversation; `true` if it was there.
async fn remove(deps: &ContactBookDeps, account: &VerifyKey, synced: bool) -> Result<bool> {
    let record = deps.store.contact(account).await?;
    if let Some(group) = record.as_ref().and_then(|c| c.group) {
        deps.stop_group.send(StopGroup { group }).await.map_err(mailbox("courier"))?;
        deps.vault.remove_group.send(GroupRemoved { group }).await.map_err(mailbox("identity-vault"))?;
    }
    let removed = deps.store.remove_contact(account).await?;
    // Its points (the conversation's, a pending request's) are no longer watched.
    deps.rotator.send(Refresh).await.map_err(mailbox("rendezvous-rotator"))??;
    if let Some(r) = record {
        changed(deps, r.account, None, synced);
    }
    Ok(removed)
}

fn contact_of(c: ContactRecord) -> Contact {
    Contact { account: c.account, display_name: c.display_name, nickname: c.nickname, state: c.state, group: c.group }
}

impl ContactBook {
    fn run(&mut self, change: LinkChange, ctx: &mut Context<Self>) -> ResponseActFuture<Self, Result<LinkInfo>> {
        // Disabling withdraws every own-link announcement at once, before
        // anything else can be announced. A reset needs nothing here: the
        // rotator reports the new seed's points while `apply` runs, and the
        // announcements move from the old points to those.
        if change.disables() {
            self.announce_link(ctx, Vec::new());
        }
        // Told to subscribers (the account's sync): a reset, an enable, a disable.
        let told = match &change {
            LinkChange::None => None,
            LinkChange::Adopt { .. } => Some(true),
            LinkChange::Reset(_) | LinkChange::Enable(_) => Some(false),
        };
        Box::pin(apply(self.deps.clone(), change).into_actor(self).guarded_map(NAME, move |info, act, _| {
            if let Ok(info) = &info {
                act.link_expires = info.limits.expires_at.filter(|_| info.answers);
                if let Some(synced) = told {
                    let _ = act.deps.events.send(NodeEvent::LinkChanged { synced });
                }
            }
            info
        }))
    }
}

impl Handler<PointsRotated> for ContactBook {
    type Result = ();

    fn handle(&mut self, msg: PointsRotated, ctx: &mut Self::Context) {
        match msg.key {
            WatchKey::OwnLink => {
                if msg.awaits_new_peer_id {
                    self.link.hold();
                }
                self.announce_link(ctx, msg.to_announce());
            }
            WatchKey::Contact(who) => {
                // New points: try now, whatever the backoff said.
                self.backoff.remove(&who);
                self.retry_due(ctx);
            }
            WatchKey::Group(_) | WatchKey::Replica(_) => {}
        }
    }
}

impl Handler<NetworkRestarted> for ContactBook {
    type Result = ();

    fn handle(&mut self, _: NetworkRestarted, ctx: &mut Self::Context) {
        // A new peer id: nothing is registered under it yet. Points held
        // for it are announced now.
        if let Some(change) = self.link.reset() {
            self.apply_change(ctx, change);
        }
    }
}

impl Handler<RenameContact> for ContactBook {
    type Result = ResponseActFuture<Self, Result<Contact>>;

    fn handle(&mut self, msg: RenameContact, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            async move {
                deps.store.set_contact_nickname(&msg.account, msg.nickname.as_deref()).await?;
                let record = deps.store.contact(&msg.account).await?;
                Ok(contact_of(record.ok_or(Error::Storage(veil_storage::Error::Unknown("contact")))?))
            }
            .into_actor(self),
        )
    }
}

impl Handler<RemoveContact> for ContactBook {
    type Result = ResponseActFuture<Self, Result<bool>>;

    fn handle(&mut self, RemoveContact { account }: RemoveContact, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move { remove(&deps, &account, false).await }.into_actor(self))
    }
}

impl Handler<SetDisplayName> for ContactBook {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, SetDisplayName(name): SetDisplayName, _: &mut Self::Context) -> Self::Result {
        let store = self.deps.store.clone();
        Box::pin(
            async move {
                let text = match name {
                    Some(n) => veil_crypto::Name::new(&n)?.as_str().to_owned(),
                    None => String::new(),
                };
                Ok(store.set_setting(DISPLAY_NAME, text.as_bytes()).await?)
            }
            .into_actor(self),
        )
    }
}

impl Handler<GetContacts> for ContactBook {
    type Result = ResponseActFuture<Self, Result<Vec<Contact>>>;

    fn handle(&mut self, _: GetContacts, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            async move { Ok(deps.store.contacts(None).await?.into_iter().map(contact_of).collect()) }.into_actor(self),
        )
    }
}

impl Handler<ContactJoined> for ContactBook {
    type Result = ();

    fn handle(&mut self, msg: ContactJoined, ctx: &mut Self::Context) {
        let deps = self.deps.clone();
        ctx.spawn(
            async move {
                let contacts = deps.store.contacts(Some(ContactState::OutgoingSent)).await?;
                for c in contacts.into_iter().filter(|c| c.group == Some(msg.group)) {
                    // The acceptor's own introduction replaces the name its link gave.
                    if let Some(name) = &msg.display_name {
                        deps.store.upsert_contact(&c.account, Some(name), None, ContactState::OutgoingSent).await?;
                    }
                    deps.store.set_contact_state(&c.account.signing, ContactState::Accepted, None).await?;
                    let _ = deps
                        .events
                        .send(NodeEvent::ContactAccepted { account: c.account.signing, group: Some(msg.group) });
                    changed(&deps, c.account, Some(ContactState::Accepted), false);
                }
                Ok::<_, Error>(())
            }
            .into_actor(self)
            .guarded_map(NAME, |r, _, _| {
                if let Err(e) = r {
                    tracing::warn!(actor = NAME, error = %e, "cannot record an accepted request");
                }
            }),
        );
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for ContactBook {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        crate::supervision::guarded(NAME, ctx, || panic!("injected fault"))
    }
}
