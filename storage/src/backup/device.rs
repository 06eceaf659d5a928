//! Device copies: the whole store, handed to a newly linked device of the
//! same account, which makes it a store of its own.
//!
//! ```text
//! stream = storage key (32) ‖ a consistent copy of the database (VACUUM INTO)
//! ```
//!
//! The stream is the plaintext a backup seals (see the parent module), sent
//! in pieces over the encrypted session that links the two devices
//! (PROTOCOL.md §14), which authenticates and orders them: it carries no
//! framing, chunk index or MAC of its own. Its length is announced first
//! ([`DeviceCopy::total_len`]), so the receiver knows when it is complete
//! and refuses a byte more; a length beyond [`MAX_DEVICE_COPY`], or too
//! short to hold a key and an SQLite header, is refused before anything is
//! written.
//!
//! The database copy is still sealed under the storage key, column by
//! column, exactly as at rest. The receiver never writes the key into the
//! copy's file: it keeps the first 32 bytes in wiped memory and writes them
//! to a key file beside the new store only once the copy checked out.
//!
//! **Why the new store is renewed** (`renew`, shared with restores). Both
//! devices go on writing after the copy, so nothing that seals may be
//! shared between them:
//!
//! * the new device gets its own identity device key (the caller's) and a
//!   new device key in every group; the first device stays listed as
//!   another device of the account, without its secret;
//! * every sending chain becomes a **receiving** chain of the key that
//!   wrote with it (the first device's key in the group's latest epoch it
//!   wrote in), starting where the chain was stored: what the first device
//!   writes after the copy reads on the new one. A stored chain may be
//!   behind positions the first device had reserved and used (schema 5);
//!   a receiver steps over such a gap within its window;
//! * the outbox is emptied: the first device keeps delivering what it owes
//!   and hears the acknowledgements.
//!
//! Everything else — history, contacts, links, settings, epochs, receiving
//! chains and skipped keys — is kept. As with a restore, the new store
//! appears whole or not at all: it is built as `<db>.creating` under the
//! database's lock, and a refused or dropped copy leaves nothing behind.

use std::{
    fs::File,
    io::{BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use veil_crypto::{OsEntropy, SigningSecret};
use zeroize::Zeroizing;

use super::renew::{Renewal, renew};
use crate::{
    Error, KeyAccess, Result, Store, StoreOptions,
    keystore::{KeySource, StorageKey},
    rows::time_value,
    sqlite,
};

/// The largest device copy sent or accepted, in bytes (key included): 64 GiB.
pub const MAX_DEVICE_COPY: u64 = 64 << 30;

/// The storage key at the head of the stream.
const KEY_LEN: usize = 32;

/// The shortest stream that may hold a store: the key and an SQLite header.
const MIN_DEVICE_COPY: u64 = KEY_LEN as u64 + 100;

fn invalid(reason: &'static str) -> Error {
    Error::Invalid { what: "device copy", reason }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// A file removed (with any SQLite companion) when this drops.
#[derive(Debug)]
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        sqlite::remove_staging(&self.0);
    }
}

/// The stream of a device copy ([`Store::device_copy`]), read a piece at a
/// time for a newly linked device of the account ([`ReceivedCopy`]):
///
/// ```text
/// stream = storage key (32) ‖ a consistent copy of the database (VACUUM INTO)
/// ```
///
/// the plaintext a backup seals, to be sent over the linking session (which
/// encrypts, authenticates and orders it), its length
/// ([`DeviceCopy::total_len`]) announced first. The copy's columns are
/// still sealed under the storage key. Pieces are wiped when dropped; the
/// copy's file is removed when this drops.
pub struct DeviceCopy {
    /// The copy, read from `sent - KEY_LEN` on.
    file: File,
    key: Zeroizing<[u8; KEY_LEN]>,
    total_len: u64,
    sent: u64,
    /// Dropped after `file`.
    copy: Removed,
}

impl core::fmt::Debug for DeviceCopy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceCopy")
            .field("copy", &self.copy.0)
            .field("key", &"<redacted>")
            .field("total_len", &self.total_len)
            .field("sent", &self.sent)
            .finish()
    }
}

impl Store {
    /// A consistent copy of this store for a newly linked device of the
    /// account, as a stream of `storage key ‖ database copy` (see
    /// [`DeviceCopy`] and the module docs), for the holder of the store's
    /// [`KeyAccess`] only. The copy is a private file in `dir`, removed
    /// when the [`DeviceCopy`] drops.
    pub async fn device_copy(&self, access: &KeyAccess, dir: &Path) -> Result<DeviceCopy> {
        self.keys.check(access)?;
        let mut name = [0u8; 12];
        veil_crypto::Entropy::fill(&mut OsEntropy, &mut name)?;
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!(".veil-device-copy-{hex}"));
        // Made 0600 and empty: VACUUM INTO writes into an empty file.
        drop(crate::private::create_new(&path)?);
        let copy = Removed(path);
        {
            let mut conn = self.writer().await?;
            sqlx::query("VACUUM INTO $1").bind(copy.0.to_string_lossy().into_owned()).execute(&mut *conn).await?;
        }
        let file = File::open(&copy.0).map_err(io(&copy.0))?;
        let len = file.metadata().map_err(io(&copy.0))?.len();
        let total_len = len.checked_add(KEY_LEN as u64).filter(|t| *t <= MAX_DEVICE_COPY);
        let total_len = total_len.ok_or(invalid("the store is larger than a device copy may be"))?;
        Ok(DeviceCopy { file, key: Zeroizing::new(*self.key.expose()), total_len, sent: 0, copy })
    }
}

impl DeviceCopy {
    /// The stream's length in bytes: the key's 32 and the copy's.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The next `max` bytes of the stream (fewer only at its end), empty
    /// once all of it was read. `max` must not be 0. Reads the copy's file
    /// (blocking).
    pub fn next_piece(&mut self, max: usize) -> Result<Zeroizing<Vec<u8>>> {
        if max == 0 {
            return Err(invalid("a piece must hold at least a byte"));
        }
        let left = self.total_len - self.sent;
        let len = usize::try_from(left.min(max as u64)).unwrap_or(max);
        let mut piece = Zeroizing::new(vec![0u8; len]);
        let mut filled = 0;
        if let Ok(at @ 0..KEY_LEN) = usize::try_from(self.sent) {
            filled = (KEY_LEN - at).min(len);
            piece[..filled].copy_from_slice(&self.key[at..at + filled]);
        }
        self.file.read_exact(&mut piece[filled..]).map_err(io(&self.copy.0))?;
        self.sent += len as u64;
        Ok(piece)
    }
}

/// A device copy being received ([`ReceivedCopy::begin`]), to become a
/// store of its own ([`ReceivedCopy::finish`]) as a **new device of the
/// same account**: its own identity device beside the first one, a new
/// device key in every group, the first device's sending chains as
/// receiving chains (it reads what the first device writes after the
/// copy), and nothing owed (the first device keeps delivering its outbox).
/// History, contacts, links, settings and epochs are kept. Dropped
/// unfinished, it removes what it wrote and the lock it took.
pub struct ReceivedCopy {
    db: PathBuf,
    key_file: PathBuf,
    staging: PathBuf,
    /// The copy's bytes, after the key; `None` once closed.
    out: Option<BufWriter<File>>,
    key: Zeroizing<[u8; KEY_LEN]>,
    total_len: u64,
    received: u64,
    /// A write failed: what is in the file is unknown.
    broken: bool,
    /// The new store is in place: nothing to remove.
    placed: bool,
    /// The database's lock, held until the store is opened.
    lock: Option<File>,
}

impl core::fmt::Debug for ReceivedCopy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceivedCopy")
            .field("db", &self.db)
            .field("key", &"<redacted>")
            .field("total_len", &self.total_len)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl ReceivedCopy {
    /// Starts receiving a device copy of `total_len` bytes (as its sender's
    /// [`DeviceCopy::total_len`]) as a new store at `db` unlocked by a new
    /// key file at `key_file`; neither may exist. Takes the database's
    /// lock, and builds the store beside it until it is finished.
    pub fn begin(db: &Path, key_file: &Path, total_len: u64) -> Result<Self> {
        if !(MIN_DEVICE_COPY..=MAX_DEVICE_COPY).contains(&total_len) {
            return Err(invalid("its announced length is out of range"));
        }
        let (lock, staging) = super::claim_new_store(db, key_file)?;
        let file = match crate::private::create_new(&staging) {
            Ok(file) => file,
            Err(e) => {
                sqlite::remove_lock_file(db);
                return Err(e);
            }
        };
        Ok(Self {
            db: db.to_owned(),
            key_file: key_file.to_owned(),
            staging,
            out: Some(BufWriter::new(file)),
            key: Zeroizing::new([0; KEY_LEN]),
            total_len,
            received: 0,
            broken: false,
            placed: false,
            lock: Some(lock),
        })
    }

    /// Appends the next piece of the stream. Bytes past the announced
    /// length are refused (and nothing of that piece is kept). Writes to
    /// the staging file (blocking).
    pub fn push(&mut self, piece: &[u8]) -> Result<()> {
        if self.broken {
            return Err(invalid("an earlier write of it failed"));
        }
        if piece.len() as u64 > self.total_len - self.received {
            return Err(invalid("more bytes arrived than were announced"));
        }
        let mut rest = piece;
        if let Ok(at @ 0..KEY_LEN) = usize::try_from(self.received) {
            let take = (KEY_LEN - at).min(rest.len());
            self.key[at..at + take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            self.received += take as u64;
        }
        if rest.is_empty() {
            return Ok(());
        }
        let out = self.out.as_mut().ok_or(invalid("it was closed"))?;
        if let Err(source) = out.write_all(rest) {
            self.broken = true;
            return Err(Error::Io { path: self.staging.clone(), source });
        }
        self.received += rest.len() as u64;
        Ok(())
    }

    /// Makes the whole copy a store of its own, `device` its identity
    /// device (see the module docs), unlocked by the key file, and opens it.
    /// A copy short of its announced length, not an SQLite database, not a
    /// veil store, or not opened by the key it carried is refused, and
    /// nothing is left behind.
    pub async fn finish(mut self, device: &SigningSecret, options: StoreOptions) -> Result<Store> {
        self.place(device, &options).await?;
        self.placed = true;
        self.lock = None;
        let key_file = KeySource::KeyFile(self.key_file.clone());
        Store::open(&self.db, &key_file, options).await
    }

    /// Checks, renews and renames the copy into place, and writes the key
    /// file. On failure the key file is removed (the rest when `self` drops).
    async fn place(&mut self, device: &SigningSecret, options: &StoreOptions) -> Result<()> {
        if self.broken || self.received < self.total_len {
            return Err(invalid("fewer bytes arrived than were announced"));
        }
        let out = self.out.take().ok_or(invalid("it was closed"))?;
        let file = out.into_inner().map_err(|e| Error::Io { path: self.staging.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io(&self.staging))?;
        drop(file);
        sqlite::check_file(&self.staging).map_err(not_a_store)?;
        Store::inspect(&self.staging).await.map_err(not_a_store)?;
        let key = StorageKey::from_bytes(*self.key);
        let now = time_value(options.clock.now())?;
        renew(&self.staging, &key, options, Renewal::Link { device, now }).await?;
        key.write_key_file(&self.key_file)?;
        if let Err(source) = std::fs::rename(&self.staging, &self.db) {
            let _ = std::fs::remove_file(&self.key_file);
            return Err(Error::Io { path: self.db.clone(), source });
        }
        Ok(())
    }
}

/// The copy's own errors for a file that is not a (veil) store, rather
/// than ones naming the staging file as left untouched.
fn not_a_store(e: Error) -> Error {
    match e {
        Error::NotSqlite { .. } | Error::Corrupt { .. } => invalid("it is not a complete SQLite database"),
        Error::ForeignDatabase { .. } => invalid("it is not a veil store"),
        other => other,
    }
}

impl Drop for ReceivedCopy {
    fn drop(&mut self) {
        if !self.placed {
            self.out = None;
            sqlite::remove_staging(&self.staging);
            if self.lock.is_some() {
                sqlite::remove_lock_file(&self.db);
            }
        }
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
