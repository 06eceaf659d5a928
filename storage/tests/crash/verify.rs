//! After a crash: reopens the store and checks every invariant listed in
//! `main.rs`.

use std::{collections::BTreeSet, path::Path};

use veil_crypto::{
    GroupId, ReceiverChain, SenderChain,
    envelope::{EntryHash, EntryKind, open_entry},
    time::UnixTime,
};
use veil_storage::{Addressee, EntryRecord, Store};

use crate::{
    common::{companions, group_fixture, options_with},
    fixture::{
        ALL, Config, EVEN, FORKING, GROUP_SEED, clock, db_path, initial_chain, key, message_payload, metadata_payload,
    },
};

/// What a verified store holds.
#[derive(Default)]
pub(crate) struct Verified {
    pub(crate) messages: u64,
    pub(crate) metadata: u64,
    pub(crate) hashes: BTreeSet<EntryHash>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} messages + {} metadata entries", self.messages, self.metadata)
    }
}

/// A whole log, read page by page in its total order.
pub(crate) async fn read_log(store: &Store, group: &GroupId, kind: EntryKind) -> Vec<EntryRecord> {
    let mut all: Vec<EntryRecord> = Vec::new();
    loop {
        let after = all.last().map(|e| (e.lamport, e.hash));
        let page =
            store.entries_after(group, kind, after, 37).await.unwrap_or_else(|e| panic!("a page does not read: {e}"));
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Checks a linear log: Lamport clocks 1..=n, each entry's parent the one
/// before, payloads as generated, every entry opening with the group keys.
/// Returns the hashes in order.
pub(crate) fn check_chain(records: &[EntryRecord], kind: EntryKind) -> Vec<EntryHash> {
    let (_, _, device) = group_fixture(GROUP_SEED);
    let mut prev: Option<EntryHash> = None;
    for (i, r) in records.iter().enumerate() {
        assert_eq!((r.kind, r.lamport), (kind, i as u64 + 1), "{kind:?} entry {i}");
        assert_eq!(r.parents, prev.into_iter().collect::<Vec<_>>(), "{kind:?} entry {i} names the one before");
        assert_eq!(r.author, Some(device.verify_key()));
        assert_eq!(r.sealed.hash(), r.hash);
        prev = Some(r.hash);
    }
    records.iter().map(|r| r.hash).collect()
}

/// Reopens the store in `dir` after a crash and checks every invariant.
/// `must_have` are entries reported committed (by this or earlier children).
pub(crate) async fn verify(dir: &Path, config: Config, must_have: &BTreeSet<EntryHash>) -> Verified {
    let db = db_path(dir);
    let no_fork = FORKING.lock().await;
    let store = Store::open(&db, &key(dir), options_with(&clock(), config.tuning()))
        .await
        .unwrap_or_else(|e| panic!("the store does not reopen after the crash: {e}"));
    drop(no_fork);
    store.integrity_check().await.unwrap();
    for h in must_have {
        assert!(store.contains_entry(h).await.unwrap(), "{h:?} was reported committed but is gone");
    }
    let (_, keys, _) = group_fixture(GROUP_SEED);
    let gid = keys.id;

    // The message log, and the ratchet that moved with it.
    let messages = read_log(&store, &gid, EntryKind::Message).await;
    let n = messages.len() as u64;
    assert_eq!(store.entry_count(&gid, EntryKind::Message).await.unwrap(), n);
    let message_hashes = check_chain(&messages, EntryKind::Message);
    let stored_chain = store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!(
        stored_chain.state.next, n,
        "the sender chain advanced once per stored message, in the same transaction"
    );
    let mut expected = SenderChain::from_state(initial_chain());
    for _ in 0..n {
        expected.next_key().unwrap();
    }
    assert_eq!(&stored_chain.state, expected.state(), "the stored chain is the initial one advanced {n} times");
    let mut receiver = ReceiverChain::new(initial_chain(), 4).unwrap();
    for (i, r) in messages.iter().enumerate() {
        let payload = message_payload(i as u64);
        assert_eq!(r.payload.as_deref().map(|p| &p[..]), Some(&payload[..]), "stored payload of message {i}");
        let opened = open_entry(&keys, &r.sealed).unwrap_or_else(|e| panic!("message {i} does not open: {e}"));
        assert_eq!(
            (opened.counter, opened.position.lamport, &opened.position.parents),
            (i as u64, r.lamport, &r.parents)
        );
        assert_eq!(&opened.read_message(&mut receiver).unwrap()[..], &payload[..], "message {i} decrypts");
    }

    // The metadata log.
    let metadata = read_log(&store, &gid, EntryKind::Metadata).await;
    let m = metadata.len() as u64;
    assert_eq!(store.entry_count(&gid, EntryKind::Metadata).await.unwrap(), m);
    let metadata_hashes = check_chain(&metadata, EntryKind::Metadata);
    for r in &metadata {
        let payload = metadata_payload(r.lamport);
        assert_eq!(r.payload.as_deref().map(|p| &p[..]), Some(&payload[..]));
        let opened = open_entry(&keys, &r.sealed).unwrap();
        assert_eq!(&opened.read_metadata(&keys).unwrap()[..], &payload[..]);
    }

    // Heads and missing parents.
    for (kind, hashes) in [(EntryKind::Message, &message_hashes), (EntryKind::Metadata, &metadata_hashes)] {
        assert_eq!(store.heads(&gid, kind).await.unwrap(), hashes.last().copied().into_iter().collect::<Vec<_>>());
        assert!(store.missing_parents(&gid, kind).await.unwrap().is_empty(), "{kind:?}: no parent is missing");
    }

    // The outbox: exactly one row per entry and peer it was enqueued for.
    let all: BTreeSet<EntryHash> = message_hashes.iter().chain(&metadata_hashes).copied().collect();
    let even: BTreeSet<EntryHash> = message_hashes.iter().step_by(2).copied().collect();
    assert_eq!(store.outbox_len(&ALL).await.unwrap(), n + m);
    assert_eq!(store.outbox_len(&EVEN).await.unwrap(), n.div_ceil(2));
    let far = UnixTime(i64::MAX as u64);
    for (peer, expected) in [(ALL, &all), (EVEN, &even)] {
        let owed: Vec<EntryHash> =
            store.outbox_due(&peer, far, 1_000_000).await.unwrap().into_iter().map(|i| i.hash).collect();
        assert_eq!(owed.len(), expected.len(), "one outbox row per entry");
        assert_eq!(&owed.into_iter().collect::<BTreeSet<_>>(), expected);
    }
    let mut peers: Vec<Addressee> =
        [(ALL, n + m > 0), (EVEN, n > 0)].into_iter().filter(|p| p.1).map(|p| p.0).collect();
    peers.sort();
    assert_eq!(store.outbox_peers().await.unwrap(), peers);

    store.close().await.unwrap();
    assert!(companions(&db).is_empty(), "a clean close leaves no WAL: {:?}", companions(&db));
    Verified { messages: n, metadata: m, hashes: all }
}
