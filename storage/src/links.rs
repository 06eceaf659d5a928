//! This account's contact link: the current seed, enabled or not, and the
//! seeds earlier resets retired.

use sqlx::{Connection, Row};
use veil_crypto::{RendezvousSeed, time::UnixTime};

use crate::{
    Error, Result, Store,
    rows::{time, time_value},
};

const SEAL_LINK_SEED: &[u8] = b"veil/storage/link-seed";

/// The contact link this account hands out now; seeds earlier resets replaced are in [`Store::link_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// The seed the link's rendezvous points come from; sealed at rest, and replaced by a reset.
    pub seed: RendezvousSeed,
    /// Whether the node announces itself (accepts requests) at all.
    pub enabled: bool,
    /// When this seed was drawn.
    pub created_at: UnixTime,
    /// The link's limits, and how many uses are left.
    pub limits: LinkLimits,
}

impl LinkState {
    /// Whether the link answers requests at `now`: enabled, not expired,
    /// not used up.
    pub fn answers_at(&self, now: UnixTime) -> bool {
        self.enabled && self.limits.expires_at.is_none_or(|t| now < t) && self.limits.uses != Some(0)
    }
}

/// When a contact link stops answering, if ever: at a time, or after a
/// number of completed requests (a one-time link has one use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkLimits {
    /// From this time on it answers nothing.
    pub expires_at: Option<UnixTime>,
    /// Completed requests it still answers (`Some(0)`: used up).
    pub uses: Option<u32>,
}

/// A seed retired by a reset: links carrying it no longer work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredLink {
    /// The seed; its points are never announced again.
    pub seed: RendezvousSeed,
    /// When it was drawn.
    pub created_at: UnixTime,
    /// When it was retired.
    pub retired_at: UnixTime,
}

impl Store {
    /// The current contact link, if one was ever set.
    pub async fn link(&self) -> Result<Option<LinkState>> {
        let row = sqlx::query(
            "SELECT l.sealed_seed, l.created_at, l.expires_at, l.uses_left, s.enabled
             FROM contact_links l, link_state s
             WHERE l.retired_at IS NULL ORDER BY l.id DESC LIMIT 1",
        )
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| {
            let uses = r.try_get::<Option<i64>, _>("uses_left")?;
            Ok(LinkState {
                seed: self.open_seed(&r)?,
                enabled: r.try_get::<i64, _>("enabled")? == 1,
                created_at: time(&r, "created_at")?,
                limits: LinkLimits {
                    expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(|t| UnixTime(t.max(0).unsigned_abs())),
                    uses: uses.map(|u| u32::try_from(u.max(0)).unwrap_or(u32::MAX)),
                },
            })
        })
        .transpose()
    }

    /// Makes `seed` the link's seed, retiring the current one (a reset: every
    /// earlier link stops working). The first call creates the link, enabled.
    pub async fn reset_link(&self, seed: &RendezvousSeed) -> Result<()> {
        self.reset_link_with(seed, LinkLimits::default()).await
    }

    /// [`Store::reset_link`], with limits on the new link.
    pub async fn reset_link_with(&self, seed: &RendezvousSeed, limits: LinkLimits) -> Result<()> {
        let expires_at = limits.expires_at.map(time_value).transpose()?;
        let now = time_value(self.now())?;
        let sealed = self.key.seal(SEAL_LINK_SEED, seed.expose_secret())?;
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("UPDATE contact_links SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO contact_links (sealed_seed, created_at, expires_at, uses_left) VALUES ($1, $2, $3, $4)",
        )
        .bind(sealed)
        .bind(now)
        .bind(expires_at)
        .bind(limits.uses.map(i64::from))
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO link_state (id, enabled) VALUES (1, 1) ON CONFLICT (id) DO NOTHING")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Enables or disables the link (disabled: nobody can reach this node
    /// with any link).
    pub async fn set_link_enabled(&self, enabled: bool) -> Result<()> {
        let mut conn = self.writer().await?;
        let r = sqlx::query("UPDATE link_state SET enabled = $1 WHERE id = 1")
            .bind(i64::from(enabled))
            .execute(&mut *conn)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::Unknown("contact link"));
        }
        Ok(())
    }

    /// Counts one completed request against the current link's use limit;
    /// returns the uses left (`None`: no limit). A used-up link stays so.
    pub async fn use_link(&self) -> Result<Option<u32>> {
        let mut conn = self.writer().await?;
        let left: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE contact_links SET uses_left = max(uses_left - 1, 0)
             WHERE retired_at IS NULL RETURNING uses_left",
        )
        .fetch_optional(&mut *conn)
        .await?;
        let left = left.ok_or(Error::Unknown("contact link"))?;
        Ok(left.map(|u| u32::try_from(u.max(0)).unwrap_or(u32::MAX)))
    }

    /// Seeds retired by resets, oldest first.
    pub async fn link_history(&self) -> Result<Vec<RetiredLink>> {
        let rows = sqlx::query(
            "SELECT sealed_seed, created_at, retired_at FROM contact_links WHERE retired_at IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RetiredLink {
                    seed: self.open_seed(r)?,
                    created_at: time(r, "created_at")?,
                    retired_at: time(r, "retired_at")?,
                })
            })
            .collect()
    }

    fn open_seed(&self, row: &sqlx::sqlite::SqliteRow) -> Result<RendezvousSeed> {
        let sealed: Vec<u8> = row.try_get("sealed_seed")?;
        Ok(RendezvousSeed::from_bytes(*self.key.open32(SEAL_LINK_SEED, &sealed)?))
    }
}
