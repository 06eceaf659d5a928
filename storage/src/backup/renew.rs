//! Making a copy of a store — a restored backup, or a copy received by a
//! newly linked device — a store of its own.
//!
//! Both get a key-file keystore, a **new device key in every group** and
//! no sending chain, so they never seal under a key or nonce the original
//! store's device may still use. A linked copy is moreover a new device of
//! the same account, next to the first one, which keeps writing: it gets
//! its own identity device, reads what the first device writes from where
//! the copy was made (each sending chain becomes a receiving chain of the
//! device that wrote it), and owes nobody anything (the first device keeps
//! delivering its outbox).

use std::path::Path;

use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use veil_crypto::{
    EpochId, OsEntropy, ReceiverChain, SigningSecret, VerifyKey, epoch::epoch_device_key, ratchet::DEFAULT_WINDOW,
};

use crate::{
    Error, Result, StoreOptions,
    account::SEAL_DEVICE,
    groups::SEAL_GROUP_DEVICE,
    keystore::StorageKey,
    ratchet::{open_sender, put_receiver},
    sqlite,
};

/// What a copy is renewed as.
#[derive(Clone, Copy)]
pub(super) enum Renewal<'a> {
    /// A restored backup: the same device of the account, with new group
    /// device keys.
    Restore,
    /// A new device of the account, `device` its identity key, added at
    /// `now` (Unix seconds).
    Link {
        /// The new device's own key.
        device: &'a SigningSecret,
        /// When it is added.
        now: i64,
    },
}

fn invalid(reason: &'static str) -> Error {
    Error::Invalid { what: "device copy", reason }
}

/// Renews the copy at `staging`, unlocked by `key` (see the module docs).
/// A linked copy is checked against `key` and migrated first.
pub(super) async fn renew(staging: &Path, key: &StorageKey, options: &StoreOptions, as_: Renewal<'_>) -> Result<()> {
    let mut conn = SqliteConnection::connect_with(&sqlite::writer_options(staging, false, &options.tuning)).await?;
    match renew_on(&mut conn, key, as_).await {
        Ok(()) => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
            conn.close().await?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.close().await;
            Err(e)
        }
    }
}

async fn renew_on(conn: &mut SqliteConnection, key: &StorageKey, as_: Renewal<'_>) -> Result<()> {
    if let Renewal::Link { .. } = as_ {
        let verifier: Vec<u8> = sqlx::query_scalar("SELECT verifier FROM keystore WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(invalid("it has no keystore"))?;
        if !key.verifies(&verifier) {
            return Err(invalid("the storage key sent with it does not open it"));
        }
        crate::db::migrate(conn, key).await?;
    }
    let record = key.key_file_record()?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "UPDATE keystore SET kind = $1, salt = NULL, m_cost = NULL, t_cost = NULL, p_cost = NULL, verifier = $2",
    )
    .bind(record.kind.as_str())
    .bind(&record.verifier)
    .execute(&mut *tx)
    .await?;
    if let Renewal::Link { device, now } = as_ {
        relink_identity(&mut tx, key, device, now).await?;
    }
    let groups = sqlx::query("SELECT id, group_id, sealed_device FROM groups").fetch_all(&mut *tx).await?;
    for row in &groups {
        let (g, id): (i64, Vec<u8>) = (row.try_get("id")?, row.try_get("group_id")?);
        let purpose = [SEAL_GROUP_DEVICE, &id].concat();
        if let Renewal::Link { .. } = as_ {
            let old = SigningSecret::from_seed(&*key.open32(&purpose, &row.try_get::<Vec<u8>, _>("sealed_device")?)?);
            sender_to_receiver(&mut tx, key, g, &old).await?;
        }
        let device = SigningSecret::generate(&mut OsEntropy)?;
        let sealed = key.seal(&purpose, &device.to_seed()[..])?;
        sqlx::query("UPDATE groups SET device_public = $1, sealed_device = $2 WHERE id = $3")
            .bind(device.verify_key().to_bytes().to_vec())
            .bind(sealed)
            .bind(g)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM sender_chains").execute(&mut *tx).await?;
    if let Renewal::Link { .. } = as_ {
        sqlx::query("DELETE FROM outbox").execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Makes `device` this store's identity device; the first device's row
/// stays, without its secret, as another device of the account.
async fn relink_identity(
    conn: &mut SqliteConnection,
    key: &StorageKey,
    device: &SigningSecret,
    now: i64,
) -> Result<()> {
    let has_account: Option<i64> = sqlx::query_scalar("SELECT 1 FROM account").fetch_optional(&mut *conn).await?;
    let first: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT device_public FROM devices WHERE sealed_secret IS NOT NULL LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (Some(_), Some(first)) = (has_account, first) else {
        return Err(invalid("it holds no account"));
    };
    let public = device.verify_key().to_bytes().to_vec();
    if first == public {
        return Err(invalid("the new device's key is the first device's"));
    }
    let sealed = key.seal(SEAL_DEVICE, &device.to_seed()[..])?;
    sqlx::query("UPDATE devices SET sealed_secret = NULL WHERE sealed_secret IS NOT NULL").execute(&mut *conn).await?;
    // The first device may have listed the new one already (keep its name).
    sqlx::query(
        "INSERT INTO devices (device_public, sealed_secret, agreement_public, name, added_at) VALUES ($1, $2, $3, NULL, $4)
         ON CONFLICT (device_public) DO UPDATE SET sealed_secret = excluded.sealed_secret,
             agreement_public = excluded.agreement_public",
    )
    .bind(public)
    .bind(sealed)
    .bind(veil_crypto::epoch::device_agreement_key(device).public().0.to_vec())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Turns the sending chain of the group `g` (if any) into a receiving
/// chain of the device key that wrote with it: of the first device's keys
/// in the group's epochs (`old` in the root epoch), the one that wrote the
/// group's latest entry among theirs. A group it never wrote in is skipped.
async fn sender_to_receiver(conn: &mut SqliteConnection, key: &StorageKey, g: i64, old: &SigningSecret) -> Result<()> {
    let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT sealed_state FROM sender_chains WHERE group_ref = $1")
        .bind(g)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(sealed) = sealed else { return Ok(()) };
    let state = open_sender(key, g, &sealed)?;
    let epochs: Vec<Vec<u8>> = sqlx::query_scalar("SELECT epoch_id FROM group_epochs WHERE group_ref = $1")
        .bind(g)
        .fetch_all(&mut *conn)
        .await?;
    let mut candidates: Vec<VerifyKey> = vec![epoch_device_key(old, &EpochId::ROOT).verify_key()];
    for epoch in epochs {
        let epoch = EpochId(
            epoch.as_slice().try_into().map_err(|_| Error::Invalid { what: "epoch_id", reason: "wrong length" })?,
        );
        candidates.push(epoch_device_key(old, &epoch).verify_key());
    }
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT author FROM entries WHERE group_ref = ");
    qb.push_bind(g).push(" AND author IN (");
    let mut list = qb.separated(", ");
    for c in &candidates {
        list.push_bind(c.to_bytes().to_vec());
    }
    qb.push(") ORDER BY lamport DESC, seq DESC LIMIT 1");
    let author: Option<Vec<u8>> = qb.build_query_scalar().fetch_optional(&mut *conn).await?;
    let Some(author) = author.and_then(|a| candidates.into_iter().find(|c| c.to_bytes()[..] == a[..])) else {
        return Ok(());
    };
    put_receiver(conn, key, g, &author, &ReceiverChain::new(state, DEFAULT_WINDOW)?).await
}
