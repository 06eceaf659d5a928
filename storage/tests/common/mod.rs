//! Shared test fixtures: a store in a temporary directory, and entries.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, sync::Arc};

use veil_crypto::{
    GroupKeys, GroupSecret, SigningSecret, TestEntropy,
    envelope::{BodyKey, EntryHash, EntryKind, Links, SealedEntry, seal_entry},
    time::{ManualClock, UnixTime},
};
use veil_storage::{
    Store, StoreOptions,
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
) -> (SealedEntry, Links) {
    let links = Links { kind: EntryKind::Metadata, lamport, parents };
    let sealed = seal_entry(keys, author, &links, BodyKey::Metadata, label, &mut TestEntropy::new(label)).unwrap();
    (sealed, links)
}

pub(crate) fn group_fixture(seed: u8) -> (GroupSecret, GroupKeys, SigningSecret) {
    let secret = GroupSecret::from_bytes([seed; 32]);
    let keys = GroupKeys::derive(&secret);
    (secret, keys, SigningSecret::from_seed(&[seed.wrapping_add(1); 32]))
}
