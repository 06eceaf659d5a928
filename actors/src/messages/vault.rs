//! Messages of the `IdentityVault`: it holds every private key and only ever
//! answers with public keys and signatures.

use super::*;

/// This node's public identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicIdentity {
    /// The account's public keys, the same on every device of the user.
    pub account: AccountPublic,
    /// This device's own key, not one of its per-group device keys.
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
    /// The entry, sealed but unsigned; its author must be this device's key in `group` and `epoch`.
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
    /// The epoch it writes in; this device's key there is the author of every entry.
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
    /// The entries, in order, with their position.
    pub entries: Vec<(veil_crypto::envelope::SealedEntry, veil_crypto::envelope::Position)>,
    /// The sending chain past the last message, to be stored with the entries.
    pub chain: veil_crypto::SenderChain,
    /// The payloads, handed back.
    pub payloads: Vec<Vec<u8>>,
}

/// Query: the public half of this account's member keys in `group`
/// (in a contact group, the account keys: both sides know them already).
#[derive(Debug, Message)]
#[rtype(result = "Result<MemberPublic>")]
pub struct GetMemberKeys {
    /// A group this node is in (else `Error::UnknownGroup`).
    pub group: GroupId,
}

/// Query: this device's public key in `group`.
#[derive(Debug, Message)]
#[rtype(result = "Result<VerifyKey>")]
pub struct GetDeviceKey {
    /// A group this node is in (else `Error::UnknownGroup`).
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
    /// The group's root secret: the group id derives from it, and the store keeps it sealed.
    pub secret: GroupSecret,
    /// Epoch secrets known at once (from an invitation), if any.
    pub epochs: Vec<EpochSecret>,
}

/// Event: a group is being removed; its device key leaves memory.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct GroupRemoved {
    /// The group whose device key is dropped (and zeroized) from the vault's memory.
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
    /// As `BeginRequest` returned it; the vault keeps at most 64 in progress and drops the oldest.
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
    /// As `AnswerRequest` returned it; the vault keeps at most 64 in progress and drops the oldest.
    pub handshake: HandshakeId,
    /// Noise message 3.
    pub message: Vec<u8>,
}

/// Query: the secret of the 1:1 group with `peer` (both sides derive it alone).
#[derive(Debug, Message)]
#[rtype(result = "Result<GroupSecret>")]
pub struct DeriveContactGroup {
    /// The other account's public keys, as its link or its handshake gave them.
    pub peer: AccountPublic,
}

/// Command: announce this device in `group`: its member key, the
/// member's certificate for the device, and `chain` sealed to each of
/// `recipients`. In a contact group the member keys are the account keys.
#[derive(Debug, Message)]
#[rtype(result = "Result<MemberJoined>")]
pub struct AnnounceDevice {
    /// A group this node is in (else `Error::UnknownGroup`).
    pub group: GroupId,
    /// The epoch the device announces itself in.
    pub epoch: EpochId,
    /// This device's sending chain at the position readers start from.
    pub chain: ChainState,
    /// The members the chain is sealed to, one share each.
    pub recipients: Vec<MemberPublic>,
    /// In a contact group: the name to introduce this account by.
    pub display_name: Option<veil_crypto::Name>,
}

/// Command: open a chain share sealed to this account's member key in
/// `group`; returns the sending device and its chain position.
#[derive(Debug, Message)]
#[rtype(result = "Result<(VerifyKey, ChainState)>")]
pub struct OpenChainShare {
    /// The group whose member key the share was sealed to.
    pub group: GroupId,
    /// The share as a `ChainShare` carried it (its `sealed_state`).
    pub sealed: Vec<u8>,
}

/// Command: open an epoch secret sealed to this account's member key in
/// `group`.
#[derive(Debug, Message)]
#[rtype(result = "Result<EpochSecret>")]
pub struct OpenEpochShare {
    /// The group.
    pub group: GroupId,
    /// The share: sealed to this member's key in the group, or to this
    /// account's devices (this device's agreement key opens one of them).
    pub share: SealedEpochShare,
}

/// A new epoch's secret as sealed for this device.
#[derive(Debug, Clone)]
pub enum SealedEpochShare {
    /// To this member's agreement key (`EpochShare::sealed_secret`).
    Member(Vec<u8>),
    /// To the devices of the author's account, unnamed
    /// (`EpochRenewed::device_shares`): this device tries each.
    Devices(Vec<Vec<u8>>),
}

/// Command: sign an invitation to `group` (whose secret it carries) as
/// this account's member there.
#[derive(Debug, Message)]
#[rtype(result = "Result<veil_crypto::GroupInvitation>")]
pub struct IssueInvitation {
    /// The group whose member key signs; it must be the group `secret` derives, which is not checked.
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

/// Query: the secret of this account's own group, where its devices keep
/// each other in step (`veil_crypto::account_group_secret`).
#[derive(Debug, Message)]
#[rtype(result = "Result<GroupSecret>")]
pub struct GetAccountGroupSecret;

/// Command: list `device` among this account's devices (linked by another
/// of them).
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct RecordDevice {
    /// The device's own key.
    pub device: VerifyKey,
    /// Its device agreement key.
    pub agreement: veil_crypto::AgreementPublic,
}
