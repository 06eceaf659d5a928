//! Group logs: a hash-linked DAG of sealed entries per group and log kind,
//! with the bookkeeping sync needs (heads, missing parents) kept up to date
//! on every append, and a deterministic total order (Lamport clock, then hash).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::Row;
use veil_crypto::{
    ChainState, GroupId, ReceiverChain, VerifyKey,
    envelope::{EntryHash, EntryKind, Position, SealedEntry},
    time::UnixTime,
};
use zeroize::Zeroizing;

mod dag;
mod lookup;
mod read;

use dag::push_dag_update;
pub(crate) use lookup::{entry_hashes, hash_key, push_hash_filter, rows_by_hash, sealed_of};

use crate::{
    Error, Result, Store,
    outbox::Addressee,
    ratchet::{Reserve, push_receiver, push_sender, read_skipped},
    rows::{blob, time_value, to_i64},
    script::{Commit, Script},
    sync::Unsynced,
};

const SEAL_PAYLOAD: &[u8] = b"veil/storage/entry-payload";
/// Rows per multi-row statement (SQLite allows 32 766 bound parameters).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// An entry to append, with everything that must be stored atomically with it.
#[derive(Debug)]
pub struct NewEntry<'a> {
    /// The group whose log it belongs to.
    pub group: GroupId,
    /// The entry as sealed on the wire.
    pub entry: &'a SealedEntry,
    /// Its decrypted position (kind, Lamport clock, parents).
    pub position: &'a Position,
    /// Its author device, when known (members know it; replication nodes do not).
    pub author: Option<VerifyKey>,
    /// The decrypted payload to keep (sealed under the storage key), if any.
    /// Message keys are deleted once used, so this is how history stays readable.
    pub payload: Option<&'a [u8]>,
    /// The ratchet state change that goes with the entry.
    pub ratchet: Option<RatchetUpdate<'a>>,
    /// Peers the entry is owed to.
    pub outbox: &'a [Addressee],
}

/// A ratchet state to persist in the same transaction as an entry.
#[derive(Debug, Clone, Copy)]
pub enum RatchetUpdate<'a> {
    /// This device sealed the entry: its sending chain moved on, and
    /// positions below `reserved_until` may be sent before this commit is
    /// durable (see [`SenderChainRecord`](crate::SenderChainRecord); the
    /// stored reservation is never lowered but by a clean close).
    Sender {
        /// The sending chain after this entry; when one append carries several for a chain, the last one is stored.
        state: &'a ChainState,
        /// Reserved up to here (at least the chain's position).
        reserved_until: u64,
    },
    /// The entry was opened with `device`'s receiving chain.
    Receiver {
        /// The author device whose receiving chain opened the entry.
        device: VerifyKey,
        /// The chain after opening (used keys gone).
        chain: &'a ReceiverChain,
    },
}

/// Whether an append must look up which of its entries are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    /// They may be (received entries, or any the caller cannot vouch for).
    Lookup,
    /// The caller vouches that none is: this device sealed them just now,
    /// at chain positions never used before, or they are messages past
    /// their author's chain position as stored.
    Vouched,
}

/// The row ids of groups, learned by appends: a group's never changes and
/// groups are never deleted, so an append of entries vouched for needs
/// no read at all.
#[derive(Debug, Default)]
pub(crate) struct GroupRefs(std::sync::Mutex<HashMap<GroupId, i64>>);

impl GroupRefs {
    /// The row ids of all of `groups`, if every one is known.
    fn known(&self, groups: &BTreeSet<GroupId>) -> Option<HashMap<GroupId, i64>> {
        let refs = self.0.lock().ok()?;
        groups.iter().map(|g| Some((*g, *refs.get(g)?))).collect()
    }

    fn learn(&self, found: &HashMap<GroupId, i64>) {
        if let Ok(mut refs) = self.0.lock() {
            // Bounded by the groups this device is in.
            refs.extend(found.iter().map(|(g, r)| (*g, *r)));
        }
    }
}

/// What happened to one entry of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored (with its ratchet update and outbox rows).
    Stored,
    /// Already present: nothing was written for it.
    Duplicate,
}

/// An entry as read back from a group's log, with what this node learned opening it.
#[derive(Debug, Clone)]
pub struct EntryRecord {
    /// The hash that names it, as its children list it among their parents.
    pub hash: EntryHash,
    /// The log it belongs to, read from its position.
    pub kind: EntryKind,
    /// Its Lamport clock: one more than its largest parent's.
    pub lamport: u64,
    /// The entries its position name as parents, all in the same log.
    pub parents: Vec<EntryHash>,
    /// Its author device, if known.
    pub author: Option<VerifyKey>,
    /// The entry as sealed on the wire.
    pub sealed: SealedEntry,
    /// The decrypted payload, if it was kept.
    pub payload: Option<Zeroizing<Vec<u8>>>,
    /// When this node stored it.
    pub received_at: UnixTime,
}

/// The entries one append adds to one log, and the parents they name.
#[derive(Default)]
struct LogChange {
    new: Vec<[u8; 32]>,
    parents: BTreeSet<[u8; 32]>,
}

struct Prepared {
    hash: [u8; 32],
    kind: i64,
    lamport: i64,
    parents: Vec<u8>,
    sealed_payload: Option<Vec<u8>>,
}

fn payload_purpose(hash: &[u8; 32]) -> Vec<u8> {
    [SEAL_PAYLOAD, hash.as_slice()].concat()
}

/// From this many hashes on, [`Store::sync_order`] scans the group's entries
/// in order rather than looking each up.
pub(crate) const SCAN_ORDER_AT: usize = 512;

pub(crate) fn kind_code(kind: EntryKind) -> i64 {
    kind as i64
}

pub(crate) fn kind_from(code: i64) -> Result<EntryKind> {
    match code {
        1 => Ok(EntryKind::Metadata),
        2 => Ok(EntryKind::Message),
        _ => Err(Error::Invalid { what: "entry kind", reason: "unknown" }),
    }
}

fn hashes_from(blob: &[u8]) -> Result<Vec<EntryHash>> {
    if !blob.len().is_multiple_of(32) {
        return Err(Error::Invalid { what: "parents", reason: "not a list of 32-byte hashes" });
    }
    Ok(blob
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            EntryHash(h)
        })
        .collect())
}

impl Store {
    fn prepare(&self, e: &NewEntry<'_>) -> Result<Prepared> {
        let hash = e.entry.hash().0;
        Ok(Prepared {
            hash,
            kind: kind_code(e.position.kind),
            lamport: to_i64(e.position.lamport, "Lamport clock")?,
            parents: e.position.parents.iter().flat_map(|p| p.0).collect(),
            sealed_payload: e.payload.map(|p| self.key.seal(&payload_purpose(&hash), p)).transpose()?,
        })
    }

    /// Appends one entry, its ratchet update and its outbox rows in one
    /// transaction: after a crash, all of it is there or none of it.
    pub async fn append(&self, entry: NewEntry<'_>) -> Result<Appended> {
        let mut out = self.append_batch(std::slice::from_ref(&entry)).await?;
        out.pop().ok_or(Error::Invalid { what: "append", reason: "no outcome" })
    }

    /// Appends many entries in one transaction, with multi-row statements.
    /// Entries already stored (or repeated in the batch) are skipped along
    /// with their ratchet updates and outbox rows. Outbox rows are due at
    /// once.
    pub async fn append_batch(&self, batch: &[NewEntry<'_>]) -> Result<Vec<Appended>> {
        Ok(self.append_owed(batch, self.now(), Commit::Synced, Fresh::Lookup).await?.0)
    }

    /// Appends like [`append_batch`](Self::append_batch), returning once
    /// the transaction committed but before it is durable against power
    /// loss: [`Store::sync`] with the [`Unsynced`] returned waits for that.
    /// (It survives the process being killed at once.)
    pub async fn append_batch_deferred(&self, batch: &[NewEntry<'_>]) -> Result<(Vec<Appended>, Unsynced)> {
        self.append_owed(batch, self.now(), Commit::Deferred, Fresh::Lookup).await
    }

    /// Appends like [`append_batch_deferred`](Self::append_batch_deferred)
    /// received messages the caller knows are not stored: each is past its
    /// author's receiving chain as stored (storing it would have moved the
    /// chain past it). Nothing is looked up first, so the append is one
    /// round trip to SQLite instead of two, unless a chain holds skipped
    /// keys. An entry that *is* stored would be stored twice: only for
    /// entries the caller can vouch for.
    pub async fn append_unseen_deferred(&self, batch: &[NewEntry<'_>]) -> Result<(Vec<Appended>, Unsynced)> {
        self.append_owed(batch, self.now(), Commit::Deferred, Fresh::Vouched).await
    }

    /// Appends like [`append_batch`](Self::append_batch) entries the caller
    /// pushes to their peers itself right away: their outbox rows first
    /// come due `retry_after` from now, for the case that no acknowledgement
    /// removed them by then. (Rows written due at once would be pushed a
    /// second time by whoever reads the outbox meanwhile; marking them sent
    /// after the push would be a second write transaction per message.)
    /// The commit is deferred as in
    /// [`append_batch_deferred`](Self::append_batch_deferred).
    pub async fn append_batch_pushed(
        &self,
        batch: &[NewEntry<'_>],
        retry_after: std::time::Duration,
    ) -> Result<(Vec<Appended>, Unsynced)> {
        let now = self.now();
        let due = UnixTime(now.0.saturating_add(retry_after.as_secs()));
        self.append_owed(batch, due, Commit::Deferred, Fresh::Vouched).await
    }

    /// The append: two round trips to SQLite (see `script`): what is
    /// stored already, then every write and the commit. One when nothing
    /// needs reading: entries vouched for (see [`Fresh`]) of groups whose
    /// row ids are known, moving no receiving chain that holds skipped keys.
    async fn append_owed(
        &self,
        batch: &[NewEntry<'_>],
        due: UnixTime,
        commit: Commit,
        fresh: Fresh,
    ) -> Result<(Vec<Appended>, Unsynced)> {
        if batch.is_empty() {
            return Ok((Vec::new(), Unsynced::NOTHING));
        }
        let prepared: Vec<Prepared> = batch.iter().map(|e| self.prepare(e)).collect::<Result<_>>()?;
        let (now, due) = (time_value(self.now())?, time_value(due)?);
        let groups: BTreeSet<GroupId> = batch.iter().map(|e| e.group).collect();
        // Receiving chains that hold skipped keys: which of those are stored.
        let mut skipped_of: Vec<(GroupId, VerifyKey)> = Vec::new();
        for e in batch {
            if let Some(RatchetUpdate::Receiver { device, chain }) = e.ratchet
                && !chain.export_skipped().is_empty()
                && !skipped_of.contains(&(e.group, device))
            {
                skipped_of.push((e.group, device));
            }
        }

        // 1. Open the transaction; read the groups' row ids, which entries
        // are stored, and the skipped keys stored (unless nothing is to read).
        let mut conn = self.writer().await?;
        let mut writes = Script::new();
        let known_refs = match fresh {
            Fresh::Vouched if skipped_of.is_empty() => self.group_refs.known(&groups),
            _ => None,
        };
        let rows = match known_refs {
            Some(_) => {
                conn.open_in(commit, &mut writes);
                Vec::new()
            }
            None => {
                conn.begin_script(commit, |script| {
                    let qb =
                        script.statement("SELECT 0 AS part, id AS n, group_id AS hash FROM groups WHERE group_id IN (");
                    let mut sep = qb.separated(", ");
                    for g in &groups {
                        sep.push_bind(g.0.to_vec());
                    }
                    qb.push(")");
                    for chunk in prepared.chunks(ROWS_PER_STATEMENT) {
                        let qb = script.statement("SELECT 1 AS part, 0 AS n, hash FROM entries WHERE ");
                        push_hash_filter(qb, chunk.iter().map(|p| &p.hash));
                    }
                    for (i, (group, device)) in skipped_of.iter().enumerate() {
                        read_skipped(script, 2 + i as i64, group, device);
                    }
                    Ok(())
                })
                .await?
            }
        };
        let mut refs: HashMap<GroupId, i64> = known_refs.unwrap_or_default();
        let mut stored: HashSet<[u8; 32]> = HashSet::new();
        let mut skipped_stored: HashMap<(GroupId, VerifyKey), BTreeSet<i64>> = HashMap::new();
        for row in &rows {
            match row.try_get::<i64, _>("part")? {
                0 => {
                    refs.insert(GroupId(blob::<32>(row, "hash")?), row.try_get("n")?);
                }
                1 => {
                    stored.insert(blob::<32>(row, "hash")?);
                }
                part => {
                    let chain = usize::try_from(part - 2).ok().and_then(|i| skipped_of.get(i));
                    let chain = chain.ok_or(Error::Invalid { what: "append", reason: "unknown part" })?;
                    skipped_stored.entry(*chain).or_default().insert(row.try_get("n")?);
                }
            }
        }
        self.group_refs.learn(&refs);
        let group_of = |e: &NewEntry<'_>| refs.get(&e.group).copied().ok_or(Error::Unknown("group"));
        for e in batch {
            group_of(e)?;
        }
        let mut seen = HashSet::new();
        let outcomes: Vec<Appended> = prepared
            .iter()
            .map(|p| match !stored.contains(&p.hash) && seen.insert(p.hash) {
                true => Appended::Stored,
                false => Appended::Duplicate,
            })
            .collect();
        let new_rows: Vec<(&NewEntry<'_>, &Prepared)> = batch
            .iter()
            .zip(&prepared)
            .zip(&outcomes)
            .filter(|(_, o)| **o == Appended::Stored)
            .map(|(r, _)| r)
            .collect();

        // 2. The new entries, the logs' heads and missing parents, ratchet
        // state (the last update per chain wins), outbox rows; commit.
        for chunk in new_rows.chunks(ROWS_PER_STATEMENT) {
            let qb = writes.statement(
                "INSERT INTO entries (hash_key, hash, group_ref, kind, lamport, author, parents, links, header, body, tag, sealed_payload, received_at) ",
            );
            let mut err = None;
            qb.push_values(chunk, |mut b, (e, p)| {
                let g = group_of(e).unwrap_or_else(|x| {
                    err = Some(x);
                    0
                });
                b.push_bind(hash_key(&p.hash))
                    .push_bind(p.hash.to_vec())
                    .push_bind(g)
                    .push_bind(p.kind)
                    .push_bind(p.lamport)
                    .push_bind(e.author.map(|a| a.to_bytes().to_vec()))
                    .push_bind(p.parents.clone())
                    .push_bind(e.entry.position.clone())
                    .push_bind(e.entry.header.clone())
                    .push_bind(e.entry.body.clone())
                    .push_bind(e.entry.tag.to_vec())
                    .push_bind(p.sealed_payload.clone())
                    .push_bind(now);
            });
            if let Some(e) = err {
                return Err(e);
            }
        }
        let mut logs: BTreeMap<(i64, i64), LogChange> = BTreeMap::new();
        let mut senders: BTreeMap<i64, (&ChainState, u64)> = BTreeMap::new();
        let mut receivers: BTreeMap<(i64, [u8; 32]), (GroupId, VerifyKey, &ReceiverChain)> = BTreeMap::new();
        let mut owed: BTreeMap<&Addressee, Vec<&[u8; 32]>> = BTreeMap::new();
        for (e, p) in &new_rows {
            let g = group_of(e)?;
            let log = logs.entry((g, p.kind)).or_default();
            log.new.push(p.hash);
            log.parents.extend(e.position.parents.iter().map(|h| h.0));
            match e.ratchet {
                Some(RatchetUpdate::Sender { state, reserved_until }) => {
                    senders.insert(g, (state, reserved_until));
                }
                Some(RatchetUpdate::Receiver { device, chain }) => {
                    receivers.insert((g, device.to_bytes()), (e.group, device, chain));
                }
                None => {}
            }
            for peer in e.outbox {
                owed.entry(peer).or_default().push(&p.hash);
            }
        }
        for ((g, kind), change) in &logs {
            push_dag_update(&mut writes, *g, *kind, &change.new, &change.parents);
        }
        for (g, (state, reserved_until)) in senders {
            push_sender(&mut writes, &self.key, g, state, Reserve::AtLeast(reserved_until.max(state.next)))?;
        }
        let none = BTreeSet::new();
        for ((g, _), (group, device, chain)) in receivers {
            let stored = skipped_stored.get(&(group, device)).unwrap_or(&none);
            push_receiver(&mut writes, &self.key, g, &device, chain, stored)?;
        }
        for (peer, hashes) in owed {
            for chunk in hashes.chunks(ROWS_PER_STATEMENT) {
                let qb = writes.statement("INSERT INTO outbox (peer, entry_seq, enqueued_at, next_attempt_at) SELECT ");
                qb.push_bind(peer.0.to_vec()).push(", seq, ").push_bind(now).push(", ").push_bind(due);
                qb.push(" FROM entries WHERE ");
                push_hash_filter(qb, chunk.iter().copied());
                qb.push(" ORDER BY seq ON CONFLICT (peer, entry_seq) DO NOTHING");
            }
        }
        conn.commit_script(writes).await?;
        let unsynced = match commit {
            Commit::Synced => Unsynced::NOTHING,
            Commit::Deferred => self.wal_sync.committed(),
        };
        Ok((outcomes, unsynced))
    }
}
