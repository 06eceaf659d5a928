//! The text forms of device-link offers: round trips, damaged and foreign
//! input, field validation, and garbage that must never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use prost::Message;
use veil_crypto::{AccountKeys, DeviceOffer, OfferSecret, TestEntropy, time::UnixTime};
use veil_proto::{
    Error,
    link::{self, MAX_LINK_PAYLOAD, MAX_LINK_TEXT},
    pb,
};

const BASE45: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

fn offer(seed: u8, secret: [u8; 32], expires_at: u64) -> DeviceOffer {
    let account = AccountKeys::generate(&mut TestEntropy::new(&[seed])).unwrap().public();
    DeviceOffer { account, secret: OfferSecret::from_bytes(secret), expires_at: UnixTime(expires_at) }
}

/// A checksummed device payload around any protobuf bytes, as a hostile
/// encoder would make it: `proto ‖ SHA256("veil/v1/link-check" ‖ "d" ‖ proto)[0..4]`.
fn payload_around(proto: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let sum = Sha256::new().chain_update(b"veil/v1/link-check").chain_update(b"d").chain_update(proto).finalize();
    [proto, &sum[..4]].concat()
}

fn pb_offer(o: &DeviceOffer) -> pb::DeviceOffer {
    pb::DeviceOffer {
        version: 1,
        account_signing_key: o.account.signing.to_bytes().to_vec(),
        account_agreement_key: o.account.agreement.0.to_vec(),
        secret: o.secret.expose_secret().to_vec(),
        expires_at: o.expires_at.0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn offers_round_trip_in_both_forms(seed in any::<u8>(), secret in any::<[u8; 32]>(), expires in 1u64..u64::MAX) {
        let o = offer(seed, secret, expires);
        let uri = link::device_offer_uri(&o);
        prop_assert!(uri.starts_with("veil://device/"));
        prop_assert_eq!(link::parse_device_offer(&uri).unwrap(), o.clone());
        let qr = link::device_offer_qr(&o);
        prop_assert!(qr.starts_with("VEIL://D/"));
        prop_assert!(qr.bytes().all(|b| BASE45.contains(&b)));
        prop_assert_eq!(link::parse_device_offer(&qr).unwrap(), o.clone());
        prop_assert_eq!(link::parse_device_offer(&format!("  {}\n", &*qr)).unwrap(), o.clone());
        let payload = link::device_offer_payload(&o);
        prop_assert_eq!(link::parse_device_offer_payload(&payload).unwrap(), o);
        // Small enough for a QR code of modest size.
        prop_assert!(payload.len() <= 130 && qr.len() <= 210 && uri.len() <= 200, "{} {} {}", payload.len(), qr.len(), uri.len());
    }

    #[test]
    fn any_single_character_change_is_rejected(seed in any::<u8>(), idx in any::<prop::sample::Index>(), repl in "[A-Za-z0-9_-]") {
        let o = offer(seed, [seed; 32], 1_800_000_600);
        let uri = link::device_offer_uri(&o);
        let prefix = "veil://device/".len();
        let i = prefix + idx.index(uri.len() - prefix);
        let mut changed = String::from(&uri[..]);
        changed.replace_range(i..i + 1, &repl);
        prop_assume!(changed != *uri);
        // The last character of unpadded base64 may carry unused bits; a
        // change there is either rejected or decodes to the very same offer.
        if let Ok(decoded) = link::parse_device_offer(&changed) {
            prop_assert_eq!(decoded, o);
        }
    }

    #[test]
    fn any_single_qr_character_change_is_rejected(seed in any::<u8>(), idx in any::<prop::sample::Index>(), repl in prop::sample::select(BASE45.to_vec())) {
        let o = offer(seed, [seed; 32], 1_800_000_600);
        let qr = link::device_offer_qr(&o);
        let prefix = "VEIL://D/".len();
        let i = prefix + idx.index(qr.len() - prefix);
        let mut changed = qr.as_bytes().to_vec();
        changed[i] = repl;
        prop_assume!(changed != qr.as_bytes());
        prop_assert!(link::parse_device_offer(std::str::from_utf8(&changed).unwrap()).is_err());
    }

    #[test]
    fn truncated_offers_are_rejected(seed in any::<u8>(), cut in 1usize..60) {
        let o = offer(seed, [7; 32], 1_800_000_600);
        let uri = link::device_offer_uri(&o);
        prop_assert!(link::parse_device_offer(&uri[..uri.len() - cut]).is_err());
        let qr = link::device_offer_qr(&o);
        prop_assert!(link::parse_device_offer(&qr[..qr.len() - cut]).is_err());
        let payload = link::device_offer_payload(&o);
        prop_assert!(link::parse_device_offer_payload(&payload[..payload.len() - cut.min(payload.len())]).is_err());
    }

    #[test]
    fn arbitrary_text_and_bytes_never_panic(text in ".{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = link::parse_device_offer(&text);
        let _ = link::parse_device_offer(&format!("veil://device/{text}"));
        let _ = link::parse_device_offer(&format!("VEIL://D/{text}"));
        let _ = link::parse_device_offer_payload(&bytes);
        // Past the checksum: the protobuf decoder and the field checks.
        if let Ok(o) = link::parse_device_offer_payload(&payload_around(&bytes)) {
            prop_assert_eq!(link::parse_device_offer_payload(&link::device_offer_payload(&o)).unwrap(), o);
        }
    }
}

#[test]
fn fields_are_validated() {
    let o = offer(1, [2; 32], 1_800_000_600);
    let good = pb_offer(&o);
    assert_eq!(link::parse_device_offer_payload(&payload_around(&good.encode_to_vec())).unwrap(), o);
    let bad = |m: pb::DeviceOffer| link::parse_device_offer_payload(&payload_around(&m.encode_to_vec()));
    assert_eq!(
        bad(pb::DeviceOffer { version: 2, ..good.clone() }),
        Err(Error::UnsupportedVersion { what: "device-link offer", version: 2 })
    );
    assert_eq!(
        bad(pb::DeviceOffer { expires_at: 0, ..good.clone() }),
        Err(Error::Invalid { what: "device-link offer", reason: "an offer must expire" })
    );
    assert!(bad(pb::DeviceOffer { secret: vec![2; 31], ..good.clone() }).is_err());
    assert!(bad(pb::DeviceOffer { secret: vec![2; 33], ..good.clone() }).is_err());
    assert!(bad(pb::DeviceOffer { account_agreement_key: vec![3; 31], ..good.clone() }).is_err());
    // The identity point: a small-order Ed25519 key.
    let mut weak = vec![0; 32];
    weak[0] = 1;
    assert!(bad(pb::DeviceOffer { account_signing_key: weak, ..good.clone() }).is_err());
    assert!(bad(pb::DeviceOffer { account_signing_key: vec![], ..good }).is_err());
    assert!(link::parse_device_offer_payload(&[]).is_err());
}

#[test]
fn offers_and_other_links_are_told_apart() {
    let o = offer(1, [2; 32], 1_800_000_600);
    let uri = link::device_offer_uri(&o);
    let qr = link::device_offer_qr(&o);
    let refused = Err(Error::Invalid { what: "link", reason: "this is a device-link offer, for joining an account" });
    for text in [&uri[..], &qr[..]] {
        assert_eq!(link::parse(text), refused);
        assert!(link::parse_contact(text).is_err());
        assert!(link::parse_invitation(text).is_err());
    }
    let contact = veil_crypto::ContactLink {
        account: o.account,
        seed: veil_crypto::RendezvousSeed::from_bytes([2; 32]),
        display_name: None,
    };
    let contact_uri = link::contact_uri(&contact);
    assert_eq!(
        link::parse_device_offer(&contact_uri),
        Err(Error::Invalid { what: "link", reason: "this is not a device-link offer" })
    );
    assert_eq!(link::parse_device_offer("https://example.org/"), Err(Error::NotALink));
    assert_eq!(link::parse_device_offer("veil://device/"), Err(Error::BadText("truncated")));
    // A contact payload relabelled as an offer fails the kind-bound checksum.
    let relabelled = contact_uri.replacen("veil://contact/", "veil://device/", 1);
    assert_eq!(link::parse_device_offer(&relabelled), Err(Error::Checksum));
}

#[test]
fn oversize_offers_are_rejected_before_decoding() {
    let long = format!("veil://device/{}", "A".repeat(MAX_LINK_TEXT));
    assert!(matches!(link::parse_device_offer(&long), Err(Error::TooLarge { what: "link text", .. })));
    let payload = vec![0; MAX_LINK_PAYLOAD + 1];
    assert!(matches!(link::parse_device_offer_payload(&payload), Err(Error::TooLarge { what: "link payload", .. })));
}
