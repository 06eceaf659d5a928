//! Reading group logs: entries by hash, in sync order, by page, unread
//! ones, heads and counts; and the two writes reading leads to: revealing
//! a payload opened late, and marking a conversation read.

use std::collections::HashSet;

use sqlx::{AssertSqlSafe, Connection, QueryBuilder, Row, Sqlite, sqlite::SqliteRow};
use veil_crypto::{
    GroupId, ReceiverChain, VerifyKey,
    envelope::{EntryHash, EntryKind, SealedEntry},
};

use super::{
    EntryRecord, SCAN_ORDER_AT, entry_hashes, hash_key, hashes_from, kind_code, kind_from, payload_purpose,
    rows_by_hash, sealed_of,
};
use crate::{
    Error, Result, Store,
    groups::group_ref,
    ratchet::put_receiver,
    rows::{blob, time, to_i64, u64_col},
};

impl Store {
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

const ENTRY_SELECT: &str =
    "SELECT hash, kind, lamport, author, parents, links, header, body, tag, sealed_payload, received_at FROM entries";
