//! Every message the actors exchange, grouped by the actor that handles it.
//! Commands are imperative, queries start with `Get`, events are past tense.

use actix::Message;
use veil_crypto::{
    AccountPublic, GroupId, MemberPublic, NetworkKey, Signature, VerifyKey, envelope::EntryHash,
    rendezvous::ActivePoints,
};

use crate::Result;

/// Messages of the `IdentityVault`: it holds every private key and only ever
/// answers with public keys and signatures.
pub mod vault {
    use super::*;

    /// This node's public identity.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PublicIdentity {
        /// The account.
        pub account: AccountPublic,
        /// This device.
        pub device: VerifyKey,
    }

    /// Query: this node's public identity.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<PublicIdentity>")]
    pub struct GetIdentity;

    /// Command: sign `message` with this device's key in `group`.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Signature>")]
    pub struct SignAsDevice {
        /// The group whose device key signs.
        pub group: GroupId,
        /// What to sign.
        pub message: Vec<u8>,
    }

    /// Query: the public half of this account's member keys in `group`.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<MemberPublic>")]
    pub struct GetMemberKeys {
        /// The group.
        pub group: GroupId,
    }

    /// Query: this device's public key in `group`.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<VerifyKey>")]
    pub struct GetDeviceKey {
        /// The group.
        pub group: GroupId,
    }

    /// Event: a group was stored; load its device key.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<()>")]
    pub struct GroupAdded {
        /// The group.
        pub group: GroupId,
    }

    /// Command: draw a fresh network key for the next period. The one key
    /// that leaves the vault: the network layer needs it for its handshakes,
    /// and it identifies nothing beyond one period.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<NetworkKey>")]
    pub struct RotateNetworkKey;
}

/// Messages of the `RendezvousRotator`.
pub mod rendezvous {
    use super::*;

    /// What a rendezvous point belongs to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum WatchKey {
        /// This account's own contact link.
        OwnLink,
        /// A contact we are sending a request to (its account key).
        Contact(VerifyKey),
        /// A group.
        Group(GroupId),
    }

    /// Command: reload what to watch from storage (after a link reset, a new
    /// group, a new outgoing request…).
    #[derive(Debug, Message)]
    #[rtype(result = "Result<()>")]
    pub struct Refresh;

    /// Query: the active points of everything watched.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Vec<(WatchKey, ActivePoints)>>")]
    pub struct GetActivePoints;

    /// Event: the active points of a watch changed (a period boundary passed,
    /// a grace window opened or closed, or the watch was added).
    #[derive(Debug, Clone, Message)]
    #[rtype(result = "()")]
    pub struct PointsRotated {
        /// What the points belong to.
        pub key: WatchKey,
        /// The points to announce or look up now.
        pub points: ActivePoints,
    }
}

/// Messages of the `ContactBook`.
pub mod contacts {
    use super::*;

    /// A shareable contact link.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LinkInfo {
        /// `veil://contact/…`.
        pub uri: String,
        /// The QR-code form.
        pub qr: String,
        /// Whether the node answers to it.
        pub enabled: bool,
    }

    /// Query: the current link (created on first use).
    #[derive(Debug, Message)]
    #[rtype(result = "Result<LinkInfo>")]
    pub struct ShareLink;

    /// Command: draw a new seed; every earlier link stops working.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<LinkInfo>")]
    pub struct ResetLink;

    /// Command: enable or disable the link (disabled: no announcements at all).
    #[derive(Debug, Message)]
    #[rtype(result = "Result<LinkInfo>")]
    pub struct SetLinkEnabled(pub bool);
}

/// Messages of a `GroupLog`.
pub mod group {
    use super::*;

    /// A message as read back from a group's log.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct HistoryEntry {
        /// The entry.
        pub hash: EntryHash,
        /// Its author device.
        pub author: Option<VerifyKey>,
        /// Its Lamport clock.
        pub lamport: u64,
        /// The payload.
        pub payload: Vec<u8>,
    }

    /// Command: append a message to the group's message log.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<EntryHash>")]
    pub struct AppendMessage {
        /// The payload (at most 65 532 bytes).
        pub payload: Vec<u8>,
    }

    /// Query: messages in the log's total order, after `after`.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Vec<HistoryEntry>>")]
    pub struct GetHistory {
        /// Start after this (Lamport clock, hash); `None` = from the start.
        pub after: Option<(u64, EntryHash)>,
        /// Most entries to return.
        pub limit: u32,
    }
}

/// Test-only fault injection (feature `fault-injection`): makes the
/// receiving actor's handler panic, to exercise supervision.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct InjectPanic;
