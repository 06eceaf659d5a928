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
    Actor, Addr, AtomicResponse, Context, Handler, Recipient, ResponseFuture, Supervised, Supervisor, WrapFuture,
};
use tokio::sync::broadcast;
use veil_crypto::{
    EpochId, EpochSecret, GroupId, GroupKeys, MemberPublic, OsEntropy, ReceiverChain, SenderChain, ThreadEntropy,
    VerifyKey,
    envelope::{AuthorKeys, BodyKey, EntryHash, EntryKind, Position, SealedEntry, begin_entry},
    epoch::{seal_epoch_secret, seal_epoch_secret_to_device},
};
use veil_proto::metadata::{EpochRenewed, EpochShare, MemberJoined, MemberRemoved, MetadataEvent};
use veil_storage::{Addressee, Appended, GroupKind, NewEntry, RatchetUpdate, Store, Unsynced};

use crate::time::Time;
use crate::{
    Error, NodeEvent, Result,
    heads::parents_of,
    membership::{EpochStart, Epochs, Membership, SealedShare},
    messages::{
        contacts::ContactJoined,
        courier::EntriesOwed,
        group::{AwaitAnnounced, EntriesHeld, GetMembers, Receipt, ReceiveEntries, RemoveMember, RenewEpoch},
        vault::{AnnounceDevice, GetDeviceKey, GetMemberKeys, OpenChainShare, OpenEpochShare, SealMessages, SignEntry},
    },
    supervision::{guarded, load_state, mailbox},
};

mod append;
mod history;
mod keyless;
mod known;
mod load;
mod members;
mod orphans;
mod receive;
mod reception;
mod reserve;
mod share;

use known::Known;
use load::*;
pub(crate) use members::remaining_devices;
use orphans::Orphans;
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
    /// The node's shared store; a group log writes only its own group's rows.
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
    /// Where its timers read the time.
    pub time: Time,
    /// Another device of the account removed this one: what no held epoch
    /// opens is acknowledged and dropped, as at a removed member.
    pub this_device_removed: Arc<std::sync::atomic::AtomicBool>,
}

/// What a device that another device of its account removed is told when
/// it would write: it writes nothing more (its stock software, that is; it
/// still holds the account's keys).
const REMOVED: Error = Error::Refused("this device was removed from its account");

impl GroupLogDeps {
    /// Whether another device of the account removed this one.
    fn removed(&self) -> bool {
        self.this_device_removed.load(std::sync::atomic::Ordering::Relaxed)
    }
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

/// The actor that owns one group's two logs (metadata and messages): it appends to them, receives into them and reads
/// them back.
pub struct GroupLog {
    group: GroupId,
    deps: GroupLogDeps,
    /// The members entries are owed to.
    members: Vec<Addressee>,
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
    pub(crate) fn start(group: GroupId, deps: GroupLogDeps, members: Vec<Addressee>) -> Addr<Self> {
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

/// Writes this device's announcement, with its chain (at its current
/// position) sealed to `recipients`, into the metadata log, owed to
/// `members`; returns it with its entry's hash.
async fn announce(
    deps: &GroupLogDeps,
    group: GroupId,
    epoch: EpochId,
    keys: &GroupKeys,
    chain: &SenderChain,
    members: &[Addressee],
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
    members: &[Addressee],
    event: &MetadataEvent,
) -> Result<(EntryHash, u64)> {
    if deps.removed() {
        return Err(REMOVED);
    }
    let store = &deps.store;
    let payload = event.encode();
    let heads = store.heads(&group, EntryKind::Metadata).await?;
    let lamport = max_lamport(store, &group, &heads).await? + 1;
    let position = Position { kind: EntryKind::Metadata, lamport, parents: parents_of(&heads) };
    let author = deps.device.send(GetDeviceKey { group, epoch }).await.map_err(mailbox("identity-vault"))??;
    let entry = seal(deps, group, epoch, keys, &author, &position, BodyKey::Metadata, &payload).await?;
    store
        .append(NewEntry {
            group,
            entry: &entry,
            position: &position,
            author: Some(author),
            payload: Some(&payload),
            ratchet: None,
            outbox: members,
        })
        .await?;
    let hash = entry.hash();
    tell_owed(deps, group, vec![hash], Vec::new()).await;
    Ok((hash, position.lamport))
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
    position: &Position,
    body: BodyKey<'_>,
    payload: &[u8],
) -> Result<SealedEntry> {
    let pending = begin_entry(keys, author, position, body, payload, &mut ThreadEntropy)?;
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
            self.deps.time.clone(),
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

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for GroupLog {
    type Result = Result<()>;

    fn handle(&mut self, _: crate::messages::InjectPanic, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || panic!("injected fault"))
    }
}
