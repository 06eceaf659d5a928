//! Supervision helpers.
//!
//! Every long-lived actor runs under [`actix::Supervisor`]. Its handlers run
//! their logic through [`guarded`]: a panic is caught, logged, and stops the
//! actor, which the supervisor restarts at once with the same mailbox
//! (queued messages are kept). A restarted actor rebuilds its state from
//! storage in `started`, exactly as at boot, so nothing lives only in memory.
//! What a handler does once a future it spawned completes runs through
//! [`GuardedMap::guarded_map`], and what a timer runs through
//! [`GuardedTimers`], guarded the same way.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    rc::Rc,
    time::Duration,
};

use actix::{
    Actor, ActorContext, ActorFuture, ActorFutureExt, ActorStreamExt, AsyncContext, Context, SpawnHandle, WrapFuture,
};
use futures::future::LocalBoxFuture;

use crate::time::Time;
use crate::{Error, Result};

/// Runs `f`; if it panics, stops the actor (its supervisor restarts it) and
/// returns [`Error::Restarting`].
pub(crate) fn guarded<A, T>(name: &'static str, ctx: &mut Context<A>, f: impl FnOnce() -> Result<T>) -> Result<T>
where
    A: Actor<Context = Context<A>>,
{
    guarded_with(name, ctx, |_| f())
}

/// [`guarded`] for logic that needs the actor's context (to spawn work).
pub(crate) fn guarded_with<A, T>(
    name: &'static str,
    ctx: &mut Context<A>,
    f: impl FnOnce(&mut Context<A>) -> Result<T>,
) -> Result<T>
where
    A: Actor<Context = Context<A>>,
{
    let _span = tracing::debug_span!("actor", name).entered();
    match catch_unwind(AssertUnwindSafe(|| f(ctx))) {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(actor = name, "handler panicked; the supervisor restarts the actor");
            ctx.stop();
            Err(Error::Restarting(name))
        }
    }
}

/// What a guarded continuation gives when it panicked.
pub(crate) trait OnPanic {
    /// The answer of an actor `name` that is restarting.
    fn restarting(name: &'static str) -> Self;
}

impl OnPanic for () {
    fn restarting(_: &'static str) {}
}

impl<T> OnPanic for Result<T> {
    fn restarting(name: &'static str) -> Self {
        Err(Error::Restarting(name))
    }
}

/// [`ActorFutureExt::map`] with the continuation guarded like a handler: a
/// panic in it stops the actor (its supervisor restarts it) and the
/// continuation gives [`OnPanic::restarting`]. Without it a panic there
/// would kill the arbiter's task, supervisor and all.
pub(crate) trait GuardedMap<A>: ActorFuture<A> + Sized
where
    A: Actor<Context = Context<A>>,
{
    fn guarded_map<U: OnPanic>(
        self,
        name: &'static str,
        then: impl FnOnce(Self::Output, &mut A, &mut Context<A>) -> U,
    ) -> impl ActorFuture<A, Output = U> {
        self.map(move |output, act, ctx| match catch_unwind(AssertUnwindSafe(|| then(output, act, ctx))) {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!(actor = name, "continuation panicked; the supervisor restarts the actor");
                ctx.stop();
                U::restarting(name)
            }
        })
    }
}

impl<A: Actor<Context = Context<A>>, F: ActorFuture<A>> GuardedMap<A> for F {}

/// `run_later` and `run_interval` on the actor's [`Time`], with the closure
/// guarded like a handler.
pub(crate) trait GuardedTimers<A: Actor<Context = Context<A>>> {
    fn guarded_later(
        &mut self,
        time: &Time,
        name: &'static str,
        after: Duration,
        f: impl FnOnce(&mut A, &mut Context<A>) + 'static,
    ) -> SpawnHandle;

    /// Runs `f` every `every`, the first time `every` from now; a tick
    /// that comes late does not bunch the next ones up.
    fn guarded_interval(
        &mut self,
        time: &Time,
        name: &'static str,
        every: Duration,
        f: impl FnMut(&mut A, &mut Context<A>) + 'static,
    ) -> SpawnHandle;
}

impl<A: Actor<Context = Context<A>>> GuardedTimers<A> for Context<A> {
    fn guarded_later(
        &mut self,
        time: &Time,
        name: &'static str,
        after: Duration,
        f: impl FnOnce(&mut A, &mut Context<A>) + 'static,
    ) -> SpawnHandle {
        self.spawn(actix::fut::wrap_future::<_, A>(time.sleep(after)).map(move |(), act, ctx| {
            let _ = guarded_with(name, ctx, |ctx| {
                f(act, ctx);
                Ok(())
            });
        }))
    }

    fn guarded_interval(
        &mut self,
        time: &Time,
        name: &'static str,
        every: Duration,
        mut f: impl FnMut(&mut A, &mut Context<A>) + 'static,
    ) -> SpawnHandle {
        let time = time.clone();
        let ticks = futures::stream::unfold(time.now() + every, move |due| {
            let time = time.clone();
            async move {
                time.sleep_until(due).await;
                let (next, now) = (due + every, time.now());
                Some(((), if next > now { next } else { now + every }))
            }
        });
        let ticking = actix::fut::wrap_stream::<_, A>(ticks).map(move |(), act, ctx| {
            let _ = guarded_with(name, ctx, |ctx| {
                f(act, ctx);
                Ok(())
            });
        });
        self.spawn(ticking.finish())
    }
}

/// Maps a closed mailbox to [`Error::Unavailable`].
pub(crate) fn mailbox(name: &'static str) -> impl Fn(actix::MailboxError) -> Error {
    move |_| Error::Unavailable(name)
}

/// Builds an actor's state from storage.
pub(crate) type Loader<A, T> = Rc<dyn Fn(&A) -> LocalBoxFuture<'static, Result<T>>>;
/// Installs loaded state into the actor.
pub(crate) type Apply<A, T> = Rc<dyn Fn(&mut A, T)>;

/// Loads an actor's state before it handles any message (`ctx.wait`). If
/// loading fails the actor stays up, answering `Unavailable`, and retries
/// with a backoff from 100 ms to 30 s; a closed store (the node is shutting
/// down) ends the retries. Stopping instead would make the supervisor
/// restart it in a tight loop.
pub(crate) fn load_state<A, T: 'static>(
    name: &'static str,
    act: &A,
    ctx: &mut Context<A>,
    time: Time,
    loader: Loader<A, T>,
    apply: Apply<A, T>,
    attempt: u32,
) where
    A: Actor<Context = Context<A>>,
{
    let fut = loader(act);
    ctx.wait(fut.into_actor(act).guarded_map(name, move |loaded, act, ctx| match loaded {
        Ok(state) => apply(act, state),
        Err(Error::Storage(veil_storage::Error::Closed)) => {
            tracing::debug!(actor = name, "store closed; not loading");
        }
        Err(e) => {
            let delay = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(9))).min(Duration::from_secs(30));
            tracing::warn!(actor = name, error = %e, ?delay, "cannot load state; retrying");
            let again = time.clone();
            ctx.guarded_later(&time, name, delay, move |act, ctx| {
                load_state(name, act, ctx, again, loader, apply, attempt + 1);
            });
        }
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use actix::{Handler, Message, ResponseActFuture, Supervised, Supervisor};

    use super::*;
    use crate::time::SteppedTime;
    use veil_crypto::time::UnixTime;

    /// Counts its starts; its continuation panics when asked to.
    struct Flaky(Arc<AtomicUsize>);

    impl Actor for Flaky {
        type Context = Context<Self>;

        fn started(&mut self, _: &mut Context<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Supervised for Flaky {}

    #[derive(Message)]
    #[rtype(result = "Result<u32>")]
    struct Work {
        panic: bool,
    }

    impl Handler<Work> for Flaky {
        type Result = ResponseActFuture<Self, Result<u32>>;

        fn handle(&mut self, Work { panic }: Work, _: &mut Context<Self>) -> Self::Result {
            Box::pin(async { 7 }.into_actor(self).guarded_map("flaky", move |n, _, _| {
                assert!(!panic, "a bug after the future");
                Ok(n)
            }))
        }
    }

    #[test]
    fn a_panic_after_a_future_restarts_the_actor_and_answers_restarting() {
        actix::System::new().block_on(async {
            let starts = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&starts);
            let flaky = Supervisor::start(move |_| Flaky(Arc::clone(&counted)));
            assert_eq!(flaky.send(Work { panic: false }).await.unwrap().unwrap(), 7);
            let answer = flaky.send(Work { panic: true }).await.unwrap();
            assert!(matches!(answer, Err(Error::Restarting("flaky"))), "{answer:?}");
            assert_eq!(flaky.send(Work { panic: false }).await.unwrap().unwrap(), 7, "it answers again");
            assert_eq!(starts.load(Ordering::SeqCst), 2, "restarted once");
        });
    }

    /// Its first life's timer panics (a life counts 1, a timer that runs 10).
    struct Bomb(Arc<AtomicUsize>, Time);

    impl Actor for Bomb {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            let life = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            ctx.guarded_later(&self.1, "bomb", Duration::from_secs(60), move |act, _| {
                assert!(life > 1, "a bug in a timer");
                act.0.fetch_add(10, Ordering::SeqCst);
            });
        }
    }

    impl Supervised for Bomb {}

    /// Counts its interval's ticks.
    struct Ticking(Arc<AtomicUsize>, Time);

    impl Actor for Ticking {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.guarded_interval(&self.1, "ticking", Duration::from_secs(10), |act, _| {
                act.0.fetch_add(1, Ordering::SeqCst);
            });
        }
    }

    /// What the counter of either says.
    #[derive(Message)]
    #[rtype(result = "usize")]
    struct Count;

    impl Handler<Count> for Bomb {
        type Result = usize;

        fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Handler<Count> for Ticking {
        type Result = usize;

        fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Waits, with a timeout, until `actor` counts `want`.
    async fn reaches<A: Actor<Context = Context<A>> + Handler<Count>>(actor: &actix::Addr<A>, want: usize) {
        let reached = async {
            while actor.send(Count).await.unwrap() != want {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), reached).await.expect("reached");
    }

    /// Started, and its timers waiting for `time` (they are set when it starts).
    async fn started<A: Actor<Context = Context<A>> + Handler<Count>>(actor: &actix::Addr<A>, time: &SteppedTime) {
        let waiting = async {
            while time.pending() == 0 {
                let _ = actor.send(Count).await;
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("started");
    }

    #[test]
    fn an_interval_runs_on_stepped_time_and_a_late_tick_does_not_bunch_the_next_ones_up() {
        actix::System::new().block_on(async {
            let time = SteppedTime::new(UnixTime(0));
            let ticking = Ticking(Arc::new(AtomicUsize::new(0)), Arc::new(time.clone())).start();
            started(&ticking, &time).await;
            time.advance(Duration::from_secs(10));
            reaches(&ticking, 1).await;
            // 25 s late: one tick, then the next 10 s on.
            time.advance(Duration::from_secs(25));
            reaches(&ticking, 2).await;
            time.advance(Duration::from_secs(9));
            assert_eq!(ticking.send(Count).await.unwrap(), 2, "the next tick is not due yet");
            time.advance(Duration::from_secs(1));
            reaches(&ticking, 3).await;
        });
    }

    #[test]
    fn a_panic_in_a_timer_restarts_the_actor() {
        actix::System::new().block_on(async {
            let time = SteppedTime::new(UnixTime(0));
            let lives = Arc::new(AtomicUsize::new(0));
            let bomb = Supervisor::start({
                let (lives, time) = (lives.clone(), time.clone());
                move |_| Bomb(lives.clone(), Arc::new(time.clone()))
            });
            started(&bomb, &time).await;
            time.advance(Duration::from_secs(60));
            reaches(&bomb, 2).await;
            // The second life's timer runs fine.
            started(&bomb, &time).await;
            time.advance(Duration::from_secs(60));
            reaches(&bomb, 12).await;
            assert_eq!(lives.load(Ordering::SeqCst), 12, "restarted once");
        });
    }
}
