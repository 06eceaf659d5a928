//! What is forgotten, outlives its retention or leaves with a removed
//! contact is gone from the database file and its WAL.

use veil_crypto::{AccountKeys, GroupId, OsEntropy, time::UnixTime};
use veil_storage::{Addressee, ContactState, Store};

use crate::{
    common::options,
    fixture::{PASSPHRASE, clock, fill, needle, passphrase},
    scan::{Scan, assert_absent, files_of},
};

/// Forgotten messages leave nothing of their content in the database file
/// or its WAL: the sealed bodies found there before are gone after, while
/// the store stays whole (hashes kept, nothing erased listed or served).
#[tokio::test]
async fn forgotten_messages_are_erased_from_the_file_and_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("veil.db");
    let store = Store::create(&db, &passphrase(PASSPHRASE), options(&clock())).await.unwrap();
    let f = fill(&store).await;
    let mut bodies = Vec::new();
    for (i, h) in f.hashes.iter().enumerate() {
        let entry = store.entry(h).await.unwrap().unwrap();
        bodies.push(needle(format!("sealed body of message {i}"), &entry.sealed.body));
        bodies.push(needle(format!("sealed header of message {i}"), &entry.sealed.header));
    }
    // Not vacuous: before, the scan finds them (the WAL or the file holds them).
    let before = files_of(&db);
    let scan = Scan::new(&before);
    assert!(bodies.iter().all(|n| scan.first_found(std::slice::from_ref(n)).is_some()));

    assert_eq!(store.forget_messages(&f.group, None).await.unwrap(), f.hashes.len() as u64);
    assert_absent(&files_of(&db), &f, &bodies);
    assert!(store.entry(&f.hashes[0]).await.unwrap().is_none(), "an erased message is not listed");
    assert!(store.sealed_entries_of(&f.group, &f.hashes).await.unwrap().is_empty(), "nor served");
    assert_eq!(store.group_hashes(&f.group).await.unwrap().len(), f.hashes.len(), "its hash stays in the log");
    assert_eq!(store.outbox_len(&Addressee([0x42; 32])).await.unwrap(), 0, "nor owed to anyone");
    assert_eq!(store.forget_messages(&f.group, None).await.unwrap(), 0, "erasing again erases nothing");
    store.integrity_check().await.unwrap();
    store.close().await.unwrap();
    assert_absent(&files_of(&db), &f, &bodies);
}

/// Retention erases what is older than the conversation keeps, not newer.
#[tokio::test]
async fn retention_erases_only_what_is_older_than_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = Store::create(&dir.path().join("veil.db"), &passphrase(PASSPHRASE), options(&clock)).await.unwrap();
    let f = fill(&store).await;
    assert!(store.retention().await.unwrap().is_empty());
    let week = std::time::Duration::from_secs(7 * 86_400);
    store.set_retention(&f.group, Some(week)).await.unwrap();
    assert_eq!(store.retention().await.unwrap(), vec![(f.group, week)]);
    // Everything was received at the clock's time: a cut-off at that time keeps it all.
    assert_eq!(store.forget_messages(&f.group, Some(UnixTime(1_800_000_000))).await.unwrap(), 0);
    assert_eq!(store.forget_messages(&f.group, Some(UnixTime(1_800_000_001))).await.unwrap(), 6);
    store.set_retention(&f.group, None).await.unwrap();
    assert!(store.retention().await.unwrap().is_empty());
    assert!(store.set_retention(&GroupId([9; 32]), None).await.is_err(), "an unknown group");
}

/// A contact removed for good takes its 1:1 conversation with it: the
/// group, its keys, chains and entries leave the store, and nothing of the
/// entries is left in the file or its WAL.
#[tokio::test]
async fn a_removed_contact_leaves_nothing_of_its_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("veil.db");
    let store = Store::create(&db, &passphrase(PASSPHRASE), options(&clock())).await.unwrap();
    let f = fill(&store).await;
    let them = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    store.upsert_contact(&them, Some("Carol"), None, ContactState::OutgoingSent).await.unwrap();
    store.set_contact_state(&them.signing, ContactState::Accepted, Some(&f.group)).await.unwrap();
    let mut sealed = Vec::new();
    for (i, h) in f.hashes.iter().enumerate() {
        sealed.push(needle(format!("sealed body of message {i}"), &store.entry(h).await.unwrap().unwrap().sealed.body));
    }

    assert!(store.remove_contact(&them.signing).await.unwrap());
    assert!(store.contact(&them.signing).await.unwrap().is_none());
    assert!(store.group(&f.group).await.unwrap().is_none(), "the group and its keys are gone");
    assert!(store.sender_chain(&f.group).await.unwrap().is_none());
    assert!(store.receiver_chain(&f.group, &f.group_device.verify_key()).await.unwrap().is_none());
    assert!(!store.contains_entry(&f.hashes[0]).await.unwrap());
    assert_eq!(store.outbox_len(&Addressee([0x42; 32])).await.unwrap(), 0);
    assert!(!store.remove_contact(&them.signing).await.unwrap(), "removing again finds nothing");
    store.integrity_check().await.unwrap();
    let files = files_of(&db);
    let scan = Scan::new(&files);
    assert_eq!(scan.first_found(&sealed), None);
    assert_eq!(scan.first_found(&f.needles), None);
}
