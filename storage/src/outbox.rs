//! The outbox: entries still owed to each addressee. Rows are added in the same
//! transaction as the entry, and removed when the peer acknowledges.

use sqlx::{QueryBuilder, Row, Sqlite};
use veil_crypto::{
    envelope::{EntryHash, SealedEntry},
    time::UnixTime,
};

use crate::{
    Result, Store,
    entries::{ROWS_PER_STATEMENT, push_hash_filter, sealed_of},
    rows::{blob, time, time_value, to_i64, u64_col},
};

/// Who entries are owed to: a member key in the group, or the account key
/// of a contact. Not a network peer: one addressee is reached under peer
/// ids that rotate, and a peer id may serve several addressees (a
/// replication node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addressee(pub [u8; 32]);

/// One owed entry.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// The owed entry's hash; the row leaves the outbox when the peer acknowledges it.
    pub hash: EntryHash,
    /// The entry as sent on the wire (checked against its hash).
    pub sealed: SealedEntry,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub enqueued_at: UnixTime,
}

impl Store {
    /// Owes already-stored entries to `peer` (e.g. history for a new member).
    /// Unknown hashes are ignored; entries already owed stay as they are.
    pub async fn enqueue(&self, peer: &Addressee, hashes: &[EntryHash]) -> Result<()> {
        let now = time_value(self.now())?;
        let mut conn = self.writer().await?;
        for chunk in hashes.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (peer, entry_seq, enqueued_at, next_attempt_at) SELECT ",
            );
            qb.push_bind(peer.0.to_vec()).push(", seq, ").push_bind(now).push(", ").push_bind(now);
            qb.push(" FROM entries WHERE ");
            push_hash_filter(&mut qb, chunk.iter().map(|h| &h.0));
            qb.push(" ORDER BY seq ON CONFLICT (peer, entry_seq) DO NOTHING");
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Entries owed to `peer` that are due at `now`: the longest due first,
    /// then in the order they were owed. One query over the `outbox_due`
    /// index: entries sent and awaiting their acknowledgement (deferred)
    /// are not scanned, however many there are.
    pub async fn outbox_due(&self, peer: &Addressee, now: UnixTime, limit: u32) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT e.hash, e.links, e.header, e.body, e.tag, o.attempts, o.enqueued_at
             FROM outbox o JOIN entries e ON e.seq = o.entry_seq
             WHERE o.peer = $1 AND o.next_attempt_at <= $2 ORDER BY o.next_attempt_at, o.id LIMIT $3",
        )
        .bind(peer.0.to_vec())
        .bind(time_value(now)?)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                let (hash, sealed) = sealed_of(r)?;
                Ok(OutboxItem {
                    hash,
                    sealed,
                    attempts: u32::try_from(u64_col(r, "attempts")?).unwrap_or(u32::MAX),
                    enqueued_at: time(r, "enqueued_at")?,
                })
            })
            .collect()
    }

    /// For each of `hashes` still owed to some of `peers` (not acknowledged
    /// yet): how many of them. Entries owed to none are left out.
    pub async fn owed_counts(&self, peers: &[Addressee], hashes: &[EntryHash]) -> Result<Vec<(EntryHash, u32)>> {
        let mut out = Vec::new();
        if peers.is_empty() || hashes.is_empty() {
            return Ok(out);
        }
        let mut conn = self.readers.acquire().await?;
        for chunk in hashes.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT e.hash, COUNT(*) AS n FROM entries e JOIN outbox o ON o.entry_seq = e.seq AND o.peer IN (",
            );
            let mut sep = qb.separated(", ");
            for peer in peers {
                sep.push_bind(peer.0.to_vec());
            }
            qb.push(") WHERE ");
            push_hash_filter(&mut qb, chunk.iter().map(|h| &h.0));
            qb.push(" GROUP BY e.hash");
            for row in qb.build().fetch_all(&mut *conn).await? {
                let n = u32::try_from(u64_col(&row, "n")?).unwrap_or(u32::MAX);
                out.push((EntryHash(blob::<32>(&row, "hash")?), n));
            }
        }
        Ok(out)
    }

    /// Peers that are owed at least one entry.
    pub async fn outbox_peers(&self) -> Result<Vec<Addressee>> {
        let rows = sqlx::query("SELECT DISTINCT peer FROM outbox ORDER BY peer").fetch_all(&self.readers).await?;
        rows.iter().map(|r| Ok(Addressee(blob::<32>(r, "peer")?))).collect()
    }

    /// How many entries `peer` is owed.
    pub async fn outbox_len(&self, peer: &Addressee) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE peer = $1")
            .bind(peer.0.to_vec())
            .fetch_one(&self.readers)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `peer` acknowledged these entries: they are no longer owed. Returns how
    /// many rows were removed.
    pub async fn ack(&self, peer: &Addressee, hashes: &[EntryHash]) -> Result<u64> {
        Ok(self.ack_many(&[(*peer, hashes.to_vec())]).await?.iter().sum())
    }

    /// Several acknowledgements in one transaction (one round trip to
    /// SQLite): for each `(peer, hashes)`, how many rows were removed.
    pub async fn ack_many(&self, acks: &[(Addressee, Vec<EntryHash>)]) -> Result<Vec<u64>> {
        let mut conn = self.writer().await?;
        // A lost acknowledgement costs a resend, which the peer acknowledges again.
        let rows = conn
            .transaction_unsynced(|script| {
                for (i, (peer, hashes)) in acks.iter().enumerate() {
                    for chunk in hashes.chunks(ROWS_PER_STATEMENT) {
                        let qb = script.statement("DELETE FROM outbox WHERE peer = ");
                        qb.push_bind(peer.0.to_vec()).push(" AND entry_seq IN (SELECT seq FROM entries WHERE ");
                        push_hash_filter(qb, chunk.iter().map(|h| &h.0));
                        qb.push(") RETURNING ").push_bind(to_i64(i as u64, "ack")?).push(" AS part");
                    }
                }
                Ok(())
            })
            .await?;
        let mut removed = vec![0; acks.len()];
        for row in &rows {
            let part = usize::try_from(row.try_get::<i64, _>("part")?).ok();
            if let Some(n) = part.and_then(|i| removed.get_mut(i)) {
                *n += 1;
            }
        }
        Ok(removed)
    }

    /// A delivery attempt failed: count it and retry no earlier than `next`.
    pub async fn defer(&self, peer: &Addressee, hashes: &[EntryHash], next: UnixTime) -> Result<u64> {
        let (next, peer) = (time_value(next)?, peer.0.to_vec());
        let mut conn = self.writer().await?;
        // A lost resend time means an earlier resend.
        let rows = conn
            .transaction_unsynced(|script| {
                for chunk in hashes.chunks(ROWS_PER_STATEMENT) {
                    let qb = script.statement("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ");
                    qb.push_bind(next).push(" WHERE peer = ").push_bind(peer.clone());
                    qb.push(" AND entry_seq IN (SELECT seq FROM entries WHERE ");
                    push_hash_filter(qb, chunk.iter().map(|h| &h.0));
                    qb.push(") RETURNING id");
                }
                Ok(())
            })
            .await?;
        Ok(rows.len() as u64)
    }

    /// Makes everything owed to `peer` due again at `at` (e.g. after the
    /// connection it was pushed on closed, taking unsent acks with it).
    pub async fn reschedule(&self, peer: &Addressee, at: UnixTime) -> Result<u64> {
        let mut conn = self.writer().await?;
        let r = sqlx::query("UPDATE outbox SET next_attempt_at = $1 WHERE peer = $2 AND next_attempt_at > $1")
            .bind(time_value(at)?)
            .bind(peer.0.to_vec())
            .execute(&mut *conn)
            .await?;
        Ok(r.rows_affected())
    }
}
