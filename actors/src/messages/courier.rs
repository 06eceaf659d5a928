//! Messages of the `Courier`.

use super::*;
use veil_transports::libp2p::PeerId;

/// Command: start (or refresh) a stored group: its log, its keys in the
/// vault, its rendezvous points.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct StartGroup {
    /// A group already stored (recorded through the vault's `AddGroup`).
    pub group: GroupId,
}

/// Command: stop serving a group whose data is about to be removed: its
/// announcements are withdrawn, its sessions and queues dropped, and its
/// log stops once nothing holds it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopGroup {
    /// The group about to be removed.
    pub group: GroupId,
}

/// Event: a group's log wrote entries: owed to the members of a
/// contact group (its outbox), pushed live to the connected members of
/// a multi-member group.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EntriesOwed {
    /// The group whose log wrote them.
    pub group: GroupId,
    /// The hashes of the entries the log just stored.
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
    /// The sender, by its current peer id; the frame's session tag says which group it is for.
    pub peer: PeerId,
    /// The frame's bytes, not yet decoded (a `GroupFrame`, unless malformed).
    pub frame: Vec<u8>,
}

/// Event (from the transport manager): frames arrived, in order (what
/// the network had delivered while the last ones were handled).
/// Resolves once the entries they carry are stored.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InboundFrames {
    /// The frames in arrival order; the entries one peer sent in one group reach its log as one batch.
    pub frames: Vec<InboundFrame>,
}

/// Event (from the transport manager): the last connection to a peer closed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PeerLeft {
    /// The peer, by the peer id it was connected under.
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

/// Event (from the transport manager): the swarm restarted, under a new peer id after a key rotation.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct NetworkRestarted {
    /// This node's peer id from now on (the same after a policy change); session tags are computed with it.
    pub peer_id: PeerId,
}
