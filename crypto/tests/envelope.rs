//! Public-API tests of log-entry envelopes (`veil_crypto::envelope`): round
//! trips, size leakage, tampering by outsiders and by key-holding insiders
//! (a replication node holds the entry-auth key, so it can recompute tags),
//! key separation, the replication view, ratchet integration and size limits.

// Test helpers outside `#[test]` functions unwrap too (clippy.toml only covers test functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use veil_crypto::{
    ChainKey, ChainState, EntryAuthKey, Error, GroupId, GroupKey, GroupKeys, GroupSecret, OsEntropy, ReceiverChain,
    SenderChain, SigningSecret, TestEntropy,
    envelope::{
        BodyKey, EntryHash, EntryKind, HEADER_LEN, Links, MAX_BODY_LEN, MAX_LINKS_LEN, MAX_PARENTS, SealedEntry,
        open_entry, seal_entry,
    },
    label,
    padding::{BUCKETS, MAX_PLAINTEXT},
    ratchet::DEFAULT_WINDOW,
};

/// A minimal SHA-256 / HMAC-SHA256 (FIPS 180-4, RFC 2104), so the tests can
/// recompute entry tags the way a key-holding replication node could.
/// Checked against published vectors in `test_hmac_matches_published_vectors`.
mod sha256 {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    const H0: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

    /// SHA-256 of the concatenation of `parts`.
    pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
        let mut msg = parts.concat();
        let bit_len = (msg.len() as u64) * 8;
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bit_len.to_be_bytes());
        let mut h = H0;
        for block in msg.chunks_exact(64) {
            let mut w = [0u32; 64];
            for (wi, word) in w.iter_mut().zip(block.chunks_exact(4)) {
                *wi = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            }
            for i in 16..64 {
                let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
                let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
            }
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
            for (k, wi) in K.iter().zip(w) {
                let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
                let ch = (e & f) ^ (!e & g);
                let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(*k).wrapping_add(wi);
                let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
                let maj = (a & b) ^ (a & c) ^ (b & c);
                let t2 = s0.wrapping_add(maj);
                hh = g;
                g = f;
                f = e;
                e = d.wrapping_add(t1);
                d = c;
                c = b;
                b = a;
                a = t1.wrapping_add(t2);
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
                *x = x.wrapping_add(y);
            }
        }
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// HMAC-SHA256 with a key of at most 64 bytes.
    pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
        assert!(key.len() <= 64);
        let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
        for (i, k) in key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let inner = digest(&[&ipad, msg]);
        digest(&[&opad, &inner])
    }
}

/// Recomputes `entry.tag` under `key`, as the documented format says:
/// `HMAC(entry_auth_key, "veil/v1/entry-mac" ‖ lp(links) ‖ lp(header) ‖ lp(body))`.
fn retag(key: &EntryAuthKey, entry: &mut SealedEntry) {
    let mut input = label::ENTRY_MAC.to_vec();
    for section in [&entry.links, &entry.header, &entry.body] {
        input.extend_from_slice(&(section.len() as u32).to_be_bytes());
        input.extend_from_slice(section);
    }
    entry.tag = sha256::hmac(key.expose_secret(), &input);
}

fn group(name: &str) -> GroupKeys {
    GroupKeys::derive(&GroupSecret::generate(&mut TestEntropy::new(name.as_bytes())).unwrap())
}

fn device(name: &str) -> SigningSecret {
    SigningSecret::generate(&mut TestEntropy::new(name.as_bytes())).unwrap()
}

fn chain(name: &str, next: u64) -> SenderChain {
    let key = ChainKey::generate(&mut TestEntropy::new(name.as_bytes())).unwrap();
    SenderChain::from_state(ChainState { chain_key: key, next })
}

fn hash(n: u8) -> EntryHash {
    EntryHash([n; 32])
}

fn links(kind: EntryKind, lamport: u64, parents: Vec<EntryHash>) -> Links {
    Links { kind, lamport, parents }
}

/// The padding bucket of a payload of `len` bytes.
fn bucket(len: usize) -> usize {
    BUCKETS.iter().copied().find(|b| *b >= len + 4).unwrap()
}

/// AES-GCM nonce prefix (metadata only) + tag.
const METADATA_BODY_OVERHEAD: usize = 12 + 16;
/// AES-GCM tag only: the nonce comes from the ratchet.
const MESSAGE_BODY_OVERHEAD: usize = 16;

fn links_len(parents: usize) -> usize {
    12 + 11 + 32 * parents + 16
}

fn seal_metadata(keys: &GroupKeys, author: &SigningSecret, l: &Links, payload: &[u8]) -> SealedEntry {
    seal_entry(keys, author, l, BodyKey::Metadata, payload, &mut OsEntropy).unwrap()
}

fn seal_message(
    keys: &GroupKeys,
    author: &SigningSecret,
    c: &mut SenderChain,
    l: &Links,
    payload: &[u8],
) -> SealedEntry {
    seal_entry(keys, author, l, BodyKey::Message(c), payload, &mut OsEntropy).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Links,
    Header,
    Body,
    Tag,
}

const SECTIONS: [Section; 4] = [Section::Links, Section::Header, Section::Body, Section::Tag];

fn section_mut(entry: &mut SealedEntry, s: Section) -> &mut [u8] {
    match s {
        Section::Links => &mut entry.links,
        Section::Header => &mut entry.header,
        Section::Body => &mut entry.body,
        Section::Tag => &mut entry.tag,
    }
}

fn section_len(entry: &SealedEntry, s: Section) -> usize {
    match s {
        Section::Links => entry.links.len(),
        Section::Header => entry.header.len(),
        Section::Body => entry.body.len(),
        Section::Tag => entry.tag.len(),
    }
}

fn flipped(entry: &SealedEntry, s: Section, i: usize, mask: u8) -> SealedEntry {
    let mut bad = entry.clone();
    section_mut(&mut bad, s)[i] ^= mask;
    bad
}

/// Opens `entry` completely (envelope and body) as a member with a fresh
/// receiving chain positioned at `receiver` for message entries.
fn open_fully(keys: &GroupKeys, entry: &SealedEntry, receiver: &ChainState) -> Result<Vec<u8>, Error> {
    let opened = open_entry(keys, entry)?;
    let body = match opened.links.kind {
        EntryKind::Metadata => opened.read_metadata(keys)?,
        EntryKind::Message => opened.read_message(&mut ReceiverChain::new(receiver.clone(), DEFAULT_WINDOW)?)?,
    };
    Ok(body.to_vec())
}

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
    let mut entry = seal_metadata(&keys, &device("d"), &links(EntryKind::Metadata, 1, vec![hash(1)]), b"x");
    let tag = entry.tag;
    retag(&keys.entry_auth_key, &mut entry);
    assert_eq!(entry.tag, tag);
}

#[test]
fn metadata_entry_round_trip() {
    let (keys, author) = (group("g"), device("alice-phone"));
    let l = links(EntryKind::Metadata, 7, vec![hash(1), hash(2)]);
    let entry = seal_metadata(&keys, &author, &l, b"member added");
    entry.check_sizes().unwrap();
    let opened = open_entry(&keys, &entry).unwrap();
    assert_eq!(opened.links, l);
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
    let l = links(EntryKind::Message, 3, vec![hash(9)]);
    let entry = seal_message(&keys, &author, &mut sender, &l, b"hello Bob");
    assert_eq!(sender.state().next, 42, "sealing used one ratchet key");
    let opened = open_entry(&keys, &entry).unwrap();
    assert_eq!(opened.links, l);
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
    let l = links(EntryKind::Metadata, 1, vec![]);
    let seal = |e: &mut TestEntropy| seal_entry(&keys, &author, &l, BodyKey::Metadata, b"same", e).unwrap();
    let (a, b) = (seal(&mut TestEntropy::new(b"e")), seal(&mut TestEntropy::new(b"e")));
    assert_eq!(a, b);
    assert_eq!(a.hash(), b.hash());
    let c = seal(&mut TestEntropy::new(b"other"));
    assert_ne!(a.hash(), c.hash());
    let (x, y) = (seal_metadata(&keys, &author, &l, b"same"), seal_metadata(&keys, &author, &l, b"same"));
    assert_ne!(x.links, y.links);
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
    let entry = seal_metadata(&keys, &author, &links(EntryKind::Metadata, lamport, vec![parent]), payload);
    let all = [&entry.links[..], &entry.header, &entry.body, &entry.tag].concat();
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
        let meta = seal_metadata(&keys, &author, &links(EntryKind::Metadata, 1, vec![]), &payload);
        let msg = seal_message(&keys, &author, &mut sender, &links(EntryKind::Message, 1, vec![]), &payload);
        assert_eq!(meta.body.len(), b + METADATA_BODY_OVERHEAD, "metadata body for {len} bytes");
        assert_eq!(msg.body.len(), b + MESSAGE_BODY_OVERHEAD, "message body for {len} bytes");
        for e in [&meta, &msg] {
            assert_eq!(e.links.len(), links_len(0));
            assert_eq!(e.header.len(), HEADER_LEN);
            e.check_sizes().unwrap();
        }
    }
    // The largest payload exactly fills the largest body.
    let largest = seal_metadata(&keys, &author, &links(EntryKind::Metadata, 1, vec![]), &vec![1; MAX_PLAINTEXT]);
    assert_eq!(largest.body.len(), MAX_BODY_LEN);
    assert_eq!(open_fully(&keys, &largest, sender.state()).unwrap(), vec![1; MAX_PLAINTEXT]);
}

#[test]
fn payload_over_the_largest_bucket_is_refused_at_seal() {
    let (keys, author) = (group("g"), device("d"));
    let mut sender = chain("c", 0);
    let payload = vec![0; MAX_PLAINTEXT + 1];
    let l = links(EntryKind::Metadata, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Metadata, &payload, &mut OsEntropy);
    assert!(matches!(got, Err(Error::TooLarge { .. })));
    let l = links(EntryKind::Message, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), &payload, &mut OsEntropy);
    assert!(matches!(got, Err(Error::TooLarge { .. })));
    assert_eq!(sender.state().next, 0, "a refused seal uses no ratchet key");
}

/// Small entries of both kinds, for exhaustive tampering.
fn small_entries(keys: &GroupKeys) -> Vec<(SealedEntry, ChainState)> {
    let author = device("d");
    let mut sender = chain("c", 5);
    let receiver = sender.state().clone();
    vec![
        (seal_metadata(keys, &author, &links(EntryKind::Metadata, 1, vec![]), b""), receiver.clone()),
        (seal_message(keys, &author, &mut sender, &links(EntryKind::Message, 2, vec![hash(3)]), b"hi"), receiver),
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
    // links and header are still AEAD-protected, the body signed by the author.
    // Every byte of links and header; the body is one input of one Ed25519
    // signature (16 ms to verify in a debug build), so every 5th byte and the last.
    let keys = group("g");
    for (entry, receiver) in small_entries(&keys) {
        for s in [Section::Links, Section::Header, Section::Body] {
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
            for s in [Section::Links, Section::Header, Section::Body] {
                for grow in [false, true] {
                    let mut bad = entry.clone();
                    let v = match s {
                        Section::Links => &mut bad.links,
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
    let a = seal_metadata(&keys, &author, &links(EntryKind::Metadata, 1, vec![]), b"entry a");
    let b = seal_metadata(&keys, &author, &links(EntryKind::Metadata, 2, vec![a.hash()]), b"entry b");
    let splices: [(&str, Splice); 3] = [
        ("links", |x, y| x.links = y.links.clone()),
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
        assert_eq!(entry.open_links(&cred.link_key), Err(Error::Decrypt));
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
fn replication_credential_verifies_and_walks_links_but_cannot_read() {
    let (keys, author) = (group("g"), device("d"));
    let l = links(EntryKind::Metadata, 12, vec![hash(1), hash(2), hash(3)]);
    let entry = seal_metadata(&keys, &author, &l, b"private");
    let cred = keys.replication_credential();
    assert_eq!(cred.replication_id, keys.replication_id);
    entry.verify_tag(&cred.entry_auth_key).unwrap();
    assert_eq!(entry.open_links(&cred.link_key).unwrap(), l);
    // The node only holds the link and entry-auth keys; with them in place of
    // the header key the header does not decrypt…
    for guess in [*cred.link_key.expose_secret(), *cred.entry_auth_key.expose_secret(), [0; 32]] {
        let mut node = keys.clone();
        node.header_key = GroupKey::from_bytes(guess);
        node.metadata_key = GroupKey::from_bytes(guess);
        assert_eq!(open_entry(&node, &entry).unwrap_err(), Error::Decrypt);
    }
    // …and with the right header key but not the metadata key, the body does not either.
    let mut almost = keys.clone();
    almost.metadata_key = GroupKey::from_bytes(*cred.link_key.expose_secret());
    let opened = open_entry(&almost, &entry).unwrap();
    assert_eq!(opened.read_metadata(&almost).unwrap_err(), Error::Decrypt);
    assert_eq!(&opened.read_metadata(&keys).unwrap()[..], b"private");
    // Keys are not interchangeable between sections.
    assert_eq!(entry.open_links(&keys.header_key), Err(Error::Decrypt));
    assert_eq!(entry.open_links(&keys.metadata_key), Err(Error::Decrypt));
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
            let entry = seal_message(&keys, &author, &mut sender, &links(EntryKind::Message, i + 1, vec![]), &payload);
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
        .map(|i| seal_message(&keys, &author, &mut sender, &links(EntryKind::Message, i, vec![]), b"m"))
        .collect();
    let far = open_entry(&keys, &entries[8]).unwrap();
    assert_eq!(far.read_message(&mut receiver).unwrap_err(), Error::TooFarAhead { counter: 8, next: 0, window: 8 });
    assert_eq!(receiver.state().next, 0);
    // Once the chain has moved, the same entry is within the window.
    open_entry(&keys, &entries[7]).unwrap().read_message(&mut receiver).unwrap();
    assert_eq!(&far.read_message(&mut receiver).unwrap()[..], b"m");
}

#[test]
fn forged_entry_neither_advances_nor_burns_keys() {
    // An entry that passes the envelope checks (signed by a device that holds
    // the group keys) but whose body was not sealed with this sender's chain.
    let (keys, author) = (group("g"), device("alice-phone"));
    let mut sender = chain("alice", 0);
    let mut receiver = ReceiverChain::new(sender.state().clone(), DEFAULT_WINDOW).unwrap();
    let genuine: Vec<SealedEntry> = (0..6)
        .map(|i| seal_message(&keys, &author, &mut sender, &links(EntryKind::Message, i, vec![]), b"genuine"))
        .collect();
    let forge = |counter: u64| {
        let mut other = chain("mallory", counter);
        seal_message(&keys, &author, &mut other, &links(EntryKind::Message, counter, vec![]), b"forged")
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
    let entry = seal_metadata(&keys, &author, &links(EntryKind::Metadata, 1, vec![]), b"x");
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
    bad.links = vec![0; MAX_LINKS_LEN + 1];
    retag(&keys.entry_auth_key, &mut bad);
    let too_large = Error::TooLarge { what: "entry links", len: MAX_LINKS_LEN + 1, max: MAX_LINKS_LEN };
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

#[test]
fn parent_count_limits() {
    let (keys, author) = (group("g"), device("d"));
    let parents: Vec<EntryHash> = (0..=MAX_PARENTS as u8).map(hash).collect();
    // Exactly MAX_PARENTS: the links section is exactly MAX_LINKS_LEN.
    let l = links(EntryKind::Metadata, 1, parents[..MAX_PARENTS].to_vec());
    let entry = seal_metadata(&keys, &author, &l, b"x");
    assert_eq!(entry.links.len(), MAX_LINKS_LEN);
    assert_eq!(open_entry(&keys, &entry).unwrap().links, l);
    // One more is refused at seal, and no ratchet key is used.
    let mut sender = chain("c", 0);
    let l = links(EntryKind::Message, 1, parents.clone());
    let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), b"x", &mut OsEntropy);
    assert_eq!(got, Err(Error::TooLarge { what: "parent list", len: MAX_PARENTS + 1, max: MAX_PARENTS }));
    assert_eq!(sender.state().next, 0);
    let l = links(EntryKind::Metadata, 1, parents);
    let got = seal_entry(&keys, &author, &l, BodyKey::Metadata, b"x", &mut OsEntropy);
    assert!(matches!(got, Err(Error::TooLarge { what: "parent list", .. })));
}

#[test]
fn duplicate_parents_are_refused_at_seal() {
    // `open_entry` refuses duplicate parents, so sealing them would produce an
    // entry that no member can open.
    let (keys, author) = (group("g"), device("d"));
    for parents in [vec![hash(1), hash(1)], vec![hash(1), hash(2), hash(1)], vec![hash(3); MAX_PARENTS]] {
        let l = links(EntryKind::Metadata, 1, parents.clone());
        let got = seal_entry(&keys, &author, &l, BodyKey::Metadata, b"x", &mut OsEntropy);
        assert!(matches!(got, Err(Error::Malformed { what: "entry links", .. })), "{parents:?}: {got:?}");
        let mut sender = chain("c", 0);
        let l = links(EntryKind::Message, 1, parents.clone());
        let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), b"x", &mut OsEntropy);
        assert!(matches!(got, Err(Error::Malformed { what: "entry links", .. })), "{parents:?}: {got:?}");
        assert_eq!(sender.state().next, 0, "a refused seal uses no ratchet key");
    }
}

#[test]
fn kind_must_match_the_body_key() {
    let (keys, author) = (group("g"), device("d"));
    let mut sender = chain("c", 0);
    let l = links(EntryKind::Metadata, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Message(&mut sender), b"x", &mut OsEntropy);
    assert!(matches!(got, Err(Error::Malformed { what: "entry links", .. })), "{got:?}");
    assert_eq!(sender.state().next, 0, "a refused seal uses no ratchet key");
    let l = links(EntryKind::Message, 1, vec![]);
    let got = seal_entry(&keys, &author, &l, BodyKey::Metadata, b"x", &mut OsEntropy);
    assert!(matches!(got, Err(Error::Malformed { what: "entry links", .. })), "{got:?}");
}

#[test]
fn exhausted_chain_cannot_seal() {
    let (keys, author) = (group("g"), device("d"));
    let mut sender = chain("c", u64::MAX);
    let l = links(EntryKind::Message, 1, vec![]);
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
        let l = links(kind, lamport, parents.clone());
        let mut sender = chain("c", start);
        let mut receiver = ReceiverChain::new(sender.state().clone(), DEFAULT_WINDOW).unwrap();
        let entry = if message {
            seal_message(&keys, &author, &mut sender, &l, &payload)
        } else {
            seal_metadata(&keys, &author, &l, &payload)
        };
        // Sizes: links depend on the parent count only, the body on the bucket only.
        let overhead = if message { MESSAGE_BODY_OVERHEAD } else { METADATA_BODY_OVERHEAD };
        prop_assert_eq!(entry.body.len(), bucket(payload.len()) + overhead);
        prop_assert_eq!(entry.links.len(), links_len(parents.len()));
        prop_assert_eq!(entry.header.len(), HEADER_LEN);
        entry.check_sizes().unwrap();
        // The replication view.
        let cred = keys.replication_credential();
        entry.verify_tag(&cred.entry_auth_key).unwrap();
        prop_assert_eq!(&entry.open_links(&cred.link_key).unwrap(), &l);
        // The member view.
        let opened = open_entry(&keys, &entry).unwrap();
        prop_assert_eq!(&opened.links, &l);
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
            seal_message(&keys, &author, &mut sender, &links(kind, 9, parents), &payload)
        } else {
            seal_metadata(&keys, &author, &links(kind, 9, parents), &payload)
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
