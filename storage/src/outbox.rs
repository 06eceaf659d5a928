//! The outbox: entries still owed to each peer. Rows are added in the same
//! transaction as the entry, and removed when the peer acknowledges.
//!
//! Senders read it go-back-N style ([`Store::outbox_after`]): they remember
//! (in memory) how far they pushed and read on from there; to resend what
//! was not acknowledged they start again from the beginning. Sending
//! writes nothing (it used to record each attempt: a write transaction per
//! push, a third of a sender's fsyncs), and row ids are never reused
//! (schema 4), so a position stays valid.

use sqlx::{QueryBuilder, Row, Sqlite};
use veil_crypto::{
    envelope::{EntryHash, SealedEntry},
    time::UnixTime,
};

use crate::{
    Error, Result, Store,
    entries::push_hash_filter,
    rows::{blob, time, time_value},
};

/// The key naming a peer entries are owed to (its member key in the group,
/// or its account key for contacts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer(pub [u8; 32]);

/// One owed entry.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// Its place in the outbox: rows are read in this order.
    pub position: OutboxPosition,
    /// The entry's hash.
    pub hash: EntryHash,
    /// The entry as sent on the wire (checked against its hash).
    pub sealed: SealedEntry,
    /// When it was enqueued.
    pub enqueued_at: UnixTime,
}

/// A place in one peer's outbox: [`Store::outbox_after`] reads on from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutboxPosition(i64);

impl OutboxPosition {
    /// Before every row: reading from here (re)sends everything owed.
    pub const START: Self = Self(0);
}

impl Store {
    /// Owes already-stored entries to `peer` (e.g. history for a new member).
    /// Unknown hashes are ignored; entries already owed stay as they are.
    pub async fn enqueue(&self, peer: &Peer, hashes: &[EntryHash]) -> Result<()> {
        let now = time_value(self.now())?;
        let mut conn = self.writer().await?;
        for chunk in hashes.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO outbox (peer, entry_seq, enqueued_at) SELECT ");
            qb.push_bind(peer.0.to_vec()).push(", seq, ").push_bind(now);
            qb.push(" FROM entries WHERE ");
            push_hash_filter(&mut qb, chunk.iter().map(|h| &h.0));
            qb.push(" ORDER BY seq ON CONFLICT (peer, entry_seq) DO NOTHING");
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Entries owed to `peer` after `after`, in the order they were owed,
    /// at most `limit`: one query over `outbox_by_peer`, however many rows
    /// before `after` still wait for their acknowledgement.
    pub async fn outbox_after(&self, peer: &Peer, after: OutboxPosition, limit: u32) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT o.id, e.hash, e.links, e.header, e.body, e.tag, o.enqueued_at
             FROM outbox o JOIN entries e ON e.seq = o.entry_seq
             WHERE o.peer = $1 AND o.id > $2 ORDER BY o.id LIMIT $3",
        )
        .bind(peer.0.to_vec())
        .bind(after.0)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
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
                Ok(OutboxItem {
                    position: OutboxPosition(r.try_get("id")?),
                    hash,
                    sealed,
                    enqueued_at: time(r, "enqueued_at")?,
                })
            })
            .collect()
    }

    /// Peers that are owed at least one entry.
    pub async fn outbox_peers(&self) -> Result<Vec<Peer>> {
        let rows = sqlx::query("SELECT DISTINCT peer FROM outbox ORDER BY peer").fetch_all(&self.readers).await?;
        rows.iter().map(|r| Ok(Peer(blob::<32>(r, "peer")?))).collect()
    }

    /// How many entries `peer` is owed.
    pub async fn outbox_len(&self, peer: &Peer) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE peer = $1")
            .bind(peer.0.to_vec())
            .fetch_one(&self.readers)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `peer` acknowledged these entries: they are no longer owed. Returns how
    /// many rows were removed.
    pub async fn ack(&self, peer: &Peer, hashes: &[EntryHash]) -> Result<u64> {
        let mut conn = self.writer().await?;
        let mut n = 0;
        for chunk in hashes.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM outbox WHERE peer = ");
            qb.push_bind(peer.0.to_vec()).push(" AND entry_seq IN (SELECT seq FROM entries WHERE ");
            push_hash_filter(&mut qb, chunk.iter().map(|h| &h.0));
            qb.push(")");
            n += qb.build().execute(&mut *conn).await?.rows_affected();
        }
        Ok(n)
    }
}
