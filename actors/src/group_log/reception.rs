//! Receiving a batch of entries, decided without I/O.
//!
//! [`Reception`] holds what receiving needs of a group's state for one
//! batch and decides what becomes of each entry: stored, known already,
//! refused for good, waiting (for a parent, its author's announcement,
//! earlier messages of its chain), or queued to be stored with the
//! batch's other messages. Where a decision needs what only the store or
//! the vault has, it says so ([`Need`], or a share to open in
//! [`Joining`] / [`Removing`]) and the actor (`receive`) fetches it and
//! asks again. What the batch did (its receipt, node events, refusals) is
//! collected here and carried out by the actor.

use std::collections::{HashMap, HashSet};

use veil_crypto::{
    EpochId, EpochSecret, GroupId, MemberPublic, ReceiverChain, VerifyKey,
    envelope::{AuthorKeys, EntryHash, EntryKind, OpenedEntry, Position, SealedEntry, failed_signatures},
    ratchet::{ChainState, DEFAULT_WINDOW},
};
use veil_proto::metadata::{MemberJoined, MetadataEvent};
use veil_storage::{Appended, GroupKind, NewEntry, RatchetUpdate};
use zeroize::Zeroizing;

use super::{Loaded, NAME, keyless::Keyless, known::Known, load::others, orphans::Arrived, orphans::Orphans};
use crate::{
    Error, NodeEvent, Result,
    heads::heads_after,
    membership::{EpochStart, Epochs, Membership, SealedShare, Unopened},
    messages::group::Receipt,
};

/// What the next step with an entry is.
pub(super) enum Verdict {
    /// Decided: nothing to fetch, and nothing to store but with the batch's
    /// messages ([`Reception::queued`]).
    Done,
    /// Deciding needs this from the store; the entry comes back to be
    /// judged again once it is given.
    Need(Box<Arrived>, Need),
    /// A device announcement to store, after opening the share of its
    /// chain sealed to this member, if any ([`Reception::share_opened`],
    /// then [`Reception::joined_stored`]).
    Joined(Box<Joining>),
    /// A removal to store, after opening the share of the new epoch's
    /// secret sealed to this member, if any; then
    /// [`Reception::removal_stored`].
    Removal(Box<Removing>),
}

/// What a decision waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// The receiving chain the store holds for this device, if any
    /// ([`Reception::chain_loaded`]).
    Chain(VerifyKey),
    /// The other account of this contact group
    /// ([`Reception::contacts_loaded`]).
    Contacts,
}

/// A device announcement found valid, to be stored.
pub(super) struct Joining {
    pub item: Arrived,
    pub joined: MemberJoined,
    pub payload: Zeroizing<Vec<u8>>,
    /// The author's chain sealed to this member, when it gave us one and we
    /// have none yet (a later share must not overwrite a chain in use).
    pub share: Option<Vec<u8>>,
}

/// Why an entry waits for its author's announcement (see `EntryHeldBack`).
const ANNOUNCEMENT: &str = "its author's announcement";
/// Why an entry waits for its epoch's keys.
const EPOCH_KEYS: &str = "the keys of its epoch";

/// Why a removed member or device drops an entry (see `EntryRefused`).
const UNREADABLE_HERE: &str = "sealed in an epoch this device was left out of";

/// A removal or renewal found valid, to be stored.
pub(super) struct Removing {
    pub item: Arrived,
    pub start: EpochStart,
    /// The member of its author device.
    pub author: VerifyKey,
    pub payload: Zeroizing<Vec<u8>>,
    /// The new epoch's secret sealed for this device, unless it is held.
    pub share: Option<SealedShare>,
}

/// A message of the batch, stored with the others at the end of a round.
struct QueuedMessage {
    entry: SealedEntry,
    position: Position,
    author: VerifyKey,
    payload: Option<Zeroizing<Vec<u8>>>,
    /// Past its author's chain as held, so certainly not stored yet.
    unseen: bool,
}

/// One batch being received: the group's state it reads and moves, and
/// what it did.
pub(super) struct Reception {
    group: GroupId,
    kind: GroupKind,
    me: MemberPublic,
    pub(super) epochs: Epochs,
    pub(super) membership: Membership,
    /// Log and Lamport clock of stored entries: those stored lately, those
    /// the store was asked for, and the batch's own as they are taken.
    positions: Known,
    /// Receiving chains as stored, then as this batch's messages move them.
    chains: HashMap<VerifyKey, ReceiverChain>,
    /// Devices the store holds no receiving chain for (asked this batch).
    absent: HashSet<VerifyKey>,
    /// The other account of a contact group, once asked.
    contacts: Option<Vec<MemberPublic>>,
    /// The message log's heads, as this batch's messages move them.
    heads: Vec<EntryHash>,
    orphans: Orphans,
    authors: AuthorKeys,
    queued: Vec<QueuedMessage>,
    /// Entries stored in the current round: their orphans come next.
    stored: Vec<EntryHash>,
    receipt: Receipt,
    /// The largest Lamport clock stored.
    lamport: u64,
    /// The other account announced itself in this contact group (with the
    /// name it gave, if any).
    pub(super) contact_joined: Option<Option<String>>,
    events: Vec<NodeEvent>,
    refusals: u32,
    /// Entries of an epoch this device holds no keys for (yet), kept
    /// across batches (see `keyless`).
    keyless: Keyless,
    /// Those this batch brought, or tried again.
    keyless_now: Vec<EntryHash>,
    /// This round brought a new epoch: `keyless` entries are tried again.
    epochs_grew: bool,
    /// Another device of the account removed this one.
    pub(super) device_removed: bool,
}

impl Reception {
    /// Takes what receiving moves out of the group's state (it is put back
    /// by [`Reception::restore`]).
    pub(super) fn new(group: GroupId, state: &mut Loaded) -> Self {
        let mut reception = Self::empty(group, state.kind, state.me, state.epochs.clone());
        reception.membership = state.membership.clone();
        reception.heads = state.heads.clone();
        reception.positions = std::mem::take(&mut state.known);
        reception.chains = std::mem::take(&mut state.chains);
        reception.orphans = std::mem::take(&mut state.orphans);
        reception.keyless = std::mem::take(&mut state.keyless);
        reception.authors = std::mem::take(&mut state.authors);
        reception
    }

    /// A group with `epochs` this member (`me`) holds, where nothing is
    /// known yet.
    fn empty(group: GroupId, kind: GroupKind, me: MemberPublic, epochs: Epochs) -> Self {
        Self {
            group,
            kind,
            me,
            epochs,
            membership: Membership::default(),
            positions: Known::default(),
            chains: HashMap::new(),
            absent: HashSet::new(),
            contacts: None,
            heads: Vec::new(),
            orphans: Orphans::default(),
            authors: AuthorKeys::default(),
            queued: Vec::new(),
            stored: Vec::new(),
            receipt: Receipt::default(),
            lamport: 0,
            contact_joined: None,
            events: Vec::new(),
            keyless: Keyless::default(),
            keyless_now: Vec::new(),
            epochs_grew: false,
            device_removed: false,
            refusals: 0,
        }
    }

    /// Puts the batch's results back into the group's state.
    pub(super) fn restore(mut self, state: &mut Loaded) {
        self.positions.trim();
        state.heads = self.heads;
        state.lamport = state.lamport.max(self.lamport);
        state.epochs = self.epochs;
        state.membership = self.membership;
        state.chains = self.chains;
        state.orphans = self.orphans;
        state.keyless = self.keyless;
        state.authors = self.authors;
        state.known = self.positions;
    }

    /// Opens a batch: forged entries are refused, entries of an epoch this
    /// member has no keys for wait (or, once it is removed, are dropped:
    /// it never gets them), and every signature is checked at once
    /// (PROTOCOL.md §7). Returns the first round.
    pub(super) fn open(&mut self, entries: Vec<SealedEntry>) -> Vec<Arrived> {
        let removed = self.device_removed || self.membership.is_removed(&self.me.signing);
        let mut round = Vec::with_capacity(entries.len());
        let mut checks = Vec::with_capacity(entries.len());
        for entry in entries {
            match self.epochs.open_unchecked(&entry, &mut self.authors) {
                Ok((epoch, opened, check)) => {
                    round.push(Arrived { entry, epoch, opened });
                    checks.push(check);
                }
                Err(Unopened::Forged) => self.refuse(entry.hash(), "forged entry"),
                Err(Unopened::NoKey) if removed => self.drop_unreadable(entry.hash()),
                // Kept, and tried again when a batch brings a new epoch.
                Err(Unopened::NoKey) => {
                    let hash = entry.hash();
                    if self.keyless.hold(entry) {
                        self.keyless_now.push(hash);
                    } else {
                        self.hold_back(hash, EPOCH_KEYS);
                    }
                }
            }
        }
        for i in failed_signatures(&checks).into_iter().rev() {
            let forged = round.remove(i).entry.hash();
            self.refuse(forged, "forged entry");
        }
        round
    }

    /// Puts a round in order (announcements before messages, parents
    /// before children, whatever the order it came in) and names what the
    /// store must be asked the position of ([`Reception::positions_found`]):
    /// parents not known, and entries that may be stored already.
    pub(super) fn order(&self, round: &mut [Arrived]) -> Vec<EntryHash> {
        round
            .sort_by_key(|o| (o.opened.position.kind != EntryKind::Metadata, o.opened.position.lamport, o.opened.hash));
        round
            .iter()
            .flat_map(|o| {
                let own = (!self.is_new(&o.opened)).then_some(o.opened.hash);
                o.opened.position.parents.iter().copied().chain(own)
            })
            .filter(|hash| !self.positions.contains_key(hash))
            .collect()
    }

    /// The store's answer to [`Reception::order`].
    pub(super) fn positions_found(&mut self, found: impl IntoIterator<Item = (EntryHash, EntryKind, u64)>) {
        for (hash, kind, lamport) in found {
            self.positions.insert(hash, (kind, lamport));
        }
    }

    /// The store's answer to [`Need::Chain`].
    pub(super) fn chain_loaded(&mut self, device: VerifyKey, chain: Option<ReceiverChain>) {
        match chain {
            Some(chain) => {
                self.chains.insert(device, chain);
            }
            None => {
                self.absent.insert(device);
            }
        }
    }

    /// The store's answer to [`Need::Contacts`].
    pub(super) fn contacts_loaded(&mut self, contacts: Vec<MemberPublic>) {
        self.contacts = Some(contacts);
    }

    /// Decides what becomes of one entry of the round.
    pub(super) fn judge(&mut self, item: Arrived) -> Result<Verdict> {
        let (hash, kind) = (item.opened.hash, item.opened.position.kind);
        if self.positions.contains_key(&hash) {
            self.settle(hash, kind);
            return Ok(Verdict::Done);
        }
        // Parents first, all of them in the same log and earlier in it (so
        // no cycle can ever be stored).
        for parent in &item.opened.position.parents {
            match self.positions.get(parent) {
                None => {
                    let parent = *parent;
                    self.orphans.hold(parent, item);
                    self.hold_back(hash, "a parent");
                    return Ok(Verdict::Done);
                }
                Some((k, lamport)) if *k != kind || *lamport >= item.opened.position.lamport => {
                    self.refuse(hash, "parents out of order");
                    return Ok(Verdict::Done);
                }
                Some(_) => {}
            }
        }
        match kind {
            EntryKind::Metadata => self.judge_metadata(item),
            EntryKind::Message => Ok(self.judge_message(item)),
        }
    }

    fn judge_metadata(&mut self, item: Arrived) -> Result<Verdict> {
        let keys = self.epochs.keys(&item.epoch).ok_or(Error::Unavailable(NAME))?;
        let Ok(payload) = item.opened.read_metadata(keys) else {
            self.refuse(item.opened.hash, "unreadable");
            return Ok(Verdict::Done);
        };
        Ok(match MetadataEvent::decode(&payload) {
            Ok(MetadataEvent::MemberJoined(joined)) => self.judge_joined(item, joined, payload),
            Ok(event @ (MetadataEvent::MemberRemoved(_) | MetadataEvent::EpochRenewed(_))) => {
                match EpochStart::of(&event) {
                    Some(start) => self.judge_epoch_start(item, start, payload),
                    None => Verdict::Done,
                }
            }
            Err(_) => {
                self.refuse(item.opened.hash, "unknown metadata event");
                Verdict::Done
            }
        })
    }

    fn judge_joined(&mut self, item: Arrived, joined: MemberJoined, payload: Zeroizing<Vec<u8>>) -> Verdict {
        let hash = item.opened.hash;
        let refused = if joined.device != item.opened.author
            || joined.member.verify_device(&self.group, &joined.device, &joined.device_cert).is_err()
        {
            Some("device not certified by its member")
        } else if joined.epoch != item.epoch {
            Some("announced outside its epoch")
        } else if self.membership.is_removed(&joined.member.signing) {
            Some("its member was removed")
        } else {
            None
        };
        if let Some(reason) = refused {
            self.refuse(hash, reason);
            return Verdict::Done;
        }
        if self.kind == GroupKind::Contact {
            // Only the two accounts can write in a 1:1 group; the group
            // secret already proves the author is one of them.
            let Some(contacts) = &self.contacts else { return Verdict::Need(Box::new(item), Need::Contacts) };
            if joined.member != self.me && !contacts.contains(&joined.member) {
                self.refuse(hash, "not a member of this contact group");
                return Verdict::Done;
            }
        }
        let share = match joined.chain_shares.iter().find(|s| s.recipient == self.me.signing) {
            Some(_) if self.chains.contains_key(&joined.device) => None,
            Some(_) if !self.absent.contains(&joined.device) => {
                return Verdict::Need(Box::new(item), Need::Chain(joined.device));
            }
            Some(share) => Some(share.sealed_state.clone()),
            None => None,
        };
        Verdict::Joined(Box::new(Joining { item, joined, payload, share }))
    }

    /// The vault's answer to a [`Joining::share`]: the chain to store with
    /// the announcement, or `None` if the share is bad (the entry is then
    /// refused).
    pub(super) fn share_opened(
        &mut self,
        joining: &Joining,
        opened: Result<(VerifyKey, ChainState)>,
    ) -> Result<Option<ReceiverChain>> {
        match opened {
            Ok((device, state)) if device == joining.joined.device => {
                Ok(Some(ReceiverChain::new(state, DEFAULT_WINDOW)?))
            }
            _ => {
                self.refuse(joining.item.opened.hash, "bad chain share");
                Ok(None)
            }
        }
    }

    /// An announcement was stored (`stored`), or found stored already.
    pub(super) fn joined_stored(&mut self, joining: Joining, stored: bool) {
        let Joining { item, joined, .. } = joining;
        let hash = item.opened.hash;
        // Its chain, if it came with one, is the store's now.
        self.absent.remove(&joined.device);
        if self.membership.joined(&joined) && joined.member != self.me {
            self.events.push(NodeEvent::MemberJoined { group: self.group, member: joined.member });
        }
        if stored {
            self.positions.insert(hash, (EntryKind::Metadata, item.opened.position.lamport));
            self.lamport = self.lamport.max(item.opened.position.lamport);
            if joined.member != self.me {
                self.contact_joined = Some(joined.display_name.map(|n| n.as_str().to_owned()));
            }
            self.stored.push(hash);
        }
        self.settle(hash, EntryKind::Metadata);
    }

    /// A removal, or a renewal (which contact groups have too: an account
    /// removing a device renews its 1:1s).
    fn judge_epoch_start(&mut self, item: Arrived, start: EpochStart, payload: Zeroizing<Vec<u8>>) -> Verdict {
        let hash = item.opened.hash;
        if self.kind != GroupKind::MultiMember && start.removed.is_some() {
            self.refuse(hash, "contact groups have no removals");
            return Verdict::Done;
        }
        let Some((author, author_epoch)) = self.membership.device(&item.opened.author).copied() else {
            self.hold_back(hash, ANNOUNCEMENT);
            return Verdict::Done;
        };
        if author_epoch != item.epoch {
            self.refuse(hash, "written outside its device's epoch");
            return Verdict::Done;
        }
        if self.membership.is_removed(&author.signing) {
            self.refuse(hash, "its author was removed");
            return Verdict::Done;
        }
        let share =
            start.share_for(&self.me.signing, Some(&author.signing)).filter(|_| !self.epochs.holds(&start.epoch));
        Verdict::Removal(Box::new(Removing { item, start, author: author.signing, payload, share }))
    }

    /// A removal was stored (`stored`) or found stored already, with the
    /// new epoch's secret if this member opened its share: a new epoch
    /// starts.
    pub(super) fn removal_stored(&mut self, removing: Removing, stored: bool, secret: Option<&EpochSecret>) {
        let Removing { item, start, author, .. } = removing;
        let (hash, lamport) = (item.opened.hash, item.opened.position.lamport);
        let written_in = item.epoch;
        if let Some(secret) = secret {
            self.epochs.add(secret);
            self.epochs_grew = true;
        }
        self.membership.started(&start, Some(author), Some(written_in), (lamport, hash));
        if let Some(member) = start.removed {
            self.events.push(NodeEvent::MemberRemoved { group: self.group, member });
        }
        if stored {
            self.positions.insert(hash, (EntryKind::Metadata, lamport));
            self.lamport = self.lamport.max(lamport);
            self.stored.push(hash);
        }
        self.settle(hash, EntryKind::Metadata);
    }

    /// A message from a member device is kept even when it cannot be read
    /// (no chain from its author yet, or written before ours began), so
    /// the log stays whole; it is opened if its chain arrives later.
    fn judge_message(&mut self, item: Arrived) -> Verdict {
        let (hash, author) = (item.opened.hash, item.opened.author);
        match self.membership.device(&author) {
            None => {
                self.hold_back(hash, ANNOUNCEMENT);
                return Verdict::Done;
            }
            Some((_, device_epoch)) if *device_epoch != item.epoch => {
                self.refuse(hash, "written outside its device's epoch");
                return Verdict::Done;
            }
            Some(_) => {}
        }
        if !self.chains.contains_key(&author) && !self.absent.contains(&author) {
            return Verdict::Need(Box::new(item), Need::Chain(author));
        }
        let unseen = self.is_new(&item.opened);
        let payload = match self.chains.get_mut(&author) {
            None => None,
            Some(chain) => match item.opened.read_message(chain) {
                Ok(payload) => Some(payload),
                Err(veil_crypto::Error::Replay { .. }) => None,
                Err(veil_crypto::Error::TooFarAhead { .. }) => {
                    self.hold_back(hash, "earlier messages");
                    return Verdict::Done;
                }
                Err(_) => {
                    self.refuse(hash, "undecryptable");
                    return Verdict::Done;
                }
            },
        };
        self.positions.insert(hash, (EntryKind::Message, item.opened.position.lamport));
        let Arrived { entry, opened, .. } = item;
        self.queued.push(QueuedMessage { entry, position: opened.position, author, payload, unseen });
        Verdict::Done
    }

    /// A message at or past its author's chain position as held: storing
    /// it would have moved the chain past it, so it is not stored yet.
    fn is_new(&self, opened: &OpenedEntry) -> bool {
        opened.position.kind == EntryKind::Message
            && self.chains.get(&opened.author).is_some_and(|chain| opened.counter >= chain.state().next)
    }

    /// The round's messages, to be stored in one transaction with the
    /// chains they moved (the last update of each chain wins: its state
    /// after the batch); then [`Reception::queued_stored`].
    pub(super) fn queued(&self) -> Vec<NewEntry<'_>> {
        self.queued
            .iter()
            .map(|q| NewEntry {
                group: self.group,
                entry: &q.entry,
                position: &q.position,
                author: Some(q.author),
                payload: q.payload.as_deref().map(|p| &p[..]),
                ratchet: q.payload.as_ref().and_then(|_| {
                    self.chains.get(&q.author).map(|chain| RatchetUpdate::Receiver { device: q.author, chain })
                }),
                outbox: &[],
            })
            .collect()
    }

    /// Whether every queued message is past its chain, so certainly new:
    /// the store need not look up which are stored.
    pub(super) fn queued_unseen(&self) -> bool {
        self.queued.iter().all(|q| q.unseen)
    }

    /// What storing [`Reception::queued`] did, in its order.
    pub(super) fn queued_stored(&mut self, outcomes: Vec<Appended>) {
        for (message, outcome) in std::mem::take(&mut self.queued).into_iter().zip(outcomes) {
            let hash = message.entry.hash();
            if outcome == Appended::Stored {
                // Parents are stored before their children (or the entry
                // waits), so no missing parent is named.
                self.heads = heads_after(&self.heads, &message.position.parents, hash);
                self.lamport = self.lamport.max(message.position.lamport);
                if message.payload.is_some() {
                    self.events.push(NodeEvent::MessageReceived { group: self.group, hash });
                }
                self.stored.push(hash);
            }
            self.receipt.ack.push(hash);
        }
    }

    /// The next round: entries that waited for a parent this round stored,
    /// and those of an epoch this round brought.
    pub(super) fn next_round(&mut self) -> Vec<Arrived> {
        let stored = std::mem::take(&mut self.stored);
        let mut round = self.orphans.unlocked(&stored);
        if std::mem::take(&mut self.epochs_grew) {
            let kept = self.keyless.take_all();
            round.extend(self.open(kept));
        }
        round
    }

    /// The batch is over: what this batch brought (or tried again) that no
    /// held epoch opens waits, unacknowledged (a newer epoch may be on its
    /// way).
    pub(super) fn finish(&mut self) {
        let mut told = HashSet::new();
        for hash in std::mem::take(&mut self.keyless_now) {
            if self.keyless.holds(&hash) && told.insert(hash) {
                self.hold_back(hash, EPOCH_KEYS);
            }
        }
    }

    /// Opens, with a chain that just arrived, a message of its device
    /// stored unread before.
    pub(super) fn read_unread(
        &mut self,
        sealed: &SealedEntry,
        chain: &mut ReceiverChain,
    ) -> Option<Zeroizing<Vec<u8>>> {
        let (_, opened) = self.epochs.open(sealed, &mut self.authors).ok()?;
        opened.read_message(chain).ok()
    }

    /// A message stored unread was read and its payload stored.
    pub(super) fn revealed(&mut self, hash: EntryHash) {
        self.events.push(NodeEvent::MessageReceived { group: self.group, hash });
    }

    /// After the batch: the epoch this device must start writing in (with
    /// the members to share its new chain with), if the current epoch
    /// changed.
    pub(super) fn epoch_to_enter(&self, writing_in: &EpochId) -> Option<(EpochId, Vec<MemberPublic>)> {
        if self.membership.is_removed(&self.me.signing) {
            return None;
        }
        let current = self.epochs.current(&self.membership);
        (current != *writing_in).then(|| (current, others(&self.membership, &current, &self.me)))
    }

    /// After the batch, in the current epoch: whether this member must
    /// renew it ([`Membership::must_renew`]).
    pub(super) fn must_renew(&self) -> bool {
        let current = self.epochs.current(&self.membership);
        !self.device_removed
            && !self.membership.is_removed(&self.me.signing)
            && self.membership.must_renew(&self.me.signing, &current)
    }

    /// Drops an entry of an epoch this device will never hold (its member
    /// or the device itself was removed): acknowledged, so it is not sent
    /// again, and reported, but not counted as a refusal (nobody did wrong).
    fn drop_unreadable(&mut self, hash: EntryHash) {
        self.receipt.ack.push(hash);
        self.events.push(NodeEvent::EntryRefused { group: self.group, hash, reason: UNREADABLE_HERE });
    }

    /// Refuses an entry for good: acknowledged (so it is not sent again),
    /// counted, reported.
    pub(super) fn refuse(&mut self, hash: EntryHash, reason: &'static str) {
        tracing::debug!(actor = NAME, reason, "refused an entry");
        self.refusals += 1;
        self.events.push(NodeEvent::EntryRefused { group: self.group, hash, reason });
        self.receipt.ack.push(hash);
    }

    /// An entry waits for what has not arrived: not acknowledged, so it
    /// comes again; the sender is asked for what is missing.
    fn hold_back(&mut self, hash: EntryHash, reason: &'static str) {
        self.events.push(NodeEvent::EntryHeldBack { group: self.group, hash, reason });
        self.receipt.waiting = true;
        self.receipt.wants_metadata |= matches!(reason, ANNOUNCEMENT | EPOCH_KEYS);
    }

    /// Acknowledges an entry held (stored now or before).
    fn settle(&mut self, hash: EntryHash, kind: EntryKind) {
        if kind == EntryKind::Metadata {
            self.receipt.metadata.push(hash);
        }
        self.receipt.ack.push(hash);
    }

    /// The node events to send and the refusals to count, since last asked.
    pub(super) fn take_effects(&mut self) -> (Vec<NodeEvent>, u32) {
        (std::mem::take(&mut self.events), std::mem::take(&mut self.refusals))
    }

    /// The batch's receipt, without its sync (the actor adds it).
    pub(super) fn take_receipt(&mut self) -> Receipt {
        std::mem::take(&mut self.receipt)
    }
}

#[cfg(test)]
mod tests;
