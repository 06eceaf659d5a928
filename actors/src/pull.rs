//! Pull sync's decisions, without I/O: which missing entries to ask a peer
//! for (not again while an answer may be on its way), when to open a
//! reconciliation with a peer (not while one this node opened runs), and
//! which offered heads and which own heads wait for the next tick. The
//! `Courier` reads the store and sends the frames; it passes the time in.

use std::collections::{HashMap, HashSet, hash_map::Entry};
use std::time::{Duration, Instant};

use veil_crypto::{GroupId, envelope::EntryHash};
use veil_transports::libp2p::PeerId;

/// How long an entry asked for is not asked for again.
pub(crate) const ASK_AGAIN: Duration = Duration::from_secs(2);

/// How long a reconciliation this node opened with a peer runs before it
/// may open another with the same peer (a transfer in flight must not be
/// asked for twice).
pub(crate) const RECONCILE_PAUSE: Duration = Duration::from_secs(5);

/// What pull sync has under way, per group and peer.
#[derive(Debug, Default)]
pub(crate) struct PullSync {
    /// Entries asked for lately: of whom, and when.
    asked: HashMap<(GroupId, EntryHash), (PeerId, Instant)>,
    /// When this node last opened a reconciliation with each peer.
    reconciling: HashMap<(GroupId, PeerId), Instant>,
    /// The heads each peer last offered and this node has not looked at.
    heard: HashMap<(GroupId, PeerId), Vec<EntryHash>>,
    /// Groups whose heads may have changed, or that owe a peer an answer:
    /// their heads are offered at the next tick.
    heads_due: HashSet<GroupId>,
}

impl PullSync {
    /// Of `missing` (entries of `group` not stored here), those to ask
    /// `peer` for at `now`: none asked for within [`ASK_AGAIN`], of anyone.
    /// Asking again does not move an entry's time on (heads heard every
    /// second would otherwise hold it back for ever).
    pub(crate) fn ask_now(
        &mut self,
        group: GroupId,
        peer: PeerId,
        missing: Vec<EntryHash>,
        now: Instant,
    ) -> Vec<EntryHash> {
        self.asked.retain(|_, (_, at)| now.saturating_duration_since(*at) < ASK_AGAIN);
        missing
            .into_iter()
            .filter(|h| match self.asked.entry((group, *h)) {
                Entry::Occupied(_) => false,
                Entry::Vacant(v) => {
                    v.insert((peer, now));
                    true
                }
            })
            .collect()
    }

    /// Whether to open a reconciliation of `group` with `peer` at `now`
    /// (none this node opened with it within [`RECONCILE_PAUSE`]); if so,
    /// it counts as opened.
    pub(crate) fn may_reconcile(&mut self, group: GroupId, peer: PeerId, now: Instant) -> bool {
        if self.reconciling.get(&(group, peer)).is_some_and(|t| now.saturating_duration_since(*t) < RECONCILE_PAUSE) {
            return false;
        }
        self.reconciling.insert((group, peer), now);
        true
    }

    /// Entries from `peer` were stored with nothing missing: a new
    /// reconciliation may open at once when something is missing again.
    pub(crate) fn caught_up(&mut self, group: GroupId, peer: PeerId) {
        self.reconciling.remove(&(group, peer));
    }

    /// `peer` offered `heads` of `group`: looked at the next tick (what a
    /// peer offers has usually just been pushed by its author).
    pub(crate) fn heard(&mut self, group: GroupId, peer: PeerId, heads: Vec<EntryHash>) {
        self.heard.insert((group, peer), heads);
        self.heads_due.insert(group);
    }

    /// The heads offered since the last tick, each peer's latest.
    pub(crate) fn take_heard(&mut self) -> Vec<(GroupId, PeerId, Vec<EntryHash>)> {
        self.heard.drain().map(|((group, peer), heads)| (group, peer, heads)).collect()
    }

    /// Whether entries of `group` were asked for lately (answers may be
    /// on their way).
    pub(crate) fn has_asked(&self, group: &GroupId) -> bool {
        self.asked.keys().any(|(g, _)| g == group)
    }

    /// `group`'s heads are offered at the next tick.
    pub(crate) fn heads_due(&mut self, group: GroupId) {
        self.heads_due.insert(group);
    }

    /// Whether `group`'s heads were due; they are not any more.
    pub(crate) fn take_heads_due(&mut self, group: &GroupId) -> bool {
        self.heads_due.remove(group)
    }

    /// `peer` left: answers it owed will not come, and what it offered or
    /// was asked does not matter any more.
    pub(crate) fn forget_peer(&mut self, peer: &PeerId) {
        self.reconciling.retain(|(_, p), _| p != peer);
        self.heard.retain(|(_, p), _| p != peer);
        self.asked.retain(|_, (p, _)| p != peer);
    }

    /// `group` stopped here.
    pub(crate) fn forget_group(&mut self, group: &GroupId) {
        self.heads_due.remove(group);
        self.reconciling.retain(|(g, _), _| g != group);
        self.asked.retain(|(g, _), _| g != group);
        self.heard.retain(|(g, _), _| g != group);
    }

    /// Every session ended (the network restarted): nothing is under way
    /// with anyone. Heads still due stay due.
    pub(crate) fn forget_sessions(&mut self) {
        self.reconciling.clear();
        self.heard.clear();
        self.asked.clear();
    }
}

#[cfg(test)]
mod tests {
    use veil_crypto::{GroupId, envelope::EntryHash};

    use super::*;

    fn group(n: u8) -> GroupId {
        GroupId([n; 32])
    }

    fn hash(n: u8) -> EntryHash {
        EntryHash([n; 32])
    }

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn an_entry_is_asked_for_once_until_the_answer_is_overdue() {
        let (mut pull, t0, (a, b), g) = (PullSync::default(), Instant::now(), (peer(), peer()), group(1));
        assert_eq!(pull.ask_now(g, a, vec![hash(1), hash(2)], t0), [hash(1), hash(2)]);
        // Offered again by another peer a moment later: asked of nobody.
        assert_eq!(pull.ask_now(g, b, vec![hash(1), hash(2), hash(3)], ms(t0, 500)), [hash(3)]);
        // Still within the wait of the first ask (asking again did not move it on).
        assert!(pull.ask_now(g, b, vec![hash(1)], ms(t0, 1_999)).is_empty());
        // Overdue: asked again, of whoever offers it now.
        assert_eq!(pull.ask_now(g, b, vec![hash(1), hash(3)], ms(t0, 2_000)), [hash(1)]);
        // The same hash in another group is another entry.
        assert_eq!(pull.ask_now(group(2), a, vec![hash(1)], ms(t0, 2_000)), [hash(1)]);
    }

    #[test]
    fn a_peer_that_left_is_owed_nothing_and_its_asks_are_free_again() {
        let (mut pull, t0, (a, b), g) = (PullSync::default(), Instant::now(), (peer(), peer()), group(1));
        pull.ask_now(g, a, vec![hash(1)], t0);
        pull.ask_now(g, b, vec![hash(2)], t0);
        pull.forget_peer(&a);
        assert_eq!(pull.ask_now(g, b, vec![hash(1), hash(2)], ms(t0, 10)), [hash(1)]);
    }

    #[test]
    fn a_reconciliation_is_not_opened_twice_while_it_runs() {
        let (mut pull, t0, (a, b), g) = (PullSync::default(), Instant::now(), (peer(), peer()), group(1));
        assert!(pull.may_reconcile(g, a, t0));
        assert!(!pull.may_reconcile(g, a, ms(t0, 4_999)));
        // Another peer, or another group, is another reconciliation.
        assert!(pull.may_reconcile(g, b, ms(t0, 1)));
        assert!(pull.may_reconcile(group(2), a, ms(t0, 1)));
        assert!(pull.may_reconcile(g, a, ms(t0, 5_000)));
        // Caught up: the next gap opens one at once.
        pull.caught_up(g, a);
        assert!(pull.may_reconcile(g, a, ms(t0, 5_001)));
        // A restart forgets them all.
        pull.forget_sessions();
        assert!(pull.may_reconcile(g, b, ms(t0, 5_002)));
    }

    #[test]
    fn offered_heads_wait_for_the_tick_each_peer_s_latest_only() {
        let (mut pull, (a, b), g) = (PullSync::default(), (peer(), peer()), group(1));
        pull.heard(g, a, vec![hash(1)]);
        pull.heard(g, a, vec![hash(2)]);
        pull.heard(g, b, vec![hash(3)]);
        let mut heard = pull.take_heard();
        heard.sort_by_key(|(_, _, h)| h.clone());
        assert_eq!(heard, [(g, a, vec![hash(2)]), (g, b, vec![hash(3)])]);
        assert!(pull.take_heard().is_empty(), "taken once");
        // Hearing heads makes ours due too (the peer may lack what we hold).
        assert!(pull.take_heads_due(&g));
        assert!(!pull.take_heads_due(&g));
    }

    #[test]
    fn a_stopped_group_leaves_nothing_behind_and_a_restart_keeps_heads_due() {
        let (mut pull, t0, a, g) = (PullSync::default(), Instant::now(), peer(), group(1));
        pull.ask_now(g, a, vec![hash(1)], t0);
        pull.may_reconcile(g, a, t0);
        pull.heard(g, a, vec![hash(2)]);
        pull.forget_group(&g);
        assert!(pull.take_heard().is_empty());
        assert!(!pull.take_heads_due(&g));
        assert!(pull.may_reconcile(g, a, ms(t0, 1)));
        assert_eq!(pull.ask_now(g, a, vec![hash(1)], ms(t0, 1)), [hash(1)]);

        pull.heads_due(group(2));
        pull.forget_sessions();
        assert!(pull.take_heads_due(&group(2)), "own heads are still offered after a restart");
    }
}
