//! Keeps what a node announces at rendezvous points equal to what it wants
//! announced, one change at a time.
//!
//! Announcing is asynchronous (a registration may wait for the node's first
//! address), so two overlapping updates could land out of order and leave an
//! old point registered after its period, or a withdrawn link announced
//! after it was disabled. Changes are therefore applied strictly in
//! sequence, each computed against what the previous one left.
//!
//! A point must never be registered under two peer ids, or a rendezvous
//! server links them. When a period starts under a new peer id, its points
//! are therefore *held* (recorded, not announced) until the network has
//! restarted under that id ([`Announcements::reset`]); a change still in
//! flight across a restart is not counted as registered.

use std::time::Duration;

use veil_crypto::rendezvous::RendezvousPoint;
use veil_transports::NetworkHandle;

/// One step from what is announced to what is wanted.
#[derive(Debug)]
pub(crate) struct Change {
    withdraw: Vec<RendezvousPoint>,
    announce: Vec<RendezvousPoint>,
    target: Vec<RendezvousPoint>,
    /// The network generation (restarts seen) the change was made for.
    generation: u64,
}

/// The announcements of one thing (a link, a group).
#[derive(Debug, Default)]
pub(crate) struct Announcements {
    wanted: Vec<RendezvousPoint>,
    current: Vec<RendezvousPoint>,
    busy: bool,
    /// Nothing is announced or withdrawn until the next restart.
    held: bool,
    /// Network restarts seen.
    generation: u64,
}

impl Announcements {
    /// Wants exactly `points` announced; returns the change to apply now,
    /// unless one is in progress (the next is computed when it is done) or
    /// the announcements are held.
    pub(crate) fn want(&mut self, points: Vec<RendezvousPoint>) -> Option<Change> {
        self.wanted = points;
        self.next()
    }

    /// Holds every change until the next [`reset`](Self::reset): the
    /// network is about to restart under a new peer id, and what is wanted
    /// now must be registered under that id only.
    pub(crate) fn hold(&mut self) {
        self.held = true;
    }

    /// Forgets what is registered (the network restarted, under a new peer
    /// id: nothing is registered under it), releases a hold and announces
    /// everything wanted again.
    pub(crate) fn reset(&mut self) -> Option<Change> {
        self.current.clear();
        self.held = false;
        self.generation = self.generation.wrapping_add(1);
        self.next()
    }

    /// A change finished; returns the next one if the wish changed meanwhile.
    /// A change that began before the last restart registered nothing that
    /// counts (its peer id is gone), so what it did is not recorded.
    pub(crate) fn done(&mut self, applied: Change) -> Option<Change> {
        if applied.generation == self.generation {
            self.current = applied.target;
        }
        self.busy = false;
        self.next()
    }

    fn next(&mut self) -> Option<Change> {
        if self.busy || self.held || self.wanted == self.current {
            return None;
        }
        self.busy = true;
        Some(Change {
            withdraw: self.current.iter().filter(|p| !self.wanted.contains(p)).copied().collect(),
            announce: self.wanted.iter().filter(|p| !self.current.contains(p)).copied().collect(),
            target: self.wanted.clone(),
            generation: self.generation,
        })
    }
}

impl Change {
    /// Applies the change under the peer id the node has when it starts:
    /// if the network restarts under a new id meanwhile, the rest is refused
    /// rather than registered under the new id (the restart announces
    /// again). Failures are logged: the next period (or restart) announces
    /// again.
    pub(crate) async fn apply(self, network: NetworkHandle, ttl: Duration) -> Self {
        let me = match network.local_peer_id().await {
            Ok(me) => me,
            Err(e) => {
                tracing::debug!(error = %e, "no peer id to announce under");
                return self;
            }
        };
        for p in &self.withdraw {
            if let Err(e) = network.withdraw_as(p.0, me).await {
                tracing::debug!(error = %e, "withdraw failed");
            }
        }
        for p in &self.announce {
            if let Err(e) = network.announce_as(p.0, ttl, me).await {
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

    #[test]
    fn held_points_wait_for_the_restart_and_are_announced_fresh_after_it() {
        let mut a = Announcements::default();
        let first = a.want(vec![p(1)]).unwrap();
        assert!(a.done(first).is_none());
        // A new period under a new peer id: nothing moves before the restart,
        // not even the old point's withdrawal (it would come from the new id).
        a.hold();
        assert!(a.want(vec![p(2)]).is_none());
        assert!(a.want(vec![p(3)]).is_none());
        let after = a.reset().unwrap();
        assert_eq!((after.withdraw.clone(), after.announce.clone()), (vec![], vec![p(3)]));
        assert!(a.done(after).is_none());
    }

    #[test]
    fn a_change_in_flight_across_a_restart_is_not_counted() {
        let mut a = Announcements::default();
        let stale = a.want(vec![p(1)]).unwrap();
        // The restart comes while the change runs: the change is awaited.
        assert!(a.reset().is_none());
        // What it registered was under the old peer id: announced again.
        let again = a.done(stale).unwrap();
        assert_eq!(again.announce, vec![p(1)]);
        assert!(a.done(again).is_none());
    }
}
