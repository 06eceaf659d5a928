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
//! The database copy is still sealed under the storage key (which the
//! backup carries, sealed): a restore writes it into a key file beside the
//! restored database. Every group then gets a **new device key** and no
//! sending chain: the restored node announces itself in each group as a new
//! device of the same member, with fresh chains, so it never reuses a key
//! or nonce of the backed-up device — which may have gone on writing after
//! the backup (docs/ARCHITECTURE.md).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use sqlx::{Connection, Row, SqliteConnection};
use veil_crypto::{OsEntropy, SigningSecret};
use zeroize::Zeroizing;

use crate::{
    Error, Result, Store, StoreOptions,
    groups::SEAL_GROUP_DEVICE,
    keystore::{KdfParams, KeySource, StorageKey},
    sqlite,
};

const MAGIC: &[u8; 8] = b"VEILBAK1";
const SALT_LEN: usize = 16;
const CHUNK: usize = 1 << 20;
const CHUNK_PURPOSE: &[u8] = b"veil/v1/backup";
const VERIFIER_PURPOSE: &[u8] = b"veil/v1/backup-verifier";
const VERIFIER_PLAINTEXT: &[u8] = b"veil backup key check v1";
/// A sealed chunk: nonce, at most a chunk of ciphertext, tag.
const MAX_SEALED_CHUNK: usize = 12 + CHUNK + 16;

fn damaged(reason: &'static str) -> Error {
    Error::Backup(reason)
}

impl Store {
    /// Writes a backup of this store to `dest` (which must not exist),
    /// sealed under `passphrase` stretched with Argon2id under `kdf`. The
    /// file appears complete or not at all.
    pub async fn backup(&self, dest: &Path, passphrase: &str, kdf: KdfParams) -> Result<()> {
        if dest.exists() {
            return Err(Error::AlreadyExists { path: dest.to_owned() });
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let snapshot = with_extension(dest, "snapshot");
        let _ = std::fs::remove_file(&snapshot);
        {
            let mut conn = self.writer().await?;
            sqlx::query("VACUUM INTO $1").bind(snapshot.to_string_lossy().into_owned()).execute(&mut *conn).await?;
        }
        let copy = std::fs::read(&snapshot).map_err(io(&snapshot));
        let _ = std::fs::remove_file(&snapshot);
        let copy = Zeroizing::new(copy?);
        let mut plain = Zeroizing::new(Vec::with_capacity(32 + copy.len()));
        plain.extend_from_slice(self.key.expose());
        plain.extend_from_slice(&copy);

        let mut salt = [0u8; SALT_LEN];
        veil_crypto::Entropy::fill(&mut OsEntropy, &mut salt)?;
        let key = StorageKey::for_backup(passphrase, &salt, kdf)?;
        let mut out = Vec::with_capacity(plain.len() + plain.len() / CHUNK * 40 + 128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&salt);
        for v in [kdf.m_cost_kib, kdf.t_cost, kdf.p_cost] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        put_lp(&mut out, &key.seal(VERIFIER_PURPOSE, VERIFIER_PLAINTEXT)?);
        let chunks: Vec<&[u8]> = plain.chunks(CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            put_lp(&mut out, &key.seal(&chunk_purpose(i, i + 1 == chunks.len()), chunk)?);
        }

        let staging = with_extension(dest, "partial");
        let written = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&staging)?;
            file.write_all(&out)?;
            file.sync_all()?;
            std::fs::rename(&staging, dest)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&staging);
            return Err(Error::Io { path: dest.to_owned(), source: e });
        }
        Ok(())
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
        for path in [db, key_file] {
            if path.exists() {
                return Err(Error::AlreadyExists { path: path.to_owned() });
            }
        }
        let bytes = std::fs::read(backup).map_err(|source| Error::Io { path: backup.to_owned(), source })?;
        let (storage_key, copy) = open_backup(&bytes, passphrase)?;
        let lock = sqlite::lock(db)?;
        let staging = sqlite::staging_path(db);
        sqlite::remove_staging(&staging);
        let made = async {
            std::fs::write(&staging, &copy[..]).map_err(|source| Error::Io { path: staging.clone(), source })?;
            renew(&staging, &storage_key, &options).await?;
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

/// Opens a backup file's bytes: the storage key and the database copy.
fn open_backup(bytes: &[u8], passphrase: &str) -> Result<(StorageKey, Zeroizing<Vec<u8>>)> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(damaged("not a veil backup"));
    }
    let salt: [u8; SALT_LEN] = r.take(SALT_LEN)?.try_into().map_err(|_| damaged("truncated"))?;
    let mut params = [0u32; 3];
    for p in &mut params {
        *p = u32::from_be_bytes(r.take(4)?.try_into().map_err(|_| damaged("truncated"))?);
    }
    let kdf = KdfParams { m_cost_kib: params[0], t_cost: params[1], p_cost: params[2] };
    if kdf.validate().is_err() {
        return Err(damaged("its key-derivation parameters are out of range"));
    }
    let key = StorageKey::for_backup(passphrase, &salt, kdf)?;
    let verifier = r.lp(64)?;
    match key.open(VERIFIER_PURPOSE, verifier) {
        Ok(v) if v.as_slice() == VERIFIER_PLAINTEXT => {}
        _ => return Err(Error::BackupPassphrase),
    }
    let mut plain = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut index = 0;
    loop {
        let sealed = r.lp(MAX_SEALED_CHUNK)?;
        let last = r.0.is_empty();
        let chunk = key.open(&chunk_purpose(index, last), sealed).map_err(|_| damaged("a part does not open"))?;
        plain.extend_from_slice(&chunk);
        index += 1;
        if last {
            break;
        }
    }
    if plain.len() < 32 {
        return Err(damaged("truncated"));
    }
    let storage_key = StorageKey::from_bytes(plain[..32].try_into().map_err(|_| damaged("truncated"))?);
    Ok((storage_key, Zeroizing::new(plain[32..].to_vec())))
}

/// Makes the restored copy at `staging` a store of its own: unlocked by a
/// key file holding `key`, a new device key in every group, no sending
/// chain (each group announces the new device on start).
async fn renew(staging: &Path, key: &StorageKey, options: &StoreOptions) -> Result<()> {
    let mut conn = SqliteConnection::connect_with(&sqlite::writer_options(staging, false, &options.tuning)).await?;
    let record = key.key_file_record()?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "UPDATE keystore SET kind = $1, salt = NULL, m_cost = NULL, t_cost = NULL, p_cost = NULL, verifier = $2",
    )
    .bind(record.kind.as_str())
    .bind(&record.verifier)
    .execute(&mut *tx)
    .await?;
    let groups: Vec<Vec<u8>> = sqlx::query("SELECT group_id FROM groups")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("group_id"))
        .collect::<std::result::Result<_, _>>()?;
    for id in groups {
        let device = SigningSecret::generate(&mut OsEntropy)?;
        let sealed = key.seal(&[SEAL_GROUP_DEVICE, &id].concat(), &device.to_seed()[..])?;
        sqlx::query("UPDATE groups SET device_public = $1, sealed_device = $2 WHERE group_id = $3")
            .bind(device.verify_key().to_bytes().to_vec())
            .bind(sealed)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM sender_chains").execute(&mut *tx).await?;
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

fn chunk_purpose(index: usize, last: bool) -> Vec<u8> {
    let mut p = CHUNK_PURPOSE.to_vec();
    p.extend_from_slice(&(index as u64).to_be_bytes());
    p.push(u8::from(last));
    p
}

fn put_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn with_extension(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{ext}"));
    path.with_file_name(name)
}

/// Reads a backup file front to back, refusing anything cut short or oversize.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(damaged("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn lp(&mut self, max: usize) -> Result<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| damaged("truncated"))?);
        let len = usize::try_from(len).map_err(|_| damaged("a part is too long"))?;
        if len > max {
            return Err(damaged("a part is too long"));
        }
        self.take(len)
    }
}
