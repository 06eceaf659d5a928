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
//!
//! A registration that fails (the server unreachable: an onion service not
//! published yet, a server restarting) is not counted as registered either:
//! it is tried again after a wait that doubles with each failure in a row
//! ([`After::RetryIn`]), not only at the next period, which left a node
//! unannounced for a whole period after one failed attempt.

use std::time::Duration;

/// The first wait before failed registrations are tried again; doubled at
/// each failure in a row, up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

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
    /// Points whose registration failed when it was applied.
    failed: Vec<RendezvousPoint>,
}

/// What to do once a change is done.
#[derive(Debug)]
pub(crate) enum After {
    /// Apply this change now (the wish changed meanwhile).
    Apply(Change),
    /// Some registrations failed: call [`Announcements::retry`] after this
    /// wait.
    RetryIn(Duration),
    /// Nothing.
    Nothing,
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
    /// Changes in a row with failed registrations.
    failures: u32,
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
        self.failures = 0;
        self.generation = self.generation.wrapping_add(1);
        self.next()
    }

    /// A change finished: the next one if the wish changed meanwhile, or a
    /// wait before trying again what failed. A change that began before the
    /// last restart registered nothing that counts (its peer id is gone),
    /// so what it did is not recorded; nor are the points whose
    /// registration failed.
    pub(crate) fn done(&mut self, applied: Change) -> After {
        if applied.generation == self.generation {
            self.current = applied.target.into_iter().filter(|p| !applied.failed.contains(p)).collect();
        }
        self.busy = false;
        if applied.failed.is_empty() {
            self.failures = 0;
            return self.next().map_or(After::Nothing, After::Apply);
        }
        self.failures = self.failures.saturating_add(1);
        let wait = FIRST_RETRY.saturating_mul(1 << (self.failures - 1).min(16)).min(MAX_RETRY);
        After::RetryIn(wait)
    }

    /// After a [`After::RetryIn`] wait: the change that registers again what
    /// failed (and whatever else the wish changed meanwhile).
    pub(crate) fn retry(&mut self) -> Option<Change> {
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
            failed: Vec::new(),
        })
    }
}

impl Change {
    /// Applies the change under the peer id the node has when it starts:
    /// if the network restarts under a new id meanwhile, the rest is refused
    /// rather than registered under the new id (the restart announces
    /// again). Failed registrations are recorded, and tried again after a
    /// wait ([`Announcements::done`]).
    pub(crate) async fn apply(mut self, network: NetworkHandle, ttl: Duration) -> Self {
        let me = match network.local_peer_id().await {
            Ok(me) => me,
            Err(e) => {
                tracing::debug!(error = %e, "no peer id to announce under");
                self.failed = self.announce.clone();
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
                tracing::debug!(error = %e, "announce failed; trying again later");
                self.failed.push(*p);
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

    /// The change to apply next, if that is what `after` says.
    fn apply(after: After) -> Option<Change> {
        match after {
            After::Apply(c) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn failed_registrations_are_not_counted_and_are_tried_again_after_a_growing_wait() {
        let mut a = Announcements::default();
        let mut first = a.want(vec![p(1), p(2)]).unwrap();
        first.failed = vec![p(2)];
        assert!(matches!(a.done(first), After::RetryIn(w) if w == FIRST_RETRY));
        let mut again = a.retry().unwrap();
        assert_eq!((again.withdraw.clone(), again.announce.clone()), (vec![], vec![p(2)]), "only what failed");
        again.failed = vec![p(2)];
        assert!(matches!(a.done(again), After::RetryIn(w) if w == 2 * FIRST_RETRY), "the wait doubles");
        let mut waits = Vec::new();
        for _ in 0..10 {
            let mut c = a.retry().unwrap();
            c.failed = vec![p(2)];
            if let After::RetryIn(w) = a.done(c) {
                waits.push(w);
            }
        }
        assert_eq!(waits.last(), Some(&MAX_RETRY), "up to a bound");
        let ok = a.retry().unwrap();
        assert!(matches!(a.done(ok), After::Nothing));
        assert!(a.retry().is_none(), "everything is registered");
        // The next failure waits the first wait again.
        let mut later = a.want(vec![p(3)]).unwrap();
        later.failed = vec![p(3)];
        assert!(matches!(a.done(later), After::RetryIn(w) if w == FIRST_RETRY));
    }

    #[test]
    fn changes_are_sequential_and_computed_from_what_the_last_one_left() {
        let mut a = Announcements::default();
        let first = a.want(vec![p(1), p(2)]).unwrap();
        assert_eq!((first.withdraw.clone(), first.announce.clone()), (vec![], vec![p(1), p(2)]));
        // Wishes while busy wait for the change in progress.
        assert!(a.want(vec![p(2), p(3)]).is_none());
        assert!(a.want(vec![]).is_none());
        let second = apply(a.done(first)).unwrap();
        assert_eq!((second.withdraw.clone(), second.announce.clone()), (vec![p(1), p(2)], vec![]));
        assert!(apply(a.done(second)).is_none());
        // The same wish twice changes nothing.
        assert!(a.want(vec![]).is_none());
        let third = a.want(vec![p(4)]).unwrap();
        assert!(apply(a.done(third)).is_none());
        let again = a.reset().unwrap();
        assert_eq!(again.announce, vec![p(4)]);
    }

    #[test]
    fn held_points_wait_for_the_restart_and_are_announced_fresh_after_it() {
        let mut a = Announcements::default();
        let first = a.want(vec![p(1)]).unwrap();
        assert!(apply(a.done(first)).is_none());
        // A new period under a new peer id: nothing moves before the restart,
        // not even the old point's withdrawal (it would come from the new id).
        a.hold();
        assert!(a.want(vec![p(2)]).is_none());
        assert!(a.want(vec![p(3)]).is_none());
        let after = a.reset().unwrap();
        assert_eq!((after.withdraw.clone(), after.announce.clone()), (vec![], vec![p(3)]));
        assert!(apply(a.done(after)).is_none());
    }

    #[test]
    fn a_change_in_flight_across_a_restart_is_not_counted() {
        let mut a = Announcements::default();
        let stale = a.want(vec![p(1)]).unwrap();
        // The restart comes while the change runs: the change is awaited.
        assert!(a.reset().is_none());
        // What it registered was under the old peer id: announced again.
        let again = apply(a.done(stale)).unwrap();
        assert_eq!(again.announce, vec![p(1)]);
        assert!(apply(a.done(again)).is_none());
    }
}
