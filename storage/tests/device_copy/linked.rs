//! A device copy, cut into pieces of any size, makes a new device of the
//! same account that reads what the first device writes after it.

use veil_crypto::{
    OsEntropy, SenderChain, SigningSecret,
    envelope::{BodyKey, EntryKind, Position, open_entry, seal_entry},
    ratchet::DEFAULT_WINDOW,
};
use veil_storage::{DeviceCopy, Store, keystore::KeySource};
use zeroize::Zeroizing;

use crate::{
    common::dir_listing,
    fixture::{First, PEER, first_store, link},
};

/// Every piece of `copy` read `max` bytes at a time: each exactly `max`
/// but the last, then nothing.
fn pieces(copy: &mut DeviceCopy, max: usize) -> Vec<Zeroizing<Vec<u8>>> {
    let mut out = vec![];
    loop {
        let piece = copy.next_piece(max).unwrap();
        if piece.is_empty() {
            break;
        }
        out.push(piece);
    }
    let (last, whole) = out.split_last().unwrap();
    assert!(whole.iter().all(|p| p.len() == max) && !last.is_empty() && last.len() <= max);
    assert_eq!(out.iter().map(|p| p.len() as u64).sum::<u64>(), copy.total_len());
    assert!(copy.next_piece(max).unwrap().is_empty(), "still empty at the end");
    out
}

/// Everything the brief of a linked store says, against the first store.
async fn assert_linked(first: &First, linked: &Store, device: &SigningSecret) {
    let keys = linked.key_access().unwrap();
    let me = linked.load_identity(&keys).await.unwrap().unwrap();
    assert_eq!(me.account.public(), first.identity.account.public());
    assert_eq!(me.account.signing.to_seed(), first.identity.account.signing.to_seed());
    assert_eq!(me.alias.to_seed(), first.identity.alias.to_seed());
    assert_eq!(me.device.to_seed(), device.to_seed(), "the new device's key is this store's");
    let devices = linked.devices().await.unwrap();
    assert_eq!(devices.len(), 2);
    let this: Vec<_> = devices.iter().filter(|d| d.is_this_device).map(|d| d.device).collect();
    assert_eq!(this, [device.verify_key()]);
    assert!(devices.iter().any(|d| d.device == first.identity.device.verify_key() && !d.is_this_device));

    let group_keys = linked.group_device_keys(&keys).await.unwrap();
    assert_eq!(group_keys.iter().map(|k| k.group).collect::<Vec<_>>(), first.groups);
    for (new, old) in group_keys.iter().zip(&first.group_devices) {
        assert_ne!(&new.key.verify_key(), old, "a new device key in every group");
    }
    for (hash, payload) in &first.entries {
        let entry = linked.entry(hash).await.unwrap().expect("history is kept");
        assert_eq!(entry.payload.as_deref().map(|p| p.to_vec()), *payload);
    }
    assert_eq!(linked.contact(&first.contact.signing).await.unwrap().unwrap().display_name.as_deref(), Some("Bob"));

    for (group, author, state) in &first.authors {
        let chain = linked.receiver_chain(group, author).await.unwrap().expect("the first device's chain");
        assert_eq!((chain.state(), chain.window()), (state, DEFAULT_WINDOW));
    }
    // C: a sending chain but nothing written; D: no sending chain.
    for (group, device) in first.groups[2..].iter().zip(&first.group_devices[2..]) {
        assert!(linked.receiver_chain(group, device).await.unwrap().is_none());
    }
    for group in &first.groups {
        assert!(linked.sender_chain(group).await.unwrap().is_none(), "no sending chain");
    }
    assert!(linked.outbox_peers().await.unwrap().is_empty(), "nothing owed");
    linked.integrity_check().await.unwrap();
}

#[tokio::test]
async fn a_copy_in_pieces_of_any_size_makes_a_new_device_of_the_same_account() {
    let first = first_store().await;
    let copies = tempfile::tempdir().unwrap();
    // 1 byte, a few, a page, more than the whole file.
    for max in [1, 7, 4096, usize::MAX] {
        let mut copy = first.copy_into(copies.path()).await;
        let total = copy.total_len();
        let pieces = pieces(&mut copy, max);
        drop(copy);
        let to = tempfile::tempdir().unwrap();
        let device = SigningSecret::generate(&mut OsEntropy).unwrap();
        let linked = link(&first, to.path(), total, pieces.iter().map(|p| &p[..]), &device).await.unwrap();
        assert_linked(&first, &linked, &device).await;
        linked.close().await.unwrap();
        let reopened = Store::open(
            &to.path().join("veil.db"),
            &KeySource::KeyFile(to.path().join("storage.key")),
            first.options(),
        )
        .await
        .unwrap();
        assert_linked(&first, &reopened, &device).await;
        reopened.close().await.unwrap();
    }
    assert!(dir_listing(copies.path()).is_empty(), "every copy's file went with it");
    // The first store is as it was: it keeps its chains and what it owes.
    for (group, _, state) in &first.authors {
        assert_eq!(&first.t.store.sender_chain(group).await.unwrap().unwrap().state, state);
    }
    assert_eq!(first.t.store.outbox_peers().await.unwrap(), [PEER]);
}

#[tokio::test]
async fn the_new_device_reads_what_the_first_writes_after_the_copy() {
    let first = first_store().await;
    let stream = first.stream().await;
    let to = tempfile::tempdir().unwrap();
    let device = SigningSecret::generate(&mut OsEntropy).unwrap();
    let linked = link(&first, to.path(), stream.len() as u64, [&stream[..]], &device).await.unwrap();

    // The first device writes on in group A, past a position it reserved
    // (and may have used) before the copy.
    let (group, author, state) = &first.authors[0];
    let mut chain = SenderChain::from_state(state.clone());
    chain.skip_to(state.next + 5).unwrap();
    let position = Position { kind: EntryKind::Message, lamport: 20, parents: vec![] };
    let sealed =
        seal_entry(&first.a_keys, &first.a_device, &position, BodyKey::Message(&mut chain), b"after", &mut OsEntropy)
            .unwrap();
    let mut receiver = linked.receiver_chain(group, author).await.unwrap().unwrap();
    let opened = open_entry(&first.a_keys, &sealed).unwrap();
    assert_eq!(&opened.read_message(&mut receiver).unwrap()[..], b"after");
    linked.close().await.unwrap();
}
