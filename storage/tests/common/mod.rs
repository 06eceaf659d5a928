//! Shared test fixtures: a store in a temporary directory, and entries.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, sync::Arc};

use veil_crypto::{
    GroupId, GroupKeys, GroupSecret, SenderChain, SigningSecret, TestEntropy,
    envelope::{BodyKey, EntryHash, EntryKind, Position, SealedEntry, seal_entry},
    time::{ManualClock, UnixTime},
};
use veil_storage::{
    Addressee, GroupKind, NewEntry, Store, StoreOptions,
    keystore::{KdfParams, KeySource},
};

pub(crate) struct TempStore {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) clock: ManualClock,
}

impl TempStore {
    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("veil.db")
    }

    pub(crate) fn key(&self) -> KeySource {
        key_file(&self.dir)
    }
}

pub(crate) fn key_file(dir: &tempfile::TempDir) -> KeySource {
    KeySource::KeyFile(dir.path().join("storage.key"))
}

pub(crate) fn options(clock: &ManualClock) -> StoreOptions {
    StoreOptions { kdf: KdfParams::FAST_INSECURE_FOR_TESTS, clock: Arc::new(clock.clone()), ..StoreOptions::default() }
}

pub(crate) async fn temp_store() -> TempStore {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime(1_800_000_000));
    let store = Store::create(&dir.path().join("veil.db"), &key_file(&dir), options(&clock)).await.unwrap();
    TempStore { dir, store, clock }
}

/// A metadata entry of `keys`' group with the given parents, sealed deterministically.
pub(crate) fn metadata_entry(
    keys: &GroupKeys,
    author: &SigningSecret,
    lamport: u64,
    parents: Vec<EntryHash>,
    label: &[u8],
) -> (SealedEntry, Position) {
    let position = Position { kind: EntryKind::Metadata, lamport, parents };
    let sealed = seal_entry(keys, author, &position, BodyKey::Metadata, label, &mut TestEntropy::new(label)).unwrap();
    (sealed, position)
}

pub(crate) fn group_fixture(seed: u8) -> (GroupSecret, GroupKeys, SigningSecret) {
    let secret = GroupSecret::from_bytes([seed; 32]);
    let keys = GroupKeys::derive(&secret);
    (secret, keys, SigningSecret::from_seed(&[seed.wrapping_add(1); 32]))
}

/// A multi-member group of `seed`'s fixture, inserted into `store`: its id, keys and device key.
pub(crate) async fn inserted_group(store: &Store, seed: u8) -> (GroupId, GroupKeys, SigningSecret) {
    let (secret, keys, device) = group_fixture(seed);
    let gid = store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
    (gid, keys, device)
}

/// A received entry with nothing but its place: no author, payload, ratchet or outbox rows.
pub(crate) fn bare<'a>(group: GroupId, entry: &'a SealedEntry, position: &'a Position) -> NewEntry<'a> {
    NewEntry { group, entry, position, author: None, payload: None, ratchet: None, outbox: &[] }
}

/// Options with a given SQLite tuning.
pub(crate) fn options_with(clock: &ManualClock, tuning: veil_storage::Tuning) -> StoreOptions {
    StoreOptions { tuning, ..options(clock) }
}

/// `path` with `suffix` appended to its file name (`veil.db` → `veil.db-wal`).
pub(crate) fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The files SQLite or `Store::create` may leave beside a database.
pub(crate) const COMPANION_SUFFIXES: [&str; 6] =
    ["-wal", "-shm", "-journal", ".creating", ".creating-wal", ".creating-shm"];

/// Which companion files of `db` exist.
pub(crate) fn companions(db: &std::path::Path) -> Vec<PathBuf> {
    COMPANION_SUFFIXES.iter().map(|s| with_suffix(db, s)).filter(|p| p.exists()).collect()
}

/// The whole directory listing (names only), sorted: to check nothing was created.
pub(crate) fn dir_listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Whether `needle` occurs anywhere in `haystack`.
pub(crate) fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A tiny deterministic PRNG (xorshift64*), so tests say exactly what they drew.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Three sealed messages of a fresh contact group, each the parent of the next.
pub(crate) async fn three_messages(
    t: &TempStore,
) -> (veil_crypto::GroupId, Vec<veil_crypto::envelope::SealedEntry>, Vec<Position>) {
    let (secret, keys, device) = group_fixture(7);
    let gid = t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    let mut e = TestEntropy::new(b"three");
    let mut chain = SenderChain::generate(&mut e).unwrap();
    let (mut sealed, mut position) = (vec![], vec![]);
    for i in 0..3u64 {
        let l = Position {
            kind: EntryKind::Message,
            lamport: i + 1,
            parents: sealed.last().map(|s: &veil_crypto::envelope::SealedEntry| s.hash()).into_iter().collect(),
        };
        sealed.push(seal_entry(&keys, &device, &l, BodyKey::Message(&mut chain), b"m", &mut e).unwrap());
        position.push(l);
    }
    (gid, sealed, position)
}

/// The entries as appends owed to `peers`.
pub(crate) fn owed_to<'a>(
    group: veil_crypto::GroupId,
    sealed: &'a [veil_crypto::envelope::SealedEntry],
    position: &'a [Position],
    peers: &'a [Addressee],
) -> Vec<NewEntry<'a>> {
    sealed
        .iter()
        .zip(position)
        .map(|(entry, position)| NewEntry {
            group,
            entry,
            position,
            author: None,
            payload: None,
            ratchet: None,
            outbox: peers,
        })
        .collect()
}
