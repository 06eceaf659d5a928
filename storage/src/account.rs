//! The account and its devices.

use sqlx::{Connection, Row, SqliteConnection};
use veil_crypto::{
    AccountKeys, AccountPublic, AgreementPublic, AgreementSecret, AliasKey, Identity, SigningSecret, VerifyKey,
    epoch::device_agreement_key, time::UnixTime,
};

use crate::{
    Error, KeyAccess, Result, Store,
    keystore::StorageKey,
    rows::{blob, optional_blob, optional_time, time, time_value, verify_key},
};

const SEAL_ACCOUNT_SIGNING: &[u8] = b"veil/storage/account-signing";
const SEAL_ACCOUNT_AGREEMENT: &[u8] = b"veil/storage/account-agreement";
const SEAL_ALIAS: &[u8] = b"veil/storage/alias";
pub(crate) const SEAL_DEVICE: &[u8] = b"veil/storage/device";

/// A device of this account, as the store lists it: this one, and any other recorded with [`Store::add_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The public half of the device's own key (not of its per-group device keys).
    pub device: VerifyKey,
    /// Its device agreement key (docs/PROTOCOL.md §6.6), if known: epoch
    /// secrets are sealed to it when the account renews its groups' epochs.
    pub agreement: Option<AgreementPublic>,
    /// A name for it, if given.
    pub name: Option<String>,
    /// When it was added.
    pub added_at: UnixTime,
    /// When it was removed from the account, if it was.
    pub removed_at: Option<UnixTime>,
    /// Whether it is the device this store belongs to.
    pub is_this_device: bool,
}

/// Fills in this device's agreement key where a store from before schema
/// 12 lacks it (it is derived from the sealed device secret).
pub(crate) async fn fill_device_agreement(conn: &mut SqliteConnection, key: &StorageKey) -> Result<()> {
    let row = sqlx::query(
        "SELECT device_public, sealed_secret FROM devices WHERE sealed_secret IS NOT NULL AND agreement_public IS NULL",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(()) };
    let device = SigningSecret::from_seed(&*key.open32(SEAL_DEVICE, &row.try_get::<Vec<u8>, _>("sealed_secret")?)?);
    sqlx::query("UPDATE devices SET agreement_public = $1 WHERE device_public = $2")
        .bind(device_agreement_key(&device).public().0.to_vec())
        .bind(row.try_get::<Vec<u8>, _>("device_public")?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Stores this node's identity (once). The private keys are sealed.
    pub async fn save_identity(&self, identity: &Identity) -> Result<()> {
        let now = time_value(self.now())?;
        let public = identity.account.public();
        let sealed_signing = self.key.seal(SEAL_ACCOUNT_SIGNING, &identity.account.signing.to_seed()[..])?;
        let sealed_agreement = self.key.seal(SEAL_ACCOUNT_AGREEMENT, &identity.account.agreement.to_bytes()[..])?;
        let sealed_alias = self.key.seal(SEAL_ALIAS, &identity.alias.to_seed()[..])?;
        let sealed_device = self.key.seal(SEAL_DEVICE, &identity.device.to_seed()[..])?;
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO account (id, signing_public, agreement_public, sealed_signing, sealed_agreement, sealed_alias, created_at)
             VALUES (1, $1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(public.signing.to_bytes().to_vec())
        .bind(public.agreement.0.to_vec())
        .bind(sealed_signing)
        .bind(sealed_agreement)
        .bind(sealed_alias)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(Error::Invalid { what: "account", reason: "this store already holds an identity" });
        }
        sqlx::query(
            "INSERT INTO devices (device_public, sealed_secret, agreement_public, name, added_at) VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(identity.device.verify_key().to_bytes().to_vec())
        .bind(sealed_device)
        .bind(device_agreement_key(&identity.device).public().0.to_vec())
        .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Loads this node's identity, if one was saved: its private keys, for
    /// the holder of the store's [`KeyAccess`] only.
    pub async fn load_identity(&self, access: &KeyAccess) -> Result<Option<Identity>> {
        self.keys.check(access)?;
        let Some(row) =
            sqlx::query("SELECT signing_public, sealed_signing, sealed_agreement, sealed_alias FROM account")
                .fetch_optional(&self.readers)
                .await?
        else {
            return Ok(None);
        };
        let device_row = sqlx::query("SELECT sealed_secret FROM devices WHERE sealed_secret IS NOT NULL")
            .fetch_one(&self.readers)
            .await?;
        let signing = SigningSecret::from_seed(
            &*self.key.open32(SEAL_ACCOUNT_SIGNING, &row.try_get::<Vec<u8>, _>("sealed_signing")?)?,
        );
        if signing.verify_key().to_bytes() != blob::<32>(&row, "signing_public")? {
            return Err(Error::Invalid { what: "account", reason: "sealed key does not match the public key" });
        }
        let agreement = AgreementSecret::from_bytes(
            *self.key.open32(SEAL_ACCOUNT_AGREEMENT, &row.try_get::<Vec<u8>, _>("sealed_agreement")?)?,
        );
        let alias = AliasKey::from_seed(&*self.key.open32(SEAL_ALIAS, &row.try_get::<Vec<u8>, _>("sealed_alias")?)?);
        let device = SigningSecret::from_seed(
            &*self.key.open32(SEAL_DEVICE, &device_row.try_get::<Vec<u8>, _>("sealed_secret")?)?,
        );
        Ok(Some(Identity { account: AccountKeys { signing, agreement }, alias, device }))
    }

    /// This node's account (its public keys), if an identity was saved.
    pub async fn account(&self) -> Result<Option<AccountPublic>> {
        let Some(row) =
            sqlx::query("SELECT signing_public, agreement_public FROM account").fetch_optional(&self.readers).await?
        else {
            return Ok(None);
        };
        Ok(Some(AccountPublic {
            signing: verify_key(&row, "signing_public")?,
            agreement: AgreementPublic(blob::<32>(&row, "agreement_public")?),
        }))
    }

    /// Records another device of this account, with its agreement key. A
    /// device removed before stays removed.
    pub async fn add_device(&self, device: &VerifyKey, agreement: &AgreementPublic, name: Option<&str>) -> Result<()> {
        let mut conn = self.writer().await?;
        sqlx::query(
            "INSERT INTO devices (device_public, sealed_secret, agreement_public, name, added_at) VALUES ($1, NULL, $2, $3, $4)
             ON CONFLICT (device_public) DO UPDATE SET name = coalesce(excluded.name, name),
                 agreement_public = excluded.agreement_public",
        )
        .bind(device.to_bytes().to_vec())
        .bind(agreement.0.to_vec())
        .bind(name)
        .bind(time_value(self.now())?)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Marks another device of this account removed (recording it if it
    /// was not listed yet); `false` if it was removed already. This device
    /// cannot be removed here.
    pub async fn remove_device(&self, device: &VerifyKey) -> Result<bool> {
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        let mine: Option<bool> =
            sqlx::query_scalar("SELECT sealed_secret IS NOT NULL FROM devices WHERE device_public = $1")
                .bind(device.to_bytes().to_vec())
                .fetch_optional(&mut *tx)
                .await?;
        if mine == Some(true) {
            return Err(Error::Invalid { what: "device", reason: "this device cannot remove itself" });
        }
        let now = time_value(self.now())?;
        let changed = sqlx::query(
            "INSERT INTO devices (device_public, sealed_secret, name, added_at, removed_at) VALUES ($1, NULL, NULL, $2, $2)
             ON CONFLICT (device_public) DO UPDATE SET removed_at = excluded.removed_at WHERE removed_at IS NULL",
        )
        .bind(device.to_bytes().to_vec())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(changed > 0)
    }

    /// Marks this device removed from its account (another device removed
    /// it); `false` if it was already.
    pub async fn mark_this_device_removed(&self) -> Result<bool> {
        let mut conn = self.writer().await?;
        let changed =
            sqlx::query("UPDATE devices SET removed_at = $1 WHERE sealed_secret IS NOT NULL AND removed_at IS NULL")
                .bind(time_value(self.now())?)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        Ok(changed > 0)
    }

    /// The account's devices, oldest first.
    pub async fn devices(&self) -> Result<Vec<DeviceRecord>> {
        let rows = sqlx::query(
            "SELECT device_public, agreement_public, name, added_at, removed_at, sealed_secret IS NOT NULL AS mine
             FROM devices ORDER BY added_at, device_public",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceRecord {
                    device: verify_key(r, "device_public")?,
                    agreement: optional_blob::<32>(r, "agreement_public")?.map(AgreementPublic),
                    name: r.try_get("name")?,
                    added_at: time(r, "added_at")?,
                    removed_at: optional_time(r, "removed_at")?,
                    is_this_device: r.try_get("mine")?,
                })
            })
            .collect()
    }
}
