//! Tampering: by outsiders (every byte covered by the tag) and by
//! key-holding insiders who recompute tags (every byte still authenticated
//! by the author's signature); splices, truncations, wrong groups, forged
//! entries and misshapen sections.

// Test helpers outside `#[test]` functions unwrap too (clippy.toml only covers test functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_crypto::{
    ChainState, Error, GroupId, GroupKeys, ReceiverChain,
    envelope::{EntryKind, HEADER_LEN, MAX_BODY_LEN, MAX_POSITION_LEN, SealedEntry, open_entry},
    ratchet::DEFAULT_WINDOW,
};

use super::helpers::*;

/// Small entries of both kinds, for exhaustive tampering.
fn small_entries(keys: &GroupKeys) -> Vec<(SealedEntry, ChainState)> {
    let author = device("d");
    let mut sender = chain("c", 5);
    let receiver = sender.state().clone();
    vec![
        (seal_metadata(keys, &author, &position(EntryKind::Metadata, 1, vec![]), b""), receiver.clone()),
        (seal_message(keys, &author, &mut sender, &position(EntryKind::Message, 2, vec![hash(3)]), b"hi"), receiver),
    ]
}

#[test]
fn every_byte_is_covered_by_the_tag() {
    // An outsider (no entry-auth key) changes one byte: the tag check refuses
    // it, whatever the section, and so does a replication node's check.
    let keys = group("g");
    for (entry, receiver) in small_entries(&keys) {
        assert!(open_fully(&keys, &entry, &receiver).is_ok());
        for s in SECTIONS {
            for i in 0..section_len(&entry, s) {
                for mask in [0x01, 0x80] {
                    let bad = flipped(&entry, s, i, mask);
                    assert_eq!(bad.verify_tag(&keys.entry_auth_key), Err(Error::BadSignature), "{s:?}[{i}]");
                    assert_eq!(open_entry(&keys, &bad).unwrap_err(), Error::BadSignature, "{s:?}[{i}]");
                    assert_ne!(bad.hash(), entry.hash());
                }
            }
        }
    }
}

#[test]
fn every_byte_is_authenticated_even_with_a_recomputed_tag() {
    // A replication node holds the entry-auth key and can recompute the tag:
    // position and header are still AEAD-protected, the body signed by the author.
    // Every byte of position and header; the body is one input of one Ed25519
    // signature (16 ms to verify in a debug build), so every 5th byte and the last.
    let keys = group("g");
    for (entry, receiver) in small_entries(&keys) {
        for s in [Section::Position, Section::Header, Section::Body] {
            let len = section_len(&entry, s);
            let step = if s == Section::Body { 5 } else { 1 };
            for i in (0..len).step_by(step).chain([len - 1]) {
                let mask = if i % 2 == 0 { 0x01 } else { 0x80 };
                let mut bad = flipped(&entry, s, i, mask);
                retag(&keys.entry_auth_key, &mut bad);
                bad.verify_tag(&keys.entry_auth_key).unwrap();
                let got = open_fully(&keys, &bad, &receiver);
                let expected = if s == Section::Body { Error::BadSignature } else { Error::Decrypt };
                assert_eq!(got, Err(expected), "{s:?}[{i}] ^ {mask:#04x}");
            }
        }
    }
}

#[test]
fn truncated_or_extended_sections_fail() {
    let keys = group("g");
    for (entry, receiver) in small_entries(&keys) {
        for retagged in [false, true] {
            let mut variants = Vec::new();
            for s in [Section::Position, Section::Header, Section::Body] {
                for grow in [false, true] {
                    let mut bad = entry.clone();
                    let v = match s {
                        Section::Position => &mut bad.position,
                        Section::Header => &mut bad.header,
                        _ => &mut bad.body,
                    };
                    if grow {
                        v.push(0);
                    } else {
                        v.pop();
                    }
                    variants.push((s, grow, bad));
                }
            }
            for (s, grow, mut bad) in variants {
                if retagged {
                    retag(&keys.entry_auth_key, &mut bad);
                }
                assert!(open_fully(&keys, &bad, &receiver).is_err(), "{s:?} grown={grow} retagged={retagged}");
            }
        }
    }
}

/// Copies one section of the second entry into the first.
type Splice = fn(&mut SealedEntry, &SealedEntry);

#[test]
fn spliced_sections_fail_even_with_a_recomputed_tag() {
    // A replication node mixing sections of two valid entries of the same group.
    let keys = group("g");
    let author = device("d");
    let a = seal_metadata(&keys, &author, &position(EntryKind::Metadata, 1, vec![]), b"entry a");
    let b = seal_metadata(&keys, &author, &position(EntryKind::Metadata, 2, vec![a.hash()]), b"entry b");
    let splices: [(&str, Splice); 3] = [
        ("links", |x, y| x.position = y.position.clone()),
        ("header", |x, y| x.header = y.header.clone()),
        ("body", |x, y| x.body = y.body.clone()),
    ];
    for (what, splice) in splices {
        let mut bad = a.clone();
        splice(&mut bad, &b);
        assert_eq!(open_entry(&keys, &bad).unwrap_err(), Error::BadSignature, "{what} without tag");
        retag(&keys.entry_auth_key, &mut bad);
        let expected = if what == "body" { Error::BadSignature } else { Error::Decrypt };
        assert_eq!(open_entry(&keys, &bad).unwrap_err(), expected, "{what} with tag");
    }
}

#[test]
fn entry_does_not_open_in_another_group() {
    let (a, b) = (group("group a"), group("group b"));
    assert_ne!(a.id, b.id);
    for (entry, receiver) in small_entries(&a) {
        assert_eq!(open_entry(&b, &entry).unwrap_err(), Error::BadSignature);
        let cred = b.replication_credential();
        assert_eq!(entry.verify_tag(&cred.entry_auth_key), Err(Error::BadSignature));
        assert_eq!(entry.open_position(&cred.position_key), Err(Error::Decrypt));
        // Even re-tagged for group B (by someone holding B's entry-auth key),
        // A's sections do not decrypt under B's keys.
        let mut moved = entry.clone();
        retag(&b.entry_auth_key, &mut moved);
        moved.verify_tag(&b.entry_auth_key).unwrap();
        assert_eq!(open_fully(&b, &moved, &receiver), Err(Error::Decrypt));
    }
}

#[test]
fn author_signature_is_bound_to_the_group_id() {
    // Same section keys, another group id: only the author's signature (which
    // covers the group id) can tell, and it does.
    let keys = group("g");
    let mut other = keys.clone();
    other.id = GroupId([0x99; 32]);
    for (entry, _) in small_entries(&keys) {
        assert!(open_entry(&keys, &entry).is_ok());
        assert_eq!(open_entry(&other, &entry).unwrap_err(), Error::BadSignature);
    }
}

#[test]
fn forged_entry_neither_advances_nor_burns_keys() {
    // An entry that passes the envelope checks (signed by a device that holds
    // the group keys) but whose body was not sealed with this sender's chain.
    let (keys, author) = (group("g"), device("alice-phone"));
    let mut sender = chain("alice", 0);
    let mut receiver = ReceiverChain::new(sender.state().clone(), DEFAULT_WINDOW).unwrap();
    let genuine: Vec<SealedEntry> = (0..6)
        .map(|i| seal_message(&keys, &author, &mut sender, &position(EntryKind::Message, i, vec![]), b"genuine"))
        .collect();
    let forge = |counter: u64| {
        let mut other = chain("mallory", counter);
        seal_message(&keys, &author, &mut other, &position(EntryKind::Message, counter, vec![]), b"forged")
    };

    // Ahead of the chain: refused, nothing changes.
    let forged = open_entry(&keys, &forge(3)).unwrap();
    assert_eq!(forged.counter, 3);
    assert_eq!(forged.read_message(&mut receiver).unwrap_err(), Error::Decrypt);
    assert_eq!(receiver.state().next, 0);
    assert_eq!(receiver.skipped_counters().count(), 0);

    // Open 5: 0..=4 become skipped keys.
    open_entry(&keys, &genuine[5]).unwrap().read_message(&mut receiver).unwrap();
    let state = receiver.state().clone();
    assert_eq!(receiver.skipped_counters().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);

    // Behind the chain, on a skipped key: refused, the key is kept.
    let forged = open_entry(&keys, &forge(2)).unwrap();
    assert_eq!(forged.read_message(&mut receiver).unwrap_err(), Error::Decrypt);
    assert_eq!(receiver.state(), &state);
    assert_eq!(receiver.skipped_counters().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);

    // Every genuine entry still opens, once.
    for (i, entry) in genuine.iter().enumerate().take(5) {
        let opened = open_entry(&keys, entry).unwrap();
        assert_eq!(opened.counter, i as u64);
        assert_eq!(&opened.read_message(&mut receiver).unwrap()[..], b"genuine");
    }
    assert_eq!(receiver.skipped_counters().count(), 0);
}

#[test]
fn oversized_or_misshapen_sections_are_refused_before_the_tag() {
    let (keys, author) = (group("g"), device("d"));
    let entry = seal_metadata(&keys, &author, &position(EntryKind::Metadata, 1, vec![]), b"x");
    let cred = keys.replication_credential();

    let mut bad = entry.clone();
    bad.body = vec![0; MAX_BODY_LEN + 1];
    let too_large = Error::TooLarge { what: "entry body", len: MAX_BODY_LEN + 1, max: MAX_BODY_LEN };
    assert_eq!(bad.check_sizes(), Err(too_large.clone()));
    assert_eq!(bad.verify_tag(&cred.entry_auth_key), Err(too_large.clone()), "sizes are checked first");
    retag(&keys.entry_auth_key, &mut bad);
    assert_eq!(bad.verify_tag(&cred.entry_auth_key), Err(too_large.clone()), "even with a valid tag");
    assert_eq!(open_entry(&keys, &bad).unwrap_err(), too_large);

    let mut bad = entry.clone();
    bad.position = vec![0; MAX_POSITION_LEN + 1];
    retag(&keys.entry_auth_key, &mut bad);
    let too_large = Error::TooLarge { what: "entry links", len: MAX_POSITION_LEN + 1, max: MAX_POSITION_LEN };
    assert_eq!(bad.check_sizes(), Err(too_large.clone()));
    assert_eq!(bad.verify_tag(&cred.entry_auth_key), Err(too_large.clone()));
    assert_eq!(open_entry(&keys, &bad).unwrap_err(), too_large);

    for len in [0, HEADER_LEN - 1, HEADER_LEN + 1, 2 * HEADER_LEN] {
        let mut bad = entry.clone();
        bad.header.resize(len, 0);
        retag(&keys.entry_auth_key, &mut bad);
        let malformed = Error::Malformed { what: "entry header", reason: "wrong length" };
        assert_eq!(bad.check_sizes(), Err(malformed.clone()), "header of {len} bytes");
        assert_eq!(bad.verify_tag(&cred.entry_auth_key), Err(malformed.clone()));
        assert_eq!(open_entry(&keys, &bad).unwrap_err(), malformed);
    }
}
