//! Contacts and contact-request states.

use sqlx::{AssertSqlSafe, Row};
use veil_crypto::{AccountPublic, AgreementPublic, GroupId, RendezvousSeed, VerifyKey, time::UnixTime};

use crate::{
    Error, Result, Store,
    groups::group_ref,
    rows::{blob, time, time_value, verify_key},
};

const SEAL_CONTACT_SEED: &[u8] = b"veil/storage/contact-seed";
const SEAL_CONTACT_NAME: &[u8] = b"veil/storage/contact-name";
const SEAL_CONTACT_NICKNAME: &[u8] = b"veil/storage/contact-nickname";

/// Where a contact relationship stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactState {
    /// We want to send a request; not delivered yet.
    OutgoingEnqueued,
    /// Our request was delivered.
    OutgoingSent,
    /// They sent us a request; we have not answered.
    IncomingReceived,
    /// A contact: the 1:1 group exists.
    Accepted,
    /// We discarded their request (silently).
    Discarded,
    /// We refuse their requests.
    Blocked,
}

impl ContactState {
    /// Every state.
    pub const ALL: [ContactState; 6] = [
        Self::OutgoingEnqueued,
        Self::OutgoingSent,
        Self::IncomingReceived,
        Self::Accepted,
        Self::Discarded,
        Self::Blocked,
    ];

    /// The state's name as the `contacts` table stores it; existing rows depend on these names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutgoingEnqueued => "outgoing-enqueued",
            Self::OutgoingSent => "outgoing-sent",
            Self::IncomingReceived => "incoming-received",
            Self::Accepted => "accepted",
            Self::Discarded => "discarded",
            Self::Blocked => "blocked",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(Error::Invalid { what: "contact state", reason: "unknown" })
    }
}

/// A contact (or would-be contact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRecord {
    /// Their account keys: from their link for a request we send, authenticated by the handshake for one we receive.
    pub account: AccountPublic,
    /// Their display name, as they gave it.
    pub display_name: Option<String>,
    /// What this user calls them (local only; overrides `display_name`).
    pub nickname: Option<String>,
    /// Their rendezvous seed (from their link or their request).
    pub seed: Option<RendezvousSeed>,
    /// Where the relationship stands.
    pub state: ContactState,
    /// The 1:1 group, once accepted.
    pub group: Option<GroupId>,
    /// First seen.
    pub created_at: UnixTime,
    /// Last state change.
    pub updated_at: UnixTime,
}

impl Store {
    /// Inserts a contact, or updates its name, seed and state if known.
    pub async fn upsert_contact(
        &self,
        account: &AccountPublic,
        display_name: Option<&str>,
        seed: Option<&RendezvousSeed>,
        state: ContactState,
    ) -> Result<()> {
        let now = time_value(self.now())?;
        let purpose = [SEAL_CONTACT_SEED, &account.signing.to_bytes()].concat();
        let sealed_seed = seed.map(|s| self.key.seal(&purpose, s.expose_secret())).transpose()?;
        let name_purpose = [SEAL_CONTACT_NAME, &account.signing.to_bytes()].concat();
        let sealed_name = display_name.map(|n| self.key.seal(&name_purpose, n.as_bytes())).transpose()?;
        let mut conn = self.writer().await?;
        sqlx::query(
            "INSERT INTO contacts (account_signing, account_agreement, sealed_name, sealed_seed, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (account_signing) DO UPDATE SET
                 account_agreement = excluded.account_agreement,
                 sealed_name = COALESCE(excluded.sealed_name, contacts.sealed_name),
                 sealed_seed = COALESCE(excluded.sealed_seed, contacts.sealed_seed),
                 state = excluded.state,
                 updated_at = excluded.updated_at",
        )
        .bind(account.signing.to_bytes().to_vec())
        .bind(account.agreement.0.to_vec())
        .bind(sealed_name)
        .bind(sealed_seed)
        .bind(state.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Changes a contact's state, and links its 1:1 group when given.
    pub async fn set_contact_state(
        &self,
        account: &VerifyKey,
        state: ContactState,
        group: Option<&GroupId>,
    ) -> Result<()> {
        let now = time_value(self.now())?;
        let mut conn = self.writer().await?;
        let group = match group {
            Some(g) => Some(group_ref(&mut conn, g).await?),
            None => None,
        };
        let r = sqlx::query(
            "UPDATE contacts SET state = $1, group_ref = COALESCE($2, group_ref), updated_at = $3 WHERE account_signing = $4",
        )
        .bind(state.as_str())
        .bind(group)
        .bind(now)
        .bind(account.to_bytes().to_vec())
        .execute(&mut *conn)
        .await?;
        updated_one(&r)
    }

    /// Sets (or with `None` clears) the local nickname of a contact.
    pub async fn set_contact_nickname(&self, account: &VerifyKey, nickname: Option<&str>) -> Result<()> {
        let purpose = [SEAL_CONTACT_NICKNAME, &account.to_bytes()].concat();
        let sealed = nickname.map(|n| self.key.seal(&purpose, n.as_bytes())).transpose()?;
        let mut conn = self.writer().await?;
        let r = sqlx::query("UPDATE contacts SET sealed_nickname = $1 WHERE account_signing = $2")
            .bind(sealed)
            .bind(account.to_bytes().to_vec())
            .execute(&mut *conn)
            .await?;
        updated_one(&r)
    }

    /// One contact.
    pub async fn contact(&self, account: &VerifyKey) -> Result<Option<ContactRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!("{CONTACT_SELECT} WHERE c.account_signing = $1")))
            .bind(account.to_bytes().to_vec())
            .fetch_optional(&self.readers)
            .await?;
        row.map(|r| self.contact_record(&r)).transpose()
    }

    /// Contacts, optionally only those in `state`, oldest first.
    pub async fn contacts(&self, state: Option<ContactState>) -> Result<Vec<ContactRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{CONTACT_SELECT} WHERE ($1 IS NULL OR c.state = $1) ORDER BY c.created_at, c.account_signing"
        )))
        .bind(state.map(ContactState::as_str))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(|r| self.contact_record(r)).collect()
    }

    fn contact_record(&self, r: &sqlx::sqlite::SqliteRow) -> Result<ContactRecord> {
        let signing = verify_key(r, "account_signing")?;
        let sealed: Option<Vec<u8>> = r.try_get("sealed_seed")?;
        let purpose = [SEAL_CONTACT_SEED, &signing.to_bytes()].concat();
        let seed = sealed.map(|s| self.key.open32(&purpose, &s).map(|b| RendezvousSeed::from_bytes(*b))).transpose()?;
        let group: Option<Vec<u8>> = r.try_get("group_id")?;
        let group = group
            .map(|g| g.as_slice().try_into().map(GroupId))
            .transpose()
            .map_err(|_| Error::Invalid { what: "group id", reason: "wrong length" })?;
        Ok(ContactRecord {
            account: AccountPublic { signing, agreement: AgreementPublic(blob::<32>(r, "account_agreement")?) },
            display_name: self
                .open_text(&[SEAL_CONTACT_NAME, &signing.to_bytes()].concat(), r.try_get("sealed_name")?)?,
            nickname: self
                .open_text(&[SEAL_CONTACT_NICKNAME, &signing.to_bytes()].concat(), r.try_get("sealed_nickname")?)?,
            seed,
            state: ContactState::parse(&r.try_get::<String, _>("state")?)?,
            group,
            created_at: time(r, "created_at")?,
            updated_at: time(r, "updated_at")?,
        })
    }
}

/// An update of one contact found it, or the contact is unknown.
fn updated_one(r: &sqlx::sqlite::SqliteQueryResult) -> Result<()> {
    match r.rows_affected() {
        0 => Err(Error::Unknown("contact")),
        _ => Ok(()),
    }
}

const CONTACT_SELECT: &str =
    "SELECT c.account_signing, c.account_agreement, c.sealed_name, c.sealed_nickname, c.sealed_seed, c.state,
        g.group_id, c.created_at, c.updated_at
    FROM contacts c LEFT JOIN groups g ON g.id = c.group_ref";
