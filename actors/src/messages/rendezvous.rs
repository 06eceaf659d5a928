//! Messages of the `RendezvousRotator`.

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
    /// A group this node is in; its points come from the group's rendezvous seed.
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

/// Query: the active points of `topic` under `seed` now, by the rotator's
/// schedule and point clock (so everyone who asks computes points the same
/// way, at the same time).
#[derive(Debug, Message)]
#[rtype(result = "Result<ActivePoints>")]
pub struct PointsOf {
    /// What the points are for (a contact link, a group).
    pub topic: veil_crypto::rendezvous::Topic,
    /// The link's or group's rendezvous seed; whoever holds it can compute the points.
    pub seed: veil_crypto::rendezvous::RendezvousSeed,
}

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
