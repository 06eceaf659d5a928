//! Small named settings, sealed at rest (the user's own display name is
//! one): each value under the storage key, its name bound to it.

use sqlx::{Row, SqliteConnection};

use crate::{Result, Store, keystore::StorageKey};

/// The purpose a setting's value is sealed under: its name bound in.
fn purpose(name: &str) -> Vec<u8> {
    [b"veil/storage/setting/".as_slice(), name.as_bytes()].concat()
}

/// Seals the values written before settings were sealed (schema 11).
pub(crate) async fn seal_legacy(conn: &mut SqliteConnection, key: &StorageKey) -> Result<()> {
    let rows = sqlx::query("SELECT name, value FROM settings WHERE sealed = 0").fetch_all(&mut *conn).await?;
    for row in rows {
        let (name, value): (String, Vec<u8>) = (row.try_get("name")?, row.try_get("value")?);
        sqlx::query("UPDATE settings SET value = $1, sealed = 1 WHERE name = $2")
            .bind(key.seal(&purpose(&name), &value)?)
            .bind(&name)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// A setting's value.
    pub async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1 AND sealed = 1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get("value")?;
        Ok(Some(self.key.open(&purpose(name), &sealed)?.to_vec()))
    }

    /// Sets a setting.
    pub async fn set_setting(&self, name: &str, value: &[u8]) -> Result<()> {
        let sealed = self.key.seal(&purpose(name), value)?;
        let mut conn = self.writer().await?;
        sqlx::query(
            "INSERT INTO settings (name, value, sealed) VALUES ($1, $2, 1) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, sealed = 1",
        )
        .bind(name)
        .bind(sealed)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Removes a setting; returns whether it existed.
    pub async fn remove_setting(&self, name: &str) -> Result<bool> {
        let mut conn = self.writer().await?;
        let r = sqlx::query("DELETE FROM settings WHERE name = $1").bind(name).execute(&mut *conn).await?;
        Ok(r.rows_affected() > 0)
    }
}
