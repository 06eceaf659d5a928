//! `GroupLog`: one actor per group, owning the group's logs. It seals new
//! entries with the group's keys and this device's ratchet (signatures come
//! from the vault), stores them with the ratchet state and outbox rows in
//! one transaction per batch (`append`), and verifies, opens and stores the
//! entries members push.
//!
//! On start it announces this device in the metadata log (once per epoch):
//! its member key, the member's certificate for it, and its sending chain
//! sealed to the other members, who read from that position on and never
//! before.
//!
//! Removing a member (or leaving) writes a removal with a fresh epoch
//! secret sealed to the remaining members; every remaining device then
//! announces itself again in the new epoch, under a new device key with a
//! new chain, so nothing written after the removal opens with the keys the
//! removed member holds (see `membership`).

use std::{
    collections::{HashMap, HashSet},
    rc::Rc,
    sync::Arc,
};

use actix::{
    Actor, ActorFutureExt, Addr, AtomicResponse, Context, Handler, Recipient, ResponseFuture, Supervised, Supervisor,
    WrapFuture,
};
use tokio::sync::broadcast;
use veil_crypto::{
    EpochId, EpochSecret, GroupId, GroupKeys, MemberPublic, OsEntropy, ReceiverChain, SenderChain, ThreadEntropy,
    VerifyKey,
    envelope::{
        AuthorKeys, BodyKey, EntryHash, EntryKind, Links, OpenedEntry, SealedEntry, begin_entry, failed_signatures,
    },
    epoch::seal_epoch_secret,
    ratchet::DEFAULT_WINDOW,
};
use veil_proto::metadata::{EpochShare, MemberJoined, MemberRemoved, MetadataEvent};
use veil_storage::{Appended, GroupKind, NewEntry, Peer, RatchetUpdate, Store, Unsynced};

use crate::{
    Error, NodeEvent, Result,
    heads::{heads_after, parents_of},
    membership::{Epochs, Membership, Unopened},
    messages::{
        contacts::ContactJoined,
        courier::EntriesOwed,
        group::{AwaitAnnounced, EntriesHeld, GetMembers, Receipt, ReceiveEntries, RemoveMember},
        vault::{AnnounceDevice, GetDeviceKey, GetMemberKeys, OpenChainShare, OpenEpochShare, SealMessages, SignEntry},
    },
    supervision::{guarded, load_state, mailbox},
};

mod append;
mod history;
mod known;
mod orphans;
mod reserve;
mod share;

use known::Known;
use orphans::{Arrived, Orphans};
use reserve::Reservation;

const NAME: &str = "group-log";

/// Most metadata entries read when rebuilding the member list.
const MAX_METADATA: u32 = 10_000;

/// Most callers waiting at once for the joining announcement to be held.
const MAX_JOIN_WAITERS: usize = 64;

/// Most unread entries of one author opened when its chain arrives.
const MAX_REVEAL: u32 = 10_000;

/// What every group log needs from the rest of the node.
#[derive(Clone)]
pub(crate) struct GroupLogDeps {
    /// The store.
    pub store: Arc<Store>,
    /// The vault: device key.
    pub device: Recipient<GetDeviceKey>,
    /// The vault: signatures.
    pub signer: Recipient<SignEntry>,
    /// The vault: this device's messages, sealed a batch at a time.
    pub sealer: Recipient<SealMessages>,
    /// The vault: this account's member key.
    pub member: Recipient<GetMemberKeys>,
    /// The vault: device announcements.
    pub announce: Recipient<AnnounceDevice>,
    /// The vault: chain shares sealed to us.
    pub open_share: Recipient<OpenChainShare>,
    /// The vault: epoch secrets sealed to us.
    pub open_epoch: Recipient<OpenEpochShare>,
    /// Told when entries are owed to members.
    pub owed: Recipient<EntriesOwed>,
    /// Told when the other account joins a contact group.
    pub joined: Recipient<ContactJoined>,
    /// The node's event channel.
    pub events: broadcast::Sender<NodeEvent>,
    /// What the node refused.
    pub refusals: Arc<crate::refusals::RefusalCounters>,
    /// How long a chain share waits for more newcomers (see `share`).
    pub share_delay: std::time::Duration,
    /// How long the courier waits for an acknowledgement before it pushes
    /// an entry again: this device's messages, pushed from memory as they
    /// are written, come due in the outbox only then.
    pub resend_after: std::time::Duration,
}

struct Loaded {
    /// A chain share with members learned lately is scheduled (`share`).
    share_scheduled: bool,
    /// The announcement loading wrote (a device joining), if it wrote one.
    announced: Option<EntryHash>,
    /// The epochs this member holds keys for.
    epochs: Epochs,
    kind: GroupKind,
    me: MemberPublic,
    /// Who is in which epoch, and who was removed.
    membership: Membership,
    /// Where this device writes: the current epoch, its key and chain there,
    /// and who it shared the chain with.
    writer: Writer,
    /// Heads and next Lamport clock of the message log.
    heads: Vec<EntryHash>,
    lamport: u64,
    /// Receiving chains as stored, of the devices read from lately (one per
    /// member device at most): a batch of messages needs no read of them.
    /// Only receiving writes them; a batch that fails drops them all.
    chains: HashMap<VerifyKey, ReceiverChain>,
    /// Entries that came before a parent of theirs (see `orphans`).
    orphans: Orphans,
    /// Authors' keys, parsed once.
    authors: AuthorKeys,
    /// Positions of the entries stored lately (see `known`).
    known: Known,
}

/// This device as a writer in the group's current epoch.
#[derive(Clone)]
struct Writer {
    epoch: EpochId,
    chain: SenderChain,
    /// Sending positions reserved ahead of the chain (see `reserve`).
    reservation: Reservation,
    /// Members this device's chain in this epoch is shared with.
    shared_with: HashSet<VerifyKey>,
}

/// The logs of one group.
pub struct GroupLog {
    group: GroupId,
    deps: GroupLogDeps,
    /// The members entries are owed to.
    members: Vec<Peer>,
    state: Option<Loaded>,
    /// Chain shares that failed in a row.
    share_failures: u32,
    /// Whether another node holds this device's joining announcement.
    joining: Joining,
    /// Messages waiting to be sealed and stored in the next batch.
    appends: append::Appends,
}

/// This device's announcement written on joining, until another node (a
/// member or a replication node) acknowledges holding it.
#[derive(Default)]
struct Joining {
    announcement: Option<EntryHash>,
    held: bool,
    waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl core::fmt::Debug for GroupLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupLog").finish_non_exhaustive()
    }
}

impl GroupLog {
    /// Starts the log of `group` under a supervisor; entries are owed to `members`.
    pub(crate) fn start(group: GroupId, deps: GroupLogDeps, members: Vec<Peer>) -> Addr<Self> {
        Supervisor::start(move |_| Self {
            group,
            deps,
            members,
            state: None,
            share_failures: 0,
            joining: Joining::default(),
            appends: append::Appends::default(),
        })
    }
}

/// The other members' public keys in a contact group: the other account's.
pub(crate) async fn contact_recipients(store: &Store, group: &GroupId) -> Result<Vec<MemberPublic>> {
    Ok(store
        .contacts(None)
        .await?
        .into_iter()
        .filter(|c| c.group.as_ref() == Some(group))
        .map(|c| MemberPublic { signing: c.account.signing, agreement: c.account.agreement })
        .collect())
}

/// Rebuilds the in-memory view from storage: epochs, members, this
/// device's writer (announced in the current epoch if it was not yet),
/// heads and the next Lamport clock.
async fn load(deps: GroupLogDeps, group: GroupId, members: Vec<Peer>) -> Result<Loaded> {
    let store = &deps.store;
    let record = store.group(&group).await?.ok_or(Error::UnknownGroup)?;
    let mut epochs = Epochs::new(GroupKeys::derive(&record.secret), &store.epochs(&group).await?);
    let me = deps.member.send(GetMemberKeys { group }).await.map_err(mailbox("identity-vault"))??;
    let mut membership = Membership::default();
    let metadata = store.entries_after(&group, EntryKind::Metadata, None, MAX_METADATA).await?;
    let events: Vec<(MetadataEvent, &veil_storage::EntryRecord)> =
        metadata.iter().filter_map(|e| Some((MetadataEvent::decode(e.payload.as_deref()?).ok()?, e))).collect();
    for (event, e) in &events {
        match event {
            MetadataEvent::MemberJoined(j) => {
                membership.joined(j);
            }
            MetadataEvent::MemberRemoved(r) => {
                membership.removed(r, e.lamport, e.hash);
                // A removal stored just before a crash may not have had its
                // epoch kept yet.
                if let Some(share) = r.shares.iter().find(|s| s.recipient == me.signing)
                    && !epochs.holds(&r.epoch)
                    && let Ok(secret) = open_epoch(&deps, group, &epochs, r, &share.sealed_secret).await?
                {
                    store.add_epoch(&group, &secret).await?;
                    epochs.add(&secret);
                }
            }
        }
    }
    let epoch = epochs.current(&membership);
    let device = deps.device.send(GetDeviceKey { group, epoch }).await.map_err(mailbox("identity-vault"))??;
    let (mut writer, announced) = if membership.device(&device).is_some() {
        let shared_with = events
            .iter()
            .filter_map(|(event, _)| match event {
                MetadataEvent::MemberJoined(j) if j.device == device => {
                    Some(j.chain_shares.iter().map(|s| s.recipient))
                }
                _ => None,
            })
            .flatten()
            .collect();
        let chain = match store.sender_chain(&group).await? {
            // Past every position that may have been sent before an
            // unclean stop undid its commit.
            Some(record) => {
                let mut chain = SenderChain::from_state(record.state.clone());
                chain.skip_to(record.resume_at())?;
                chain
            }
            None => return Err(Error::Refused("this device announced itself but its chain is lost")),
        };
        let reservation = Reservation::at(chain.state().next);
        (Writer { epoch, chain, reservation, shared_with }, None)
    } else {
        let recipients = match record.kind {
            GroupKind::Contact => contact_recipients(store, &group).await?,
            GroupKind::MultiMember => others(&membership, &epoch, &me),
        };
        enter_epoch(&deps, group, &epochs, epoch, &members, recipients, &mut membership, &me).await?
    };
    // Members learned before a stop and not shared with yet: nothing was
    // written since they were learned (appends share first), so the
    // chain's position now is the one they are owed.
    let owed = share::newcomers(record.kind, &membership, &writer, &me);
    if !owed.is_empty() {
        let keys = epochs.keys(&writer.epoch).ok_or(Error::Unavailable(NAME))?;
        let (joined, _) = announce(&deps, group, writer.epoch, keys, &writer.chain, &members, owed).await?;
        share::record_share(&mut membership, &mut writer, &joined);
    }
    let heads = store.heads(&group, EntryKind::Message).await?;
    let lamport = max_lamport(store, &group, &heads).await?;
    Ok(Loaded {
        share_scheduled: false,
        announced,
        epochs,
        kind: record.kind,
        me,
        membership,
        writer,
        heads,
        lamport,
        chains: HashMap::new(),
        orphans: Orphans::default(),
        authors: AuthorKeys::default(),
        known: Known::default(),
    })
}

/// The members of `epoch` other than `me`.
fn others(membership: &Membership, epoch: &EpochId, me: &MemberPublic) -> Vec<MemberPublic> {
    membership.members_of(epoch).into_iter().filter(|m| m != me).collect()
}

/// Opens this member's share of a removal's epoch secret; `Ok(Err(()))` if
/// it does not open or names another epoch.
async fn open_epoch(
    deps: &GroupLogDeps,
    group: GroupId,
    epochs: &Epochs,
    removal: &MemberRemoved,
    sealed: &[u8],
) -> Result<std::result::Result<EpochSecret, ()>> {
    let opened = deps
        .open_epoch
        .send(OpenEpochShare { group, sealed: sealed.to_vec() })
        .await
        .map_err(mailbox("identity-vault"))?;
    Ok(match opened {
        Ok(secret) if epochs.root().epoch(&secret).0 == removal.epoch => Ok(secret),
        _ => Err(()),
    })
}

/// Starts writing in `epoch`: a fresh sending chain, announced (with this
/// epoch's device key) and shared with `recipients`; returns the writer and
/// the announcement's hash. Unless this member was removed: then it writes
/// nowhere (no announcement), and the old writer is returned unchanged by
/// the caller.
#[allow(clippy::too_many_arguments)]
async fn enter_epoch(
    deps: &GroupLogDeps,
    group: GroupId,
    epochs: &Epochs,
    epoch: EpochId,
    members: &[Peer],
    recipients: Vec<MemberPublic>,
    membership: &mut Membership,
    me: &MemberPublic,
) -> Result<(Writer, Option<EntryHash>)> {
    let keys = epochs.keys(&epoch).ok_or(Error::Refused("no keys for the current epoch"))?;
    let chain = SenderChain::generate(&mut OsEntropy)?;
    if membership.is_removed(&me.signing) {
        return Ok((Writer { epoch, chain, reservation: Reservation::at(0), shared_with: HashSet::new() }, None));
    }
    deps.store.save_sender_chain(&group, chain.state()).await?;
    let (joined, hash) = announce(deps, group, epoch, keys, &chain, members, recipients).await?;
    membership.joined(&joined);
    let shared_with = joined.chain_shares.iter().map(|s| s.recipient).collect();
    Ok((Writer { epoch, chain, reservation: Reservation::at(0), shared_with }, Some(hash)))
}

/// The highest Lamport clock among the stored `heads` of `group` (one
/// query, no entry decoded: a busy group has many heads).
async fn max_lamport(store: &Store, group: &GroupId, heads: &[EntryHash]) -> Result<u64> {
    Ok(store.positions(group, heads).await?.into_iter().map(|(_, _, lamport)| lamport).max().unwrap_or(0))
}

/// Writes this device's announcement, with its chain (at its current
/// position) sealed to `recipients`, into the metadata log, owed to
/// `members`; returns it with its entry's hash.
async fn announce(
    deps: &GroupLogDeps,
    group: GroupId,
    epoch: EpochId,
    keys: &GroupKeys,
    chain: &SenderChain,
    members: &[Peer],
    recipients: Vec<MemberPublic>,
) -> Result<(MemberJoined, EntryHash)> {
    // In a contact group this account introduces itself by name (inside
    // the sealed entry: only the other account reads it).
    let contact_group = deps.store.group(&group).await?.is_some_and(|g| g.kind == GroupKind::Contact);
    let display_name = if contact_group { crate::contacts::display_name(&deps.store).await? } else { None };
    let joined = deps
        .announce
        .send(AnnounceDevice { group, epoch, chain: chain.state().clone(), recipients, display_name })
        .await
        .map_err(mailbox("identity-vault"))??;
    let (hash, _) =
        write_metadata(deps, group, epoch, keys, members, &MetadataEvent::MemberJoined(joined.clone())).await?;
    Ok((joined, hash))
}

/// Writes a metadata entry in `epoch`, owed to `members`; returns its hash
/// and Lamport clock.
async fn write_metadata(
    deps: &GroupLogDeps,
    group: GroupId,
    epoch: EpochId,
    keys: &GroupKeys,
    members: &[Peer],
    event: &MetadataEvent,
) -> Result<(EntryHash, u64)> {
    let store = &deps.store;
    let payload = event.encode();
    let heads = store.heads(&group, EntryKind::Metadata).await?;
    let lamport = max_lamport(store, &group, &heads).await? + 1;
    let links = Links { kind: EntryKind::Metadata, lamport, parents: parents_of(&heads) };
    let author = deps.device.send(GetDeviceKey { group, epoch }).await.map_err(mailbox("identity-vault"))??;
    let entry = seal(deps, group, epoch, keys, &author, &links, BodyKey::Metadata, &payload).await?;
    store
        .append(NewEntry {
            group,
            entry: &entry,
            links: &links,
            author: Some(author),
            payload: Some(&payload),
            ratchet: None,
            outbox: members,
        })
        .await?;
    let hash = entry.hash();
    tell_owed(deps, group, vec![hash], Vec::new()).await;
    Ok((hash, links.lamport))
}

/// Tells the courier new entries are owed, waiting for room in its mailbox
/// (a full mailbox must not leave them to the next tick); `pushed`: see
/// [`EntriesOwed`].
async fn tell_owed(deps: &GroupLogDeps, group: GroupId, fresh: Vec<EntryHash>, pushed: Vec<SealedEntry>) {
    if deps.owed.send(EntriesOwed { group, fresh, pushed }).await.is_err() {
        tracing::debug!(actor = NAME, "the courier is not running; owed entries wait for the next start");
    }
}

/// Seals an entry in `epoch` by `author` (this device's key there), signed
/// through the vault.
#[allow(clippy::too_many_arguments)]
async fn seal(
    deps: &GroupLogDeps,
    group: GroupId,
    epoch: EpochId,
    keys: &GroupKeys,
    author: &VerifyKey,
    links: &Links,
    body: BodyKey<'_>,
    payload: &[u8],
) -> Result<SealedEntry> {
    let pending = begin_entry(keys, author, links, body, payload, &mut ThreadEntropy)?;
    let signed = deps.signer.send(SignEntry { group, epoch, pending }).await.map_err(mailbox("identity-vault"))??;
    Ok(signed.finish(keys, &mut ThreadEntropy)?)
}

impl Actor for GroupLog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        load_state(
            NAME,
            self,
            ctx,
            Rc::new(|act: &Self| Box::pin(load(act.deps.clone(), act.group, act.members.clone()))),
            Rc::new(|act: &mut Self, loaded: Loaded| {
                act.joining.announcement = act.joining.announcement.or(loaded.announced);
                act.state = Some(loaded);
            }),
            0,
        );
    }
}

impl Supervised for GroupLog {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; reloading the group from storage");
        self.state = None;
        self.appends.restarting();
    }
}

/// What happened to one received entry.
enum Received {
    /// Stored now.
    Stored { lamport: u64, joined: Option<Box<MemberJoined>> },
    /// Stored before.
    Known,
    /// Refused for good (forged, undecryptable, not a member's).
    Refused(&'static str),
    /// Waiting for this parent; kept in memory until it is stored.
    Orphan(EntryHash),
    /// Waiting for what has not arrived (its author's announcement, earlier
    /// messages of its chain); not stored.
    Later(&'static str),
    /// A message, read (or not readable by us) and queued: the batch's
    /// messages are stored together.
    Queued,
}

/// A message of the batch being received, stored with the others at the end.
struct QueuedMessage {
    entry: SealedEntry,
    links: Links,
    author: VerifyKey,
    payload: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// Past its author's chain as stored, so certainly not stored yet.
    unseen: bool,
}

/// A snapshot of what receiving needs, taken from the actor.
struct Receiver {
    group: GroupId,
    deps: GroupLogDeps,
    epochs: Epochs,
    kind: GroupKind,
    me: MemberPublic,
    membership: Membership,
    writer: Writer,
    members: Vec<Peer>,
    /// Log and Lamport clock of stored entries: those stored lately, those
    /// the batch names as parents, and the batch's own as they are taken.
    positions: Known,
    /// Receiving chains as stored, then as this batch's messages move them.
    chains: HashMap<VerifyKey, ReceiverChain>,
    /// The message log's heads, as this batch's messages move them.
    heads: Vec<EntryHash>,
    /// Entries waiting for a parent.
    orphans: Orphans,
    /// Authors' keys, parsed once.
    authors: AuthorKeys,
    /// This batch's messages, stored together.
    queued: Vec<QueuedMessage>,
    /// The last of this batch's commits (a sync covers the earlier ones
    /// too), durable once synced: messages are
    /// reported received at once, acknowledged only after the sync (by the
    /// courier, see `Receipt`).
    unsynced: Option<Unsynced>,
}

impl Receiver {
    /// After a batch: if the current epoch changed, starts writing in it
    /// (sharing the new chain with the epoch's members at once).
    async fn follow_epoch(&mut self) -> Result<()> {
        if self.kind != GroupKind::MultiMember || self.membership.is_removed(&self.me.signing) {
            return Ok(());
        }
        let current = self.epochs.current(&self.membership);
        if current != self.writer.epoch {
            let recipients = others(&self.membership, &current, &self.me);
            (self.writer, _) = enter_epoch(
                &self.deps,
                self.group,
                &self.epochs,
                current,
                &self.members,
                recipients,
                &mut self.membership,
                &self.me,
            )
            .await?;
        }
        Ok(())
    }

    /// A message at or past its author's chain position as held: storing
    /// it would have moved the chain past it, so it is not stored yet.
    fn is_new(&self, opened: &OpenedEntry) -> bool {
        opened.links.kind == EntryKind::Message
            && self.chains.get(&opened.author).is_some_and(|chain| opened.counter >= chain.state().next)
    }

    async fn receive(&mut self, entry: &SealedEntry, epoch: EpochId, opened: &OpenedEntry) -> Result<Received> {
        let hash = entry.hash();
        if self.positions.contains_key(&hash) {
            return Ok(Received::Known);
        }
        // Parents first, all of them in the same log and earlier in it (so
        // no cycle can ever be stored).
        for parent in &opened.links.parents {
            match self.positions.get(parent) {
                None => return Ok(Received::Orphan(*parent)),
                Some((kind, lamport)) if *kind != opened.links.kind || *lamport >= opened.links.lamport => {
                    return Ok(Received::Refused("parents out of order"));
                }
                Some(_) => {}
            }
        }
        let received = match opened.links.kind {
            EntryKind::Metadata => self.receive_metadata(entry, epoch, opened).await?,
            EntryKind::Message => self.receive_message(entry, epoch, opened).await?,
        };
        if matches!(received, Received::Stored { .. } | Received::Queued) {
            self.positions.insert(hash, (opened.links.kind, opened.links.lamport));
        }
        Ok(received)
    }

    async fn receive_metadata(
        &mut self,
        entry: &SealedEntry,
        epoch: EpochId,
        opened: &OpenedEntry,
    ) -> Result<Received> {
        let keys = self.epochs.keys(&epoch).ok_or(Error::Unavailable(NAME))?;
        let Ok(payload) = opened.read_metadata(keys) else { return Ok(Received::Refused("unreadable")) };
        match MetadataEvent::decode(&payload) {
            Ok(MetadataEvent::MemberJoined(joined)) => {
                self.receive_joined(entry, epoch, opened, joined, &payload).await
            }
            Ok(MetadataEvent::MemberRemoved(removal)) => {
                self.receive_removal(entry, epoch, opened, removal, &payload).await
            }
            Err(_) => Ok(Received::Refused("unknown metadata event")),
        }
    }

    async fn receive_joined(
        &mut self,
        entry: &SealedEntry,
        epoch: EpochId,
        opened: &OpenedEntry,
        joined: MemberJoined,
        payload: &[u8],
    ) -> Result<Received> {
        if joined.device != opened.author
            || joined.member.verify_device(&self.group, &joined.device, &joined.device_cert).is_err()
        {
            return Ok(Received::Refused("device not certified by its member"));
        }
        if joined.epoch != epoch {
            return Ok(Received::Refused("announced outside its epoch"));
        }
        if self.membership.is_removed(&joined.member.signing) {
            return Ok(Received::Refused("its member was removed"));
        }
        if self.kind == GroupKind::Contact {
            // Only the two accounts can write in a 1:1 group; the group
            // secret already proves the author is one of them.
            let other = contact_recipients(&self.deps.store, &self.group).await?;
            if joined.member != self.me && !other.contains(&joined.member) {
                return Ok(Received::Refused("not a member of this contact group"));
            }
        }
        // Our share of the author's chain, if it gave us one and we have
        // none yet (a later share must not overwrite a chain in use).
        let mut ratchet_chain = None;
        let share = joined.chain_shares.iter().find(|s| s.recipient == self.me.signing);
        if let Some(share) = share
            && !self.chains.contains_key(&joined.device)
            && self.deps.store.receiver_chain(&self.group, &joined.device).await?.is_none()
        {
            let opened_share = self
                .deps
                .open_share
                .send(OpenChainShare { group: self.group, sealed: share.sealed_state.clone() })
                .await
                .map_err(mailbox("identity-vault"))?;
            match opened_share {
                Ok((device, state)) if device == joined.device => {
                    ratchet_chain = Some(ReceiverChain::new(state, DEFAULT_WINDOW)?);
                }
                _ => return Ok(Received::Refused("bad chain share")),
            }
        }
        let ratchet = ratchet_chain.as_ref().map(|chain| RatchetUpdate::Receiver { device: joined.device, chain });
        let stored = self.store(entry, opened, Some(payload), ratchet).await?;
        if self.membership.joined(&joined) && joined.member != self.me {
            let _ = self.deps.events.send(NodeEvent::MemberJoined { group: self.group, member: joined.member });
        }
        if let Some(chain) = ratchet_chain {
            self.reveal(joined.device, chain).await?;
        }
        Ok(if stored {
            Received::Stored { lamport: opened.links.lamport, joined: Some(Box::new(joined)) }
        } else {
            Received::Known
        })
    }

    /// A removal by a member device (written in that device's epoch) starts
    /// a new epoch; its secret is kept if it was sealed to this member.
    async fn receive_removal(
        &mut self,
        entry: &SealedEntry,
        epoch: EpochId,
        opened: &OpenedEntry,
        removal: MemberRemoved,
        payload: &[u8],
    ) -> Result<Received> {
        if self.kind != GroupKind::MultiMember {
            return Ok(Received::Refused("contact groups have no removals"));
        }
        let Some((author, author_epoch)) = self.membership.device(&opened.author).copied() else {
            return Ok(Received::Later("its author's announcement"));
        };
        if author_epoch != epoch {
            return Ok(Received::Refused("written outside its device's epoch"));
        }
        if self.membership.is_removed(&author.signing) {
            return Ok(Received::Refused("its author was removed"));
        }
        let mut secret = None;
        if let Some(share) = removal.shares.iter().find(|s| s.recipient == self.me.signing)
            && !self.epochs.holds(&removal.epoch)
        {
            match open_epoch(&self.deps, self.group, &self.epochs, &removal, &share.sealed_secret).await? {
                Ok(s) => secret = Some(s),
                Err(()) => return Ok(Received::Refused("bad epoch share")),
            }
        }
        // The entry first: if the node stops in between, loading opens
        // the share again.
        let stored = self.store(entry, opened, Some(payload), None).await?;
        if let Some(secret) = secret {
            self.deps.store.add_epoch(&self.group, &secret).await?;
            self.epochs.add(&secret);
        }
        self.membership.removed(&removal, opened.links.lamport, opened.hash);
        let _ = self.deps.events.send(NodeEvent::MemberRemoved { group: self.group, member: removal.member });
        Ok(if stored { Received::Stored { lamport: opened.links.lamport, joined: None } } else { Received::Known })
    }

    /// Opens what `device` wrote before its chain reached us and that
    /// `chain` can read (from its shared position on); older entries stay
    /// unread for good.
    async fn reveal(&mut self, device: VerifyKey, mut chain: ReceiverChain) -> Result<()> {
        for record in self.deps.store.unread(&self.group, &device, MAX_REVEAL).await? {
            let Ok((_, opened)) = self.epochs.open(&record.sealed, &mut self.authors) else { continue };
            let Ok(payload) = opened.read_message(&mut chain) else { continue };
            if self.deps.store.reveal(&self.group, &record.hash, &payload, &device, &chain).await? {
                let _ = self.deps.events.send(NodeEvent::MessageReceived { group: self.group, hash: record.hash });
            }
        }
        Ok(())
    }

    /// Stores a received entry with its decrypted payload (if readable) and
    /// chain state; `false` if it was already there.
    async fn store(
        &self,
        entry: &SealedEntry,
        opened: &OpenedEntry,
        payload: Option<&[u8]>,
        ratchet: Option<RatchetUpdate<'_>>,
    ) -> Result<bool> {
        let outcome = self
            .deps
            .store
            .append(NewEntry {
                group: self.group,
                entry,
                links: &opened.links,
                author: Some(opened.author),
                payload,
                ratchet,
                outbox: &[],
            })
            .await?;
        Ok(outcome == Appended::Stored)
    }

    /// A message from a member device is kept even when it cannot be read
    /// (no chain from its author yet, or written before ours began), so
    /// the log stays whole; it is opened if its chain arrives later.
    async fn receive_message(&mut self, entry: &SealedEntry, epoch: EpochId, opened: &OpenedEntry) -> Result<Received> {
        let author = opened.author;
        match self.membership.device(&author) {
            None => return Ok(Received::Later("its author's announcement")),
            Some((_, device_epoch)) if *device_epoch != epoch => {
                return Ok(Received::Refused("written outside its device's epoch"));
            }
            Some(_) => {}
        }
        if !self.chains.contains_key(&author)
            && let Some(chain) = self.deps.store.receiver_chain(&self.group, &author).await?
        {
            self.chains.insert(author, chain);
        }
        let unseen = self.is_new(opened);
        let payload = match self.chains.get_mut(&author) {
            None => None,
            Some(chain) => match opened.read_message(chain) {
                Ok(payload) => Some(payload),
                Err(veil_crypto::Error::Replay { .. }) => None,
                Err(veil_crypto::Error::TooFarAhead { .. }) => return Ok(Received::Later("earlier messages")),
                Err(_) => return Ok(Received::Refused("undecryptable")),
            },
        };
        self.queued.push(QueuedMessage { entry: entry.clone(), links: opened.links.clone(), author, payload, unseen });
        Ok(Received::Queued)
    }

    /// Stores the queued messages, with the chains they moved, in one
    /// transaction; returns them with what became of each.
    async fn store_queued(&mut self) -> Result<Vec<(QueuedMessage, Appended)>> {
        let queued = std::mem::take(&mut self.queued);
        if queued.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<NewEntry<'_>> = queued
            .iter()
            .map(|q| NewEntry {
                group: self.group,
                entry: &q.entry,
                links: &q.links,
                author: Some(q.author),
                payload: q.payload.as_deref().map(|p| &p[..]),
                // The last update of each chain wins: its state after the batch.
                ratchet: q.payload.as_ref().and_then(|_| {
                    self.chains.get(&q.author).map(|chain| RatchetUpdate::Receiver { device: q.author, chain })
                }),
                outbox: &[],
            })
            .collect();
        // Messages past their chains need no lookup of what is stored: one
        // round trip to SQLite instead of two, on every message received
        // in order.
        let (outcomes, unsynced) = match queued.iter().all(|q| q.unseen) {
            true => self.deps.store.append_unseen_deferred(&batch).await?,
            false => self.deps.store.append_batch_deferred(&batch).await?,
        };
        self.unsynced = Some(unsynced);
        drop(batch);
        Ok(queued.into_iter().zip(outcomes).collect())
    }
}

/// What a batch of received entries changed.
struct BatchOutcome {
    receipt: Receipt,
    /// The message log's heads now.
    heads: Vec<EntryHash>,
    /// The largest Lamport clock stored.
    lamport: u64,
    /// Epochs, members and this device's writer now.
    epochs: Epochs,
    membership: Membership,
    writer: Writer,
    /// The receiving chains, as stored now.
    chains: HashMap<VerifyKey, ReceiverChain>,
    /// Entries waiting for a parent.
    orphans: Orphans,
    /// Authors' keys, parsed once.
    authors: AuthorKeys,
    /// Positions of the entries stored lately.
    known: Known,
}

impl Handler<ReceiveEntries> for GroupLog {
    // Atomic: receiving moves ratchet state, so batches are handled in order.
    type Result = AtomicResponse<Self, Result<Receipt>>;

    fn handle(&mut self, msg: ReceiveEntries, ctx: &mut Self::Context) -> Self::Result {
        let snapshot = guarded(NAME, ctx, || {
            let s = self.state.as_mut().ok_or(Error::Unavailable(NAME))?;
            Ok(Receiver {
                group: self.group,
                deps: self.deps.clone(),
                epochs: s.epochs.clone(),
                kind: s.kind,
                me: s.me,
                membership: s.membership.clone(),
                writer: s.writer.clone(),
                members: self.members.clone(),
                positions: std::mem::take(&mut s.known),
                // Back in the state once the batch is stored.
                chains: std::mem::take(&mut s.chains),
                orphans: std::mem::take(&mut s.orphans),
                authors: std::mem::take(&mut s.authors),
                heads: s.heads.clone(),
                queued: Vec::new(),
                unsynced: None,
            })
        });
        let group = self.group;
        AtomicResponse::new(Box::pin(
            async move {
                let mut receiver = snapshot?;
                let refuse = |receiver: &Receiver, hash, reason| {
                    tracing::debug!(actor = NAME, reason, "refused an entry");
                    receiver.deps.refusals.entry();
                    let _ = receiver.deps.events.send(NodeEvent::EntryRefused { group, hash, reason });
                };
                let mut receipt = Receipt::default();
                let (mut lamport, mut joined_other, mut their_name) = (0, false, None);
                // Open everything first, then take announcements before
                // messages and parents before children, whatever the order
                // the batch came in.
                let removed = receiver.membership.is_removed(&receiver.me.signing);
                let mut round = Vec::with_capacity(msg.entries.len());
                let mut checks = Vec::with_capacity(msg.entries.len());
                for entry in msg.entries {
                    match receiver.epochs.open_unchecked(&entry, &mut receiver.authors) {
                        Ok((epoch, opened, check)) => {
                            round.push(Arrived { entry, epoch, opened });
                            checks.push(check);
                        }
                        Err(Unopened::Forged) => {
                            refuse(&receiver, entry.hash(), "forged entry");
                            receipt.ack.push(entry.hash());
                        }
                        // A removed member never gets the keys of later epochs.
                        Err(Unopened::NoKey) if removed => receipt.ack.push(entry.hash()),
                        Err(Unopened::NoKey) => {
                            let _ = receiver.deps.events.send(NodeEvent::EntryHeldBack {
                                group,
                                hash: entry.hash(),
                                reason: "the keys of its epoch",
                            });
                            receipt.waiting = true;
                        }
                    }
                }
                // Every signature at once (PROTOCOL.md §7); forgeries leave.
                for i in failed_signatures(&checks).into_iter().rev() {
                    let forged = round.remove(i).entry.hash();
                    refuse(&receiver, forged, "forged entry");
                    receipt.ack.push(forged);
                }
                // Entries whose parent this round stored are taken in the
                // next (see `orphans`).
                while !round.is_empty() {
                    round.sort_by_key(|o| {
                        (o.opened.links.kind != EntryKind::Metadata, o.opened.links.lamport, o.opened.hash)
                    });
                    // One query for what is stored of the round and its
                    // parents, unless they are known (see `known`).
                    let asked: Vec<EntryHash> = round
                        .iter()
                        .flat_map(|o| {
                            let own = (!receiver.is_new(&o.opened)).then_some(o.opened.hash);
                            o.opened.links.parents.iter().copied().chain(own)
                        })
                        .filter(|hash| !receiver.positions.contains_key(hash))
                        .collect();
                    if !asked.is_empty() {
                        for (hash, kind, l) in receiver.deps.store.positions(&group, &asked).await? {
                            receiver.positions.insert(hash, (kind, l));
                        }
                    }
                    let mut stored = Vec::new();
                    for item in round {
                        let (hash, metadata) = (item.opened.hash, item.opened.links.kind == EntryKind::Metadata);
                        match receiver.receive(&item.entry, item.epoch, &item.opened).await? {
                            Received::Stored { lamport: l, joined, .. } => {
                                if metadata {
                                    receipt.metadata.push(hash);
                                }
                                lamport = lamport.max(l);
                                if let Some(j) = joined.filter(|j| j.member != receiver.me) {
                                    joined_other = true;
                                    their_name = j.display_name.map(|n| n.as_str().to_owned());
                                }
                                receipt.ack.push(hash);
                                stored.push(hash);
                            }
                            Received::Known => {
                                if metadata {
                                    receipt.metadata.push(hash);
                                }
                                receipt.ack.push(hash);
                            }
                            Received::Refused(why) => {
                                refuse(&receiver, hash, why);
                                receipt.ack.push(hash);
                            }
                            Received::Orphan(parent) => {
                                receiver.orphans.hold(parent, item);
                                let reason = "a parent";
                                let _ = receiver.deps.events.send(NodeEvent::EntryHeldBack { group, hash, reason });
                                receipt.waiting = true;
                            }
                            Received::Later(reason) => {
                                let _ = receiver.deps.events.send(NodeEvent::EntryHeldBack { group, hash, reason });
                                receipt.waiting = true;
                            }
                            Received::Queued => {}
                        }
                    }
                    for (message, outcome) in receiver.store_queued().await? {
                        let hash = message.entry.hash();
                        if outcome == Appended::Stored {
                            // Parents are stored before their children (or
                            // the entry waits), so no missing parent is named.
                            receiver.heads = heads_after(&receiver.heads, &message.links.parents, hash);
                            lamport = lamport.max(message.links.lamport);
                            if message.payload.is_some() {
                                let _ = receiver.deps.events.send(NodeEvent::MessageReceived { group, hash });
                            }
                            stored.push(hash);
                        }
                        receipt.ack.push(hash);
                    }
                    round = receiver.orphans.unlocked(&stored);
                }
                if joined_other && receiver.kind == GroupKind::Contact {
                    // Waits for room in the contact book's mailbox (never
                    // dropped: the contact would stay "request sent"),
                    // without holding this batch up.
                    let joined = receiver.deps.joined.clone();
                    actix_rt::spawn(async move {
                        if joined.send(ContactJoined { group, display_name: their_name }).await.is_err() {
                            tracing::debug!(actor = NAME, "the contact book is not running");
                        }
                    });
                }
                receipt.unsynced = receiver.unsynced;
                receiver.follow_epoch().await?;
                Ok(BatchOutcome {
                    receipt,
                    heads: receiver.heads,
                    lamport,
                    epochs: receiver.epochs,
                    membership: receiver.membership,
                    writer: receiver.writer,
                    chains: receiver.chains,
                    orphans: receiver.orphans,
                    authors: receiver.authors,
                    known: receiver.positions,
                })
            }
            .into_actor(self)
            .map(|r: Result<BatchOutcome>, act, ctx| {
                let BatchOutcome {
                    receipt,
                    heads,
                    lamport,
                    epochs,
                    membership,
                    writer,
                    chains,
                    orphans,
                    authors,
                    mut known,
                } = r?;
                known.trim();
                if let Some(state) = act.state.as_mut() {
                    state.heads = heads;
                    state.lamport = state.lamport.max(lamport);
                    state.epochs = epochs;
                    state.membership = membership;
                    state.writer = writer;
                    state.chains = chains;
                    state.orphans = orphans;
                    state.authors = authors;
                    state.known = known;
                }
                // Members learned: share this device's chain with them
                // shortly, together with whoever else turns up meanwhile
                // (one announcement, not one per batch: joins come in
                // bursts), or before this device's next message.
                share::schedule(act, ctx);
                Ok(receipt)
            }),
        ))
    }
}

impl Handler<EntriesHeld> for GroupLog {
    type Result = ();

    fn handle(&mut self, msg: EntriesHeld, _: &mut Self::Context) {
        let joining = &mut self.joining;
        if !joining.held && joining.announcement.is_some_and(|a| msg.hashes.contains(&a)) {
            joining.held = true;
            for waiter in joining.waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Handler<AwaitAnnounced> for GroupLog {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, _: AwaitAnnounced, _: &mut Self::Context) -> Self::Result {
        let joining = &mut self.joining;
        if self.state.is_none() {
            return Box::pin(async { Err(Error::Unavailable(NAME)) });
        }
        if joining.announcement.is_none() || joining.held {
            return Box::pin(async { Ok(()) });
        }
        joining.waiters.retain(|w| !w.is_closed());
        if joining.waiters.len() >= MAX_JOIN_WAITERS {
            return Box::pin(async { Err(Error::Refused("too many callers wait for this join")) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        joining.waiters.push(tx);
        // Dropped if the log restarts: the caller may ask again.
        Box::pin(async move { rx.await.map_err(|_| Error::Restarting(NAME)) })
    }
}

impl Handler<GetMembers> for GroupLog {
    type Result = Result<Vec<MemberPublic>>;

    fn handle(&mut self, _: GetMembers, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let state = self.state.as_ref().ok_or(Error::Unavailable(NAME))?;
            Ok(state.membership.members_of(&state.epochs.current(&state.membership)))
        })
    }
}

impl Handler<RemoveMember> for GroupLog {
    // Atomic: the removal and the new epoch's announcement are written
    // before anything else touches the log.
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: RemoveMember, ctx: &mut Self::Context) -> Self::Result {
        let (group, deps, members) = (self.group, self.deps.clone(), self.members.clone());
        let prepared = guarded(NAME, ctx, || {
            let s = self.state.as_ref().ok_or(Error::Unavailable(NAME))?;
            if s.kind != GroupKind::MultiMember {
                return Err(Error::Refused("only multi-member groups remove members"));
            }
            if s.membership.is_removed(&s.me.signing) {
                return Err(Error::Refused("no longer a member of this group"));
            }
            if !s.membership.knows(&msg.member) || s.membership.is_removed(&msg.member) {
                return Err(Error::Refused("not a member of this group"));
            }
            Ok((s.epochs.clone(), s.membership.clone(), s.writer.clone(), s.me))
        });
        AtomicResponse::new(Box::pin(
            async move {
                let (mut epochs, mut membership, writer, me) = prepared?;
                let keys = epochs.keys(&writer.epoch).ok_or(Error::Unavailable(NAME))?.clone();
                // The remaining members, this account included unless it
                // leaves (its other devices need the secret too).
                let remaining: Vec<MemberPublic> =
                    membership.members_of(&writer.epoch).into_iter().filter(|m| m.signing != msg.member).collect();
                let secret = EpochSecret::generate(&mut OsEntropy)?;
                let (epoch, _) = epochs.root().epoch(&secret);
                let shares = remaining
                    .iter()
                    .map(|m| {
                        Ok(EpochShare {
                            recipient: m.signing,
                            sealed_secret: seal_epoch_secret(&group, &secret, &m.agreement, &mut OsEntropy)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let removal = MemberRemoved { member: msg.member, epoch, shares };
                let event = MetadataEvent::MemberRemoved(removal.clone());
                let (hash, lamport) = write_metadata(&deps, group, writer.epoch, &keys, &members, &event).await?;
                membership.removed(&removal, lamport, hash);
                let _ = deps.events.send(NodeEvent::MemberRemoved { group, member: msg.member });
                if msg.member == me.signing {
                    // Leaving: the new epoch's secret is dropped here.
                    return Ok((epochs, membership, writer));
                }
                deps.store.add_epoch(&group, &secret).await?;
                epochs.add(&secret);
                let recipients: Vec<MemberPublic> = remaining.into_iter().filter(|m| *m != me).collect();
                let (writer, _) =
                    enter_epoch(&deps, group, &epochs, epoch, &members, recipients, &mut membership, &me).await?;
                Ok((epochs, membership, writer))
            }
            .into_actor(self)
            .map(|r: Result<(Epochs, Membership, Writer)>, act, _| {
                let (epochs, membership, writer) = r?;
                if let Some(state) = act.state.as_mut() {
                    state.epochs = epochs;
                    state.membership = membership;
                    state.writer = writer;
                }
                Ok(())
            }),
        ))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for GroupLog {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || panic!("injected fault"))
    }
}
