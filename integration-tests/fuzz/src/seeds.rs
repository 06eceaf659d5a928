//! Valid inputs of each target, made by veil's own encoders (and the
//! fixture's sealing): where the fuzzer and the smoke test start from.

use veil_crypto::{
    AliasKey, ContactLink, EpochId, GroupInvitation, GroupSecret, Name, RendezvousSeed, TestEntropy,
    advert::TOKEN_LEN,
    envelope::{self, BodyKey, EntryHash, EntryKind, Position},
    handshake::{Requester, Responder},
    padding,
    ratchet::seal_chain_state,
};
use veil_proto::{
    entry::encode_entry,
    handshake::{ContactRequest, HandshakeFrame},
    link as links,
    metadata::{ChainShare, EpochRenewed, MemberJoined, MemberRemoved, MetadataEvent},
    reconcile::{Fingerprint, HashRange, Summary},
    sync::{GroupBody, GroupFrame},
};

use crate::{
    addr::BleAddr,
    backup_format::{self, VERIFIER_PLAINTEXT, VERIFIER_PURPOSE, chunk_purpose, put_lp},
    fixture::{
        BACKUP_KEY, Body, CHAIN, DEVICE_FIRST, DEVICE_NOW, Header, craft_entry, device_noise, device_sessions, fixture,
        gcm_prefixed, joining_device, linking_device, links_plain,
    },
    framing,
    packet::Packet,
    targets::device_payload,
};

/// The seed inputs of the target `name` (none for an unknown name).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "advert" => vec![vec![7; TOKEN_LEN]],
        "backup" => backup(),
        "ble_addr" => vec![BleAddr { device: [0xc0, 0xff, 0xee, 0, 0, 1], random: true, psm: 0x81 }.to_string().into()],
        "ble_link" => ble_link(),
        "device_link" => device_link(),
        "device_offer" => device_offer(),
        "entry" => entries().iter().map(encode_entry).collect(),
        "envelope" => envelope(),
        "frame" => frame(),
        "group_frame" => group_frames().iter().map(GroupFrame::encode).collect(),
        "handshake" => handshake(),
        "link" => link(),
        "metadata" => metadata().iter().map(MetadataEvent::encode).collect(),
        "noise" => noise(),
        "reconcile" => reconcile(),
        "sealed" => sealed(),
        _ => Vec::new(),
    }
}

/// Backup files sealed under the fixture's key: the storage key and a copy
/// in one chunk, in two, and one whose verifier is another key's.
fn backup() -> Vec<Vec<u8>> {
    let header = backup_format::Header { salt: [1; 16], kdf: [19_456, 2, 1] }.encode();
    let file = |verifier: &[u8], chunks: &[&[u8]]| {
        let mut out = header.clone();
        put_lp(&mut out, &gcm_prefixed(&BACKUP_KEY, VERIFIER_PURPOSE, verifier));
        for (i, plain) in chunks.iter().enumerate() {
            put_lp(&mut out, &gcm_prefixed(&BACKUP_KEY, &chunk_purpose(i, i + 1 == chunks.len()), plain));
        }
        out
    };
    let first = [&[9u8; 32][..], b"SQLite format 3\0"].concat();
    vec![
        file(VERIFIER_PLAINTEXT, &[&first]),
        file(VERIFIER_PLAINTEXT, &[&first, b"the rest of the copy"]),
        file(b"another key's check", &[&first]),
    ]
}

fn with_mode(mode: u8, rest: &[u8]) -> Vec<u8> {
    [&[mode][..], rest].concat()
}

fn hash(i: u8) -> EntryHash {
    EntryHash([i; 32])
}

/// A metadata entry and a message entry, sealed by veil.
fn entries() -> Vec<envelope::SealedEntry> {
    let f = fixture();
    let mut entropy = TestEntropy::new(b"veil fuzz seeds");
    let position = |kind, parents: Vec<EntryHash>| Position { kind, lamport: 3, parents };
    let metadata = envelope::seal_entry(
        &f.keys,
        &f.author,
        &position(EntryKind::Metadata, vec![]),
        BodyKey::Metadata,
        b"a metadata event",
        &mut entropy,
    )
    .expect("seals");
    let mut chain =
        veil_crypto::SenderChain::from_state(veil_crypto::ChainState::from_bytes(&CHAIN).expect("40 bytes"));
    let message = envelope::seal_entry(
        &f.keys,
        &f.author,
        &position(EntryKind::Message, vec![hash(1), hash(2)]),
        BodyKey::Message(&mut chain),
        b"hello",
        &mut entropy,
    )
    .expect("seals");
    vec![metadata, message]
}

fn envelope() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = entries().iter().map(|e| with_mode(0, &encode_entry(e))).collect();
    let position = links_plain(1, 0, &[]);
    let mut crafted = vec![1];
    crafted.extend_from_slice(&(position.len() as u16).to_le_bytes());
    crafted.extend_from_slice(&position);
    crafted.push(105);
    crafted.extend_from_slice(&[1; 105]);
    crafted.extend_from_slice(&padding::pad(b"body").expect("pads"));
    out.push(crafted);
    for (message, counter, position) in
        [(0u8, 0u16, links_plain(1, 2, &[hash(5)])), (1, 7, links_plain(2, 9, &[hash(5), hash(6)]))]
    {
        let mut signed = vec![2, message];
        signed.extend_from_slice(&counter.to_le_bytes());
        signed.extend_from_slice(&(position.len() as u16).to_le_bytes());
        signed.extend_from_slice(&position);
        signed.extend_from_slice(&padding::pad(b"a body").expect("pads"));
        out.push(signed);
    }
    out
}

fn group_frames() -> Vec<GroupFrame> {
    let frame = |body| GroupFrame { session_tag: [5; 32], body };
    vec![
        frame(GroupBody::Entries(entries())),
        frame(GroupBody::Ack(vec![hash(1)])),
        frame(GroupBody::Heads { metadata: vec![hash(1)], messages: vec![hash(2), hash(3)] }),
        frame(GroupBody::Want(vec![hash(4)])),
        frame(GroupBody::Reconcile(vec![
            HashRange { lo: 0, hi: 1 << 60, summary: Summary::Hashes(vec![hash(1)]) },
            HashRange {
                lo: (1 << 60) + 1,
                hi: u64::MAX,
                summary: Summary::Fingerprint(Fingerprint { count: 40, xor: [3; 16] }),
            },
        ])),
        frame(GroupBody::Nearby(vec![[8; 32]; 16])),
    ]
}

/// A device's own key.
fn device() -> veil_crypto::VerifyKey {
    veil_crypto::SigningSecret::from_seed(&[4; 32]).verify_key()
}

fn handshake() -> Vec<Vec<u8>> {
    let request = ContactRequest {
        display_name: Some(Name::new("alice").expect("a name")),
        seed: RendezvousSeed::from_bytes([6; 32]),
    };
    vec![
        HandshakeFrame::RequestStart { message: vec![1; 48], point_proof: [2; 32] }.encode(),
        HandshakeFrame::Response(vec![3; 112]).encode(),
        HandshakeFrame::RequestFinish(vec![4; 200]).encode(),
        HandshakeFrame::DeviceHello { message: vec![5; 48], point_proof: [6; 32] }.encode(),
        HandshakeFrame::DeviceWelcome(vec![7; 112]).encode(),
        HandshakeFrame::DeviceSealed(vec![8; 300]).encode(),
        HandshakeFrame::DeviceWaiting.encode(),
        veil_proto::device::DeviceRequest::Next.encode(),
        veil_proto::device::DeviceRequest::Start { device: device(), agreement: veil_crypto::AgreementPublic([9; 32]) }
            .encode(),
        veil_proto::account::AccountEvent::Device {
            device: device(),
            agreement: veil_crypto::AgreementPublic([9; 32]),
        }
        .encode()
        .to_vec(),
        veil_proto::account::AccountEvent::DeviceRemoved { device: device() }.encode().to_vec(),
        veil_proto::device::DeviceReply::Piece { total_len: 9, data: vec![1; 9].into() }.encode().to_vec(),
        request.encode(),
    ]
}

fn link() -> Vec<Vec<u8>> {
    let f = fixture();
    let contact = ContactLink {
        account: f.responder.public(),
        seed: RendezvousSeed::from_bytes([6; 32]),
        display_name: Some(Name::new("bob").expect("a name")),
    };
    let secret = GroupSecret::from_bytes([1; 32]);
    let inviter = AliasKey::from_seed(&[8; 32]).member_keys(&f.keys.id);
    let invitation =
        GroupInvitation::issue(&secret, Some(Name::new("friends").expect("a name")), None, vec![], &inviter)
            .expect("issues");
    [
        links::contact_uri(&contact),
        links::contact_qr(&contact),
        links::invitation_uri(&invitation),
        links::invitation_qr(&invitation),
        links::replication_uri(&f.keys.replication_credential()),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn device_offer() -> Vec<Vec<u8>> {
    let offer = &fixture().device_offer;
    let payload = links::device_offer_payload(offer);
    vec![
        with_mode(0, links::device_offer_uri(offer).as_bytes()),
        with_mode(0, links::device_offer_qr(offer).as_bytes()),
        with_mode(1, &payload),
        with_mode(2, &payload[..payload.len() - 4]),
        with_mode(3, b"042 917"),
    ]
}

fn device_link() -> Vec<Vec<u8>> {
    let (_, msg1) = joining_device();
    let (_, msg2) =
        linking_device().respond(&msg1, DEVICE_NOW, &mut TestEntropy::new(DEVICE_FIRST)).expect("a valid message 1");
    let (_, mut first) = device_sessions();
    vec![
        with_mode(0, &msg1),
        with_mode(1, &msg2),
        with_mode(2, &device_signature()),
        with_mode(2, &[0; 64]),
        with_mode(3, &first.seal(b"a bundle").expect("seals")),
        with_mode(4, b"a bundle"),
    ]
}

/// The account's signature over `h1` of the fixture's new device: the
/// payload of a crafted message 2 that passes.
fn device_signature() -> Vec<u8> {
    let (_, msg1) = joining_device();
    let mut hs = device_noise(false);
    hs.read_message(&msg1, &mut [0u8; 64]).expect("a valid message 1");
    let signed = [veil_crypto::label::DEVICE_LINK_EXISTING, hs.get_handshake_hash()].concat();
    fixture().responder.signing.sign(&signed).0.to_vec()
}

fn metadata() -> Vec<MetadataEvent> {
    let f = fixture();
    let member = AliasKey::from_seed(&[8; 32]).member_keys(&f.keys.id);
    let device = f.author.verify_key();
    let mut entropy = TestEntropy::new(b"veil fuzz seeds");
    let state = veil_crypto::ChainState::from_bytes(&CHAIN).expect("40 bytes");
    let sealed_state = seal_chain_state(&f.keys.id, &device, &state, &f.member.public(), &mut entropy).expect("seals");
    vec![
        MetadataEvent::MemberJoined(MemberJoined {
            member: member.public(),
            device,
            device_cert: member.certify_device(&f.keys.id, &device),
            chain_shares: vec![ChainShare { recipient: member.signing.verify_key(), sealed_state }],
            epoch: EpochId::ROOT,
            display_name: None,
        }),
        MetadataEvent::MemberRemoved(MemberRemoved {
            member: member.signing.verify_key(),
            epoch: EpochId([7; 32]),
            shares: vec![],
        }),
        MetadataEvent::EpochRenewed(EpochRenewed {
            epoch: EpochId([9; 32]),
            shares: vec![],
            device_shares: vec![vec![3; veil_proto::metadata::SEALED_EPOCH_SHARE]],
        }),
    ]
}

fn noise() -> Vec<Vec<u8>> {
    let f = fixture();
    let (requester, msg1) = Requester::start(&f.requester, &f.responder.public(), b"hello").expect("starts");
    let (_, msg2) = Responder::respond(&f.responder, &msg1).expect("answers");
    let _ = requester;
    let mut payload3 = f.requester.signing.verify_key().to_bytes().to_vec();
    payload3.extend_from_slice(&[0; 64]);
    payload3.extend_from_slice(b"a request");
    vec![with_mode(0, &msg1), with_mode(1, &msg2), with_mode(2, &payload3), with_mode(3, &[0; 64])]
}

fn reconcile() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for set in 0..4u8 {
        for frame in group_frames().iter().filter(|f| matches!(f.body, GroupBody::Reconcile(_))) {
            out.push(with_mode(set << 1, &frame.encode()));
        }
        let mut direct = vec![(set << 1) | 1];
        for (lo, hi, shape) in
            [(0u64, u64::MAX, 1u8), (0, 1 << 62, 2), (0x4242_4242_4242_4242, 0x4242_4242_4242_4242, 8)]
        {
            direct.extend_from_slice(&lo.to_le_bytes());
            direct.extend_from_slice(&hi.to_le_bytes());
            direct.push(shape);
            direct.extend_from_slice(&[1, 0, 2, 0]);
        }
        out.push(direct);
    }
    out
}

fn sealed() -> Vec<Vec<u8>> {
    let f = fixture();
    let mut state = f.author.verify_key().to_bytes().to_vec();
    state.extend_from_slice(&CHAIN);
    vec![
        with_mode(0, &[0; 80]),
        with_mode(1, &state),
        with_mode(2, &[9; 32]),
        with_mode(3, &padding::pad(b"padded").expect("pads")),
    ]
}

fn frame() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for f in [&b"one"[..], b"", &[7; 300]] {
        framing::encode_frame(f, 1024, &mut frames).expect("encodes");
    }
    let mut acks = Vec::new();
    framing::encode_acks(3, &mut acks);
    framing::encode_acks(2, &mut acks);
    [[&[0u8, 0, 4][..], &frames].concat(), [&[1u8, 5, 0][..], &acks].concat()].to_vec()
}

fn ble_link() -> Vec<Vec<u8>> {
    let data = Packet::Data { seq: 0, payload: b"hello" }.encode();
    let mut ops = vec![1, 0, 16];
    // Receive the data packet, read it, write, transmit twice, close, transmit.
    ops.push(0);
    ops.extend_from_slice(&(data.len() as u16).to_le_bytes());
    ops.extend_from_slice(&data);
    ops.extend_from_slice(&[1, 16, 0, 2, 40, 0, 3, 23, 0, 3, 23, 0, 4, 3, 23, 0]);
    vec![
        with_mode(0, &data),
        with_mode(0, &Packet::Credit { limit: 32 }.encode()),
        with_mode(0, &Packet::Close { end: 1 }.encode()),
        ops,
    ]
}

/// Panics unless entries and shares crafted by the fixture open and read
/// as veil's own: the targets' crafted modes then reach the decoders
/// behind tags, AEADs and signatures.
pub fn check_crafted() {
    let f = fixture();
    for (kind, counter, body) in [(1u8, 0u64, Body::Metadata), (2, 7, Body::Message(7))] {
        let position = links_plain(kind, 4, &[hash(1)]);
        let padded = padding::pad(b"crafted").expect("pads");
        let entry = craft_entry(&position, Header::Signed(counter), body, &padded);
        let opened = envelope::open_entry(&f.keys, &entry).expect("a crafted entry opens");
        let read = if kind == 1 {
            opened.read_metadata(&f.keys)
        } else {
            let state = veil_crypto::ChainState::from_bytes(&CHAIN).expect("40 bytes");
            opened.read_message(&mut veil_crypto::ReceiverChain::new(state, 1024).expect("a window"))
        };
        assert_eq!(&read.expect("a crafted body reads")[..], b"crafted");
    }
    let mut state = f.author.verify_key().to_bytes().to_vec();
    state.extend_from_slice(&CHAIN);
    let aad = [veil_crypto::label::CHAIN_SHARE, &f.keys.id.0].concat();
    let sealed =
        veil_crypto::seal::seal_to(&f.member.public(), &aad, &state, &mut TestEntropy::new(b"check")).expect("seals");
    veil_crypto::ratchet::open_chain_state(&f.keys.id, &f.member, &sealed).expect("a crafted chain share opens");
    let (joining, msg1) = joining_device();
    let mut hs = device_noise(false);
    hs.read_message(&msg1, &mut [0u8; 64]).expect("a valid message 1");
    let mut msg2 = [0u8; 256];
    let n = hs.write_message(&device_signature(), &mut msg2).expect("message 2");
    joining.read_response(&msg2[..n]).expect("a crafted message 2 with the account's signature passes");
    let offer = &fixture().device_offer;
    let payload = links::device_offer_payload(offer);
    assert_eq!(device_payload(&payload[..payload.len() - 4]), &payload[..]);
    for (i, file) in backup().iter().enumerate() {
        let mut reader = backup_format::FileReader::new(&file[..], file.len() as u64);
        reader.header().expect("a crafted backup header reads");
        let opened = reader.body(&crate::fixture::BackupKey, &mut Vec::new());
        assert_eq!(opened.is_ok(), i < 2, "crafted backup {i} opens under the fixture's key, the last does not");
    }
}
