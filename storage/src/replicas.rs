//! What a blind replication node keeps: the replication credentials it was
//! given and, per credential, the group's entries exactly as they travel.
//! It never holds a group secret, so it stores nothing it could read.

use std::collections::HashSet;

use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection, sqlite::SqliteRow};
use veil_crypto::{
    EntryAuthKey, GroupKey, ReplicationCredential, ReplicationId,
    envelope::{EntryHash, EntryKind, SealedEntry},
};

use crate::{
    Error, Result, Store,
    entries::{ROWS_PER_STATEMENT, entry_hashes, hash_key, kind_code, kind_from, rows_by_hash},
    rows::{blob, time_value, to_i64, u64_col},
};

const SEAL_LINK_KEY: &[u8] = b"veil/storage/replica-link-key";
const SEAL_AUTH_KEY: &[u8] = b"veil/storage/replica-auth-key";

/// An entry a replication node verified and keeps: the sealed entry and
/// its place in the DAG (from its position).
#[derive(Debug, Clone)]
pub struct ReplicaEntry {
    /// The entry exactly as it travelled; the node holds no key to its header or body.
    pub sealed: SealedEntry,
    /// The log it belongs to, read from its position.
    pub kind: EntryKind,
    /// Its Lamport clock, read from its position.
    pub lamport: u64,
}

async fn replica_ref(conn: &mut SqliteConnection, id: &ReplicationId) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM replicas WHERE replication_id = $1")
        .bind(id.0.to_vec())
        .fetch_optional(conn)
        .await?
        .ok_or(Error::Unknown("replica"))
}

fn purpose(label: &[u8], id: &ReplicationId) -> Vec<u8> {
    [label, &id.0].concat()
}

impl Store {
    /// Starts replicating the group `credential` names. `false` if it
    /// already was.
    pub async fn add_replica(&self, credential: &ReplicationCredential) -> Result<bool> {
        let id = credential.replication_id;
        let link = self.key.seal(&purpose(SEAL_LINK_KEY, &id), credential.position_key.expose_secret())?;
        let auth = self.key.seal(&purpose(SEAL_AUTH_KEY, &id), credential.entry_auth_key.expose_secret())?;
        let mut conn = self.writer().await?;
        let added = sqlx::query(
            "INSERT INTO replicas (replication_id, sealed_link_key, sealed_auth_key, added_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (replication_id) DO NOTHING",
        )
        .bind(id.0.to_vec())
        .bind(link)
        .bind(auth)
        .bind(time_value(self.now())?)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(added == 1)
    }

    /// Every credential this node replicates, in the order they were added.
    pub async fn replicas(&self) -> Result<Vec<ReplicationCredential>> {
        let rows = sqlx::query("SELECT replication_id, sealed_link_key, sealed_auth_key FROM replicas ORDER BY id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter()
            .map(|r| {
                let id = ReplicationId(blob::<32>(r, "replication_id")?);
                let link: Vec<u8> = r.try_get("sealed_link_key")?;
                let auth: Vec<u8> = r.try_get("sealed_auth_key")?;
                Ok(ReplicationCredential {
                    replication_id: id,
                    position_key: GroupKey::from_bytes(*self.key.open32(&purpose(SEAL_LINK_KEY, &id), &link)?),
                    entry_auth_key: EntryAuthKey::from_bytes(*self.key.open32(&purpose(SEAL_AUTH_KEY, &id), &auth)?),
                })
            })
            .collect()
    }

    /// Stores verified entries of a replicated group in one transaction;
    /// for each, `true` if it is new.
    pub async fn replica_store(&self, id: &ReplicationId, entries: &[ReplicaEntry]) -> Result<Vec<bool>> {
        let now = time_value(self.now())?;
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        let r = replica_ref(&mut tx, id).await?;
        let hashes: Vec<EntryHash> = entries.iter().map(|e| e.sealed.hash()).collect();
        let stored: HashSet<EntryHash> = replica_rows(&mut tx, "SELECT hash FROM replica_entries", r, &hashes)
            .await?
            .iter()
            .map(hash_of)
            .collect::<Result<_>>()?;
        let mut seen = HashSet::new();
        let fresh: Vec<bool> = hashes.iter().map(|h| !stored.contains(h) && seen.insert(*h)).collect();
        let rows: Vec<(&ReplicaEntry, &EntryHash)> =
            entries.iter().zip(&hashes).zip(&fresh).filter(|(_, f)| **f).map(|(row, _)| row).collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO replica_entries (replica_ref, hash_key, hash, kind, lamport, links, header, body, tag, received_at) ",
            );
            let mut err = None;
            qb.push_values(chunk, |mut b, (e, h)| {
                let lamport = to_i64(e.lamport, "Lamport clock").unwrap_or_else(|x| {
                    err = Some(x);
                    0
                });
                b.push_bind(r)
                    .push_bind(hash_key(&h.0))
                    .push_bind(h.0.to_vec())
                    .push_bind(kind_code(e.kind))
                    .push_bind(lamport)
                    .push_bind(e.sealed.position.clone())
                    .push_bind(e.sealed.header.clone())
                    .push_bind(e.sealed.body.clone())
                    .push_bind(e.sealed.tag.to_vec())
                    .push_bind(now);
            });
            if let Some(e) = err {
                return Err(e);
            }
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(fresh)
    }

    /// Log and Lamport clock of the stored entries among `hashes`.
    pub async fn replica_positions(
        &self,
        id: &ReplicationId,
        hashes: &[EntryHash],
    ) -> Result<Vec<(EntryHash, EntryKind, u64)>> {
        let mut conn = self.readers.acquire().await?;
        let r = replica_ref(&mut conn, id).await?;
        let rows = replica_rows(&mut conn, "SELECT hash, kind, lamport FROM replica_entries", r, hashes).await?;
        rows.iter().map(|row| Ok((hash_of(row)?, kind_from(row.try_get("kind")?)?, u64_col(row, "lamport")?))).collect()
    }

    /// The stored entries among `hashes`, in sync order (metadata first,
    /// then by Lamport clock and hash: parents before children).
    pub async fn replica_entries(&self, id: &ReplicationId, hashes: &[EntryHash]) -> Result<Vec<SealedEntry>> {
        let mut conn = self.readers.acquire().await?;
        let r = replica_ref(&mut conn, id).await?;
        let select = "SELECT hash, kind, lamport, links, header, body, tag FROM replica_entries";
        let mut rows: Vec<(bool, u64, EntryHash, SealedEntry)> = replica_rows(&mut conn, select, r, hashes)
            .await?
            .iter()
            .map(|row| {
                let kind = kind_from(row.try_get("kind")?)?;
                let sealed = SealedEntry {
                    position: row.try_get("links")?,
                    header: row.try_get("header")?,
                    body: row.try_get("body")?,
                    tag: blob::<32>(row, "tag")?,
                };
                Ok((kind != EntryKind::Metadata, u64_col(row, "lamport")?, hash_of(row)?, sealed))
            })
            .collect::<Result<_>>()?;
        rows.sort_by_key(|r| (r.0, r.1, r.2));
        Ok(rows.into_iter().map(|(_, _, _, e)| e).collect())
    }

    /// Every entry hash of a replicated group, sorted (the set reconciled).
    pub async fn replica_hashes(&self, id: &ReplicationId) -> Result<Vec<EntryHash>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM replica_entries
              WHERE replica_ref = (SELECT id FROM replicas WHERE replication_id = $1) ORDER BY hash",
        )
        .bind(id.0.to_vec())
        .fetch_all(&self.readers)
        .await?;
        entry_hashes(rows)
    }
}

fn hash_of(row: &SqliteRow) -> Result<EntryHash> {
    Ok(EntryHash(blob::<32>(row, "hash")?))
}

/// The rows of `select` for the stored entries of `replica` among `hashes`.
async fn replica_rows(
    conn: &mut SqliteConnection,
    select: &'static str,
    replica: i64,
    hashes: &[EntryHash],
) -> Result<Vec<SqliteRow>> {
    rows_by_hash(conn, select, hashes, |qb| {
        qb.push(" WHERE +replica_ref = ").push_bind(replica);
    })
    .await
}
