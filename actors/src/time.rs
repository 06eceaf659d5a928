//! The actors' one source of time.
//!
//! Every timer, interval, backoff and deadline an actor keeps reads
//! [`Timers`]: the monotonic time now and sleeps until a deadline. A node
//! runs on [`TokioTimers`]; a test gives [`NodeBuilder::timers`] a
//! [`SteppedTime`], which moves only when told ([`SteppedTime::advance`]),
//! so what would take minutes of retries and ticks takes a step. A
//! `SteppedTime` is also a [`Clock`] (the wall clock rotation reads), so
//! one step moves both.
//!
//! ```
//! use std::time::Duration;
//! use veil_actors::time::{SteppedTime, Timers};
//! use veil_crypto::time::{Clock, UnixTime};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let time = SteppedTime::new(UnixTime(1_000));
//! let start = Timers::now(&time);
//! let sleep = time.sleep_until(start + Duration::from_secs(90));
//! time.advance(Duration::from_secs(90));
//! sleep.await; // due: it returns at once
//! assert_eq!(Timers::now(&time) - start, Duration::from_secs(90));
//! assert_eq!(Clock::now(&time), UnixTime(1_090));
//! # });
//! ```
//!
//! [`NodeBuilder::timers`]: crate::NodeBuilder::timers

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use veil_crypto::time::{Clock, UnixTime};

/// A future that resolves at a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where actors read the time and wait for it.
pub trait Timers: Send + Sync + core::fmt::Debug + 'static {
    /// The monotonic time now.
    fn now(&self) -> Instant;

    /// Resolves once [`Timers::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Sleep;

    /// Resolves once `after` has passed.
    fn sleep(&self, after: Duration) -> Sleep {
        self.sleep_until(self.now() + after)
    }
}

/// The time source an actor holds.
pub type Time = Arc<dyn Timers>;

/// Runs `work` until it ends or `after` has passed on `time`, whichever
/// comes first (`None`: the deadline).
pub async fn within<F: Future>(time: &dyn Timers, after: Duration, work: F) -> Option<F::Output> {
    let work = std::pin::pin!(work);
    match futures::future::select(work, time.sleep(after)).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}

/// The machine's monotonic clock and tokio's timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioTimers;

impl Timers for TokioTimers {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// Time that moves only when told, for timers and the wall clock together.
/// Clones share the same time.
#[derive(Debug, Clone)]
pub struct SteppedTime(Arc<Stepped>);

#[derive(Debug)]
struct Stepped {
    /// What `now` reads before any step.
    start: Instant,
    /// What the wall clock reads before any step.
    wall: UnixTime,
    state: Mutex<SteppedState>,
}

#[derive(Debug, Default)]
struct SteppedState {
    elapsed: Duration,
    /// Pending sleeps (one entry per live sleep), woken by the step that
    /// reaches their deadline.
    sleepers: HashMap<u64, (Instant, Waker)>,
    next_id: u64,
}

impl SteppedTime {
    /// Time standing still, the wall clock reading `wall`.
    pub fn new(wall: UnixTime) -> Self {
        Self(Arc::new(Stepped { start: Instant::now(), wall, state: Mutex::default() }))
    }

    /// Moves time forward by `by`, waking every sleep that comes due.
    pub fn advance(&self, by: Duration) {
        let due: Vec<Waker> = {
            let mut state = self.state();
            state.elapsed += by;
            let now = self.0.start + state.elapsed;
            let due: Vec<u64> = state.sleepers.iter().filter(|(_, (at, _))| *at <= now).map(|(id, _)| *id).collect();
            due.iter().filter_map(|id| state.sleepers.remove(id)).map(|(_, waker)| waker).collect()
        };
        for waker in due {
            waker.wake();
        }
    }

    /// How many sleeps are pending (a test's way to see that an actor is
    /// waiting before it steps).
    pub fn pending(&self) -> usize {
        self.state().sleepers.len()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SteppedState> {
        // The state stays consistent across a panic (each change is one
        // assignment), so a poisoned lock is still good.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Timers for SteppedTime {
    fn now(&self) -> Instant {
        self.0.start + self.state().elapsed
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let id = {
            let mut state = self.state();
            state.next_id += 1;
            state.next_id
        };
        Box::pin(SteppedSleep { time: self.clone(), deadline, id })
    }
}

impl Clock for SteppedTime {
    fn now(&self) -> UnixTime {
        self.0.wall.plus(self.state().elapsed.as_secs())
    }
}

/// A sleep on [`SteppedTime`].
struct SteppedSleep {
    time: SteppedTime,
    deadline: Instant,
    id: u64,
}

impl Future for SteppedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.time.state();
        if self.time.0.start + state.elapsed >= self.deadline {
            state.sleepers.remove(&self.id);
            return Poll::Ready(());
        }
        state.sleepers.insert(self.id, (self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for SteppedSleep {
    fn drop(&mut self) {
        self.time.state().sleepers.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn a_sleep_ends_at_the_step_that_reaches_its_deadline_and_not_before() {
        let time = SteppedTime::new(UnixTime(0));
        let done = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| panic!("{e}"));
        let sleep = time.sleep(Duration::from_millis(1500));
        let flag = done.clone();
        let task = rt.spawn(async move {
            sleep.await;
            flag.store(true, Ordering::SeqCst);
        });
        let settle = || rt.block_on(tokio::task::yield_now());
        settle();
        assert_eq!(time.pending(), 1);
        time.advance(Duration::from_millis(1499));
        settle();
        assert!(!done.load(Ordering::SeqCst), "one millisecond early");
        time.advance(Duration::from_millis(1));
        rt.block_on(task).unwrap_or_else(|e| panic!("{e}"));
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(time.pending(), 0);
        assert_eq!(Clock::now(&time), UnixTime(1), "the wall clock moved with it, in whole seconds");
    }

    #[test]
    fn a_dropped_sleep_is_forgotten() {
        let time = SteppedTime::new(UnixTime(0));
        let mut sleep = time.sleep(Duration::from_secs(1));
        let waker = futures::task::noop_waker();
        assert!(sleep.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        assert!(sleep.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        assert_eq!(time.pending(), 1, "polled twice, held once");
        drop(sleep);
        assert_eq!(time.pending(), 0);
    }
}
