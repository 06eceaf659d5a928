//! The target bodies. A target whose input starts with a mode byte uses it
//! to pick what the rest is: raw bytes for the decoder, or the plaintext a
//! hostile peer holding the right keys would seal (so the fuzzer reaches
//! the decoders behind the AEADs and signatures).

use futures::{executor::block_on, io::Cursor};
use veil_crypto::{
    AgreementPublic, ChainState, GroupId, MessageKey, ReceiverChain, TestEntropy,
    advert::AdvertToken,
    device_link::{self, ShortCode},
    envelope,
    envelope::{EntryHash, EntryKind},
    epoch, handshake as noise_handshake, padding, ratchet,
    ratchet::DEFAULT_WINDOW,
    seal,
};
use veil_proto::{
    base45,
    device::{DeviceReply, DeviceRequest},
    entry::{decode_entry, encode_entry},
    handshake::{ContactRequest, HandshakeFrame},
    link as links,
    metadata::MetadataEvent,
    reconcile::{Fingerprint, HashRange, MAX_LISTED, MAX_RANGES, Summary, respond},
    sync::{GroupBody, GroupFrame},
};

use crate::{
    addr::BleAddr,
    backup_format,
    channel::Channel,
    fixture::{
        BackupKey, Body, CHAIN, DEVICE_FIRST, DEVICE_NOW, Header, Input, craft_entry, device_noise, device_sessions,
        fixture, joining_device, linking_device, links_plain,
    },
    framing,
    packet::{MAX_PACKET, MIN_PACKET, Packet},
};

/// A BLE advertisement's service data: a token parses from exactly its own
/// bytes.
pub fn advert(data: &[u8]) {
    if let Ok(token) = AdvertToken::parse(data) {
        assert_eq!(&token.to_bytes()[..], data);
    }
}

/// A backup file, which a restore reads from wherever the user got it:
/// the header (its Argon2id parameters are checked by the caller before
/// any key is derived), the verifier and the chunks, opened under the
/// fixture's backup key. What opens is a storage key and at most as many
/// bytes of copy as the file holds.
pub fn backup(data: &[u8]) {
    let mut reader = backup_format::FileReader::new(data, data.len() as u64);
    let Ok(header) = reader.header() else { return };
    let encoded = header.encode();
    assert_eq!(&data[..encoded.len()], &encoded[..]);
    let mut copy = Vec::new();
    match reader.body(&BackupKey, &mut copy) {
        Ok(_) => assert!(copy.len() < data.len()),
        Err(backup_format::FormatError::Damaged(reason)) => assert!(!reason.is_empty()),
        Err(backup_format::FormatError::Passphrase) => {}
        Err(backup_format::FormatError::Write(e)) => panic!("writing to memory failed: {e}"),
    }
}

/// Device-link offers as typed or scanned (`veil://device/…` or a QR's
/// base45, mode 0), their payload (mode 1), any protobuf under a valid
/// checksum (mode 2: past the checksum to the field checks), and a short
/// code as a user types it (mode 3). What parses comes back the same from
/// each of its forms, and no other link parser takes an offer.
pub fn device_offer(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.u8() % 4;
    let rest = input.rest();
    let parsed = match mode {
        0 => links::parse_device_offer(&String::from_utf8_lossy(rest)),
        1 => links::parse_device_offer_payload(rest),
        2 => links::parse_device_offer_payload(&device_payload(rest)),
        _ => {
            if let Ok(code) = String::from_utf8_lossy(rest).parse::<ShortCode>() {
                assert!(code.value() < 1_000_000);
                assert_eq!(code.to_string().parse::<ShortCode>().expect("a printed code reads"), code);
            }
            return;
        }
    };
    if let Ok(offer) = parsed {
        for form in [links::device_offer_uri(&offer), links::device_offer_qr(&offer)] {
            assert_eq!(links::parse_device_offer(&form).expect("an encoded offer parses"), offer);
            assert!(links::parse(&form).is_err(), "an offer read as another link");
        }
        let payload = links::device_offer_payload(&offer);
        assert_eq!(links::parse_device_offer_payload(&payload).expect("an offer's payload parses"), offer);
    }
}

/// `proto ‖ check` of a device-link offer (PROTOCOL.md §3.2, kind `d`).
pub(crate) fn device_payload(proto: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let sum = Sha256::new().chain_update(b"veil/v1/link-check").chain_update(b"d").chain_update(proto).finalize();
    [proto, &sum[..4]].concat()
}

/// The device-link handshake and session, each message from a hostile
/// peer: message 1 as it arrives at the first device (mode 0); message 2
/// as it arrives at the new device (mode 1); message 2 from a first device
/// that holds the offer's secret but maybe not the account key, with a
/// payload of any bytes (mode 2: what someone who saw the QR code can
/// send); a session message as it arrives (mode 3), or sealed by the peer
/// over any plaintext (mode 4). Only the account's signature over this
/// session passes message 2; what the peer seals opens to itself.
pub fn device_link(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.u8() % 5;
    let rest = input.rest();
    match mode {
        0 => {
            let _ = linking_device().respond(rest, DEVICE_NOW, &mut TestEntropy::new(DEVICE_FIRST));
        }
        1 => {
            let (joining, _) = joining_device();
            let _ = joining.read_response(rest);
        }
        2 => {
            let (joining, msg1) = joining_device();
            let mut hs = device_noise(false);
            let mut payload = [0u8; device_link::MSG1_LEN];
            assert_eq!(hs.read_message(&msg1, &mut payload).expect("a valid message 1"), 0);
            let h1 = hs.get_handshake_hash().to_vec();
            let mut msg2 = vec![0u8; rest.len() + 64];
            let Ok(n) = hs.write_message(rest, &mut msg2) else { return };
            if let Ok(session) = joining.read_response(&msg2[..n]) {
                let signature = veil_crypto::Signature(rest.try_into().expect("a 64-byte payload"));
                let signed = [veil_crypto::label::DEVICE_LINK_EXISTING, &h1].concat();
                fixture().responder.signing.verify_key().verify(&signed, &signature).expect("the account signed");
                assert_eq!(&session.info().handshake_hash[..], hs.get_handshake_hash());
            }
        }
        3 => {
            let (mut new, _) = device_sessions();
            let _ = new.open(rest);
        }
        _ => {
            let (mut new, mut first) = device_sessions();
            if let Ok(sealed) = first.seal(rest) {
                assert_eq!(&new.open(&sealed).expect("what the peer seals opens")[..], rest);
            }
        }
    }
}

/// A log entry as it travels (sealed): what decodes round-trips.
pub fn entry(data: &[u8]) {
    if let Ok(entry) = decode_entry(data) {
        let again = decode_entry(&encode_entry(&entry)).expect("an encoded entry decodes");
        assert!(again == entry, "an entry changed on the way round");
    }
}

/// A group frame (push, pull, heads, reconciliation, acknowledgements,
/// nearby tokens): what decodes round-trips.
pub fn group_frame(data: &[u8]) {
    if let Ok(frame) = GroupFrame::decode(data) {
        assert_eq!(GroupFrame::decode(&frame.encode()).expect("an encoded frame decodes"), frame);
    }
}

/// The contact handshake's frames (device linking's too), the contact
/// request, the device-link requests and replies, and the events the
/// account's devices tell each other: what decodes round-trips.
pub fn handshake(data: &[u8]) {
    if let Ok(frame) = HandshakeFrame::decode(data) {
        assert_eq!(HandshakeFrame::decode(&frame.encode()).expect("an encoded frame decodes"), frame);
    }
    if let Ok(request) = ContactRequest::decode(data) {
        assert_eq!(ContactRequest::decode(&request.encode()).expect("an encoded request decodes"), request);
    }
    if let Ok(request) = DeviceRequest::decode(data) {
        assert_eq!(DeviceRequest::decode(&request.encode()).expect("an encoded device request decodes"), request);
    }
    if let Ok(reply) = DeviceReply::decode(data) {
        assert_eq!(DeviceReply::decode(&reply.encode()).expect("an encoded device reply decodes"), reply);
    }
    if let Ok(event) = veil_proto::account::AccountEvent::decode(data) {
        let again =
            veil_proto::account::AccountEvent::decode(&event.encode()).expect("an encoded account event decodes");
        assert_eq!(again, event);
    }
}

/// Contact links, group invitations and replication credentials as typed
/// or scanned (`veil://…` or a QR's base45): what parses comes back the
/// same from both its forms.
pub fn link(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(parsed) = links::parse(&text) {
        let forms = match &parsed {
            links::Link::Contact(c) => vec![links::contact_uri(c), links::contact_qr(c)],
            links::Link::Group(g) => vec![links::invitation_uri(g), links::invitation_qr(g)],
            links::Link::Replica(r) => vec![links::replication_uri(r)],
        };
        for form in forms {
            assert_eq!(links::parse(&form).expect("an encoded link parses"), parsed);
        }
    }
    let _ = links::parse_contact(&text);
    let _ = links::parse_invitation(&text);
    let _ = links::parse_replication(&text);
    if let Ok(bytes) = base45::decode(&text) {
        assert_eq!(base45::decode(&base45::encode(&bytes)).expect("encoded base45 decodes"), bytes);
    }
}

/// A metadata-log event (announcements, joins, removals, epochs): what
/// decodes round-trips.
pub fn metadata(data: &[u8]) {
    if let Ok(event) = MetadataEvent::decode(data) {
        assert_eq!(MetadataEvent::decode(&event.encode()).expect("an encoded event decodes"), event);
    }
}

/// A reconciliation step from a peer (a `Reconcile` group frame, or its
/// ranges given directly) answered from one of the fixture's sets. The
/// answer is within the limits and decodes at the peer; what it gives is
/// ours, what it wants is not.
pub fn reconcile(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.u8();
    let mine = &fixture().sets[usize::from(mode >> 1) % 4];
    let ranges = if mode & 1 == 0 {
        match GroupFrame::decode(input.rest()) {
            Ok(GroupFrame { body: GroupBody::Reconcile(ranges), .. }) => ranges,
            _ => return,
        }
    } else {
        direct_ranges(&mut input, mine)
    };
    let step = respond(mine, &ranges);
    assert!(step.reply.len() <= MAX_RANGES, "a reply of {} ranges", step.reply.len());
    for h in &step.give {
        assert!(mine.binary_search(h).is_ok(), "gives what it does not hold");
    }
    for h in &step.want {
        assert!(mine.binary_search(h).is_err(), "wants what it holds");
    }
    if !step.reply.is_empty() {
        for r in &step.reply {
            assert!(r.lo <= r.hi);
            if let Summary::Hashes(h) = &r.summary {
                assert!(h.len() <= MAX_LISTED);
            }
        }
        let frame = GroupFrame { session_tag: [9; 32], body: GroupBody::Reconcile(step.reply) };
        assert_eq!(GroupFrame::decode(&frame.encode()).expect("a reply decodes at the peer"), frame);
    }
}

/// Ranges as a decoded frame carries them (at most [`MAX_RANGES`], bounds
/// in order, at most [`MAX_LISTED`] hashes each), built from `input`:
/// hashes are ours (by index) or not, fingerprints ours or arbitrary.
fn direct_ranges(input: &mut Input<'_>, mine: &[EntryHash]) -> Vec<HashRange> {
    let mut ranges = Vec::new();
    while !input.0.is_empty() && ranges.len() < MAX_RANGES {
        let (a, b) = (input.u64(), input.u64());
        let (lo, hi) = (a.min(b), a.max(b));
        let shape = input.u8();
        let summary = match shape % 3 {
            0 => {
                let n = usize::from(shape >> 2).min(MAX_LISTED);
                let hashes = (0..n)
                    .map(|_| {
                        let i = usize::from(input.u16());
                        mine.get(i).copied().unwrap_or_else(|| {
                            let mut h = [0u8; 32];
                            h[..8].copy_from_slice(&lo.wrapping_add(i as u64).to_be_bytes());
                            EntryHash(h)
                        })
                    })
                    .collect();
                Summary::Hashes(hashes)
            }
            1 => {
                let start = mine.partition_point(|h| veil_proto::reconcile::key(h) < lo);
                let end = mine.partition_point(|h| veil_proto::reconcile::key(h) <= hi);
                Summary::Fingerprint(Fingerprint::of(&mine[start..end.max(start)]))
            }
            _ => {
                let count = u32::from(input.u16());
                let mut xor = [0u8; 16];
                xor.copy_from_slice(&[input.bytes(16), &[0; 16]].concat()[..16]);
                Summary::Fingerprint(Fingerprint { count, xor })
            }
        };
        ranges.push(HashRange { lo, hi, summary });
    }
    ranges
}

/// An entry opened by a member: as it arrives (mode 0); with a valid tag
/// and position but a header of any bytes (mode 1: a replication node can
/// forge the first two); or signed by an author, with position and a padded
/// body of any bytes (mode 2: what a member can forge). What opens says
/// what was sealed.
pub fn envelope(data: &[u8]) {
    let f = fixture();
    let mut input = Input(data);
    match input.u8() % 3 {
        0 => {
            if let Ok(entry) = decode_entry(input.rest()) {
                let _ = entry.open_position(&f.keys.position_key);
                let _ = envelope::open_entry(&f.keys, &entry);
            }
        }
        1 => {
            let position_len = usize::from(input.u16());
            let position = input.bytes(position_len);
            let header_len = usize::from(input.u8());
            let header = input.bytes(header_len);
            let entry = craft_entry(position, Header::Raw(header), Body::Metadata, input.rest());
            if let Ok(opened) = envelope::open_entry(&f.keys, &entry) {
                // Only the fixture's author can sign.
                assert_eq!(opened.author, f.author.verify_key());
            }
        }
        _ => {
            let message = input.u8() & 1 == 1;
            // The body is sealed with the key of the header's counter if
            // that is below 256 (else with that of 255: it does not open).
            let counter = u64::from(input.u16());
            let position_len = usize::from(input.u16());
            let position = input.bytes(position_len);
            let body = input.rest();
            let key = if message { Body::Message(counter.min(255)) } else { Body::Metadata };
            let entry = craft_entry(position, Header::Signed(if message { counter } else { 0 }), key, body);
            let Ok(opened) = envelope::open_entry(&f.keys, &entry) else { return };
            let kind = match opened.position.kind {
                EntryKind::Metadata => 1,
                EntryKind::Message => 2,
            };
            assert_eq!(
                links_plain(kind, opened.position.lamport, &opened.position.parents),
                position,
                "links decode as sealed"
            );
            assert_eq!(opened.author, f.author.verify_key());
            let read = if opened.position.kind == EntryKind::Metadata {
                opened.read_metadata(&f.keys)
            } else {
                let state = ChainState::from_bytes(&CHAIN).expect("40 bytes");
                let mut chain = ReceiverChain::new(state, DEFAULT_WINDOW).expect("a valid window");
                opened.read_message(&mut chain)
            };
            if let Ok(payload) = read {
                assert_eq!(padding::pad(&payload).expect("a payload that was padded pads"), body);
            }
        }
    }
}

/// What a member opens from a metadata event: a sender chain or an epoch
/// secret sealed to it, as it arrives (mode 0) or sealed by a member over
/// any plaintext (modes 1, 2); and a padded plaintext (mode 3). What opens
/// re-seals and re-pads to itself.
pub fn sealed(data: &[u8]) {
    let f = fixture();
    let group = f.keys.id;
    let mut input = Input(data);
    let mode = input.u8() % 4;
    let rest = input.rest();
    let to = f.member.public();
    match mode {
        0 => {
            let _ = seal::open_sealed(&f.member, b"", rest);
            let _ = ratchet::open_chain_state(&group, &f.member, rest);
            let _ = epoch::open_epoch_secret(&group, &f.member, rest);
            let _ = ChainState::from_bytes(rest);
            let _ = MessageKey::from_bytes(rest);
        }
        1 => {
            let sealed = seal_share(&to, veil_crypto::label::CHAIN_SHARE, &group, rest);
            if let Ok((device, state)) = ratchet::open_chain_state(&group, &f.member, &sealed) {
                assert_eq!([&device.to_bytes()[..], &state.to_bytes()[..]].concat(), rest);
            }
        }
        2 => {
            let sealed = seal_share(&to, veil_crypto::label::EPOCH_SHARE, &group, rest);
            if let Ok(secret) = epoch::open_epoch_secret(&group, &f.member, &sealed) {
                assert_eq!(&secret.expose_secret()[..], rest);
            }
        }
        _ => {
            if let Ok(plain) = padding::unpad(rest) {
                assert_eq!(padding::pad(plain).expect("what unpads pads"), rest);
            }
        }
    }
}

/// `plaintext` sealed to `to` under the share label `purpose` of `group`.
fn seal_share(to: &AgreementPublic, purpose: &[u8], group: &GroupId, plaintext: &[u8]) -> Vec<u8> {
    let aad = [purpose, &group.0].concat();
    let mut entropy = veil_crypto::TestEntropy::new(b"veil fuzz share");
    seal::seal_to(to, &aad, plaintext, &mut entropy).expect("test entropy")
}

/// The contact handshake's Noise messages, each from a hostile peer:
/// message 1 as it arrives (mode 0); message 2 as it arrives (mode 1);
/// message 3 from a requester that completes Noise with a payload of any
/// bytes (mode 2); message 2 from a responder holding the link's keys,
/// with a payload of any bytes (mode 3).
pub fn noise(data: &[u8]) {
    use noise_handshake::{MSG1_LEN, MSG2_LEN, NOISE_PARAMS, Requester, Responder};
    let f = fixture();
    let mut input = Input(data);
    let mode = input.u8() % 4;
    let rest = input.rest();
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().expect("veil's Noise parameters");
    let prologue = veil_crypto::label::HANDSHAKE_PROLOGUE;
    match mode {
        0 => {
            let _ = Responder::respond(&f.responder, rest);
        }
        1 => {
            let (requester, _) = Requester::start(&f.requester, &f.responder.public(), b"hello").expect("starts");
            let _ = requester.read_response(rest);
        }
        2 => {
            let secret = f.requester.agreement.to_bytes();
            let responder = f.responder.agreement.public();
            let mut hs = snow::Builder::new(params)
                .local_private_key(&secret[..])
                .and_then(|b| b.remote_public_key(&responder.0))
                .and_then(|b| b.prologue(prologue))
                .and_then(|b| b.build_initiator())
                .expect("a Noise initiator");
            let mut msg1 = vec![0u8; MSG1_LEN];
            let n = hs.write_message(&[], &mut msg1).expect("message 1");
            let (responder, msg2) = Responder::respond(&f.responder, &msg1[..n]).expect("a valid message 1");
            let mut payload = vec![0u8; MSG2_LEN];
            hs.read_message(&msg2, &mut payload).expect("a valid message 2");
            let mut msg3 = vec![0u8; rest.len() + 64];
            let Ok(n) = hs.write_message(rest, &mut msg3) else { return };
            if let Ok(request) = responder.read_request(&msg3[..n]) {
                assert_eq!(request.requester.agreement, f.requester.agreement.public());
                assert_eq!(&request.request[..], &rest[96..]);
            }
        }
        _ => {
            let secret = f.responder.agreement.to_bytes();
            let mut hs = snow::Builder::new(params)
                .local_private_key(&secret[..])
                .and_then(|b| b.prologue(prologue))
                .and_then(|b| b.build_responder())
                .expect("a Noise responder");
            let (requester, msg1) = Requester::start(&f.requester, &f.responder.public(), b"hello").expect("starts");
            let mut payload = vec![0u8; MSG1_LEN];
            hs.read_message(&msg1, &mut payload).expect("a valid message 1");
            let mut msg2 = vec![0u8; rest.len() + 64];
            let Ok(n) = hs.write_message(rest, &mut msg2) else { return };
            let _ = requester.read_response(&msg2[..n]);
        }
    }
}

/// A `/veil/frame/2` (or `/veil/contact/1`) stream: length-prefixed frames
/// up to a maximum (mode 0), or acknowledgement counts against the frames
/// in flight (mode 1). Frames read re-encode to the bytes they came from;
/// acknowledgements never exceed what is in flight.
pub fn frame(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.u8();
    let bound = usize::from(input.u16());
    let stream = input.rest();
    let mut cursor = Cursor::new(stream);
    if mode & 1 == 0 {
        let mut again = Vec::new();
        loop {
            let at = cursor.position();
            match block_on(framing::read_frame(&mut cursor, bound)) {
                Ok(frame) => {
                    assert!(frame.len() <= bound);
                    framing::encode_frame(&frame, bound, &mut again).expect("a frame read encodes");
                }
                Err(_) => {
                    let at = usize::try_from(at).expect("a position in memory");
                    assert_eq!(again, stream[..at], "frames re-encode to their bytes");
                    break;
                }
            }
        }
    } else {
        let mut in_flight = bound;
        while let Ok(n) = block_on(framing::read_ack(&mut cursor, in_flight)) {
            assert!(n >= 1 && n <= in_flight);
            in_flight -= n;
        }
    }
}

/// The GATT link's packets: a packet decodes from exactly its own bytes
/// (mode 0); one side of a link driven by a hostile peer's packets and its
/// own reads, writes and transmissions (mode 1): what it sends decodes and
/// fits the packet size, and nothing panics.
pub fn ble_link(data: &[u8]) {
    let mut input = Input(data);
    if input.u8() & 1 == 0 {
        let bytes = input.rest();
        if let Ok(packet) = Packet::decode(bytes) {
            assert_eq!(packet.encode(), bytes);
        }
        return;
    }
    let mut side = Channel::new(usize::from(input.u16()));
    let mut buf = [0u8; 1024];
    while !input.0.is_empty() {
        match input.u8() % 5 {
            0 => {
                let len = usize::from(input.u16()) % (MAX_PACKET + 2);
                if side.receive(input.bytes(len)).is_err() {
                    return; // the link ends
                }
            }
            1 => {
                let n = usize::from(input.u16()) % buf.len();
                let _ = side.read(&mut buf[..n]);
            }
            2 => {
                let n = usize::from(input.u16());
                let before = side.unsent();
                if let Ok(written) = side.write(&vec![0x5a; n]) {
                    assert_eq!(side.unsent(), before + written);
                }
            }
            3 => {
                let max = usize::from(input.u16());
                if let Some(packet) = side.poll_transmit(max) {
                    assert!(packet.len() <= max.clamp(MIN_PACKET, MAX_PACKET));
                    assert!(Packet::decode(&packet).is_ok(), "a packet sent decodes");
                }
            }
            _ => side.close(),
        }
    }
}

/// A BLE address as text (inside a `/unix/` multiaddr from the network):
/// what parses prints back as the same text.
pub fn ble_addr(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(addr) = text.parse::<BleAddr>() {
        assert_eq!(addr.to_string(), text);
    }
}
