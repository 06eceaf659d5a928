//! Backups: the whole store — account, contacts, groups, history — in one
//! file sealed under a passphrase, and restoring it on another machine.
//!
//! ```text
//! file   = "VEILBAK1" ‖ salt (16) ‖ u32_be(m_cost_kib) ‖ u32_be(t_cost) ‖ u32_be(p_cost)
//!          ‖ lp(verifier) ‖ chunk*
//! key    = Argon2id(passphrase, salt, m, t, p)
//! chunk  = lp(Seal(key, "veil/v1/backup" ‖ u64_be(index) ‖ u8(last), ≤ 1 MiB of plain))
//! plain  = storage key (32) ‖ a consistent copy of the database (VACUUM INTO)
//! ```
//!
//! `Seal` is the store's AES-256-GCM with a random nonce (as for every sealed
//! column); binding each chunk's index and whether it is the last one into
//! its associated data makes a reordered, cut or extended file fail to open.
//! The verifier tells a wrong passphrase from a damaged file.
//!
//! A backup file may come from anyone, and its Argon2id parameters are read
//! before anything in it is authenticated: a restore refuses a file that
//! asks for more than `MAX_KDF` (and a backup is never written with more),
//! so a crafted file costs at most a few seconds and 256 MiB, not the
//! keystore's own bounds (4 GiB, 100 passes).
//!
//! The database copy is still sealed under the storage key (which the
//! backup carries, sealed): a restore writes it into a key file beside the
//! restored database. Every group then gets a **new device key** and no
//! sending chain: the restored node announces itself in each group as a new
//! device of the same member, with fresh chains, so it never reuses a key
//! or nonce of the backed-up device — which may have gone on writing after
//! the backup (docs/ARCHITECTURE.md).
//!
//! A newly linked device gets the same plaintext — storage key ‖ database
//! copy — over an encrypted session instead of a file ([`DeviceCopy`],
//! [`ReceivedCopy`] in `device`), and becomes a new device of the account
//! beside the first one (`renew`).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use veil_crypto::OsEntropy;
use zeroize::Zeroizing;

use crate::{
    Error, Result, Store, StoreOptions,
    keystore::{KdfParams, KeySource, StorageKey},
    sqlite,
};

mod device;
mod format;
mod renew;

pub use device::{DeviceCopy, MAX_DEVICE_COPY, ReceivedCopy};

use renew::{Renewal, renew};

use format::{
    CHUNK, FileReader, FormatError, Header, Opener, SALT_LEN, VERIFIER_PLAINTEXT, VERIFIER_PURPOSE, chunk_purpose,
    put_lp,
};

/// The most a backup may ask Argon2id for: four times the default memory,
/// a few more passes and lanes (see the module docs).
pub(crate) const MAX_KDF: KdfParams = KdfParams { m_cost_kib: 256 * 1024, t_cost: 8, p_cost: 4 };

/// Whether a backup may be sealed or opened under `kdf`.
fn kdf_allowed(kdf: &KdfParams) -> bool {
    kdf.validate().is_ok()
        && kdf.m_cost_kib <= MAX_KDF.m_cost_kib
        && kdf.t_cost <= MAX_KDF.t_cost
        && kdf.p_cost <= MAX_KDF.p_cost
}

fn damaged(reason: &'static str) -> Error {
    Error::Backup(reason)
}

impl Store {
    /// Writes a backup of this store to `dest` (which must not exist),
    /// sealed under `passphrase` stretched with Argon2id under `kdf`. The
    /// file appears complete or not at all. Streamed a chunk at a time (a
    /// few MiB of memory whatever the store's size), off the async threads.
    pub async fn backup(&self, dest: &Path, passphrase: &str, kdf: KdfParams) -> Result<()> {
        if dest.exists() {
            return Err(Error::AlreadyExists { path: dest.to_owned() });
        }
        if !kdf_allowed(&kdf) {
            return Err(Error::Invalid {
                what: "backup",
                reason: "key-derivation parameters above what a restore accepts",
            });
        }
        let snapshot = with_extension(dest, "snapshot");
        let _ = std::fs::remove_file(&snapshot);
        {
            let mut conn = self.writer().await?;
            sqlx::query("VACUUM INTO $1").bind(snapshot.to_string_lossy().into_owned()).execute(&mut *conn).await?;
        }
        let (dest, passphrase) = (dest.to_owned(), Zeroizing::new(passphrase.to_owned()));
        let storage_key = Zeroizing::new(*self.key.expose());
        let staging = with_extension(&dest, "partial");
        let written = tokio::task::spawn_blocking({
            let (snapshot, staging) = (snapshot.clone(), staging.clone());
            move || seal_file(&snapshot, &storage_key, &staging, &dest, &passphrase, kdf)
        })
        .await
        .map_err(|e| Error::Io { path: staging.clone(), source: std::io::Error::other(e) });
        let _ = std::fs::remove_file(&snapshot);
        let written = written.and_then(|r| r);
        if written.is_err() {
            let _ = std::fs::remove_file(&staging);
        }
        written
    }

    /// Restores a backup made by [`Store::backup`] as a new store at `db`
    /// unlocked by a new key file at `key_file` (neither may exist), with a
    /// new device key in every group and no sending chain (see the module
    /// docs). A wrong passphrase and a damaged file are refused with their
    /// own error, and leave nothing behind.
    pub async fn restore(
        backup: &Path,
        passphrase: &str,
        db: &Path,
        key_file: &Path,
        options: StoreOptions,
    ) -> Result<Self> {
        let (lock, staging) = claim_new_store(db, key_file)?;
        let made = async {
            let storage_key = tokio::task::spawn_blocking({
                let (backup, staging, passphrase) =
                    (backup.to_owned(), staging.clone(), Zeroizing::new(passphrase.to_owned()));
                move || open_file(&backup, &passphrase, &staging)
            })
            .await
            .map_err(|e| Error::Io { path: backup.to_owned(), source: std::io::Error::other(e) })??;
            renew(&staging, &storage_key, &options, Renewal::Restore).await?;
            storage_key.write_key_file(key_file)?;
            std::fs::rename(&staging, db).map_err(|source| Error::Io { path: db.to_owned(), source })
        }
        .await;
        if let Err(e) = made {
            sqlite::remove_staging(&staging);
            if !db.exists() {
                let _ = std::fs::remove_file(key_file);
            }
            sqlite::remove_lock_file(db);
            return Err(e);
        }
        drop(lock);
        Self::open(db, &KeySource::KeyFile(key_file.to_owned()), options).await
    }
}

/// Seals `storage_key` ‖ the database copy at `snapshot` into `staging`, a
/// chunk at a time, then renames it to `dest`.
fn seal_file(
    snapshot: &Path,
    storage_key: &[u8; 32],
    staging: &Path,
    dest: &Path,
    passphrase: &str,
    kdf: KdfParams,
) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let mut salt = [0u8; SALT_LEN];
    veil_crypto::Entropy::fill(&mut OsEntropy, &mut salt)?;
    let key = StorageKey::for_backup(passphrase, &salt, kdf)?;
    let file = crate::private::create_new(staging)?;
    let mut out = std::io::BufWriter::new(file);
    let mut header = Header { salt, kdf: [kdf.m_cost_kib, kdf.t_cost, kdf.p_cost] }.encode();
    put_lp(&mut header, &key.seal(VERIFIER_PURPOSE, VERIFIER_PLAINTEXT)?);
    out.write_all(&header).map_err(io(staging))?;
    let copy = std::fs::File::open(snapshot).map_err(io(snapshot))?;
    let mut plain = std::io::Read::chain(&storage_key[..], copy);
    // One chunk read ahead, to know which is the last.
    let mut current = read_chunk(&mut plain).map_err(io(snapshot))?;
    let mut index = 0;
    loop {
        let next = read_chunk(&mut plain).map_err(io(snapshot))?;
        let last = next.is_empty();
        let mut part = Vec::with_capacity(current.len() + 32);
        put_lp(&mut part, &key.seal(&chunk_purpose(index, last), &current)?);
        out.write_all(&part).map_err(io(staging))?;
        if last {
            break;
        }
        (current, index) = (next, index + 1);
    }
    let file = out.into_inner().map_err(|e| Error::Io { path: staging.to_owned(), source: e.into_error() })?;
    file.sync_all().map_err(io(staging))?;
    std::fs::rename(staging, dest).map_err(io(dest))
}

/// Up to a chunk of `reader` (less only at its end; empty once it is done).
fn read_chunk(reader: &mut impl std::io::Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut filled = 0;
    while filled < CHUNK {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Opens the backup at `backup` into `out` (the database copy), a chunk at
/// a time; returns the storage key it carried.
fn open_file(backup: &Path, passphrase: &str, out: &Path) -> Result<StorageKey> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let file = std::fs::File::open(backup).map_err(io(backup))?;
    let len = file.metadata().map_err(io(backup))?.len();
    let mut r = FileReader::new(std::io::BufReader::new(file), len);
    let Header { salt, kdf: [m_cost_kib, t_cost, p_cost] } = r.header().map_err(format_error(out))?;
    let kdf = KdfParams { m_cost_kib, t_cost, p_cost };
    if !kdf_allowed(&kdf) {
        return Err(damaged("its key-derivation parameters are out of range"));
    }
    let key = StorageKey::for_backup(passphrase, &salt, kdf)?;
    let mut copy = std::io::BufWriter::new(crate::private::create_new(out)?);
    let storage_key = r.body(&key, &mut copy).map_err(format_error(out))?;
    let file = copy.into_inner().map_err(|e| Error::Io { path: out.to_owned(), source: e.into_error() })?;
    file.sync_all().map_err(io(out))?;
    Ok(StorageKey::from_bytes(*storage_key))
}

impl Opener for StorageKey {
    fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        StorageKey::open(self, purpose, sealed).ok()
    }
}

/// The store's error for a backup that does not open (writing to `out`).
fn format_error(out: &Path) -> impl Fn(FormatError) -> Error + '_ {
    move |e| match e {
        FormatError::Damaged(reason) => damaged(reason),
        FormatError::Passphrase => Error::BackupPassphrase,
        FormatError::Write(source) => Error::Io { path: out.to_owned(), source },
    }
}

/// Claims `db` for a store built from elsewhere (a backup, a device copy):
/// neither it nor `key_file` may exist. Takes the database's lock and
/// returns it with the staging path the store is built at (cleared).
pub(crate) fn claim_new_store(db: &Path, key_file: &Path) -> Result<(std::fs::File, PathBuf)> {
    for path in [db, key_file] {
        if path.exists() {
            return Err(Error::AlreadyExists { path: path.to_owned() });
        }
    }
    let lock = sqlite::lock(db)?;
    let staging = sqlite::staging_path(db);
    sqlite::remove_staging(&staging);
    Ok((lock, staging))
}

fn with_extension(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{ext}"));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Seals a `len`-byte copy; returns the backup's bytes and the copy.
    fn sealed(dir: &Path, len: usize) -> (Vec<u8>, Vec<u8>) {
        let copy: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let snapshot = dir.join("snapshot");
        std::fs::write(&snapshot, &copy).unwrap();
        let dest = dir.join("backup");
        let _ = std::fs::remove_file(&dest);
        seal_file(&snapshot, &[9; 32], &dir.join("partial"), &dest, "passphrase!", KdfParams::FAST_INSECURE_FOR_TESTS)
            .unwrap();
        (std::fs::read(&dest).unwrap(), copy)
    }

    fn open(dir: &Path, bytes: &[u8]) -> Result<(StorageKey, Vec<u8>)> {
        let file = dir.join("to-open");
        std::fs::write(&file, bytes).unwrap();
        let out = dir.join("opened");
        // Restores write a fresh file, as `restore` passes a fresh staging path.
        let _ = std::fs::remove_file(&out);
        let key = open_file(&file, "passphrase!", &out)?;
        Ok((key, std::fs::read(&out).unwrap()))
    }

    /// Where each sealed chunk starts and ends in a backup's bytes.
    fn chunks(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut at = format::MAGIC.len() + SALT_LEN + 12;
        let verifier = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + verifier;
        let mut out = Vec::new();
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push(at..at + 4 + len);
            at += 4 + len;
        }
        out
    }

    #[test]
    fn a_copy_of_several_chunks_comes_back_whole_and_reordered_or_cut_chunks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, copy) = sealed(dir.path(), 2 * CHUNK + 12_345);
        let parts = chunks(&bytes);
        assert_eq!(parts.len(), 3, "key and copy span three chunks");
        let (key, back) = open(dir.path(), &bytes).unwrap();
        assert_eq!((key.expose(), back.len()), (&[9; 32], copy.len()));
        assert!(back == copy);

        // Two chunks swapped.
        let mut swapped = bytes[..parts[0].start].to_vec();
        swapped.extend_from_slice(&bytes[parts[1].clone()]);
        swapped.extend_from_slice(&bytes[parts[0].clone()]);
        swapped.extend_from_slice(&bytes[parts[2].clone()]);
        assert!(matches!(open(dir.path(), &swapped), Err(Error::Backup(_))));
        // The last chunk cut off: the one before it is not marked last.
        assert!(matches!(open(dir.path(), &bytes[..parts[2].start]), Err(Error::Backup(_))));
        // A chunk repeated.
        let mut repeated = bytes.clone();
        repeated.extend_from_slice(&bytes[parts[2].clone()]);
        assert!(matches!(open(dir.path(), &repeated), Err(Error::Backup(_))));
        // An empty copy still carries the key.
        let (bytes, _) = sealed(dir.path(), 0);
        assert_eq!(open(dir.path(), &bytes).unwrap().1.len(), 0);
    }

    #[test]
    fn a_file_asking_argon2_for_more_than_the_cap_is_refused_before_deriving_anything() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, _) = sealed(dir.path(), 100);
        let params_at = format::MAGIC.len() + SALT_LEN;
        // Memory, passes, lanes: one past the cap each, and the keystore's
        // own maximum (4 GiB). Deriving under any of them would take
        // seconds to minutes; the refusal is immediate.
        for (field, value) in
            [(0, MAX_KDF.m_cost_kib + 1), (0, 4 * 1024 * 1024), (1, MAX_KDF.t_cost + 1), (2, MAX_KDF.p_cost + 1)]
        {
            let mut crafted = bytes.clone();
            let at = params_at + 4 * field;
            crafted[at..at + 4].copy_from_slice(&value.to_be_bytes());
            match open(dir.path(), &crafted) {
                Err(Error::Backup(reason)) => assert!(reason.contains("out of range"), "{reason}"),
                other => panic!("field {field} = {value}: {:?}", other.map(|_| ())),
            }
        }
        assert!(kdf_allowed(&KdfParams::DEFAULT) && kdf_allowed(&MAX_KDF));
    }
}
