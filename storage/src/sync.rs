//! Commits made durable after they return: the fsync off the write path.
//!
//! Under [`Durability::PowerLoss`] every commit waits for an fsync of the
//! WAL (`synchronous = FULL`): about half a millisecond here, on the path
//! of every message twice (the sender's append, the receiver's). A
//! *deferred* commit is written with `synchronous = NORMAL` instead: it
//! returns once its pages are in the WAL (it already survives the process
//! being killed, as every WAL commit does) and becomes safe from a power
//! loss at the next sync of the WAL file. [`Store::sync`] is that sync,
//! done on a blocking thread with a descriptor of its own, shared by
//! everyone waiting: a sync covers every deferred commit that returned
//! before it began, so callers that arrive during one wait for the next
//! and need no more. The caller decides what may happen between the commit
//! and the sync (a message can go to the network, an acknowledgement must
//! not) — that is the point of deferring.
//!
//! Why syncing the WAL from outside is enough: `synchronous = FULL` does
//! exactly that fsync at the end of each commit; a checkpoint in between
//! syncs the WAL and then the database file itself, so pages it moved
//! are durable there; a WAL file missing means the last connection closed
//! and checkpointed.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::{Durability, Error, Result, Store};

/// A deferred commit: durable against power loss once
/// [`Store::sync`] returned for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "a deferred commit is durable only once synced"]
pub struct Unsynced(u64);

impl Unsynced {
    /// Nothing to sync (no transaction was deferred).
    pub(crate) const NOTHING: Self = Self(0);
}

/// The deferred commits of a store and the syncs that cover them.
#[derive(Debug)]
pub(crate) struct WalSync {
    wal: PathBuf,
    durability: Durability,
    /// Deferred commits that returned so far.
    committed: AtomicU64,
    /// Deferred commits a finished sync covers; held during a sync.
    synced: tokio::sync::Mutex<u64>,
    /// fsyncs done.
    syncs: AtomicU64,
}

impl WalSync {
    pub(crate) fn new(database: &std::path::Path, durability: Durability) -> Self {
        Self {
            wal: crate::sqlite::beside(database, "-wal"),
            durability,
            committed: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    /// Counts a deferred commit that just returned.
    pub(crate) fn committed(&self) -> Unsynced {
        Unsynced(self.committed.fetch_add(1, Ordering::AcqRel) + 1)
    }

    async fn sync(&self, commit: Unsynced, regardless: bool) -> Result<()> {
        if self.durability == Durability::ProcessCrash && !regardless {
            return Ok(());
        }
        let mut synced = self.synced.lock().await;
        if *synced >= commit.0 {
            return Ok(());
        }
        // Every deferred commit counted by now returned before this sync.
        let upto = self.committed.load(Ordering::Acquire);
        let wal = self.wal.clone();
        let done = tokio::task::spawn_blocking(move || match std::fs::File::open(&wal) {
            Ok(file) => file.sync_data().map_err(|source| Error::Io { path: wal, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path: wal, source }),
        })
        .await
        .map_err(|e| Error::Io { path: self.wal.clone(), source: std::io::Error::other(e.to_string()) })?;
        done?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        *synced = upto;
        Ok(())
    }
}

impl Store {
    /// Waits until `commit` (and every deferred commit before it) is
    /// durable against power loss; at once under
    /// [`Durability::ProcessCrash`]. Concurrent callers share one fsync.
    pub async fn sync(&self, commit: Unsynced) -> Result<()> {
        self.wal_sync.sync(commit, false).await
    }

    /// Like [`sync`](Self::sync), under either durability: for a commit
    /// whose loss would do harm beyond losing it, such as a reservation of
    /// sending positions (undone, it lets keys be used twice).
    pub async fn sync_regardless(&self, commit: Unsynced) -> Result<()> {
        self.wal_sync.sync(commit, true).await
    }

    /// How many times this store synced its WAL for deferred commits.
    pub fn wal_syncs(&self) -> u64 {
        self.wal_sync.syncs.load(Ordering::Relaxed)
    }
}
