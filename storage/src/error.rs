//! The crate's error type.

use std::path::PathBuf;

use veil_crypto::ErrorKind;

use crate::keystore::KeystoreError;

/// Everything that can go wrong in `veil-storage`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file exists but is not an SQLite database. It was not modified.
    #[error("{path} is not a veil database (not an SQLite file); it was left untouched")]
    NotSqlite {
        /// The file that was to be opened, left as it was.
        path: PathBuf,
    },
    /// The file is an SQLite database cut short (or otherwise damaged).
    #[error("{path} is damaged ({reason}); it was left untouched")]
    Corrupt {
        /// The damaged file, left as it was.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is an SQLite database of some other program.
    #[error("{path} is an SQLite database but not a veil one; it was left untouched")]
    ForeignDatabase {
        /// The other program's database, left as it was.
        path: PathBuf,
    },
    /// The database was written by a newer veil.
    #[error("{path} was written by a newer veil (schema {found}, this build knows up to {supported}); upgrade veil")]
    NewerSchema {
        /// The database file; no migration ran on it.
        path: PathBuf,
        /// The newest schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A file that must be new exists already: a database to create, a backup's destination, or a restore's database or
    /// key file.
    #[error("{path} already exists; refusing to overwrite it")]
    AlreadyExists {
        /// The path found taken, left as it was.
        path: PathBuf,
    },
    /// `open` was asked to open a database that does not exist.
    #[error("no database at {path}")]
    NotFound {
        /// Where the database was expected; nothing was created there.
        path: PathBuf,
    },
    /// Another process (or another `Store` in this one) has the database open.
    #[error("{path} is in use by another veil process")]
    Locked {
        /// The database whose lock file, beside it, another holder has taken.
        path: PathBuf,
    },
    /// The store was closed, as the node does when it shuts down; callers treat this apart from failures.
    #[error("the store is closed")]
    Closed,
    /// The storage key could not be created or unlocked.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// A stored value failed validation when read back.
    #[error("stored {what} is invalid: {reason}")]
    Invalid {
        /// What was read.
        what: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A referenced group, contact or entry does not exist.
    #[error("unknown {0}")]
    Unknown(&'static str),
    /// A value does not fit the storage format (e.g. a counter ≥ 2^63).
    #[error("{0} is out of the storable range")]
    OutOfRange(&'static str),
    /// A cryptographic value read back did not validate.
    #[error(transparent)]
    Crypto(#[from] veil_crypto::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The disk holding the store is full: the write was undone, what was
    /// stored stays, and writes work again once there is space.
    #[error("the disk holding the store is full; nothing of this write was kept")]
    DiskFull,
    /// The database reported an error.
    #[error("database error: {0}")]
    Sql(sqlx::Error),
    /// The store's key access was handed out already (to the node's
    /// identity vault): no one else reads private keys out of it.
    #[error("the store's private keys are read by its identity vault only")]
    KeyAccessTaken,
    /// A backup file does not open with the passphrase given.
    #[error("wrong backup passphrase")]
    BackupPassphrase,
    /// A backup file is not one, or was damaged (nothing was restored).
    #[error("the backup file is damaged or not a veil backup: {0}")]
    Backup(&'static str),
    /// A file operation outside SQLite failed: reading, creating, renaming, locking or syncing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file it failed on (the WAL for a sync, the lock file for a lock).
        path: PathBuf,
        /// The I/O error, or another failure wrapped as one (`std::io::ErrorKind::Other`).
        #[source]
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for Error {
    /// A closed connection pool means the store was closed (the node is
    /// shutting down), which callers treat apart from database failures;
    /// a full disk is told apart too.
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolClosed => Self::Closed,
            // SQLITE_FULL, and its I/O errors that are ENOSPC.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("13") => Self::DiskFull,
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => Self::DiskFull,
            other => Self::Sql(other),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl veil_crypto::HasKind for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::NotSqlite { .. }
            | Error::ForeignDatabase { .. }
            | Error::NewerSchema { .. }
            | Error::Locked { .. }
            | Error::Io { .. } => ErrorKind::LocalResource,
            Error::Corrupt { .. } | Error::Invalid { .. } => ErrorKind::Corrupt,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::NotFound { .. } | Error::Unknown(_) => ErrorKind::NotFound,
            Error::Closed | Error::DiskFull => ErrorKind::Transient,
            Error::Keystore(e) => e.kind(),
            Error::OutOfRange(_) | Error::Backup(_) => ErrorKind::InvalidInput,
            Error::Crypto(e) => e.kind(),
            Error::Migrate(_) | Error::Sql(_) => ErrorKind::Internal,
            Error::BackupPassphrase | Error::KeyAccessTaken => ErrorKind::Refused,
        }
    }
}

impl veil_crypto::HasKind for KeystoreError {
    fn kind(&self) -> ErrorKind {
        use KeystoreError as K;
        match self {
            K::WrongPassphrase | K::WrongKeyFile { .. } | K::KindMismatch { .. } => ErrorKind::Refused,
            K::MissingKeyFile { .. } | K::KeyFileUnsafe { .. } | K::Io { .. } => ErrorKind::LocalResource,
            K::KeyFileExists { .. } => ErrorKind::AlreadyExists,
            K::Malformed(_) => ErrorKind::Corrupt,
            K::InvalidParams(_) => ErrorKind::InvalidInput,
            K::Crypto | K::Rng => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use veil_crypto::HasKind;

    use super::*;

    #[test]
    fn sqlite_failures_are_internal_and_a_full_disk_is_transient() {
        assert_eq!(Error::Sql(sqlx::Error::PoolClosed).kind(), ErrorKind::Internal);
        assert_eq!(Error::DiskFull.kind(), ErrorKind::Transient);
        assert_eq!(Error::Keystore(KeystoreError::WrongPassphrase).kind(), ErrorKind::Refused);
        assert_eq!(Error::BackupPassphrase.kind(), ErrorKind::Refused);
    }
}
