//! Every message the actors exchange, grouped by the actor that handles it.
//! Commands are imperative, queries start with `Get`, events are past tense.

use actix::Message;
use veil_crypto::{
    AccountPublic, ChainState, EpochId, EpochSecret, GroupId, GroupSecret, MemberPublic, NetworkKey, VerifyKey,
    envelope::EntryHash,
    rendezvous::{ActivePoints, RendezvousPoint},
};
use veil_proto::metadata::MemberJoined;
use zeroize::Zeroizing;

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

    /// Command: sign an entry with this device's key in `group` (refused
    /// if the entry names another author).
    #[derive(Debug, Message)]
    #[rtype(result = "Result<veil_crypto::envelope::SignedEntry>")]
    pub struct SignEntry {
        /// The group whose device key signs.
        pub group: GroupId,
        /// The epoch it writes in (each has its own device key).
        pub epoch: EpochId,
        /// The entry to sign.
        pub pending: veil_crypto::envelope::PendingEntry,
    }

    /// Command: seal this device's messages in `group`, in order, with its
    /// key in `epoch`: each names the one before as its parent (the first
    /// names `parents`), at the next Lamport clocks after `lamport`, under
    /// the next keys of `chain`. One message for a whole batch of appends.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<SealedMessages>")]
    pub struct SealMessages {
        /// The group whose device key signs.
        pub group: GroupId,
        /// The epoch it writes in.
        pub epoch: EpochId,
        /// The epoch's keys.
        pub keys: veil_crypto::GroupKeys,
        /// This device's sending chain, where the first message starts.
        pub chain: veil_crypto::SenderChain,
        /// The parents of the first message.
        pub parents: Vec<veil_crypto::envelope::EntryHash>,
        /// The largest Lamport clock of the log so far.
        pub lamport: u64,
        /// The payloads, in order.
        pub payloads: Vec<Vec<u8>>,
    }

    /// What [`SealMessages`] gives back.
    #[derive(Debug)]
    pub struct SealedMessages {
        /// This device's key in the epoch (the author of every entry).
        pub author: veil_crypto::VerifyKey,
        /// The entries, in order, with their links.
        pub entries: Vec<(veil_crypto::envelope::SealedEntry, veil_crypto::envelope::Links)>,
        /// The chain after the last one.
        pub chain: veil_crypto::SenderChain,
        /// The payloads, handed back.
        pub payloads: Vec<Vec<u8>>,
    }

    /// Query: the public half of this account's member keys in `group`
    /// (in a contact group, the account keys: both sides know them already).
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
        /// The epoch (each has its own device key).
        pub epoch: EpochId,
    }

    /// Command: record a group this node creates or joins, under a fresh
    /// device key made in the vault that never leaves it: the group, its
    /// name, its secret and (a multi-member group joined through an
    /// invitation) the epoch secrets the invitation carried, in one
    /// transaction. Idempotent: a group added again keeps its first record
    /// and device key, and gains the epochs it lacked. Answers the group id.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<GroupId>")]
    pub struct AddGroup {
        /// Contact or multi-member.
        pub kind: veil_storage::GroupKind,
        /// Its name, if any.
        pub name: Option<String>,
        /// The group secret.
        pub secret: GroupSecret,
        /// Epoch secrets known at once (from an invitation), if any.
        pub epochs: Vec<EpochSecret>,
    }

    /// Event: a group is being removed; its device key leaves memory.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct GroupRemoved {
        /// The group.
        pub group: GroupId,
    }

    /// Names one contact-request handshake in progress inside the vault.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct HandshakeId(pub u64);

    /// Command: start a contact request to `responder` carrying `request`
    /// (encrypted in message 3). Returns the handshake and Noise message 1.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<(HandshakeId, Vec<u8>)>")]
    pub struct BeginRequest {
        /// The responder, from its contact link.
        pub responder: AccountPublic,
        /// The `ContactRequest` payload.
        pub request: Vec<u8>,
    }

    /// Command: read the responder's message 2 (checking it proves the
    /// link's account) and return message 3. Ends the handshake.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Vec<u8>>")]
    pub struct ContinueRequest {
        /// The handshake.
        pub handshake: HandshakeId,
        /// Noise message 2.
        pub response: Vec<u8>,
    }

    /// Command: answer a requester's message 1 with message 2.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<(HandshakeId, Vec<u8>)>")]
    pub struct AnswerRequest {
        /// Noise message 1.
        pub message: Vec<u8>,
    }

    /// A request read by the responder.
    pub struct ReceivedRequest {
        /// The requester's account, authenticated by the handshake.
        pub requester: AccountPublic,
        /// The decrypted `ContactRequest` payload.
        pub payload: Zeroizing<Vec<u8>>,
    }

    impl core::fmt::Debug for ReceivedRequest {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("ReceivedRequest").field("requester", &self.requester).finish_non_exhaustive()
        }
    }

    /// Command: read message 3 of an answered handshake. Ends the handshake.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<ReceivedRequest>")]
    pub struct ReadRequest {
        /// The handshake.
        pub handshake: HandshakeId,
        /// Noise message 3.
        pub message: Vec<u8>,
    }

    /// Query: the secret of the 1:1 group with `peer` (both sides derive it alone).
    #[derive(Debug, Message)]
    #[rtype(result = "Result<GroupSecret>")]
    pub struct DeriveContactGroup {
        /// The other account.
        pub peer: AccountPublic,
    }

    /// Command: announce this device in `group`: its member key, the
    /// member's certificate for the device, and `chain` sealed to each of
    /// `recipients`. In a contact group the member keys are the account keys.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<MemberJoined>")]
    pub struct AnnounceDevice {
        /// The group.
        pub group: GroupId,
        /// The epoch the device announces itself in.
        pub epoch: EpochId,
        /// This device's sending chain at the position readers start from.
        pub chain: ChainState,
        /// The members that may read it.
        pub recipients: Vec<MemberPublic>,
        /// In a contact group: the name to introduce this account by.
        pub display_name: Option<veil_crypto::Name>,
    }

    /// Command: open a chain share sealed to this account's member key in
    /// `group`; returns the sending device and its chain position.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<(VerifyKey, ChainState)>")]
    pub struct OpenChainShare {
        /// The group.
        pub group: GroupId,
        /// The sealed share.
        pub sealed: Vec<u8>,
    }

    /// Command: open an epoch secret sealed to this account's member key in
    /// `group`.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<EpochSecret>")]
    pub struct OpenEpochShare {
        /// The group.
        pub group: GroupId,
        /// The sealed secret.
        pub sealed: Vec<u8>,
    }

    /// Command: sign an invitation to `group` (whose secret it carries) as
    /// this account's member there.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<veil_crypto::GroupInvitation>")]
    pub struct IssueInvitation {
        /// The group.
        pub group: GroupId,
        /// Its secret (an invitation hands it over).
        pub secret: GroupSecret,
        /// The group's name, shown to the invitee.
        pub name: Option<veil_crypto::Name>,
        /// When members stop honouring it, if ever.
        pub expires_at: Option<veil_crypto::time::UnixTime>,
        /// The group's epoch secrets after the root, oldest first.
        pub epochs: Vec<EpochSecret>,
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

    /// Notice: a new rendezvous period started (sent in the same check that
    /// notifies the period's points).
    #[derive(Debug, Clone, Copy, Message)]
    #[rtype(result = "()")]
    pub struct PeriodStarted {
        /// The period's number (Unix time / period length).
        pub period: u64,
    }

    /// What a rendezvous point belongs to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum WatchKey {
        /// This account's own contact link.
        OwnLink,
        /// A contact we are sending a request to (its account key).
        Contact(VerifyKey),
        /// A group.
        Group(GroupId),
        /// A group's replication node (announced by the node replicating
        /// it, looked up by its members).
        Replica(veil_crypto::ReplicationId),
    }

    /// Command: reload what to watch from storage (after a link reset, a new
    /// group, a new outgoing request…).
    #[derive(Debug, Message)]
    #[rtype(result = "Result<()>")]
    pub struct Refresh;

    /// Command: also send every [`PointsRotated`] to `0`, starting with the
    /// current points of every watch.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct Subscribe(pub actix::Recipient<PointsRotated>);

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
        /// The points to look up (and to answer at) now.
        pub points: ActivePoints,
        /// A new period began and the node takes a new peer id for it:
        /// announce nothing until the network restarted under that id
        /// (`NetworkRestarted`). A point registered under two peer ids would
        /// let a rendezvous server link them.
        pub awaits_new_peer_id: bool,
    }

    impl PointsRotated {
        /// The points to announce this node at: the current period's only.
        /// The neighbouring periods' points belong to this node's peer ids
        /// of those periods; a peer whose clock is off by less than the grace
        /// window still finds the node, since lookups cover every active
        /// point.
        pub fn to_announce(&self) -> Vec<RendezvousPoint> {
            vec![self.points.current]
        }
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
        /// Whether the link is enabled (see `answers` for whether it
        /// answers now).
        pub enabled: bool,
        /// Its limits and the uses left.
        pub limits: veil_storage::LinkLimits,
        /// Whether it answers requests now: enabled, not expired, not used up.
        pub answers: bool,
    }

    /// Query: the current link (created on first use).
    #[derive(Debug, Message)]
    #[rtype(result = "Result<LinkInfo>")]
    pub struct ShareLink;

    /// Command: draw a new seed, with these limits; every earlier link
    /// stops working.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<LinkInfo>")]
    pub struct ResetLink(pub veil_storage::LinkLimits);

    /// Command: enable or disable the link (disabled: no announcements at all).
    #[derive(Debug, Message)]
    #[rtype(result = "Result<LinkInfo>")]
    pub struct SetLinkEnabled(pub bool);

    /// A contact, or a request to or from one.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Contact {
        /// Their account.
        pub account: AccountPublic,
        /// The name they gave (in their link or their request).
        pub display_name: Option<String>,
        /// What this user calls them: local, never sent; it overrides
        /// `display_name` (see [`Contact::name`]).
        pub nickname: Option<String>,
        /// Where it stands.
        pub state: veil_storage::ContactState,
        /// The 1:1 group, once there is one.
        pub group: Option<GroupId>,
    }

    /// Command: send a contact request to the owner of `link`, introducing
    /// ourselves as `display_name`. It is stored and retried (with backoff,
    /// across restarts) until delivered.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Contact>")]
    pub struct SendRequest {
        /// Their `veil://contact/…` link (or its QR form).
        pub link: String,
        /// How we want to be called.
        pub display_name: Option<String>,
    }

    /// What to do with a received request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Decision {
        /// Become contacts: the 1:1 group is created.
        Accept,
        /// Drop it silently (a later request shows up again).
        Discard,
        /// Refuse this account's requests from now on (silently).
        Block,
    }

    /// Command: decide on the request from `account`. Returns the contact.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Contact>")]
    pub struct Decide {
        /// The requester.
        pub account: VerifyKey,
        /// The decision.
        pub decision: Decision,
    }

    impl Contact {
        /// The name to show and to look them up by: the nickname, else
        /// their display name.
        pub fn name(&self) -> Option<&str> {
            self.nickname.as_deref().or(self.display_name.as_deref())
        }
    }

    /// Command: set (or with `None` clear) the local nickname of a contact.
    /// Returns the contact.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Contact>")]
    pub struct RenameContact {
        /// The contact.
        pub account: VerifyKey,
        /// What to call them from now on.
        pub nickname: Option<String>,
    }

    /// Command: remove a contact (or a request to or from one) for good:
    /// its 1:1 group stops and its keys, chains and messages are erased.
    /// `false` if there was no such contact.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<bool>")]
    pub struct RemoveContact {
        /// The contact.
        pub account: VerifyKey,
    }

    /// Command: set (or with `None` clear) the name this account introduces
    /// itself by.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<()>")]
    pub struct SetDisplayName(pub Option<String>);

    /// Query: every contact and request.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Vec<Contact>>")]
    pub struct GetContacts;

    /// Event (from the transport manager): a `/veil/contact/1` request arrived.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct InboundRequest {
        /// The peer that sent it.
        pub peer: veil_transports::libp2p::PeerId,
        /// Where to answer.
        pub id: veil_transports::InboundRequestId,
        /// The request.
        pub request: Vec<u8>,
    }

    /// Event (from the transport manager): mDNS found a peer on the LAN.
    /// Pending requests are tried against it directly; message 1's point
    /// proof is bound to a fresh handshake, so a neighbour that does not know
    /// a link's seed learns nothing it could link across sessions.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct LanPeerFound {
        /// The peer.
        pub peer: veil_transports::libp2p::PeerId,
    }

    /// Event (from a contact group's log): the other account announced
    /// itself in our 1:1 group, so it accepted.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct ContactJoined {
        /// The 1:1 group.
        pub group: GroupId,
        /// The name the other account introduced itself by, if any.
        pub display_name: Option<String>,
    }
}

/// Messages of the `Courier`.
pub mod courier {
    use super::*;
    use veil_transports::libp2p::PeerId;

    /// Command: start (or refresh) a stored group: its log, its keys in the
    /// vault, its rendezvous points.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<()>")]
    pub struct StartGroup {
        /// The group.
        pub group: GroupId,
    }

    /// Command: stop serving a group whose data is about to be removed: its
    /// announcements are withdrawn, its sessions and queues dropped, and its
    /// log stops once nothing holds it.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct StopGroup {
        /// The group.
        pub group: GroupId,
    }

    /// Event: a group's log wrote entries: owed to the members of a
    /// contact group (its outbox), pushed live to the connected members of
    /// a multi-member group.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct EntriesOwed {
        /// The group.
        pub group: GroupId,
        /// The entries just written.
        pub fresh: Vec<EntryHash>,
        /// Empty, or `fresh` as sealed (same order): entries whose outbox
        /// rows come due only after the resend delay, for the courier to
        /// push from memory now.
        pub pushed: Vec<veil_crypto::envelope::SealedEntry>,
    }

    /// Event (from the transport manager): a frame arrived.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct InboundFrame {
        /// The sender.
        pub peer: PeerId,
        /// The frame.
        pub frame: Vec<u8>,
    }

    /// Event (from the transport manager): frames arrived, in order (what
    /// the network had delivered while the last ones were handled).
    /// Resolves once the entries they carry are stored.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct InboundFrames {
        /// The frames.
        pub frames: Vec<InboundFrame>,
    }

    /// Event (from the transport manager): the last connection to a peer closed.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct PeerLeft {
        /// The peer.
        pub peer: PeerId,
    }

    /// Event (from the transport manager): proximity discovery (see
    /// `nearby.rs`).
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub enum Proximity {
        /// A peer was found nearby (mDNS on the LAN): it is offered
        /// membership tokens.
        Found(PeerId),
        /// Whether the privacy policy lets this node offer tokens to nearby
        /// peers and answer theirs.
        Allowed(bool),
    }

    /// Event (from the transport manager): the swarm restarted under a new peer id.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct NetworkRestarted {
        /// The new peer id.
        pub peer_id: PeerId,
    }
}

/// Messages of the `GroupRegistry`: where each running group's log is.
pub(crate) mod registry {
    use actix::Addr;

    use super::*;
    use crate::GroupLog;

    /// Event (from the courier): a group's log started (`Some`: it runs
    /// at that address) or stopped (`None`).
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub(crate) struct LogChanged {
        /// The group.
        pub(crate) group: GroupId,
        /// Its log, if it runs.
        pub(crate) log: Option<Addr<GroupLog>>,
    }

    /// Query: the log of a group, if it runs here.
    #[derive(Debug, Message)]
    #[rtype(result = "Option<Addr<GroupLog>>")]
    pub(crate) struct LogOf {
        /// The group.
        pub(crate) group: GroupId,
    }

    /// Query: the groups whose logs run here.
    #[derive(Debug, Message)]
    #[rtype(result = "Vec<GroupId>")]
    pub(crate) struct Running;
}

/// Messages of the `Replica` (blind replication).
pub mod replica {
    use super::*;

    /// Command: start replicating the group a credential names (stored, so
    /// it survives restarts). `false` if it already was.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<bool>")]
    pub struct AddReplica {
        /// The group's replication credential.
        pub credential: veil_crypto::ReplicationCredential,
    }
}

/// Messages of a `GroupLog`.
pub mod group {
    use std::time::Duration;

    use veil_crypto::time::UnixTime;

    use super::*;

    /// A message as read back from a group's log.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct HistoryEntry {
        /// The entry.
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
        /// The acknowledged entries.
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

    /// Query: a page of messages, in the log's total order.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<Vec<HistoryEntry>>")]
    pub struct GetHistory {
        /// Which page.
        pub page: Page,
        /// Most entries to return.
        pub limit: u32,
    }

    /// Command: mark the messages read up to `up_to` (Lamport clock, hash)
    /// included, or all of them (`None`). Read positions only move forward.
    #[derive(Debug, Message)]
    #[rtype(result = "Result<()>")]
    pub struct MarkRead {
        /// The last message read.
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
        /// The time now.
        pub now: UnixTime,
    }

    /// Command (from the courier, now and then): erase what is past the
    /// group's retention period at `now`.
    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    pub struct ApplyRetention {
        /// The time now.
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
}

/// Test-only fault injection (feature `fault-injection`): makes the
/// receiving actor's handler panic, to exercise supervision.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct InjectPanic;
