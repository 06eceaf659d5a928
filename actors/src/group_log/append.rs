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
//! Sealing and storing overlap: each round stores the batch sealed in the
//! round before while the appends that waited meanwhile are sealed on from
//! its chain (signing on this thread, SQLite on the writer's). A sealed
//! batch only counts once stored: until then nothing of it has left the
//! node, so when the chain it was sealed on did not become the stored one
//! (its predecessor failed to store, or the epoch changed) its messages go
//! back to the front of the queue and are sealed again.
//!
//! The fsync is off the message's path: the transaction commits deferred
//! (see `veil_storage::Unsynced`), the entries are pushed to the network,
//! and the callers hear back once the WAL is synced; the next batch is
//! sealed and stored meanwhile (at most `MAX_SYNCING` messages wait). A
//! power loss between the push and the sync could undo the chain's move;
//! the next messages would then be sealed under keys and nonces already
//! sent. So positions are *reserved* ahead, durably, and a batch is pushed
//! before its sync only inside a durable reservation; the chain resumes
//! past the reservation after an unclean stop (a clean close releases it).
//! The reservation is raised early and synced beside the path (see
//! `reserve`): a conversation's messages never wait for it, only the first
//! batch after loading and a flood that outruns the syncs. After a crash
//! receivers step over at most the reservation (512 positions) past what
//! they were sent, inside their window (1024).

use crate::supervision::GuardedMap;
use std::collections::VecDeque;

use actix::{AsyncContext, AtomicResponse, Context, Handler, ResponseFuture, WrapFuture};
use tokio::sync::oneshot;
use veil_crypto::{
    EpochId, GroupKeys, SenderChain, VerifyKey,
    envelope::{EntryHash, EntryKind, Position, SealedEntry},
};
use veil_proto::metadata::MemberJoined;
use veil_storage::{NewEntry, RatchetUpdate, Unsynced};

use super::{GroupLog, GroupLogDeps, NAME, REMOVED, Writer, announce, reserve::Reservation, share, tell_owed};
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

/// Most messages stored and pushed that wait for their sync at once: the
/// next batch is sealed and stored while the disk syncs, up to this many.
/// Counted in messages, not batches: at a conversation's pace every
/// message is a batch of its own, and a bound of four batches stalled the
/// fifth message for as long as one slow fsync took (the receiver's acks
/// had the same bound: see the courier's `MAX_ACKS_SYNCING`). A power loss
/// can undo at most this many pushed messages, as four full batches could.
const MAX_SYNCING: usize = 4 * MAX_BATCH;

/// Most appends waiting for the next batch. The actor's mailbox bounds how
/// many can arrive between two batches; this only guards the queue.
const MAX_WAITING: usize = 4096;

/// How a caller hears whether its message was stored.
type Reply = oneshot::Sender<Result<EntryHash>>;

/// One caller waiting for its message to be stored.
type Waiting = (Vec<u8>, Reply);

/// Appends waiting for the next batch.
#[derive(Default)]
pub(super) struct Appends {
    waiting: VecDeque<Waiting>,
    /// The batch sealed ahead, stored by the next round.
    sealed: Option<SealedBatch>,
    /// A `StoreAppends` is in the mailbox.
    scheduled: bool,
    /// Messages stored and pushed whose callers wait for the sync.
    syncing: usize,
}

impl Appends {
    /// Answers every waiting caller that the log is restarting: their
    /// messages were not stored and may be sent again.
    pub(super) fn restarting(&mut self) {
        self.scheduled = false;
        // Batches waiting for their sync still answer their callers.
        self.syncing = 0;
        let sealed = self.sealed.take().into_iter().flat_map(|batch| batch.replies);
        for reply in self.waiting.drain(..).map(|(_, reply)| reply).chain(sealed) {
            let _ = reply.send(Err(Error::Restarting(NAME)));
        }
    }

    /// Puts a sealed batch's messages back at the front of the queue, to be
    /// sealed again (nothing of it left this node: it was never stored).
    fn reseal(&mut self, batch: SealedBatch) {
        for waiting in batch.payloads.into_iter().zip(batch.replies).rev() {
            self.waiting.push_front(waiting);
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
            if self.deps.removed() {
                return Err(REMOVED);
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
    let work = !act.appends.waiting.is_empty() || act.appends.sealed.is_some();
    if !act.appends.scheduled && work && act.appends.syncing < MAX_SYNCING {
        act.appends.scheduled = true;
        ctx.address().do_send(StoreAppends);
    }
}

/// Internal: one round — store the batch sealed last round while the
/// waiting appends are sealed.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct StoreAppends;

/// A batch sealed, not yet stored.
struct SealedBatch {
    epoch: EpochId,
    /// The chain position it was sealed from.
    from: u64,
    author: VerifyKey,
    entries: Vec<(SealedEntry, Position)>,
    payloads: Vec<Vec<u8>>,
    replies: Vec<Reply>,
    /// The chain after its last entry.
    chain: SenderChain,
    /// The parents of its first entry.
    parents: Vec<EntryHash>,
}

impl SealedBatch {
    /// Whether it follows on from `writer`'s chain as stored: otherwise
    /// the chain moved since (a new epoch, or the batch before it failed).
    fn follows(&self, writer: &Writer) -> bool {
        self.epoch == writer.epoch && self.from == writer.chain.state().next
    }
}

/// What sealing a batch needs from the actor's state.
struct SealJob {
    epoch: EpochId,
    keys: GroupKeys,
    chain: SenderChain,
    parents: Vec<EntryHash>,
    lamport: u64,
    /// Members owed a share of the chain first (only with nothing pending).
    owed: Vec<veil_crypto::MemberPublic>,
    payloads: Vec<Vec<u8>>,
    replies: Vec<Reply>,
}

/// What a sealed job gives back.
struct Sealing {
    batch: SealedBatch,
    /// The share written first, if one was owed.
    shared: Option<MemberJoined>,
}

/// What a round did with the batch it sealed.
enum Sealed {
    /// Kept for the next round to store.
    Ahead(SealedBatch),
    /// Stored at once (a small batch: see `vault::SMALL_BATCH`).
    Stored(std::result::Result<Stored, (Error, Vec<Reply>)>),
}

/// What storing a batch changed.
struct Stored {
    hashes: Vec<EntryHash>,
    /// Their Lamport clocks.
    lamports: Vec<u64>,
    chain: SenderChain,
    /// The sending positions reserved ahead of the chain once this batch is stored (see `reserve`).
    reservation: Reservation,
    /// The raise of the reservation it wrote, durable once synced.
    raised: Option<Raised>,
    /// The parents its first entry named: the heads its last entry replaces.
    parents: Vec<EntryHash>,
    replies: Vec<Reply>,
    /// Durable once synced; `Err` if reserving positions failed (nothing
    /// was pushed then; the callers are told).
    unsynced: Result<Unsynced>,
}

impl Handler<StoreAppends> for GroupLog {
    // Atomic: rounds run one after another, in order. A chain share owed
    // to members learned lately is written first, at the chain's position
    // before the next messages (see `share`), with nothing sealed ahead.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: StoreAppends, _: &mut Self::Context) -> Self::Result {
        self.appends.scheduled = false;
        let (group, deps, members) = (self.group, self.deps.clone(), self.members.clone());
        let round = self.state.as_ref().ok_or(Error::Unavailable(NAME)).and_then(|state| {
            if state.membership.is_removed(&state.me.signing) {
                return Err(Error::Refused("no longer a member of this group"));
            }
            Ok(state.writer.clone())
        });
        let writer = match round {
            Ok(writer) => writer,
            Err(e) => {
                let sealed = self.appends.sealed.take().into_iter().flat_map(|b| b.replies);
                failed(self.appends.waiting.drain(..).map(|(_, reply)| reply).chain(sealed).collect(), e);
                return AtomicResponse::new(Box::pin(actix::fut::ready(())));
            }
        };
        let pending = match self.appends.sealed.take() {
            Some(batch) if batch.follows(&writer) => Some(batch),
            Some(batch) => {
                self.appends.reseal(batch);
                None
            }
            None => None,
        };
        // Without the keys of the epoch it writes in the log cannot seal:
        // the callers hear why rather than wait on rounds that do nothing.
        let job = self.seal_job(&writer, pending.as_ref()).unwrap_or_else(|e| {
            failed(self.appends.waiting.drain(..).map(|(_, reply)| reply).collect(), e);
            None
        });
        // A small batch with nothing sealed before it (a conversation, not
        // a flood) is stored in the same round: a lone message does not
        // wait for the next.
        let store_now =
            pending.is_none() && job.as_ref().is_some_and(|j| j.payloads.len() <= crate::vault::SMALL_BATCH);
        let reservation = writer.reservation;
        AtomicResponse::new(Box::pin(
            async move {
                let storing = async {
                    match pending {
                        Some(batch) => Some(store_sealed(&deps, group, &members, batch, reservation).await),
                        None => None,
                    }
                };
                let sealing = async {
                    match job {
                        Some(job) => Some(seal_job(&deps, group, &members, job).await),
                        None => None,
                    }
                };
                let (stored, sealed) = futures::join!(storing, sealing);
                let sealed = match sealed {
                    Some(Ok(Sealing { batch, shared })) if store_now => {
                        let now = store_sealed(&deps, group, &members, batch, reservation).await;
                        Some(Ok((shared, Sealed::Stored(now))))
                    }
                    Some(Ok(Sealing { batch, shared })) => Some(Ok((shared, Sealed::Ahead(batch)))),
                    Some(Err(e)) => Some(Err(e)),
                    None => None,
                };
                (stored, sealed)
            }
            .into_actor(self)
            .guarded_map(NAME, move |(stored, sealed), act, ctx| {
                match stored {
                    Some(Ok(stored)) => committed(act, ctx, stored),
                    Some(Err((e, replies))) => failed(replies, e),
                    None => {}
                }
                match sealed {
                    Some(Ok((shared, sealed))) => {
                        if let (Some(joined), Some(state)) = (&shared, act.state.as_mut()) {
                            share::record_share(&mut state.membership, &mut state.writer, joined);
                        }
                        match sealed {
                            Sealed::Ahead(batch) => act.appends.sealed = Some(batch),
                            Sealed::Stored(Ok(stored)) => committed(act, ctx, stored),
                            Sealed::Stored(Err((e, replies))) => failed(replies, e),
                        }
                    }
                    Some(Err((e, replies))) => failed(replies, e),
                    None => {}
                }
                schedule(act, ctx);
            }),
        ))
    }
}

impl GroupLog {
    /// Takes the waiting appends to seal on from `pending` (or from the
    /// stored chain), unless a share is owed first and `pending` has to be
    /// stored before it.
    fn seal_job(&mut self, writer: &Writer, pending: Option<&SealedBatch>) -> Result<Option<SealJob>> {
        let Some(state) = self.state.as_ref() else { return Ok(None) };
        let owed = share::owed(state);
        if self.appends.waiting.is_empty() || (pending.is_some() && !owed.is_empty()) {
            return Ok(None);
        }
        let keys = state.epochs.keys(&writer.epoch).ok_or(Error::Unavailable(NAME))?.clone();
        let (chain, parents, lamport) = match pending.and_then(|batch| Some((batch, batch.entries.last()?))) {
            Some((batch, (last, position))) => {
                (batch.chain.clone(), vec![last.hash()], position.lamport.max(state.lamport))
            }
            None => (writer.chain.clone(), parents_of(&state.heads), state.lamport),
        };
        let take = self.appends.waiting.len().min(MAX_BATCH);
        let (payloads, replies) = self.appends.waiting.drain(..take).unzip();
        Ok(Some(SealJob { epoch: writer.epoch, keys, chain, parents, lamport, owed, payloads, replies }))
    }
}

/// A stored batch moves the actor's chain, heads and clock; its callers
/// hear back once it is synced.
fn committed(act: &mut GroupLog, ctx: &mut Context<GroupLog>, stored: Stored) {
    let Stored { hashes, lamports, chain, reservation, raised, parents, replies, unsynced } = stored;
    if let Some(state) = act.state.as_mut() {
        state.writer.chain = chain;
        state.writer.reservation = reservation;
        for (hash, lamport) in hashes.iter().zip(&lamports) {
            state.known.insert(*hash, (EntryKind::Message, *lamport));
        }
        state.known.trim();
        if let (Some(last), Some(lamport)) = (hashes.last(), lamports.last()) {
            state.heads = heads_after(&state.heads, &parents, *last);
            state.lamport = state.lamport.max(*lamport);
        }
    }
    match unsynced {
        Ok(unsynced) => synced_then_reply(act, ctx, unsynced, replies, hashes, raised),
        Err(e) => failed(replies, e),
    }
}

/// A raise of the reservation, durable once its commit is synced.
#[derive(Debug, Clone, Copy)]
struct Raised {
    /// The epoch of the chain it reserves for.
    epoch: EpochId,
    up_to: u64,
}

/// Stored means durable: once the batch is synced, tells its callers and
/// the node's subscribers; the next batch goes on meanwhile. The wait is
/// not the actor's: a restart must not tell callers of a stored batch that
/// it failed (they would send their messages again). A batch that raised
/// the reservation is synced whatever the store's durability, and the log
/// hears that the raise is durable.
fn synced_then_reply(
    act: &mut GroupLog,
    ctx: &mut Context<GroupLog>,
    unsynced: Unsynced,
    replies: Vec<oneshot::Sender<Result<EntryHash>>>,
    hashes: Vec<EntryHash>,
    raised: Option<Raised>,
) {
    let count = replies.len();
    act.appends.syncing += count;
    let (store, events, group, log) = (act.deps.store.clone(), act.deps.events.clone(), act.group, ctx.address());
    actix_rt::spawn(async move {
        let synced = match raised {
            Some(_) => store.sync_regardless(unsynced).await,
            None => store.sync(unsynced).await,
        };
        let raised = raised.filter(|_| synced.is_ok());
        match synced {
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
        log.do_send(BatchSynced { count, raised });
    });
}

/// Internal: a batch's callers heard back; the next may go.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct BatchSynced {
    /// Its messages.
    count: usize,
    /// The reservation it raised, now durable.
    raised: Option<Raised>,
}

impl Handler<BatchSynced> for GroupLog {
    type Result = ();

    fn handle(&mut self, msg: BatchSynced, ctx: &mut Self::Context) {
        self.appends.syncing = self.appends.syncing.saturating_sub(msg.count);
        // Of the chain it was raised for only (not one of a later epoch).
        if let (Some(raised), Some(state)) = (msg.raised, self.state.as_mut())
            && state.writer.epoch == raised.epoch
        {
            state.writer.reservation.synced(raised.up_to);
        }
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

/// Seals a job's payloads in order, each naming the previous as its
/// parent; a share owed goes first. On failure the callers are handed back.
async fn seal_job(
    deps: &GroupLogDeps,
    group: veil_crypto::GroupId,
    members: &[veil_storage::Addressee],
    job: SealJob,
) -> std::result::Result<Sealing, (Error, Vec<Reply>)> {
    let SealJob { epoch, keys, chain, parents, lamport, owed, payloads, replies } = job;
    let from = chain.state().next;
    let shared = match owed.is_empty() {
        true => None,
        false => match announce(deps, group, epoch, &keys, &chain, members, owed).await {
            Ok((joined, _)) => Some(joined),
            Err(e) => return Err((e, replies)),
        },
    };
    let seal = SealMessages { group, epoch, keys, chain, parents: parents.clone(), lamport, payloads };
    match deps.sealer.send(seal).await.map_err(mailbox("identity-vault")).and_then(|r| r) {
        Ok(SealedMessages { author, entries, chain, payloads }) => {
            let batch = SealedBatch { epoch, from, author, entries, payloads, replies, chain, parents };
            Ok(Sealing { batch, shared })
        }
        Err(e) => Err((e, replies)),
    }
}

/// Stores a sealed batch in one transaction, with the chain's state after
/// it and its outbox rows, then pushes it. On failure nothing of it was
/// stored and its callers are handed back.
async fn store_sealed(
    deps: &GroupLogDeps,
    group: veil_crypto::GroupId,
    members: &[veil_storage::Addressee],
    batch: SealedBatch,
    reservation: Reservation,
) -> std::result::Result<Stored, (Error, Vec<Reply>)> {
    let last = batch.entries.len().saturating_sub(1);
    let plan = reservation.plan(batch.chain.state().next);
    let reserved_until = plan.write;
    let rows: Vec<NewEntry<'_>> = batch
        .entries
        .iter()
        .zip(&batch.payloads)
        .enumerate()
        .map(|(i, ((entry, position), payload))| NewEntry {
            group,
            entry,
            position,
            author: Some(batch.author),
            payload: Some(&payload[..]),
            // The chain's state after the batch goes with its last entry.
            ratchet: (i == last).then(|| RatchetUpdate::Sender { state: batch.chain.state(), reserved_until }),
            outbox: members,
        })
        .collect();
    let appended = deps.store.append_batch_pushed(&rows, deps.resend_after).await;
    drop(rows);
    let unsynced = match appended {
        Ok((_, unsynced)) => unsynced,
        Err(e) => return Err((e.into(), batch.replies)),
    };
    // Committed: from here on the chain has moved whatever fails.
    let SealedBatch { epoch, entries, chain, parents, replies, .. } = batch;
    let hashes: Vec<EntryHash> = entries.iter().map(|(e, _)| e.hash()).collect();
    let lamports = entries.iter().map(|(_, position)| position.lamport).collect();
    // Past what is durably reserved, synced before the push whatever the
    // store's durability: a reservation undone would let keys be used twice.
    let synced = match plan.wait {
        true => deps.store.sync_regardless(unsynced).await,
        false => Ok(()),
    };
    let (reservation, raised, unsynced) = match synced {
        Ok(()) => {
            // Their outbox rows are not due yet: the courier pushes them now.
            let pushed = match members.is_empty() {
                true => Vec::new(),
                false => entries.into_iter().map(|(entry, _)| entry).collect(),
            };
            tell_owed(deps, group, hashes.clone(), pushed).await;
            let raised = (plan.raises && !plan.wait).then_some(Raised { epoch, up_to: plan.write });
            (reservation.stored(plan, plan.wait), raised, Ok(unsynced))
        }
        Err(e) => (reservation.stored(plan, false), None, Err(e.into())),
    };
    Ok(Stored { hashes, lamports, chain, reservation, raised, parents, replies, unsynced })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use veil_crypto::{OsEntropy, SigningSecret};

    use super::*;

    fn batch(
        epoch: EpochId,
        from: u64,
        chain: &SenderChain,
        payloads: &[&[u8]],
    ) -> (SealedBatch, Vec<oneshot::Receiver<Result<EntryHash>>>) {
        let (replies, answers) = payloads.iter().map(|_| oneshot::channel()).unzip();
        let author = SigningSecret::generate(&mut OsEntropy).unwrap().verify_key();
        let batch = SealedBatch {
            epoch,
            from,
            author,
            entries: Vec::new(),
            payloads: payloads.iter().map(|p| p.to_vec()).collect(),
            replies,
            chain: chain.clone(),
            parents: Vec::new(),
        };
        (batch, answers)
    }

    #[test]
    fn a_batch_sealed_on_a_chain_that_moved_elsewhere_goes_back_to_the_front_in_order() {
        let chain = SenderChain::generate(&mut OsEntropy).unwrap();
        let mut appends = Appends::default();
        let (later, _) = oneshot::channel();
        appends.waiting.push_back((b"third".to_vec(), later));
        let (sealed, mut answers) = batch(EpochId::ROOT, 0, &chain, &[b"first", b"second"]);
        appends.reseal(sealed);
        let order: Vec<&[u8]> = appends.waiting.iter().map(|(p, _)| p.as_slice()).collect();
        assert_eq!(order, [&b"first"[..], b"second", b"third"]);
        // Each caller still waits on its own reply.
        let (_, first) = appends.waiting.pop_front().unwrap();
        let _ = first.send(Err(Error::Refused("test")));
        assert!(matches!(answers[0].try_recv(), Ok(Err(Error::Refused("test")))));
        assert!(answers[1].try_recv().is_err(), "the second is still waiting");
        // A restart answers everyone, sealed ahead or waiting.
        let (ahead, mut ahead_answers) = batch(EpochId::ROOT, 0, &chain, &[b"x"]);
        appends.sealed = Some(ahead);
        appends.restarting();
        assert!(matches!(ahead_answers[0].try_recv(), Ok(Err(Error::Restarting(_)))));
        assert!(matches!(answers[1].try_recv(), Ok(Err(Error::Restarting(_)))));
    }

    #[test]
    fn a_sealed_batch_follows_only_the_stored_chain_it_was_sealed_on() {
        let chain = SenderChain::generate(&mut OsEntropy).unwrap();
        let writer = Writer {
            epoch: EpochId::ROOT,
            chain: chain.clone(),
            reservation: Reservation::at(0),
            shared_with: HashSet::new(),
        };
        let at = chain.state().next;
        assert!(batch(EpochId::ROOT, at, &chain, &[b"m"]).0.follows(&writer));
        assert!(!batch(EpochId::ROOT, at + 1, &chain, &[b"m"]).0.follows(&writer), "its predecessor was not stored");
        assert!(!batch(EpochId([7; 32]), at, &chain, &[b"m"]).0.follows(&writer), "sealed in another epoch");
    }
}
