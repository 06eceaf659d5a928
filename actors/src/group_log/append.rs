//! Appending this device's messages, by group commit.
//!
//! `Node::send` resolves once its entry is durably stored, and a store
//! transaction costs an fsync: one transaction per message capped a log at
//! the disk's sync rate (≈ 2 000/s here) however many sends were in
//! flight. Appends that arrive while a batch is being sealed and stored
//! wait in a queue and go together in the next batch: sealed in arrival
//! order, each naming the previous one as its parent, then stored in one
//! transaction with the chain's final state and their outbox rows; every
//! caller hears back once that transaction committed. A lone append still
//! goes out at once (the batch is whatever waited, never a timer).
//!
//! The fsync is off the message's path: the transaction commits deferred
//! (see `veil_storage::Unsynced`), the entries are pushed to the network,
//! and the callers hear back once the WAL is synced; the next batch is
//! sealed and stored meanwhile (at most `MAX_SYNCING` batches wait). A
//! power loss between the push and the sync could undo the chain's move;
//! the next messages would then be sealed under keys and nonces already
//! sent. So positions are *reserved* ahead, durably: a batch that ends past
//! the reservation raises it to `RESERVE_AHEAD` past its end and waits for
//! its sync before it pushes; the chain resumes past the reservation after
//! an unclean stop (a clean close releases it). About one message in
//! `RESERVE_AHEAD` pays the sync before its push (so not the p99 of a
//! conversation). That batch is durable when it pushes, so after a crash
//! receivers step over at most `RESERVE_AHEAD` positions, inside their
//! window (1024).

use std::collections::VecDeque;

use actix::{ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, ResponseFuture, WrapFuture};
use tokio::sync::oneshot;
use veil_crypto::{
    EpochId, GroupKeys, SenderChain,
    envelope::{EntryHash, EntryKind},
};
use veil_proto::metadata::MemberJoined;
use veil_storage::{NewEntry, RatchetUpdate, Unsynced};

use super::{GroupLog, GroupLogDeps, NAME, announce, share, tell_owed};
use crate::{
    Error, NodeEvent, Result,
    heads::{heads_after, parents_of},
    messages::{
        group::AppendMessage,
        vault::{SealMessages, SealedMessages},
    },
    supervision::{guarded, mailbox},
};

/// Most messages sealed and stored in one transaction.
const MAX_BATCH: usize = 512;

/// Positions reserved ahead of the chain at a time (see above).
const RESERVE_AHEAD: u64 = 512;

/// Most batches stored and pushed that wait for their sync at once: the
/// next batch is sealed and stored while the disk syncs, up to this many.
const MAX_SYNCING: usize = 4;

/// Most appends waiting for the next batch. The actor's mailbox bounds how
/// many can arrive between two batches; this only guards the queue.
const MAX_WAITING: usize = 4096;

/// One caller waiting for its message to be stored.
type Waiting = (Vec<u8>, oneshot::Sender<Result<EntryHash>>);

/// Appends waiting for the next batch.
#[derive(Default)]
pub(super) struct Appends {
    waiting: VecDeque<Waiting>,
    /// A `StoreAppends` is in the mailbox.
    scheduled: bool,
    /// Batches stored and pushed whose callers wait for the sync.
    syncing: usize,
}

impl Appends {
    /// Answers every waiting caller that the log is restarting: their
    /// messages were not stored and may be sent again.
    pub(super) fn restarting(&mut self) {
        self.scheduled = false;
        // Batches waiting for their sync still answer their callers.
        self.syncing = 0;
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Err(Error::Restarting(NAME)));
        }
    }
}

impl Handler<AppendMessage> for GroupLog {
    type Result = ResponseFuture<Result<EntryHash>>;

    fn handle(&mut self, msg: AppendMessage, ctx: &mut Self::Context) -> Self::Result {
        let queued = guarded(NAME, ctx, || {
            let state = self.state.as_ref().ok_or(Error::Unavailable(NAME))?;
            if state.membership.is_removed(&state.me.signing) {
                return Err(Error::Refused("no longer a member of this group"));
            }
            if self.appends.waiting.len() >= MAX_WAITING {
                return Err(Error::Refused("too many messages are waiting to be stored"));
            }
            let (reply, answer) = oneshot::channel();
            self.appends.waiting.push_back((msg.payload, reply));
            Ok(answer)
        });
        if queued.is_ok() {
            schedule(self, ctx);
        }
        Box::pin(async move { queued?.await.map_err(|_| Error::Restarting(NAME))? })
    }
}

/// Puts a `StoreAppends` at the end of the mailbox (after the appends
/// already there, which join the batch), unless one is there or too many
/// batches wait for their sync.
fn schedule(act: &mut GroupLog, ctx: &mut Context<GroupLog>) {
    if !act.appends.scheduled && !act.appends.waiting.is_empty() && act.appends.syncing < MAX_SYNCING {
        act.appends.scheduled = true;
        ctx.address().do_send(StoreAppends);
    }
}

/// Internal: seal and store the waiting appends.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct StoreAppends;

/// What a batch needs from the actor's state.
struct Batch {
    epoch: EpochId,
    keys: GroupKeys,
    chain: SenderChain,
    reserved: u64,
    heads: Vec<EntryHash>,
    lamport: u64,
    owed: Vec<veil_crypto::MemberPublic>,
}

/// What a stored batch changed.
struct Stored {
    hashes: Vec<EntryHash>,
    /// Their Lamport clocks.
    lamports: Vec<u64>,
    chain: SenderChain,
    reserved: u64,
    parents: Vec<EntryHash>,
    lamport: u64,
    shared: Option<MemberJoined>,
    /// Durable once synced; `Err` if reserving positions failed (nothing
    /// was pushed then; the callers are told).
    unsynced: Result<Unsynced>,
}

impl Handler<StoreAppends> for GroupLog {
    // Atomic: batches are sealed and stored one after another, in order.
    // A chain share owed to members learned lately is written first, at
    // the chain's position before these messages (see `share`).
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: StoreAppends, _: &mut Self::Context) -> Self::Result {
        self.appends.scheduled = false;
        let take = self.appends.waiting.len().min(MAX_BATCH);
        let (payloads, replies): (Vec<Vec<u8>>, Vec<_>) = self.appends.waiting.drain(..take).unzip();
        let (group, deps, members) = (self.group, self.deps.clone(), self.members.clone());
        // Seal on a copy of the chain: the actor's chain only moves once the
        // entries (and the chain state with them) are stored.
        let batch = self.state.as_ref().ok_or(Error::Unavailable(NAME)).and_then(|state| {
            if state.membership.is_removed(&state.me.signing) {
                return Err(Error::Refused("no longer a member of this group"));
            }
            Ok(Batch {
                epoch: state.writer.epoch,
                keys: state.epochs.keys(&state.writer.epoch).ok_or(Error::Unavailable(NAME))?.clone(),
                chain: state.writer.chain.clone(),
                reserved: state.writer.reserved,
                heads: state.heads.clone(),
                lamport: state.lamport,
                owed: share::owed(state),
            })
        });
        AtomicResponse::new(Box::pin(
            async move { store_batch(&deps, group, &members, batch?, payloads).await }.into_actor(self).map(
                move |r: Result<Stored>, act, ctx| {
                    match r {
                        Ok(stored) => {
                            if let Some(state) = act.state.as_mut() {
                                if let Some(joined) = &stored.shared {
                                    share::record_share(&mut state.membership, &mut state.writer, joined);
                                }
                                state.writer.chain = stored.chain;
                                state.writer.reserved = stored.reserved;
                                for (hash, lamport) in stored.hashes.iter().zip(&stored.lamports) {
                                    state.known.insert(*hash, (EntryKind::Message, *lamport));
                                }
                                state.known.trim();
                                let last = stored.hashes.last().copied();
                                if let Some(last) = last {
                                    state.heads = heads_after(&state.heads, &stored.parents, last);
                                }
                                state.lamport = stored.lamport;
                            }
                            match stored.unsynced {
                                Ok(unsynced) => synced_then_reply(act, ctx, unsynced, replies, stored.hashes),
                                Err(e) => failed(replies, e),
                            }
                        }
                        Err(e) => failed(replies, e),
                    }
                    schedule(act, ctx);
                },
            ),
        ))
    }
}

/// Stored means durable: once the batch is synced, tells its callers and
/// the node's subscribers; the next batch goes on meanwhile. The wait is
/// not the actor's: a restart must not tell callers of a stored batch that
/// it failed (they would send their messages again).
fn synced_then_reply(
    act: &mut GroupLog,
    ctx: &mut Context<GroupLog>,
    unsynced: Unsynced,
    replies: Vec<oneshot::Sender<Result<EntryHash>>>,
    hashes: Vec<EntryHash>,
) {
    act.appends.syncing += 1;
    let (store, events, group, log) = (act.deps.store.clone(), act.deps.events.clone(), act.group, ctx.address());
    actix_rt::spawn(async move {
        match store.sync(unsynced).await {
            Ok(()) => {
                for hash in &hashes {
                    // No subscriber is fine; a lagging one sees `Lagged`.
                    let _ = events.send(NodeEvent::EntryAdded { group, hash: *hash });
                }
                for (reply, hash) in replies.into_iter().zip(hashes) {
                    let _ = reply.send(Ok(hash));
                }
            }
            Err(e) => failed(replies, e.into()),
        }
        log.do_send(BatchSynced);
    });
}

/// Internal: a batch's callers heard back; the next may go.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct BatchSynced;

impl Handler<BatchSynced> for GroupLog {
    type Result = ();

    fn handle(&mut self, _: BatchSynced, ctx: &mut Self::Context) {
        self.appends.syncing = self.appends.syncing.saturating_sub(1);
        schedule(self, ctx);
    }
}

/// Tells the callers of a batch that it failed (the first caller why).
fn failed(replies: Vec<oneshot::Sender<Result<EntryHash>>>, e: Error) {
    tracing::debug!(actor = NAME, error = %e, count = replies.len(), "a batch of appends failed");
    let mut replies = replies.into_iter();
    if let Some(first) = replies.next() {
        let _ = first.send(Err(e));
    }
    for reply in replies {
        let _ = reply.send(Err(Error::Refused("the batch this message was in failed")));
    }
}

/// Seals `payloads` in order (each naming the previous as its parent) and
/// stores them in one transaction; the share owed goes first.
async fn store_batch(
    deps: &GroupLogDeps,
    group: veil_crypto::GroupId,
    members: &[veil_storage::Peer],
    batch: Batch,
    payloads: Vec<Vec<u8>>,
) -> Result<Stored> {
    let Batch { epoch, keys, chain, reserved, heads, lamport, owed } = batch;
    let shared = match owed.is_empty() {
        true => None,
        false => Some(announce(deps, group, epoch, &keys, &chain, members, owed).await?.0),
    };
    let first_parents = parents_of(&heads);
    let seal = SealMessages { group, epoch, keys, chain, parents: first_parents.clone(), lamport, payloads };
    let SealedMessages { author, entries: sealed, chain, payloads } =
        deps.sealer.send(seal).await.map_err(mailbox("identity-vault"))??;
    let last = sealed.len().saturating_sub(1);
    let reserving = chain.state().next > reserved;
    let reserved_until = match reserving {
        true => chain.state().next.saturating_add(RESERVE_AHEAD),
        false => reserved,
    };
    let rows: Vec<NewEntry<'_>> = sealed
        .iter()
        .zip(&payloads)
        .enumerate()
        .map(|(i, ((entry, links), payload))| NewEntry {
            group,
            entry,
            links,
            author: Some(author),
            payload: Some(&payload[..]),
            // The chain's state after the batch goes with its last entry.
            ratchet: (i == last).then(|| RatchetUpdate::Sender { state: chain.state(), reserved_until }),
            outbox: members,
        })
        .collect();
    let (_, unsynced) = deps.store.append_batch_pushed(&rows, deps.resend_after).await?;
    drop(rows);
    // Committed: from here on the chain has moved whatever fails.
    let hashes: Vec<EntryHash> = sealed.iter().map(|(e, _)| e.hash()).collect();
    let lamports: Vec<u64> = sealed.iter().map(|(_, l)| l.lamport).collect();
    let lamport = sealed.last().map_or(lamport, |(_, l)| l.lamport);
    // Whatever the store's durability: a reservation undone would let
    // keys be used twice.
    let reservation = match reserving {
        true => deps.store.sync_regardless(unsynced).await,
        false => Ok(()),
    };
    let (reserved, unsynced) = match reservation {
        Ok(()) => {
            // Their outbox rows are not due yet: the courier pushes them now.
            let pushed = match members.is_empty() {
                true => Vec::new(),
                false => sealed.into_iter().map(|(entry, _)| entry).collect(),
            };
            tell_owed(deps, group, hashes.clone(), pushed).await;
            (reserved_until, Ok(unsynced))
        }
        Err(e) => (reserved, Err(e.into())),
    };
    Ok(Stored { hashes, lamports, chain, reserved, parents: first_parents, lamport, shared, unsynced })
}
