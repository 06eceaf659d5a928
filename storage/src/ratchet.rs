//! Ratchet state: this device's sending chain per group, and a receiving
//! chain (with the keys of skipped messages) per sender device per group.
//! A used key's row is deleted; `secure_delete` overwrites it on disk.

use std::collections::BTreeSet;

use sqlx::{Row, SqliteConnection};
use veil_crypto::{ChainState, GroupId, MessageKey, ReceiverChain, VerifyKey};

use zeroize::Zeroizing;

use crate::{
    Error, Result, Store,
    entries::ROWS_PER_STATEMENT,
    groups::group_ref,
    keystore::StorageKey,
    rows::{to_i64, u64_col},
    script::Script,
};

const SEAL_SENDER: &[u8] = b"veil/storage/sender-chain";
const SEAL_RECEIVER: &[u8] = b"veil/storage/receiver-chain";
const SEAL_SKIPPED: &[u8] = b"veil/storage/skipped-key";

fn purpose(label: &[u8], group_ref: i64, device: Option<&VerifyKey>, counter: Option<u64>) -> Vec<u8> {
    let mut p = label.to_vec();
    p.extend_from_slice(&group_ref.to_be_bytes());
    if let Some(d) = device {
        p.extend_from_slice(&d.to_bytes());
    }
    if let Some(c) = counter {
        p.extend_from_slice(&c.to_be_bytes());
    }
    p
}

fn open_chain(key: &StorageKey, purpose: &[u8], sealed: &[u8]) -> Result<ChainState> {
    Ok(ChainState::from_bytes(&key.open(purpose, sealed)?)?)
}

/// This device's sending chain in the group `group` from its sealed row.
pub(crate) fn open_sender(key: &StorageKey, group: i64, sealed: &[u8]) -> Result<ChainState> {
    open_chain(key, &purpose(SEAL_SENDER, group, None, None), sealed)
}

/// How a write of the sending chain treats its reserved positions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reserve {
    /// A new chain: nothing reserved.
    Reset,
    /// Reserved up to at least this position (never lowered).
    AtLeast(u64),
}

/// Adds the write of this device's sending chain for a group to `script`.
pub(crate) fn push_sender(
    script: &mut Script,
    key: &StorageKey,
    group: i64,
    state: &ChainState,
    reserve: Reserve,
) -> Result<()> {
    to_i64(state.next, "ratchet counter")?;
    let sealed = key.seal(&purpose(SEAL_SENDER, group, None, None), &state.to_bytes()[..])?;
    let (reserved, update) = match reserve {
        Reserve::Reset => (0, "excluded.reserved_until"),
        Reserve::AtLeast(at) => (to_i64(at, "reserved position")?, "MAX(reserved_until, excluded.reserved_until)"),
    };
    script
        .statement("INSERT INTO sender_chains (group_ref, sealed_state, reserved_until) VALUES (")
        .push_bind(group)
        .push(", ")
        .push_bind(sealed)
        .push(", ")
        .push_bind(reserved)
        .push(") ON CONFLICT (group_ref) DO UPDATE SET sealed_state = excluded.sealed_state, reserved_until = ")
        .push(update);
    Ok(())
}

/// Adds to `script` the read of which skipped keys of `device` in `group`
/// are stored (rows: `part`, the counter as `n`): [`push_receiver`] needs
/// them when the chain holds skipped keys.
pub(crate) fn read_skipped(script: &mut Script, part: i64, group: &GroupId, device: &VerifyKey) {
    script
        .statement("SELECT ")
        .push_bind(part)
        .push(" AS part, counter AS n, NULL AS hash FROM skipped_keys WHERE group_ref = (SELECT id FROM groups WHERE group_id = ")
        .push_bind(group.0.to_vec())
        .push(") AND device = ")
        .push_bind(device.to_bytes().to_vec());
}

/// Adds to `script` the write of a receiving chain and brings its skipped
/// keys in line with it: keys the chain no longer holds (used, or out of
/// the window) are deleted. `stored`: the skipped keys stored now (see
/// [`read_skipped`]); unused when the chain holds none.
pub(crate) fn push_receiver(
    script: &mut Script,
    key: &StorageKey,
    group: i64,
    device: &VerifyKey,
    chain: &ReceiverChain,
    stored: &BTreeSet<i64>,
) -> Result<()> {
    let device_bytes = device.to_bytes().to_vec();
    let sealed = key.seal(&purpose(SEAL_RECEIVER, group, Some(device), None), &chain.state().to_bytes()[..])?;
    script
        .statement("INSERT INTO receiver_chains (group_ref, device, window_size, sealed_state) VALUES (")
        .push_bind(group)
        .push(", ")
        .push_bind(device_bytes.clone())
        .push(", ")
        .push_bind(to_i64(chain.window(), "ratchet window")?)
        .push(", ")
        .push_bind(sealed)
        .push(
            ") ON CONFLICT (group_ref, device) DO UPDATE SET window_size = excluded.window_size, sealed_state = excluded.sealed_state",
        );
    let skipped = chain.export_skipped();
    if skipped.is_empty() {
        script
            .statement("DELETE FROM skipped_keys WHERE group_ref = ")
            .push_bind(group)
            .push(" AND device = ")
            .push_bind(device_bytes);
        return Ok(());
    }
    let mut wanted = BTreeSet::new();
    let mut fresh = Vec::new();
    for (counter, mk) in skipped {
        let c = to_i64(counter, "ratchet counter")?;
        wanted.insert(c);
        if !stored.contains(&c) {
            let bytes = Zeroizing::new([mk.expose_key().as_slice(), mk.nonce().as_slice()].concat());
            fresh.push((c, key.seal(&purpose(SEAL_SKIPPED, group, Some(device), Some(counter)), &bytes)?));
        }
    }
    for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
        let qb = script.statement("INSERT INTO skipped_keys (group_ref, device, counter, sealed_key) ");
        qb.push_values(chunk, |mut b, (counter, sealed)| {
            b.push_bind(group).push_bind(device_bytes.clone()).push_bind(*counter).push_bind(sealed.clone());
        });
    }
    let gone: Vec<i64> = stored.difference(&wanted).copied().collect();
    for chunk in gone.chunks(ROWS_PER_STATEMENT) {
        let qb = script.statement("DELETE FROM skipped_keys WHERE group_ref = ");
        qb.push_bind(group).push(" AND device = ").push_bind(device_bytes.clone()).push(" AND counter IN (");
        let mut sep = qb.separated(", ");
        for c in chunk {
            sep.push_bind(*c);
        }
        qb.push(")");
    }
    Ok(())
}

/// Writes a receiving chain (inside a transaction): see [`push_receiver`].
pub(crate) async fn put_receiver(
    conn: &mut SqliteConnection,
    key: &StorageKey,
    group: i64,
    device: &VerifyKey,
    chain: &ReceiverChain,
) -> Result<()> {
    let stored: BTreeSet<i64> =
        sqlx::query_scalar("SELECT counter FROM skipped_keys WHERE group_ref = $1 AND device = $2")
            .bind(group)
            .bind(device.to_bytes().to_vec())
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    let mut script = Script::new();
    push_receiver(&mut script, key, group, device, chain, &stored)?;
    script.run(conn).await?;
    Ok(())
}

/// This device's sending chain in a group, as stored.
#[derive(Debug, Clone)]
pub struct SenderChainRecord {
    /// The chain after the last message stored.
    pub state: ChainState,
    /// Positions below this may have been sent while the commit that
    /// stored them was not yet durable (0 after a clean close): after an
    /// unclean stop (a power loss may have undone those commits) the chain
    /// must resume here, or it would seal new messages under keys and
    /// nonces already used.
    pub reserved_until: u64,
}

impl SenderChainRecord {
    /// Where the chain resumes: past every position that may have been sent.
    pub fn resume_at(&self) -> u64 {
        self.state.next.max(self.reserved_until)
    }
}

impl Store {
    /// This device's sending chain in `group`, as stored: after an unclean
    /// stop, resume it at [`SenderChainRecord::resume_at`].
    pub async fn sender_chain(&self, group: &GroupId) -> Result<Option<SenderChainRecord>> {
        let row = sqlx::query(
            "SELECT s.group_ref, s.sealed_state, s.reserved_until FROM sender_chains s JOIN groups g ON g.id = s.group_ref
             WHERE g.group_id = $1",
        )
        .bind(group.0.to_vec())
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| {
            let g: i64 = r.try_get("group_ref")?;
            let sealed: Vec<u8> = r.try_get("sealed_state")?;
            let state = open_sender(&self.key, g, &sealed)?;
            Ok(SenderChainRecord { state, reserved_until: u64_col(&r, "reserved_until")? })
        })
        .transpose()
    }

    /// Saves a new sending chain of this device in `group` (outside an
    /// append, e.g. when a group is created): nothing reserved.
    pub async fn save_sender_chain(&self, group: &GroupId, state: &ChainState) -> Result<()> {
        let mut conn = self.writer().await?;
        let g = group_ref(&mut conn, group).await?;
        let mut script = Script::new();
        push_sender(&mut script, &self.key, g, state, Reserve::Reset)?;
        script.run(&mut conn).await?;
        Ok(())
    }

    /// The receiving chain of `device` in `group`, with its skipped keys.
    pub async fn receiver_chain(&self, group: &GroupId, device: &VerifyKey) -> Result<Option<ReceiverChain>> {
        let device_bytes = device.to_bytes().to_vec();
        let row = sqlx::query(
            "SELECT r.group_ref, r.window_size, r.sealed_state FROM receiver_chains r JOIN groups g ON g.id = r.group_ref
             WHERE g.group_id = $1 AND r.device = $2",
        )
        .bind(group.0.to_vec())
        .bind(&device_bytes)
        .fetch_optional(&self.readers)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let g: i64 = row.try_get("group_ref")?;
        let state = open_chain(
            &self.key,
            &purpose(SEAL_RECEIVER, g, Some(device), None),
            &row.try_get::<Vec<u8>, _>("sealed_state")?,
        )?;
        let mut chain = ReceiverChain::new(state, u64_col(&row, "window_size")?)?;
        let skipped = sqlx::query("SELECT counter, sealed_key FROM skipped_keys WHERE group_ref = $1 AND device = $2")
            .bind(g)
            .bind(&device_bytes)
            .fetch_all(&self.readers)
            .await?;
        let mut keys = Vec::with_capacity(skipped.len());
        for r in &skipped {
            let counter = u64_col(r, "counter")?;
            let bytes = self.key.open(
                &purpose(SEAL_SKIPPED, g, Some(device), Some(counter)),
                &r.try_get::<Vec<u8>, _>("sealed_key")?,
            )?;
            keys.push((
                counter,
                MessageKey::from_bytes(&bytes).ok_or(Error::Invalid { what: "skipped key", reason: "wrong length" })?,
            ));
        }
        chain.import_skipped(keys);
        Ok(Some(chain))
    }

    /// Saves the receiving chain of `device` in `group` (outside an append).
    pub async fn save_receiver_chain(&self, group: &GroupId, device: &VerifyKey, chain: &ReceiverChain) -> Result<()> {
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let g = group_ref(&mut tx, group).await?;
        put_receiver(&mut tx, &self.key, g, device, chain).await?;
        tx.commit().await?;
        Ok(())
    }
}
