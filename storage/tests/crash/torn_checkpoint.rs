//! A kill in the middle of a checkpoint, made deterministic.

use std::{collections::BTreeSet, path::Path};

use veil_crypto::{
    OsEntropy, SenderChain,
    envelope::{BodyKey, EntryHash, EntryKind, Position, seal_entry},
};
use veil_storage::{Addressee, Durability, NewEntry, RatchetUpdate, Store};

use crate::{
    common::{group_fixture, options_with, with_suffix},
    fixture::{ALL, Config, EVEN, FORKING, GROUP_SEED, clock, db_path, initial_chain, key, message_payload, rt, setup},
    verify::verify,
};

/// The image of page 1 in the newest committed frame of a WAL file.
fn newest_page_one(wal: &[u8]) -> Vec<u8> {
    let page_size = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let salts = &wal[16..24];
    let mut found = None;
    let mut at = 32;
    while at + 24 + page_size <= wal.len() {
        let frame = &wal[at..at + 24];
        if &frame[8..16] == salts && u32::from_be_bytes(frame[..4].try_into().unwrap()) == 1 {
            found = Some(wal[at + 24..at + 24 + page_size].to_vec());
        }
        at += 24 + page_size;
    }
    found.expect("page 1 is in the WAL")
}

fn copy_files(from: &Path, to: &Path, names: &[&str]) {
    for name in names {
        let src = from.join(name);
        if src.exists() {
            std::fs::copy(&src, to.join(name)).unwrap();
        }
    }
}

/// BUG (reported, src/sqlite.rs `check_file`): a SQLite checkpoint copies
/// pages from the WAL into the main file in ascending page order, page 1
/// (whose header declares the new, larger page count) first, and the pages
/// that grow the file last. A process killed in between leaves a main file
/// shorter than its header declares — next to a WAL that holds every
/// committed page, which SQLite recovers from without loss. `check_file`
/// calls that file "truncated" and refuses it, so a node killed during a
/// checkpoint cannot reopen its (intact) database.
///
/// This builds that state exactly: a store whose growth is all in the WAL,
/// copied as a kill would leave it, then page 1 of the newest WAL frame
/// written over the main file's page 1, as the checkpoint's first write does.
#[test]
fn a_kill_during_a_checkpoint_is_recovered_not_refused() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    // No automatic checkpoints: everything after setup stays in the WAL.
    let config = Config { durability: Durability::ProcessCrash, checkpoint_pages: 0 };
    rt.block_on(setup(dir.path(), config));
    let db = db_path(dir.path());
    let (store, hashes) = rt.block_on(async {
        let store = {
            let _no_fork = FORKING.lock().await;
            Store::open(&db, &key(dir.path()), options_with(&clock(), config.tuning())).await.unwrap()
        };
        let (_, keys, device) = group_fixture(GROUP_SEED);
        let mut chain = SenderChain::from_state(initial_chain());
        let mut hashes: Vec<EntryHash> = vec![];
        for counter in 0..300u64 {
            let position = Position {
                kind: EntryKind::Message,
                lamport: counter + 1,
                parents: hashes.last().copied().into_iter().collect(),
            };
            let payload = message_payload(counter);
            let sealed =
                seal_entry(&keys, &device, &position, BodyKey::Message(&mut chain), &payload, &mut OsEntropy).unwrap();
            let outbox: &[Addressee] = if counter.is_multiple_of(2) { &[ALL, EVEN] } else { &[ALL] };
            store
                .append(NewEntry {
                    group: keys.id,
                    entry: &sealed,
                    position: &position,
                    author: Some(device.verify_key()),
                    payload: Some(&payload),
                    ratchet: Some(RatchetUpdate::Sender { state: chain.state(), reserved_until: 0 }),
                    outbox,
                })
                .await
                .unwrap();
            hashes.push(sealed.hash());
        }
        (store, hashes)
    });
    // The files as a SIGKILL right now would leave them (the store is still open).
    let names = ["veil.db", "veil.db-wal", "veil.db-shm", "storage.key"];
    let killed = tempfile::tempdir().unwrap();
    copy_files(dir.path(), killed.path(), &names);
    let main = std::fs::read(db_path(killed.path())).unwrap();
    let wal = std::fs::read(with_suffix(&db_path(killed.path()), "-wal")).unwrap();
    let page_one = newest_page_one(&wal);
    let declared = u32::from_be_bytes(page_one[28..32].try_into().unwrap()) as usize;
    assert!(declared * page_one.len() > main.len(), "the database grew in the WAL only");

    // The checkpoint got as far as its first write.
    let torn = tempfile::tempdir().unwrap();
    copy_files(killed.path(), torn.path(), &names);
    let mut torn_main = main.clone();
    torn_main[..page_one.len()].copy_from_slice(&page_one);
    std::fs::write(db_path(torn.path()), &torn_main).unwrap();
    rt.block_on(store.close()).unwrap();

    let must_have: BTreeSet<EntryHash> = hashes.iter().copied().collect();
    // Control: the plain crash image recovers.
    let v = rt.block_on(verify(killed.path(), config, &must_have));
    assert_eq!(v.messages, 300);
    // The torn checkpoint recovers just the same.
    let v = rt.block_on(verify(torn.path(), config, &must_have));
    assert_eq!(v.messages, 300);
}
