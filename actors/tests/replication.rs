//! Blind replication: a node given a group's replication credential (not its
//! secret) stores and serves the group's entries, so members who are never
//! online at the same time converge through it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{T0, peer, until};
use veil_crypto::time::{ManualClock, UnixTime};
use veil_storage::{Store, StoreOptions, keystore::KeySource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_never_online_together_converge_through_a_replication_node() {
    const COUNT: usize = 50;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let common::GroupOfTwo { server, addr, a, b, group, .. } = common::group_of_two(&dirs, &clock).await;
    let r = peer(&dirs[3], &clock, &addr).await;
    let replication = r.replicate(&a.replication_credential(&group).await.unwrap()).await.unwrap();

    // B goes offline; A writes, and the replication node takes it all.
    b.shutdown().await.unwrap();
    drop(b);
    for i in 0..COUNT {
        a.send(&group, format!("left with the replica {i}").as_bytes()).await.unwrap();
    }
    let written: Vec<(u64, Vec<u8>)> =
        a.history(&group, None, 1000).await.unwrap().into_iter().map(|h| (h.lamport, h.payload)).collect();
    assert_eq!(written.len(), COUNT);
    let mut events = r.events();
    until(&mut events, || async {
        r.replicated_entries(&replication).await.unwrap() == a.stored_entries(&group).await.unwrap()
    })
    .await;

    // A goes offline before B comes back: only the replication node can
    // bring B up to date.
    a.shutdown().await.unwrap();
    drop(a);
    let b = peer(&dirs[2], &clock, &addr).await;
    let mut events = b.events();
    until(&mut events, || async { b.history(&group, None, 1000).await.unwrap().len() == COUNT }).await;
    let read: Vec<(u64, Vec<u8>)> =
        b.history(&group, None, 1000).await.unwrap().into_iter().map(|h| (h.lamport, h.payload)).collect();
    assert_eq!(read, written, "every message, readable, in the same order");

    for n in [b, r, server] {
        n.shutdown().await.unwrap();
    }
    // The replication node holds the credential and ciphertext only: no
    // group, no secret, and not one message in clear in its files.
    let key = KeySource::KeyFile(dirs[3].path().join("storage.key"));
    let store = Store::open(&dirs[3].path().join("veil.db"), &key, StoreOptions::default()).await.unwrap();
    assert!(store.groups().await.unwrap().is_empty());
    assert_eq!(store.replicas().await.unwrap().len(), 1);
    // Closed, not dropped: its connections close (and the WAL goes) before
    // the files are read.
    store.close().await.unwrap();
    for file in std::fs::read_dir(dirs[3].path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(!bytes.windows(15).any(|w| w == b"left with the r"), "plaintext at the replication node");
    }
}
