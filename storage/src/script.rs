//! Write transactions in two round trips.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every
//! statement is a round trip to that thread: about 40 µs here, nearly all
//! of it two thread wake-ups, whatever the statement costs SQLite itself (a
//! few µs). An append of one entry was eleven statements, so half a
//! millisecond on each side of every message.
//!
//! A [`Script`] is several statements sent as one query: the SQLite driver
//! prepares them one after another and binds positional parameters across
//! them in order (sqlx 0.9; the driver calls this behaviour deprecated, and
//! the tests below fail if it goes). A write transaction is then
//! [`WriterGuard::begin_script`] (`BEGIN IMMEDIATE` with the reads the writes
//! depend on) and [`WriterGuard::commit_script`] (every write, then `COMMIT`).
//!
//! A transaction left open (a statement failed, or the caller's future was
//! dropped between the two round trips) is rolled back before the writer is
//! next used: see [`Store::writer`](crate::Store).

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, sqlite::SqliteRow};

use crate::{Durability, Result, db::WriterGuard};

/// When a write transaction's commit is durable against power loss (under
/// [`Durability::PowerLoss`]; every commit survives a killed process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// When it returns.
    Synced,
    /// Once the WAL is next synced (see `sync`).
    Deferred,
}

/// Statements to send as one query.
pub(crate) struct Script {
    qb: QueryBuilder<Sqlite>,
    statements: usize,
}

impl Script {
    /// An empty script; running it sends nothing to the database.
    pub(crate) fn new() -> Self {
        Self { qb: QueryBuilder::new(""), statements: 0 }
    }

    /// Starts the next statement with `sql`; the builder returned adds to
    /// it (binds, more SQL).
    pub(crate) fn statement(&mut self, sql: &str) -> &mut QueryBuilder<Sqlite> {
        if self.statements > 0 {
            self.qb.push(";\n");
        }
        self.statements += 1;
        self.qb.push(sql)
    }

    /// Runs the statements on `conn` (inside a transaction the caller
    /// holds); their rows come back in statement order.
    pub(crate) async fn run(mut self, conn: &mut SqliteConnection) -> Result<Vec<SqliteRow>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.qb.build().fetch_all(conn).await?)
    }

    /// Whether no statement was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.statements == 0
    }
}

/// The statements `add` puts between the fixed ones `before` and `after`.
fn framed(before: &[&str], add: impl FnOnce(&mut Script) -> Result<()>, after: &[&str]) -> Result<Script> {
    let mut script = Script::new();
    for sql in before {
        script.statement(sql);
    }
    add(&mut script)?;
    for sql in after {
        script.statement(sql);
    }
    Ok(script)
}

impl WriterGuard<'_> {
    /// Opens a write transaction and runs the reads `add` puts in it (maybe
    /// none): one round trip. Their rows come back in statement order;
    /// [`commit_script`](Self::commit_script) finishes the transaction.
    /// A [`Commit::Deferred`] transaction commits without waiting for the
    /// disk even when the store's commits survive power loss (see `sync`).
    pub(crate) async fn begin_script(
        &mut self,
        commit: Commit,
        add: impl FnOnce(&mut Script) -> Result<()>,
    ) -> Result<Vec<SqliteRow>> {
        if commit == Commit::Synced || self.durability() == Durability::ProcessCrash {
            return self.send(framed(&["BEGIN IMMEDIATE"], add, &[])?, false).await;
        }
        // The level cannot change inside a transaction: before it, and back
        // after its commit (or its rollback).
        self.set_lowered(true);
        self.send(framed(&["PRAGMA synchronous = NORMAL", "BEGIN IMMEDIATE"], add, &[])?, false).await
    }

    /// Starts the empty `script` with the opening of a write transaction,
    /// sent with the writes added to it by
    /// [`commit_script`](Self::commit_script): one round trip for a
    /// transaction that reads nothing first.
    pub(crate) fn open_in(&mut self, commit: Commit, script: &mut Script) {
        if commit == Commit::Deferred && self.durability() == Durability::PowerLoss {
            self.set_lowered(true);
            script.statement("PRAGMA synchronous = NORMAL");
        }
        script.statement("BEGIN IMMEDIATE");
    }

    /// Runs `writes` in the transaction [`begin_script`](Self::begin_script)
    /// (or [`open_in`](Self::open_in)) opened and commits: one round trip. Their rows (from `RETURNING`
    /// clauses) come back in statement order. On failure nothing of the
    /// transaction stays.
    pub(crate) async fn commit_script(&mut self, mut writes: Script) -> Result<Vec<SqliteRow>> {
        writes.statement("COMMIT");
        let lowered = self.lowered();
        if lowered {
            writes.statement("PRAGMA synchronous = FULL");
        }
        let rows = self.send(writes, true).await?;
        self.set_lowered(false);
        Ok(rows)
    }

    /// Runs the statements `add` puts in a transaction of their own: one
    /// round trip. Their rows come back in statement order.
    pub(crate) async fn transaction(&mut self, add: impl FnOnce(&mut Script) -> Result<()>) -> Result<Vec<SqliteRow>> {
        self.send(framed(&["BEGIN IMMEDIATE"], add, &["COMMIT"])?, true).await
    }

    /// Like [`transaction`](Self::transaction), for bookkeeping whose loss
    /// costs nothing but work done again (recording acknowledgements,
    /// resend times): committed without waiting for the disk even when the
    /// store's commits survive power loss. A later synced commit syncs it
    /// too; a power loss before that may undo it, never what came before.
    pub(crate) async fn transaction_unsynced(
        &mut self,
        add: impl FnOnce(&mut Script) -> Result<()>,
    ) -> Result<Vec<SqliteRow>> {
        if self.durability() == Durability::ProcessCrash {
            return self.transaction(add).await;
        }
        // The level cannot change inside a transaction: around it. A
        // failure puts it back when it rolls back (`rollback`).
        let script =
            framed(&["PRAGMA synchronous = NORMAL", "BEGIN IMMEDIATE"], add, &["COMMIT", "PRAGMA synchronous = FULL"])?;
        self.send(script, true).await
    }

    /// Sends a script that runs inside a transaction (`commits`: and ends
    /// it). Whatever fails rolls the transaction back.
    async fn send(&mut self, mut script: Script, commits: bool) -> Result<Vec<SqliteRow>> {
        // Marked open before sending: a dropped future leaves it to
        // `Store::writer` to roll back.
        self.set_open(true);
        match script.qb.build().fetch_all(self.conn()).await {
            Ok(rows) => {
                self.set_open(!commits);
                Ok(rows)
            }
            Err(e) => {
                self.rollback().await;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use sqlx::Row;

    use crate::{
        Store, StoreOptions,
        keystore::{KdfParams, KeySource},
    };

    async fn store(dir: &tempfile::TempDir) -> Store {
        let options = StoreOptions { kdf: KdfParams::FAST_INSECURE_FOR_TESTS, ..StoreOptions::default() };
        let key = KeySource::KeyFile(dir.path().join("storage.key"));
        Store::create(&dir.path().join("veil.db"), &key, options).await.unwrap()
    }

    fn insert_setting(script: &mut super::Script, name: &str) {
        script.statement("INSERT INTO settings (name, value) VALUES (").push_bind(name.to_owned()).push(", x'00')");
    }

    async fn settings(store: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT name FROM settings WHERE name LIKE 'script-%' ORDER BY name")
            .fetch_all(&store.readers)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn parameters_bind_across_statements_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut writer = store.writer().await.unwrap();
        let rows = writer
            .transaction(|s| {
                s.statement("SELECT ").push_bind(1i64).push(" AS n, ").push_bind(2i64).push(" AS m");
                insert_setting(s, "script-a");
                s.statement("SELECT ").push_bind(3i64).push(" AS n, ").push_bind(4i64).push(" AS m");
                Ok(())
            })
            .await
            .unwrap();
        let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get("n"), r.get("m"))).collect();
        assert_eq!(got, [(1, 2), (3, 4)]);
        drop(writer);
        assert_eq!(settings(&store).await, ["script-a"]);
    }

    #[tokio::test]
    async fn a_failed_statement_undoes_the_whole_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut writer = store.writer().await.unwrap();
        let failed = writer
            .transaction(|s| {
                insert_setting(s, "script-a");
                insert_setting(s, "script-a");
                Ok(())
            })
            .await;
        assert!(failed.is_err(), "the second insert breaks the primary key");
        writer
            .transaction(|s| {
                insert_setting(s, "script-b");
                Ok(())
            })
            .await
            .expect("the writer is usable again");
        drop(writer);
        assert_eq!(settings(&store).await, ["script-b"]);
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut writer = store.writer().await.unwrap();
        writer
            .begin_script(super::Commit::Synced, |s| {
                insert_setting(s, "script-a");
                Ok(())
            })
            .await
            .unwrap();
        // Its caller went away before committing.
        drop(writer);
        let mut writer = store.writer().await.unwrap();
        writer
            .transaction(|s| {
                insert_setting(s, "script-b");
                Ok(())
            })
            .await
            .unwrap();
        drop(writer);
        assert_eq!(settings(&store).await, ["script-b"]);
    }

    async fn synchronous(writer: &mut crate::db::WriterGuard<'_>) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous").fetch_one(writer.conn()).await.unwrap()
    }

    #[tokio::test]
    async fn an_unsynced_transaction_leaves_commits_synced_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut writer = store.writer().await.unwrap();
        assert_eq!(synchronous(&mut writer).await, 2, "FULL: the store survives power loss");
        writer
            .transaction_unsynced(|s| {
                insert_setting(s, "script-a");
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(synchronous(&mut writer).await, 2);
        let failed = writer
            .transaction_unsynced(|s| {
                insert_setting(s, "script-a");
                Ok(())
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(synchronous(&mut writer).await, 2, "FULL again after a failure too");
        drop(writer);
        assert_eq!(settings(&store).await, ["script-a"]);
    }

    #[tokio::test]
    async fn a_deferred_commit_lowers_the_level_for_its_transaction_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut writer = store.writer().await.unwrap();
        writer.begin_script(super::Commit::Deferred, |_| Ok(())).await.unwrap();
        assert_eq!(synchronous(&mut writer).await, 1, "NORMAL inside the deferred transaction");
        let mut writes = super::Script::new();
        insert_setting(&mut writes, "script-a");
        writer.commit_script(writes).await.unwrap();
        assert_eq!(synchronous(&mut writer).await, 2, "FULL after its commit");
        writer.begin_script(super::Commit::Deferred, |_| Ok(())).await.unwrap();
        let mut writes = super::Script::new();
        insert_setting(&mut writes, "script-a");
        assert!(writer.commit_script(writes).await.is_err());
        assert_eq!(synchronous(&mut writer).await, 2, "FULL after a failed commit too");
        writer.begin_script(super::Commit::Deferred, |_| Ok(())).await.unwrap();
        drop(writer);
        // Abandoned between its round trips: rolled back, level restored.
        let mut writer = store.writer().await.unwrap();
        assert_eq!(synchronous(&mut writer).await, 2);
        drop(writer);
        assert_eq!(settings(&store).await, ["script-a"]);
    }

    #[tokio::test]
    async fn a_transaction_opened_in_its_writes_is_one_script() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut writer = store.writer().await.unwrap();
        let mut writes = super::Script::new();
        writer.open_in(super::Commit::Deferred, &mut writes);
        insert_setting(&mut writes, "script-a");
        insert_setting(&mut writes, "script-b");
        writer.commit_script(writes).await.unwrap();
        assert_eq!(synchronous(&mut writer).await, 2, "FULL after its commit");
        let mut writes = super::Script::new();
        writer.open_in(super::Commit::Deferred, &mut writes);
        insert_setting(&mut writes, "script-c");
        insert_setting(&mut writes, "script-a");
        assert!(writer.commit_script(writes).await.is_err());
        assert_eq!(synchronous(&mut writer).await, 2, "FULL after a failure too");
        drop(writer);
        assert_eq!(settings(&store).await, ["script-a", "script-b"], "all of a failed one undone");
    }
}
