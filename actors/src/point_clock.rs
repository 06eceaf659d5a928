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
//! keeps it; kept in the store (the [`SETTING`] setting, sealed like every
//! setting) each time a period is first announced, and restored when the
//! node starts, so a restart of the node keeps it too. The record is
//! written just after the period's first announcement, never before it:
//! a crash within that write forgets the newest period only.

use std::sync::{Arc, Mutex, PoisonError};

use veil_crypto::time::{Clock, UnixTime};
use veil_storage::Store;

/// The setting the announced periods are kept in.
pub(crate) const SETTING: &str = "announced_periods";

/// The time for rendezvous points (see the module docs).
pub(crate) struct PointClock {
    clock: Arc<dyn Clock>,
    period_secs: u64,
    state: Mutex<State>,
    /// Held while the record is written: each write takes the record when
    /// it holds this, so the last write is always of the newest state.
    persisting: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default, PartialEq)]
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
        Self {
            clock,
            period_secs: period_secs.max(1),
            state: Mutex::new(State::default()),
            persisting: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The time to compute points for, and whether it is held (the clock
    /// is back in a period already left).
    pub(crate) fn now(&self) -> (UnixTime, bool) {
        let now = self.clock.now();
        let period = now.0 / self.period_secs;
        let state = self.state();
        match state.last {
            Some((last, at)) if period != last && state.used.contains(period) => (at, true),
            _ => (now, false),
        }
    }

    /// Records that the points of `now`'s period were announced; returns
    /// whether the period is new, so the record should be kept again.
    pub(crate) fn announced(&self, now: UnixTime) -> bool {
        let period = now.0 / self.period_secs;
        let mut state = self.state();
        state.last = Some((period, now));
        let new = !state.used.contains(period);
        state.used.insert(period);
        new
    }

    /// Writes the record to `store` (see the module docs).
    pub(crate) async fn persist(&self, store: &Store) -> veil_storage::Result<()> {
        let _one_at_a_time = self.persisting.lock().await;
        let record = self.state().encode();
        store.set_setting(SETTING, &record).await
    }

    /// Takes back what an earlier run recorded, over whatever this run
    /// announced so far (nothing, when the node starts).
    pub(crate) fn restore(&self, record: &[u8]) -> Result<(), &'static str> {
        let restored = State::decode(record)?;
        let mut state = self.state();
        for &(first, last) in &restored.used.runs {
            state.used.insert_run(first, last);
        }
        if state.last.is_none() {
            state.last = restored.last;
        }
        Ok(())
    }
}

/// Version of the record's encoding.
const RECORD_VERSION: u8 = 1;

impl State {
    /// `version (1) ‖ last period (8) ‖ its time (8) ‖ runs (2) ‖ (first (8) ‖ last (8))*`,
    /// big-endian; no last period is written as `u64::MAX` twice.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(19 + 16 * self.used.runs.len());
        out.push(RECORD_VERSION);
        let (period, at) = self.last.map_or((u64::MAX, u64::MAX), |(p, at)| (p, at.0));
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&at.to_be_bytes());
        out.extend_from_slice(&(self.used.runs.len() as u16).to_be_bytes());
        for (first, last) in &self.used.runs {
            out.extend_from_slice(&first.to_be_bytes());
            out.extend_from_slice(&last.to_be_bytes());
        }
        out
    }

    /// The inverse of [`encode`](Self::encode); refuses anything else
    /// (another version or length, runs out of order, overlapping or
    /// adjacent, more than `MAX_RUNS`).
    fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let u64_at = |at: usize| -> u64 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        if bytes.len() < 19 || bytes[0] != RECORD_VERSION {
            return Err("not a record of announced periods");
        }
        let count = usize::from(u16::from_be_bytes([bytes[17], bytes[18]]));
        if count > MAX_RUNS || bytes.len() != 19 + 16 * count {
            return Err("a record of announced periods of the wrong length");
        }
        let last = match (u64_at(1), u64_at(9)) {
            (u64::MAX, u64::MAX) => None,
            (period, at) => Some((period, UnixTime(at))),
        };
        let runs: Vec<(u64, u64)> = (0..count).map(|i| (u64_at(19 + 16 * i), u64_at(27 + 16 * i))).collect();
        let ordered = runs.iter().all(|(first, last)| first <= last)
            && runs.windows(2).all(|w| w[0].1.checked_add(1).is_some_and(|next| next < w[1].0));
        if !ordered {
            return Err("a record of announced periods out of order");
        }
        Ok(Self { last, used: UsedPeriods { runs } })
    }
}

/// Most separate runs of used periods remembered (each clock jump starts
/// one); past that the oldest run is forgotten.
const MAX_RUNS: usize = 64;

/// Periods whose points were announced, as runs of consecutive periods. A
/// clock that goes back into one of them must not bring its points back:
/// a rendezvous server that saw a point would see it again, and link the
/// two sessions.
#[derive(Debug, Default, PartialEq)]
struct UsedPeriods {
    /// Disjoint, not adjacent, in ascending order.
    runs: Vec<(u64, u64)>,
}

impl UsedPeriods {
    fn contains(&self, period: u64) -> bool {
        self.runs.iter().any(|&(first, last)| (first..=last).contains(&period))
    }

    fn insert(&mut self, period: u64) {
        self.insert_run(period, period);
    }

    /// Adds the periods `first..=last`, merged with the runs they overlap
    /// or touch.
    fn insert_run(&mut self, first: u64, last: u64) {
        let mut merged = (first, last);
        // Runs are in ascending order: one that touches `merged` only ever
        // widens it towards runs not seen yet.
        self.runs.retain(|&(f, l)| {
            let touches = f <= merged.1.saturating_add(1) && merged.0 <= l.saturating_add(1);
            if touches {
                merged = (merged.0.min(f), merged.1.max(l));
            }
            !touches
        });
        let at = self.runs.partition_point(|&(_, l)| l < merged.0);
        self.runs.insert(at, merged);
        if self.runs.len() > MAX_RUNS {
            self.runs.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use veil_crypto::time::ManualClock;

    use super::*;

    proptest! {
        #[test]
        fn a_record_decodes_to_the_state_it_was_made_of(periods in proptest::collection::vec(0u64..5_000, 0..200), at in any::<u64>()) {
            let mut state = State::default();
            for &p in &periods {
                state.used.insert(p);
            }
            state.last = periods.last().map(|&p| (p, UnixTime(at)));
            prop_assert_eq!(State::decode(&state.encode()), Ok(state));
        }

        #[test]
        fn any_bytes_decode_or_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(state) = State::decode(&bytes) {
                prop_assert_eq!(state.encode(), bytes);
            }
        }
    }

    #[test]
    fn a_restored_record_holds_the_time_as_the_run_before_would_have() {
        let clock = ManualClock::new(UnixTime(9_000));
        let before = PointClock::new(Arc::new(clock.clone()), 100);
        before.announced(UnixTime(1_000));
        before.announced(UnixTime(9_000));
        let record = before.state().encode();
        // A node started afresh, its clock back in period 10.
        clock.set(UnixTime(1_020));
        let after = PointClock::new(Arc::new(clock.clone()), 100);
        assert_eq!(after.now(), (UnixTime(1_020), false), "nothing known yet");
        after.restore(&record).unwrap();
        assert_eq!(after.now(), (UnixTime(9_000), true), "held, as before the restart");
        assert!(after.restore(&record[..record.len() - 1]).is_err());
        assert!(after.restore(&[2]).is_err());
    }

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
