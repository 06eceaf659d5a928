//! Supervision helpers.
//!
//! Every long-lived actor runs under [`actix::Supervisor`]. Its handlers run
//! their logic through [`guarded`]: a panic is caught, logged, and stops the
//! actor, which the supervisor restarts at once with the same mailbox
//! (queued messages are kept). A restarted actor rebuilds its state from
//! storage in `started`, exactly as at boot, so nothing lives only in memory.

use std::panic::{AssertUnwindSafe, catch_unwind};

use actix::{Actor, ActorContext, Context};

use crate::{Error, Result};

/// Runs `f`; if it panics, stops the actor (its supervisor restarts it) and
/// returns [`Error::Restarting`].
pub(crate) fn guarded<A, T>(name: &'static str, ctx: &mut Context<A>, f: impl FnOnce() -> Result<T>) -> Result<T>
where
    A: Actor<Context = Context<A>>,
{
    let _span = tracing::debug_span!("actor", name).entered();
    match catch_unwind(AssertUnwindSafe(f)) {
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
