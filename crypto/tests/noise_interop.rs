//! The handshake as an independent implementation would write it from
//! docs/PROTOCOL.md §5: plain `snow` Noise XK plus the documented payloads.
//! Shows the spec is complete (a spec-following peer interoperates in both
//! roles) and exercises responder checks the honest `Requester` never trips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_crypto::{
    AccountKeys, AccountPublic, Error, OsEntropy, SigningSecret,
    handshake::{NOISE_PARAMS, Requester, Responder},
    label,
};

fn account() -> AccountKeys {
    AccountKeys::generate(&mut OsEntropy).unwrap()
}

fn signed(context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = context.to_vec();
    parts.iter().for_each(|p| m.extend_from_slice(p));
    m
}

/// A spec-following requester built on snow, up to and including reading
/// message 2. Returns the state, h2, and message 1.
struct SpecRequester {
    hs: snow::HandshakeState,
    h1: Vec<u8>,
    h2: Vec<u8>,
}

fn spec_requester_start(
    me: &AccountKeys,
    responder: &AccountPublic,
    msg1_payload: &[u8],
) -> (snow::HandshakeState, Vec<u8>, Vec<u8>) {
    let secret = me.agreement.to_bytes();
    let mut hs = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
        .local_private_key(&secret[..])
        .unwrap()
        .remote_public_key(&responder.agreement.0)
        .unwrap()
        .prologue(label::HANDSHAKE_PROLOGUE)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut m1 = vec![0u8; 1024];
    let n = hs.write_message(msg1_payload, &mut m1).unwrap();
    m1.truncate(n);
    let h1 = hs.get_handshake_hash().to_vec();
    (hs, h1, m1)
}

fn spec_requester_read_response(
    mut hs: snow::HandshakeState,
    h1: &[u8],
    responder: &AccountPublic,
    m2: &[u8],
) -> SpecRequester {
    let mut payload = vec![0u8; 1024];
    let n = hs.read_message(m2, &mut payload).unwrap();
    assert_eq!(n, 64);
    let sig = veil_crypto::Signature(payload[..64].try_into().unwrap());
    responder.signing.verify(&signed(label::HANDSHAKE_RESPONDER, &[h1]), &sig).unwrap();
    let h2 = hs.get_handshake_hash().to_vec();
    SpecRequester { hs, h1: h1.to_vec(), h2 }
}

/// Runs a spec-following requester against veil's responder up to message 2.
fn through_message_2(me: &AccountKeys, responder: &AccountKeys) -> (Responder, SpecRequester) {
    let (hs, h1, m1) = spec_requester_start(me, &responder.public(), &[]);
    let (veil_responder, m2) = Responder::respond(responder, &m1).unwrap();
    (veil_responder, spec_requester_read_response(hs, &h1, &responder.public(), &m2))
}

fn finish(
    mut r: SpecRequester,
    claimed: &[u8; 32],
    signer: &SigningSecret,
    signed_hash: &[u8],
    my_x: &[u8; 32],
    request: &[u8],
) -> Vec<u8> {
    let sig = signer.sign(&signed(label::HANDSHAKE_REQUESTER, &[signed_hash, my_x]));
    let mut payload = claimed.to_vec();
    payload.extend_from_slice(&sig.0);
    payload.extend_from_slice(request);
    let mut m3 = vec![0u8; 4096];
    let n = r.hs.write_message(&payload, &mut m3).unwrap();
    m3.truncate(n);
    m3
}

#[test]
fn spec_following_requester_completes_with_veil_responder() {
    let (alice, bob) = (account(), account());
    let (responder, r) = through_message_2(&alice, &bob);
    let h2 = r.h2.clone();
    let m3 =
        finish(r, &alice.signing.verify_key().to_bytes(), &alice.signing, &h2, &alice.agreement.public().0, b"hello");
    let incoming = responder.read_request(&m3).unwrap();
    assert_eq!(incoming.requester, alice.public());
    assert_eq!(&incoming.request[..], b"hello");
}

#[test]
fn veil_requester_completes_with_spec_following_responder() {
    let (alice, bob) = (account(), account());
    let (requester, m1) = Requester::start(&alice, &bob.public(), b"hi bob").unwrap();
    let secret = bob.agreement.to_bytes();
    let mut hs = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
        .local_private_key(&secret[..])
        .unwrap()
        .prologue(label::HANDSHAKE_PROLOGUE)
        .unwrap()
        .build_responder()
        .unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(hs.read_message(&m1, &mut buf).unwrap(), 0);
    let h1 = hs.get_handshake_hash().to_vec();
    let proof = bob.signing.sign(&signed(label::HANDSHAKE_RESPONDER, &[&h1]));
    let mut m2 = vec![0u8; 1024];
    let n = hs.write_message(&proof.0, &mut m2).unwrap();
    m2.truncate(n);
    let h2 = hs.get_handshake_hash().to_vec();
    let (sent, m3) = requester.read_response(&m2).unwrap();
    assert_eq!(sent.responder, bob.public());
    let n = hs.read_message(&m3, &mut buf).unwrap();
    let remote_x: [u8; 32] = hs.get_remote_static().unwrap().try_into().unwrap();
    assert_eq!(remote_x, alice.agreement.public().0);
    let claimed = veil_crypto::VerifyKey::from_slice(&buf[..32]).unwrap();
    let sig = veil_crypto::Signature(buf[32..96].try_into().unwrap());
    claimed.verify(&signed(label::HANDSHAKE_REQUESTER, &[&h2, &remote_x]), &sig).unwrap();
    assert_eq!(claimed, alice.signing.verify_key());
    assert_eq!(&buf[96..n], b"hi bob");
    assert_eq!(sent.handshake_hash.as_slice(), hs.get_handshake_hash());
}

#[test]
fn message_1_with_a_payload_is_refused() {
    let (alice, bob) = (account(), account());
    let (_, _, m1) = spec_requester_start(&alice, &bob.public(), b"leak");
    assert!(matches!(Responder::respond(&bob, &m1), Err(Error::Handshake(_))));
}

#[test]
fn requester_claiming_another_account_is_refused() {
    let (mallory, bob, victim) = (account(), account(), account());
    let (responder, r) = through_message_2(&mallory, &bob);
    let h2 = r.h2.clone();
    // Mallory claims the victim's Ed25519 key but can only sign with her own.
    let m3 =
        finish(r, &victim.signing.verify_key().to_bytes(), &mallory.signing, &h2, &mallory.agreement.public().0, b"");
    assert!(matches!(responder.read_request(&m3), Err(Error::Handshake(_))));
}

#[test]
fn requester_proof_over_the_wrong_transcript_is_refused() {
    let (alice, bob) = (account(), account());
    let (responder, r) = through_message_2(&alice, &bob);
    let h1 = r.h1.clone();
    // Signs h1 instead of h2: a proof not bound to the responder's ephemeral key.
    let m3 = finish(r, &alice.signing.verify_key().to_bytes(), &alice.signing, &h1, &alice.agreement.public().0, b"");
    assert!(matches!(responder.read_request(&m3), Err(Error::Handshake(_))));
}

#[test]
fn requester_proof_not_covering_its_static_key_is_refused() {
    let (alice, bob, other) = (account(), account(), account());
    let (responder, r) = through_message_2(&alice, &bob);
    let h2 = r.h2.clone();
    let m3 = finish(r, &alice.signing.verify_key().to_bytes(), &alice.signing, &h2, &other.agreement.public().0, b"");
    assert!(matches!(responder.read_request(&m3), Err(Error::Handshake(_))));
}
