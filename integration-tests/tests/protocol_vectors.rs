//! Recomputes every test vector in `docs/PROTOCOL.md` from its inputs, so the
//! specification and the code cannot drift apart. On a mismatch it lists
//! every differing field with the value the code computed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use veil_crypto::{
    AccountKeys, AgreementSecret, AliasKey, ChainKey, ChainState, ContactLink, DeviceOffer, GroupInvitation, GroupKeys,
    GroupSecret, Name, OfferSecret, RendezvousPoint, RendezvousSeed, SenderChain, SigningSecret, TestEntropy,
    device_link::{JoiningDevice, LinkingDevice},
    envelope::{BodyKey, EntryHash, EntryKind, Position, open_entry, seal_entry},
    rendezvous::{Schedule, Topic},
    seal::seal_to,
    time::UnixTime,
};
use veil_proto::{
    link,
    sync::{GroupBody, GroupFrame},
};

type Vectors = BTreeMap<String, BTreeMap<String, String>>;

/// Parses the ```text blocks of PROTOCOL.md that start with `vector: NAME`.
fn load() -> Vectors {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md is readable");
    let mut out = Vectors::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for line in doc.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            current = None;
            continue;
        }
        if let Some(name) = t.strip_prefix("vector: ") {
            current = Some(name.to_owned());
            out.insert(name.to_owned(), BTreeMap::new());
            continue;
        }
        let Some(name) = &current else { continue };
        let fields = out.get_mut(name).expect("vector inserted");
        if let Some((k, v)) = t.split_once(" = ") {
            let k = k.trim().to_owned();
            fields.insert(k.clone(), v.trim().trim_matches('"').to_owned());
            last_key = Some(k);
        } else if !t.is_empty() {
            // A continuation line of a long hex value.
            let k = last_key.clone().expect("continuation after a field");
            fields.get_mut(&k).expect("field exists").push_str(t);
        }
    }
    out
}

struct Check {
    vectors: Vectors,
    mismatches: Vec<String>,
}

impl Check {
    fn input(&self, vector: &str, field: &str) -> String {
        self.vectors
            .get(vector)
            .and_then(|v| v.get(field))
            .unwrap_or_else(|| panic!("PROTOCOL.md lacks {vector}.{field}"))
            .clone()
    }

    fn hex32(&self, vector: &str, field: &str) -> [u8; 32] {
        hex::decode(self.input(vector, field)).expect("hex").try_into().expect("32 bytes")
    }

    fn expect(&mut self, vector: &str, field: &str, computed: impl AsRef<[u8]>) {
        self.expect_text(vector, field, &hex::encode(computed));
    }

    fn expect_text(&mut self, vector: &str, field: &str, computed: &str) {
        let documented = self.vectors.get(vector).and_then(|v| v.get(field));
        if documented.map(String::as_str) != Some(computed) {
            self.mismatches.push(format!("{vector}.{field}: documented {documented:?}, computed {computed}"));
        }
    }
}

fn account(c: &Check, vector: &str, who: &str) -> AccountKeys {
    AccountKeys {
        signing: SigningSecret::from_seed(&c.hex32(vector, &format!("{who}_signing_seed"))),
        agreement: AgreementSecret::from_bytes(c.hex32(vector, &format!("{who}_agreement_secret"))),
    }
}

#[test]
fn every_protocol_md_vector_matches_the_code() {
    let mut c = Check { vectors: load(), mismatches: vec![] };

    // Rendezvous point.
    let v = "rendezvous-point";
    let acct = SigningSecret::from_seed(&c.hex32(v, "account_signing_seed")).verify_key();
    let seed = RendezvousSeed::from_bytes(c.hex32(v, "seed"));
    let t = UnixTime(c.input(v, "time").parse().expect("time"));
    let schedule = Schedule::new(c.input(v, "period").parse().expect("period"), 600).expect("schedule");
    let start = schedule.period_start(t);
    c.expect_text(v, "period_start", &start.0.to_string());
    c.expect(v, "topic", Topic::contact(&acct).as_bytes());
    c.expect(v, "point", schedule.point_at(&Topic::contact(&acct), &seed, t).0);
    c.expect(v, "next_point", schedule.point_at(&Topic::contact(&acct), &seed, schedule.next_boundary(t)).0);

    // Point proof and session tag.
    let v = "point-proof-and-session-tag";
    let point = RendezvousPoint(c.hex32(v, "point"));
    let message = hex::decode(c.input(v, "message")).expect("hex");
    c.expect(v, "point_proof", veil_crypto::rendezvous::point_proof(&point, &message));
    let seed = RendezvousSeed::from_bytes(c.hex32(v, "seed"));
    let (from, to) =
        (hex::decode(c.input(v, "sender")).expect("hex"), hex::decode(c.input(v, "receiver")).expect("hex"));
    c.expect(v, "session_tag", veil_crypto::rendezvous::session_tag(&seed, &from, &to));

    // A nearby offer: one group's token, padded to 16 with TestEntropy.
    let v = "nearby-offer";
    let seed = RendezvousSeed::from_bytes(c.hex32(v, "seed"));
    let salt = c.hex32(v, "salt");
    let (from, to) =
        (hex::decode(c.input(v, "sender")).expect("hex"), hex::decode(c.input(v, "receiver")).expect("hex"));
    let token = veil_crypto::rendezvous::nearby_token(&seed, &salt, &from, &to);
    c.expect(v, "token", token);
    let mut padding = TestEntropy::new(c.input(v, "padding_label").as_bytes());
    let mut tokens = vec![token];
    while tokens.len() < veil_proto::sync::NEARBY_PAD {
        let mut t = [0u8; 32];
        veil_crypto::Entropy::fill(&mut padding, &mut t).expect("entropy");
        tokens.push(t);
    }
    let frame = GroupFrame { session_tag: salt, body: GroupBody::Nearby(tokens) };
    c.expect(v, "frame", frame.encode());
    assert!(veil_crypto::rendezvous::holds_nearby_token(
        &seed,
        &salt,
        &from,
        &to,
        match &frame.body {
            GroupBody::Nearby(t) => t,
            _ => unreachable!(),
        }
    ));

    // Group key schedule.
    let v = "group-key-schedule";
    let keys = GroupKeys::derive(&GroupSecret::from_bytes(c.hex32(v, "secret")));
    c.expect(v, "group_id", keys.id.0);
    c.expect(v, "header_key", keys.header_key.expose_secret());
    c.expect(v, "metadata_key", keys.metadata_key.expose_secret());
    c.expect(v, "position_key", keys.position_key.expose_secret());
    c.expect(v, "entry_auth_key", keys.entry_auth_key.expose_secret());
    c.expect(v, "replication_id", keys.replication_id.0);
    c.expect(v, "rendezvous_seed", keys.rendezvous_seed.expose_secret());

    // Contact group.
    let v = "contact-group";
    let (a, b) = (account(&c, v, "a"), account(&c, v, "b"));
    c.expect(v, "a_public", a.public().to_bytes());
    c.expect(v, "b_public", b.public().to_bytes());
    let secret = veil_crypto::contact_group_secret(&a, &b.public()).expect("contact group");
    c.expect(v, "group_secret", secret.expose_secret());

    // The account's own group (§14.8), from the alias key.
    let v = "account-group";
    let alias = AliasKey::from_seed(&c.hex32(v, "alias_seed"));
    let account_group = veil_crypto::account_group_secret(&alias);
    c.expect(v, "group_secret", account_group.expose_secret());
    c.expect(v, "group_id", GroupKeys::derive(&account_group).id.0);

    // A device's agreement key (§6.6), from its own device seed.
    let v = "device-agreement";
    let device = SigningSecret::from_seed(&c.hex32(v, "device_seed"));
    c.expect(v, "agreement_public", veil_crypto::epoch::device_agreement_key(&device).public().0);

    // The acceptor's announcement in the contact group, introducing itself.
    let v = "contact-introduction";
    let b = account(&c, "contact-group", "b");
    let group_id = GroupKeys::derive(&secret).id;
    let device = SigningSecret::from_seed(&c.hex32(v, "device_seed")).verify_key();
    let member = veil_crypto::MemberKeys { signing: b.signing.clone(), agreement: b.agreement.clone() };
    let joined = veil_proto::metadata::MemberJoined {
        member: member.public(),
        device,
        device_cert: member.certify_device(&group_id, &device),
        chain_shares: Vec::new(),
        epoch: veil_crypto::EpochId::ROOT,
        display_name: Some(Name::new(&c.input(v, "display_name")).expect("name")),
    };
    let event = veil_proto::metadata::MetadataEvent::MemberJoined(joined);
    c.expect(v, "event", event.encode());
    assert_eq!(veil_proto::metadata::MetadataEvent::decode(&event.encode()).expect("decodes"), event);

    // Member keys.
    let v = "member-keys";
    let alias = AliasKey::from_seed(&c.hex32(v, "alias_seed"));
    let group_id = GroupKeys::derive(&GroupSecret::from_bytes(c.hex32(v, "group_secret"))).id;
    c.expect(v, "group_id", group_id.0);
    let member = alias.member_keys(&group_id);
    c.expect(v, "member_signing_public", member.public().signing.to_bytes());
    c.expect(v, "member_agreement_public", member.public().agreement.0);

    // Ratchet.
    let v = "ratchet";
    let mut chain =
        SenderChain::from_state(ChainState { chain_key: ChainKey::from_bytes(c.hex32(v, "chain_key_0")), next: 0 });
    for n in 0..2 {
        let (counter, mk) = chain.next_key().expect("step");
        assert_eq!(counter, n);
        c.expect(v, &format!("message_key_{n}"), mk.expose_key());
        c.expect(v, &format!("nonce_{n}"), mk.nonce());
        c.expect(v, &format!("chain_key_{}", n + 1), chain.state().chain_key.expose_secret());
    }

    // Sealing to an X25519 key.
    let v = "seal";
    let recipient = AgreementSecret::from_bytes(c.hex32(v, "recipient_secret"));
    let mut entropy = TestEntropy::new(c.input(v, "entropy_label").as_bytes());
    let sealed =
        seal_to(&recipient.public(), c.input(v, "aad").as_bytes(), c.input(v, "plaintext").as_bytes(), &mut entropy)
            .expect("seal");
    c.expect(v, "recipient_public", recipient.public().0);
    c.expect(v, "sealed", &sealed);

    // A message entry.
    let v = "message-entry";
    let keys = GroupKeys::derive(&GroupSecret::from_bytes(c.hex32(v, "group_secret")));
    let author = SigningSecret::from_seed(&c.hex32(v, "author_seed"));
    let mut chain =
        SenderChain::from_state(ChainState { chain_key: ChainKey::from_bytes(c.hex32(v, "chain_key")), next: 0 });
    let position = Position {
        kind: EntryKind::Message,
        lamport: c.input(v, "lamport").parse().expect("lamport"),
        parents: vec![EntryHash(c.hex32(v, "parent"))],
    };
    let mut entropy = TestEntropy::new(c.input(v, "entropy_label").as_bytes());
    let payload = c.input(v, "payload");
    let entry = seal_entry(&keys, &author, &position, BodyKey::Message(&mut chain), payload.as_bytes(), &mut entropy)
        .expect("seal entry");
    c.expect(v, "position", &entry.position);
    c.expect(v, "header", &entry.header);
    c.expect(v, "body", &entry.body);
    c.expect(v, "tag", entry.tag);
    c.expect(v, "hash", entry.hash().0);
    assert_eq!(open_entry(&keys, &entry).expect("opens").author, author.verify_key());

    // Contact link text.
    let v = "contact-link";
    let a = account(&c, v, "account");
    let link_value = ContactLink {
        account: a.public(),
        seed: RendezvousSeed::from_bytes(c.hex32(v, "seed")),
        display_name: Some(Name::new(&c.input(v, "display_name")).expect("name")),
    };
    c.expect_text(v, "uri", &link::contact_uri(&link_value));
    c.expect_text(v, "qr", &link::contact_qr(&link_value));
    assert_eq!(link::parse_contact(&link::contact_uri(&link_value)).ok(), Some(link_value));

    // Group invitation text.
    let v = "group-invitation";
    let secret = GroupSecret::from_bytes(c.hex32(v, "group_secret"));
    let inviter = AliasKey::from_seed(&c.hex32(v, "inviter_alias_seed")).member_keys(&GroupKeys::derive(&secret).id);
    let inv = GroupInvitation::issue(
        &secret,
        Some(Name::new(&c.input(v, "name")).expect("name")),
        Some(UnixTime(c.input(v, "expires_at").parse().expect("expiry"))),
        Vec::new(),
        &inviter,
    )
    .expect("invitation");
    c.expect(v, "signature", inv.signature.0);
    c.expect_text(v, "uri", &link::invitation_uri(&inv));

    // Set reconciliation: a set of `count` hashes, successive blocks of
    // TestEntropy(label), opens with one fingerprinted range; an empty side
    // answers with an empty list for it.
    let v = "reconcile";
    let count: usize = c.input(v, "count").parse().expect("count");
    let mut entropy = TestEntropy::new(c.input(v, "label").as_bytes());
    let mut set: Vec<EntryHash> = (0..count)
        .map(|_| {
            let mut h = [0u8; 32];
            veil_crypto::Entropy::fill(&mut entropy, &mut h).expect("entropy");
            EntryHash(h)
        })
        .collect();
    set.sort();
    let tag = c.hex32(v, "session_tag");
    let opening = veil_proto::reconcile::initial(&set);
    c.expect(v, "opening_frame", GroupFrame { session_tag: tag, body: GroupBody::Reconcile(opening.clone()) }.encode());
    let answer = veil_proto::reconcile::respond(&[], &opening).reply;
    c.expect(v, "answer_frame", GroupFrame { session_tag: tag, body: GroupBody::Reconcile(answer) }.encode());

    // The BLE link: a stream cut to packets, its close, the reader's credit.
    let v = "ble-link";
    let len: usize = c.input(v, "stream_len").parse().expect("length");
    let max_packet: usize = c.input(v, "max_packet").parse().expect("packet size");
    let (mut sender, mut receiver) = (veil_ble::channel::Channel::new(4096), veil_ble::channel::Channel::new(4096));
    let stream: Vec<u8> = (0..len).map(|i| i as u8).collect();
    assert_eq!(sender.write(&stream).expect("write"), len);
    for field in ["data_0", "data_1"] {
        let packet = sender.poll_transmit(max_packet).expect("a packet");
        receiver.receive(&packet).expect("the receiver takes it");
        c.expect(v, field, packet);
    }
    let mut read = vec![0u8; len + 1];
    assert_eq!(receiver.read(&mut read).expect("read"), len);
    c.expect(v, "credit_after_reading", receiver.poll_transmit(max_packet).expect("a credit"));
    sender.close();
    c.expect(v, "close", sender.poll_transmit(max_packet).expect("the close"));

    // A BLE advertising token.
    let v = "ble-advert";
    let key = veil_crypto::advert::AdvertKey::from_bytes(c.hex32(v, "key"));
    let salt: [u8; veil_crypto::advert::SALT_LEN] =
        hex::decode(c.input(v, "salt")).expect("hex").try_into().expect("a salt");
    let token = veil_crypto::advert::AdvertToken::new(&key, salt);
    c.expect(v, "token", token.to_bytes());
    assert!(veil_crypto::advert::AdvertToken::parse(&token.to_bytes()).expect("a token").is_from(&key));

    // A device-link offer and its text forms, and the rendezvous point of its seed.
    let v = "device-offer";
    let a = account(&c, v, "account");
    let offer = DeviceOffer {
        account: a.public(),
        secret: OfferSecret::from_bytes(c.hex32(v, "secret")),
        expires_at: UnixTime(c.input(v, "expires_at").parse().expect("expiry")),
    };
    let now = UnixTime(c.input(v, "now").parse().expect("time"));
    c.expect(v, "payload", &link::device_offer_payload(&offer)[..]);
    c.expect_text(v, "uri", &link::device_offer_uri(&offer));
    c.expect_text(v, "qr", &link::device_offer_qr(&offer));
    c.expect(v, "rendezvous_seed", offer.rendezvous_seed().expose_secret());
    c.expect(v, "point", Schedule::DEFAULT.point_at(&Topic::device(), &offer.rendezvous_seed(), now).0);
    assert_eq!(link::parse_device_offer(&link::device_offer_qr(&offer)).ok().as_ref(), Some(&offer));

    // The device-link handshake for that offer, its short code and a first
    // session message, with the documented ephemeral keys.
    let v = "device-link";
    let linking = LinkingDevice::new(&a, offer.clone()).expect("the offer is the account's");
    let (joining, msg1) = JoiningDevice::start(&offer, now, &mut Fixed(c.hex32(v, "new_ephemeral").to_vec()))
        .expect("the new device starts");
    c.expect(v, "msg1", &msg1);
    let (at_first, msg2) = linking
        .respond(&msg1, now, &mut Fixed(c.hex32(v, "first_ephemeral").to_vec()))
        .expect("the first device answers");
    c.expect(v, "msg2", &msg2);
    let at_new = joining.read_response(&msg2).expect("the new device accepts message 2");
    c.expect(v, "handshake_hash", at_first.info().handshake_hash);
    c.expect_text(v, "short_code", &at_first.short_code().to_string());
    assert_eq!(at_new.short_code(), at_first.short_code());
    let (mut first, mut new) = (at_first.confirm(), at_new.confirm());
    let sealed = first.seal(c.input(v, "bundle").as_bytes()).expect("seal");
    c.expect(v, "bundle_sealed", &sealed);
    assert_eq!(&new.open(&sealed).expect("opens")[..], c.input(v, "bundle").as_bytes());

    assert!(c.mismatches.is_empty(), "PROTOCOL.md vectors differ from the code:\n{}", c.mismatches.join("\n"));
}

/// Hands out exactly the bytes it holds: the vectors' ephemeral keys.
struct Fixed(Vec<u8>);

impl veil_crypto::Entropy for Fixed {
    fn fill(&mut self, dest: &mut [u8]) -> veil_crypto::Result<()> {
        assert!(dest.len() <= self.0.len(), "the vector's entropy is used up");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}
