//! Group logs: a hash-linked DAG of sealed entries per group and log kind,
//! with the bookkeeping sync needs (heads, missing parents) kept up to date
//! on every append, and a deterministic total order (Lamport clock, then hash).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::{AssertSqlSafe, Connection, QueryBuilder, Row, Sqlite, SqliteConnection, sqlite::SqliteRow};
use veil_crypto::{
    ChainState, GroupId, ReceiverChain, VerifyKey,
    envelope::{EntryHash, EntryKind, Links, SealedEntry},
    time::UnixTime,
};
use zeroize::Zeroizing;

use crate::{
    Error, Result, Store,
    groups::group_ref,
    outbox::Peer,
    ratchet::{Reserve, push_receiver, push_sender, put_receiver, read_skipped},
    rows::{blob, time, time_value, to_i64, u64_col},
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
    /// Its decrypted links (kind, Lamport clock, parents).
    pub links: &'a Links,
    /// Its author device, when known (members know it; replication nodes do not).
    pub author: Option<VerifyKey>,
    /// The decrypted payload to keep (sealed under the storage key), if any.
    /// Message keys are deleted once used, so this is how history stays readable.
    pub payload: Option<&'a [u8]>,
    /// The ratchet state change that goes with the entry.
    pub ratchet: Option<RatchetUpdate<'a>>,
    /// Peers the entry is owed to.
    pub outbox: &'a [Peer],
}

/// A ratchet state to persist in the same transaction as an entry.
#[derive(Debug, Clone, Copy)]
pub enum RatchetUpdate<'a> {
    /// This device sealed the entry: its sending chain moved on, and
    /// positions below `reserved_until` may be sent before this commit is
    /// durable (see [`SenderChainRecord`](crate::SenderChainRecord); the
    /// stored reservation is never lowered but by a clean close).
    Sender {
        /// The chain after the entry.
        state: &'a ChainState,
        /// Reserved up to here (at least the chain's position).
        reserved_until: u64,
    },
    /// The entry was opened with `device`'s receiving chain.
    Receiver {
        /// The sending device.
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

/// A stored entry.
#[derive(Debug, Clone)]
pub struct EntryRecord {
    /// Its hash.
    pub hash: EntryHash,
    /// Which log.
    pub kind: EntryKind,
    /// Its Lamport clock.
    pub lamport: u64,
    /// Its parents.
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
            kind: kind_code(e.links.kind),
            lamport: to_i64(e.links.lamport, "Lamport clock")?,
            parents: e.links.parents.iter().flat_map(|p| p.0).collect(),
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
                    .push_bind(e.entry.links.clone())
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
        let mut owed: BTreeMap<&Peer, Vec<&[u8; 32]>> = BTreeMap::new();
        for (e, p) in &new_rows {
            let g = group_of(e)?;
            let log = logs.entry((g, p.kind)).or_default();
            log.new.push(p.hash);
            log.parents.extend(e.links.parents.iter().map(|h| h.0));
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

    /// One entry by hash (none for an erased message: see `forget.rs`).
    pub async fn entry(&self, hash: &EntryHash) -> Result<Option<EntryRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "{ENTRY_SELECT} WHERE hash_key = $1 AND hash = $2 AND length(body) > 0"
        )))
        .bind(hash_key(&hash.0))
        .bind(hash.0.to_vec())
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| self.entry_record(&r)).transpose()
    }

    /// The stored entries of `group` among `hashes` as sent on the wire, in
    /// sync order (see [`Store::sync_order`]). Entries of other groups are
    /// never returned. Serving reads only this: no payload is unsealed, no
    /// author key parsed; each entry is checked against its hash.
    pub async fn sealed_entries_of(&self, group: &GroupId, hashes: &[EntryHash]) -> Result<Vec<SealedEntry>> {
        let rows =
            self.rows_of("SELECT hash, kind, lamport, links, header, body, tag FROM entries", group, hashes).await?;
        let mut keyed = Vec::with_capacity(rows.len());
        for r in &rows {
            // Erased messages (see `forget.rs`) are not served.
            if r.try_get::<&[u8], _>("body")?.is_empty() {
                continue;
            }
            let (hash, sealed) = sealed_of(r)?;
            let kind = kind_from(r.try_get("kind")?)?;
            keyed.push(((kind != EntryKind::Metadata, u64_col(r, "lamport")?, hash), sealed));
        }
        keyed.sort_by_key(|(key, _)| *key);
        Ok(keyed.into_iter().map(|(_, sealed)| sealed).collect())
    }

    /// The stored entries of `group` among `hashes`, in the order sync sends
    /// them: the metadata log first, each log by (Lamport clock, hash), so a
    /// receiver meets every announcement before the messages it unlocks and
    /// parents before their children.
    ///
    /// Many hashes (a member catching up on a backlog) are ordered by one
    /// scan of the group's order index instead of a lookup each.
    pub async fn sync_order(&self, group: &GroupId, hashes: &[EntryHash]) -> Result<Vec<EntryHash>> {
        if hashes.len() >= SCAN_ORDER_AT {
            return self.sync_order_by_scan(group, hashes).await;
        }
        let mut keyed: Vec<(bool, u64, EntryHash)> = self
            .positions(group, hashes)
            .await?
            .into_iter()
            .map(|(h, k, l)| (k != EntryKind::Metadata, l, h))
            .collect();
        keyed.sort();
        Ok(keyed.into_iter().map(|(_, _, h)| h).collect())
    }

    /// [`Store::sync_order`] by a scan of the group's entries in the order
    /// index (metadata kind first, then Lamport clock, then hash).
    async fn sync_order_by_scan(&self, group: &GroupId, hashes: &[EntryHash]) -> Result<Vec<EntryHash>> {
        let wanted: HashSet<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM entries WHERE group_ref = (SELECT id FROM groups WHERE group_id = $1)
               ORDER BY kind, lamport, hash",
        )
        .bind(group.0.to_vec())
        .fetch_all(&self.readers)
        .await?;
        Ok(entry_hashes(rows)?.into_iter().filter(|h| wanted.contains(&h.0)).collect())
    }

    /// The log and Lamport clock of the stored entries of `group` among
    /// `hashes` (what checking a new entry's parents needs).
    pub async fn positions(&self, group: &GroupId, hashes: &[EntryHash]) -> Result<Vec<(EntryHash, EntryKind, u64)>> {
        let rows = self.rows_of("SELECT hash, kind, lamport FROM entries", group, hashes).await?;
        rows.iter()
            .map(|row| {
                Ok((EntryHash(blob::<32>(row, "hash")?), kind_from(row.try_get("kind")?)?, u64_col(row, "lamport")?))
            })
            .collect()
    }

    /// The rows of `select` (which must select `hash`) for the entries of
    /// `group` among `hashes`, each once.
    async fn rows_of(&self, select: &'static str, group: &GroupId, hashes: &[EntryHash]) -> Result<Vec<SqliteRow>> {
        let mut conn = self.readers.acquire().await?;
        let group = group.0.to_vec();
        // `+group_ref`: the owner only filters; the rows are found by
        // their hash key (see `rows_by_hash`).
        rows_by_hash(&mut conn, select, hashes, |qb| {
            qb.push(" WHERE +group_ref = (SELECT id FROM groups WHERE group_id = ").push_bind(group.clone()).push(")");
        })
        .await
    }

    /// Every entry hash of `group` (both logs), sorted: the set that sync
    /// reconciles (`veil_proto::reconcile`).
    pub async fn group_hashes(&self, group: &GroupId) -> Result<Vec<EntryHash>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM entries WHERE group_ref = (SELECT id FROM groups WHERE group_id = $1) ORDER BY hash",
        )
        .bind(group.0.to_vec())
        .fetch_all(&self.readers)
        .await?;
        entry_hashes(rows)
    }

    /// Message entries of `group` by `author` stored without a payload
    /// (verified, but not readable when they arrived), in log order, at
    /// most `limit`.
    pub async fn unread(&self, group: &GroupId, author: &VerifyKey, limit: u32) -> Result<Vec<EntryRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{ENTRY_SELECT} WHERE group_ref = (SELECT id FROM groups WHERE group_id = $1) AND kind = $2
               AND author = $3 AND sealed_payload IS NULL AND length(body) > 0 ORDER BY lamport, hash LIMIT $4"
        )))
        .bind(group.0.to_vec())
        .bind(kind_code(EntryKind::Message))
        .bind(author.to_bytes().to_vec())
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(|r| self.entry_record(r)).collect()
    }

    /// Stores the payload of an entry stored unread, with the receiving
    /// chain that opened it, in one transaction. `false` if the entry is not
    /// stored in `group` or already has a payload.
    pub async fn reveal(
        &self,
        group: &GroupId,
        hash: &EntryHash,
        payload: &[u8],
        device: &VerifyKey,
        chain: &ReceiverChain,
    ) -> Result<bool> {
        let sealed = self.key.seal(&payload_purpose(&hash.0), payload)?;
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        let g = group_ref(&mut tx, group).await?;
        let updated = sqlx::query(
            "UPDATE entries SET sealed_payload = $1
              WHERE hash_key = $2 AND hash = $3 AND group_ref = $4 AND sealed_payload IS NULL",
        )
        .bind(sealed)
        .bind(hash_key(&hash.0))
        .bind(hash.0.to_vec())
        .bind(g)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 1 {
            put_receiver(&mut tx, &self.key, g, device, chain).await?;
        }
        tx.commit().await?;
        Ok(updated == 1)
    }

    /// Whether an entry is stored.
    pub async fn contains_entry(&self, hash: &EntryHash) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM entries WHERE hash_key = $1 AND hash = $2")
            .bind(hash_key(&hash.0))
            .bind(hash.0.to_vec())
            .fetch_optional(&self.readers)
            .await?;
        Ok(found.is_some())
    }

    /// The heads of a log: stored entries no stored entry names as a parent.
    pub async fn heads(&self, group: &GroupId, kind: EntryKind) -> Result<Vec<EntryHash>> {
        self.hash_list("heads", group, kind).await
    }

    /// Parents named by stored entries of a log but not stored themselves:
    /// what sync must fetch.
    pub async fn missing_parents(&self, group: &GroupId, kind: EntryKind) -> Result<Vec<EntryHash>> {
        self.hash_list("missing_parents", group, kind).await
    }

    async fn hash_list(&self, table: &'static str, group: &GroupId, kind: EntryKind) -> Result<Vec<EntryHash>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT t.hash FROM {table} t JOIN groups g ON g.id = t.group_ref WHERE g.group_id = $1 AND t.kind = $2 ORDER BY t.hash"
        )))
        .bind(group.0.to_vec())
        .bind(kind_code(kind))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(|r| Ok(EntryHash(blob::<32>(r, "hash")?))).collect()
    }

    /// A page of a log in its total order (Lamport clock, then hash),
    /// starting after `after` (or from the beginning).
    pub async fn entries_after(
        &self,
        group: &GroupId,
        kind: EntryKind,
        after: Option<(u64, EntryHash)>,
        limit: u32,
    ) -> Result<Vec<EntryRecord>> {
        let from = match after {
            Some((l, h)) => (to_i64(l, "Lamport clock")?, h.0.to_vec()),
            None => (-1, Vec::new()),
        };
        let order = "(lamport > $3 OR (lamport = $3 AND hash > $4)) ORDER BY lamport, hash";
        self.log_page(group, kind, order, from, limit).await
    }

    /// A page of a log in its total order: the `limit` entries just before
    /// `before` (or the latest ones), oldest first. Read newest first
    /// through the log's order index, so the latest page costs the same
    /// however long the log.
    pub async fn entries_before(
        &self,
        group: &GroupId,
        kind: EntryKind,
        before: Option<(u64, EntryHash)>,
        limit: u32,
    ) -> Result<Vec<EntryRecord>> {
        let from = match before {
            Some((l, h)) => (to_i64(l, "Lamport clock")?, h.0.to_vec()),
            // Past every entry: 33 bytes sort after every 32-byte hash.
            None => (i64::MAX, vec![0xFF; 33]),
        };
        let order = "(lamport < $3 OR (lamport = $3 AND hash < $4)) ORDER BY lamport DESC, hash DESC";
        let mut page = self.log_page(group, kind, order, from, limit).await?;
        page.reverse();
        Ok(page)
    }

    /// The entries of one log past `(lamport, hash)` as `order` says (a
    /// condition on `$3`, `$4` and its `ORDER BY`), at most `limit`.
    async fn log_page(
        &self,
        group: &GroupId,
        kind: EntryKind,
        order: &'static str,
        (lamport, hash): (i64, Vec<u8>),
        limit: u32,
    ) -> Result<Vec<EntryRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{ENTRY_SELECT} WHERE group_ref = (SELECT id FROM groups WHERE group_id = $1) AND kind = $2
               AND length(body) > 0 AND {order} LIMIT $5"
        )))
        .bind(group.0.to_vec())
        .bind(kind_code(kind))
        .bind(lamport)
        .bind(hash)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(|r| self.entry_record(r)).collect()
    }

    /// Marks `group`'s messages read up to `position` (Lamport clock, hash)
    /// included; a position before the current one changes nothing.
    pub async fn mark_read(&self, group: &GroupId, (lamport, hash): (u64, EntryHash)) -> Result<()> {
        let lamport = to_i64(lamport, "Lamport clock")?;
        let mut conn = self.writer().await?;
        sqlx::query(
            "UPDATE groups SET read_lamport = $1, read_hash = $2
             WHERE group_id = $3 AND (read_lamport IS NULL OR read_lamport < $1 OR (read_lamport = $1 AND read_hash < $2))",
        )
        .bind(lamport)
        .bind(hash.0.to_vec())
        .bind(group.0.to_vec())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The readable messages of `group` after its read position that none
    /// of `own` (this member's devices) wrote.
    pub async fn unread_count(&self, group: &GroupId, own: &[VerifyKey]) -> Result<u64> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT COUNT(*) FROM entries e JOIN groups g ON g.id = e.group_ref WHERE g.group_id = ",
        );
        qb.push_bind(group.0.to_vec()).push(" AND e.kind = ").push_bind(kind_code(EntryKind::Message));
        qb.push(" AND e.sealed_payload IS NOT NULL AND (g.read_lamport IS NULL OR e.lamport > g.read_lamport");
        qb.push(" OR (e.lamport = g.read_lamport AND e.hash > g.read_hash))");
        if !own.is_empty() {
            qb.push(" AND (e.author IS NULL OR e.author NOT IN (");
            let mut sep = qb.separated(", ");
            for device in own {
                sep.push_bind(device.to_bytes().to_vec());
            }
            qb.push("))");
        }
        let n: i64 = qb.build_query_scalar().fetch_one(&self.readers).await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// How many entries a log holds.
    pub async fn entry_count(&self, group: &GroupId, kind: EntryKind) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM entries WHERE group_ref = (SELECT id FROM groups WHERE group_id = $1) AND kind = $2",
        )
        .bind(group.0.to_vec())
        .bind(kind_code(kind))
        .fetch_one(&self.readers)
        .await?;
        u64::try_from(n).map_err(|_| Error::Invalid { what: "count", reason: "negative" })
    }

    fn entry_record(&self, r: &SqliteRow) -> Result<EntryRecord> {
        let (hash, sealed) = sealed_of(r)?;
        let author: Option<Vec<u8>> = r.try_get("author")?;
        let sealed_payload: Option<Vec<u8>> = r.try_get("sealed_payload")?;
        Ok(EntryRecord {
            hash,
            kind: kind_from(r.try_get("kind")?)?,
            lamport: u64_col(r, "lamport")?,
            parents: hashes_from(&r.try_get::<Vec<u8>, _>("parents")?)?,
            author: author.map(|a| VerifyKey::from_slice(&a)).transpose()?,
            sealed,
            payload: sealed_payload.map(|s| self.key.open(&payload_purpose(&hash.0), &s)).transpose()?,
            received_at: time(r, "received_at")?,
        })
    }
}

/// The hash and wire sections of an entry row (which must select `hash`,
/// `links`, `header`, `body` and `tag`), checked against each other.
pub(crate) fn sealed_of(r: &SqliteRow) -> Result<(EntryHash, SealedEntry)> {
    let hash = EntryHash(blob::<32>(r, "hash")?);
    let sealed = SealedEntry {
        links: r.try_get("links")?,
        header: r.try_get("header")?,
        body: r.try_get("body")?,
        tag: blob::<32>(r, "tag")?,
    };
    if sealed.hash() != hash {
        return Err(Error::Invalid { what: "entry", reason: "stored sections do not match its hash" });
    }
    Ok((hash, sealed))
}

const ENTRY_SELECT: &str =
    "SELECT hash, kind, lamport, author, parents, links, header, body, tag, sealed_payload, received_at FROM entries";

/// Keeps `heads` and `missing_parents` of one log right after `new` entries
/// (naming `parents`) were stored. Work is proportional to the batch's
/// frontier, not its size: parents inside the batch need no bookkeeping.
fn push_dag_update(script: &mut Script, group: i64, kind: i64, new: &[[u8; 32]], parents: &BTreeSet<[u8; 32]>) {
    let new_set: BTreeSet<[u8; 32]> = new.iter().copied().collect();
    // Heads: new entries no entry names, neither in the batch nor stored
    // before it (a stored entry naming one made it a missing parent).
    let heads: Vec<[u8; 32]> = new.iter().filter(|h| !parents.contains(*h)).copied().collect();
    for chunk in heads.chunks(ROWS_PER_STATEMENT) {
        let qb = script.statement("INSERT INTO heads (group_ref, kind, hash) SELECT ");
        qb.push_bind(group).push(", ").push_bind(kind).push(", v.column1 FROM (VALUES ");
        let mut sep = qb.separated(", ");
        for h in chunk {
            sep.push("(").push_bind_unseparated(h.to_vec()).push_unseparated(")");
        }
        qb.push(") AS v WHERE NOT EXISTS (SELECT 1 FROM missing_parents m WHERE m.group_ref = ")
            .push_bind(group)
            .push(" AND m.kind = ")
            .push_bind(kind)
            .push(" AND m.hash = v.column1) ON CONFLICT DO NOTHING");
    }
    // New entries that were missing parents are missing no more.
    for chunk in new.chunks(ROWS_PER_STATEMENT) {
        let qb = script.statement("DELETE FROM missing_parents WHERE group_ref = ");
        qb.push_bind(group).push(" AND kind = ").push_bind(kind).push(" AND hash IN (");
        push_hashes(qb, chunk);
        qb.push(")");
    }
    // Parents from before this batch stop being heads; those not stored are missing.
    let older: Vec<[u8; 32]> = parents.difference(&new_set).copied().collect();
    for chunk in older.chunks(ROWS_PER_STATEMENT) {
        let qb = script.statement("DELETE FROM heads WHERE group_ref = ");
        qb.push_bind(group).push(" AND kind = ").push_bind(kind).push(" AND hash IN (");
        push_hashes(qb, chunk);
        qb.push(")");
        let qb = script.statement("INSERT INTO missing_parents (group_ref, kind, hash) SELECT ");
        qb.push_bind(group).push(", ").push_bind(kind).push(", v.column2 FROM (VALUES ");
        let mut sep = qb.separated(", ");
        for h in chunk {
            sep.push("(")
                .push_bind_unseparated(hash_key(h))
                .push_unseparated(", ")
                .push_bind_unseparated(h.to_vec())
                .push_unseparated(")");
        }
        qb.push(
            ") AS v WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.hash_key = v.column1 AND e.hash = v.column2) \
             ON CONFLICT DO NOTHING",
        );
    }
}

fn push_hashes(qb: &mut QueryBuilder<Sqlite>, hashes: &[[u8; 32]]) {
    let mut sep = qb.separated(", ");
    for h in hashes {
        sep.push_bind(h.to_vec());
    }
}

/// Entry hashes read as blobs.
pub(crate) fn entry_hashes(blobs: Vec<Vec<u8>>) -> Result<Vec<EntryHash>> {
    blobs
        .into_iter()
        .map(|h| {
            let hash: [u8; 32] =
                h.try_into().map_err(|_| Error::Invalid { what: "entry hash", reason: "not 32 bytes" })?;
            Ok(EntryHash(hash))
        })
        .collect()
}

/// The rows of `select` (which must select `hash`) whose hash is among
/// `hashes`, each once, for the owner `owner` pushes as a `WHERE` clause:
/// looked up by hash key, then compared in full.
///
/// `owner` must only filter (write its column as `+column`): left usable,
/// SQLite walks the owner's whole order index instead of the hash keys —
/// 8 ms per lookup in a 100 000-entry group, growing with the group.
pub(crate) async fn rows_by_hash(
    conn: &mut SqliteConnection,
    select: &'static str,
    hashes: &[EntryHash],
    owner: impl Fn(&mut QueryBuilder<Sqlite>),
) -> Result<Vec<SqliteRow>> {
    let wanted: HashSet<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for chunk in hashes.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(select);
        owner(&mut qb);
        qb.push(" AND hash_key IN (");
        let mut keys = qb.separated(", ");
        for h in chunk {
            keys.push_bind(hash_key(&h.0));
        }
        qb.push(")");
        for row in qb.build().fetch_all(&mut *conn).await? {
            let hash = blob::<32>(&row, "hash")?;
            if wanted.contains(&hash) && seen.insert(hash) {
                out.push(row);
            }
        }
    }
    Ok(out)
}

/// The index key of an entry hash: its first 8 bytes as a big-endian signed
/// integer (see the `entries` table in the migrations).
pub(crate) fn hash_key(hash: &[u8; 32]) -> i64 {
    let mut key = [0u8; 8];
    key.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(key)
}

/// Appends `hash_key IN (…) AND hash IN (…)` for `hashes`: the key narrows
/// the search through the index, the full hash decides.
pub(crate) fn push_hash_filter<'h>(qb: &mut QueryBuilder<Sqlite>, hashes: impl Iterator<Item = &'h [u8; 32]> + Clone) {
    qb.push("hash_key IN (");
    let mut sep = qb.separated(", ");
    for h in hashes.clone() {
        sep.push_bind(hash_key(h));
    }
    qb.push(") AND hash IN (");
    let mut sep = qb.separated(", ");
    for h in hashes {
        sep.push_bind(h.to_vec());
    }
    qb.push(")");
}
