//! How often a multi-member group looks its members up at its rendezvous
//! point.
//!
//! Members that come online look the group up and dial those already there,
//! so the ones already connected need to look only now and then, for members
//! they missed. Each lookup asks a rendezvous server for every registration
//! at the point and checks every signed record: fifty members looking every
//! slow tick kept a server and two cores busy for nothing. So a lookup that
//! finds nobody new doubles the wait before the next one (up to
//! [`MAX_BACKOFF`] times the base), and anything that may have changed who is
//! reachable (a peer left, new points, a new peer id) makes the next lookup
//! due at once. Peers already seen are not counted as new again: stale
//! registrations (peer ids of earlier periods) must not keep lookups
//! frequent. Peers whose dial failed are dialed again at every lookup (a
//! transient failure must not hide a member for good), without making
//! lookups more frequent.

use std::collections::HashSet;

use veil_transports::libp2p::PeerId;

/// The longest wait between lookups, as a multiple of the base.
pub(crate) const MAX_BACKOFF: u64 = 16;

/// When a group's next lookup is due, in courier ticks.
#[derive(Debug, Default)]
pub(crate) struct LookupPace {
    /// The tick from which the next lookup is due.
    next: u64,
    /// The current multiple of the base wait.
    backoff: u64,
    /// Peers found by lookups since the last reset.
    seen: HashSet<PeerId>,
    /// Of those, peers whose last dial failed.
    failed: HashSet<PeerId>,
}

impl LookupPace {
    /// Whether a lookup is due at `tick`.
    pub(crate) fn due(&self, tick: u64) -> bool {
        tick >= self.next
    }

    /// Of the peers a lookup at `tick` `found`, those to dial: the ones not
    /// seen before and the ones whose dial failed. Schedules the next lookup
    /// `base` ticks later if some were new, or twice the last wait if none was.
    pub(crate) fn looked(&mut self, tick: u64, base: u64, found: impl IntoIterator<Item = PeerId>) -> Vec<PeerId> {
        let mut new = false;
        let dial: Vec<PeerId> = found
            .into_iter()
            .filter(|p| {
                let unseen = self.seen.insert(*p);
                new |= unseen;
                unseen || self.failed.contains(p)
            })
            .collect();
        self.backoff = if new { 1 } else { (self.backoff * 2).clamp(1, MAX_BACKOFF) };
        self.next = tick.saturating_add(base.max(1).saturating_mul(self.backoff));
        dial
    }

    /// Records the outcome of a dial of a peer a lookup found.
    pub(crate) fn dialed(&mut self, peer: PeerId, reached: bool) {
        if reached {
            self.failed.remove(&peer);
        } else {
            self.failed.insert(peer);
        }
    }

    /// Makes the next lookup due at once and `peer` (if any) new again.
    pub(crate) fn reset(&mut self, peer: Option<&PeerId>) {
        self.next = 0;
        self.backoff = 0;
        match peer {
            Some(p) => {
                self.seen.remove(p);
                self.failed.remove(p);
            }
            None => {
                self.seen.clear();
                self.failed.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn quiet_lookups_back_off_and_a_reset_makes_one_due() {
        let mut pace = LookupPace::default();
        assert!(pace.due(0));
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(pace.looked(0, 10, [a, b]), vec![a, b]);
        assert!(!pace.due(9) && pace.due(10));
        // The same peers again are not new: the waits double, up to the cap.
        let mut tick = 10;
        for wait in [20, 40, 80, 160, 160] {
            assert!(pace.looked(tick, 10, [a, b]).is_empty());
            assert!(!pace.due(tick + wait - 1) && pace.due(tick + wait), "wait {wait}");
            tick += wait;
        }
        // A failed dial is tried again at every lookup, without making
        // lookups more frequent; once reached, it is not.
        pace.dialed(b, false);
        assert_eq!(pace.looked(tick, 10, [a, b]), vec![b]);
        assert!(!pace.due(tick + 159) && pace.due(tick + 160));
        pace.dialed(b, true);
        assert!(pace.looked(tick, 10, [a, b]).is_empty());
        // A peer left: due now, and it counts as new when found again.
        pace.reset(Some(&a));
        assert!(pace.due(tick));
        assert_eq!(pace.looked(tick, 10, [a, b]), vec![a]);
        assert!(pace.due(tick + 10));
        pace.reset(None);
        assert_eq!(pace.looked(tick, 10, [a, b]), vec![a, b]);
    }
}
