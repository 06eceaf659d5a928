//! Who hears this node's heads of each pull-synced group, and when.
//!
//! New entries reach connected members by live push; heads are the repair
//! path (a member that was not connected to an entry's author, a frame it
//! could not take yet). Offering them to every peer at every change costs
//! O(members²) frames per entry, which swamped 30-member groups on two
//! cores. Instead heads spread like a rumour:
//!
//! * when they change, they go to at most [`FANOUT`] peers not known to
//!   have them (those lacking something ask, and spread their new heads in
//!   turn);
//! * a peer that told different heads is answered, so both learn where the
//!   other stands; one that told the same heads is not;
//! * a peer just met hears them regardless;
//! * at every slow tick they go to one peer that last told different
//!   heads, even if it heard ours before (anti-entropy: what was lost is
//!   repaired by the exchange that follows).
//!
//! Once every peer told the same heads, nothing is sent.

use std::{
    collections::{HashMap, HashSet, hash_map::RandomState},
    hash::BuildHasher,
};

use veil_crypto::{
    GroupId,
    envelope::{EntryHash, MAX_PARENTS},
};
use veil_transports::libp2p::PeerId;

/// Most peers a change of heads goes to at once (besides answers and
/// peers just met).
pub(crate) const FANOUT: usize = 2;

/// A peer of a group's session.
type Key = (GroupId, PeerId);

/// The heads of a group known to be on each side of each session.
#[derive(Debug, Default)]
pub(crate) struct HeadsGossip {
    /// The heads this node last offered each peer (sorted).
    offered: HashMap<Key, Vec<EntryHash>>,
    /// The heads each peer last told this node (sorted).
    told: HashMap<Key, Vec<EntryHash>>,
    /// Peers that told their heads or were just met, not answered since.
    owed: HashSet<Key>,
    /// The heads of each group last spread to [`FANOUT`] peers.
    spread: HashMap<GroupId, Vec<EntryHash>>,
    /// Seeds the choice of peers, differently in every process.
    choice: RandomState,
}

impl HeadsGossip {
    /// Records the heads `peer` told for `group`; it is answered if ours
    /// differ. Returns whether they are the first it told in this session.
    pub(crate) fn told(&mut self, group: GroupId, peer: PeerId, mut heads: Vec<EntryHash>) -> bool {
        heads.sort();
        self.owed.insert((group, peer));
        self.told.insert((group, peer), heads).is_none()
    }

    /// Makes `peer` hear this node's heads of `group` at the next offer, as
    /// if it had never heard them (a session just started).
    pub(crate) fn met(&mut self, group: GroupId, peer: PeerId) {
        self.offered.remove(&(group, peer));
        self.told.remove(&(group, peer));
        self.owed.insert((group, peer));
    }

    /// The peers among `peers` that should hear `heads` (this node's heads
    /// of `group`) now, each recorded as having heard them; `slow` is a slow
    /// tick.
    pub(crate) fn recipients(
        &mut self,
        group: GroupId,
        heads: &[EntryHash],
        peers: &[PeerId],
        slow: bool,
    ) -> Vec<PeerId> {
        let mut ours = heads.to_vec();
        ours.sort();
        let key = |p: &PeerId| (group, *p);
        let differs = |map: &HashMap<Key, Vec<EntryHash>>, p: &PeerId| map.get(&key(p)) != Some(&ours);
        // Answers: owed, told other heads (or nothing), not told ours yet.
        let mut chosen: Vec<PeerId> = peers
            .iter()
            .filter(|p| self.owed.contains(&key(p)) && differs(&self.told, p) && differs(&self.offered, p))
            .copied()
            .collect();
        let changed = self.spread.get(&group) != Some(&ours);
        if changed || slow {
            // A rumour to a few, or one anti-entropy partner.
            let mut others: Vec<PeerId> = peers
                .iter()
                .filter(|p| differs(&self.told, p) && (slow || differs(&self.offered, p)) && !chosen.contains(p))
                .copied()
                .collect();
            others.sort_by_key(|p| self.choice.hash_one((&ours, p)));
            others.truncate(if changed { FANOUT } else { 1 });
            chosen.extend(others);
            self.spread.insert(group, ours.clone());
        }
        for p in peers {
            self.owed.remove(&key(p));
        }
        for p in &chosen {
            self.offered.insert(key(p), ours.clone());
        }
        chosen.sort();
        chosen
    }

    /// Forgets `peer` (it disconnected).
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.offered.retain(|(_, p), _| p != peer);
        self.told.retain(|(_, p), _| p != peer);
        self.owed.retain(|(_, p)| p != peer);
    }

    /// Forgets everything (the network restarted under a new peer id).
    pub(crate) fn clear(&mut self) {
        self.offered.clear();
        self.told.clear();
        self.owed.clear();
        self.spread.clear();
    }
}

/// The parents of a new entry among a log's `heads`: all of them, or, past
/// [`MAX_PARENTS`] (many members writing at once), the first in hash order.
/// The others stay heads and a later entry names them: each entry merges up
/// to 32 heads into one.
pub(crate) fn parents_of(heads: &[EntryHash]) -> Vec<EntryHash> {
    let mut parents = heads.to_vec();
    parents.sort();
    parents.dedup();
    parents.truncate(MAX_PARENTS);
    parents
}

/// A log's heads once `new`, with `parents`, is appended to it.
pub(crate) fn heads_after(heads: &[EntryHash], parents: &[EntryHash], new: EntryHash) -> Vec<EntryHash> {
    let mut after: Vec<EntryHash> = heads.iter().filter(|h| !parents.contains(h)).copied().collect();
    after.push(new);
    after
}

/// This node's heads of a group: its metadata log's, then its message log's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Heads {
    pub(crate) metadata: Vec<EntryHash>,
    pub(crate) messages: Vec<EntryHash>,
}

impl Heads {
    /// Both logs' heads in one list.
    pub(crate) fn all(&self) -> Vec<EntryHash> {
        self.metadata.iter().chain(&self.messages).copied().collect()
    }
}

/// This node's heads of each group as last read from storage, trusted until
/// something may have been stored: a heads frame costs no storage read, and
/// heads a peer tells that are ours need no lookup.
#[derive(Debug, Default)]
pub(crate) struct OwnHeads {
    /// Bumped whenever the group's heads may have changed.
    generation: HashMap<GroupId, u64>,
    /// The heads read, with the generation the read started at.
    read: HashMap<GroupId, (u64, Heads)>,
}

impl OwnHeads {
    /// The group's heads may have changed (entries stored; or just to be
    /// safe, now and then).
    pub(crate) fn changed(&mut self, group: GroupId) {
        *self.generation.entry(group).or_default() += 1;
    }

    /// The heads of `group`, if read since they last may have changed.
    pub(crate) fn current(&self, group: &GroupId) -> Option<&Heads> {
        let generation = self.generation.get(group).copied().unwrap_or_default();
        self.read.get(group).filter(|(g, _)| *g == generation).map(|(_, h)| h)
    }

    /// The generation a read of `group`'s heads starting now belongs to.
    pub(crate) fn reading(&self, group: &GroupId) -> u64 {
        self.generation.get(group).copied().unwrap_or_default()
    }

    /// Records heads read at `generation` (stale already if that changed).
    pub(crate) fn read(&mut self, group: GroupId, generation: u64, heads: Heads) {
        self.read.insert(group, (generation, heads));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const G: GroupId = GroupId([7; 32]);

    fn h(n: u8) -> EntryHash {
        EntryHash([n; 32])
    }

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn a_change_spreads_to_a_few_peers_once_then_one_per_slow_tick() {
        let mut g = HeadsGossip::default();
        let all = peers(20);
        let first = g.recipients(G, &[h(1)], &all, false);
        assert_eq!(first.len(), FANOUT);
        // Unchanged heads at a fast tick: nothing more.
        assert!(g.recipients(G, &[h(1)], &all, false).is_empty());
        // A slow tick: one peer that has not told the same heads.
        let told_same = all[0];
        g.told(G, told_same, vec![h(1)]);
        let slow = g.recipients(G, &[h(1)], &all, true);
        assert_eq!(slow.len(), 1);
        assert_ne!(slow[0], told_same);
        // New heads spread again, to peers not known to have them.
        let third = g.recipients(G, &[h(2), h(1)], &all, false);
        assert_eq!(third.len(), FANOUT);
    }

    #[test]
    fn a_peer_telling_other_heads_is_answered_once() {
        let mut g = HeadsGossip::default();
        let all = peers(6);
        assert_eq!(g.recipients(G, &[h(1)], &all, false).len(), FANOUT);
        // Every peer tells other heads: each not yet offered ours is answered.
        for p in &all {
            g.told(G, *p, vec![h(9)]);
        }
        let answered = g.recipients(G, &[h(1)], &all, false);
        assert_eq!(answered.len(), all.len() - FANOUT);
        assert!(g.recipients(G, &[h(1)], &all, false).is_empty());
        // Peers telling the same heads are not answered, and no slow tick
        // picks them.
        for p in &all {
            g.told(G, *p, vec![h(1)]);
        }
        assert!(g.recipients(G, &[h(1)], &all, false).is_empty());
        assert!(g.recipients(G, &[h(1)], &all, true).is_empty());
    }

    #[test]
    fn an_entry_names_at_most_the_parent_limit_and_the_rest_stay_heads() {
        let heads: Vec<EntryHash> = (0..40u8).rev().map(h).collect();
        let parents = parents_of(&heads);
        assert_eq!(parents, (0..32u8).map(h).collect::<Vec<_>>());
        let after = heads_after(&heads, &parents, h(200));
        assert_eq!(after.len(), 9);
        assert!(after.contains(&h(200)) && (32..40u8).all(|i| after.contains(&h(i))));
        // The next entry merges them all.
        let next = parents_of(&after);
        assert_eq!(heads_after(&after, &next, h(201)), vec![h(201)]);
        assert_eq!(parents_of(&[h(1), h(1)]), vec![h(1)]);
    }

    #[test]
    fn own_heads_are_trusted_only_until_they_may_have_changed() {
        let mut own = OwnHeads::default();
        assert_eq!(own.current(&G), None);
        let heads = Heads { metadata: vec![h(1)], messages: vec![h(2)] };
        let before = own.reading(&G);
        own.read(G, before, heads.clone());
        assert_eq!(own.current(&G), Some(&heads));
        assert_eq!(heads.all(), vec![h(1), h(2)]);
        // Something stored while a read was under way: that read is stale.
        let during = own.reading(&G);
        own.changed(G);
        own.read(G, during, heads);
        assert_eq!(own.current(&G), None);
    }

    #[test]
    fn a_peer_just_met_hears_the_heads_again() {
        let mut g = HeadsGossip::default();
        let all = peers(2);
        for p in &all {
            assert!(g.told(G, *p, vec![h(1)]), "the first heads of the session");
            assert!(!g.told(G, *p, vec![h(1)]));
        }
        assert!(g.recipients(G, &[h(1)], &all, false).is_empty());
        g.met(G, all[1]);
        assert!(g.told(G, all[1], vec![h(1)]), "a new session");
        g.met(G, all[1]);
        assert_eq!(g.recipients(G, &[h(1)], &all, false), vec![all[1]]);
        g.forget(&all[1]);
        g.clear();
        assert!(g.recipients(G, &[h(1)], &[], true).is_empty());
    }
}
