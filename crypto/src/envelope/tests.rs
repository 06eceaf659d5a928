use super::*;
use crate::{GroupSecret, TestEntropy};

#[test]
fn author_keys_are_parsed_once_and_bounded() {
    let mut e = TestEntropy::new(b"authors");
    let mut authors = AuthorKeys::default();
    let key = SigningSecret::generate(&mut e).unwrap().verify_key();
    assert_eq!(authors.parse(&key.to_bytes()).unwrap(), key);
    assert_eq!(authors.parse(&key.to_bytes()).unwrap(), key, "from the cache");
    // The identity point (small order) is refused, and not kept.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    assert!(authors.parse(&weak).is_err());
    assert!(!authors.keys.contains_key(&weak));
    for _ in 0..AuthorKeys::MAX {
        let k = SigningSecret::generate(&mut e).unwrap().verify_key();
        authors.parse(&k.to_bytes()).unwrap();
    }
    assert!(authors.keys.len() <= AuthorKeys::MAX);
    // An entry opens the same with a cache as without.
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([4; 32]));
    let author = SigningSecret::generate(&mut e).unwrap();
    let position = Position { kind: EntryKind::Metadata, lamport: 1, parents: vec![] };
    let entry = seal_entry(&keys, &author, &position, BodyKey::Metadata, b"hi", &mut e).unwrap();
    let plain = open_entry(&keys, &entry).unwrap();
    let position = entry.open_position(&keys.position_key).unwrap();
    for _ in 0..2 {
        let (cached, check) = open_header_unchecked(&keys, &entry, position.clone(), &mut authors).unwrap();
        check.verify().unwrap();
        assert_eq!((cached.author, cached.hash), (plain.author, plain.hash));
    }
}

#[test]
fn a_batch_of_signatures_names_exactly_the_forged_ones() {
    let mut e = TestEntropy::new(b"batch");
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([5; 32]));
    let authors: Vec<SigningSecret> = (0..2).map(|_| SigningSecret::generate(&mut e).unwrap()).collect();
    let mut parsed = AuthorKeys::default();
    let mut checks: Vec<SignatureCheck> = (0..6u8)
        .map(|i| {
            let position = Position { kind: EntryKind::Metadata, lamport: u64::from(i) + 1, parents: vec![] };
            let author = &authors[usize::from(i % 2)];
            let entry = seal_entry(&keys, author, &position, BodyKey::Metadata, &[i], &mut e).unwrap();
            let position = entry.open_position(&keys.position_key).unwrap();
            open_header_unchecked(&keys, &entry, position, &mut parsed).unwrap().1
        })
        .collect();
    assert!(failed_signatures(&checks).is_empty());
    assert!(failed_signatures(&checks[..1]).is_empty(), "a batch of one");
    assert!(failed_signatures(&[]).is_empty());
    // Another author's key, another message.
    checks[2].author = authors[1].verify_key();
    checks[4].message.push(0);
    assert_eq!(failed_signatures(&checks), vec![2, 4]);
    assert_eq!(failed_signatures(&checks[2..3]), vec![0]);
    assert!(checks[4].verify().is_err() && checks[5].verify().is_ok());
}

/// Builds a metadata entry whose (validly signed, encrypted and tagged)
/// header carries a non-zero counter, which `seal_entry` never produces.
fn metadata_entry_with_counter(keys: &GroupKeys, author: &SigningSecret, counter: u64) -> SealedEntry {
    let mut e = TestEntropy::new(b"counter");
    let position = Position { kind: EntryKind::Metadata, lamport: 1, parents: vec![] };
    let position_ct =
        aead::seal_prefixed(keys.position_key.expose_secret(), POSITION_AAD, &position.encode().unwrap(), &mut e)
            .unwrap();
    let padded = padding::pad(b"x").unwrap();
    let body =
        aead::seal_prefixed(keys.metadata_key.expose_secret(), &with_aad(BODY_AAD, &position_ct), &padded, &mut e)
            .unwrap();
    let pk = author.verify_key();
    let sig = author.sign(&signature_input(&keys.id.0, &position_ct, &pk, counter, &body));
    let mut h = vec![HEADER_VERSION];
    h.extend_from_slice(&pk.to_bytes());
    h.extend_from_slice(&counter.to_be_bytes());
    h.extend_from_slice(&sig.0);
    let header =
        aead::seal_prefixed(keys.header_key.expose_secret(), &with_aad(HEADER_AAD, &position_ct), &h, &mut e).unwrap();
    let tag = hmac(keys.entry_auth_key.expose_secret(), &[&sections_mac_input(&position_ct, &header, &body)]);
    SealedEntry { position: position_ct, header, body, tag }
}

#[test]
fn two_step_sealing_checks_the_signature() {
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([1; 32]));
    let author = SigningSecret::from_seed(&[2; 32]);
    let other = SigningSecret::from_seed(&[3; 32]);
    let position = Position { kind: EntryKind::Metadata, lamport: 1, parents: vec![] };
    let mut e = TestEntropy::new(b"two-step");
    let pending = begin_entry(&keys, &author.verify_key(), &position, BodyKey::Metadata, b"hi", &mut e).unwrap();
    let wrong = other.sign(pending.to_sign());
    assert_eq!(pending.finish(&keys, wrong, &mut e).unwrap_err(), Error::BadSignature);
    let pending = begin_entry(&keys, &author.verify_key(), &position, BodyKey::Metadata, b"hi", &mut e).unwrap();
    let sig = author.sign(pending.to_sign());
    let entry = pending.finish(&keys, sig, &mut e).unwrap();
    assert_eq!(open_entry(&keys, &entry).unwrap().author, author.verify_key());
}

#[test]
fn only_the_authors_key_signs_a_pending_entry() {
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([1; 32]));
    let author = SigningSecret::from_seed(&[2; 32]);
    let other = SigningSecret::from_seed(&[3; 32]);
    let position = Position { kind: EntryKind::Metadata, lamport: 1, parents: vec![] };
    let mut e = TestEntropy::new(b"sign");
    let pending = begin_entry(&keys, &author.verify_key(), &position, BodyKey::Metadata, b"hi", &mut e).unwrap();
    assert_eq!(pending.sign(&other).unwrap_err(), Error::BadSignature);
    let pending = begin_entry(&keys, &author.verify_key(), &position, BodyKey::Metadata, b"hi", &mut e).unwrap();
    let entry = pending.sign(&author).unwrap().finish(&keys, &mut e).unwrap();
    let opened = open_entry(&keys, &entry).unwrap();
    assert_eq!((opened.author, opened.read_metadata(&keys).unwrap().as_slice()), (author.verify_key(), &b"hi"[..]));
}

#[test]
fn metadata_entries_must_carry_counter_zero() {
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([1; 32]));
    let author = SigningSecret::from_seed(&[2; 32]);
    assert!(open_entry(&keys, &metadata_entry_with_counter(&keys, &author, 0)).is_ok());
    assert_eq!(
        open_entry(&keys, &metadata_entry_with_counter(&keys, &author, 1)).map(|o| o.counter),
        Err(Error::Malformed { what: "entry header", reason: "metadata entries carry counter 0" })
    );
}
