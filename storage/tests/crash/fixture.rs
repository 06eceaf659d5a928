//! What the parent and the child share: the store's place, its options and
//! group, the payloads each entry carries and the variables that tell the
//! child what to do.

use std::path::{Path, PathBuf};

use veil_crypto::{
    ChainState, SenderChain, TestEntropy,
    time::{ManualClock, UnixTime},
};
use veil_storage::{Addressee, Durability, GroupKind, Store, Tuning, keystore::KeySource};

use crate::common::{group_fixture, options_with};

pub(crate) const DIR_VAR: &str = "VEIL_STORAGE_CRASH_DIR";
pub(crate) const SEED_VAR: &str = "VEIL_STORAGE_CRASH_SEED";
pub(crate) const DURABILITY_VAR: &str = "VEIL_STORAGE_CRASH_DURABILITY";
pub(crate) const CHECKPOINT_VAR: &str = "VEIL_STORAGE_CRASH_CHECKPOINT";
/// Entries one child appends before it stops and waits to be killed.
pub(crate) const CHILD_CAP: u64 = 500;
pub(crate) const GROUP_SEED: u8 = 0x37;
/// Every entry is owed to this peer…
pub(crate) const ALL: Addressee = Addressee([0xA1; 32]);
/// …and message entries with an even counter to this one as well.
pub(crate) const EVEN: Addressee = Addressee([0xE0; 32]);
/// Starts the child's line for each committed entry (its hash follows in hex).
pub(crate) const COMMITTED: &str = "COMMITTED ";
/// The child's line once it has appended `CHILD_CAP` entries.
pub(crate) const CAPPED: &str = "CAPPED";

#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) durability: Durability,
    /// `wal_autocheckpoint` in pages (small: a checkpoint after most commits).
    pub(crate) checkpoint_pages: u32,
}

impl Config {
    pub(crate) const PROCESS_CRASH: Self = Self { durability: Durability::ProcessCrash, checkpoint_pages: 10_000 };
    pub(crate) const POWER_LOSS: Self = Self { durability: Durability::PowerLoss, checkpoint_pages: 10_000 };

    pub(crate) fn tuning(self) -> Tuning {
        Tuning { durability: self.durability, wal_autocheckpoint_pages: self.checkpoint_pages, ..Tuning::default() }
    }

    pub(crate) fn from_env() -> Self {
        let durability = match std::env::var(DURABILITY_VAR).unwrap().as_str() {
            "process-crash" => Durability::ProcessCrash,
            "power-loss" => Durability::PowerLoss,
            other => panic!("unknown durability {other}"),
        };
        Self { durability, checkpoint_pages: std::env::var(CHECKPOINT_VAR).unwrap().parse().unwrap() }
    }

    pub(crate) fn durability_name(self) -> &'static str {
        match self.durability {
            Durability::ProcessCrash => "process-crash",
            Durability::PowerLoss => "power-loss",
        }
    }
}

pub(crate) fn db_path(dir: &Path) -> PathBuf {
    dir.join("veil.db")
}

pub(crate) fn key(dir: &Path) -> KeySource {
    KeySource::KeyFile(dir.join("storage.key"))
}

pub(crate) fn clock() -> ManualClock {
    ManualClock::new(UnixTime(1_800_000_000))
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The sending chain the group starts with (known to parent and child).
pub(crate) fn initial_chain() -> ChainState {
    SenderChain::generate(&mut TestEntropy::new(b"crash-test sender chain")).unwrap().state().clone()
}

/// The payload of message `counter`: distinct, of varying size (two padding buckets).
pub(crate) fn message_payload(counter: u64) -> Vec<u8> {
    format!("message {counter:06}; ").repeat(1 + (counter as usize * 7) % 23).into_bytes()
}

/// The payload of the metadata entry with Lamport clock `lamport`.
pub(crate) fn metadata_payload(lamport: u64) -> Vec<u8> {
    format!("metadata {lamport:06}: member list v{lamport}").into_bytes()
}

/// Keeps this process's store openings apart from its child spawns: a
/// child forked and not yet exec'd holds a copy of every open descriptor,
/// a store's lock among them, so a store closed and opened again meanwhile
/// is found locked (seen on a busy machine). `Command::spawn` returns once
/// the child has exec'd, dropping those copies.
pub(crate) static FORKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A new store with the group and its initial sending chain.
pub(crate) async fn setup(dir: &Path, config: Config) {
    let store = {
        let _no_fork = FORKING.lock().await;
        Store::create(&db_path(dir), &key(dir), options_with(&clock(), config.tuning())).await.unwrap()
    };
    let (secret, keys, device) = group_fixture(GROUP_SEED);
    let gid = store.insert_group(GroupKind::MultiMember, Some("crash"), &secret, &device).await.unwrap();
    assert_eq!(gid, keys.id);
    store.save_sender_chain(&gid, &initial_chain()).await.unwrap();
    store.close().await.unwrap();
}
