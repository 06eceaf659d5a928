//! Public-API tests of the contact handshake (`veil_crypto::handshake`):
//! completion, tampering, wrong and forged keys, and replay.
//!
//! Not covered here, because the tests cannot build Noise messages themselves
//! (`snow` is a normal dependency of `veil-crypto`, not a dev-dependency):
//! * a well-formed, correctly encrypted message 1 that carries a payload. Such a
//!   message is necessarily longer than `MSG1_LEN`, and every longer message 1
//!   is refused (see `truncated_or_extended_messages_fail`);
//! * a correctly encrypted message 3 whose account proof is wrong (another
//!   account's Ed25519 key, or a signature over another transcript): the
//!   public `Requester` always signs correctly, so the responder's check of
//!   the requester's proof is not exercised here;
//! * an interoperability check against an independent
//!   `Noise_XK_25519_AESGCM_SHA256` implementation with the
//!   `label::HANDSHAKE_PROLOGUE` prologue.

// Test helpers outside `#[test]` functions unwrap too (clippy.toml only covers test functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use veil_crypto::{
    AccountKeys, AccountPublic, Error, Identity, OsEntropy, TestEntropy,
    handshake::{IncomingRequest, MAX_REQUEST_PAYLOAD, MSG1_LEN, MSG2_LEN, RequestSent, Requester, Responder},
};

/// A reproducible identity (snow still draws the Noise ephemerals from the OS).
fn identity(name: &str) -> Identity {
    Identity::generate(&mut TestEntropy::new(name.as_bytes())).unwrap()
}

/// Message 3 is the encrypted static key (32 + 16) followed by the encrypted
/// payload: Ed25519 key (32) ‖ signature (64) ‖ request ‖ AEAD tag (16).
fn msg3_len(request_len: usize) -> usize {
    32 + 16 + 32 + 64 + request_len + 16
}

struct Transcript {
    m1: Vec<u8>,
    m2: Vec<u8>,
    m3: Vec<u8>,
    sent: RequestSent,
    incoming: IncomingRequest,
}

/// Runs a whole handshake from `requester` to `responder`, which must succeed.
fn run(requester: &AccountKeys, responder: &AccountKeys, request: &[u8]) -> Transcript {
    let (req, m1) = Requester::start(requester, &responder.public(), request).unwrap();
    let (resp, m2) = Responder::respond(responder, &m1).unwrap();
    let (sent, m3) = req.read_response(&m2).unwrap();
    let incoming = resp.read_request(&m3).unwrap();
    Transcript { m1, m2, m3, sent, incoming }
}

fn assert_completed(t: &Transcript, requester: &AccountKeys, responder: &AccountKeys, request: &[u8]) {
    assert_eq!(t.incoming.requester, requester.public(), "responder sees the requester's exact account");
    assert_eq!(&t.incoming.request[..], request, "responder sees the exact request payload");
    assert_eq!(t.sent.responder, responder.public(), "requester sees the responder's exact account");
    assert_eq!(t.sent.handshake_hash, t.incoming.handshake_hash, "both sides share the session identifier");
    assert_eq!(t.m1.len(), MSG1_LEN);
    assert_eq!(t.m2.len(), MSG2_LEN);
    assert_eq!(t.m3.len(), msg3_len(request.len()));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    One,
    Two,
    Three,
}

/// Runs a fresh handshake in which `alter` changes message `which` in transit.
/// Every step before it must succeed; returns what the step reading the altered
/// message returned.
fn deliver_altered(
    requester: &AccountKeys,
    responder: &AccountKeys,
    request: &[u8],
    which: Msg,
    alter: impl FnOnce(&mut Vec<u8>),
) -> Result<(), Error> {
    let (req, mut m1) = Requester::start(requester, &responder.public(), request).unwrap();
    if which == Msg::One {
        alter(&mut m1);
        return Responder::respond(responder, &m1).map(drop);
    }
    let (resp, mut m2) = Responder::respond(responder, &m1).unwrap();
    if which == Msg::Two {
        alter(&mut m2);
        return req.read_response(&m2).map(drop);
    }
    let (_, mut m3) = req.read_response(&m2).unwrap();
    alter(&mut m3);
    resp.read_request(&m3).map(drop)
}

#[test]
fn handshake_completes_and_both_sides_agree() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let request = b"hi, it's Alice; my rendezvous seed is ...";
    let t = run(&alice.account, &bob.account, request);
    assert_completed(&t, &alice.account, &bob.account, request);
}

#[test]
fn handshake_completes_with_empty_and_maximum_payloads() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    for len in [0, 1, MAX_REQUEST_PAYLOAD - 1, MAX_REQUEST_PAYLOAD] {
        let request: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let t = run(&alice.account, &bob.account, &request);
        assert_completed(&t, &alice.account, &bob.account, &request);
    }
}

#[test]
fn every_session_is_fresh() {
    // Same parties, same request: fresh ephemerals make every message and the
    // session identifier differ.
    let (alice, bob) = (identity("alice"), identity("bob"));
    let a = run(&alice.account, &bob.account, b"same");
    let b = run(&alice.account, &bob.account, b"same");
    assert_ne!(a.m1, b.m1);
    assert_ne!(a.m2, b.m2);
    assert_ne!(a.m3, b.m3);
    assert_ne!(a.sent.handshake_hash, b.sent.handshake_hash);
    // A different requester to the same responder gets another identifier too.
    let carol = identity("carol");
    let c = run(&carol.account, &bob.account, b"same");
    assert_eq!(c.incoming.requester, carol.account.public());
    assert_ne!(c.incoming.handshake_hash, a.incoming.handshake_hash);
}

#[test]
fn oversized_request_is_refused_at_start() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    for len in [MAX_REQUEST_PAYLOAD + 1, 65_536] {
        let request = vec![0u8; len];
        let got = Requester::start(&alice.account, &bob.account.public(), &request).map(drop);
        assert_eq!(got, Err(Error::TooLarge { what: "request payload", len, max: MAX_REQUEST_PAYLOAD }));
    }
}

/// Flips byte `i` of message `which` for every `i` in `indices`, each in a
/// fresh session (the state machines are consumed by a failed step). The mask
/// alternates between the lowest bit and the highest bit, which for byte 31 of
/// an X25519 key is the bit X25519 ignores: the transcript hash must catch it.
fn assert_every_byte_authenticated(which: Msg, indices: core::ops::Range<usize>) {
    let (alice, bob) = (identity("alice"), identity("bob"));
    for i in indices {
        let mask = if i % 2 == 0 { 0x01 } else { 0x80 };
        let got = deliver_altered(&alice.account, &bob.account, b"", which, |m| m[i] ^= mask);
        assert!(matches!(got, Err(Error::Handshake(_))), "{which:?} accepted with byte {i} ^ {mask:#04x}: {got:?}");
    }
}

#[test]
fn every_byte_of_message_1_is_authenticated() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    // Message 1 is read without consuming the requester: one session serves all flips.
    let (_req, m1) = Requester::start(&alice.account, &bob.account.public(), b"request").unwrap();
    assert!(Responder::respond(&bob.account, &m1).is_ok(), "the untouched message is accepted");
    for mask in [0x01u8, 0x80] {
        for i in 0..m1.len() {
            let mut bad = m1.clone();
            bad[i] ^= mask;
            assert!(
                matches!(Responder::respond(&bob.account, &bad), Err(Error::Handshake(_))),
                "message 1 accepted with byte {i} ^ {mask:#04x}"
            );
        }
    }
}

#[test]
fn every_byte_of_message_2_ephemeral_key_is_authenticated() {
    assert_every_byte_authenticated(Msg::Two, 0..32);
}

#[test]
fn every_byte_of_message_2_encrypted_signature_is_authenticated() {
    assert_every_byte_authenticated(Msg::Two, 32..MSG2_LEN);
}

#[test]
fn every_byte_of_message_3_encrypted_static_key_is_authenticated() {
    assert_every_byte_authenticated(Msg::Three, 0..48);
}

#[test]
fn every_byte_of_message_3_encrypted_payload_is_authenticated() {
    // Empty request: account key, account proof and the AEAD tag.
    assert_every_byte_authenticated(Msg::Three, 48..msg3_len(0));
}

/// A change to a message in transit.
type Alteration = fn(&mut Vec<u8>);

#[test]
fn truncated_or_extended_messages_fail() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let request = b"hello";
    for which in [Msg::One, Msg::Two, Msg::Three] {
        let alterations: [(&str, Alteration); 5] = [
            ("truncated by one byte", |m| {
                m.pop();
            }),
            ("extended by one byte", |m| m.push(0)),
            ("extended by 16 bytes", |m| m.extend_from_slice(&[0; 16])),
            ("emptied", Vec::clear),
            ("cut in half", |m| m.truncate(m.len() / 2)),
        ];
        for (what, alter) in alterations {
            let got = deliver_altered(&alice.account, &bob.account, request, which, alter);
            assert!(matches!(got, Err(Error::Handshake(_))), "message {which:?} {what} was accepted: {got:?}");
        }
    }
}

#[test]
fn oversized_message_3_is_refused() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let request = vec![0x5a; MAX_REQUEST_PAYLOAD];
    let max = msg3_len(MAX_REQUEST_PAYLOAD);
    let got = deliver_altered(&alice.account, &bob.account, &request, Msg::Three, |m| m.push(0));
    assert_eq!(got, Err(Error::TooLarge { what: "handshake message 3", len: max + 1, max }));
}

#[test]
fn link_with_someone_elses_agreement_key_fails_at_message_1() {
    let (alice, bob, carol) = (identity("alice"), identity("bob"), identity("carol"));
    // Bob's signing key, Carol's X25519 key: message 1 is encrypted to Carol.
    let link = AccountPublic { signing: bob.account.public().signing, agreement: carol.account.public().agreement };
    let (_req, m1) = Requester::start(&alice.account, &link, b"for bob").unwrap();
    assert!(matches!(Responder::respond(&bob.account, &m1), Err(Error::Handshake(_))));
    // And a request for Bob's real link cannot be answered by Carol.
    let (_req, m1) = Requester::start(&alice.account, &bob.account.public(), b"for bob").unwrap();
    assert!(matches!(Responder::respond(&carol.account, &m1), Err(Error::Handshake(_))));
}

#[test]
fn forged_link_pairing_victims_signing_key_with_attackers_agreement_key_fails_at_message_2() {
    let (alice, victim, attacker) = (identity("alice"), identity("victim"), identity("attacker"));
    let forged =
        AccountPublic { signing: victim.account.public().signing, agreement: attacker.account.public().agreement };
    let (req, m1) = Requester::start(&alice.account, &forged, b"secret request").unwrap();
    // The attacker holds the X25519 key, so it can read message 1 and answer…
    let (_resp, m2) = Responder::respond(&attacker.account, &m1).unwrap();
    // …but it cannot sign for the victim, so the requester stops before
    // sending message 3 (and with it the request payload).
    assert!(matches!(req.read_response(&m2), Err(Error::Handshake(_))));
    // Relaying message 1 to the victim does not get a victim signature either:
    // it is encrypted to the attacker's key.
    assert!(matches!(Responder::respond(&victim.account, &m1), Err(Error::Handshake(_))));
}

#[test]
fn message_2_from_another_session_fails() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let first = run(&alice.account, &bob.account, b"first");
    let (req, _m1) = Requester::start(&alice.account, &bob.account.public(), b"second").unwrap();
    assert!(matches!(req.read_response(&first.m2), Err(Error::Handshake(_))));
}

#[test]
fn message_3_from_another_session_fails() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let first = run(&alice.account, &bob.account, b"first");
    let (_req, m1) = Requester::start(&alice.account, &bob.account.public(), b"second").unwrap();
    let (resp, _m2) = Responder::respond(&bob.account, &m1).unwrap();
    assert!(matches!(resp.read_request(&first.m3), Err(Error::Handshake(_))));
}

#[test]
fn replayed_message_1_gets_a_fresh_message_2_but_the_old_message_3_fails() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let first = run(&alice.account, &bob.account, b"first");
    let (resp, m2) = Responder::respond(&bob.account, &first.m1).unwrap();
    assert_eq!(m2.len(), MSG2_LEN);
    assert_ne!(m2, first.m2, "the responder uses a fresh ephemeral key");
    assert!(matches!(resp.read_request(&first.m3), Err(Error::Handshake(_))));
}

#[test]
fn debug_output_does_not_show_the_request() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let request = b"\x01\x02\x03 top secret request";
    let (req, m1) = Requester::start(&alice.account, &bob.account.public(), request).unwrap();
    let shown_req = format!("{req:?}");
    let (resp, m2) = Responder::respond(&bob.account, &m1).unwrap();
    let (_sent, m3) = req.read_response(&m2).unwrap();
    let incoming = resp.read_request(&m3).unwrap();
    let shown = format!("{incoming:?}");
    assert!(shown.contains(&format!("request_len: {}", request.len())));
    let as_list = format!("{:?}", &request[..]);
    for s in [&shown_req, &shown] {
        assert!(!s.contains("secret") && !s.contains(&as_list[1..as_list.len() - 1]), "{s}");
    }
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0), Just(1), Just(MAX_REQUEST_PAYLOAD), 0..=MAX_REQUEST_PAYLOAD]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn handshake_completes_for_any_payload(len in payload_len(), fill in any::<u64>()) {
        let mut rng = OsEntropy;
        let alice = Identity::generate(&mut rng).unwrap();
        let bob = Identity::generate(&mut rng).unwrap();
        let request: Vec<u8> = (0..len as u64).map(|i| (fill.rotate_left((i % 64) as u32) ^ i) as u8).collect();
        let t = run(&alice.account, &bob.account, &request);
        prop_assert_eq!(t.incoming.requester, alice.account.public());
        prop_assert_eq!(&t.incoming.request[..], &request[..]);
        prop_assert_eq!(t.sent.responder, bob.account.public());
        prop_assert_eq!(t.sent.handshake_hash, t.incoming.handshake_hash);
        prop_assert_eq!(t.m3.len(), msg3_len(len));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn any_single_byte_change_fails(
        which in prop_oneof![Just(Msg::One), Just(Msg::Two), Just(Msg::Three)],
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        request in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let (alice, bob) = (identity("alice"), identity("bob"));
        let got = deliver_altered(&alice.account, &bob.account, &request, which, |m| {
            let i = index.index(m.len());
            m[i] ^= mask;
        });
        prop_assert!(matches!(got, Err(Error::Handshake(_))), "{:?} accepted: {:?}", which, got);
    }
}
