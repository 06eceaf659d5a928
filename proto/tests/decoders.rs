//! Round trips and garbage rejection for every veil-proto decoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use prost::Message;
use veil_crypto::{
    AliasKey, ContactLink, EpochId, GroupInvitation, GroupKeys, GroupSecret, Identity, Name, RendezvousSeed,
    SenderChain, TestEntropy,
    envelope::{BodyKey, EntryHash, EntryKind, Position, SealedEntry, seal_entry},
    time::UnixTime,
};
use veil_proto::{
    Error,
    device::{DeviceReply, DeviceRequest},
    entry::{MAX_ENCODED_ENTRY, decode_entry, encode_entry},
    handshake::{ContactRequest, HandshakeFrame, MAX_FRAME},
    link::{self, Link, MAX_LINK_TEXT},
    metadata::{
        ChainShare, EpochRenewed, EpochShare, MAX_CHAIN_SHARES, MemberJoined, MemberRemoved, MetadataEvent,
        SEALED_EPOCH_SHARE,
    },
    pb,
    reconcile::{Fingerprint, HashRange, MAX_RANGES, Summary},
    sync::{GroupBody, GroupFrame, MAX_GROUP_FRAME, MAX_NEARBY_TOKENS, NEARBY_PAD},
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
    GroupInvitation::issue(&secret, name.map(|n| Name::new(n).unwrap()), expires.map(UnixTime), Vec::new(), &member)
        .unwrap()
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
        let _ = DeviceRequest::decode(&bytes);
        let _ = DeviceReply::decode(&bytes);
        let _ = veil_proto::account::AccountEvent::decode(&bytes);
    }

    #[test]
    fn frames_round_trip(kind in 0u8..7, body in proptest::collection::vec(any::<u8>(), 0..200), proof in any::<[u8; 32]>()) {
        let f = match kind {
            0 => HandshakeFrame::RequestStart { message: body, point_proof: proof },
            1 => HandshakeFrame::Response(body),
            2 => HandshakeFrame::RequestFinish(body),
            3 => HandshakeFrame::DeviceHello { message: body, point_proof: proof },
            4 => HandshakeFrame::DeviceWelcome(body),
            5 => HandshakeFrame::DeviceSealed(body),
            _ => HandshakeFrame::DeviceWaiting,
        };
        prop_assert_eq!(HandshakeFrame::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn arbitrary_bytes_never_decode_as_group_frames_or_metadata(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = GroupFrame::decode(&bytes);
        let _ = MetadataEvent::decode(&bytes);
    }

    #[test]
    fn group_frames_round_trip(tag in any::<[u8; 32]>(), n in 1usize..5, hashes in proptest::collection::vec(any::<[u8; 32]>(), 1..20)) {
        let entries = (0..n).map(|i| sample_entry(i as u8)).collect();
        let f = GroupFrame { session_tag: tag, body: GroupBody::Entries(entries) };
        let bytes = f.encode();
        let GroupBody::Entries(ref list) = f.body else { unreachable!() };
        prop_assert_eq!(bytes.len(), 2 + 32 + 3 + list.iter().map(GroupFrame::entry_cost).sum::<usize>());
        prop_assert_eq!(GroupFrame::decode(&bytes).unwrap(), f);
        let list: Vec<EntryHash> = hashes.into_iter().map(EntryHash).collect();
        let ack = GroupFrame { session_tag: tag, body: GroupBody::Ack(list.clone()) };
        prop_assert_eq!(GroupFrame::decode(&ack.encode()).unwrap(), ack);
        let want = GroupFrame { session_tag: tag, body: GroupBody::Want(list.clone()) };
        prop_assert_eq!(GroupFrame::decode(&want.encode()).unwrap(), want);
        let heads = GroupFrame { session_tag: tag, body: GroupBody::Heads { metadata: list[..1].to_vec(), messages: list } };
        prop_assert_eq!(GroupFrame::decode(&heads.encode()).unwrap(), heads);
        let none = GroupFrame { session_tag: tag, body: GroupBody::Heads { metadata: vec![], messages: vec![] } };
        prop_assert_eq!(GroupFrame::decode(&none.encode()).unwrap(), none);
    }

    #[test]
    fn nearby_frames_round_trip_and_bad_counts_are_rejected(salt in any::<[u8; 32]>(), n in 0usize..300, token in any::<[u8; 32]>()) {
        let f = GroupFrame { session_tag: salt, body: GroupBody::Nearby(vec![token; n]) };
        let valid = n > 0 && n <= MAX_NEARBY_TOKENS && n % NEARBY_PAD == 0;
        match GroupFrame::decode(&f.encode()) {
            Ok(decoded) => prop_assert!(valid && decoded == f),
            Err(_) => prop_assert!(!valid),
        }
        // A short token is refused.
        let mut tokens = vec![token.to_vec(); NEARBY_PAD];
        tokens[3].pop();
        let body = Some(pb::group_frame::Body::Nearby(pb::Nearby { tokens }));
        let short = pb::GroupFrame { session_tag: salt.to_vec(), body }.encode_to_vec();
        prop_assert!(GroupFrame::decode(&short).is_err());
    }

    #[test]
    fn truncated_group_frames_are_rejected(cut in 1usize..100) {
        let f = GroupFrame { session_tag: [3; 32], body: GroupBody::Entries(vec![sample_entry(1)]) }.encode();
        prop_assert!(GroupFrame::decode(&f[..f.len().saturating_sub(cut)]).is_err());
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
    let position = Position { kind: EntryKind::Message, lamport: 3, parents: vec![] };
    let sealed = seal_entry(&keys, &author, &position, BodyKey::Message(&mut chain), b"hi", &mut e).unwrap();
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

fn sample_entry(label: u8) -> SealedEntry {
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([label; 32]));
    let device = veil_crypto::SigningSecret::from_seed(&[label; 32]);
    let position = Position { kind: EntryKind::Metadata, lamport: 1, parents: vec![] };
    seal_entry(&keys, &device, &position, BodyKey::Metadata, &[label; 40], &mut TestEntropy::new(&[label])).unwrap()
}

#[test]
fn group_frames_refuse_bad_tags_empty_batches_and_oversize_input() {
    let good = GroupFrame { session_tag: [1; 32], body: GroupBody::Ack(vec![EntryHash([2; 32])]) }.encode();
    assert!(GroupFrame::decode(&good).is_ok());
    let mut short_tag = veil_proto::pb::GroupFrame {
        session_tag: vec![1; 31],
        body: Some(veil_proto::pb::group_frame::Body::Ack(veil_proto::pb::EntryAck { hashes: vec![vec![2; 32]] })),
    };
    use prost::Message;
    assert!(GroupFrame::decode(&short_tag.encode_to_vec()).is_err());
    short_tag.session_tag = vec![1; 32];
    short_tag.body =
        Some(veil_proto::pb::group_frame::Body::Ack(veil_proto::pb::EntryAck { hashes: vec![vec![2; 31]] }));
    assert!(GroupFrame::decode(&short_tag.encode_to_vec()).is_err());
    short_tag.body = Some(veil_proto::pb::group_frame::Body::Entries(veil_proto::pb::EntryBatch { entries: vec![] }));
    assert!(GroupFrame::decode(&short_tag.encode_to_vec()).is_err());
    short_tag.body = None;
    assert!(GroupFrame::decode(&short_tag.encode_to_vec()).is_err());
    assert!(matches!(GroupFrame::decode(&vec![0; MAX_GROUP_FRAME + 1]), Err(Error::TooLarge { .. })));
}

#[test]
fn member_announcements_round_trip_and_reject_bad_keys() {
    let member = veil_crypto::AliasKey::generate(&mut TestEntropy::new(b"m"))
        .unwrap()
        .member_keys(&veil_crypto::GroupId([5; 32]));
    let device = veil_crypto::SigningSecret::from_seed(&[6; 32]).verify_key();
    let event = MetadataEvent::MemberJoined(MemberJoined {
        member: member.public(),
        device,
        device_cert: member.certify_device(&veil_crypto::GroupId([5; 32]), &device),
        chain_shares: vec![ChainShare { recipient: device, sealed_state: vec![9; 136] }],
        epoch: EpochId([3; 32]),
        display_name: Some(Name::new("Bob").unwrap()),
    });
    assert_eq!(MetadataEvent::decode(&event.encode()).unwrap(), event);
    let MetadataEvent::MemberJoined(mut j) = event else { unreachable!() };
    // No name is no name; a name too long is refused.
    j.display_name = None;
    assert_eq!(
        MetadataEvent::decode(&MetadataEvent::MemberJoined(j.clone()).encode()).unwrap(),
        MetadataEvent::MemberJoined(j.clone())
    );
    let mut long = veil_proto::pb::MetadataEvent::decode(&MetadataEvent::MemberJoined(j.clone()).encode()[..]).unwrap();
    if let Some(veil_proto::pb::metadata_event::Event::MemberJoined(m)) = long.event.as_mut() {
        m.display_name = "x".repeat(veil_crypto::MAX_NAME_LEN + 1);
    }
    assert!(MetadataEvent::decode(&long.encode_to_vec()).is_err());
    j.chain_shares[0].sealed_state = vec![];
    assert!(MetadataEvent::decode(&MetadataEvent::MemberJoined(j).encode()).is_err());
    assert!(MetadataEvent::decode(&[]).is_err());
}

#[test]
fn member_removals_round_trip_and_reject_bad_shares() {
    let member = veil_crypto::SigningSecret::from_seed(&[7; 32]).verify_key();
    let share = EpochShare { recipient: member, sealed_secret: vec![1; SEALED_EPOCH_SHARE] };
    let event =
        MetadataEvent::MemberRemoved(MemberRemoved { member, epoch: EpochId([8; 32]), shares: vec![share.clone()] });
    assert_eq!(MetadataEvent::decode(&event.encode()).unwrap(), event);
    let with = |shares: Vec<EpochShare>| {
        MetadataEvent::MemberRemoved(MemberRemoved { member, epoch: EpochId([8; 32]), shares }).encode()
    };
    let short = EpochShare { recipient: member, sealed_secret: vec![1; SEALED_EPOCH_SHARE - 1] };
    assert!(MetadataEvent::decode(&with(vec![short])).is_err());
    assert!(MetadataEvent::decode(&with(vec![share; MAX_CHAIN_SHARES + 1])).is_err());
    let bad_epoch = veil_proto::pb::MetadataEvent {
        event: Some(veil_proto::pb::metadata_event::Event::MemberRemoved(veil_proto::pb::MemberRemoved {
            member_signing_key: member.to_bytes().to_vec(),
            epoch_id: vec![8; 31],
            epoch_shares: vec![],
        })),
    };
    assert!(MetadataEvent::decode(&prost::Message::encode_to_vec(&bad_epoch)).is_err());
}

#[test]
fn epoch_renewals_round_trip_and_reject_bad_shares() {
    let member = veil_crypto::SigningSecret::from_seed(&[7; 32]).verify_key();
    let share = EpochShare { recipient: member, sealed_secret: vec![1; SEALED_EPOCH_SHARE] };
    let renewal = |shares: Vec<EpochShare>, device_shares: Vec<Vec<u8>>| {
        MetadataEvent::EpochRenewed(EpochRenewed { epoch: EpochId([8; 32]), shares, device_shares })
    };
    let event = renewal(vec![share.clone()], vec![vec![2; SEALED_EPOCH_SHARE]; 2]);
    assert_eq!(MetadataEvent::decode(&event.encode()).unwrap(), event);
    let refused = |e: MetadataEvent| MetadataEvent::decode(&e.encode()).is_err();
    assert!(refused(renewal(vec![], vec![vec![2; SEALED_EPOCH_SHARE + 1]])));
    assert!(refused(renewal(vec![], vec![vec![]])));
    assert!(refused(renewal(vec![], vec![vec![2; SEALED_EPOCH_SHARE]; MAX_CHAIN_SHARES + 1])));
    assert!(refused(renewal(vec![share; MAX_CHAIN_SHARES + 1], vec![])));
    let bad_epoch = veil_proto::pb::MetadataEvent {
        event: Some(veil_proto::pb::metadata_event::Event::EpochRenewed(veil_proto::pb::EpochRenewed {
            epoch_id: vec![8; 33],
            epoch_shares: vec![],
            device_shares: vec![],
        })),
    };
    assert!(MetadataEvent::decode(&prost::Message::encode_to_vec(&bad_epoch)).is_err());
}

#[test]
fn point_proofs_travel_only_with_message_one() {
    use prost::Message;
    let with_proof = |m| veil_proto::pb::HandshakeFrame { message: Some(m), point_proof: vec![7; 32] }.encode_to_vec();
    use veil_proto::pb::handshake_frame::Message as M;
    assert!(HandshakeFrame::decode(&with_proof(M::RequestStart(vec![1; 48]))).is_ok());
    assert!(HandshakeFrame::decode(&with_proof(M::Response(vec![1; 48]))).is_err());
    assert!(HandshakeFrame::decode(&with_proof(M::RequestFinish(vec![1; 48]))).is_err());
    let without = veil_proto::pb::HandshakeFrame { message: Some(M::RequestStart(vec![1; 48])), point_proof: vec![] };
    assert!(HandshakeFrame::decode(&without.encode_to_vec()).is_err());
    // Device linking's message 1 carries one too, and nothing else does.
    assert!(HandshakeFrame::decode(&with_proof(M::DeviceHello(vec![1; 48]))).is_ok());
    for m in [M::DeviceWelcome(vec![1; 112]), M::DeviceSealed(vec![1; 100]), M::DeviceWaiting(true)] {
        assert!(HandshakeFrame::decode(&with_proof(m)).is_err());
    }
    let without = veil_proto::pb::HandshakeFrame { message: Some(M::DeviceHello(vec![1; 48])), point_proof: vec![] };
    assert!(HandshakeFrame::decode(&without.encode_to_vec()).is_err());
    let not_waiting = veil_proto::pb::HandshakeFrame { message: Some(M::DeviceWaiting(false)), point_proof: vec![] };
    assert!(HandshakeFrame::decode(&not_waiting.encode_to_vec()).is_err());
}

#[test]
fn a_session_message_of_the_largest_size_fits_a_frame_and_one_byte_more_does_not() {
    let largest = HandshakeFrame::DeviceSealed(vec![9; veil_crypto::device_link::MAX_MESSAGE_LEN]);
    let bytes = largest.encode();
    assert!(bytes.len() <= MAX_FRAME);
    assert_eq!(HandshakeFrame::decode(&bytes).unwrap(), largest);
    let over = HandshakeFrame::DeviceSealed(vec![9; veil_crypto::device_link::MAX_MESSAGE_LEN + 1]).encode();
    assert!(matches!(HandshakeFrame::decode(&over), Err(Error::TooLarge { .. })));
}

fn range_strategy() -> impl Strategy<Value = HashRange> {
    (any::<u64>(), any::<u64>(), proptest::option::of((any::<u32>(), any::<[u8; 16]>())), 0usize..5).prop_map(
        |(a, b, fp, n)| HashRange {
            lo: a.min(b),
            hi: a.max(b),
            summary: match fp {
                Some((count, xor)) => Summary::Fingerprint(Fingerprint { count, xor }),
                None => Summary::Hashes((0..n).map(|i| EntryHash([i as u8; 32])).collect()),
            },
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reconcile_frames_round_trip(tag in any::<[u8; 32]>(), ranges in proptest::collection::vec(range_strategy(), 1..40)) {
        let f = GroupFrame { session_tag: tag, body: GroupBody::Reconcile(ranges) };
        prop_assert_eq!(GroupFrame::decode(&f.encode()).unwrap(), f);
    }
}

#[test]
fn reconcile_frames_refuse_bad_ranges() {
    use prost::Message;
    use veil_proto::pb::{self, hash_range::Summary as S};
    let frame = |ranges: Vec<pb::HashRange>| {
        pb::GroupFrame {
            session_tag: vec![1; 32],
            body: Some(pb::group_frame::Body::Reconcile(pb::Reconcile { ranges })),
        }
        .encode_to_vec()
    };
    let fp = |xor: Vec<u8>| Some(S::Fingerprint(pb::Fingerprint { count: 3, xor }));
    let ok = pb::HashRange { lo: 1, hi: 2, summary: fp(vec![0; 16]) };
    assert!(GroupFrame::decode(&frame(vec![ok.clone()])).is_ok());
    assert!(GroupFrame::decode(&frame(vec![])).is_err(), "no ranges");
    assert!(GroupFrame::decode(&frame(vec![ok.clone(); MAX_RANGES + 1])).is_err(), "too many ranges");
    assert!(GroupFrame::decode(&frame(vec![pb::HashRange { lo: 3, hi: 2, ..ok.clone() }])).is_err(), "lo > hi");
    assert!(GroupFrame::decode(&frame(vec![pb::HashRange { summary: fp(vec![0; 15]), ..ok.clone() }])).is_err());
    assert!(GroupFrame::decode(&frame(vec![pb::HashRange { summary: None, ..ok.clone() }])).is_err());
    let listed = |n: usize, len: usize| Some(S::Hashes(pb::EntryAck { hashes: vec![vec![7; len]; n] }));
    assert!(GroupFrame::decode(&frame(vec![pb::HashRange { summary: listed(0, 32), ..ok.clone() }])).is_ok());
    assert!(GroupFrame::decode(&frame(vec![pb::HashRange { summary: listed(257, 32), ..ok.clone() }])).is_err());
    assert!(GroupFrame::decode(&frame(vec![pb::HashRange { summary: listed(1, 33), ..ok }])).is_err());
}

#[test]
fn replication_credentials_round_trip_and_are_told_apart_from_other_links() {
    let credential = GroupKeys::derive(&GroupSecret::from_bytes([4; 32])).replication_credential();
    let uri = veil_proto::link::replication_uri(&credential);
    assert!(uri.starts_with("veil://replica/"));
    assert_eq!(veil_proto::link::parse_replication(&uri).unwrap(), credential);
    assert!(veil_proto::link::parse_contact(&uri).is_err());
    assert!(veil_proto::link::parse_invitation(&uri).is_err());
    assert!(
        veil_proto::link::parse_replication(&veil_proto::link::invitation_uri(&invitation(3, None, None))).is_err()
    );
    let mut tampered = uri.into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    assert!(veil_proto::link::parse_replication(std::str::from_utf8(&tampered).unwrap()).is_err());
}
