//! Groups this node belongs to, with their secrets and this device's key.

use sqlx::{Connection, Row, SqliteConnection, sqlite::SqliteRow};
use veil_crypto::{EpochId, EpochSecret, GroupId, GroupKeys, GroupSecret, SigningSecret, time::UnixTime};

use crate::{
    Error, KeyAccess, Result, Store,
    rows::{blob, time, time_value},
};

const SEAL_GROUP_SECRET: &[u8] = b"veil/storage/group-secret";
pub(crate) const SEAL_GROUP_DEVICE: &[u8] = b"veil/storage/group-device";
const SEAL_GROUP_NAME: &[u8] = b"veil/storage/group-name";
const SEAL_GROUP_EPOCH: &[u8] = b"veil/storage/group-epoch";

/// What kind of group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// The 1:1 group of two contacts.
    Contact,
    /// A multi-member group joined through an invitation.
    MultiMember,
}

impl GroupKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Contact => "contact",
            Self::MultiMember => "multi-member",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "contact" => Ok(Self::Contact),
            "multi-member" => Ok(Self::MultiMember),
            _ => Err(Error::Invalid { what: "group kind", reason: "unknown" }),
        }
    }
}

/// A group this node is in, as the `groups` table records it; this device's key in it is a [`GroupDeviceKey`].
#[derive(Debug, Clone)]
pub struct GroupRecord {
    /// The group's id, derived from `secret` by the key schedule.
    pub id: GroupId,
    /// Contact or multi-member.
    pub kind: GroupKind,
    /// The group's name, if any.
    pub name: Option<String>,
    /// The group secret (unsealed in memory).
    pub secret: GroupSecret,
    /// When this node joined.
    pub joined_at: UnixTime,
}

/// This device's key in a group, for the holder of the store's
/// [`KeyAccess`] ([`Store::group_device_keys`]).
#[derive(Debug)]
pub struct GroupDeviceKey {
    /// The group this key signs entries in.
    pub group: GroupId,
    /// Contact or multi-member.
    pub kind: GroupKind,
    /// This device's signing key in it.
    pub key: SigningSecret,
}

fn epoch_purpose(group: &GroupId, epoch: &EpochId) -> Vec<u8> {
    [SEAL_GROUP_EPOCH, &group.0, &epoch.0].concat()
}

/// The local row id of a group: a compact key for the entry indexes.
pub(crate) async fn group_ref(conn: &mut SqliteConnection, id: &GroupId) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM groups WHERE group_id = $1")
        .bind(id.0.to_vec())
        .fetch_optional(conn)
        .await?
        .ok_or(Error::Unknown("group"))
}

/// A group's row as inserted.
struct GroupRow {
    id: GroupId,
    kind: GroupKind,
    sealed_name: Option<Vec<u8>>,
    sealed_secret: Vec<u8>,
    device_public: Vec<u8>,
    sealed_device: Vec<u8>,
    joined_at: i64,
}

impl GroupRow {
    /// Inserts it, unless the group is there already.
    async fn insert(&self, conn: &mut SqliteConnection) -> Result<()> {
        sqlx::query(
            "INSERT INTO groups (group_id, kind, sealed_name, sealed_secret, device_public, sealed_device, joined_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (group_id) DO NOTHING",
        )
        .bind(self.id.0.to_vec())
        .bind(self.kind.as_str())
        .bind(self.sealed_name.as_deref())
        .bind(&self.sealed_secret)
        .bind(&self.device_public)
        .bind(&self.sealed_device)
        .bind(self.joined_at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Keeps a sealed epoch secret of the group `g`; `false` if it was kept already.
async fn insert_epoch(conn: &mut SqliteConnection, g: i64, epoch: &EpochId, sealed: &[u8]) -> Result<bool> {
    let added = sqlx::query(
        "INSERT INTO group_epochs (group_ref, epoch_id, sealed_secret) VALUES ($1, $2, $3)
         ON CONFLICT (group_ref, epoch_id) DO NOTHING",
    )
    .bind(g)
    .bind(epoch.0.to_vec())
    .bind(sealed)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(added == 1)
}

impl Store {
    /// Records a group this node joined. Idempotent: inserting the same group
    /// again keeps the first record. Returns the group id.
    pub async fn insert_group(
        &self,
        kind: GroupKind,
        name: Option<&str>,
        secret: &GroupSecret,
        device: &SigningSecret,
    ) -> Result<GroupId> {
        let row = self.group_row(kind, name, secret, device)?;
        let mut conn = self.writer().await?;
        row.insert(&mut conn).await?;
        Ok(row.id)
    }

    /// Records a group joined with an invitation, with the epoch secrets
    /// the invitation carried, in one transaction: a crash leaves the group
    /// either joined with all of them or not joined. Idempotent like
    /// [`Store::insert_group`].
    pub async fn join_group(
        &self,
        name: Option<&str>,
        secret: &GroupSecret,
        device: &SigningSecret,
        epochs: &[EpochSecret],
    ) -> Result<GroupId> {
        let row = self.group_row(GroupKind::MultiMember, name, secret, device)?;
        let keys = GroupKeys::derive(secret);
        let sealed_epochs = epochs
            .iter()
            .map(|e| {
                let (epoch, _) = keys.epoch(e);
                Ok((epoch, self.key.seal(&epoch_purpose(&row.id, &epoch), e.expose_secret())?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        row.insert(&mut tx).await?;
        let g = group_ref(&mut tx, &row.id).await?;
        for (epoch, sealed) in &sealed_epochs {
            insert_epoch(&mut tx, g, epoch, sealed).await?;
        }
        tx.commit().await?;
        Ok(row.id)
    }

    /// A group's row, its secrets sealed.
    fn group_row(
        &self,
        kind: GroupKind,
        name: Option<&str>,
        secret: &GroupSecret,
        device: &SigningSecret,
    ) -> Result<GroupRow> {
        let id = GroupKeys::derive(secret).id;
        Ok(GroupRow {
            id,
            kind,
            sealed_name: name.map(|n| self.key.seal(&[SEAL_GROUP_NAME, &id.0].concat(), n.as_bytes())).transpose()?,
            sealed_secret: self.key.seal(&[SEAL_GROUP_SECRET, &id.0].concat(), secret.expose_secret())?,
            device_public: device.verify_key().to_bytes().to_vec(),
            sealed_device: self.key.seal(&[SEAL_GROUP_DEVICE, &id.0].concat(), &device.to_seed()[..])?,
            joined_at: time_value(self.now())?,
        })
    }

    /// One group.
    pub async fn group(&self, id: &GroupId) -> Result<Option<GroupRecord>> {
        let row =
            sqlx::query("SELECT group_id, kind, sealed_name, sealed_secret, joined_at FROM groups WHERE group_id = $1")
                .bind(id.0.to_vec())
                .fetch_optional(&self.readers)
                .await?;
        row.map(|r| self.group_record(&r)).transpose()
    }

    /// Every group, in the order they were joined.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>> {
        let rows = sqlx::query("SELECT group_id, kind, sealed_name, sealed_secret, joined_at FROM groups ORDER BY id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(|r| self.group_record(r)).collect()
    }

    /// This device's key in every group, in the order they were joined: for
    /// the holder of the store's [`KeyAccess`] only.
    pub async fn group_device_keys(&self, access: &KeyAccess) -> Result<Vec<GroupDeviceKey>> {
        self.keys.check(access)?;
        let rows = sqlx::query("SELECT group_id, kind, device_public, sealed_device FROM groups ORDER BY id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter()
            .map(|r| {
                let group = GroupId(blob::<32>(r, "group_id")?);
                let sealed: Vec<u8> = r.try_get("sealed_device")?;
                let key =
                    SigningSecret::from_seed(&*self.key.open32(&[SEAL_GROUP_DEVICE, &group.0].concat(), &sealed)?);
                if key.verify_key().to_bytes() != blob::<32>(r, "device_public")? {
                    return Err(Error::Invalid { what: "group device key", reason: "does not match its public key" });
                }
                Ok(GroupDeviceKey { group, kind: GroupKind::parse(&r.try_get::<String, _>("kind")?)?, key })
            })
            .collect()
    }

    /// The name of every group that has one (given when it was created, or
    /// carried by the invitation it was joined with): no secret is unsealed.
    pub async fn group_names(&self) -> Result<Vec<(GroupId, String)>> {
        let rows = sqlx::query("SELECT group_id, sealed_name FROM groups WHERE sealed_name IS NOT NULL ORDER BY id")
            .fetch_all(&self.readers)
            .await?;
        let mut names = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = GroupId(blob::<32>(r, "group_id")?);
            if let Some(name) = self.open_text(&[SEAL_GROUP_NAME, &id.0].concat(), r.try_get("sealed_name")?)? {
                names.push((id, name));
            }
        }
        Ok(names)
    }

    /// Keeps the secret of an epoch of `group` (sealed). `false` if it was
    /// already kept.
    pub async fn add_epoch(&self, group: &GroupId, secret: &EpochSecret) -> Result<bool> {
        let record = self.group(group).await?.ok_or(Error::Unknown("group"))?;
        let (epoch, _) = GroupKeys::derive(&record.secret).epoch(secret);
        let sealed = self.key.seal(&epoch_purpose(group, &epoch), secret.expose_secret())?;
        let mut conn = self.writer().await?;
        let g = group_ref(&mut conn, group).await?;
        insert_epoch(&mut conn, g, &epoch, &sealed).await
    }

    /// The epoch secrets kept for `group`, in the order they were added.
    pub async fn epochs(&self, group: &GroupId) -> Result<Vec<EpochSecret>> {
        let rows = sqlx::query(
            "SELECT epoch_id, sealed_secret FROM group_epochs
              WHERE group_ref = (SELECT id FROM groups WHERE group_id = $1) ORDER BY id",
        )
        .bind(group.0.to_vec())
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                let epoch = EpochId(blob::<32>(r, "epoch_id")?);
                let sealed: Vec<u8> = r.try_get("sealed_secret")?;
                Ok(EpochSecret::from_bytes(*self.key.open32(&epoch_purpose(group, &epoch), &sealed)?))
            })
            .collect()
    }

    fn group_record(&self, r: &SqliteRow) -> Result<GroupRecord> {
        let id = GroupId(blob::<32>(r, "group_id")?);
        let secret = GroupSecret::from_bytes(
            *self.key.open32(&[SEAL_GROUP_SECRET, &id.0].concat(), &r.try_get::<Vec<u8>, _>("sealed_secret")?)?,
        );
        if GroupKeys::derive(&secret).id != id {
            return Err(Error::Invalid { what: "group", reason: "secret does not match the group id" });
        }
        Ok(GroupRecord {
            id,
            kind: GroupKind::parse(&r.try_get::<String, _>("kind")?)?,
            name: self.open_text(&[SEAL_GROUP_NAME, &id.0].concat(), r.try_get("sealed_name")?)?,
            secret,
            joined_at: time(r, "joined_at")?,
        })
    }
}
