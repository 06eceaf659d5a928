//! The courier's sessions, without I/O: which connected peer serves which
//! group (as a member, or as the group's replication node), and which peers
//! proved they are a contact or member. Sessions live in memory only: a
//! lookup or an inbound frame under a group's session tag starts one, and
//! they end when the peer leaves or the network restarts.

use std::collections::{HashMap, HashSet};

use veil_crypto::GroupId;
use veil_transports::libp2p::PeerId;

/// Who serves which group.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    groups: HashMap<PeerId, HashSet<GroupId>>,
    /// Peers serving as a group's replication node (their frames use the
    /// replica's session tags).
    replicas: HashSet<(GroupId, PeerId)>,
    /// Peers connected now that proved they are a contact or member (a frame
    /// under one of our groups' member tags, or a nearby offer naming one).
    proven: HashSet<PeerId>,
}

impl Sessions {
    /// Records that `peer` serves `group`; `true` if the session is new (its
    /// owed entries then go out from the outbox, in order).
    pub(crate) fn join(&mut self, group: GroupId, peer: PeerId) -> bool {
        self.groups.entry(peer).or_default().insert(group)
    }

    /// Records that `peer` serves `group` as its replication node (a session
    /// of its own may follow through [`join`](Self::join)).
    pub(crate) fn join_as_replica(&mut self, group: GroupId, peer: PeerId) {
        self.replicas.insert((group, peer));
    }

    /// Whether `peer` serves `group`.
    pub(crate) fn serves(&self, peer: &PeerId, group: &GroupId) -> bool {
        self.groups.get(peer).is_some_and(|g| g.contains(group))
    }

    /// Whether `peer` serves any group.
    pub(crate) fn serves_any(&self, peer: &PeerId) -> bool {
        self.groups.get(peer).is_some_and(|g| !g.is_empty())
    }

    /// The groups `peer` serves.
    pub(crate) fn groups_of(&self, peer: &PeerId) -> impl Iterator<Item = &GroupId> {
        self.groups.get(peer).into_iter().flatten()
    }

    /// The peers serving `group`.
    pub(crate) fn peers_of(&self, group: &GroupId) -> Vec<PeerId> {
        self.groups.iter().filter(|(_, groups)| groups.contains(group)).map(|(p, _)| *p).collect()
    }

    /// Whether `peer` serves `group` as its replication node.
    pub(crate) fn is_replica(&self, group: &GroupId, peer: &PeerId) -> bool {
        self.replicas.contains(&(*group, *peer))
    }

    /// Records that `peer` proved it is a contact or member; `true` the
    /// first time since it connected (its relays are then learned).
    pub(crate) fn prove(&mut self, peer: PeerId) -> bool {
        self.proven.insert(peer)
    }

    /// `peer` left: its sessions end; returns the groups it served.
    pub(crate) fn leave(&mut self, peer: &PeerId) -> HashSet<GroupId> {
        self.replicas.retain(|(_, p)| p != peer);
        self.proven.remove(peer);
        self.groups.remove(peer).unwrap_or_default()
    }

    /// `group` stopped here: nobody serves it any more.
    pub(crate) fn stop_group(&mut self, group: &GroupId) {
        for groups in self.groups.values_mut() {
            groups.remove(group);
        }
        self.replicas.retain(|(g, _)| g != group);
    }

    /// Every session ends (the network restarted, or the courier did).
    pub(crate) fn clear(&mut self) {
        self.groups.clear();
        self.replicas.clear();
        self.proven.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: u8) -> GroupId {
        GroupId([n; 32])
    }

    #[test]
    fn a_session_starts_once_and_ends_when_its_peer_leaves() {
        let (mut s, a, b) = (Sessions::default(), PeerId::random(), PeerId::random());
        assert!(s.join(group(1), a), "new");
        assert!(!s.join(group(1), a), "under way");
        assert!(s.join(group(2), a));
        assert!(s.join(group(1), b));
        assert!(s.serves(&a, &group(2)) && !s.serves(&b, &group(2)));
        let mut peers = s.peers_of(&group(1));
        peers.sort();
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(peers, both);
        let mut left: Vec<GroupId> = s.leave(&a).into_iter().collect();
        left.sort();
        assert_eq!(left, [group(1), group(2)]);
        assert!(!s.serves_any(&a));
        assert_eq!(s.peers_of(&group(1)), [b]);
        assert!(s.join(group(1), a), "new again after it came back");
    }

    #[test]
    fn proof_and_the_replica_role_last_as_long_as_the_connection() {
        let (mut s, a) = (Sessions::default(), PeerId::random());
        assert!(s.prove(a));
        assert!(!s.prove(a), "relays are learned once per connection");
        s.join_as_replica(group(1), a);
        assert!(s.is_replica(&group(1), &a) && !s.is_replica(&group(2), &a));
        s.leave(&a);
        assert!(s.prove(a));
        assert!(!s.is_replica(&group(1), &a));
    }

    #[test]
    fn a_stopped_group_has_no_sessions_and_a_restart_ends_all() {
        let (mut s, a) = (Sessions::default(), PeerId::random());
        s.join(group(1), a);
        s.join(group(2), a);
        s.join_as_replica(group(1), a);
        s.stop_group(&group(1));
        assert!(!s.serves(&a, &group(1)) && !s.is_replica(&group(1), &a));
        assert_eq!(s.groups_of(&a).collect::<Vec<_>>(), [&group(2)]);
        s.prove(a);
        s.clear();
        assert!(!s.serves_any(&a) && s.prove(a));
    }
}
