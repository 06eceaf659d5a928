//! Append throughput into a store that already holds a million entries with
//! random hashes, next to raw SQLite inserts of the same rows measured in the
//! same run. Prints one JSON document (the last line).
//!
//! Batches are 5 000 entries, the size sync appends fetched entries in.
//! `VEIL_BENCH_PREFILL` overrides the number of prefilled entries (default
//! 1 000 000), `VEIL_BENCH_BATCH` the batch size,
//! `VEIL_BENCH_CACHE_KIB`/`VEIL_BENCH_CHECKPOINT_PAGES` the tuning, and
//! `VEIL_BENCH_DURABILITY=process-crash` selects the weaker durability.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/generator.rs"]
mod generator;

use std::{sync::Arc, time::Instant};

use generator::Generator;

use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, sqlite::SqliteConnectOptions};
use veil_crypto::{
    GroupSecret, SigningSecret,
    envelope::{Position, SealedEntry},
    time::SystemClock,
};
use veil_storage::{
    Durability, GroupKind, NewEntry, Store, StoreOptions, Tuning,
    keystore::{KdfParams, KeySource},
};

const SINGLES: usize = 2000;
/// Enough batched rows to span checkpoints, so their cost is in the rate.
const BATCHED: usize = 200_000;
const TARGET_BATCHED: f64 = 30_000.0;

async fn append_all(store: &Store, group: veil_crypto::GroupId, rows: &[(SealedEntry, Position)]) {
    let batch: Vec<NewEntry<'_>> = rows
        .iter()
        .map(|(e, l)| NewEntry {
            group,
            entry: e,
            position: l,
            author: None,
            payload: None,
            ratchet: None,
            outbox: &[],
        })
        .collect();
    store.append_batch(&batch).await.unwrap();
}

/// The same rows into a bare table with the same columns, keyed the obvious
/// way: a `UNIQUE` index on the 32-byte hash.
async fn raw_insert(conn: &mut SqliteConnection, rows: &[(SealedEntry, Position)]) {
    let mut tx = conn.begin().await.unwrap();
    for chunk in rows.chunks(500) {
        let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO raw (hash, lamport, parents, links, header, body, tag) ");
        qb.push_values(chunk, |mut b, (e, l)| {
            b.push_bind(e.hash().0.to_vec())
                .push_bind(l.lamport as i64)
                .push_bind(l.parents.iter().flat_map(|p| p.0).collect::<Vec<u8>>())
                .push_bind(e.position.clone())
                .push_bind(e.header.clone())
                .push_bind(e.body.clone())
                .push_bind(e.tag.to_vec());
        });
        qb.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn rate(n: usize, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let batch_size: usize = std::env::var("VEIL_BENCH_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let prefill: usize = std::env::var("VEIL_BENCH_PREFILL").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let durability = match std::env::var("VEIL_BENCH_DURABILITY").as_deref() {
        Ok("process-crash") => Durability::ProcessCrash,
        _ => Durability::PowerLoss,
    };
    let defaults = Tuning::default();
    let env_u32 = |name: &str, default: u32| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let tuning = Tuning {
        durability,
        cache_kib: env_u32("VEIL_BENCH_CACHE_KIB", defaults.cache_kib),
        reader_cache_kib: env_u32("VEIL_BENCH_READER_CACHE_KIB", defaults.reader_cache_kib),
        wal_autocheckpoint_pages: env_u32("VEIL_BENCH_CHECKPOINT_PAGES", defaults.wal_autocheckpoint_pages),
    };
    let dir = tempfile::tempdir().unwrap();
    let options =
        StoreOptions { tuning, kdf: KdfParams::FAST_INSECURE_FOR_TESTS, clock: Arc::new(SystemClock), readers: 1 };
    let store =
        Store::create(&dir.path().join("veil.db"), &KeySource::KeyFile(dir.path().join("key")), options).await.unwrap();
    let group = store
        .insert_group(
            GroupKind::MultiMember,
            None,
            &GroupSecret::from_bytes([1; 32]),
            &SigningSecret::from_seed(&[2; 32]),
        )
        .await
        .unwrap();

    let raw_options = SqliteConnectOptions::new()
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(match durability {
            Durability::ProcessCrash => sqlx::sqlite::SqliteSynchronous::Normal,
            Durability::PowerLoss => sqlx::sqlite::SqliteSynchronous::Full,
        })
        .pragma("cache_size", format!("-{}", tuning.cache_kib))
        .pragma("wal_autocheckpoint", tuning.wal_autocheckpoint_pages.to_string())
        .pragma("journal_size_limit", (64u64 * 1024 * 1024).to_string());
    let mut raw = SqliteConnection::connect_with(&raw_options).await.unwrap();
    sqlx::query(
        "CREATE TABLE raw (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, lamport INTEGER NOT NULL,
         parents BLOB NOT NULL, links BLOB NOT NULL, header BLOB NOT NULL, body BLOB NOT NULL, tag BLOB NOT NULL)",
    )
    .execute(&mut raw)
    .await
    .unwrap();

    let mut generator = Generator::new(0x9E37_79B9_7F4A_7C15);
    let mut raw_generator = Generator::new(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    for _ in 0..prefill / 5000 {
        append_all(&store, group, &generator.batch(5000)).await;
        raw_insert(&mut raw, &raw_generator.batch(5000)).await;
    }
    eprintln!("prefilled {prefill} entries (and raw rows) in {:.1} s", started.elapsed().as_secs_f64());

    // Both stores start each phase with an empty WAL.
    store.checkpoint().await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut raw).await.unwrap();

    // Single appends: one transaction each.
    let singles = generator.batch(SINGLES);
    let t = Instant::now();
    for row in &singles {
        append_all(&store, group, std::slice::from_ref(row)).await;
    }
    let single = rate(SINGLES, t);
    let raw_singles = raw_generator.batch(SINGLES);
    let t = Instant::now();
    for row in &raw_singles {
        raw_insert(&mut raw, std::slice::from_ref(row)).await;
    }
    let raw_single = rate(SINGLES, t);

    // Batched appends.
    store.checkpoint().await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut raw).await.unwrap();
    let batches: Vec<_> = (0..BATCHED / batch_size).map(|_| generator.batch(batch_size)).collect();
    let t = Instant::now();
    for b in &batches {
        append_all(&store, group, b).await;
    }
    let batched = rate(BATCHED, t);
    let raw_batches: Vec<_> = (0..BATCHED / batch_size).map(|_| raw_generator.batch(batch_size)).collect();
    let t = Instant::now();
    for b in &raw_batches {
        raw_insert(&mut raw, b).await;
    }
    let raw_batched = rate(BATCHED, t);

    let durability = match durability {
        Durability::ProcessCrash => "process-crash",
        Durability::PowerLoss => "power-loss",
    };
    println!(
        "{{\"benchmark\":\"veil-storage/append\",\"prefilled_entries\":{prefill},\"durability\":\"{durability}\",\
         \"batch_size\":{batch_size},\"single_append_per_s\":{single:.0},\"batched_append_per_s\":{batched:.0},\
         \"raw_single_insert_per_s\":{raw_single:.0},\"raw_batched_insert_per_s\":{raw_batched:.0},\
         \"target_batched_per_s\":{TARGET_BATCHED},\"within_target\":{}}}",
        batched >= TARGET_BATCHED
    );
}
