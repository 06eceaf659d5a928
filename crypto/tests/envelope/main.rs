//! Public-API tests of log-entry envelopes (`veil_crypto::envelope`): round
//! trips, size leakage, tampering by outsiders and by key-holding insiders
//! (a replication node holds the entry-auth key, so it can recompute tags),
//! key separation, the replication view, ratchet integration and size limits.

// Test helpers outside `#[test]` functions unwrap too (clippy.toml only covers test functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use veil_crypto::{
    Error, GroupKey, OsEntropy, ReceiverChain, TestEntropy,
    envelope::{
        BodyKey, EntryHash, EntryKind, HEADER_LEN, MAX_BODY_LEN, MAX_PARENTS, MAX_POSITION_LEN, SealedEntry,
        open_entry, seal_entry,
    },
    padding::MAX_PLAINTEXT,
    ratchet::DEFAULT_WINDOW,
};

mod helpers;
mod sha256;
mod tamper;

use helpers::*;

#[test]
fn test_hmac_matches_published_vectors() {
    assert_eq!(
        hex::encode(sha256::digest(&[b"abc"])),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex::encode(sha256::digest(&[b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"])),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    // RFC 4231, test case 2.
    assert_eq!(
        hex::encode(sha256::hmac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // And it reproduces the crate's own tag, so `retag` forges exactly what a
    // holder of the entry-auth key could.
    let keys = group("g");
    let mut entry = seal_metadata(&keys, &device("d"), &position(EntryKind::Metadata, 1, vec![hash(1)]), b"x");
    let tag = entry.tag;
    retag(&keys.entry_auth_key, &mut entry);
    assert_eq!(entry.tag, tag);
}

#[test]
fn metadata_entry_round_trip() {
    let (keys, author) = (group("g"), device("alice-phone"));
    let l = position(EntryKind::Metadata, 7, vec![hash(1), hash(2)]);
    let entry = seal_metadata(&keys, &author, &l, b"member added");
    entry.check_sizes().unwrap();
    let opened = open_entry(&keys, &entry).unwrap();
    assert_eq!(opened.position, l);
    assert_eq!(opened.author, author.verify_key());
    assert_eq!(opened.counter, 0);
    assert_eq!(opened.hash, entry.hash());
    assert_eq!(&opened.read_metadata(&keys).unwrap()[..], b"member added");
    // The wrong reader for the kind is refused.
    let mut receiver = ReceiverChain::new(chain("c", 0).state().clone(), DEFAULT_WINDOW).unwrap();
    assert!(matches!(opened.read_message(&mut receiver), Err(Error::Malformed { .. })));
}

#[test]
fn message_entry_round_trip() {
    let (keys, author) = (group("g"), device("alice-phone"));
    let mut sender = chain("alice-chain", 41);
    let mut receiver = ReceiverChain::new(sender.state().clone(), DEFAULT_WINDOW).unwrap();
    let l = position(EntryKind::Message, 3, vec![hash(9)]);
    let entry = seal_message(&keys, &author, &mut sender, &l, b"hello Bob");
    assert_eq!(sender.state().next, 42, "sealing used one ratchet key");
    let opened = open_entry(&keys, &entry).unwrap();
    assert_eq!(opened.position, l);
    assert_eq!(opened.author, author.verify_key());
    assert_eq!(opened.counter, 41);
    assert_eq!(opened.hash, entry.hash());
    assert!(matches!(opened.read_metadata(&keys), Err(Error::Malformed { .. })));
    assert_eq!(&opened.read_message(&mut receiver).unwrap()[..], b"hello Bob");
    assert_eq!(receiver.state().next, 42);
}

#[test]
fn sealing_is_deterministic_given_the_entropy_and_randomised_otherwise() {
    let (keys, author) = (group("g"), device("d"));
    let l = position(EntryKind::Metadata, 1, vec![]);
    let seal = |e: &mut TestEntropy| seal_entry(&keys, &author, &l, BodyKey::Metadata, b"same", e).unwrap();
    let (a, b) = (seal(&mut TestEntropy::new(b"e")), seal(&mut TestEntropy::new(b"e")));
    assert_eq!(a, b);
    assert_eq!(a.hash(), b.hash());
    let c = seal(&mut TestEntropy::new(b"other"));
    assert_ne!(a.hash(), c.hash());
    let (x, y) = (seal_metadata(&keys, &author, &l, b"same"), seal_metadata(&keys, &author, &l, b"same"));
    assert_ne!(x.position, y.position);
    assert_ne!(x.header, y.header);
    assert_ne!(x.body, y.body);
    assert_ne!(x.hash(), y.hash());
}

#[test]
fn nothing_is_in_clear() {
    let (keys, author) = (group("g"), device("d"));
    let parent = EntryHash(*b"a very recognisable parent hash!");
    let lamport = 0x0123_4567_89ab_cdef_u64;
    let payload = b"a very recognisable payload, longer than a block";
    let entry = seal_metadata(&keys, &author, &position(EntryKind::Metadata, lamport, vec![parent]), payload);
    let all = [&entry.position[..], &entry.header, &entry.body, &entry.tag].concat();
    let contains = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&parent.0));
    assert!(!contains(&lamport.to_be_bytes()));
    assert!(!contains(&author.verify_key().to_bytes()));
    assert!(!contains(&payload[..16]));
    assert!(!contains(&keys.id.0), "the group id never travels in clear");
}

#[test]
fn body_length_reveals_only_the_padding_bucket() {
    let (keys, author) = (group("g"), device("d"));
    let mut sender = chain("c", 0);
    let mut previous_bucket = 0;
    for len in [0, 1, 100, 252, 253, 1000, 1020, 1021, 4092, 4093, 16380, 16381, MAX_PLAINTEXT] {
        let payload = vec![0xa5; len];
        let b = bucket(len);
        assert!(b >= previous_bucket);
        previous_bucket = b;
        let meta = seal_metadata(&keys, &author, &position(EntryKind::Metadata, 1, vec![]), &payload);
        let msg = seal_message(&keys, &author, &mut sender, &position(EntryKind::Message, 1, vec![]), &payload);
        assert_eq!(meta.body.len(), b + METADATA_BODY_OVERHEAD, "metadata body for {len} bytes");
        assert_eq!(msg.body.len(), b + MESSAGE_BODY_OVERHEAD, "message body for {len} bytes");
        for e in [&meta, &msg] {
            assert_eq!(e.position.len(), position_len(0));
            assert_eq!(e.header.len(), HEADER_LEN);
            e.check_sizes().unwrap();
        }
    }
    // The largest payload exactly fills the largest body.
    let largest = seal_metadata(&keys, &author, &position(EntryKind::Metadata, 1, vec![]), &vec![1; MAX_PLAINTEXT]);
    assert_eq!(largest.body.len(), MAX_BODY_LEN);
    assert_eq!(open_fully(&keys, &largest, sender.state()).unwrap(), vec![1; MAX_PLAINTEXT]);
}

#[test]
fn payload_over_the_largest_bucket_is_refused_at_seal() {
    let (keys, author) = (group("g"), device("d"));
    let mut sender = chain("c", 0);
    let payload = vec![0; MAX_PLAINTEXT + 1];
    let l = position(EntryKind::Metadata, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Metadata, &payload, &mut OsEntropy);
    assert!(matches!(got, Err(Error::TooLarge { .. })));
    let l = position(EntryKind::Message, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), &payload, &mut OsEntropy);
    assert!(matches!(got, Err(Error::TooLarge { .. })));
    assert_eq!(sender.state().next, 0, "a refused seal uses no ratchet key");
}

#[test]
fn replication_credential_verifies_and_walks_links_but_cannot_read() {
    let (keys, author) = (group("g"), device("d"));
    let l = position(EntryKind::Metadata, 12, vec![hash(1), hash(2), hash(3)]);
    let entry = seal_metadata(&keys, &author, &l, b"private");
    let cred = keys.replication_credential();
    assert_eq!(cred.replication_id, keys.replication_id);
    entry.verify_tag(&cred.entry_auth_key).unwrap();
    assert_eq!(entry.open_position(&cred.position_key).unwrap(), l);
    // The node only holds the link and entry-auth keys; with them in place of
    // the header key the header does not decrypt…
    for guess in [*cred.position_key.expose_secret(), *cred.entry_auth_key.expose_secret(), [0; 32]] {
        let mut node = keys.clone();
        node.header_key = GroupKey::from_bytes(guess);
        node.metadata_key = GroupKey::from_bytes(guess);
        assert_eq!(open_entry(&node, &entry).unwrap_err(), Error::Decrypt);
    }
    // …and with the right header key but not the metadata key, the body does not either.
    let mut almost = keys.clone();
    almost.metadata_key = GroupKey::from_bytes(*cred.position_key.expose_secret());
    let opened = open_entry(&almost, &entry).unwrap();
    assert_eq!(opened.read_metadata(&almost).unwrap_err(), Error::Decrypt);
    assert_eq!(&opened.read_metadata(&keys).unwrap()[..], b"private");
    // Keys are not interchangeable between sections.
    assert_eq!(entry.open_position(&keys.header_key), Err(Error::Decrypt));
    assert_eq!(entry.open_position(&keys.metadata_key), Err(Error::Decrypt));
}

/// A deterministic shuffle (xorshift64).
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

#[test]
fn ratchet_out_of_order_delivery_opens_each_message_exactly_once() {
    let (keys, author) = (group("g"), device("alice-phone"));
    let mut sender = chain("alice", 0);
    let mut receiver = ReceiverChain::new(sender.state().clone(), DEFAULT_WINDOW).unwrap();
    let mut entries: Vec<(u64, Vec<u8>, SealedEntry)> = (0..50u64)
        .map(|i| {
            let payload = format!("message number {i}").into_bytes();
            let entry =
                seal_message(&keys, &author, &mut sender, &position(EntryKind::Message, i + 1, vec![]), &payload);
            (i, payload, entry)
        })
        .collect();
    shuffle(&mut entries, 0x5eed);
    assert_ne!(entries.iter().map(|e| e.0).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    for (i, payload, entry) in &entries {
        let opened = open_entry(&keys, entry).unwrap();
        assert_eq!(opened.counter, *i);
        assert_eq!(&opened.read_message(&mut receiver).unwrap()[..], &payload[..]);
    }
    assert_eq!(receiver.state().next, 50);
    assert_eq!(receiver.skipped_counters().count(), 0, "every key was used and deleted");
    // Every replay is refused: the envelope still verifies, the key is gone.
    for (i, _, entry) in &entries {
        let opened = open_entry(&keys, entry).unwrap();
        assert_eq!(opened.read_message(&mut receiver).unwrap_err(), Error::Replay { counter: *i });
    }
}

#[test]
fn ratchet_refuses_entries_beyond_the_window() {
    let (keys, author) = (group("g"), device("d"));
    let mut sender = chain("c", 0);
    let mut receiver = ReceiverChain::new(sender.state().clone(), 8).unwrap();
    let entries: Vec<SealedEntry> = (0..9)
        .map(|i| seal_message(&keys, &author, &mut sender, &position(EntryKind::Message, i, vec![]), b"m"))
        .collect();
    let far = open_entry(&keys, &entries[8]).unwrap();
    assert_eq!(far.read_message(&mut receiver).unwrap_err(), Error::TooFarAhead { counter: 8, next: 0, window: 8 });
    assert_eq!(receiver.state().next, 0);
    // Once the chain has moved, the same entry is within the window.
    open_entry(&keys, &entries[7]).unwrap().read_message(&mut receiver).unwrap();
    assert_eq!(&far.read_message(&mut receiver).unwrap()[..], b"m");
}

#[test]
fn parent_count_limits() {
    let (keys, author) = (group("g"), device("d"));
    let parents: Vec<EntryHash> = (0..=MAX_PARENTS as u8).map(hash).collect();
    // Exactly MAX_PARENTS: the position section is exactly MAX_POSITION_LEN.
    let l = position(EntryKind::Metadata, 1, parents[..MAX_PARENTS].to_vec());
    let entry = seal_metadata(&keys, &author, &l, b"x");
    assert_eq!(entry.position.len(), MAX_POSITION_LEN);
    assert_eq!(open_entry(&keys, &entry).unwrap().position, l);
    // One more is refused at seal, and no ratchet key is used.
    let mut sender = chain("c", 0);
    let l = position(EntryKind::Message, 1, parents.clone());
    let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), b"x", &mut OsEntropy);
    assert_eq!(got, Err(Error::TooMany { what: "parent list", count: MAX_PARENTS + 1, max: MAX_PARENTS }));
    assert_eq!(got.unwrap_err().to_string(), "parent list has 33 items, more than the 32 allowed");
    assert_eq!(sender.state().next, 0);
    let l = position(EntryKind::Metadata, 1, parents);
    let got = seal_entry(&keys, &author, &l, BodyKey::Metadata, b"x", &mut OsEntropy);
    assert!(matches!(got, Err(Error::TooMany { what: "parent list", .. })));
}

#[test]
fn duplicate_parents_are_refused_at_seal() {
    // `open_entry` refuses duplicate parents, so sealing them would produce an
    // entry that no member can open.
    let (keys, author) = (group("g"), device("d"));
    for parents in [vec![hash(1), hash(1)], vec![hash(1), hash(2), hash(1)], vec![hash(3); MAX_PARENTS]] {
        let l = position(EntryKind::Metadata, 1, parents.clone());
        let got = seal_entry(&keys, &author, &l, BodyKey::Metadata, b"x", &mut OsEntropy);
        assert!(matches!(got, Err(Error::Malformed { what: "entry links", .. })), "{parents:?}: {got:?}");
        let mut sender = chain("c", 0);
        let l = position(EntryKind::Message, 1, parents.clone());
        let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), b"x", &mut OsEntropy);
        assert!(matches!(got, Err(Error::Malformed { what: "entry links", .. })), "{parents:?}: {got:?}");
        assert_eq!(sender.state().next, 0, "a refused seal uses no ratchet key");
    }
}

#[test]
fn kind_must_match_the_body_key() {
    let (keys, author) = (group("g"), device("d"));
    let mut sender = chain("c", 0);
    let l = position(EntryKind::Metadata, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), b"x", &mut OsEntropy);
    assert!(matches!(got, Err(Error::Malformed { what: "entry links", .. })), "{got:?}");
    assert_eq!(sender.state().next, 0, "a refused seal uses no ratchet key");
    let l = position(EntryKind::Message, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Metadata, b"x", &mut OsEntropy);
    assert!(matches!(got, Err(Error::Malformed { what: "entry links", .. })), "{got:?}");
}

#[test]
fn exhausted_chain_cannot_seal() {
    let (keys, author) = (group("g"), device("d"));
    let mut sender = chain("c", u64::MAX);
    let l = position(EntryKind::Message, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), b"x", &mut OsEntropy);
    assert_eq!(got, Err(Error::ChainExhausted));
}

fn parents_strategy() -> impl Strategy<Value = Vec<EntryHash>> {
    prop::collection::vec(any::<[u8; 32]>(), 0..=MAX_PARENTS).prop_map(|v| {
        // Distinct, in the generated order (shrinking may produce equal hashes).
        let mut seen = BTreeSet::new();
        v.into_iter().filter(|h| seen.insert(*h)).map(EntryHash).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_any_entry(
        message in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..5000),
        parents in parents_strategy(),
        lamport in any::<u64>(),
        start in 0..u64::MAX,
    ) {
        let (keys, author) = (group("g"), device("d"));
        let kind = if message { EntryKind::Message } else { EntryKind::Metadata };
        let l = position(kind, lamport, parents.clone());
        let mut sender = chain("c", start);
        let mut receiver = ReceiverChain::new(sender.state().clone(), DEFAULT_WINDOW).unwrap();
        let entry = if message {
            seal_message(&keys, &author, &mut sender, &l, &payload)
        } else {
            seal_metadata(&keys, &author, &l, &payload)
        };
        // Sizes: the position depends on the parent count only, the body on the bucket only.
        let overhead = if message { MESSAGE_BODY_OVERHEAD } else { METADATA_BODY_OVERHEAD };
        prop_assert_eq!(entry.body.len(), bucket(payload.len()) + overhead);
        prop_assert_eq!(entry.position.len(), position_len(parents.len()));
        prop_assert_eq!(entry.header.len(), HEADER_LEN);
        entry.check_sizes().unwrap();
        // The replication view.
        let cred = keys.replication_credential();
        entry.verify_tag(&cred.entry_auth_key).unwrap();
        prop_assert_eq!(&entry.open_position(&cred.position_key).unwrap(), &l);
        // The member view.
        let opened = open_entry(&keys, &entry).unwrap();
        prop_assert_eq!(&opened.position, &l);
        prop_assert_eq!(opened.author, author.verify_key());
        prop_assert_eq!(opened.hash, entry.hash());
        let body = if message {
            prop_assert_eq!(opened.counter, start);
            opened.read_message(&mut receiver).unwrap()
        } else {
            prop_assert_eq!(opened.counter, 0);
            opened.read_metadata(&keys).unwrap()
        };
        prop_assert_eq!(&body[..], &payload[..]);
        // The hash is a pure function of the sealed bytes.
        prop_assert_eq!(entry.clone().hash(), entry.hash());
    }

    #[test]
    fn any_single_byte_change_fails(
        message in any::<bool>(),
        payload_len in 0usize..600,
        parent_count in 0usize..4,
        section in prop::sample::select(SECTIONS.to_vec()),
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        retagged in any::<bool>(),
    ) {
        let (keys, author) = (group("g"), device("d"));
        let kind = if message { EntryKind::Message } else { EntryKind::Metadata };
        let parents = (0..parent_count as u8).map(hash).collect();
        let mut sender = chain("c", 17);
        let receiver = sender.state().clone();
        let payload = vec![0x42; payload_len];
        let entry = if message {
            seal_message(&keys, &author, &mut sender, &position(kind, 9, parents), &payload)
        } else {
            seal_metadata(&keys, &author, &position(kind, 9, parents), &payload)
        };
        prop_assert_eq!(open_fully(&keys, &entry, &receiver).unwrap(), payload);
        let i = index.index(section_len(&entry, section));
        let mut bad = flipped(&entry, section, i, mask);
        if retagged && section != Section::Tag {
            retag(&keys.entry_auth_key, &mut bad);
        }
        let got = open_fully(&keys, &bad, &receiver);
        prop_assert!(got.is_err(), "{:?}[{}] ^ {:#04x} (retagged: {}) opened", section, i, mask, retagged);
        prop_assert_ne!(bad.hash(), entry.hash());
    }
}
