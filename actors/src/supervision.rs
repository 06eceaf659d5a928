//! Supervision helpers.
//!
//! Every long-lived actor runs under [`actix::Supervisor`]. Its handlers run
//! their logic through [`guarded`]: a panic is caught, logged, and stops the
//! actor, which the supervisor restarts at once with the same mailbox
//! (queued messages are kept). A restarted actor rebuilds its state from
//! storage in `started`, exactly as at boot, so nothing lives only in memory.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    rc::Rc,
    time::Duration,
};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use futures::future::LocalBoxFuture;

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
    loader: Loader<A, T>,
    apply: Apply<A, T>,
    attempt: u32,
) where
    A: Actor<Context = Context<A>>,
{
    let fut = loader(act);
    ctx.wait(fut.into_actor(act).map(move |loaded, act, ctx| match loaded {
        Ok(state) => apply(act, state),
        Err(Error::Storage(veil_storage::Error::Closed)) => {
            tracing::debug!(actor = name, "store closed; not loading");
        }
        Err(e) => {
            let delay = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(9))).min(Duration::from_secs(30));
            tracing::warn!(actor = name, error = %e, ?delay, "cannot load state; retrying");
            ctx.run_later(delay, move |act, ctx| load_state(name, act, ctx, loader, apply, attempt + 1));
        }
    }));
}
