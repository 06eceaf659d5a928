//! # veil-actors
//!
//! The actor runtime veil nodes run in: isolated actix actors exchanging
//! typed messages, each under a supervisor that restarts it after a failure
//! and lets it rebuild its state from storage.
//!
//! | actor | owns |
//! |---|---|
//! | [`IdentityVault`] | every private key; answers with public keys and signatures |
//! | [`RendezvousRotator`] | the schedule of rendezvous points to announce and look up |
//! | [`ContactBook`] | the contact link and contact requests (the handshake over `/veil/contact/1`) |
//! | [`GroupLog`] | one per group: its logs, sealing, verifying and storing entries |
//! | `GroupRegistry` | which groups run a log here, and where (written by the courier, read by the facade) |
//! | [`Courier`] | starts group logs; finds members at group points; pushes and acknowledges entries |
//! | `Replica` | the blind replication role: stores and serves groups' ciphertext, given their replication credentials |
//! | [`TransportManager`] | the network: swarm, attached transports, privacy policy |
//! | [`NetworkPeriod`] | each period: a fresh peer id and, under `Relayed`, a relay drawn at random |
//! | `AccountSync` | keeps this account's devices in step: contact, link and group changes through the account's own group |
//! | [`DeviceLinker`] | the first device's side of linking a new device: its offers' points and frames (the sessions stay in the vault) |
//!
//! Actors reach each other through `Recipient<M>`, never through each
//! other's concrete types. App builders use the [`Node`] facade and never
//! touch actix. The crates below are re-exported ([`crypto`], [`proto`],
//! [`storage`], [`transports`], and the BLE radio in [`ble`]), so an
//! application depends on this crate alone, plus the transport plug-ins it
//! chooses (such as `veil-tor`).
//!
//! ```
//! use veil_actors::Node;
//! use veil_actors::storage::keystore::KdfParams;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let node = Node::builder().data_dir(dir.path()).kdf(KdfParams::FAST_INSECURE_FOR_TESTS).spawn().await?;
//! let link = node.share_link().await?;
//! assert!(link.uri.starts_with("veil://contact/"));
//! let group = node.create_group(Some("notes")).await?;
//! node.send(&group, b"hello").await?;
//! assert_eq!(node.history(&group, None, 10).await?[0].payload, b"hello");
//! node.shutdown().await?;
//! # Ok(())
//! # }
//! ```

pub use veil_crypto as crypto;
pub use veil_proto as proto;
pub use veil_storage as storage;
pub use veil_transports as transports;

mod account_sync;
mod announce;
pub mod audit;
pub mod ble;
mod coalesce;
mod contacts;
mod courier;
mod device_link;
mod error;
mod group_log;
mod heads;
mod membership;
pub mod messages;
mod nearby;
mod node;
mod outgoing;
mod pace;
mod period;
mod point_clock;
mod pull;
mod receipts;
mod refusals;
mod registry;
mod replica;
mod rotator;
mod sessions;
mod supervision;
pub mod time;
mod transport;
mod vault;

pub use contacts::{ContactBook, RetryPolicy};
pub(crate) use contacts::{ContactBookDeps, VaultPort};
pub use courier::Courier;
pub(crate) use courier::{CourierDeps, CourierTiming};
pub use device_link::{DeviceJoin, DeviceLinker, MAX_OFFER_LIFETIME};
pub use error::{Error, Result};
pub use group_log::GroupLog;
pub(crate) use group_log::GroupLogDeps;
pub use node::{Node, NodeBuilder};
pub use period::NetworkPeriod;
pub use refusals::Refusals;
pub use rotator::RendezvousRotator;
pub use transport::{
    AttachTransport, DetachTransport, Dial, GetNetworkStatus, Listen, NetworkStatus, Rotate, SendFrame, SetPolicy,
    TransportManager,
};
pub use vault::IdentityVault;
use veil_crypto::{AccountPublic, GroupId, VerifyKey, envelope::EntryHash, rendezvous::ActivePoints};
use veil_transports::{
    TransportId,
    libp2p::{Multiaddr, PeerId},
};

use crate::messages::rendezvous::WatchKey;

/// What a node tells its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// Events are rare (a few per period or per message); boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum NodeEvent {
    /// A message this device wrote was stored durably in a group's log.
    EntryAdded {
        /// The group it was written in.
        group: GroupId,
        /// The message's hash, as [`Node::send`] returned it.
        hash: EntryHash,
    },
    /// A member's message was received and stored (or, received before
    /// its author's chain, opened once the chain arrived).
    MessageReceived {
        /// The group it arrived in.
        group: GroupId,
        /// The message's hash; its payload is readable in history from now on.
        hash: EntryHash,
    },
    /// This node learned of a member of a group (under its member key).
    MemberJoined {
        /// The group whose metadata log announced the member.
        group: GroupId,
        /// The member's keys in this group: the account keys in a contact group, alias-derived keys otherwise.
        member: veil_crypto::MemberPublic,
    },
    /// A member was removed from a group or left it (possibly this
    /// account); the group moved to a new epoch without it.
    MemberRemoved {
        /// The group, now in the epoch the removal started.
        group: GroupId,
        /// The member's signing key in the group.
        member: veil_crypto::VerifyKey,
    },
    /// Members acknowledged entries this node pushed to them.
    EntriesDelivered {
        /// The group the entries belong to.
        group: GroupId,
        /// The entries acknowledged; a member acknowledges only what it stored durably.
        hashes: Vec<EntryHash>,
    },
    /// A replication node stored entries of a group it replicates.
    EntriesReplicated {
        /// The group, as the node knows it.
        replication: veil_crypto::ReplicationId,
        /// How many entries were new.
        stored: usize,
    },
    /// A pushed entry was refused for good (forged, unreadable, not a
    /// member's); it is acknowledged so it is not pushed again.
    EntryRefused {
        /// The group the entry was pushed in.
        group: GroupId,
        /// The refused entry's hash; nothing of it is stored.
        hash: EntryHash,
        /// A few words for logs (`"forged entry"`); not meant to be matched on.
        reason: &'static str,
    },
    /// A received entry is held back, not stored, until what it needs
    /// arrives (a parent, its author's announcement); it is not
    /// acknowledged, so its sender offers it again.
    EntryHeldBack {
        /// The group the entry was sent in.
        group: GroupId,
        /// The held entry's hash; it is not stored yet.
        hash: EntryHash,
        /// What it waits for.
        reason: &'static str,
    },
    /// A frame from a peer was malformed or over a limit, and dropped whole.
    FrameRefused {
        /// The peer that sent it, by its current peer id.
        peer: PeerId,
        /// The decoding error, as text.
        reason: String,
    },
    /// A contact or member proved itself over a relay this node did not
    /// know: the relay joins those a relayed node draws from.
    RelaysLearned {
        /// The relays (each ending in `/p2p/<relay peer id>`).
        relays: Vec<Multiaddr>,
    },
    /// Someone sent us a contact request.
    ContactRequestReceived {
        /// Their account (authenticated by the handshake).
        account: AccountPublic,
        /// The name they asked to be shown by; self-chosen, so it proves nothing about who they are.
        display_name: Option<String>,
    },
    /// Our contact request was delivered (the responder has it; it has not
    /// necessarily accepted).
    ContactRequestDelivered {
        /// The responder's account signing key, from the link the request went to.
        account: VerifyKey,
    },
    /// An attempt to deliver our contact request failed (nobody answered
    /// at the responder's points); it is retried with backoff.
    ContactRequestUndelivered {
        /// The responder's account signing key, from the link the request goes to.
        account: VerifyKey,
        /// Failed attempts so far (since the node started).
        failures: u32,
    },
    /// A contact request was accepted (by us, or by them).
    ContactAccepted {
        /// The contact's account signing key.
        account: VerifyKey,
        /// The 1:1 group.
        group: Option<GroupId>,
    },
    /// The rendezvous points of a watch changed.
    RendezvousRotated {
        /// What the points belong to.
        key: WatchKey,
        /// The points to look up and answer at now: the current one, plus a neighbouring period's near a boundary.
        points: ActivePoints,
    },
    /// A multi-member group was created or joined on this node, and its log started.
    GroupCreated {
        /// Its id, as [`Node::create_group`] or [`Node::join`] returned it.
        group: GroupId,
    },
    /// The node listens on a new address.
    Listening {
        /// An address the node now listens on: a local socket, an onion service or a relay circuit.
        addr: Multiaddr,
    },
    /// The first connection to a peer is up.
    PeerConnected {
        /// The peer, by its current peer id (by default a new one every rendezvous period).
        peer: PeerId,
        /// The transport of that first connection (`tcp`, `quic`, `tor`, `ble`, …).
        transport: TransportId,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer, by the peer id it was connected under.
        peer: PeerId,
    },
    /// A frame arrived (and is acknowledged to its sender).
    FrameReceived {
        /// The peer that sent it, by its current peer id.
        peer: PeerId,
        /// A copy of the frame's bytes, made only while someone subscribes.
        frame: Vec<u8>,
    },
    /// As a rendezvous server: a peer registered at a namespace (for veil
    /// nodes, a rendezvous point in hex).
    RendezvousRegistered {
        /// The registering peer, by the peer id it registered under.
        peer: PeerId,
        /// The namespace; for veil nodes, a rendezvous point in lowercase hex.
        namespace: String,
    },
    /// As a rendezvous server: a registration ended.
    RendezvousUnregistered {
        /// The peer whose registration ended.
        peer: PeerId,
        /// The namespace it was registered under.
        namespace: String,
    },
    /// The network restarted: a key rotation gives it a new peer id, a policy change keeps the old one; every
    /// connection was closed.
    NetworkRestarted {
        /// This node's peer id from now on (unchanged after a policy change).
        peer_id: PeerId,
    },
    /// A contact was accepted, discarded, blocked or removed on this
    /// device (`synced`: because another device of the account did).
    ContactChanged {
        /// The contact's account.
        account: AccountPublic,
        /// Its state now; `None`: removed.
        state: Option<veil_storage::ContactState>,
        /// Done here because another device of this account did it.
        synced: bool,
    },
    /// The contact link was drawn anew, enabled or disabled (`synced`:
    /// because another device of the account did).
    LinkChanged {
        /// Done here because another device of this account did it.
        synced: bool,
    },
    /// A device answered a device offer ([`Node::link_device`]): show the
    /// code, and confirm it ([`Node::confirm_device`]) only if the user
    /// types the one the new device shows. A later answer replaces it.
    DeviceLinkCode {
        /// The offer.
        offer: messages::device::OfferId,
        /// The code this side of the session shows.
        code: veil_crypto::device_link::ShortCode,
    },
    /// A new device stored the account's copy: it is one of this account's devices now.
    DeviceLinked {
        /// The offer it answered (withdrawn now).
        offer: messages::device::OfferId,
        /// The new device's own key (listed by [`Node::devices`]).
        device: VerifyKey,
    },
    /// A device was removed from this account ([`Node::remove_device`]).
    DeviceRemoved {
        /// Its own key.
        device: VerifyKey,
        /// It is this device: another device of the account removed it, and
        /// it reads nothing the others write from now on.
        this_device: bool,
        /// Learned from another device of this account.
        synced: bool,
    },
    /// A device offer is no longer answered.
    DeviceOfferClosed {
        /// The offer.
        offer: messages::device::OfferId,
        /// Why: `"linked"`, `"expired"`, `"withdrawn"`, `"the codes differ"`, …
        reason: &'static str,
    },
}

/// Which actor (for fault injection in tests).
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy)]
pub enum ActorKind {
    /// The identity vault, which holds every private key and signs for the others.
    IdentityVault,
    /// The rotator, which computes rendezvous points and tells its subscribers when they change.
    RendezvousRotator,
    /// The contact book: the contact link and contact requests.
    ContactBook,
    /// A group's log.
    GroupLog(GroupId),
    /// The transport manager, which owns the network and routes its events.
    TransportManager,
    /// The courier, which carries entries between the group logs and the network.
    Courier,
    /// The BLE actor (on a node with a radio).
    BleTransport,
    /// The replica actor, which stores and serves the groups it replicates without reading them.
    Replica,
    /// The actor that changes the peer id and the relay each period.
    NetworkPeriod,
}
