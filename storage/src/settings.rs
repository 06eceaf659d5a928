//! Small named settings.

use sqlx::Row;

use crate::{Result, Store};

impl Store {
    /// A setting's value.
    pub async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let row =
            sqlx::query("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(&self.readers).await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Sets a setting.
    pub async fn set_setting(&self, name: &str, value: &[u8]) -> Result<()> {
        let mut conn = self.writer().await?;
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
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
