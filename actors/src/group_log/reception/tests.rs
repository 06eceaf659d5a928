#![allow(clippy::unwrap_used)]

use veil_crypto::{
    AliasKey, GroupKeys, GroupSecret, OsEntropy, SenderChain, SigningSecret,
    envelope::{BodyKey, seal_entry},
};

use super::*;

/// A member device of the test group that writes entries.
struct Device {
    member: MemberPublic,
    key: SigningSecret,
    cert: veil_crypto::Signature,
    chain: SenderChain,
    /// Its chain before it wrote anything: what a share of it would give.
    start: ChainState,
}

impl Device {
    fn new(keys: &GroupKeys) -> Self {
        let member = AliasKey::generate(&mut OsEntropy).unwrap().member_keys(&keys.id);
        let key = SigningSecret::generate(&mut OsEntropy).unwrap();
        let cert = member.certify_device(&keys.id, &key.verify_key());
        let chain = SenderChain::generate(&mut OsEntropy).unwrap();
        let start = chain.state().clone();
        Self { member: member.public(), key, cert, chain, start }
    }

    fn joined(&self) -> MemberJoined {
        MemberJoined {
            member: self.member,
            device: self.key.verify_key(),
            device_cert: self.cert,
            chain_shares: vec![],
            epoch: EpochId::ROOT,
            display_name: None,
        }
    }

    fn announce(&self, keys: &GroupKeys, joined: MemberJoined) -> SealedEntry {
        let position = Position { kind: EntryKind::Metadata, lamport: 1, parents: vec![] };
        let payload = MetadataEvent::MemberJoined(joined).encode();
        seal_entry(keys, &self.key, &position, BodyKey::Metadata, &payload, &mut OsEntropy).unwrap()
    }

    fn write(&mut self, keys: &GroupKeys, lamport: u64, parents: &[&SealedEntry]) -> SealedEntry {
        let parents = parents.iter().map(|p| p.hash()).collect();
        let position = Position { kind: EntryKind::Message, lamport, parents };
        seal_entry(keys, &self.key, &position, BodyKey::Message(&mut self.chain), b"hello", &mut OsEntropy).unwrap()
    }
}

/// The actor's part, played against an in-memory store.
#[derive(Default)]
struct Store {
    /// The secrets of epochs this member's shares would open.
    epochs: Vec<veil_crypto::EpochSecret>,
    /// Receiving chains held, by device.
    chains: HashMap<VerifyKey, ChainState>,
    /// The other account of a contact group.
    contacts: Vec<MemberPublic>,
    /// Positions of everything stored.
    positions: HashMap<EntryHash, (EntryKind, u64)>,
    /// What each batch asked for, in order.
    asked: Vec<Need>,
}

impl Store {
    fn receive(&mut self, reception: &mut Reception, entries: Vec<SealedEntry>) -> Receipt {
        let mut round = reception.open(entries);
        while !round.is_empty() {
            let asked = reception.order(&mut round);
            let found: Vec<_> =
                asked.iter().filter_map(|h| self.positions.get(h).map(|(kind, l)| (*h, *kind, *l))).collect();
            reception.positions_found(found);
            for mut item in round {
                loop {
                    match reception.judge(item).unwrap() {
                        Verdict::Done => break,
                        Verdict::Need(again, need) => {
                            self.asked.push(need);
                            match need {
                                Need::Chain(device) => reception.chain_loaded(
                                    device,
                                    self.chains
                                        .get(&device)
                                        .map(|s| ReceiverChain::new(s.clone(), DEFAULT_WINDOW).unwrap()),
                                ),
                                Need::Contacts => reception.contacts_loaded(self.contacts.clone()),
                            }
                            item = *again;
                        }
                        Verdict::Joined(joining) => {
                            let opened = &joining.item.opened;
                            let stored = self
                                .positions
                                .insert(opened.hash, (EntryKind::Metadata, opened.position.lamport))
                                .is_none();
                            reception.joined_stored(*joining, stored);
                            break;
                        }
                        Verdict::Removal(removing) => {
                            let opened = &removing.item.opened;
                            let stored = self
                                .positions
                                .insert(opened.hash, (EntryKind::Metadata, opened.position.lamport))
                                .is_none();
                            let epochs = &reception.epochs;
                            let secret = removing
                                .share
                                .as_ref()
                                .and_then(|_| {
                                    self.epochs.iter().find(|s| epochs.root().epoch(s).0 == removing.start.epoch)
                                })
                                .cloned();
                            reception.removal_stored(*removing, stored, secret.as_ref());
                            break;
                        }
                    }
                }
            }
            let outcomes = reception
                .queued()
                .iter()
                .map(|e| match self.positions.insert(e.entry.hash(), (EntryKind::Message, e.position.lamport)) {
                    None => Appended::Stored,
                    Some(_) => Appended::Duplicate,
                })
                .collect();
            reception.queued_stored(outcomes);
            round = reception.next_round();
        }
        reception.finish();
        reception.take_receipt()
    }
}

fn group(kind: GroupKind) -> (GroupKeys, MemberPublic, Reception) {
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([3; 32]));
    let me = AliasKey::generate(&mut OsEntropy).unwrap().member_keys(&keys.id).public();
    let reception = Reception::empty(keys.id, kind, me, Epochs::new(keys.clone(), &[]));
    (keys, me, reception)
}

/// A group where Bob has announced himself, and the store holds his chain
/// (shared with this member when he announced himself, say).
fn with_bob() -> (GroupKeys, Reception, Device, Store) {
    let (keys, _, mut reception) = group(GroupKind::MultiMember);
    let bob = Device::new(&keys);
    let mut store = Store { chains: HashMap::from([(bob.key.verify_key(), bob.start.clone())]), ..Store::default() };
    store.receive(&mut reception, vec![bob.announce(&keys, bob.joined())]);
    reception.take_effects();
    (keys, reception, bob, store)
}

fn received(events: &[NodeEvent]) -> Vec<EntryHash> {
    events
        .iter()
        .filter_map(|e| if let NodeEvent::MessageReceived { hash, .. } = e { Some(*hash) } else { None })
        .collect()
}

fn held_back(events: &[NodeEvent]) -> Vec<(EntryHash, &'static str)> {
    events
        .iter()
        .filter_map(
            |e| if let NodeEvent::EntryHeldBack { hash, reason, .. } = e { Some((*hash, *reason)) } else { None },
        )
        .collect()
}

#[test]
fn a_message_waits_for_its_authors_announcement_then_reads_with_the_chain_the_store_holds() {
    let (keys, _, mut reception) = group(GroupKind::MultiMember);
    let mut bob = Device::new(&keys);
    let mut store = Store::default();
    let m1 = bob.write(&keys, 1, &[]);

    let receipt = store.receive(&mut reception, vec![m1.clone()]);
    assert!(receipt.waiting && receipt.ack.is_empty(), "not acknowledged: it comes again");
    assert!(receipt.wants_metadata, "it waits for metadata: the receiver asks for it");
    let (events, refusals) = reception.take_effects();
    assert_eq!(held_back(&events), [(m1.hash(), "its author's announcement")]);
    assert_eq!(refusals, 0);
    assert!(store.asked.is_empty(), "nothing asked of a device nobody announced");

    // The announcement and the message again, in the wrong order: the
    // announcement is taken first; the store holds Bob's chain (shared
    // with us when he announced himself, say).
    store.chains.insert(bob.key.verify_key(), bob.start.clone());
    let announcement = bob.announce(&keys, bob.joined());
    let receipt = store.receive(&mut reception, vec![m1.clone(), announcement.clone()]);
    assert!(!receipt.waiting);
    assert_eq!(receipt.ack, [announcement.hash(), m1.hash()]);
    assert_eq!(receipt.metadata, [announcement.hash()]);
    assert_eq!(store.asked, [Need::Chain(bob.key.verify_key())], "the chain is asked for once");
    let (events, _) = reception.take_effects();
    assert!(events.iter().any(|e| matches!(e, NodeEvent::MemberJoined { member, .. } if *member == bob.member)));
    assert_eq!(received(&events), [m1.hash()]);
    assert_eq!(reception.heads, [m1.hash()]);

    // The next message needs nothing from the store: its parent's place and
    // its author's chain are known, and it is past that chain.
    let m2 = bob.write(&keys, 2, &[&m1]);
    let mut round = reception.open(vec![m2.clone()]);
    assert!(reception.order(&mut round).is_empty(), "no lookup on the path of a message received in order");
    assert!(matches!(reception.judge(round.remove(0)).unwrap(), Verdict::Done));
    assert!(reception.queued_unseen());
}

#[test]
fn a_child_before_its_parent_waits_and_is_taken_in_the_round_that_stores_the_parent() {
    let (keys, mut reception, mut bob, mut store) = with_bob();
    let m1 = bob.write(&keys, 1, &[]);
    let m2 = bob.write(&keys, 2, &[&m1]);
    let m3 = bob.write(&keys, 3, &[&m2]);

    let receipt = store.receive(&mut reception, vec![m3.clone(), m2.clone()]);
    assert!(receipt.waiting && receipt.ack.is_empty());
    assert!(!receipt.wants_metadata, "a parent comes again by itself");
    let (events, _) = reception.take_effects();
    assert_eq!(held_back(&events), [(m2.hash(), "a parent"), (m3.hash(), "a parent")], "m3 waits for m2, held itself");

    let receipt = store.receive(&mut reception, vec![m1.clone()]);
    assert_eq!(receipt.ack, [m1.hash(), m2.hash(), m3.hash()], "one round each, parents first");
    assert_eq!(received(&reception.take_effects().0), [m1.hash(), m2.hash(), m3.hash()]);
    assert_eq!(reception.heads, [m3.hash()]);
}

#[test]
fn stored_entries_are_acknowledged_again_and_bad_ones_refused_for_good() {
    let (keys, mut reception, mut bob, mut store) = with_bob();
    let m1 = bob.write(&keys, 5, &[]);
    store.receive(&mut reception, vec![m1.clone()]);
    reception.take_effects();

    // Its parent is not earlier in the log.
    let late = bob.write(&keys, 5, &[&m1]);
    // A byte of it changed on the way.
    let mut forged = bob.write(&keys, 6, &[&m1]);
    forged.body[0] ^= 1;
    let receipt = store.receive(&mut reception, vec![m1.clone(), late.clone(), forged.clone()]);
    assert!(!receipt.waiting);
    assert_eq!(receipt.ack[0], forged.hash(), "refused on opening");
    let mut rest = receipt.ack[1..].to_vec();
    rest.sort();
    let mut expected = vec![late.hash(), m1.hash()];
    expected.sort();
    assert_eq!(rest, expected, "refused, and held already: both acknowledged");
    let (events, refusals) = reception.take_effects();
    assert_eq!(refusals, 2);
    let refused: Vec<_> = events
        .iter()
        .filter_map(
            |e| if let NodeEvent::EntryRefused { hash, reason, .. } = e { Some((*hash, *reason)) } else { None },
        )
        .collect();
    assert_eq!(refused, [(forged.hash(), "forged entry"), (late.hash(), "parents out of order")]);
    assert!(received(&events).is_empty(), "m1 is not received twice");
}

#[test]
fn an_announcement_must_be_certified_by_its_member_and_made_in_its_epoch() {
    let (keys, _, mut reception) = group(GroupKind::MultiMember);
    let bob = Device::new(&keys);
    let mallory = Device::new(&keys);
    let mut store = Store::default();
    let stolen = bob.announce(&keys, MemberJoined { device_cert: mallory.cert, ..bob.joined() });
    let elsewhere = bob.announce(&keys, MemberJoined { epoch: EpochId([9; 32]), ..bob.joined() });
    let receipt = store.receive(&mut reception, vec![stolen.clone(), elsewhere.clone()]);
    let mut acked = receipt.ack.clone();
    acked.sort();
    let mut expected = vec![stolen.hash(), elsewhere.hash()];
    expected.sort();
    assert_eq!(acked, expected, "refused for good");
    assert!(receipt.metadata.is_empty(), "none is held");
    assert_eq!(reception.take_effects().1, 2);
    assert!(store.positions.is_empty());
}

#[test]
fn in_a_contact_group_only_the_other_account_announces_itself() {
    let (keys, _, mut reception) = group(GroupKind::Contact);
    let bob = Device::new(&keys);
    let stranger = Device::new(&keys);
    let mut store = Store { contacts: vec![bob.member], ..Store::default() };
    let theirs = bob.announce(&keys, bob.joined());
    let intruder = stranger.announce(&keys, stranger.joined());
    store.receive(&mut reception, vec![theirs.clone(), intruder.clone()]);
    assert_eq!(store.asked, [Need::Contacts], "the contacts are asked for once a batch");
    assert!(store.positions.contains_key(&theirs.hash()));
    assert!(!store.positions.contains_key(&intruder.hash()));
    assert_eq!(reception.contact_joined, Some(None), "the contact book is told, with no name given");
    let (events, refusals) = reception.take_effects();
    assert_eq!(refusals, 1);
    assert!(events.iter().any(|e| matches!(e,
        NodeEvent::EntryRefused { hash, reason: "not a member of this contact group", .. } if *hash == intruder.hash())));
}

#[test]
fn a_message_far_past_its_chain_waits_for_earlier_ones() {
    let (keys, mut reception, mut bob, mut store) = with_bob();
    let skipped = usize::try_from(DEFAULT_WINDOW).unwrap() + 1;
    for _ in 0..skipped {
        bob.write(&keys, 1, &[]);
    }
    let far = bob.write(&keys, 1, &[]);
    let receipt = store.receive(&mut reception, vec![far.clone()]);
    assert!(receipt.waiting && receipt.ack.is_empty());
    assert_eq!(held_back(&reception.take_effects().0), [(far.hash(), "earlier messages")]);
}

#[test]
fn entering_a_new_epoch_is_decided_from_the_members_alone() {
    let (keys, me, mut reception) = group(GroupKind::MultiMember);
    assert_eq!(reception.epoch_to_enter(&EpochId::ROOT), None, "still the root epoch");
    let bob = Device::new(&keys);
    let mut store = Store::default();
    store.receive(&mut reception, vec![bob.announce(&keys, bob.joined())]);
    // An epoch learned (as from an invitation) ranks above the root until
    // its removal arrives: the writer moves into it, sharing with Bob.
    let next = reception.epochs.add(&EpochSecret::from_bytes([4; 32]));
    let (epoch, recipients) = reception.epoch_to_enter(&EpochId::ROOT).unwrap();
    assert_eq!(epoch, next);
    assert!(!recipients.contains(&me));
    assert_eq!(reception.epoch_to_enter(&next), None);
}

/// A renewal and what its author wrote in the new epoch, in one batch:
/// the new epoch's entries are opened once the renewal brought its keys,
/// not held back to come again.
#[test]
fn entries_of_an_epoch_a_batch_brings_are_taken_in_the_same_batch() {
    let (keys, me, mut reception) = group(GroupKind::MultiMember);
    let bob = Device::new(&keys);
    let secret = veil_crypto::EpochSecret::from_bytes([5; 32]);
    let (e1, e1_keys) = keys.epoch(&secret);
    let mut store = Store { chains: HashMap::from([(bob.key.verify_key(), bob.start.clone())]), ..Store::default() };
    store.receive(&mut reception, vec![bob.announce(&keys, bob.joined())]);
    reception.take_effects();

    let renewal = MetadataEvent::EpochRenewed(veil_proto::metadata::EpochRenewed {
        epoch: e1,
        shares: vec![veil_proto::metadata::EpochShare { recipient: me.signing, sealed_secret: vec![0; 80] }],
        device_shares: vec![],
    });
    let position = Position { kind: EntryKind::Metadata, lamport: 2, parents: vec![] };
    let renewal = seal_entry(&keys, &bob.key, &position, BodyKey::Metadata, &renewal.encode(), &mut OsEntropy).unwrap();
    // Bob's first message in the new epoch, under his device key there.
    let mut in_e1 = Device { key: veil_crypto::epoch::epoch_device_key(&bob.key, &e1), ..Device::new(&keys) };
    let message = in_e1.write(&e1_keys, 3, &[]);

    // Without the renewal, the new epoch's message waits.
    let receipt = store.receive(&mut reception, vec![message.clone()]);
    assert!(receipt.waiting);
    assert_eq!(held_back(&reception.take_effects().0), [(message.hash(), "the keys of its epoch")]);

    // With it, in one batch: the epoch is learned and the message opened
    // (it waits for its author's announcement, which is another matter).
    store.epochs.push(secret.clone());
    let mut both = reception_like(&keys, me);
    let mut elsewhere = Store {
        chains: HashMap::from([(bob.key.verify_key(), bob.start.clone())]),
        epochs: vec![secret],
        ..Store::default()
    };
    elsewhere.receive(&mut both, vec![bob.announce(&keys, bob.joined())]);
    both.take_effects();
    elsewhere.receive(&mut both, vec![message.clone(), renewal.clone()]);
    assert!(both.epochs.holds(&e1));
    let held = held_back(&both.take_effects().0);
    assert_eq!(held, [(message.hash(), "its author's announcement")], "opened with the new epoch's keys");

    // The renewal alone, in a later batch: the message kept from before is
    // opened then, without coming again.
    store.receive(&mut reception, vec![renewal]);
    assert!(reception.epochs.holds(&e1));
    let held = held_back(&reception.take_effects().0);
    assert_eq!(held, [(message.hash(), "its author's announcement")], "the kept message was opened");
}

/// A fresh reception of the test group for member `me`.
fn reception_like(keys: &GroupKeys, me: MemberPublic) -> Reception {
    Reception::empty(keys.id, GroupKind::MultiMember, me, Epochs::new(keys.clone(), &[]))
}

/// This account renewed the root epoch without a device; Bob, not knowing
/// it yet, removed someone in the root epoch, sealing the secret to this
/// member's key, which the removed device derives. Once Bob's epoch is
/// current, this member must renew it.
#[test]
fn a_concurrent_start_in_an_epoch_this_account_renewed_away_from_is_to_be_renewed() {
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([3; 32]));
    let my_keys = AliasKey::generate(&mut OsEntropy).unwrap().member_keys(&keys.id);
    let me = my_keys.public();
    let mut reception = Reception::empty(keys.id, GroupKind::MultiMember, me, Epochs::new(keys.clone(), &[]));
    let mut my_other = Device::new(&keys);
    my_other.member = me;
    my_other.cert = my_keys.certify_device(&keys.id, &my_other.key.verify_key());
    let (bob, gone) = (Device::new(&keys), Device::new(&keys));
    let mut store = Store::default();
    let announcements = [&my_other, &bob, &gone].map(|d| d.announce(&keys, d.joined())).to_vec();
    store.receive(&mut reception, announcements);
    reception.take_effects();

    let start = |device: &Device, event: MetadataEvent, lamport| {
        let position = Position { kind: EntryKind::Metadata, lamport, parents: vec![] };
        seal_entry(&keys, &device.key, &position, BodyKey::Metadata, &event.encode(), &mut OsEntropy).unwrap()
    };
    let share =
        |to: &MemberPublic| veil_proto::metadata::EpochShare { recipient: to.signing, sealed_secret: vec![0; 80] };
    let (renewed, concurrent) =
        (veil_crypto::EpochSecret::from_bytes([5; 32]), veil_crypto::EpochSecret::from_bytes([6; 32]));
    let renewal = MetadataEvent::EpochRenewed(veil_proto::metadata::EpochRenewed {
        epoch: keys.epoch(&renewed).0,
        shares: vec![share(&bob.member), share(&gone.member)],
        device_shares: vec![vec![0; 80]],
    });
    let removal = MetadataEvent::MemberRemoved(veil_proto::metadata::MemberRemoved {
        member: gone.member.signing,
        epoch: keys.epoch(&concurrent).0,
        shares: vec![share(&me), share(&bob.member)],
    });
    let concurrent_epoch = keys.epoch(&concurrent).0;
    store.epochs = vec![renewed, concurrent];
    store.receive(&mut reception, vec![start(&my_other, renewal, 2)]);
    assert!(!reception.must_renew(), "its own renewal is current");
    store.receive(&mut reception, vec![start(&bob, removal, 5)]);
    assert_eq!(reception.epochs.current(&reception.membership), concurrent_epoch);
    assert!(reception.must_renew());
}
