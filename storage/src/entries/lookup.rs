//! Finding entry rows by hash, and reading an entry's sections from a row.

use std::collections::HashSet;

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, sqlite::SqliteRow};
use veil_crypto::envelope::{EntryHash, SealedEntry};

use super::ROWS_PER_STATEMENT;
use crate::{Error, Result, rows::blob};

/// The hash and wire sections of an entry row (which must select `hash`,
/// `position`, `header`, `body` and `tag`), checked against each other.
pub(crate) fn sealed_of(r: &SqliteRow) -> Result<(EntryHash, SealedEntry)> {
    let hash = EntryHash(blob::<32>(r, "hash")?);
    let sealed = SealedEntry {
        position: r.try_get("links")?,
        header: r.try_get("header")?,
        body: r.try_get("body")?,
        tag: blob::<32>(r, "tag")?,
    };
    if sealed.hash() != hash {
        return Err(Error::Invalid { what: "entry", reason: "stored sections do not match its hash" });
    }
    Ok((hash, sealed))
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
