//! Forgetting: a conversation's messages erased from this device, now or
//! once older than its retention period; a contact removed with everything
//! of its 1:1 conversation.
//!
//! An erased message stays in the log as its hash, kind, Lamport clock and
//! sealed links, so the log's DAG stays whole and sync neither fetches it
//! again nor stalls on a missing parent; its header, body, payload and
//! author are emptied (an empty body marks it). Nothing erased is served,
//! listed, counted unread or owed to anyone any more. `secure_delete`
//! zeroes the freed bytes in the pages, and a checkpoint afterwards moves
//! the pages into the main file and truncates the WAL, so the old content
//! is in neither file (`tests/sealed_at_rest/erasure.rs` scans both).

use std::time::Duration;

use sqlx::Connection;
use veil_crypto::{GroupId, VerifyKey, time::UnixTime};

use crate::{Error, Result, Store, rows::time_value};

/// The `kind` of message entries in the `entries` table.
const MESSAGE: i64 = 2;

impl Store {
    /// Erases the content of `group`'s messages received before `before`
    /// (all of them with `None`) and returns how many were erased. The WAL
    /// is checkpointed and truncated afterwards (when no reader holds it:
    /// otherwise the next erasure or checkpoint completes it).
    pub async fn forget_messages(&self, group: &GroupId, before: Option<UnixTime>) -> Result<u64> {
        let before = before.map(time_value).transpose()?.unwrap_or(i64::MAX);
        let erased = {
            let mut conn = self.writer().await?;
            let mut tx = conn.begin().await?;
            let erased = sqlx::query(
                "UPDATE entries SET header = x'', body = x'', sealed_payload = NULL, author = NULL
                 WHERE group_ref = (SELECT id FROM groups WHERE group_id = $1)
                   AND kind = $2 AND length(body) > 0 AND received_at < $3",
            )
            .bind(group.0.to_vec())
            .bind(MESSAGE)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // What is erased is owed to nobody.
            sqlx::query(
                "DELETE FROM outbox WHERE entry_seq IN (SELECT seq FROM entries
                   WHERE group_ref = (SELECT id FROM groups WHERE group_id = $1) AND kind = $2 AND length(body) = 0)",
            )
            .bind(group.0.to_vec())
            .bind(MESSAGE)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            erased
        };
        if erased > 0 {
            self.checkpoint().await?;
        }
        Ok(erased)
    }

    /// Keeps `group`'s messages for `keep` (for ever with `None`).
    pub async fn set_retention(&self, group: &GroupId, keep: Option<Duration>) -> Result<()> {
        let seconds = keep
            .map(|d| i64::try_from(d.as_secs()))
            .transpose()
            .map_err(|_| Error::Invalid { what: "retention", reason: "too long" })?;
        let mut conn = self.writer().await?;
        let updated = sqlx::query("UPDATE groups SET retention_seconds = $1 WHERE group_id = $2")
            .bind(seconds)
            .bind(group.0.to_vec())
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(Error::Unknown("group"));
        }
        Ok(())
    }

    /// How long `group` keeps its messages, if for a limited time.
    pub async fn retention_of(&self, group: &GroupId) -> Result<Option<Duration>> {
        let seconds: Option<Option<i64>> =
            sqlx::query_scalar("SELECT retention_seconds FROM groups WHERE group_id = $1")
                .bind(group.0.to_vec())
                .fetch_optional(&self.readers)
                .await?;
        Ok(seconds.flatten().map(|secs| Duration::from_secs(secs.max(0).unsigned_abs())))
    }

    /// Every group that keeps its messages for a limited time, with that time.
    pub async fn retention(&self) -> Result<Vec<(GroupId, Duration)>> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT group_id, retention_seconds FROM groups WHERE retention_seconds IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter()
            .map(|(id, secs)| {
                let id: [u8; 32] =
                    id.try_into().map_err(|_| Error::Invalid { what: "group id", reason: "not 32 bytes" })?;
                Ok((GroupId(id), Duration::from_secs(secs.max(0).unsigned_abs())))
            })
            .collect()
    }
}

impl Store {
    /// Removes a contact for good: the contact, its 1:1 group and all of
    /// the group's keys, chains, entries and owed entries, in one
    /// transaction; then the WAL is checkpointed and truncated (see
    /// [`Store::forget_messages`]). `false` if there was no such contact.
    pub async fn remove_contact(&self, account: &VerifyKey) -> Result<bool> {
        let removed = {
            let mut conn = self.writer().await?;
            let mut tx = conn.begin().await?;
            let found: Option<Option<i64>> =
                sqlx::query_scalar("SELECT group_ref FROM contacts WHERE account_signing = $1")
                    .bind(account.to_bytes().to_vec())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(group) = found else { return Ok(false) };
            sqlx::query("DELETE FROM contacts WHERE account_signing = $1")
                .bind(account.to_bytes().to_vec())
                .execute(&mut *tx)
                .await?;
            if let Some(group) = group {
                for statement in [
                    "DELETE FROM outbox WHERE entry_seq IN (SELECT seq FROM entries WHERE group_ref = $1)",
                    "DELETE FROM skipped_keys WHERE group_ref = $1",
                    "DELETE FROM receiver_chains WHERE group_ref = $1",
                    "DELETE FROM sender_chains WHERE group_ref = $1",
                    "DELETE FROM heads WHERE group_ref = $1",
                    "DELETE FROM missing_parents WHERE group_ref = $1",
                    "DELETE FROM group_epochs WHERE group_ref = $1",
                    "DELETE FROM entries WHERE group_ref = $1",
                    "DELETE FROM groups WHERE id = $1",
                ] {
                    sqlx::query(statement).bind(group).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            true
        };
        self.checkpoint().await?;
        Ok(removed)
    }
}
