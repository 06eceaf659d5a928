//! Proximity discovery: a peer found nearby (mDNS on the LAN today, BLE
//! next) is offered membership tokens, and every group it shares with this
//! node is served to it as if it had been found at the group's rendezvous
//! point — no server anywhere (docs/PROTOCOL.md §11.4).
//!
//! * **The offer.** One `Nearby` frame per connection (again when this
//!   node's groups change): a fresh 32-byte salt and, per group, the token
//!   `HMAC(group rendezvous seed, "veil/v1/nearby" ‖ salt ‖ lp(sender) ‖
//!   lp(receiver))`, padded with random tokens to a multiple of 16.
//! * **The answer.** A node that recognises a token serves the group to the
//!   sender at once (its first group frame carries the session tag, which
//!   tells the sender it is a member too), and offers its own tokens back if
//!   it has not offered them on this connection yet — mDNS tells only the
//!   node that asks, so the other side learns of it from the offer.
//!
//! A neighbour sharing nothing with this node learns that a veil node is
//! there and how many groups it has, rounded up to 16; tokens under a new
//! salt cannot be linked to earlier ones, to a group, or across periods, and
//! are bound to one sender and receiver (they cannot be replayed to another
//! node). Berty, by contrast, broadcasts every rendezvous point on the LAN.

use std::collections::{HashMap, VecDeque};

use veil_crypto::{
    Entropy, RendezvousSeed,
    rendezvous::{holds_nearby_token, nearby_token},
};
use veil_proto::sync::{GroupBody, GroupFrame, MAX_NEARBY_TOKENS, NEARBY_PAD};
use veil_transports::{NetworkHandle, libp2p::PeerId};

use crate::{Error, Result};

/// Most peers remembered as nearby (the most recently found).
const MAX_NEARBY: usize = 64;
/// How many courier ticks an offer stands before a nearby peer that shares
/// no session with this node is offered tokens again (it may have joined a
/// group since, or lost the connection).
pub(crate) const REOFFER_TICKS: u64 = 10;

/// Who is nearby, and what they were offered.
#[derive(Debug, Default)]
pub(crate) struct Nearby {
    /// Peers found nearby, most recent last.
    found: VecDeque<PeerId>,
    /// Per peer: the generation of this node's groups last offered, and the
    /// tick it was offered at.
    offered: HashMap<PeerId, (u64, u64)>,
    /// Counts changes to this node's groups.
    generation: u64,
}

impl Nearby {
    /// Records `peer` as found nearby; `true` if it has not been offered the
    /// current groups yet.
    pub(crate) fn found(&mut self, peer: PeerId) -> bool {
        self.found.retain(|p| *p != peer);
        if self.found.len() >= MAX_NEARBY
            && let Some(oldest) = self.found.pop_front()
        {
            self.offered.remove(&oldest);
        }
        self.found.push_back(peer);
        !self.is_current(&peer)
    }

    /// This node's groups changed: the peers found nearby, to be offered
    /// the new set.
    pub(crate) fn groups_changed(&mut self) -> Vec<PeerId> {
        self.generation += 1;
        self.found.iter().copied().collect()
    }

    /// `peer` offered its tokens: `true` if ours are owed in return.
    pub(crate) fn owes_answer(&self, peer: &PeerId) -> bool {
        !self.is_current(peer)
    }

    /// Nearby peers whose offer is older than [`REOFFER_TICKS`] and which
    /// `served` says share no session with this node.
    pub(crate) fn stale(&self, tick: u64, served: impl Fn(&PeerId) -> bool) -> Vec<PeerId> {
        self.found
            .iter()
            .filter(|p| !served(p))
            .filter(|p| self.offered.get(*p).is_none_or(|(_, at)| tick.saturating_sub(*at) >= REOFFER_TICKS))
            .copied()
            .collect()
    }

    /// Our tokens went to `peer` at `tick`.
    pub(crate) fn offered(&mut self, peer: PeerId, tick: u64) {
        self.offered.insert(peer, (self.generation, tick));
    }

    /// The connection to `peer` closed: what it was offered went with it.
    pub(crate) fn left(&mut self, peer: &PeerId) {
        self.offered.remove(peer);
    }

    /// This node has a new peer id: tokens bound to the old one are void.
    pub(crate) fn restarted(&mut self) {
        self.offered.clear();
    }

    fn is_current(&self, peer: &PeerId) -> bool {
        self.offered.get(peer).is_some_and(|(generation, _)| *generation == self.generation)
    }
}

/// The frames offering `seeds` (one per group) from `me` to `peer`: each a
/// fresh salt and at most [`MAX_NEARBY_TOKENS`] tokens, padded with random
/// ones to a multiple of [`NEARBY_PAD`]. A node in no group still offers one
/// frame of padding, so offering says nothing about having groups.
pub(crate) fn offer<'a>(
    seeds: impl IntoIterator<Item = &'a RendezvousSeed>,
    me: &PeerId,
    peer: &PeerId,
    entropy: &mut dyn Entropy,
) -> Result<Vec<GroupFrame>> {
    let seeds: Vec<&RendezvousSeed> = seeds.into_iter().collect();
    let (from, to) = (me.to_bytes(), peer.to_bytes());
    let mut frames = Vec::new();
    for chunk in seeds.chunks(MAX_NEARBY_TOKENS).chain(seeds.is_empty().then_some(&[][..])) {
        let mut salt = [0u8; 32];
        entropy.fill(&mut salt).map_err(Error::from)?;
        let mut tokens: Vec<[u8; 32]> = chunk.iter().map(|seed| nearby_token(seed, &salt, &from, &to)).collect();
        let padded = tokens.len().max(1).next_multiple_of(NEARBY_PAD);
        while tokens.len() < padded {
            let mut random = [0u8; 32];
            entropy.fill(&mut random).map_err(Error::from)?;
            tokens.push(random);
        }
        frames.push(GroupFrame { session_tag: salt, body: GroupBody::Nearby(tokens) });
    }
    Ok(frames)
}

/// Sends an offer's `frames` to `peer` from `me` (the peer id its tokens
/// were made for), in order.
pub(crate) async fn send(
    network: NetworkHandle,
    me: PeerId,
    peer: PeerId,
    frames: Vec<GroupFrame>,
) -> veil_transports::Result<()> {
    for frame in frames {
        network.send_frame_as(me, peer, frame.encode()).await?;
    }
    Ok(())
}

/// The groups among `groups` (by any key: group or replication id) whose
/// token `from` offered to `to` under `salt`.
pub(crate) fn recognise<'a, K: Copy + 'a>(
    groups: impl IntoIterator<Item = (&'a K, &'a RendezvousSeed)>,
    salt: &[u8; 32],
    tokens: &[[u8; 32]],
    from: &PeerId,
    to: &PeerId,
) -> Vec<K> {
    let (from, to) = (from.to_bytes(), to.to_bytes());
    groups
        .into_iter()
        .filter(|(_, seed)| holds_nearby_token(seed, salt, &from, &to, tokens))
        .map(|(group, _)| *group)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use veil_crypto::{GroupId, TestEntropy};

    use super::*;

    fn seed(b: u8) -> RendezvousSeed {
        RendezvousSeed::from_bytes([b; 32])
    }

    fn tokens(frame: &GroupFrame) -> &[[u8; 32]] {
        match &frame.body {
            GroupBody::Nearby(t) => t,
            _ => panic!("not a nearby frame"),
        }
    }

    #[test]
    fn a_member_recognises_its_groups_and_nothing_else() {
        let (alice, bob, eve) = (PeerId::random(), PeerId::random(), PeerId::random());
        let (g1, g2, g3) = (GroupId([1; 32]), GroupId([2; 32]), GroupId([3; 32]));
        let (s1, s2, s3) = (seed(1), seed(2), seed(3));
        let mut e = TestEntropy::new(b"nearby");
        let frames = offer([&s1, &s2], &alice, &bob, &mut e).unwrap();
        assert_eq!(frames.len(), 1);
        let (salt, offered) = (frames[0].session_tag, tokens(&frames[0]));
        assert_eq!(offered.len(), NEARBY_PAD);
        // Bob shares g2 only.
        assert_eq!(recognise([(&g2, &s2), (&g3, &s3)], &salt, offered, &alice, &bob), vec![g2]);
        assert_eq!(recognise([(&g1, &s1), (&g2, &s2)], &salt, offered, &alice, &bob), vec![g1, g2]);
        // Replayed to Eve, or reflected back to Alice, they name nothing.
        assert!(recognise([(&g1, &s1), (&g2, &s2)], &salt, offered, &alice, &eve).is_empty());
        assert!(recognise([(&g1, &s1), (&g2, &s2)], &salt, offered, &bob, &alice).is_empty());
    }

    #[test]
    fn every_offer_has_a_fresh_salt_and_unlinkable_tokens() {
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let mut e = TestEntropy::new(b"nearby");
        let a = offer([&seed(1)], &alice, &bob, &mut e).unwrap();
        let b = offer([&seed(1)], &alice, &bob, &mut e).unwrap();
        assert_ne!(a[0].session_tag, b[0].session_tag);
        assert!(tokens(&a[0]).iter().all(|t| !tokens(&b[0]).contains(t)));
    }

    #[test]
    fn offers_are_padded_and_split_and_never_empty() {
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let mut e = TestEntropy::new(b"nearby");
        let none = offer([], &alice, &bob, &mut e).unwrap();
        assert_eq!((none.len(), tokens(&none[0]).len()), (1, NEARBY_PAD));
        let seeds: Vec<RendezvousSeed> = (0..=MAX_NEARBY_TOKENS as u16).map(|i| seed(i as u8)).collect();
        let many = offer(&seeds[..17], &alice, &bob, &mut e).unwrap();
        assert_eq!(tokens(&many[0]).len(), 2 * NEARBY_PAD);
        let split = offer(&seeds, &alice, &bob, &mut e).unwrap();
        let counts: Vec<usize> = split.iter().map(|f| tokens(f).len()).collect();
        assert_eq!(counts, vec![MAX_NEARBY_TOKENS, NEARBY_PAD]);
        // Every frame decodes (the decoder's limits hold).
        for f in split {
            assert_eq!(GroupFrame::decode(&f.encode()).unwrap(), f);
        }
    }

    #[test]
    fn peers_are_offered_once_per_connection_and_group_change() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut n = Nearby::default();
        assert!(n.found(a));
        n.offered(a, 0);
        assert!(!n.found(a), "found again, already offered");
        assert!(!n.owes_answer(&a));
        assert!(n.owes_answer(&b), "never offered");
        assert_eq!(n.groups_changed(), vec![a]);
        assert!(n.owes_answer(&a), "the groups changed since");
        n.offered(a, 3);
        n.left(&a);
        assert!(n.owes_answer(&a), "a new connection gets a new offer");
        n.offered(a, 3);
        n.restarted();
        assert!(n.owes_answer(&a), "a new peer id voids the tokens");
    }

    #[test]
    fn stale_offers_are_renewed_unless_a_session_serves_the_peer() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut n = Nearby::default();
        n.found(a);
        n.found(b);
        n.offered(a, 5);
        assert_eq!(n.stale(5, |_| false), vec![b]);
        assert_eq!(n.stale(5 + REOFFER_TICKS, |_| false), vec![a, b]);
        assert_eq!(n.stale(5 + REOFFER_TICKS, |p| *p == a), vec![b]);
    }

    #[test]
    fn only_the_most_recent_peers_are_remembered() {
        let mut n = Nearby::default();
        let peers: Vec<PeerId> = (0..=MAX_NEARBY).map(|_| PeerId::random()).collect();
        for p in &peers {
            n.found(*p);
        }
        let stale = n.stale(0, |_| false);
        assert_eq!(stale.len(), MAX_NEARBY);
        assert!(!stale.contains(&peers[0]));
    }
}
