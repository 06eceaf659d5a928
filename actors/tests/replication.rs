//! Blind replication: a node given a group's replication credential (not its
//! secret) stores and serves the group's entries, so members who are never
//! online at the same time converge through it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use veil_actors::Node;
use veil_crypto::time::{ManualClock, UnixTime};
use veil_storage::{Store, StoreOptions, keystore::KeySource};
use veil_testkit::node::{self, T0, peer, texts, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_never_online_together_converge_through_a_replication_node() {
    const COUNT: usize = 50;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let node::GroupOfTwo { server, addr, a, b, group, .. } = node::group_of_two(&dirs, &clock).await;
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
    node::until_replicated(&r, &replication, &a, &group).await;

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

/// A writer whose timed chain share never comes within the test: it
/// shares only because it stops (and shares on restart) or writes.
async fn writer(dir: &tempfile::TempDir, clock: &ManualClock, server: &[veil_transports::libp2p::Multiaddr]) -> Node {
    const NEVER: Duration = Duration::from_secs(3600);
    node::peer_builder(dir, clock, server, node::memory(), node::schedule())
        .chain_share_delay(NEVER)
        .spawn()
        .await
        .unwrap()
}

/// Newcomers that stop the moment `join` returns read, when they come
/// back, everything written after their join and nothing before — served
/// only by a blind replication node, the writer being offline by then.
/// The writer's timed share never fires here: it learns of B and stops
/// at once (the share is still owed when it starts again), and it learns
/// of C and writes at once (the share goes before its next message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomers_that_stop_right_after_joining_read_what_is_written_after() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let (server, addr) = node::rendezvous_server(&dirs[0]).await;
    let mut a = writer(&dirs[1], &clock, &addr).await;
    let group = a.create_group(None).await.unwrap();
    let r = peer(&dirs[4], &clock, &addr).await;
    let replication = r.replicate(&a.replication_credential(&group).await.unwrap()).await.unwrap();
    let invitation = a.invite(&group, None).await.unwrap();
    let knows = |n: &Node, count: usize| {
        let n = n.clone();
        async move {
            let mut events = n.events();
            until(&mut events, || async { n.members(&group).await.unwrap().len() == count }).await;
        }
    };

    // B joins and stops; A learns of B and stops before sharing.
    let b = peer(&dirs[2], &clock, &addr).await;
    b.join(&invitation).await.unwrap();
    b.shutdown().await.unwrap();
    knows(&a, 2).await;
    a.shutdown().await.unwrap();
    a = writer(&dirs[1], &clock, &addr).await;
    for i in 0..10 {
        a.send(&group, format!("before C {i}").as_bytes()).await.unwrap();
    }

    // C joins and stops; A learns of C and writes at once.
    let c = peer(&dirs[3], &clock, &addr).await;
    c.join(&invitation).await.unwrap();
    c.shutdown().await.unwrap();
    knows(&a, 3).await;
    for i in 0..10 {
        a.send(&group, format!("after C {i}").as_bytes()).await.unwrap();
    }

    // The replication node takes everything; A goes offline.
    let mut events = r.events();
    until(&mut events, || async {
        r.replicated_entries(&replication).await.unwrap() == a.stored_entries(&group).await.unwrap()
    })
    .await;
    let written = texts(&a, &group).await;
    assert_eq!(written.len(), 20);
    a.shutdown().await.unwrap();

    // B and C come back to the replication node alone.
    let b = peer(&dirs[2], &clock, &addr).await;
    let c = peer(&dirs[3], &clock, &addr).await;
    for (n, expected) in [(&b, &written[..]), (&c, &written[10..])] {
        let mut events = n.events();
        until(&mut events, || async { texts(n, &group).await.len() == expected.len() }).await;
        assert_eq!(texts(n, &group).await, expected, "all written after the join, nothing before, in order");
    }
    // C holds the earlier messages too (the log is whole), unreadable. (B
    // and C share their chains with the members they learn of as they
    // come back: the counts grow until those shares are everywhere.)
    let mut events = c.events();
    until(&mut events, || async {
        c.stored_entries(&group).await.unwrap() == r.replicated_entries(&replication).await.unwrap()
    })
    .await;
    assert_eq!(texts(&c, &group).await, &written[10..]);
    for n in [b, c, r, server] {
        n.shutdown().await.unwrap();
    }
}
