//! Keeping the devices of one account in step (issue 22; PROTOCOL.md §14.8).
//!
//! The account's own group is a multi-member group whose secret every
//! device derives from the alias key: only the account's devices are in it,
//! they meet at its points like members, and read each other's messages
//! (each device shares its chain with its own member). It exists once the
//! account has linked a device (`ensure`); a lone device never announces it.
//!
//! Each change a device makes to contacts, the contact link or its groups
//! is written there as an [`AccountEvent`]; each device reads the others'
//! events in the log's order and does the same (`ApplyContact`,
//! `AdoptLink`, groups added through the vault and the courier). What it
//! does because of them it reports `synced`, and those are not written
//! again, so nothing echoes. Which events were read is kept in the store
//! (`settings`: [`CURSOR`]), so a restart reads on from there.

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, Recipient, Supervised, WrapFuture};
use tokio::sync::broadcast;
use veil_crypto::{GroupId, GroupKeys, VerifyKey, envelope::EntryHash};
use veil_proto::account::{AccountEvent, ContactChangeKind};
use veil_storage::{ContactState, GroupKind, LinkLimits, Store};

use crate::{
    Error, NodeEvent, Result,
    messages::{
        contacts::{AdoptLink, ApplyContact},
        courier::StartGroup,
        group::{AppendMessage, GetHistory, HistoryEntry, Page},
        registry::LogOf,
        vault::{AddGroup, GetAccountGroupSecret, GetDeviceKey, RecordDevice},
    },
    supervision::{GuardedMap, GuardedTimers, mailbox},
};

const NAME: &str = "account-sync";

/// The setting holding the position (Lamport clock ‖ hash) of the last
/// event read from the account's group.
pub(crate) const CURSOR: &str = "account-sync-cursor";

/// Events read per history page.
const PAGE: u32 = 256;

/// What the account's sync needs from the rest of the node.
pub(crate) struct AccountSyncDeps {
    pub(crate) store: Arc<Store>,
    pub(crate) group: GroupId,
    pub(crate) logs: Recipient<LogOf>,
    pub(crate) apply_contact: Recipient<ApplyContact>,
    pub(crate) adopt_link: Recipient<AdoptLink>,
    pub(crate) add_group: Recipient<AddGroup>,
    pub(crate) device: Recipient<GetDeviceKey>,
    /// The vault lists the account's devices.
    pub(crate) record_device: Recipient<RecordDevice>,
    pub(crate) start_group: Recipient<StartGroup>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) time: crate::time::Time,
    /// Set when another device removes this one (the group logs read it).
    pub(crate) this_device_removed: Arc<std::sync::atomic::AtomicBool>,
}

/// How often the account's group is read besides when a message arrives
/// (what arrived while its log was not running yet, a read that failed).
const READ_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps this device in step with the account's others.
pub(crate) struct AccountSync {
    deps: Arc<AccountSyncDeps>,
    /// A read of the account's log is under way; `again`: read once more after it.
    reading: bool,
    again: bool,
}

impl core::fmt::Debug for AccountSync {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AccountSync").field("reading", &self.reading).finish_non_exhaustive()
    }
}

/// What the sync hears of the node's events.
#[derive(Debug, Message)]
#[rtype(result = "()")]
enum Heard {
    /// A change made here by the user (or a contact): tell the other devices.
    Tell(Box<AccountEvent>),
    /// The account's group may hold news: read it.
    Read,
}

/// Command (from the facade): tell the account's other devices `event`
/// now, and answer once it is written.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub(crate) struct TellNow(pub(crate) AccountEvent);

/// Command (from the facade): a group was created or joined here by the user.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct GroupAdded(pub(crate) GroupId);

/// Creates the account's own group if this store lacks it, and starts it:
/// when the account links a device.
pub(crate) async fn ensure(
    store: &Store,
    secret: &Recipient<GetAccountGroupSecret>,
    add: &Recipient<AddGroup>,
    start: &Recipient<StartGroup>,
) -> Result<GroupId> {
    let secret = secret.send(GetAccountGroupSecret).await.map_err(mailbox("identity-vault"))??;
    let group = GroupKeys::derive(&secret).id;
    if store.group(&group).await?.is_none() {
        let added = AddGroup { kind: GroupKind::MultiMember, name: None, secret, epochs: Vec::new() };
        add.send(added).await.map_err(mailbox("identity-vault"))??;
    }
    start.send(StartGroup { group }).await.map_err(mailbox("courier"))??;
    Ok(group)
}

impl AccountSync {
    pub(crate) fn new(deps: AccountSyncDeps) -> Self {
        Self { deps: Arc::new(deps), reading: false, again: false }
    }

    /// Reads the account's log from the cursor on, applying what the other
    /// devices wrote; one read at a time.
    fn read(&mut self, ctx: &mut Context<Self>) {
        if self.reading {
            self.again = true;
            return;
        }
        self.reading = true;
        let deps = self.deps.clone();
        ctx.spawn(async move { read_news(&deps).await }.into_actor(self).guarded_map(NAME, |read, act, ctx| {
            act.reading = false;
            if let Err(e) = read {
                tracing::debug!(actor = NAME, error = %e, "reading the account's group failed; read again later");
            }
            if std::mem::take(&mut act.again) {
                act.read(ctx);
            }
        }));
    }
}

/// The account's group's log, if this device is in it.
async fn log_of(deps: &AccountSyncDeps) -> Result<Option<actix::Addr<crate::GroupLog>>> {
    if deps.store.group(&deps.group).await?.is_none() {
        return Ok(None);
    }
    deps.logs.send(LogOf { group: deps.group }).await.map_err(mailbox("group-registry"))
}

fn cursor_of(bytes: &[u8]) -> Option<(u64, EntryHash)> {
    let lamport = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let hash: [u8; 32] = bytes.get(8..40)?.try_into().ok()?;
    Some((lamport, EntryHash(hash)))
}

/// This device's keys in the account's group: one per epoch it holds.
async fn own_keys(deps: &AccountSyncDeps) -> Result<Vec<VerifyKey>> {
    let record = deps.store.group(&deps.group).await?.ok_or(Error::UnknownGroup)?;
    let root = GroupKeys::derive(&record.secret);
    let epochs = deps.store.epochs(&deps.group).await?;
    let ids = std::iter::once(veil_crypto::EpochId::ROOT).chain(epochs.iter().map(|s| root.epoch(s).0));
    let mut keys = Vec::new();
    for epoch in ids {
        let key =
            deps.device.send(GetDeviceKey { group: deps.group, epoch }).await.map_err(mailbox("identity-vault"))??;
        keys.push(key);
    }
    Ok(keys)
}

async fn read_news(deps: &AccountSyncDeps) -> Result<()> {
    let Some(log) = log_of(deps).await? else { return Ok(()) };
    let mine = own_keys(deps).await?;
    let mut after = deps.store.setting(CURSOR).await?.as_deref().and_then(cursor_of);
    loop {
        let page: Vec<HistoryEntry> =
            log.send(GetHistory { page: Page::After(after), limit: PAGE }).await.map_err(mailbox("group-log"))??;
        let Some(last) = page.last() else { return Ok(()) };
        let next = (last.lamport, last.hash);
        for entry in page.iter().filter(|e| e.author.is_none_or(|a| !mine.contains(&a))) {
            match AccountEvent::decode(&entry.payload) {
                Ok(event) => apply(deps, event).await?,
                Err(e) => tracing::debug!(actor = NAME, error = %e, "an account event does not decode; skipped"),
            }
        }
        let mut record = next.0.to_be_bytes().to_vec();
        record.extend_from_slice(&next.1.0);
        deps.store.set_setting(CURSOR, &record).await?;
        after = Some(next);
    }
}

/// Does here what another device did.
async fn apply(deps: &AccountSyncDeps, event: AccountEvent) -> Result<()> {
    match event {
        AccountEvent::Contact { account, change, display_name } => {
            let display_name = display_name.map(|n| n.as_str().to_owned());
            let msg = ApplyContact { account, change, display_name };
            deps.apply_contact.send(msg).await.map_err(mailbox("contact-book"))?
        }
        AccountEvent::Link { seed, enabled, expires_at, uses } => {
            let msg = AdoptLink { seed, enabled, limits: LinkLimits { expires_at, uses } };
            deps.adopt_link.send(msg).await.map_err(mailbox("contact-book"))?.map(|_| ())
        }
        AccountEvent::Group { secret, name, epochs } => {
            let group = GroupKeys::derive(&secret).id;
            if group == deps.group || deps.store.group(&group).await?.is_some() {
                return Ok(());
            }
            let added = AddGroup { kind: GroupKind::MultiMember, name, secret, epochs };
            deps.add_group.send(added).await.map_err(mailbox("identity-vault"))??;
            deps.start_group.send(StartGroup { group }).await.map_err(mailbox("courier"))??;
            let _ = deps.events.send(NodeEvent::GroupCreated { group });
            Ok(())
        }
        AccountEvent::Device { device, agreement } => {
            deps.record_device.send(RecordDevice { device, agreement }).await.map_err(mailbox("identity-vault"))?
        }
        AccountEvent::DeviceRemoved { device } => {
            let this_device = deps.store.devices().await?.iter().any(|d| d.is_this_device && d.device == device);
            let changed = if this_device {
                deps.this_device_removed.store(true, std::sync::atomic::Ordering::Relaxed);
                deps.store.mark_this_device_removed().await?
            } else {
                deps.store.remove_device(&device).await?
            };
            if changed {
                let _ = deps.events.send(NodeEvent::DeviceRemoved { device, this_device, synced: true });
            }
            Ok(())
        }
    }
}

/// Writes `event` in the account's group, if this device is in one.
async fn tell(deps: &AccountSyncDeps, event: AccountEvent) -> Result<()> {
    let Some(log) = log_of(deps).await? else { return Ok(()) };
    let payload = event.encode().to_vec();
    log.send(AppendMessage { payload }).await.map_err(mailbox("group-log"))??;
    Ok(())
}

/// The event telling the other devices of a contact change made here.
fn contact_event(account: veil_crypto::AccountPublic, state: Option<ContactState>) -> Option<AccountEvent> {
    let change = match state {
        Some(ContactState::Accepted) => ContactChangeKind::Accepted,
        Some(ContactState::Discarded) => ContactChangeKind::Discarded,
        Some(ContactState::Blocked) => ContactChangeKind::Blocked,
        None => ContactChangeKind::Removed,
        Some(_) => return None,
    };
    Some(AccountEvent::Contact { account, change, display_name: None })
}

impl Actor for AccountSync {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        // The node's events, filtered to what concerns the account's sync.
        let (mut events, me, group) = (self.deps.events.subscribe(), ctx.address(), self.deps.group);
        let store = self.deps.store.clone();
        actix::spawn(async move {
            loop {
                let heard = match events.recv().await {
                    Ok(NodeEvent::MessageReceived { group: g, .. }) if g == group => Heard::Read,
                    Ok(NodeEvent::ContactChanged { account, state, synced: false }) => {
                        match contact_event(account, state) {
                            Some(event) => Heard::Tell(Box::new(event)),
                            None => continue,
                        }
                    }
                    Ok(NodeEvent::LinkChanged { synced: false }) => match store.link().await {
                        Ok(Some(l)) => Heard::Tell(Box::new(AccountEvent::Link {
                            seed: l.seed,
                            enabled: l.enabled,
                            expires_at: l.limits.expires_at,
                            uses: l.limits.uses,
                        })),
                        _ => continue,
                    },
                    Ok(NodeEvent::DeviceLinked { device, .. }) => {
                        let listed = store.devices().await.ok().into_iter().flatten().find(|d| d.device == device);
                        match listed.and_then(|d| d.agreement) {
                            Some(agreement) => Heard::Tell(Box::new(AccountEvent::Device { device, agreement })),
                            None => continue,
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => Heard::Read,
                    Err(broadcast::error::RecvError::Closed) => return,
                    Ok(_) => continue,
                };
                if me.send(heard).await.is_err() {
                    return;
                }
            }
        });
        self.read(ctx);
        let time = self.deps.time.clone();
        ctx.guarded_interval(&time, NAME, READ_EVERY, |act, ctx| act.read(ctx));
    }
}

impl Supervised for AccountSync {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(actor = NAME, "restarting; the account's group is read again from the stored cursor");
        self.reading = false;
        self.again = false;
    }
}

impl Handler<Heard> for AccountSync {
    type Result = ();

    fn handle(&mut self, msg: Heard, ctx: &mut Self::Context) {
        match msg {
            Heard::Read => self.read(ctx),
            Heard::Tell(event) => {
                let deps = self.deps.clone();
                ctx.spawn(async move { tell(&deps, *event).await }.into_actor(self).map(|told, act, ctx| {
                    if let Err(e) = told {
                        tracing::warn!(actor = NAME, error = %e, "cannot tell the account's other devices");
                    }
                    // The cursor moves past what this device wrote: a store
                    // copied for a new device then starts after it.
                    act.read(ctx);
                }));
            }
        }
    }
}

impl Handler<TellNow> for AccountSync {
    type Result = actix::ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, TellNow(event): TellNow, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move { tell(&deps, event).await }.into_actor(self).map(|told, act, ctx| {
            act.read(ctx);
            told
        }))
    }
}

impl Handler<GroupAdded> for AccountSync {
    type Result = ();

    fn handle(&mut self, GroupAdded(group): GroupAdded, ctx: &mut Self::Context) {
        let deps = self.deps.clone();
        ctx.spawn(
            async move {
                let record = deps.store.group(&group).await?.ok_or(Error::UnknownGroup)?;
                let epochs = deps.store.epochs(&group).await?;
                tell(&deps, AccountEvent::Group { secret: record.secret, name: record.name, epochs }).await
            }
            .into_actor(self)
            .map(|told, act, ctx| {
                if let Err(e) = told {
                    tracing::warn!(actor = NAME, error = %e, "cannot tell the account's other devices of a group");
                }
                act.read(ctx);
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use veil_crypto::{Identity, OsEntropy};

    use super::*;

    #[test]
    fn the_cursor_reads_back_and_a_short_record_is_none() {
        let record = [7u64.to_be_bytes().to_vec(), vec![9; 32]].concat();
        assert_eq!(cursor_of(&record), Some((7, EntryHash([9; 32]))));
        assert_eq!(cursor_of(&record[..39]), None);
        assert_eq!(cursor_of(&[]), None);
    }

    #[test]
    fn only_decided_contacts_are_told_and_a_removal_is_one() {
        let them = Identity::generate(&mut OsEntropy).unwrap().account.public();
        let told = |state| match contact_event(them, state) {
            Some(AccountEvent::Contact { change, .. }) => Some(change),
            _ => None,
        };
        assert_eq!(told(Some(ContactState::Accepted)), Some(ContactChangeKind::Accepted));
        assert_eq!(told(Some(ContactState::Discarded)), Some(ContactChangeKind::Discarded));
        assert_eq!(told(Some(ContactState::Blocked)), Some(ContactChangeKind::Blocked));
        assert_eq!(told(None), Some(ContactChangeKind::Removed));
        // A request in flight stays on the device that has it.
        for pending in [ContactState::IncomingReceived, ContactState::OutgoingEnqueued, ContactState::OutgoingSent] {
            assert_eq!(told(Some(pending)), None);
        }
    }
}
