//! Public-API tests of device linking (`veil_crypto::device_link`):
//! completion, the short code, the session, tampering, wrong secrets and
//! accounts, replay, expiry and redaction; and the handshake as an
//! independent implementation would write it from docs/PROTOCOL.md §14
//! (plain `snow` and HKDF), in both roles, which also exercises the new
//! device's check of a message 2 signed by another account.

// Test helpers outside `#[test]` functions unwrap too (clippy.toml only covers test functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use veil_crypto::{
    AccountKeys, AccountPublic, DeviceOffer, Error, OfferSecret, OsEntropy, SigningSecret, TestEntropy,
    device_link::{
        DeviceSession, JoiningDevice, LinkingDevice, MAX_MESSAGE_LEN, MAX_PLAINTEXT, MSG1_LEN, MSG2_LEN, NOISE_PARAMS,
        Role, ShortCode, TAG_LEN, UnconfirmedSession,
    },
    label,
    time::UnixTime,
};

const NOW: UnixTime = UnixTime(1_800_000_000);
const EXPIRES: UnixTime = UnixTime(1_800_000_600);

fn account(name: &str) -> AccountKeys {
    AccountKeys::generate(&mut TestEntropy::new(name.as_bytes())).unwrap()
}

fn offer_of(account: &AccountKeys, secret: u8) -> DeviceOffer {
    DeviceOffer { account: account.public(), secret: OfferSecret::from_bytes([secret; 32]), expires_at: EXPIRES }
}

/// Alice, her offer with the secret `secret`, and her first device holding it.
fn alice_linking(secret: u8) -> (AccountKeys, DeviceOffer, LinkingDevice) {
    let alice = account("alice");
    let offer = offer_of(&alice, secret);
    let linking = LinkingDevice::new(&alice, offer.clone()).unwrap();
    (alice, offer, linking)
}

/// One whole handshake with reproducible ephemerals (`label` picks them).
struct Run {
    msg1: Vec<u8>,
    msg2: Vec<u8>,
    joining: UnconfirmedSession,
    linking: UnconfirmedSession,
}

fn run(offer: &DeviceOffer, first: &AccountKeys, label: &str) -> Run {
    let linking = LinkingDevice::new(first, offer.clone()).unwrap();
    let (joining, msg1) =
        JoiningDevice::start(offer, NOW, &mut TestEntropy::new(format!("{label}/new").as_bytes())).unwrap();
    let (at_first, msg2) =
        linking.respond(&msg1, NOW, &mut TestEntropy::new(format!("{label}/first").as_bytes())).unwrap();
    let at_new = joining.read_response(&msg2).unwrap();
    Run { msg1, msg2, joining: at_new, linking: at_first }
}

fn confirmed(label: &str) -> (DeviceSession, DeviceSession) {
    let alice = account("alice");
    let r = run(&offer_of(&alice, 1), &alice, label);
    (r.joining.confirm(), r.linking.confirm())
}

#[test]
fn handshake_completes_with_equal_codes_and_an_authenticated_account() {
    let alice = account("alice");
    let offer = offer_of(&alice, 1);
    let r = run(&offer, &alice, "a");
    assert_eq!(r.msg1.len(), MSG1_LEN);
    assert_eq!(r.msg2.len(), MSG2_LEN);
    assert_eq!(r.joining.short_code(), r.linking.short_code());
    assert_eq!(r.joining.info().handshake_hash, r.linking.info().handshake_hash);
    assert_eq!(r.joining.info().account, &alice.public());
    assert_eq!(r.linking.info().account, &alice.public());
    assert_eq!((r.joining.info().role, r.linking.info().role), (Role::Joining, Role::Linking));
    assert!(r.joining.short_code().value() < 1_000_000);
}

#[test]
fn sessions_carry_messages_both_ways_in_order() {
    let (mut new, mut first) = confirmed("a");
    for i in 0..5u8 {
        let bundle = vec![i; 100 * usize::from(i)];
        let sealed = first.seal(&bundle).unwrap();
        assert_eq!(sealed.len(), bundle.len() + TAG_LEN);
        assert_eq!(&new.open(&sealed).unwrap()[..], &bundle[..]);
        let ack = new.seal(&[i]).unwrap();
        assert_eq!(&first.open(&ack).unwrap()[..], &[i]);
    }
    // The largest plaintext fits one message; one byte more is refused
    // before anything changes.
    let biggest = vec![0x42; MAX_PLAINTEXT];
    assert_eq!(
        first.seal(&[0; MAX_PLAINTEXT + 1]),
        Err(Error::TooLarge { what: "device-link message", len: MAX_PLAINTEXT + 1, max: MAX_PLAINTEXT })
    );
    let sealed = first.seal(&biggest).unwrap();
    assert_eq!(sealed.len(), MAX_MESSAGE_LEN);
    assert_eq!(&new.open(&sealed).unwrap()[..], &biggest[..]);
    assert_eq!(&new.open(&first.seal(b"").unwrap()).unwrap()[..], b"");
}

#[test]
fn every_session_has_its_own_code_and_keys() {
    let alice = account("alice");
    let offer = offer_of(&alice, 1);
    let a = run(&offer, &alice, "a");
    let b = run(&offer, &alice, "b");
    assert_ne!(a.msg1, b.msg1);
    assert_ne!(a.msg2, b.msg2);
    assert_ne!(a.joining.info().handshake_hash, b.joining.info().handshake_hash);
    assert_ne!(a.joining.short_code(), b.joining.short_code());
    let (mut a_first, mut b_new) = (a.linking.confirm(), b.joining.confirm());
    assert!(matches!(b_new.open(&a_first.seal(b"for a").unwrap()), Err(Error::DeviceLink(_))));
    // Reproducible ephemerals give the same session again.
    let again = run(&offer, &alice, "a");
    assert_eq!((again.msg1, again.msg2), (a.msg1, a.msg2));
    assert_eq!(again.joining.short_code(), a.joining.short_code());
}

#[test]
fn another_offers_secret_fails_at_message_1() {
    let alice = account("alice");
    let linking = LinkingDevice::new(&alice, offer_of(&alice, 1)).unwrap();
    let (_joining, msg1) = JoiningDevice::start(&offer_of(&alice, 2), NOW, &mut OsEntropy).unwrap();
    assert!(matches!(linking.respond(&msg1, NOW, &mut OsEntropy), Err(Error::DeviceLink(_))));
}

#[test]
fn message_2_of_another_offers_secret_fails() {
    let alice = account("alice");
    let (joining, _msg1) = JoiningDevice::start(&offer_of(&alice, 1), NOW, &mut OsEntropy).unwrap();
    let other = run(&offer_of(&alice, 2), &alice, "other");
    assert!(matches!(joining.read_response(&other.msg2), Err(Error::DeviceLink(_))));
}

#[test]
fn offer_fields_are_bound_to_the_handshake() {
    let alice = account("alice");
    let linking = LinkingDevice::new(&alice, offer_of(&alice, 1)).unwrap();
    // Same secret, another expiry or another account in the copy the new
    // device holds: the prologues differ and message 1 fails.
    let mut later = offer_of(&alice, 1);
    later.expires_at = EXPIRES.plus(1);
    let mut other_account = offer_of(&alice, 1);
    other_account.account = account("mallory").public();
    for offer in [later, other_account] {
        let (_j, msg1) = JoiningDevice::start(&offer, NOW, &mut OsEntropy).unwrap();
        assert!(matches!(linking.respond(&msg1, NOW, &mut OsEntropy), Err(Error::DeviceLink(_))));
    }
}

#[test]
fn a_first_device_holds_only_its_own_accounts_offers() {
    let (alice, bob) = (account("alice"), account("bob"));
    assert!(matches!(LinkingDevice::new(&bob, offer_of(&alice, 1)), Err(Error::DeviceLink(_))));
}

#[test]
fn expired_offers_are_refused_on_both_sides() {
    let alice = account("alice");
    let offer = offer_of(&alice, 1);
    let error = Error::Expired { what: "device-link offer", expired_at: EXPIRES.0, now: EXPIRES.0 };
    assert_eq!(veil_crypto::HasKind::kind(&error), veil_crypto::ErrorKind::Refused);
    let expired = Err(error);
    assert_eq!(JoiningDevice::start(&offer, EXPIRES, &mut OsEntropy).map(drop), expired);
    let linking = LinkingDevice::new(&alice, offer.clone()).unwrap();
    let (_j, msg1) = JoiningDevice::start(&offer, UnixTime(EXPIRES.0 - 1), &mut OsEntropy).unwrap();
    assert_eq!(linking.respond(&msg1, EXPIRES, &mut OsEntropy).map(drop), expired);
    assert!(linking.respond(&msg1, UnixTime(EXPIRES.0 - 1), &mut OsEntropy).is_ok());
}

#[test]
fn every_bit_of_message_1_is_authenticated() {
    let (_, offer, linking) = alice_linking(1);
    let (_j, msg1) = JoiningDevice::start(&offer, NOW, &mut OsEntropy).unwrap();
    assert!(linking.respond(&msg1, NOW, &mut OsEntropy).is_ok());
    for i in 0..msg1.len() * 8 {
        let mut bad = msg1.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let got = linking.respond(&bad, NOW, &mut OsEntropy).map(drop);
        assert!(matches!(got, Err(Error::DeviceLink(_))), "message 1 accepted with bit {i} flipped: {got:?}");
    }
}

#[test]
fn every_bit_of_message_2_is_authenticated() {
    let alice = account("alice");
    let offer = offer_of(&alice, 1);
    let r = run(&offer, &alice, "flip");
    for i in 0..r.msg2.len() * 8 {
        let mut bad = r.msg2.clone();
        bad[i / 8] ^= 1 << (i % 8);
        // The same ephemeral: the same message 1, so only the flip differs.
        let (joining, msg1) = JoiningDevice::start(&offer, NOW, &mut TestEntropy::new(b"flip/new")).unwrap();
        assert_eq!(msg1, r.msg1);
        let got = joining.read_response(&bad).map(drop);
        assert!(matches!(got, Err(Error::DeviceLink(_))), "message 2 accepted with bit {i} flipped: {got:?}");
    }
}

#[test]
fn every_bit_of_a_session_message_is_authenticated() {
    let (_, mut first) = confirmed("t");
    let sealed = first.seal(b"a secret").unwrap();
    // Reproducible ephemerals: every fresh session "t" takes the genuine message.
    assert_eq!(&confirmed("t").0.open(&sealed).unwrap()[..], b"a secret");
    for i in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let (mut new, _) = confirmed("t");
        assert!(matches!(new.open(&bad), Err(Error::DeviceLink(_))), "opened with bit {i} flipped");
        // The session is closed for good, even to the genuine message.
        assert!(matches!(new.open(&sealed), Err(Error::DeviceLink(_))));
        assert!(matches!(new.seal(b"more"), Err(Error::DeviceLink(_))));
    }
}

#[test]
fn replayed_reordered_truncated_or_extended_session_messages_fail() {
    type Delivery = fn(&mut DeviceSession, &[Vec<u8>]) -> Result<(), Error>;
    let cases: [(&str, Delivery); 6] = [
        ("replayed", |s, m| {
            s.open(&m[0])?;
            s.open(&m[0]).map(drop)
        }),
        ("reordered", |s, m| s.open(&m[1]).map(drop)),
        ("truncated", |s, m| s.open(&m[0][..m[0].len() - 1]).map(drop)),
        ("shorter than a tag", |s, m| s.open(&m[0][..TAG_LEN - 1]).map(drop)),
        ("extended", |s, m| s.open(&[&m[0][..], &[0]].concat()).map(drop)),
        ("reflected", |s, m| {
            // A message of this side's own direction.
            let own = s.seal(b"mine")?;
            let _ = m;
            s.open(&own).map(drop)
        }),
    ];
    for (what, deliver) in cases {
        let (mut new, mut first) = confirmed("r");
        let messages = vec![first.seal(b"zero").unwrap(), first.seal(b"one").unwrap()];
        let got = deliver(&mut new, &messages);
        assert!(matches!(got, Err(Error::DeviceLink(_))), "a {what} message was accepted: {got:?}");
    }
    let (mut new, mut first) = confirmed("r");
    let huge = vec![0; MAX_MESSAGE_LEN + 1];
    assert!(matches!(new.open(&huge), Err(Error::TooLarge { .. })));
    assert!(new.open(&first.seal(b"zero").unwrap()).is_err(), "a session stays closed after an oversized message");
}

#[test]
fn wrong_lengths_of_handshake_messages_fail() {
    let alice = account("alice");
    let offer = offer_of(&alice, 1);
    let r = run(&offer, &alice, "len");
    let linking = LinkingDevice::new(&alice, offer.clone()).unwrap();
    for len in [0, MSG1_LEN - 1, MSG1_LEN + 1, MSG1_LEN + 16] {
        let msg1: Vec<u8> = r.msg1.iter().copied().cycle().take(len).collect();
        assert!(matches!(linking.respond(&msg1, NOW, &mut OsEntropy), Err(Error::DeviceLink(_))), "{len}");
    }
    for len in [0, MSG2_LEN - 1, MSG2_LEN + 1, MSG2_LEN + 16] {
        let (joining, _) = JoiningDevice::start(&offer, NOW, &mut TestEntropy::new(b"len/new")).unwrap();
        let msg2: Vec<u8> = r.msg2.iter().copied().cycle().take(len).collect();
        assert!(matches!(joining.read_response(&msg2), Err(Error::DeviceLink(_))), "{len}");
    }
}

#[test]
fn a_replayed_message_1_gets_a_fresh_session_that_the_replayer_cannot_use() {
    let (_, offer, linking) = alice_linking(1);
    let (joining, msg1) = JoiningDevice::start(&offer, NOW, &mut OsEntropy).unwrap();
    let (genuine, msg2) = linking.respond(&msg1, NOW, &mut OsEntropy).unwrap();
    let at_new = joining.read_response(&msg2).unwrap();
    // Someone replays message 1: the first device answers afresh.
    let (replayed, replayed_msg2) = linking.respond(&msg1, NOW, &mut OsEntropy).unwrap();
    assert_ne!(replayed_msg2, msg2);
    assert_ne!(replayed.info().handshake_hash, genuine.info().handshake_hash);
    assert_ne!(replayed.short_code(), genuine.short_code());
    assert_eq!(at_new.short_code(), genuine.short_code());
    // What the replayed session seals opens nowhere but at its (absent) peer.
    let mut new = at_new.confirm();
    let mut replayed = replayed.confirm();
    assert!(new.open(&replayed.seal(b"secrets").unwrap()).is_err());
}

#[test]
fn debug_output_shows_no_secret() {
    let alice = account("alice");
    let secret = [0xa7u8; 32];
    let offer = DeviceOffer { account: alice.public(), secret: OfferSecret::from_bytes(secret), expires_at: EXPIRES };
    let linking = LinkingDevice::new(&alice, offer.clone()).unwrap();
    let (joining, msg1) = JoiningDevice::start(&offer, NOW, &mut OsEntropy).unwrap();
    let shown_joining = format!("{joining:?}");
    let (at_first, msg2) = linking.respond(&msg1, NOW, &mut OsEntropy).unwrap();
    let at_new = joining.read_response(&msg2).unwrap();
    let shown = [
        format!("{offer:?}"),
        format!("{:?}", offer.secret),
        format!("{:?}", offer.rendezvous_seed()),
        format!("{linking:?}"),
        shown_joining,
        format!("{at_first:?}"),
        format!("{:?}", at_new.confirm()),
    ];
    let seed_hex: String = offer.rendezvous_seed().expose_secret().iter().map(|b| format!("{b:02x}")).collect();
    for s in &shown {
        assert!(!s.contains("a7a7") && !s.contains("167, 167") && !s.contains("A7A7"), "{s}");
        assert!(!s.contains(&seed_hex[..8]), "{s}");
    }
    assert!(shown[0].contains("<redacted>") && shown[0].contains("expires_at"));
}

#[test]
fn sealing_requires_confirmation() {
    // The type system does the work (see the compile_fail example on
    // `UnconfirmedSession`); here: confirming keeps the session's identity.
    let alice = account("alice");
    let r = run(&offer_of(&alice, 1), &alice, "c");
    let (hash, code) = (r.linking.info().handshake_hash, r.linking.short_code());
    let session = r.linking.confirm();
    assert_eq!(session.info().handshake_hash, hash);
    assert_eq!(session.info().role, Role::Linking);
    assert_eq!(session.info().account, &alice.public());
    assert!(code.to_string().parse::<ShortCode>() == Ok(code));
}

// ---------------------------------------------------------------------------
// The protocol as PROTOCOL.md §14 writes it, on plain snow and HKDF.

fn spec_hkdf(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm).expand(info, out).unwrap();
}

fn spec_psk(offer: &DeviceOffer) -> [u8; 32] {
    let mut psk = [0u8; 32];
    spec_hkdf(b"veil/v1/device-offer", offer.secret.expose_secret(), b"device-link-psk", &mut psk);
    psk
}

fn spec_prologue(offer: &DeviceOffer) -> Vec<u8> {
    let mut p = b"veil/v1/device-link".to_vec();
    p.extend_from_slice(&offer.account.signing.to_bytes());
    p.extend_from_slice(&offer.account.agreement.0);
    p.extend_from_slice(&offer.expires_at.0.to_be_bytes());
    p
}

fn spec_state(offer: &DeviceOffer, initiator: bool) -> snow::HandshakeState {
    let (psk, prologue) = (spec_psk(offer), spec_prologue(offer));
    let b = snow::Builder::new(NOISE_PARAMS.parse().unwrap()).psk(0, &psk).unwrap().prologue(&prologue).unwrap();
    if initiator { b.build_initiator().unwrap() } else { b.build_responder().unwrap() }
}

fn spec_code(h: &[u8]) -> u32 {
    let mut out = [0u8; 8];
    spec_hkdf(b"veil/v1/device-link-code", h, b"", &mut out);
    (u64::from_be_bytes(out) % 1_000_000) as u32
}

/// A new device written from the spec, after its message 1 (with `payload`).
fn spec_new_device(offer: &DeviceOffer, payload: &[u8]) -> (snow::HandshakeState, Vec<u8>) {
    let mut hs = spec_state(offer, true);
    let mut msg1 = vec![0u8; 1024];
    let n = hs.write_message(payload, &mut msg1).unwrap();
    msg1.truncate(n);
    (hs, msg1)
}

fn spec_seal(spec: &mut snow::TransportState, plaintext: &[u8]) -> Vec<u8> {
    let mut sealed = vec![0u8; plaintext.len() + TAG_LEN];
    let n = spec.write_message(plaintext, &mut sealed).unwrap();
    sealed.truncate(n);
    sealed
}

fn spec_open(spec: &mut snow::TransportState, sealed: &[u8]) -> Vec<u8> {
    let mut plain = vec![0u8; sealed.len()];
    let n = spec.read_message(sealed, &mut plain).unwrap();
    plain.truncate(n);
    plain
}

/// A first device written from the spec, signing with `signer` (the
/// account's key, or another) over `h1` (or whatever `tamper` makes of it).
fn spec_first_device(
    offer: &DeviceOffer,
    msg1: &[u8],
    signer: &SigningSecret,
    tamper: impl Fn(&mut Vec<u8>),
) -> (snow::HandshakeState, Vec<u8>) {
    let mut hs = spec_state(offer, false);
    let mut buf = [0u8; 1024];
    assert_eq!(hs.read_message(msg1, &mut buf).unwrap(), 0);
    let mut signed = b"veil/v1/device-link-existing".to_vec();
    signed.extend_from_slice(hs.get_handshake_hash());
    tamper(&mut signed);
    let sig = signer.sign(&signed);
    let mut msg2 = vec![0u8; 1024];
    let n = hs.write_message(&sig.0, &mut msg2).unwrap();
    msg2.truncate(n);
    (hs, msg2)
}

#[test]
fn a_spec_following_first_device_links_a_veil_new_device() {
    let alice = account("alice");
    let offer = offer_of(&alice, 9);
    let (joining, msg1) = JoiningDevice::start(&offer, NOW, &mut OsEntropy).unwrap();
    let (hs, msg2) = spec_first_device(&offer, &msg1, &alice.signing, |_| {});
    assert_eq!(msg2.len(), MSG2_LEN);
    let at_new = joining.read_response(&msg2).unwrap();
    assert_eq!(at_new.short_code().value(), spec_code(hs.get_handshake_hash()));
    assert_eq!(&at_new.info().handshake_hash[..], hs.get_handshake_hash());
    let mut spec = hs.into_transport_mode().unwrap();
    let mut new = at_new.confirm();
    assert_eq!(&new.open(&spec_seal(&mut spec, b"bundle")).unwrap()[..], b"bundle");
    assert_eq!(spec_open(&mut spec, &new.seal(b"thanks").unwrap()), b"thanks");
}

#[test]
fn a_veil_first_device_links_a_spec_following_new_device() {
    let alice = account("alice");
    let offer = offer_of(&alice, 9);
    let linking = LinkingDevice::new(&alice, offer.clone()).unwrap();
    let (mut hs, msg1) = spec_new_device(&offer, b"");
    assert_eq!(msg1.len(), MSG1_LEN);
    let h1 = hs.get_handshake_hash().to_vec();
    let (at_first, msg2) = linking.respond(&msg1, NOW, &mut OsEntropy).unwrap();
    let mut payload = [0u8; 1024];
    let n = hs.read_message(&msg2, &mut payload).unwrap();
    let sig = veil_crypto::Signature(payload[..n].try_into().unwrap());
    alice.signing.verify_key().verify(&[&b"veil/v1/device-link-existing"[..], &h1].concat(), &sig).unwrap();
    assert_eq!(at_first.short_code().value(), spec_code(hs.get_handshake_hash()));
    let mut first = at_first.confirm();
    let mut spec = hs.into_transport_mode().unwrap();
    assert_eq!(spec_open(&mut spec, &first.seal(b"bundle").unwrap()), b"bundle");
    assert_eq!(&first.open(&spec_seal(&mut spec, b"thanks")).unwrap()[..], b"thanks");
}

#[test]
fn message_2_signed_by_another_account_or_over_another_hash_is_refused() {
    let (alice, mallory) = (account("alice"), account("mallory"));
    let offer = offer_of(&alice, 9);
    // Mallory saw the QR code: she has the secret, not Alice's key.
    let (joining, msg1) = JoiningDevice::start(&offer, NOW, &mut OsEntropy).unwrap();
    let (_, msg2) = spec_first_device(&offer, &msg1, &mallory.signing, |_| {});
    let got = joining.read_response(&msg2).map(drop);
    assert_eq!(got, Err(Error::DeviceLink("the first device does not hold the offer's account key")));
    // Alice's key over anything but this session's h1 is refused too.
    type Tamper = fn(&mut Vec<u8>);
    let tampers: [Tamper; 3] =
        [|m| m[30] ^= 1, |m| m.truncate(b"veil/v1/device-link-existing".len()), |m| m[..7].copy_from_slice(b"veil/v9")];
    for tamper in tampers {
        let (joining, msg1) = JoiningDevice::start(&offer, NOW, &mut OsEntropy).unwrap();
        let (_, msg2) = spec_first_device(&offer, &msg1, &alice.signing, tamper);
        assert!(matches!(joining.read_response(&msg2), Err(Error::DeviceLink(_))));
    }
}

#[test]
fn a_message_1_with_a_payload_is_refused() {
    let alice = account("alice");
    let offer = offer_of(&alice, 9);
    let linking = LinkingDevice::new(&alice, offer).unwrap();
    let (_, msg1) = spec_new_device(&offer_of(&alice, 9), b"x");
    assert_eq!(msg1.len(), MSG1_LEN + 1);
    assert!(matches!(linking.respond(&msg1, NOW, &mut OsEntropy), Err(Error::DeviceLink(_))));
}

fn any_account_public() -> AccountPublic {
    account("alice").public()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_handshake_and_session_messages_are_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        len in prop_oneof![Just(MSG1_LEN), Just(MSG2_LEN), 0usize..300],
    ) {
        let alice = account("alice");
        let offer = DeviceOffer { account: any_account_public(), secret: OfferSecret::from_bytes([1; 32]), expires_at: EXPIRES };
        let garbage: Vec<u8> = bytes.iter().copied().cycle().take(if bytes.is_empty() { 0 } else { len }).collect();
        let linking = LinkingDevice::new(&alice, offer.clone()).unwrap();
        prop_assert!(linking.respond(&garbage, NOW, &mut OsEntropy).is_err());
        let (joining, _) = JoiningDevice::start(&offer, NOW, &mut OsEntropy).unwrap();
        prop_assert!(joining.read_response(&garbage).is_err());
        let (mut new, _) = confirmed("p");
        prop_assert!(new.open(&garbage).is_err());
    }

    #[test]
    fn any_change_to_a_handshake_message_is_refused(
        which in 0u8..2,
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let alice = account("alice");
        let offer = offer_of(&alice, 3);
        let r = run(&offer, &alice, "prop");
        if which == 0 {
            let mut bad = r.msg1.clone();
            bad[index.index(MSG1_LEN)] ^= mask;
            let linking = LinkingDevice::new(&alice, offer).unwrap();
            prop_assert!(matches!(linking.respond(&bad, NOW, &mut OsEntropy), Err(Error::DeviceLink(_))));
        } else {
            let mut bad = r.msg2.clone();
            bad[index.index(MSG2_LEN)] ^= mask;
            let (joining, _) = JoiningDevice::start(&offer, NOW, &mut TestEntropy::new(b"prop/new")).unwrap();
            prop_assert!(matches!(joining.read_response(&bad), Err(Error::DeviceLink(_))));
        }
    }

    #[test]
    fn sessions_carry_any_bytes(messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..2000), 1..6)) {
        let (mut new, mut first) = confirmed("any");
        for m in &messages {
            prop_assert_eq!(&new.open(&first.seal(m).unwrap()).unwrap()[..], &m[..]);
            prop_assert_eq!(&first.open(&new.seal(m).unwrap()).unwrap()[..], &m[..]);
        }
    }
}

#[test]
fn labels_are_the_documented_ones() {
    assert_eq!(label::DEVICE_OFFER, b"veil/v1/device-offer");
    assert_eq!(label::DEVICE_LINK_PROLOGUE, b"veil/v1/device-link");
    assert_eq!(label::DEVICE_LINK_EXISTING, b"veil/v1/device-link-existing");
    assert_eq!(label::RDV_DEVICE, b"veil/v1/rdv/device");
    assert_eq!(NOISE_PARAMS, "Noise_NNpsk0_25519_AESGCM_SHA256");
}
