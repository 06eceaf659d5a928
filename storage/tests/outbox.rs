//! What the store owes peers and how it keeps it: replicas, the outbox and its retry delays, acknowledgements, owed counts, and commits made durable (deferred syncs, reservations across an unclean stop).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{group_fixture, metadata_entry, owed_to, temp_store, three_messages};
use veil_crypto::{
    OsEntropy, SenderChain, TestEntropy,
    envelope::{BodyKey, EntryHash, EntryKind, Position, seal_entry},
    time::{Clock, UnixTime},
};
use veil_storage::{Addressee, Appended, GroupKind, NewEntry, RatchetUpdate, Store};

#[tokio::test]
async fn replicas_keep_credentials_and_entries_in_sync_order() {
    let t = temp_store().await;
    let (_, keys, device) = group_fixture(6);
    let credential = keys.replication_credential();
    let id = credential.replication_id;
    assert!(t.store.replica_hashes(&id).await.unwrap().is_empty());
    assert!(t.store.replica_store(&id, &[]).await.is_err(), "not replicated yet");
    assert!(t.store.add_replica(&credential).await.unwrap());
    assert!(!t.store.add_replica(&credential).await.unwrap());
    assert_eq!(t.store.replicas().await.unwrap(), vec![credential]);

    let (a, _) = metadata_entry(&keys, &device, 1, vec![], b"a");
    let (b, _) = metadata_entry(&keys, &device, 2, vec![a.hash()], b"b");
    let entry = |sealed: &veil_crypto::envelope::SealedEntry, lamport| veil_storage::ReplicaEntry {
        sealed: sealed.clone(),
        kind: EntryKind::Metadata,
        lamport,
    };
    assert_eq!(
        t.store.replica_store(&id, &[entry(&b, 2), entry(&a, 1), entry(&b, 2)]).await.unwrap(),
        vec![true, true, false]
    );
    assert_eq!(t.store.replica_store(&id, &[entry(&a, 1)]).await.unwrap(), vec![false]);
    let mut sorted = vec![a.hash(), b.hash()];
    sorted.sort();
    assert_eq!(t.store.replica_hashes(&id).await.unwrap(), sorted);
    assert_eq!(t.store.replica_entries(&id, &[b.hash(), a.hash()]).await.unwrap(), vec![a.clone(), b.clone()]);
    let mut positions = t.store.replica_positions(&id, &[b.hash(), EntryHash([0; 32])]).await.unwrap();
    positions.sort_by_key(|p| p.2);
    assert_eq!(positions, vec![(b.hash(), EntryKind::Metadata, 2)]);
}

#[tokio::test]
async fn entries_pushed_live_come_due_only_after_their_retry_delay() {
    let t = temp_store().await;
    let (gid, sealed, position) = three_messages(&t).await;
    let peer = Addressee([5; 32]);
    let batch = owed_to(gid, &sealed, &position, std::slice::from_ref(&peer));
    let retry_after = std::time::Duration::from_secs(30);
    let (first, unsynced) = t.store.append_batch_pushed(&batch[..1], retry_after).await.unwrap();
    t.store.sync(unsynced).await.unwrap();
    // The group's row id is known now: the next batch is one round trip
    // (no read), and stored the same way.
    let (rest, unsynced) = t.store.append_batch_pushed(&batch[1..], retry_after).await.unwrap();
    t.store.sync(unsynced).await.unwrap();
    assert_eq!([first, rest].concat(), vec![Appended::Stored; 3]);
    assert_eq!(t.store.outbox_len(&peer).await.unwrap(), 3, "owed all the same");
    assert!(t.store.outbox_due(&peer, t.clock.now(), 10).await.unwrap().is_empty(), "being pushed: not due");
    let retry = UnixTime(t.clock.now().0 + 30);
    let due: Vec<EntryHash> = t.store.outbox_due(&peer, retry, 10).await.unwrap().iter().map(|i| i.hash).collect();
    assert_eq!(due, sealed.iter().map(|s| s.hash()).collect::<Vec<_>>(), "unacknowledged: due, in order");
    // A new session makes them due at once.
    assert_eq!(t.store.reschedule(&peer, t.clock.now()).await.unwrap(), 3);
    // The heads are kept as by any append: the last entry only.
    assert_eq!(t.store.heads(&gid, EntryKind::Message).await.unwrap(), vec![sealed[2].hash()]);
}

#[tokio::test]
async fn acknowledgements_of_several_peers_are_recorded_together() {
    let t = temp_store().await;
    let (gid, sealed, position) = three_messages(&t).await;
    let (a, b) = (Addressee([1; 32]), Addressee([2; 32]));
    let both = [a, b];
    let batch = owed_to(gid, &sealed, &position, &both);
    t.store.append_batch(&batch).await.unwrap();
    let hashes: Vec<EntryHash> = sealed.iter().map(|s| s.hash()).collect();
    let unknown = EntryHash([0xee; 32]);
    let removed = t
        .store
        .ack_many(&[(a, hashes[..2].to_vec()), (b, vec![hashes[0], unknown]), (a, hashes[..1].to_vec())])
        .await
        .unwrap();
    assert_eq!(removed, vec![2, 1, 0], "per acknowledgement; unknown and repeated hashes remove nothing");
    assert_eq!(t.store.outbox_len(&a).await.unwrap(), 1);
    assert_eq!(t.store.outbox_len(&b).await.unwrap(), 2);
    assert_eq!(t.store.ack_many(&[]).await.unwrap(), Vec::<u64>::new());
}

#[tokio::test]
async fn owed_counts_say_how_many_peers_have_not_acknowledged_each_entry() {
    let t = temp_store().await;
    let (gid, sealed, position) = three_messages(&t).await;
    let (a, b, stranger) = (Addressee([1; 32]), Addressee([2; 32]), Addressee([3; 32]));
    t.store.append_batch(&owed_to(gid, &sealed, &position, &[a, b])).await.unwrap();
    let hashes: Vec<EntryHash> = sealed.iter().map(|s| s.hash()).collect();
    t.store.ack(&a, &hashes[..1]).await.unwrap();
    t.store.ack(&b, &hashes[..2]).await.unwrap();
    let mut counts = t.store.owed_counts(&[a, b], &hashes).await.unwrap();
    counts.sort_by_key(|(h, _)| hashes.iter().position(|x| x == h));
    assert_eq!(counts, vec![(hashes[1], 1), (hashes[2], 2)], "the first one is acknowledged by both");
    assert_eq!(t.store.owed_counts(&[b], &hashes).await.unwrap(), vec![(hashes[2], 1)]);
    assert!(t.store.owed_counts(&[stranger], &hashes).await.unwrap().is_empty());
}

#[tokio::test]
async fn one_sync_covers_every_deferred_commit_before_it() {
    let t = temp_store().await;
    let (gid, sealed, position) = three_messages(&t).await;
    let batch = owed_to(gid, &sealed, &position, &[]);
    let (_, first) = t.store.append_batch_deferred(&batch[..1]).await.unwrap();
    let (_, second) = t.store.append_batch_deferred(&batch[1..]).await.unwrap();
    assert_eq!(t.store.wal_syncs(), 0);
    t.store.sync(second).await.unwrap();
    t.store.sync(first).await.unwrap();
    t.store.sync(second).await.unwrap();
    assert_eq!(t.store.wal_syncs(), 1, "the first sync covered both");
    let (_, third) = t.store.append_batch_deferred(&batch).await.unwrap();
    let (a, b) = tokio::join!(t.store.sync(third), t.store.sync(third));
    a.unwrap();
    b.unwrap();
    assert_eq!(t.store.wal_syncs(), 2, "callers at once share one sync");
    assert_eq!(t.store.heads(&gid, EntryKind::Message).await.unwrap(), vec![sealed[2].hash()]);
}

#[tokio::test]
async fn syncs_are_skipped_under_process_crash_durability_but_not_for_reservations() {
    let dir = tempfile::tempdir().unwrap();
    let clock = veil_crypto::time::ManualClock::new(UnixTime(1_800_000_000));
    let tuning = veil_storage::Tuning { durability: veil_storage::Durability::ProcessCrash, ..Default::default() };
    let store =
        Store::create(&dir.path().join("veil.db"), &common::key_file(&dir), common::options_with(&clock, tuning))
            .await
            .unwrap();
    let t = common::TempStore { dir, store, clock };
    let (gid, sealed, position) = three_messages(&t).await;
    let (_, unsynced) = t.store.append_batch_deferred(&owed_to(gid, &sealed, &position, &[])).await.unwrap();
    t.store.sync(unsynced).await.unwrap();
    assert_eq!(t.store.wal_syncs(), 0);
    t.store.sync_regardless(unsynced).await.unwrap();
    assert_eq!(t.store.wal_syncs(), 1);
}

/// Seals the next message of `chain` and stores it deferred, reserving
/// positions up to `reserved_until`, then syncs.
async fn send_reserving(
    store: &Store,
    gid: veil_crypto::GroupId,
    chain: &mut SenderChain,
    lamport: u64,
    reserved_until: u64,
) {
    let (_, keys, device) = group_fixture(9);
    let position = Position { kind: EntryKind::Message, lamport, parents: vec![] };
    let sealed =
        seal_entry(&keys, &device, &position, BodyKey::Message(chain), b"m", &mut TestEntropy::new(b"r")).unwrap();
    let entry = NewEntry {
        group: gid,
        entry: &sealed,
        position: &position,
        author: Some(device.verify_key()),
        payload: Some(b"m"),
        ratchet: Some(RatchetUpdate::Sender { state: chain.state(), reserved_until }),
        outbox: &[],
    };
    let (_, unsynced) = store.append_batch_deferred(std::slice::from_ref(&entry)).await.unwrap();
    store.sync_regardless(unsynced).await.unwrap();
}

#[tokio::test]
async fn reserved_positions_outlive_an_unclean_stop_and_a_clean_close_releases_them() {
    let t = temp_store().await;
    let (secret, _, device) = group_fixture(9);
    let gid = t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    let mut chain = SenderChain::generate(&mut TestEntropy::new(b"reserve")).unwrap();
    t.store.save_sender_chain(&gid, chain.state()).await.unwrap();
    send_reserving(&t.store, gid, &mut chain, 1, 1 + 100).await;
    // A lower reservation never lowers what is stored.
    send_reserving(&t.store, gid, &mut chain, 2, 2).await;
    let record = t.store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!((record.state.next, record.reserved_until, record.resume_at()), (2, 101, 101));

    // Stopped without closing (as a crash would): the reservation holds.
    let common::TempStore { dir, store, clock } = t;
    drop(store);
    let (path, key) = (dir.path().join("veil.db"), common::key_file(&dir));
    let reopen = || Store::open(&path, &key, common::options(&clock));
    let store = reopen().await.unwrap();
    let record = store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!(&record.state, chain.state());
    assert_eq!(record.resume_at(), 101);

    // Closed cleanly: released, the chain resumes where it stands.
    store.close().await.unwrap();
    let store = reopen().await.unwrap();
    let record = store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!((record.state.next, record.resume_at()), (2, 2));
    // A new chain (a new epoch) starts with nothing reserved.
    store.save_sender_chain(&gid, SenderChain::generate(&mut OsEntropy).unwrap().state()).await.unwrap();
    assert_eq!(store.sender_chain(&gid).await.unwrap().unwrap().resume_at(), 0);
}
