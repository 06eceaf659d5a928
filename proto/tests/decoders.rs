//! Round trips and garbage rejection for every veil-proto decoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use veil_crypto::{
    AliasKey, ContactLink, GroupInvitation, GroupKeys, GroupSecret, Identity, Name, RendezvousSeed, SenderChain,
    TestEntropy,
    envelope::{BodyKey, EntryKind, Links, seal_entry},
    time::UnixTime,
};
use veil_proto::{
    Error,
    entry::{MAX_ENCODED_ENTRY, decode_entry, encode_entry},
    handshake::{ContactRequest, HandshakeFrame, MAX_FRAME},
    link::{self, Link, MAX_LINK_TEXT},
};

fn contact(seed: u8, name: Option<&str>) -> ContactLink {
    let id = Identity::generate(&mut TestEntropy::new(&[seed])).unwrap();
    ContactLink {
        account: id.account.public(),
        seed: RendezvousSeed::from_bytes([seed; 32]),
        display_name: name.map(|n| Name::new(n).unwrap()),
    }
}

fn invitation(seed: u8, name: Option<&str>, expires: Option<u64>) -> GroupInvitation {
    let secret = GroupSecret::from_bytes([seed; 32]);
    let alias = AliasKey::generate(&mut TestEntropy::new(&[seed, 1])).unwrap();
    let member = alias.member_keys(&GroupKeys::derive(&secret).id);
    GroupInvitation::issue(&secret, name.map(|n| Name::new(n).unwrap()), expires.map(UnixTime), &member)
}

fn name_strategy() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9 éß🐇]{1,16}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn contact_links_round_trip(seed in any::<u8>(), name in name_strategy()) {
        let c = contact(seed, name.as_deref());
        prop_assert_eq!(link::parse_contact(&link::contact_uri(&c)).unwrap(), c.clone());
        let qr = link::contact_qr(&c);
        prop_assert!(qr.bytes().all(|b| b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".contains(&b)));
        prop_assert_eq!(link::parse_contact(&qr).unwrap(), c);
    }

    #[test]
    fn invitations_round_trip(seed in any::<u8>(), name in name_strategy(), expires in proptest::option::of(1u64..u64::MAX)) {
        let inv = invitation(seed, name.as_deref(), expires);
        prop_assert_eq!(link::parse_invitation(&link::invitation_uri(&inv)).unwrap(), inv.clone());
        prop_assert_eq!(link::parse_invitation(&link::invitation_qr(&inv)).unwrap(), inv);
    }

    #[test]
    fn any_single_character_change_is_rejected(seed in any::<u8>(), idx in any::<prop::sample::Index>(), repl in "[A-Za-z0-9_-]") {
        let uri = link::contact_uri(&contact(seed, Some("Bob")));
        let prefix = "veil://contact/".len();
        let i = prefix + idx.index(uri.len() - prefix);
        let mut changed = uri.clone();
        changed.replace_range(i..i + 1, &repl);
        prop_assume!(changed != uri);
        // The last character of unpadded base64 may carry unused bits; a change
        // there is either rejected or decodes to the very same link.
        match link::parse(&changed) {
            Err(_) => {}
            Ok(Link::Contact(c)) => prop_assert_eq!(c, contact(seed, Some("Bob"))),
            Ok(other) => prop_assert!(false, "decoded to {:?}", other),
        }
    }

    #[test]
    fn truncated_links_are_rejected(seed in any::<u8>(), cut in 1usize..60) {
        let uri = link::contact_uri(&contact(seed, None));
        prop_assert!(link::parse(&uri[..uri.len() - cut]).is_err());
        let qr = link::contact_qr(&contact(seed, None));
        prop_assert!(link::parse(&qr[..qr.len() - cut]).is_err());
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = link::parse(&text);
        let _ = link::parse(&format!("veil://contact/{text}"));
        let _ = link::parse(&format!("VEIL://G/{text}"));
    }

    #[test]
    fn arbitrary_bytes_never_decode_as_entries_or_frames(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_entry(&bytes);
        let _ = HandshakeFrame::decode(&bytes);
        let _ = ContactRequest::decode(&bytes);
    }

    #[test]
    fn frames_round_trip(kind in 0u8..3, body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let f = match kind { 0 => HandshakeFrame::RequestStart(body), 1 => HandshakeFrame::Response(body), _ => HandshakeFrame::RequestFinish(body) };
        prop_assert_eq!(HandshakeFrame::decode(&f.encode()).unwrap(), f);
    }
}

#[test]
fn wrong_kind_and_foreign_text_are_rejected() {
    let c = contact(1, None);
    assert!(link::parse_invitation(&link::contact_uri(&c)).is_err());
    assert!(link::parse_contact(&link::invitation_uri(&invitation(2, None, None))).is_err());
    assert_eq!(link::parse("https://example.org/"), Err(Error::NotALink));
    assert_eq!(link::parse("veil://contact/"), Err(Error::BadText("truncated")));
    // A valid contact payload presented as a group invitation fails its checksum.
    let uri = link::contact_uri(&c);
    let swapped = uri.replacen("veil://contact/", "veil://group/", 1);
    assert_eq!(link::parse(&swapped), Err(Error::Checksum));
}

#[test]
fn oversize_text_is_rejected_before_decoding() {
    let long = format!("veil://contact/{}", "A".repeat(MAX_LINK_TEXT));
    assert!(matches!(link::parse(&long), Err(Error::TooLarge { .. })));
    assert!(matches!(HandshakeFrame::decode(&vec![0; MAX_FRAME + 1]), Err(Error::TooLarge { .. })));
    assert!(matches!(decode_entry(&vec![0; MAX_ENCODED_ENTRY + 1]), Err(Error::TooLarge { .. })));
}

#[test]
fn forged_invitation_signature_is_rejected() {
    let mut inv = invitation(3, Some("club"), Some(100));
    inv.expires_at = Some(UnixTime(1_000_000));
    assert!(link::parse(&link::invitation_uri(&inv)).is_err());
}

#[test]
fn entries_round_trip_and_bad_sections_are_rejected() {
    let mut e = TestEntropy::new(b"entry");
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([4; 32]));
    let author = Identity::generate(&mut e).unwrap().device;
    let mut chain = SenderChain::generate(&mut e).unwrap();
    let links = Links { kind: EntryKind::Message, lamport: 3, parents: vec![] };
    let sealed = seal_entry(&keys, &author, &links, BodyKey::Message(&mut chain), b"hi", &mut e).unwrap();
    let bytes = encode_entry(&sealed);
    assert_eq!(decode_entry(&bytes).unwrap(), sealed);
    let mut short_tag = sealed.clone();
    short_tag.tag = [0; 32];
    let mut m = encode_entry(&short_tag);
    m.truncate(m.len() - 1);
    assert!(decode_entry(&m).is_err());
    let mut bad_header = sealed;
    bad_header.header.pop();
    assert!(decode_entry(&encode_entry(&bad_header)).is_err());
}

#[test]
fn contact_request_validation() {
    let r =
        ContactRequest { display_name: Some(Name::new("Carol").unwrap()), seed: RendezvousSeed::from_bytes([9; 32]) };
    assert_eq!(ContactRequest::decode(&r.encode()).unwrap(), r);
    let bad_seed =
        veil_proto::pb::ContactRequest { version: 1, display_name: String::new(), rendezvous_seed: vec![1; 31] };
    assert!(ContactRequest::decode(&prost::Message::encode_to_vec(&bad_seed)).is_err());
    let bad_version =
        veil_proto::pb::ContactRequest { version: 2, display_name: String::new(), rendezvous_seed: vec![1; 32] };
    assert!(matches!(
        ContactRequest::decode(&prost::Message::encode_to_vec(&bad_version)),
        Err(Error::UnsupportedVersion { .. })
    ));
    assert!(HandshakeFrame::decode(&[]).is_err());
}
