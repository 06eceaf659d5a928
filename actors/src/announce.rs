//! Keeps what a node announces at rendezvous points equal to what it wants
//! announced, one change at a time.
//!
//! Announcing is asynchronous (a registration may wait for the node's first
//! address), so two overlapping updates could land out of order and leave an
//! old point registered after its period, or a withdrawn link announced
//! after it was disabled. Changes are therefore applied strictly in
//! sequence, each computed against what the previous one left.

use std::time::Duration;

use veil_crypto::rendezvous::RendezvousPoint;
use veil_transports::NetworkHandle;

/// One step from what is announced to what is wanted.
#[derive(Debug)]
pub(crate) struct Change {
    withdraw: Vec<RendezvousPoint>,
    announce: Vec<RendezvousPoint>,
    target: Vec<RendezvousPoint>,
}

/// The announcements of one thing (a link, a group).
#[derive(Debug, Default)]
pub(crate) struct Announcements {
    wanted: Vec<RendezvousPoint>,
    current: Vec<RendezvousPoint>,
    busy: bool,
}

impl Announcements {
    /// Wants exactly `points` announced; returns the change to apply now,
    /// unless one is in progress (the next is computed when it is done).
    pub(crate) fn want(&mut self, points: Vec<RendezvousPoint>) -> Option<Change> {
        self.wanted = points;
        self.next()
    }

    /// Forgets what is registered (the network restarted under a new peer
    /// id, so nothing is) and announces everything wanted again.
    pub(crate) fn reset(&mut self) -> Option<Change> {
        self.current.clear();
        self.next()
    }

    /// A change finished; returns the next one if the wish changed meanwhile.
    pub(crate) fn done(&mut self, applied: Change) -> Option<Change> {
        self.current = applied.target;
        self.busy = false;
        self.next()
    }

    fn next(&mut self) -> Option<Change> {
        if self.busy || self.wanted == self.current {
            return None;
        }
        self.busy = true;
        Some(Change {
            withdraw: self.current.iter().filter(|p| !self.wanted.contains(p)).copied().collect(),
            announce: self.wanted.iter().filter(|p| !self.current.contains(p)).copied().collect(),
            target: self.wanted.clone(),
        })
    }
}

impl Change {
    /// Applies the change. Failures are logged: the next period (or restart)
    /// announces again.
    pub(crate) async fn apply(self, network: NetworkHandle, ttl: Duration) -> Self {
        for p in &self.withdraw {
            if let Err(e) = network.withdraw(p.0).await {
                tracing::debug!(error = %e, "withdraw failed");
            }
        }
        for p in &self.announce {
            if let Err(e) = network.announce(p.0, ttl).await {
                tracing::debug!(error = %e, "announce failed");
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: u8) -> RendezvousPoint {
        RendezvousPoint([b; 32])
    }

    #[test]
    fn changes_are_sequential_and_computed_from_what_the_last_one_left() {
        let mut a = Announcements::default();
        let first = a.want(vec![p(1), p(2)]).unwrap();
        assert_eq!((first.withdraw.clone(), first.announce.clone()), (vec![], vec![p(1), p(2)]));
        // Wishes while busy wait for the change in progress.
        assert!(a.want(vec![p(2), p(3)]).is_none());
        assert!(a.want(vec![]).is_none());
        let second = a.done(first).unwrap();
        assert_eq!((second.withdraw.clone(), second.announce.clone()), (vec![p(1), p(2)], vec![]));
        assert!(a.done(second).is_none());
        // The same wish twice changes nothing.
        assert!(a.want(vec![]).is_none());
        let third = a.want(vec![p(4)]).unwrap();
        assert!(a.done(third).is_none());
        let again = a.reset().unwrap();
        assert_eq!(again.announce, vec![p(4)]);
    }
}
