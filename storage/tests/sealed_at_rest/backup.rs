//! A backup file: sealed, restored whole elsewhere, refused when wrong.

use veil_storage::{
    Error, Store,
    keystore::{KdfParams, KeySource},
};

use crate::{
    common::options,
    fixture::{PASSPHRASE, assert_same_identity, clock, fill, passphrase},
    scan::Scan,
};

/// A backup restores everything on another machine under a key file of its
/// own, with a new device key in every group; a wrong passphrase, a damaged
/// or cut file restore nothing; and the backup file holds no secret in clear.
#[tokio::test]
async fn a_backup_restores_everything_and_refuses_a_wrong_passphrase_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("veil.db"), &passphrase(PASSPHRASE), options(&clock())).await.unwrap();
    let f = fill(&store).await;
    let file = dir.path().join("account.veilbackup");
    let secret = "a backup passphrase, long enough";
    store.backup(&file, secret, KdfParams::FAST_INSECURE_FOR_TESTS).await.unwrap();
    assert!(matches!(
        store.backup(&file, secret, KdfParams::FAST_INSECURE_FOR_TESTS).await,
        Err(Error::AlreadyExists { .. })
    ));
    let bytes = std::fs::read(&file).unwrap();
    let scan_files = vec![(file.clone(), bytes.clone())];
    assert_eq!(Scan::new(&scan_files).first_found(&f.needles), None, "the backup seals every secret");

    let other = tempfile::tempdir().unwrap();
    let (db, key) = (other.path().join("veil.db"), other.path().join("storage.key"));
    let nothing_left = || {
        let left: Vec<_> = std::fs::read_dir(other.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "a refused restore left {left:?}");
    };
    assert!(matches!(
        Store::restore(&file, "not it", &db, &key, options(&clock())).await,
        Err(Error::BackupPassphrase)
    ));
    nothing_left();
    let damaged = dir.path().join("damaged");
    let mut flipped = bytes.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 1;
    std::fs::write(&damaged, &flipped).unwrap();
    assert!(matches!(Store::restore(&damaged, secret, &db, &key, options(&clock())).await, Err(Error::Backup(_))));
    std::fs::write(&damaged, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(Store::restore(&damaged, secret, &db, &key, options(&clock())).await, Err(Error::Backup(_))));
    std::fs::write(&damaged, b"not a backup at all").unwrap();
    assert!(matches!(Store::restore(&damaged, secret, &db, &key, options(&clock())).await, Err(Error::Backup(_))));
    nothing_left();

    let restored = Store::restore(&file, secret, &db, &key, options(&clock())).await.unwrap();
    let keys = restored.key_access().unwrap();
    assert_same_identity(&restored.load_identity(&keys).await.unwrap().unwrap(), &f.identity);
    let g = restored.group(&f.group).await.unwrap().unwrap();
    assert_eq!(g.secret, f.group_secret);
    let device = restored.group_device_keys(&keys).await.unwrap().remove(0);
    assert_ne!(device.key.verify_key(), f.group_device.verify_key(), "a new device key in the group");
    assert!(restored.sender_chain(&f.group).await.unwrap().is_none(), "and no sending chain of the old device");
    for (h, p) in f.hashes.iter().zip(&f.payloads) {
        assert_eq!(&restored.entry(h).await.unwrap().unwrap().payload.unwrap()[..], &p[..]);
    }
    assert_eq!(restored.link().await.unwrap().unwrap().seed, f.link);
    restored.integrity_check().await.unwrap();
    assert!(matches!(
        Store::restore(&file, secret, &db, &key, options(&clock())).await,
        Err(Error::AlreadyExists { .. })
    ));
    restored.close().await.unwrap();
    // It opens again with its key file.
    Store::open(&db, &KeySource::KeyFile(key), options(&clock())).await.unwrap().close().await.unwrap();
}
