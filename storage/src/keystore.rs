//! The storage key: where it comes from, how it is checked, and how it seals data.
//!
//! Every secret column of the database (account keys, group secrets, entry
//! payloads…) is sealed with one 32-byte [`StorageKey`]. That key comes from a
//! [`KeySource`]:
//!
//! * a **passphrase**, stretched with Argon2id under a random 16-byte salt and
//!   the [`KdfParams`] recorded at creation time; or
//! * a **key file** holding exactly 32 random bytes, created with mode `0600`
//!   and refused if other users can access it.
//!
//! A [`KeystoreRecord`] — persisted next to the data — says which source is
//! used and carries the salt, the parameters and a *verifier*: a fixed
//! plaintext sealed under the key. The record holds no secret; unlocking opens
//! the verifier, so a wrong passphrase or the wrong key file is detected
//! before anything else is decrypted.
//!
//! [`StorageKey::seal`] uses AES-256-GCM with a fresh random nonce and takes a
//! `purpose` that is authenticated as associated data, which binds each sealed
//! blob to its row and column: a blob moved elsewhere no longer opens.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aes_gcm::{
    Aes256Gcm, Key,
    aead::{Aead, KeyInit, Nonce, Payload},
};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

/// Length of the storage key, and of a key file, in bytes.
const KEY_LEN: usize = 32;
/// Length of the Argon2id salt, in bytes.
const SALT_LEN: usize = 16;
/// AES-GCM nonce length.
const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// Associated data of the keystore verifier.
const VERIFIER_PURPOSE: &[u8] = b"veil/v1/keystore-verifier";
/// The fixed plaintext sealed into the keystore verifier.
const VERIFIER_PLAINTEXT: &[u8] = b"veil storage key check v1";
/// Length of a well-formed verifier: nonce ‖ ciphertext ‖ tag.
const VERIFIER_LEN: usize = NONCE_LEN + VERIFIER_PLAINTEXT.len() + TAG_LEN;

/// Largest accepted Argon2 memory cost: 4 GiB, in KiB.
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
/// Largest accepted Argon2 time cost (passes).
const MAX_T_COST: u32 = 100;
/// Largest accepted Argon2 parallelism (lanes).
const MAX_P_COST: u32 = 64;

/// Everything that can go wrong while creating, unlocking or using the storage key.
///
/// Sealing and opening failures are deliberately opaque ([`KeystoreError::Crypto`]):
/// they never say which check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The passphrase does not unlock this database.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The database is protected by a key file that does not exist.
    #[error("the storage key file {path} is missing; without it the database cannot be opened")]
    MissingKeyFile {
        /// Where the key file was expected.
        path: PathBuf,
    },
    /// The key file exists but does not unlock this database.
    #[error(
        "the storage key file {path} does not unlock this database (it belongs to another database or was replaced)"
    )]
    WrongKeyFile {
        /// The key file that was read; its key did not open this database's verifier.
        path: PathBuf,
    },
    /// The key file can be accessed by other users, so it is refused.
    #[error(
        "the storage key file {path} is accessible by other users (mode {mode:04o}); \
         restrict it with `chmod 600` and try again"
    )]
    KeyFileUnsafe {
        /// The key file, refused before its key was read.
        path: PathBuf,
        /// Its permission bits; any access for the group or others is refused.
        mode: u32,
    },
    /// The database is protected by one kind of key and the other kind was given.
    #[error("{}", kind_mismatch_message(*.stored))]
    KindMismatch {
        /// The kind recorded in the database.
        stored: KeyKind,
        /// The kind the caller supplied, which cannot unlock this database.
        given: KeyKind,
    },
    /// Reading or writing the key file failed.
    #[error("I/O error on the storage key file {path}: {source}")]
    Io {
        /// The key file, or where it was to be created.
        path: PathBuf,
        /// The operating system's error, from the file or from syncing its directory.
        source: io::Error,
    },
    /// Creating a key file was refused because the file already exists.
    #[error("the storage key file {path} already exists; refusing to overwrite it")]
    KeyFileExists {
        /// The file found at the key file's path, left as it was.
        path: PathBuf,
    },
    /// The keystore record or the key file is corrupt.
    #[error("corrupt keystore: {0}")]
    Malformed(&'static str),
    /// Sealing or opening data failed: corrupt or tampered data, the wrong key,
    /// or a blob sealed for another purpose.
    #[error("stored data failed to decrypt: it is corrupt, was tampered with or belongs elsewhere")]
    Crypto,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// A parameter given to create a keystore is out of range.
    #[error("invalid keystore parameters: {0}")]
    InvalidParams(&'static str),
}

fn kind_mismatch_message(stored: KeyKind) -> &'static str {
    match stored {
        KeyKind::Passphrase => "this database is protected by a passphrase, not a key file; give the passphrase",
        KeyKind::KeyFile => "this database is protected by a key file, not a passphrase; give the key file",
    }
}

/// Where the storage key comes from.
pub enum KeySource {
    /// A passphrase, stretched with Argon2id.
    Passphrase(Zeroizing<String>),
    /// A file holding exactly 32 random bytes, readable only by its owner.
    KeyFile(PathBuf),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
            Self::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
        }
    }
}

/// Which kind of [`KeySource`] protects a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An Argon2id-stretched passphrase.
    Passphrase,
    /// A 32-byte key file.
    KeyFile,
}

impl KeyKind {
    /// The stored TEXT form: `"passphrase"` or `"key-file"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Passphrase => "passphrase",
            Self::KeyFile => "key-file",
        }
    }

    /// Parses the stored TEXT form written by [`KeyKind::as_str`]; `None` for
    /// anything else. (`str::parse` also works, failing with
    /// [`KeystoreError::Malformed`].)
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "passphrase" => Some(Self::Passphrase),
            "key-file" => Some(Self::KeyFile),
            _ => None,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyKind {
    type Err = KeystoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or(KeystoreError::Malformed("unknown key kind"))
    }
}

/// Argon2id cost parameters for passphrase stretching (always version 0x13,
/// 32-byte output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Time cost: the number of passes over memory.
    pub t_cost: u32,
    /// Parallelism: the number of lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// Production parameters: Argon2id with 64 MiB of memory, 3 passes and
    /// 1 lane (within the OWASP recommendations).
    pub const DEFAULT: Self = Self { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 };

    /// The cheapest parameters Argon2 accepts (8 KiB, 1 pass, 1 lane).
    ///
    /// **For tests only:** they offer no protection against guessing.
    pub const FAST_INSECURE_FOR_TESTS: Self = Self { m_cost_kib: 8, t_cost: 1, p_cost: 1 };

    /// Checks the parameters against Argon2's minimums and refuses absurd
    /// values (more than 4 GiB of memory, 100 passes or 64 lanes).
    pub fn validate(&self) -> Result<(), KeystoreError> {
        if self.p_cost == 0 {
            return Err(KeystoreError::InvalidParams("Argon2 parallelism must be at least 1"));
        }
        if self.p_cost > MAX_P_COST {
            return Err(KeystoreError::InvalidParams("Argon2 parallelism must be at most 64"));
        }
        if self.t_cost == 0 {
            return Err(KeystoreError::InvalidParams("Argon2 time cost must be at least 1"));
        }
        if self.t_cost > MAX_T_COST {
            return Err(KeystoreError::InvalidParams("Argon2 time cost must be at most 100"));
        }
        if self.m_cost_kib < Params::MIN_M_COST.max(8 * self.p_cost) {
            return Err(KeystoreError::InvalidParams("Argon2 memory cost must be at least 8 KiB per lane"));
        }
        if self.m_cost_kib > MAX_M_COST_KIB {
            return Err(KeystoreError::InvalidParams("Argon2 memory cost must be at most 4 GiB"));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What is persisted to re-derive and check the storage key. It holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoreRecord {
    /// Which kind of source protects the database.
    pub kind: KeyKind,
    /// The Argon2id salt (passphrase only).
    pub salt: Option<[u8; 16]>,
    /// The Argon2id parameters (passphrase only).
    pub params: Option<KdfParams>,
    /// A fixed plaintext sealed under the storage key: nonce ‖ ciphertext ‖ tag.
    pub verifier: Vec<u8>,
}

/// The 32-byte storage key. It is wiped on drop and never printed.
#[derive(zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct StorageKey([u8; KEY_LEN]);

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageKey(<redacted>)")
    }
}

impl KeySource {
    /// The kind a new database records, and that unlocking checks against the record.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Passphrase(_) => KeyKind::Passphrase,
            Self::KeyFile(_) => KeyKind::KeyFile,
        }
    }

    /// Makes the key of a **new** database and the record to persist with it.
    ///
    /// * Passphrase: draws a random 16-byte salt and stretches the passphrase
    ///   with Argon2id under `params`. An empty passphrase is refused.
    /// * Key file: draws 32 random bytes and writes them to a new file with
    ///   mode `0600` (never overwriting: [`KeystoreError::KeyFileExists`]),
    ///   then syncs the file and its directory. `params` is ignored.
    pub fn create(&self, params: KdfParams) -> Result<(StorageKey, KeystoreRecord), KeystoreError> {
        match self {
            Self::Passphrase(passphrase) => {
                if passphrase.is_empty() {
                    return Err(KeystoreError::InvalidParams("the passphrase must not be empty"));
                }
                params.validate()?;
                let salt = *random_array::<SALT_LEN>()?;
                let key = derive(passphrase.as_bytes(), &salt, params)?;
                let verifier = key.seal(VERIFIER_PURPOSE, VERIFIER_PLAINTEXT)?;
                Ok((
                    key,
                    KeystoreRecord { kind: KeyKind::Passphrase, salt: Some(salt), params: Some(params), verifier },
                ))
            }
            Self::KeyFile(path) => {
                // Everything that can fail without touching the disk comes first,
                // so a failure never leaves an orphaned key file behind.
                let key = StorageKey(*random_array::<KEY_LEN>()?);
                let verifier = key.seal(VERIFIER_PURPOSE, VERIFIER_PLAINTEXT)?;
                write_key_file(path, &key.0)?;
                Ok((key, KeystoreRecord { kind: KeyKind::KeyFile, salt: None, params: None, verifier }))
            }
        }
    }

    /// Re-derives the key of an **existing** database and checks it against
    /// `record.verifier`.
    ///
    /// Fails with [`KeystoreError::KindMismatch`] if the record is for the other
    /// kind of source, [`KeystoreError::WrongPassphrase`] or
    /// [`KeystoreError::WrongKeyFile`] if the verifier does not open,
    /// [`KeystoreError::MissingKeyFile`], [`KeystoreError::KeyFileUnsafe`] (the
    /// file is accessible by group or others), [`KeystoreError::Malformed`]
    /// (record fields missing or of the wrong size, key file not 32 bytes) or
    /// [`KeystoreError::Io`].
    pub fn unlock(&self, record: &KeystoreRecord) -> Result<StorageKey, KeystoreError> {
        if record.kind != self.kind() {
            return Err(KeystoreError::KindMismatch { stored: record.kind, given: self.kind() });
        }
        if record.verifier.len() != VERIFIER_LEN {
            return Err(KeystoreError::Malformed("the key verifier has the wrong length"));
        }
        let (key, wrong_key) = match self {
            Self::Passphrase(passphrase) => {
                let (Some(salt), Some(params)) = (record.salt, record.params) else {
                    return Err(KeystoreError::Malformed("a passphrase keystore needs a salt and KDF parameters"));
                };
                if params.validate().is_err() {
                    return Err(KeystoreError::Malformed("the stored KDF parameters are out of range"));
                }
                (derive(passphrase.as_bytes(), &salt, params)?, KeystoreError::WrongPassphrase)
            }
            Self::KeyFile(path) => {
                if record.salt.is_some() || record.params.is_some() {
                    return Err(KeystoreError::Malformed(
                        "a key-file keystore must not carry a salt or KDF parameters",
                    ));
                }
                (StorageKey(*read_key_file(path)?), KeystoreError::WrongKeyFile { path: path.clone() })
            }
        };
        let plaintext = match key.open(VERIFIER_PURPOSE, &record.verifier) {
            Ok(plaintext) => plaintext,
            Err(_) => return Err(wrong_key),
        };
        if plaintext.as_slice() != VERIFIER_PLAINTEXT {
            return Err(KeystoreError::Malformed("the key verifier holds unexpected contents"));
        }
        Ok(key)
    }
}

impl StorageKey {
    /// Stretches a backup passphrase (Argon2id) into the key a backup file
    /// is sealed under (see `backup.rs`), with a verifier like a keystore's.
    pub(crate) fn for_backup(
        passphrase: &str,
        salt: &[u8; SALT_LEN],
        params: KdfParams,
    ) -> Result<Self, KeystoreError> {
        if passphrase.is_empty() {
            return Err(KeystoreError::InvalidParams("the passphrase must not be empty"));
        }
        params.validate()?;
        derive(passphrase.as_bytes(), salt, params)
    }

    /// The key's bytes: what a key file holds (for backups, sealed).
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A key from the bytes a backup carried.
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The keystore record of a store unlocked by a key file holding this key.
    pub(crate) fn key_file_record(&self) -> Result<KeystoreRecord, KeystoreError> {
        let verifier = self.seal(VERIFIER_PURPOSE, VERIFIER_PLAINTEXT)?;
        Ok(KeystoreRecord { kind: KeyKind::KeyFile, salt: None, params: None, verifier })
    }

    /// Whether `verifier` (a keystore record's) was sealed under this key:
    /// a copy of a store received with its key is checked with it.
    pub(crate) fn verifies(&self, verifier: &[u8]) -> bool {
        self.open(VERIFIER_PURPOSE, verifier).is_ok_and(|plain| plain.as_slice() == VERIFIER_PLAINTEXT)
    }

    /// Writes this key to a new key file (mode 0600, never overwriting).
    pub(crate) fn write_key_file(&self, path: &Path) -> Result<(), KeystoreError> {
        write_key_file(path, &self.0)
    }

    /// Seals `plaintext` with AES-256-GCM under a fresh random 12-byte nonce.
    ///
    /// `purpose` (for example `b"account/signing"` or `b"entry-payload/<hash>"`)
    /// is authenticated as associated data: it binds the sealed blob to its
    /// place, so blobs cannot be swapped between rows or columns. Returns
    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        // Random nonces (no counter to keep across crashes): 96 bits leave
        // room for billions of seals under one key.
        let mut nonce = [0u8; NONCE_LEN];
        veil_crypto::Entropy::fill(&mut veil_crypto::ThreadEntropy, &mut nonce).map_err(|_| KeystoreError::Rng)?;
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0));
        let ciphertext = cipher
            .encrypt(&Nonce::<Aes256Gcm>::from(nonce), Payload { msg: plaintext, aad: purpose })
            .map_err(|_| KeystoreError::Crypto)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce[..]);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a blob made by [`StorageKey::seal`] with the same `purpose`.
    ///
    /// Any failure (truncated or tampered data, another key, another purpose)
    /// is [`KeystoreError::Crypto`].
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(KeystoreError::Crypto);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeystoreError::Crypto)?;
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0));
        cipher
            .decrypt(&Nonce::<Aes256Gcm>::from(nonce), Payload { msg: ciphertext, aad: purpose })
            .map(Zeroizing::new)
            .map_err(|_| KeystoreError::Crypto)
    }

    /// Opens a sealed 32-byte secret: [`StorageKey::open`], then checks the
    /// length ([`KeystoreError::Malformed`] if it is not 32 bytes).
    pub fn open32(&self, purpose: &[u8], sealed: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        let plaintext = self.open(purpose, sealed)?;
        if plaintext.len() != 32 {
            return Err(KeystoreError::Malformed("a sealed 32-byte secret has the wrong length"));
        }
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&plaintext);
        Ok(out)
    }
}

/// Argon2id(passphrase, salt) → the 32-byte storage key.
fn derive(passphrase: &[u8], salt: &[u8; SALT_LEN], params: KdfParams) -> Result<StorageKey, KeystoreError> {
    let params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(KEY_LEN))
        .map_err(|_| KeystoreError::InvalidParams("Argon2 rejected the KDF parameters"))?;
    let mut key = StorageKey([0u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut key.0)
        .map_err(|_| KeystoreError::InvalidParams("Argon2 key derivation failed (out of memory?)"))?;
    Ok(key)
}

/// `N` bytes from the operating system's random number generator.
fn random_array<const N: usize>() -> Result<Zeroizing<[u8; N]>, KeystoreError> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut out[..]).map_err(|_| KeystoreError::Rng)?;
    Ok(out)
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io { path: path.to_path_buf(), source }
}

/// Creates `path` (never overwriting) with mode `0600`, writes `key` and syncs
/// the file and its directory. A partly written file is removed.
fn write_key_file(path: &Path, key: &[u8; KEY_LEN]) -> Result<(), KeystoreError> {
    let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeystoreError::KeyFileExists { path: path.to_path_buf() });
        }
        Err(e) => return Err(io_error(path)(e)),
    };
    let written = (|| {
        // The umask may only have removed bits; make the mode exactly 0600.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(key)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        drop(file);
        // Best effort: the half-written file is ours (create_new), and useless.
        let _ = fs::remove_file(path);
        return Err(io_error(path)(e));
    }
    drop(file);
    sync_parent_dir(path).map_err(io_error(path))
}

/// Syncs the directory holding `path`, so that the new file's entry is durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Reads a key file: it must exist, be a regular file inaccessible to group
/// and others, and hold exactly 32 bytes.
fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, KeystoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeystoreError::MissingKeyFile { path: path.to_path_buf() });
        }
        Err(e) => return Err(io_error(path)(e)),
    };
    // Checked on the open file, so it is the file actually read.
    let metadata = file.metadata().map_err(io_error(path))?;
    if !metadata.is_file() {
        return Err(KeystoreError::Malformed("the storage key file is not a regular file"));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeystoreError::KeyFileUnsafe { path: path.to_path_buf(), mode });
    }
    // One spare byte detects files that are too long. A fixed buffer (rather
    // than a growing Vec) leaves no stray copies of the key on the heap.
    let mut buf = Zeroizing::new([0u8; KEY_LEN + 1]);
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path)(e)),
        }
    }
    if len != KEY_LEN {
        return Err(KeystoreError::Malformed("the storage key file must hold exactly 32 bytes"));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&buf[..KEY_LEN]);
    Ok(key)
}

#[cfg(test)]
mod tests;
