//! What a device copy refuses, and that a refused or dropped one leaves
//! nothing behind.

use std::os::unix::fs::PermissionsExt;

use veil_crypto::{OsEntropy, SigningSecret};
use veil_storage::{Error, MAX_DEVICE_COPY, ReceivedCopy};

use crate::{
    common::{contains_bytes, dir_listing, temp_store},
    fixture::{first_store, link},
};

/// Why a device copy was refused.
fn refused<T>(r: veil_storage::Result<T>) -> &'static str {
    match r {
        Err(Error::Invalid { what: "device copy", reason }) => reason,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("not refused"),
    }
}

fn device() -> SigningSecret {
    SigningSecret::generate(&mut OsEntropy).unwrap()
}

#[tokio::test]
async fn a_wrong_length_a_short_or_foreign_copy_or_a_wrong_key_is_refused_and_leaves_nothing() {
    let first = first_store().await;
    let stream = first.stream().await;
    let total = stream.len() as u64;
    let to = tempfile::tempdir().unwrap();
    let (db, key) = (to.path().join("veil.db"), to.path().join("storage.key"));
    let nothing_left = || assert!(dir_listing(to.path()).is_empty(), "left {:?}", dir_listing(to.path()));

    for len in [0, 32 + 99, MAX_DEVICE_COPY + 1] {
        assert!(refused(ReceivedCopy::begin(&db, &key, len)).contains("length"), "length {len}");
    }
    nothing_left();

    // Bytes past the announced length: a piece that would overflow keeps
    // nothing of itself, a byte after the end is refused.
    let mut received = ReceivedCopy::begin(&db, &key, total).unwrap();
    assert!(refused(received.push(&[&stream[..], &[0]].concat())).contains("more bytes"));
    received.push(&stream[..100]).unwrap();
    received.push(&stream[100..]).unwrap();
    assert!(refused(received.push(&[0])).contains("more bytes"));
    drop(received);
    nothing_left();

    // Finishing short.
    assert!(refused(link(&first, to.path(), total, [&stream[..stream.len() - 1]], &device()).await).contains("fewer"));
    nothing_left();
    // Not SQLite after the key; an SQLite file cut short.
    let garbage = [&stream[..32], &[0xab; 8192][..]].concat();
    assert!(refused(link(&first, to.path(), garbage.len() as u64, [&garbage[..]], &device()).await).contains("SQLite"));
    nothing_left();
    let cut = &stream[..stream.len() - 4096];
    assert!(refused(link(&first, to.path(), cut.len() as u64, [cut], &device()).await).contains("SQLite"));
    nothing_left();
    // Another key than the copy's.
    let other_key = [&[0x5a; 32][..], &stream[32..]].concat();
    assert!(refused(link(&first, to.path(), total, [&other_key[..]], &device()).await).contains("does not open"));
    nothing_left();
    // The first device's own key as the new one.
    let same = first.identity.device.clone();
    assert!(refused(link(&first, to.path(), total, [&stream[..]], &same).await).contains("first device"));
    nothing_left();

    // Dropped unfinished, half received.
    let mut received = ReceivedCopy::begin(&db, &key, total).unwrap();
    received.push(&stream[..stream.len() / 2]).unwrap();
    let shown = format!("{received:?}");
    assert!(shown.contains("redacted") && !shown.contains(&format!("{:?}", &stream[..32])), "{shown}");
    drop(received);
    nothing_left();

    // And then it goes through.
    link(&first, to.path(), total, [&stream[..]], &device()).await.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn an_existing_database_or_key_file_is_left_alone() {
    let first = first_store().await;
    let total = first.stream().await.len() as u64;
    let to = tempfile::tempdir().unwrap();
    let (db, key) = (to.path().join("veil.db"), to.path().join("storage.key"));
    for taken in [&db, &key] {
        std::fs::write(taken, b"someone's").unwrap();
        assert!(matches!(ReceivedCopy::begin(&db, &key, total), Err(Error::AlreadyExists { path }) if path == *taken));
        assert_eq!(std::fs::read(taken).unwrap(), b"someone's");
        assert_eq!(dir_listing(to.path()).len(), 1, "nothing else made");
        std::fs::remove_file(taken).unwrap();
    }
}

#[tokio::test]
async fn a_copy_is_for_the_key_holder_only_and_its_file_is_private_and_goes_with_it() {
    let first = first_store().await;
    let copies = tempfile::tempdir().unwrap();
    let other = temp_store().await;
    let not_ours = other.store.key_access().unwrap();
    assert!(matches!(
        first.t.store.device_copy(&not_ours, copies.path()).await,
        Err(Error::Invalid { what: "key access", .. })
    ));
    assert!(dir_listing(copies.path()).is_empty());

    let mut copy = first.copy_into(copies.path()).await;
    let files = dir_listing(copies.path());
    assert_eq!(files.len(), 1);
    let meta = std::fs::metadata(copies.path().join(&files[0])).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len() + 32, copy.total_len());
    let key = copy.next_piece(32).unwrap();
    let shown = format!("{copy:?}");
    assert!(shown.contains("redacted") && !shown.contains(&format!("{:?}", &key[..])), "{shown}");
    assert!(!contains_bytes(&std::fs::read(copies.path().join(&files[0])).unwrap(), &key), "no key in the copy");
    assert!(matches!(copy.next_piece(0), Err(Error::Invalid { .. })));
    drop(copy);
    assert!(dir_listing(copies.path()).is_empty(), "dropped, its file is removed");

    // A store with no identity is no account to link to.
    let stream = {
        let access = other.store.key_access();
        assert!(access.is_err(), "taken above");
        let mut copy = other.store.device_copy(&not_ours, copies.path()).await.unwrap();
        copy.next_piece(usize::MAX).unwrap().to_vec()
    };
    let to = tempfile::tempdir().unwrap();
    assert!(
        refused(link(&first, to.path(), stream.len() as u64, [&stream[..]], &device()).await).contains("no account")
    );
    assert!(dir_listing(to.path()).is_empty());
}
