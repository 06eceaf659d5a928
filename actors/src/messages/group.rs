//! Messages of a `GroupLog`.

use std::time::Duration;

use veil_crypto::time::UnixTime;

use super::*;

/// A message as read back from a group's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The message's hash: its id for `GetEntry`, and with `lamport` its position for `MarkRead` and paging.
    pub hash: EntryHash,
    /// Its author device.
    pub author: Option<VerifyKey>,
    /// Written by this member (from this device, or another of its
    /// devices in the group): the author device announced itself as
    /// this member's.
    pub mine: bool,
    /// Of this device's messages: how many members it is owed to (the
    /// other account, in a 1:1 conversation). 0 for group messages:
    /// members pull them and acknowledge none, so their delivery is not
    /// known (docs/PROTOCOL.md §11).
    pub owed_to: u32,
    /// Of those, how many have not acknowledged it yet (0: delivered to
    /// all `owed_to`).
    pub waiting_for: u32,
    /// Its Lamport clock; history is ordered by (Lamport clock, hash), the same on every member.
    pub lamport: u64,
    /// The payload as its author wrote it, without padding.
    pub payload: Vec<u8>,
}

/// A conversation, as the node knows it: a 1:1 group with a contact, or a
/// group (with the name this device gave it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The group its messages are in; every call about the conversation names it by this id.
    pub group: GroupId,
    /// The contact, for a 1:1 conversation.
    pub contact: Option<super::contacts::Contact>,
    /// The group's name (a 1:1 conversation goes by its contact's).
    pub name: Option<String>,
    /// How long its messages are kept (`None`: for ever).
    pub retention: Option<std::time::Duration>,
}

/// Command: append a message to the group's message log.
#[derive(Debug, Message)]
#[rtype(result = "Result<EntryHash>")]
pub struct AppendMessage {
    /// The payload (at most 65 532 bytes).
    pub payload: Vec<u8>,
}

/// Command: verify, open and store entries a member pushed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Receipt>")]
pub struct ReceiveEntries {
    /// The entries, as they arrived.
    pub entries: Vec<veil_crypto::envelope::SealedEntry>,
}

/// What became of received entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// What to acknowledge: entries stored now or before, and entries
    /// refused for good (forged, undecryptable, parents out of order).
    pub ack: Vec<EntryHash>,
    /// Some entries wait for what has not arrived (a parent, their
    /// author's announcement): they are not acknowledged, so they come
    /// again, and the receiver should ask for what it lacks.
    pub waiting: bool,
    /// Some of those wait for metadata (their author's announcement, their
    /// epoch's keys). In a contact group the sender's outbox may never
    /// push them again (another device of this account acknowledged them
    /// first), so the receiver reconciles with the sender.
    pub wants_metadata: bool,
    /// The batch's metadata entries this log holds (stored now or
    /// before): a multi-member group acknowledges these, so a joining
    /// or leaving device learns its announcement is held elsewhere.
    pub metadata: Vec<EntryHash>,
    /// Messages stored now are durable once this is synced: nothing
    /// is acknowledged before (they were reported received already).
    pub unsynced: Option<veil_storage::Unsynced>,
}

/// Another node (a member or a replication node) acknowledged holding
/// these entries of the group.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EntriesHeld {
    /// The entries acknowledged; if the joining announcement is among them, `AwaitAnnounced` resolves.
    pub hashes: Vec<EntryHash>,
}

/// Query: resolves once another node holds the announcement this log
/// wrote when this device joined (at once if it wrote none since it
/// started: the device was announced before).
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct AwaitAnnounced;

/// Query: the members known from the metadata log (this account's
/// included), by their member signing key.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<MemberPublic>>")]
pub struct GetMembers;

/// Command: remove a member from a multi-member group (this account's
/// own member key: leave it). The group moves to a new epoch shared
/// with the remaining members only.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct RemoveMember {
    /// The member's signing key in the group.
    pub member: VerifyKey,
}

/// Command: this account removed devices; the group moves to a new epoch,
/// removing no member, whose secret goes to the other members and to the
/// account's remaining devices other than this one (their agreement keys,
/// PROTOCOL.md §6.6). Works in contact groups too.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct RenewEpoch {
    /// The device agreement keys of this account's other remaining devices.
    pub devices: Vec<veil_crypto::AgreementPublic>,
}

/// Query: a page of messages, in the log's total order.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<HistoryEntry>>")]
pub struct GetHistory {
    /// Which page.
    pub page: Page,
    /// Most entries to return.
    pub limit: u32,
}

/// Query: one message by hash, as a page of history shows it (none if it
/// is not in this log, or was erased).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<HistoryEntry>>")]
pub struct GetEntry {
    /// The message's hash, as `AppendMessage` or history gave it.
    pub hash: EntryHash,
}

/// Command: mark the messages read up to `up_to` (Lamport clock, hash)
/// included, or all of them (`None`). Read positions only move forward.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct MarkRead {
    /// The position (Lamport clock, hash) of the last message read; `None` marks every message read.
    pub up_to: Option<(u64, EntryHash)>,
}

/// Query: how many messages others wrote after the read position.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64>")]
pub struct GetUnread;

/// Command: erase this device's copy of the group's messages (they stay
/// as hashes, so sync does not fetch them again). Answers how many were
/// erased.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64>")]
pub struct ForgetHistory;

/// Command: keep the group's messages for `keep` only (`None`: for
/// ever); older ones than that at `now` are erased at once.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct SetRetention {
    /// How long messages are kept.
    pub keep: Option<Duration>,
    /// The time retention counts back from: messages this node stored before `now - keep` are erased.
    pub now: UnixTime,
}

/// Command (from the courier, now and then): erase what is past the
/// group's retention period at `now`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyRetention {
    /// The time retention counts back from: messages this node stored before `now` minus the retention are erased.
    pub now: UnixTime,
}

/// Where a page of history lies: a position is (Lamport clock, hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The messages just after this position (`None`: the first ones).
    After(Option<(u64, EntryHash)>),
    /// The messages just before this position (`None`: the latest ones).
    Before(Option<(u64, EntryHash)>),
}
