//! Everything specific to SQLite lives here: the file-format checks done
//! before SQLite ever touches a file, connection options and pragmas.

use std::{
    io::Read,
    path::{Path, PathBuf},
    time::Duration,
};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::{Error, Result};

const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// How hard commits push data to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives process crashes (`kill -9`); a power loss may lose the last
    /// commits (WAL with `synchronous = NORMAL`).
    ProcessCrash,
    /// Also survives power loss: every commit is fsynced (`synchronous = FULL`).
    #[default]
    PowerLoss,
}

/// Tuning knobs for the SQLite connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The writer's page cache, in KiB.
    pub cache_kib: u32,
    /// Each reader's page cache, in KiB. Every commit makes a WAL reader drop
    /// its whole cache at its next read (walking it page by page), so a large
    /// one costs more than it saves.
    pub reader_cache_kib: u32,
    /// WAL pages after which SQLite checkpoints automatically.
    pub wal_autocheckpoint_pages: u32,
    /// What a commit survives: a killed process only, or a power loss too (the default).
    pub durability: Durability,
}

impl Default for Tuning {
    /// 16 MiB of page cache for the writer, 2 MiB for each reader, and a
    /// 100 000-page (400 MiB) checkpoint interval.
    /// Page caches are walked whole more often than one would think: a WAL
    /// reader drops its cache at its next read after every commit, and the
    /// writer scans its own at the end of every transaction in which a
    /// B-tree rebalanced (SQLite parks a page at the lock-byte page number
    /// while it swaps two, and that page number marks the cache as holding
    /// pages past the end of the file). At a million entries per store,
    /// with appends rebalancing the random hash index all the time, a
    /// 64 MiB writer cache cost more in those scans than it saved in reads:
    /// the pipelined message bench used 185 µs of CPU per message with it,
    /// 152-163 with 16 MiB, 165 with 8 and 171 with 4. 64 MiB readers
    /// spent ~6% of the message path's CPU resetting their caches.
    /// Entry hashes are random, so every append dirties a random index page;
    /// a long interval lets each hot page reach the main file once per
    /// checkpoint instead of once per few batches (measured at a million
    /// entries: 2.2x the batched append rate of a 10 000-page interval).
    /// The WAL file keeps its size after a checkpoint (see `wal_size_limit`).
    fn default() -> Self {
        Self {
            cache_kib: 16 * 1024,
            reader_cache_kib: 2 * 1024,
            wal_autocheckpoint_pages: 100_000,
            durability: Durability::PowerLoss,
        }
    }
}

/// Checks that an existing file is a complete SQLite database, reading it
/// only: a file that is not SQLite, or was cut short, is refused before
/// SQLite opens it (and might "repair" it).
pub(crate) fn check_file(path: &Path) -> Result<()> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut header = [0u8; 100];
    if len < header.len() as u64 {
        return Err(if len == 0 {
            Error::NotSqlite { path: path.to_owned() }
        } else {
            corrupt_or_foreign(path, &mut file)?
        });
    }
    file.read_exact(&mut header).map_err(io)?;
    if &header[..16] != MAGIC {
        return Err(Error::NotSqlite { path: path.to_owned() });
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536u64,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        _ => return Err(corrupt(path, "invalid page size in the header")),
    };
    if len % page_size != 0 {
        return Err(corrupt(path, format!("file size {len} is not a whole number of {page_size}-byte pages")));
    }
    let change_counter = &header[24..28];
    let valid_for = &header[92..96];
    let pages = u64::from(u32::from_be_bytes([header[28], header[29], header[30], header[31]]));
    // With a WAL beside the file, the WAL (not the main file) holds the
    // newest pages: a checkpoint interrupted by a crash leaves page 1 (with
    // the new page count) written and the file not yet grown. SQLite
    // recovers that from the WAL, so only judge the size without one.
    if change_counter == valid_for && pages != 0 && len < pages * page_size && !has_wal(path) {
        return Err(corrupt(path, format!("truncated: {len} bytes, the header declares {}", pages * page_size)));
    }
    Ok(())
}

/// Whether a non-empty WAL file is beside `path`.
pub(crate) fn has_wal(path: &Path) -> bool {
    std::fs::metadata(beside(path, "-wal")).map(|m| m.len() > 32).unwrap_or(false)
}

fn wal_exists(path: &Path) -> bool {
    beside(path, "-wal").exists()
}

/// `path` with `suffix` appended to its file name (`veil.db` → `veil.db-wal`):
/// where SQLite and the store keep a database's companion files.
pub(crate) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Corrupt { path: path.to_owned(), reason: reason.into() }
}

fn corrupt_or_foreign(path: &Path, file: &mut std::fs::File) -> Result<Error> {
    let mut start = Vec::new();
    file.read_to_end(&mut start).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    Ok(if MAGIC.starts_with(&start[..start.len().min(16)]) && !start.is_empty() {
        corrupt(path, "truncated inside the header")
    } else {
        Error::NotSqlite { path: path.to_owned() }
    })
}

/// Bytes a WAL file may keep after a checkpoint: what it grows to between
/// two checkpoints, plus a quarter. A WAL that restarts then overwrites
/// pages it already has: cut back (to 64 MiB, as it used to be), it grew
/// into new page-cache pages again, each allocated and zeroed by the kernel
/// (its frames of 4 096 + 24 bytes straddle pages), 5% of the pipelined
/// message bench's CPU at a million entries; with the WAL kept, 137-141 µs
/// of CPU per message against 154-156 and 11 200-11 600 msg/s against
/// 10 000-10 200. The most the WAL takes on disk is unchanged (it reached
/// this size before every checkpoint anyway); it just stays there until
/// the store closes (the last connection checkpoints and removes it).
fn wal_size_limit(tuning: &Tuning) -> u64 {
    const FRAME: u64 = 4096 + 24;
    let frames = u64::from(tuning.wal_autocheckpoint_pages);
    (frames + frames / 4) * FRAME
}

/// Options for the single writer connection.
pub(crate) fn writer_options(path: &Path, create: bool, tuning: &Tuning) -> SqliteConnectOptions {
    base_options(path, tuning).create_if_missing(create).read_only(false)
}

/// Options for reader connections (WAL lets them run beside the writer).
pub(crate) fn reader_options(path: &Path, tuning: &Tuning) -> SqliteConnectOptions {
    base_options(path, tuning)
        .create_if_missing(false)
        .read_only(true)
        .pragma("cache_size", format!("-{}", tuning.reader_cache_kib))
}

/// Options for inspecting a file before migrating it: read-only, no pragmas
/// that write.
pub(crate) fn inspect_options(path: &Path) -> SqliteConnectOptions {
    // Without a WAL beside it, read the file as immutable: SQLite then creates
    // no -wal/-shm files (which a read-only connection to a WAL-mode file
    // would otherwise make and leave behind).
    SqliteConnectOptions::new().filename(path).read_only(true).create_if_missing(false).immutable(!wal_exists(path))
}

fn base_options(path: &Path, tuning: &Tuning) -> SqliteConnectOptions {
    let synchronous = match tuning.durability {
        Durability::ProcessCrash => SqliteSynchronous::Normal,
        Durability::PowerLoss => SqliteSynchronous::Full,
    };
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        // Deleted rows (used message keys, delivered outbox rows) are
        // overwritten with zeros, not left in free pages.
        .pragma("secure_delete", "ON")
        // Statement journals (the undo of one statement of a transaction,
        // which every multi-row write keeps) stay in memory: spilled to a
        // temporary file they were a sixth of the writer's time in pwrite.
        .pragma("temp_store", "MEMORY")
        .pragma("cache_size", format!("-{}", tuning.cache_kib))
        .pragma("wal_autocheckpoint", tuning.wal_autocheckpoint_pages.to_string())
        .pragma("journal_size_limit", wal_size_limit(tuning).to_string())
}

/// The path of the temporary database a new store is built in before it is
/// renamed into place (so a crash during creation never leaves a half-made
/// database at the real path).
pub(crate) fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".creating");
    path.with_file_name(name)
}

/// Removes a staging database and its WAL/SHM companions.
pub(crate) fn remove_staging(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Takes the exclusive lock that keeps a second process (or a second
/// `Store`) off the database at `path`; held until the returned file drops.
pub(crate) fn lock(path: &Path) -> Result<std::fs::File> {
    let lock_path = lock_path(path);
    let file = crate::private::open_or_create(&lock_path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path: path.to_owned() }),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io { path: lock_path, source }),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    beside(path, ".lock")
}

/// Removes the lock file of a store whose creation failed (the caller still
/// holds the lock, so no other process can be relying on it).
pub(crate) fn remove_lock_file(path: &Path) {
    let _ = std::fs::remove_file(lock_path(path));
}

/// `PRAGMA integrity_check` result: `Ok` or SQLite's list of problems.
pub(crate) fn integrity_verdict(rows: Vec<String>) -> Result<(), String> {
    if rows.len() == 1 && rows[0] == "ok" { Ok(()) } else { Err(rows.join("; ")) }
}
