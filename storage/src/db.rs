//! Opening, creating and checking a store.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use sqlx::{
    Connection, Row, SqliteConnection, SqlitePool,
    migrate::Migrator,
    sqlite::{SqlitePoolOptions, SqliteRow},
};
use tokio::sync::Mutex;
use veil_crypto::time::{Clock, SystemClock, UnixTime};

use crate::{
    Error, Result,
    keystore::{KdfParams, KeyKind, KeySource, KeystoreRecord, StorageKey},
    sqlite::{self, Tuning},
};

/// The schema migrations, embedded in the binary and applied on open.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Page caches, checkpoint interval and commit durability of the connections.
    pub tuning: Tuning,
    /// Argon2id parameters for a new passphrase-protected store.
    pub kdf: KdfParams,
    /// The clock that timestamps rows.
    pub clock: Arc<dyn Clock>,
    /// Reader connections beside the single writer.
    pub readers: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { tuning: Tuning::default(), kdf: KdfParams::DEFAULT, clock: Arc::new(SystemClock), readers: 4 }
    }
}

/// A node's database: one SQLite file, one writer, a few readers.
///
/// Every method is a typed repository operation; no SQL leaves this crate.
/// Secrets are sealed with the storage key before they are written.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Option<Writer>>,
    pub(crate) readers: SqlitePool,
    pub(crate) key: StorageKey,
    clock: Arc<dyn Clock>,
    /// Held until the store is closed: one `Store` per database.
    lock: std::sync::Mutex<Option<std::fs::File>>,
    /// Deferred commits and the syncs that make them durable.
    pub(crate) wal_sync: crate::sync::WalSync,
    /// Row ids of groups, learned by appends.
    pub(crate) group_refs: crate::entries::GroupRefs,
    /// Who may read private keys out of it.
    pub(crate) keys: crate::access::KeyGate,
}

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

fn max_known_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Maps errors SQLite gives on a damaged or foreign file to clear ones.
fn classify(path: &Path, e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            Some("26") => return Error::NotSqlite { path: path.to_owned() },
            Some("11") => return Error::Corrupt { path: path.to_owned(), reason: db.message().to_owned() },
            _ => {}
        }
    }
    Error::Sql(e)
}

/// Applies pending migrations to a database unlocked with `key`, and seals
/// what older schemas kept in clear (a store opened, or a copy renewed).
pub(crate) async fn migrate(conn: &mut SqliteConnection, key: &StorageKey) -> Result<()> {
    MIGRATOR.run(&mut *conn).await?;
    crate::settings::seal_legacy(conn, key).await?;
    crate::account::fill_device_agreement(conn, key).await
}

impl Store {
    /// Creates a new store at `path` (which must not exist), protected by `key`.
    ///
    /// The database is built under a temporary name and renamed into place
    /// once complete, so a crash during creation never leaves a half-made
    /// database at `path`.
    pub async fn create(path: &Path, key: &KeySource, options: StoreOptions) -> Result<Self> {
        if path.exists() {
            return Err(Error::AlreadyExists { path: path.to_owned() });
        }
        let lock = sqlite::lock(path)?;
        let staging = sqlite::staging_path(path);
        sqlite::remove_staging(&staging);
        let new_key_file = match key {
            KeySource::KeyFile(file) if !file.exists() => Some(file.clone()),
            _ => None,
        };
        let built = Self::build(&staging, key, &options).await;
        let storage_key = match built {
            Ok(k) => k,
            Err(e) => {
                sqlite::remove_staging(&staging);
                // A key file made for a store that was never made unlocks nothing.
                if let Some(file) = new_key_file {
                    let _ = std::fs::remove_file(file);
                }
                sqlite::remove_lock_file(path);
                return Err(e);
            }
        };
        let io = |source| Error::Io { path: path.to_owned(), source };
        std::fs::rename(&staging, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        drop(lock);
        Self::open_checked(path, options, |_| Ok(storage_key)).await
    }

    async fn build(staging: &Path, key: &KeySource, options: &StoreOptions) -> Result<StorageKey> {
        // Made 0600 before SQLite opens it: its WAL and shared-memory files
        // take its mode (see `private`).
        crate::private::create_new(staging)?;
        let mut conn = SqliteConnection::connect_with(&sqlite::writer_options(staging, true, &options.tuning)).await?;
        MIGRATOR.run(&mut conn).await?;
        let (storage_key, record) = key.create(options.kdf)?;
        sqlx::query(
            "INSERT INTO keystore (id, kind, salt, m_cost, t_cost, p_cost, verifier) VALUES (1, $1, $2, $3, $4, $5, $6)",
        )
        .bind(record.kind.as_str())
        .bind(record.salt.map(|s| s.to_vec()))
        .bind(record.params.map(|p| i64::from(p.m_cost_kib)))
        .bind(record.params.map(|p| i64::from(p.t_cost)))
        .bind(record.params.map(|p| i64::from(p.p_cost)))
        .bind(&record.verifier)
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(storage_key)
    }

    /// Opens an existing store. A file that is not a veil database, is
    /// damaged, or was written by a newer schema is refused and left untouched.
    pub async fn open(path: &Path, key: &KeySource, options: StoreOptions) -> Result<Self> {
        Self::open_checked(path, options, |record| Ok(key.unlock(record)?)).await
    }

    /// Opens the store at `path`, creating it if there is none.
    pub async fn open_or_create(path: &Path, key: &KeySource, options: StoreOptions) -> Result<Self> {
        if path.exists() { Self::open(path, key, options).await } else { Self::create(path, key, options).await }
    }

    async fn open_checked(
        path: &Path,
        options: StoreOptions,
        unlock: impl FnOnce(&KeystoreRecord) -> Result<StorageKey>,
    ) -> Result<Self> {
        if !path.exists() {
            return Err(Error::NotFound { path: path.to_owned() });
        }
        sqlite::check_file(path)?;
        crate::private::tighten_database(path)?;
        Self::inspect(path).await?;
        // Only a file known to be a veil database gets a lock file beside it.
        let lock = sqlite::lock(path)?;
        let mut writer = SqliteConnection::connect_with(&sqlite::writer_options(path, false, &options.tuning))
            .await
            .map_err(|e| classify(path, e))?;
        let key = match Self::unlock_and_migrate(&mut writer, unlock).await {
            Ok(key) => key,
            Err(e) => {
                let _ = writer.close().await;
                return Err(e);
            }
        };
        let readers = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .connect_with(sqlite::reader_options(path, &options.tuning))
            .await?;
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(Some(Writer {
                conn: writer,
                open: false,
                lowered: false,
                durability: options.tuning.durability,
            })),
            wal_sync: crate::sync::WalSync::new(path, options.tuning.durability),
            group_refs: crate::entries::GroupRefs::default(),
            keys: crate::access::KeyGate::new(),
            readers,
            key,
            clock: options.clock,
            lock: std::sync::Mutex::new(Some(lock)),
        })
    }

    /// Checks the key first, so a mistyped passphrase changes nothing (not
    /// even a pending schema upgrade), then applies pending migrations.
    async fn unlock_and_migrate(
        writer: &mut SqliteConnection,
        unlock: impl FnOnce(&KeystoreRecord) -> Result<StorageKey>,
    ) -> Result<StorageKey> {
        let row = sqlx::query("SELECT kind, salt, m_cost, t_cost, p_cost, verifier FROM keystore WHERE id = 1")
            .fetch_optional(&mut *writer)
            .await?
            .ok_or(Error::Invalid { what: "keystore", reason: "missing" })?;
        let key = unlock(&keystore_record(&row)?)?;
        migrate(writer, &key).await?;
        Ok(key)
    }

    /// Reads the schema version without writing anything.
    pub(crate) async fn inspect(path: &Path) -> Result<()> {
        let mut conn =
            SqliteConnection::connect_with(&sqlite::inspect_options(path)).await.map_err(|e| classify(path, e))?;
        let verdict = Self::inspect_with(path, &mut conn).await;
        conn.close().await?;
        verdict
    }

    async fn inspect_with(path: &Path, conn: &mut SqliteConnection) -> Result<()> {
        let has_keystore: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keystore'")
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| classify(path, e))?;
        if has_keystore.is_none() {
            return Err(Error::ForeignDatabase { path: path.to_owned() });
        }
        let has_migrations: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| classify(path, e))?;
        if has_migrations.is_none() {
            return Err(Error::ForeignDatabase { path: path.to_owned() });
        }
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| classify(path, e))?;
        for (version, checksum) in &applied {
            if let Some(known) = MIGRATOR.iter().find(|m| m.version == *version)
                && known.checksum.as_ref() != checksum.as_slice()
            {
                return Err(Error::ForeignDatabase { path: path.to_owned() });
            }
        }
        let found = applied.iter().map(|a| a.0).max();
        let supported = max_known_version();
        match found {
            Some(found) if found > supported => Err(Error::NewerSchema { path: path.to_owned(), found, supported }),
            _ => Ok(()),
        }
    }

    /// The path the store was opened at; its WAL, shared-memory and lock files sit beside it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest schema version this build knows.
    pub fn schema_version() -> i64 {
        max_known_version()
    }

    /// Copies every WAL page into the main file and truncates the WAL (for
    /// backups, and to start measurements from the same state).
    pub async fn checkpoint(&self) -> Result<()> {
        let mut conn = self.writer().await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await?;
        Ok(())
    }

    /// Runs `PRAGMA integrity_check` over the whole file.
    pub async fn integrity_check(&self) -> Result<()> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&self.readers).await?;
        sqlite::integrity_verdict(rows).map_err(|reason| Error::Corrupt { path: self.path.clone(), reason })
    }

    /// Closes every connection (checkpointing the WAL into the main file)
    /// and releases the database for another process. Later calls on this
    /// store fail with [`Error::Closed`]; closing twice is harmless.
    ///
    /// Sending positions reserved ahead of durability are released first:
    /// from here on nothing more is written, so nothing was sent past the
    /// stored chains (see [`SenderChainRecord`](crate::SenderChainRecord)).
    pub async fn close(&self) -> Result<()> {
        self.readers.close().await;
        let writer = self.writer.lock().await.take();
        let mut closed = Ok(());
        if let Some(mut writer) = writer {
            if writer.open {
                let _ = sqlx::query("ROLLBACK").execute(&mut writer.conn).await;
            }
            // Not released (an error): the chains skip the reserved
            // positions when next loaded, which is safe.
            let released = sqlx::query(
                "PRAGMA synchronous = FULL; UPDATE sender_chains SET reserved_until = 0 WHERE reserved_until > 0",
            )
            .execute(&mut writer.conn)
            .await;
            closed = released.map(|_| ()).and(writer.conn.close().await).map_err(Error::from);
        }
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
        closed
    }

    /// The writer connection, for one write transaction at a time. A
    /// transaction a [`Script`](crate::script) left open (its caller's future
    /// was dropped between two round trips) is rolled back first.
    pub(crate) async fn writer(&self) -> Result<WriterGuard<'_>> {
        let guard = self.writer.lock().await;
        let mut writer = match guard.as_ref() {
            None => return Err(Error::Closed),
            Some(_) => WriterGuard(guard),
        };
        if writer.writer().open {
            writer.rollback().await;
        }
        Ok(writer)
    }

    /// The right to read this store's private keys (the identity, this
    /// device's key in each group): handed out once, to the node's identity
    /// vault; [`Error::KeyAccessTaken`] after that.
    pub fn key_access(&self) -> Result<crate::KeyAccess> {
        self.keys.take()
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Opens an optional sealed UTF-8 column.
    pub(crate) fn open_text(&self, purpose: &[u8], sealed: Option<Vec<u8>>) -> Result<Option<String>> {
        sealed
            .map(|s| {
                let bytes = self.key.open(purpose, &s)?;
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| Error::Invalid { what: "sealed text", reason: "not UTF-8" })
            })
            .transpose()
    }
}

/// The one connection that writes; callers take it through a mutex, so write transactions never interleave.
struct Writer {
    conn: SqliteConnection,
    /// A transaction begun by a script is open on it.
    open: bool,
    /// Its commit level is lowered for the open transaction (deferred).
    lowered: bool,
    /// How its commits reach the disk (see `script` for the exceptions).
    durability: crate::Durability,
}

/// Exclusive use of the writer connection.
pub(crate) struct WriterGuard<'a>(tokio::sync::MutexGuard<'a, Option<Writer>>);

impl WriterGuard<'_> {
    fn writer(&mut self) -> &mut Writer {
        match self.0.as_mut() {
            Some(writer) => writer,
            None => unreachable!("a WriterGuard is only made over an open connection"),
        }
    }

    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.writer().conn
    }

    pub(crate) fn set_open(&mut self, open: bool) {
        self.writer().open = open;
    }

    pub(crate) fn durability(&mut self) -> crate::Durability {
        self.writer().durability
    }

    /// Whether the open transaction commits deferred (level lowered).
    pub(crate) fn lowered(&mut self) -> bool {
        self.writer().lowered
    }

    pub(crate) fn set_lowered(&mut self, lowered: bool) {
        self.writer().lowered = lowered;
    }

    /// Rolls back whatever transaction is open, and puts the commit level
    /// back (an unsynced transaction lowers it). An error here means there
    /// was nothing to undo (SQLite rolled it back itself, or it never
    /// began); a broken connection shows in the next statement.
    pub(crate) async fn rollback(&mut self) {
        let _ = sqlx::query("ROLLBACK").execute(self.conn()).await;
        if self.durability() == crate::Durability::PowerLoss {
            let _ = sqlx::query("PRAGMA synchronous = FULL").execute(self.conn()).await;
        }
        self.set_open(false);
        self.set_lowered(false);
    }
}

impl core::ops::Deref for WriterGuard<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self.0.as_ref() {
            Some(writer) => &writer.conn,
            None => unreachable!("a WriterGuard is only made over an open connection"),
        }
    }
}

impl core::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn()
    }
}

fn keystore_record(row: &SqliteRow) -> Result<KeystoreRecord> {
    let invalid = |reason| Error::Invalid { what: "keystore", reason };
    let kind: String = row.try_get("kind")?;
    let kind = KeyKind::parse(&kind).ok_or(invalid("unknown kind"))?;
    let salt: Option<Vec<u8>> = row.try_get("salt")?;
    let salt = salt.map(|s| <[u8; 16]>::try_from(s.as_slice())).transpose().map_err(|_| invalid("salt size"))?;
    let costs: (Option<i64>, Option<i64>, Option<i64>) =
        (row.try_get("m_cost")?, row.try_get("t_cost")?, row.try_get("p_cost")?);
    let params = match costs {
        (Some(m), Some(t), Some(p)) => Some(KdfParams {
            m_cost_kib: u32::try_from(m).map_err(|_| invalid("m_cost"))?,
            t_cost: u32::try_from(t).map_err(|_| invalid("t_cost"))?,
            p_cost: u32::try_from(p).map_err(|_| invalid("p_cost"))?,
        }),
        (None, None, None) => None,
        _ => return Err(invalid("partial KDF parameters")),
    };
    Ok(KeystoreRecord { kind, salt, params, verifier: row.try_get("verifier")? })
}
