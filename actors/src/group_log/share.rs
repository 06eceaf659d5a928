//! Sharing this device's sending chain with members it learns of.
//!
//! A member reads a device's messages from the chain position the device
//! shared with it, never before. What users count on: whatever a device
//! writes after it learned of a member is readable by that member, even if
//! either of them goes offline at once. So the obligation to share is never
//! held in memory only:
//!
//! * Who is owed a share is derived from the stored logs (members of the
//!   current epoch that none of this device's announcements shared its
//!   chain with), so a restart finds it; loading shares at once.
//! * A share is due before this device writes its next message: appending
//!   writes the pending share first, so the chain position shared is the
//!   one the device had when it learned of the newcomers, and nothing it
//!   wrote after goes unshared.
//! * Otherwise shares wait a little (`chain_share_delay`, 250 ms by
//!   default) so that one announcement covers a burst of joins.
//!
//! Announcements and shares are entries of the metadata log: members and
//! blind replication nodes store and serve them like any entry, so the
//! newcomer gets them from whoever it meets when it returns.

use crate::supervision::GuardedMap;
use crate::supervision::GuardedTimers;
use std::time::Duration;

use actix::{AsyncContext, AtomicResponse, Context, Handler, WrapFuture};
use veil_crypto::MemberPublic;
use veil_proto::metadata::MemberJoined;
use veil_storage::GroupKind;

use super::{GroupLog, Loaded, NAME, Writer, announce, others};
use crate::{Error, membership::Membership};

/// After failed shares the delay doubles, up to this many times the share
/// delay (each attempt seals the chain to every newcomer).
const MAX_SHARE_BACKOFF: u32 = 128;

/// Members of the current epoch this device has not shared its chain with
/// (multi-member groups, while a member).
pub(super) fn newcomers(
    kind: GroupKind,
    membership: &Membership,
    writer: &Writer,
    me: &MemberPublic,
) -> Vec<MemberPublic> {
    if kind != GroupKind::MultiMember || membership.is_removed(&me.signing) {
        return Vec::new();
    }
    others(membership, &writer.epoch, me).into_iter().filter(|m| !writer.shared_with.contains(&m.signing)).collect()
}

/// [`newcomers`] of a loaded log.
pub(super) fn owed(state: &Loaded) -> Vec<MemberPublic> {
    newcomers(state.kind, &state.membership, &state.writer, &state.me)
}

/// Records a share written in the writer's epoch.
pub(super) fn record_share(membership: &mut Membership, writer: &mut Writer, joined: &MemberJoined) {
    membership.joined(joined);
    writer.shared_with.extend(joined.chain_shares.iter().map(|s| s.recipient));
}

/// Schedules a share after a batch taught this device new members, unless
/// one is scheduled already.
pub(super) fn schedule(act: &mut GroupLog, ctx: &mut Context<GroupLog>) {
    let (delay, time) = (act.deps.share_delay, act.deps.time.clone());
    if let Some(state) = act.state.as_mut()
        && !state.share_scheduled
        && !owed(state).is_empty()
    {
        state.share_scheduled = true;
        share_later(ctx, &time, delay);
    }
}

/// Sends `ShareChain` after `delay`, through the mailbox: like every
/// message that reads and writes the state, it must wait for the atomic
/// handler in progress (`notify` would not).
fn share_later(ctx: &mut Context<GroupLog>, time: &crate::time::Time, delay: Duration) {
    ctx.guarded_later(time, NAME, delay, |_, ctx| ctx.address().do_send(ShareChain));
}

/// Internal: share this device's chain, at its current position, with the
/// members it has not shared it with.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct ShareChain;

impl Handler<ShareChain> for GroupLog {
    // Atomic: the announcement is written before anything else.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: ShareChain, _: &mut Self::Context) -> Self::Result {
        let (group, deps, members) = (self.group, self.deps.clone(), self.members.clone());
        // Nothing owed any more: an append wrote the share meanwhile.
        let job = self.state.as_mut().and_then(|state| {
            state.share_scheduled = false;
            let new = owed(state);
            let keys = state.epochs.keys(&state.writer.epoch)?.clone();
            (!new.is_empty()).then(|| (keys, state.writer.clone(), new))
        });
        AtomicResponse::new(Box::pin(
            async move {
                let Some((keys, writer, new)) = job else { return Ok(None) };
                let (joined, _) = announce(&deps, group, writer.epoch, &keys, &writer.chain, &members, new).await?;
                Ok::<_, Error>(Some((writer.epoch, joined)))
            }
            .into_actor(self)
            .guarded_map(NAME, |r, act, ctx| match r {
                Ok(Some((epoch, joined))) => {
                    act.share_failures = 0;
                    if let Some(state) = act.state.as_mut()
                        && state.writer.epoch == epoch
                    {
                        record_share(&mut state.membership, &mut state.writer, &joined);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(actor = NAME, error = %e, "sharing the chain failed; trying again");
                    act.share_failures = act.share_failures.saturating_add(1);
                    let backoff = 1u32.checked_shl(act.share_failures).unwrap_or(u32::MAX).min(MAX_SHARE_BACKOFF);
                    let delay = act.deps.share_delay.saturating_mul(backoff);
                    let time = act.deps.time.clone();
                    if let Some(state) = act.state.as_mut() {
                        state.share_scheduled = true;
                        share_later(ctx, &time, delay);
                    }
                }
            }),
        ))
    }
}
