//! Messages of the `ContactBook`.

use super::*;

/// The contact link in both text forms, with its state when the answer was made.
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
    /// Their account keys: from their link for a request we sent, authenticated by the handshake for one we received.
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
    /// The requester, by its account signing key.
    pub account: VerifyKey,
    /// What to do; `Accept` on a contact already accepted changes nothing.
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
    /// The contact, by its account signing key.
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
    /// The contact or requester, by its account signing key.
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
    /// The peer that sent it, by its current peer id; this says nothing of its account.
    pub peer: veil_transports::libp2p::PeerId,
    /// Where to answer.
    pub id: veil_transports::InboundRequestId,
    /// The request's bytes, not yet decoded: a `HandshakeFrame` of at most the network's frame size.
    pub request: Vec<u8>,
}

/// Event (from the transport manager): mDNS found a peer on the LAN.
/// Pending requests are tried against it directly; message 1's point
/// proof is bound to a fresh handshake, so a neighbour that does not know
/// a link's seed learns nothing it could link across sessions.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct LanPeerFound {
    /// The peer mDNS found, by the peer id it announced.
    pub peer: veil_transports::libp2p::PeerId,
}

/// Event (from a contact group's log): the other account announced
/// itself in our 1:1 group, so it accepted.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ContactJoined {
    /// The 1:1 group the other account announced itself in.
    pub group: GroupId,
    /// The name the other account introduced itself by, if any.
    pub display_name: Option<String>,
}

/// Command (from the account's sync): another device of this account
/// changed a contact; do the same here, without telling the others again.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct ApplyContact {
    /// The contact's account.
    pub account: AccountPublic,
    /// What the other device did.
    pub change: veil_proto::account::ContactChangeKind,
    /// The name the contact introduced itself by, if the other device knows one.
    pub display_name: Option<String>,
}

/// Command (from the account's sync): another device of this account
/// changed the contact link; take the same seed and state here.
#[derive(Debug, Message)]
#[rtype(result = "Result<LinkInfo>")]
pub struct AdoptLink {
    /// The link's seed.
    pub seed: veil_crypto::RendezvousSeed,
    /// Whether it answers requests.
    pub enabled: bool,
    /// Its limits.
    pub limits: veil_storage::LinkLimits,
}
