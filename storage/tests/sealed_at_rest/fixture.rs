//! A store filled with one of everything secret, and the secrets it was given.

use veil_crypto::{
    AccountKeys, GroupId, GroupKeys, GroupSecret, Identity, OsEntropy, ReceiverChain, RendezvousSeed, SenderChain,
    SigningSecret,
    envelope::{BodyKey, EntryHash, EntryKind, Position, open_entry, seal_entry},
    time::{ManualClock, UnixTime},
};
use veil_storage::{Addressee, ContactState, GroupKind, NewEntry, RatchetUpdate, Store, keystore::KeySource};
use zeroize::Zeroizing;

pub(crate) const PASSPHRASE: &str = "correct horse battery staple, but longer: 7f3a";

pub(crate) fn clock() -> ManualClock {
    ManualClock::new(UnixTime(1_800_000_000))
}

pub(crate) fn passphrase(p: &str) -> KeySource {
    KeySource::Passphrase(Zeroizing::new(p.to_owned()))
}

/// A named secret that must never be found in the files.
pub(crate) struct Needle {
    pub(crate) what: String,
    pub(crate) bytes: Vec<u8>,
}

pub(crate) fn needle(what: impl Into<String>, bytes: &[u8]) -> Needle {
    Needle { what: what.into(), bytes: bytes.to_vec() }
}

/// Everything a store was given, and every secret in it.
pub(crate) struct Fixture {
    pub(crate) identity: Identity,
    pub(crate) group: GroupId,
    pub(crate) group_secret: GroupSecret,
    pub(crate) group_device: SigningSecret,
    pub(crate) hashes: Vec<EntryHash>,
    pub(crate) payloads: Vec<Vec<u8>>,
    pub(crate) link: RendezvousSeed,
    pub(crate) needles: Vec<Needle>,
}

/// Distinctive payloads, 32+ bytes each, that must only ever be stored sealed.
pub(crate) fn payload(i: usize) -> Vec<u8> {
    format!("plaintext-canary #{i}: the owl flies at midnight, bring the blue folder ({i})").into_bytes()
}

/// Fills `store` with one of everything secret and returns the secrets.
pub(crate) async fn fill(store: &Store) -> Fixture {
    let mut needles = vec![];
    let identity = Identity::generate(&mut OsEntropy).unwrap();
    store.save_identity(&identity).await.unwrap();
    needles.push(needle("account signing seed", &identity.account.signing.to_seed()[..]));
    needles.push(needle("account agreement secret", &identity.account.agreement.to_bytes()[..]));
    needles.push(needle("alias seed", &identity.alias.to_seed()[..]));
    needles.push(needle("device seed", &identity.device.to_seed()[..]));

    let group_secret = GroupSecret::generate(&mut OsEntropy).unwrap();
    let group_device = SigningSecret::generate(&mut OsEntropy).unwrap();
    let keys = GroupKeys::derive(&group_secret);
    let group =
        store.insert_group(GroupKind::MultiMember, Some("book club"), &group_secret, &group_device).await.unwrap();
    assert_eq!(group, keys.id);
    needles.push(needle("group secret", group_secret.expose_secret()));
    needles.push(needle("group device seed", &group_device.to_seed()[..]));
    needles.push(needle("group header key", keys.header_key.expose_secret()));
    needles.push(needle("group metadata key", keys.metadata_key.expose_secret()));
    needles.push(needle("group position key", keys.position_key.expose_secret()));
    needles.push(needle("group entry-auth key", keys.entry_auth_key.expose_secret()));
    needles.push(needle("group rendezvous seed", keys.rendezvous_seed.expose_secret()));

    // This device's sending chain, and message entries sealed with it.
    let mut chain = SenderChain::generate(&mut OsEntropy).unwrap();
    let start = chain.state().clone();
    store.save_sender_chain(&group, chain.state()).await.unwrap();
    needles.push(needle("sender chain key at 0", start.chain_key.expose_secret()));
    let mut probe = SenderChain::from_state(start.clone());
    let peer = Addressee([0x42; 32]);
    let (mut hashes, mut payloads) = (vec![], vec![]);
    for i in 0..6 {
        let (_, mk) = probe.next_key().unwrap();
        needles.push(needle(format!("message key {i}"), mk.expose_key()));
        let position = Position {
            kind: EntryKind::Message,
            lamport: i as u64 + 1,
            parents: hashes.last().copied().into_iter().collect(),
        };
        let text = payload(i);
        let sealed =
            seal_entry(&keys, &group_device, &position, BodyKey::Message(&mut chain), &text, &mut OsEntropy).unwrap();
        store
            .append(NewEntry {
                group,
                entry: &sealed,
                position: &position,
                author: Some(group_device.verify_key()),
                payload: Some(&text),
                ratchet: Some(RatchetUpdate::Sender { state: chain.state(), reserved_until: 0 }),
                outbox: &[peer],
            })
            .await
            .unwrap();
        needles.push(needle(format!("sender chain key at {}", i + 1), chain.state().chain_key.expose_secret()));
        needles.push(needle(format!("payload {i}"), &text));
        hashes.push(sealed.hash());
        payloads.push(text);
    }
    assert_eq!(probe.state(), chain.state());

    // A receiving chain (our own sender's, as another device would keep it)
    // that skipped messages 0..3 to read message 3.
    let mut receiver = ReceiverChain::new(start, 64).unwrap();
    let entry = store.entry(&hashes[3]).await.unwrap().unwrap();
    let opened = open_entry(&keys, &entry.sealed).unwrap();
    assert_eq!(&opened.read_message(&mut receiver).unwrap()[..], &payloads[3][..]);
    let skipped = receiver.export_skipped();
    assert_eq!(skipped.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [0, 1, 2]);
    for (c, mk) in &skipped {
        needles.push(needle(format!("skipped message key {c}"), mk.expose_key()));
    }
    needles.push(needle("receiver chain key", receiver.state().chain_key.expose_secret()));
    store.save_receiver_chain(&group, &group_device.verify_key(), &receiver).await.unwrap();

    // The contact link, reset once (so one seed is retired), and a contact's seed.
    let retired = RendezvousSeed::generate(&mut OsEntropy).unwrap();
    store.reset_link(&retired).await.unwrap();
    let link = RendezvousSeed::generate(&mut OsEntropy).unwrap();
    store.reset_link(&link).await.unwrap();
    needles.push(needle("retired link seed", retired.expose_secret()));
    needles.push(needle("link rendezvous seed", link.expose_secret()));
    let them = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    let their_seed = RendezvousSeed::generate(&mut OsEntropy).unwrap();
    store.upsert_contact(&them, Some("Bob"), Some(&their_seed), ContactState::IncomingReceived).await.unwrap();
    needles.push(needle("contact's rendezvous seed", their_seed.expose_secret()));
    let nickname = "plaintext-canary nickname: my dentist, Tuesdays";
    store.set_contact_nickname(&them.signing, Some(nickname)).await.unwrap();
    needles.push(needle("contact's nickname", nickname.as_bytes()));

    Fixture { identity, group, group_secret, group_device, hashes, payloads, link, needles }
}

pub(crate) fn assert_same_identity(a: &Identity, b: &Identity) {
    assert_eq!(a.account.public(), b.account.public());
    assert_eq!(a.account.signing.to_seed(), b.account.signing.to_seed());
    assert_eq!(a.account.agreement.to_bytes(), b.account.agreement.to_bytes());
    assert_eq!(a.alias.to_seed(), b.alias.to_seed());
    assert_eq!(a.device.to_seed(), b.device.to_seed());
}
