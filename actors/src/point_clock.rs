//! The time rendezvous points are computed for, shared by the rotator
//! (which announces the node's points) and the contact book (which looks
//! up its contacts' points and checks proofs of its own link's).
//!
//! It is the clock's time, unless the clock went back into a period whose
//! points were already announced: then the time of the last period
//! announced, until the clock reaches a period never announced (after a
//! jump hours forward and back, the next period at most). A rendezvous
//! server that saw a point announced or looked up would otherwise see it
//! again and link the two sessions. Shared, so a restart of either actor
//! keeps it; a restart of the node forgets it.

use std::sync::{Arc, Mutex, PoisonError};

use veil_crypto::time::{Clock, UnixTime};

/// The time for rendezvous points (see the module docs).
pub(crate) struct PointClock {
    clock: Arc<dyn Clock>,
    period_secs: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The last period announced, and the time it was computed at.
    last: Option<(u64, UnixTime)>,
    /// The periods whose points were announced.
    used: UsedPeriods,
}

impl std::fmt::Debug for PointClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointClock").field("period_secs", &self.period_secs).finish_non_exhaustive()
    }
}

impl PointClock {
    /// Over `clock`, with periods of `period_secs` (at least 1).
    pub(crate) fn new(clock: Arc<dyn Clock>, period_secs: u64) -> Self {
        Self { clock, period_secs: period_secs.max(1), state: Mutex::new(State::default()) }
    }

    /// The time to compute points for, and whether it is held (the clock
    /// is back in a period already left).
    pub(crate) fn now(&self) -> (UnixTime, bool) {
        let now = self.clock.now();
        let period = now.0 / self.period_secs;
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.last {
            Some((last, at)) if period != last && state.used.contains(period) => (at, true),
            _ => (now, false),
        }
    }

    /// Records that the points of `now`'s period were announced.
    pub(crate) fn announced(&self, now: UnixTime) {
        let period = now.0 / self.period_secs;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last = Some((period, now));
        state.used.insert(period);
    }
}

/// Most separate runs of used periods remembered (each clock jump starts
/// one); past that the oldest run is forgotten.
const MAX_RUNS: usize = 64;

/// Periods whose points were announced, as runs of consecutive periods. A
/// clock that goes back into one of them must not bring its points back:
/// a rendezvous server that saw a point would see it again, and link the
/// two sessions.
#[derive(Debug, Default)]
struct UsedPeriods {
    /// Disjoint, not adjacent, in ascending order.
    runs: Vec<(u64, u64)>,
}

impl UsedPeriods {
    fn contains(&self, period: u64) -> bool {
        self.runs.iter().any(|&(first, last)| (first..=last).contains(&period))
    }

    fn insert(&mut self, period: u64) {
        if self.contains(period) {
            return;
        }
        let at = self.runs.partition_point(|&(_, last)| last < period);
        let joins_before = at > 0 && self.runs[at - 1].1 + 1 == period;
        let joins_after = self.runs.get(at).is_some_and(|&(first, _)| period + 1 == first);
        match (joins_before, joins_after) {
            (true, true) => {
                self.runs[at - 1].1 = self.runs[at].1;
                self.runs.remove(at);
            }
            (true, false) => self.runs[at - 1].1 = period,
            (false, true) => self.runs[at].0 = period,
            (false, false) => self.runs.insert(at, (period, period)),
        }
        if self.runs.len() > MAX_RUNS {
            self.runs.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use veil_crypto::time::ManualClock;

    use super::*;

    #[test]
    fn used_periods_merge_into_runs_and_forget_the_oldest_past_the_bound() {
        let mut used = UsedPeriods::default();
        for p in [10, 11, 12, 500, 14, 13, 499] {
            used.insert(p);
        }
        assert_eq!(used.runs, vec![(10, 14), (499, 500)]);
        assert!(used.contains(12) && used.contains(499) && !used.contains(15) && !used.contains(9));
        // One run more than the bound holds.
        for run in 0..MAX_RUNS as u64 - 1 {
            used.insert(1_000 + 10 * run);
        }
        assert_eq!(used.runs.len(), MAX_RUNS);
        assert!(!used.contains(10), "the oldest run went first");
        assert!(used.contains(500) && used.contains(1_000 + 10 * (MAX_RUNS as u64 - 2)));
    }

    #[test]
    fn the_time_holds_only_in_a_period_already_left() {
        let clock = ManualClock::new(UnixTime(1_000));
        let points = PointClock::new(Arc::new(clock.clone()), 100);
        assert_eq!(points.now(), (UnixTime(1_000), false));
        points.announced(UnixTime(1_000));
        clock.set(UnixTime(1_050));
        assert_eq!(points.now(), (UnixTime(1_050), false), "the same period");
        clock.set(UnixTime(9_000));
        points.announced(points.now().0);
        clock.set(UnixTime(1_020));
        assert_eq!(points.now(), (UnixTime(9_000), true), "back in period 10: held");
        clock.set(UnixTime(1_120));
        assert_eq!(points.now(), (UnixTime(1_120), false), "period 11 was never announced");
    }
}
