//! Every repository, exercised through the public API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{group_fixture, metadata_entry, temp_store};
use veil_crypto::{
    AccountKeys, Identity, OsEntropy, ReceiverChain, RendezvousSeed, SenderChain, TestEntropy,
    envelope::{BodyKey, EntryHash, EntryKind, Links, open_entry, seal_entry},
    time::{Clock, UnixTime},
};
use veil_storage::{Appended, ContactState, GroupKind, LinkLimits, NewEntry, Peer, RatchetUpdate, Store};

#[tokio::test]
async fn identity_round_trip_and_only_once() {
    let t = temp_store().await;
    let keys = t.store.key_access().unwrap();
    assert!(t.store.load_identity(&keys).await.unwrap().is_none());
    assert!(t.store.account().await.unwrap().is_none());
    let id = Identity::generate(&mut OsEntropy).unwrap();
    t.store.save_identity(&id).await.unwrap();
    assert!(t.store.save_identity(&id).await.is_err());
    let back = t.store.load_identity(&keys).await.unwrap().unwrap();
    assert_eq!(t.store.account().await.unwrap(), Some(id.account.public()));
    assert_eq!(back.account.public(), id.account.public());
    assert_eq!(back.device.verify_key(), id.device.verify_key());
    assert_eq!(back.alias.to_seed(), id.alias.to_seed());
    let other = Identity::generate(&mut OsEntropy).unwrap().device.verify_key();
    t.store.add_device(&other, Some("laptop")).await.unwrap();
    let devices = t.store.devices().await.unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices.iter().filter(|d| d.is_this_device).count(), 1);
    assert!(devices.iter().any(|d| d.device == other && d.name.as_deref() == Some("laptop")));
}

#[tokio::test]
async fn link_reset_disable_and_history() {
    let t = temp_store().await;
    assert!(t.store.link().await.unwrap().is_none());
    assert!(t.store.set_link_enabled(false).await.is_err());
    let first = RendezvousSeed::from_bytes([1; 32]);
    t.store.reset_link(&first).await.unwrap();
    let link = t.store.link().await.unwrap().unwrap();
    assert_eq!((link.seed.clone(), link.enabled), (first.clone(), true));
    t.store.set_link_enabled(false).await.unwrap();
    assert!(!t.store.link().await.unwrap().unwrap().enabled);
    t.clock.advance(60);
    let second = RendezvousSeed::from_bytes([2; 32]);
    t.store.reset_link(&second).await.unwrap();
    let link = t.store.link().await.unwrap().unwrap();
    assert_eq!(link.seed, second);
    assert!(!link.enabled, "a reset does not re-enable a disabled link");
    let history = t.store.link_history().await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].seed, first);
    assert_eq!(history[0].retired_at, UnixTime(1_800_000_060));
}

#[tokio::test]
async fn link_limits_expire_and_count_down_uses() {
    let t = temp_store().await;
    let now = UnixTime(1_800_000_000);
    t.store.reset_link(&RendezvousSeed::from_bytes([1; 32])).await.unwrap();
    let unlimited = t.store.link().await.unwrap().unwrap();
    assert_eq!(unlimited.limits, LinkLimits::default());
    assert_eq!(t.store.use_link().await.unwrap(), None, "no limit, nothing counted");
    assert!(t.store.link().await.unwrap().unwrap().answers_at(UnixTime(u64::MAX - 1)));

    let limits = LinkLimits { expires_at: Some(UnixTime(now.0 + 3600)), uses: Some(2) };
    t.store.reset_link_with(&RendezvousSeed::from_bytes([2; 32]), limits).await.unwrap();
    let link = t.store.link().await.unwrap().unwrap();
    assert_eq!(link.limits, limits);
    assert!(link.answers_at(now));
    assert!(!link.answers_at(UnixTime(now.0 + 3600)), "expired at its time");
    assert_eq!(t.store.use_link().await.unwrap(), Some(1));
    assert_eq!(t.store.use_link().await.unwrap(), Some(0));
    assert_eq!(t.store.use_link().await.unwrap(), Some(0), "a used-up link stays used up");
    assert!(!t.store.link().await.unwrap().unwrap().answers_at(now));
    // A reset without limits makes a fresh, unlimited link.
    t.store.reset_link(&RendezvousSeed::from_bytes([3; 32])).await.unwrap();
    assert!(t.store.link().await.unwrap().unwrap().answers_at(now));
}

#[tokio::test]
async fn contacts_move_through_states() {
    let t = temp_store().await;
    let them = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    let seed = RendezvousSeed::from_bytes([7; 32]);
    t.store.upsert_contact(&them, Some("Bob"), Some(&seed), ContactState::OutgoingEnqueued).await.unwrap();
    t.store.set_contact_state(&them.signing, ContactState::OutgoingSent, None).await.unwrap();
    let (secret, _, device) = group_fixture(1);
    let gid = t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    t.store.set_contact_state(&them.signing, ContactState::Accepted, Some(&gid)).await.unwrap();
    let c = t.store.contact(&them.signing).await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.group, c.display_name.as_deref(), c.seed),
        (ContactState::Accepted, Some(gid), Some("Bob"), Some(seed))
    );
    // An upsert without a name or seed keeps the known ones.
    t.store.upsert_contact(&them, None, None, ContactState::Blocked).await.unwrap();
    let c = t.store.contact(&them.signing).await.unwrap().unwrap();
    assert_eq!((c.state, c.display_name.as_deref()), (ContactState::Blocked, Some("Bob")));
    // A nickname is this user's: set, kept by upserts, cleared.
    assert_eq!(c.nickname, None);
    t.store.set_contact_nickname(&them.signing, Some("Bobby (work)")).await.unwrap();
    t.store.upsert_contact(&them, Some("Robert"), None, ContactState::Accepted).await.unwrap();
    let c = t.store.contact(&them.signing).await.unwrap().unwrap();
    assert_eq!((c.display_name.as_deref(), c.nickname.as_deref()), (Some("Robert"), Some("Bobby (work)")));
    t.store.set_contact_nickname(&them.signing, None).await.unwrap();
    assert_eq!(t.store.contact(&them.signing).await.unwrap().unwrap().nickname, None);
    t.store.upsert_contact(&them, None, None, ContactState::Blocked).await.unwrap();
    assert_eq!(t.store.contacts(Some(ContactState::Blocked)).await.unwrap().len(), 1);
    assert_eq!(t.store.contacts(Some(ContactState::Accepted)).await.unwrap().len(), 0);
    assert_eq!(t.store.contacts(None).await.unwrap().len(), 1);
    let stranger = AccountKeys::generate(&mut OsEntropy).unwrap().public();
    assert!(t.store.set_contact_state(&stranger.signing, ContactState::Accepted, None).await.is_err());
    assert!(t.store.set_contact_nickname(&stranger.signing, Some("x")).await.is_err());
}

#[tokio::test]
async fn private_keys_are_read_with_the_store_key_access_only_handed_out_once() {
    let (t, other) = (temp_store().await, temp_store().await);
    let keys = t.store.key_access().unwrap();
    assert!(matches!(t.store.key_access(), Err(veil_storage::Error::KeyAccessTaken)));
    let (secret, _, device) = group_fixture(1);
    t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    // Another store's access opens nothing here.
    let foreign = other.store.key_access().unwrap();
    assert!(matches!(t.store.group_device_keys(&foreign).await, Err(veil_storage::Error::Invalid { .. })));
    assert!(matches!(t.store.load_identity(&foreign).await, Err(veil_storage::Error::Invalid { .. })));
    assert_eq!(t.store.group_device_keys(&keys).await.unwrap().len(), 1);
}

#[tokio::test]
async fn groups_round_trip() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(3);
    let id = t.store.insert_group(GroupKind::MultiMember, Some("club"), &secret, &device).await.unwrap();
    assert_eq!(id, keys.id);
    // Idempotent.
    assert_eq!(t.store.insert_group(GroupKind::MultiMember, Some("other"), &secret, &device).await.unwrap(), id);
    let g = t.store.group(&id).await.unwrap().unwrap();
    assert_eq!((g.kind, g.name.as_deref(), g.secret), (GroupKind::MultiMember, Some("club"), secret));
    let device_keys = t.store.group_device_keys(&t.store.key_access().unwrap()).await.unwrap();
    assert_eq!(
        device_keys.iter().map(|d| (d.group, d.kind, d.key.verify_key())).collect::<Vec<_>>(),
        [(id, GroupKind::MultiMember, device.verify_key())]
    );
    assert_eq!(t.store.groups().await.unwrap().len(), 1);
    // Names only, and only of the groups that have one.
    let (unnamed_secret, _, unnamed_device) = group_fixture(5);
    t.store.insert_group(GroupKind::Contact, None, &unnamed_secret, &unnamed_device).await.unwrap();
    assert_eq!(t.store.group_names().await.unwrap(), vec![(id, "club".to_owned())]);
}

#[tokio::test]
async fn group_epochs_are_kept_once_in_order() {
    let t = temp_store().await;
    let (secret, _, device) = group_fixture(4);
    let id = t.store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
    let (e1, e2) = (veil_crypto::EpochSecret::from_bytes([1; 32]), veil_crypto::EpochSecret::from_bytes([2; 32]));
    assert!(t.store.epochs(&id).await.unwrap().is_empty());
    assert!(t.store.add_epoch(&id, &e2).await.unwrap());
    assert!(t.store.add_epoch(&id, &e1).await.unwrap());
    assert!(!t.store.add_epoch(&id, &e2).await.unwrap());
    assert_eq!(t.store.epochs(&id).await.unwrap(), vec![e2.clone(), e1.clone()]);
    assert!(t.store.add_epoch(&veil_crypto::GroupId([9; 32]), &e1).await.is_err());
}

#[tokio::test]
async fn a_joined_group_comes_with_its_epochs_and_joining_again_changes_nothing() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(6);
    let epochs = [veil_crypto::EpochSecret::from_bytes([3; 32]), veil_crypto::EpochSecret::from_bytes([4; 32])];
    let id = t.store.join_group(Some("joined"), &secret, &device, &epochs).await.unwrap();
    assert_eq!(id, keys.id);
    let g = t.store.group(&id).await.unwrap().unwrap();
    assert_eq!((g.kind, g.name.as_deref()), (GroupKind::MultiMember, Some("joined")));
    assert_eq!(t.store.epochs(&id).await.unwrap(), epochs.to_vec());
    // Joining again (the same invitation, or one naming another epoch too)
    // keeps the first record and adds only what is new.
    let more = [epochs[1].clone(), veil_crypto::EpochSecret::from_bytes([5; 32])];
    assert_eq!(t.store.join_group(Some("renamed"), &secret, &device, &more).await.unwrap(), id);
    assert_eq!(t.store.group(&id).await.unwrap().unwrap().name.as_deref(), Some("joined"));
    assert_eq!(t.store.epochs(&id).await.unwrap(), vec![epochs[0].clone(), epochs[1].clone(), more[1].clone()]);
}

#[tokio::test]
async fn dag_heads_missing_parents_and_order() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(4);
    let gid = t.store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
    let (a, la) = metadata_entry(&keys, &device, 1, vec![], b"a");
    let (b, lb) = metadata_entry(&keys, &device, 2, vec![a.hash()], b"b");
    let (c, lc) = metadata_entry(&keys, &device, 2, vec![a.hash()], b"c");
    let (d, ld) = metadata_entry(&keys, &device, 3, vec![b.hash(), c.hash()], b"d");
    fn put<'a>(gid: veil_crypto::GroupId, e: &'a veil_crypto::envelope::SealedEntry, l: &'a Links) -> NewEntry<'a> {
        NewEntry { group: gid, entry: e, links: l, author: None, payload: None, ratchet: None, outbox: &[] }
    }
    // d arrives first: its parents are missing and it is the only head.
    assert_eq!(t.store.append(put(gid, &d, &ld)).await.unwrap(), Appended::Stored);
    let mut missing = vec![b.hash(), c.hash()];
    missing.sort();
    assert_eq!(t.store.missing_parents(&gid, EntryKind::Metadata).await.unwrap(), missing);
    assert_eq!(t.store.heads(&gid, EntryKind::Metadata).await.unwrap(), vec![d.hash()]);
    // b and c arrive (in one batch): a is now missing, d still the head.
    let out = t.store.append_batch(&[put(gid, &b, &lb), put(gid, &c, &lc), put(gid, &b, &lb)]).await.unwrap();
    assert_eq!(out, vec![Appended::Stored, Appended::Stored, Appended::Duplicate]);
    assert_eq!(t.store.missing_parents(&gid, EntryKind::Metadata).await.unwrap(), vec![a.hash()]);
    assert_eq!(t.store.heads(&gid, EntryKind::Metadata).await.unwrap(), vec![d.hash()]);
    assert_eq!(t.store.append(put(gid, &a, &la)).await.unwrap(), Appended::Stored);
    assert!(t.store.missing_parents(&gid, EntryKind::Metadata).await.unwrap().is_empty());
    assert_eq!(t.store.append(put(gid, &a, &la)).await.unwrap(), Appended::Duplicate);
    // Total order: lamport, then hash.
    let all = t.store.entries_after(&gid, EntryKind::Metadata, None, 100).await.unwrap();
    let mut expected = vec![(1, a.hash()), (2, b.hash()), (2, c.hash()), (3, d.hash())];
    expected.sort();
    assert_eq!(all.iter().map(|e| (e.lamport, e.hash)).collect::<Vec<_>>(), expected);
    let page = t.store.entries_after(&gid, EntryKind::Metadata, Some(expected[1]), 1).await.unwrap();
    assert_eq!(page[0].hash, expected[2].1);
    assert_eq!(t.store.entry_count(&gid, EntryKind::Metadata).await.unwrap(), 4);
    assert_eq!(t.store.entry_count(&gid, EntryKind::Message).await.unwrap(), 0);
    let got = t.store.entry(&b.hash()).await.unwrap().unwrap();
    assert_eq!((got.sealed, got.parents), (b, vec![a.hash()]));
    assert!(open_entry(&keys, &got_sealed(&t.store, &d.hash()).await).is_ok());
}

#[tokio::test]
async fn sync_reads_stay_in_their_group_and_come_in_causal_order() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(4);
    let gid = t.store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
    let (other_secret, other_keys, other_device) = group_fixture(5);
    let other = t.store.insert_group(GroupKind::MultiMember, None, &other_secret, &other_device).await.unwrap();
    let (a, la) = metadata_entry(&keys, &device, 1, vec![], b"a");
    let (b, lb) = metadata_entry(&keys, &device, 2, vec![a.hash()], b"b");
    let (c, lc) = metadata_entry(&keys, &device, 3, vec![b.hash()], b"c");
    let (x, lx) = metadata_entry(&other_keys, &other_device, 1, vec![], b"x");
    for (g, e, l) in [(gid, &c, &lc), (gid, &a, &la), (other, &x, &lx), (gid, &b, &lb)] {
        let new = NewEntry { group: g, entry: e, links: l, author: None, payload: None, ratchet: None, outbox: &[] };
        t.store.append(new).await.unwrap();
    }
    let mut all = vec![a.hash(), b.hash(), c.hash()];
    all.sort();
    assert_eq!(t.store.group_hashes(&gid).await.unwrap(), all);
    assert_eq!(t.store.group_hashes(&other).await.unwrap(), vec![x.hash()]);
    // Asked in any order, with a duplicate, a stranger and another group's
    // entry: only this group's, parents first.
    let asked = [c.hash(), x.hash(), EntryHash([9; 32]), a.hash(), b.hash(), c.hash()];
    let got = t.store.sealed_entries_of(&gid, &asked).await.unwrap();
    assert_eq!(got, vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(t.store.sync_order(&gid, &asked).await.unwrap(), vec![a.hash(), b.hash(), c.hash()]);
    assert!(t.store.sealed_entries_of(&gid, &[]).await.unwrap().is_empty());
}

/// Many hashes are ordered by a scan, few by lookups: the same order either
/// way, and only the group's stored entries among those asked.
#[tokio::test]
async fn a_long_sync_order_matches_a_short_one() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(6);
    let gid = t.store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
    let (other_secret, other_keys, other_device) = group_fixture(7);
    let other = t.store.insert_group(GroupKind::MultiMember, None, &other_secret, &other_device).await.unwrap();
    let (x, lx) = metadata_entry(&other_keys, &other_device, 1, vec![], b"x");
    let new = NewEntry { group: other, entry: &x, links: &lx, author: None, payload: None, ratchet: None, outbox: &[] };
    t.store.append(new).await.unwrap();
    // Two forks of 350 entries each: equal Lamport clocks, ordered by hash.
    let mut hashes = Vec::new();
    for fork in [b'a', b'b'] {
        let mut parent = Vec::new();
        for i in 0..350u64 {
            let label = [&[fork][..], &i.to_be_bytes()].concat();
            let (e, l) = metadata_entry(&keys, &device, i + 1, parent, &label);
            let new =
                NewEntry { group: gid, entry: &e, links: &l, author: None, payload: None, ratchet: None, outbox: &[] };
            t.store.append(new).await.unwrap();
            parent = vec![e.hash()];
            hashes.push((i + 1, e.hash()));
        }
    }
    hashes.sort();
    let expected: Vec<EntryHash> = hashes.iter().map(|(_, h)| *h).collect();
    let mut asked: Vec<EntryHash> = expected.iter().rev().copied().collect();
    asked.extend([x.hash(), EntryHash([9; 32]), expected[3]]);
    assert_eq!(t.store.sync_order(&gid, &asked).await.unwrap(), expected);
    // A short request (lookups) orders the same way.
    let few: Vec<EntryHash> = expected.iter().step_by(7).rev().copied().collect();
    let ordered_few: Vec<EntryHash> = expected.iter().step_by(7).copied().collect();
    assert!(few.len() < 512 && asked.len() >= 512);
    assert_eq!(t.store.sync_order(&gid, &few).await.unwrap(), ordered_few);
}

async fn got_sealed(store: &Store, hash: &EntryHash) -> veil_crypto::envelope::SealedEntry {
    store.entry(hash).await.unwrap().unwrap().sealed
}

#[tokio::test]
async fn unknown_group_is_refused_and_nothing_is_written() {
    let t = temp_store().await;
    let (_, keys, device) = group_fixture(5);
    let (e, l) = metadata_entry(&keys, &device, 1, vec![], b"x");
    let r = t
        .store
        .append(NewEntry {
            group: keys.id,
            entry: &e,
            links: &l,
            author: None,
            payload: None,
            ratchet: None,
            outbox: &[],
        })
        .await;
    assert!(r.is_err());
    assert!(!t.store.contains_entry(&e.hash()).await.unwrap());
}

#[tokio::test]
async fn append_stores_payload_ratchet_and_outbox_together() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(6);
    let gid = t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    let mut e = TestEntropy::new(b"append");
    let mut chain = SenderChain::generate(&mut e).unwrap();
    t.store.save_sender_chain(&gid, chain.state()).await.unwrap();
    let start = chain.state().clone();
    let peer = Peer([9; 32]);
    let mut hashes = vec![];
    for i in 0..3u64 {
        let links =
            Links { kind: EntryKind::Message, lamport: i + 1, parents: hashes.last().copied().into_iter().collect() };
        let text = format!("message {i}");
        let sealed = seal_entry(&keys, &device, &links, BodyKey::Message(&mut chain), text.as_bytes(), &mut e).unwrap();
        let out = t
            .store
            .append(NewEntry {
                group: gid,
                entry: &sealed,
                links: &links,
                author: Some(device.verify_key()),
                payload: Some(text.as_bytes()),
                ratchet: Some(RatchetUpdate::Sender { state: chain.state(), reserved_until: 0 }),
                outbox: &[peer],
            })
            .await
            .unwrap();
        assert_eq!(out, Appended::Stored);
        hashes.push(sealed.hash());
    }
    let stored_chain = t.store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!(stored_chain.state, chain.state().clone());
    assert_eq!(stored_chain.resume_at(), chain.state().next, "nothing reserved past the chain");
    assert_eq!(t.store.outbox_len(&peer).await.unwrap(), 3);
    let due = t.store.outbox_due(&peer, t.clock.now(), 10).await.unwrap();
    assert_eq!(due.iter().map(|i| i.hash).collect::<Vec<_>>(), hashes);
    assert_eq!(due[1].sealed.hash(), hashes[1], "the entry as sent on the wire");
    let stored = t.store.entry(&hashes[1]).await.unwrap().unwrap();
    assert_eq!(&stored.payload.as_ref().unwrap()[..], b"message 1");
    // A failed attempt (or a sent entry awaiting its ack) defers; an ack removes.
    let later = UnixTime(t.clock.now().0 + 30);
    assert_eq!(t.store.defer(&peer, &hashes[..1], later).await.unwrap(), 1);
    let due: Vec<EntryHash> =
        t.store.outbox_due(&peer, t.clock.now(), 10).await.unwrap().iter().map(|i| i.hash).collect();
    assert_eq!(due, hashes[1..], "deferred entries are not due");
    // Longest due first: the deferred one comes last once due.
    let due = t.store.outbox_due(&peer, later, 10).await.unwrap();
    assert_eq!(due.iter().map(|i| i.hash).collect::<Vec<_>>(), [hashes[1], hashes[2], hashes[0]]);
    assert_eq!(due[2].attempts, 1);
    // The connection went away: everything owed is due again now.
    assert_eq!(t.store.reschedule(&peer, t.clock.now()).await.unwrap(), 1);
    assert_eq!(t.store.outbox_due(&peer, t.clock.now(), 10).await.unwrap().len(), 3);
    assert_eq!(t.store.reschedule(&peer, t.clock.now()).await.unwrap(), 0);
    assert_eq!(t.store.ack(&peer, &hashes[..2]).await.unwrap(), 2);
    assert_eq!(t.store.outbox_peers().await.unwrap(), vec![peer]);
    t.store.ack(&peer, &hashes).await.unwrap();
    assert!(t.store.outbox_peers().await.unwrap().is_empty());
    // Owing old entries to a new peer.
    let newcomer = Peer([1; 32]);
    t.store.enqueue(&newcomer, &hashes).await.unwrap();
    assert_eq!(t.store.outbox_len(&newcomer).await.unwrap(), 3);

    // The receiving side: used keys are gone from storage too.
    let mut receiver = ReceiverChain::new(start, 64).unwrap();
    let entries: Vec<_> = sealed_entries(&t.store, &hashes).await;
    let third = open_entry(&keys, &entries[2]).unwrap();
    assert_eq!(&third.read_message(&mut receiver).unwrap()[..], b"message 2");
    t.store.save_receiver_chain(&gid, &device.verify_key(), &receiver).await.unwrap();
    let mut loaded = t.store.receiver_chain(&gid, &device.verify_key()).await.unwrap().unwrap();
    assert_eq!(loaded.skipped_counters().collect::<Vec<_>>(), vec![0, 1]);
    let first = open_entry(&keys, &entries[0]).unwrap();
    assert_eq!(&first.read_message(&mut loaded).unwrap()[..], b"message 0");
    t.store.save_receiver_chain(&gid, &device.verify_key(), &loaded).await.unwrap();
    let mut reloaded = t.store.receiver_chain(&gid, &device.verify_key()).await.unwrap().unwrap();
    assert_eq!(reloaded.skipped_counters().collect::<Vec<_>>(), vec![1]);
    assert!(first.read_message(&mut reloaded).is_err(), "a used key must not come back from storage");
}

#[tokio::test]
async fn unread_entries_are_revealed_once_with_their_chain() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(7);
    let gid = t.store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
    let mut e = TestEntropy::new(b"unread");
    let mut chain = SenderChain::generate(&mut e).unwrap();
    let start = chain.state().clone();
    let author = device.verify_key();
    let mut hashes = vec![];
    for i in 0..2u64 {
        let links = Links { kind: EntryKind::Message, lamport: i + 1, parents: hashes.clone() };
        let sealed = seal_entry(&keys, &device, &links, BodyKey::Message(&mut chain), b"later", &mut e).unwrap();
        let new = NewEntry {
            group: gid,
            entry: &sealed,
            links: &links,
            author: Some(author),
            payload: None,
            ratchet: None,
            outbox: &[],
        };
        t.store.append(new).await.unwrap();
        hashes = vec![sealed.hash()];
    }
    let unread = t.store.unread(&gid, &author, 10).await.unwrap();
    assert_eq!(unread.len(), 2);
    assert!(unread[0].lamport < unread[1].lamport);
    let mut receiver = ReceiverChain::new(start, 64).unwrap();
    let payload = open_entry(&keys, &unread[0].sealed).unwrap().read_message(&mut receiver).unwrap();
    assert!(t.store.reveal(&gid, &unread[0].hash, &payload, &author, &receiver).await.unwrap());
    assert!(!t.store.reveal(&gid, &unread[0].hash, &payload, &author, &receiver).await.unwrap(), "only once");
    assert_eq!(&t.store.entry(&unread[0].hash).await.unwrap().unwrap().payload.unwrap()[..], b"later");
    assert_eq!(t.store.receiver_chain(&gid, &author).await.unwrap().unwrap().state().next, 1);
    assert_eq!(t.store.unread(&gid, &author, 10).await.unwrap().len(), 1);
    // Not in another group.
    let (other_secret, _, other_device) = group_fixture(8);
    let other = t.store.insert_group(GroupKind::MultiMember, None, &other_secret, &other_device).await.unwrap();
    assert!(!t.store.reveal(&other, &unread[1].hash, b"x", &author, &receiver).await.unwrap());
}

async fn sealed_entries(store: &Store, hashes: &[EntryHash]) -> Vec<veil_crypto::envelope::SealedEntry> {
    let mut out = vec![];
    for h in hashes {
        out.push(store.entry(h).await.unwrap().unwrap().sealed);
    }
    out
}

#[tokio::test]
async fn settings_round_trip() {
    let t = temp_store().await;
    assert_eq!(t.store.setting("policy").await.unwrap(), None);
    t.store.set_setting("policy", b"relayed").await.unwrap();
    t.store.set_setting("policy", b"anonymous").await.unwrap();
    assert_eq!(t.store.setting("policy").await.unwrap().as_deref(), Some(&b"anonymous"[..]));
    assert!(t.store.remove_setting("policy").await.unwrap());
    assert!(!t.store.remove_setting("policy").await.unwrap());
}

#[tokio::test]
async fn a_second_store_on_the_same_database_is_refused() {
    let t = temp_store().await;
    let err = Store::open(&t.db_path(), &t.key(), common::options(&t.clock)).await.unwrap_err();
    assert!(matches!(err, veil_storage::Error::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("in use by another veil process"));
    let path = t.db_path();
    let key = t.key();
    let clock = t.clock.clone();
    t.store.close().await.unwrap();
    // Once closed, it opens again.
    Store::open(&path, &key, common::options(&clock)).await.unwrap();
}

/// Entries are indexed by the first 8 bytes of their hash; two hashes sharing
/// them must still be told apart by every lookup, append and outbox query.
#[tokio::test]
async fn hashes_sharing_an_index_key_stay_apart() {
    use sqlx::Connection;

    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(9);
    let gid = t.store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
    let (a, la) = metadata_entry(&keys, &device, 1, vec![], b"a");
    let twin = |last: u8| {
        let mut h = a.hash().0;
        h[31] ^= last;
        EntryHash(h)
    };
    let (decoy, phantom) = (twin(1), twin(2));

    // A row whose hash shares a's index key, written behind the store's back.
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", t.db_path().display())).await.unwrap();
    let key = i64::from_be_bytes(a.hash().0[..8].try_into().unwrap());
    sqlx::query(
        "INSERT INTO entries (hash_key, hash, group_ref, kind, lamport, parents, links, header, body, tag, received_at)
         SELECT $1, $2, id, 1, 1, x'', x'00', x'00', x'00', zeroblob(32), 0 FROM groups",
    )
    .bind(key)
    .bind(decoy.0.to_vec())
    .execute(&mut raw)
    .await
    .unwrap();
    raw.close().await.unwrap();

    assert!(!t.store.contains_entry(&a.hash()).await.unwrap());
    let put = NewEntry { group: gid, entry: &a, links: &la, author: None, payload: None, ratchet: None, outbox: &[] };
    assert_eq!(t.store.append(put).await.unwrap(), Appended::Stored);
    assert_eq!(t.store.entry(&a.hash()).await.unwrap().unwrap().sealed, a);
    assert!(!t.store.contains_entry(&phantom).await.unwrap());

    // A child naming a and an unstored twin of it: only the twin is missing.
    let (c, lc) = metadata_entry(&keys, &device, 2, vec![a.hash(), phantom], b"c");
    let put = NewEntry { group: gid, entry: &c, links: &lc, author: None, payload: None, ratchet: None, outbox: &[] };
    assert_eq!(t.store.append(put).await.unwrap(), Appended::Stored);
    assert_eq!(t.store.missing_parents(&gid, EntryKind::Metadata).await.unwrap(), vec![phantom]);

    // Owing and acknowledging a touches a's row only.
    let peer = Peer([7; 32]);
    t.store.enqueue(&peer, &[a.hash()]).await.unwrap();
    assert_eq!(t.store.outbox_len(&peer).await.unwrap(), 1);
    assert_eq!(t.store.ack(&peer, &[decoy]).await.unwrap(), 0);
    assert_eq!(t.store.ack(&peer, &[a.hash()]).await.unwrap(), 1);
}

#[tokio::test]
async fn replicas_keep_credentials_and_entries_in_sync_order() {
    let t = temp_store().await;
    let (_, keys, device) = group_fixture(6);
    let credential = keys.replication_credential();
    let id = credential.replication_id;
    assert!(t.store.replica_hashes(&id).await.unwrap().is_empty());
    assert!(t.store.replica_store(&id, &[]).await.is_err(), "not replicated yet");
    assert!(t.store.add_replica(&credential).await.unwrap());
    assert!(!t.store.add_replica(&credential).await.unwrap());
    assert_eq!(t.store.replicas().await.unwrap(), vec![credential]);

    let (a, _) = metadata_entry(&keys, &device, 1, vec![], b"a");
    let (b, _) = metadata_entry(&keys, &device, 2, vec![a.hash()], b"b");
    let entry = |sealed: &veil_crypto::envelope::SealedEntry, lamport| veil_storage::ReplicaEntry {
        sealed: sealed.clone(),
        kind: EntryKind::Metadata,
        lamport,
    };
    assert_eq!(
        t.store.replica_store(&id, &[entry(&b, 2), entry(&a, 1), entry(&b, 2)]).await.unwrap(),
        vec![true, true, false]
    );
    assert_eq!(t.store.replica_store(&id, &[entry(&a, 1)]).await.unwrap(), vec![false]);
    let mut sorted = vec![a.hash(), b.hash()];
    sorted.sort();
    assert_eq!(t.store.replica_hashes(&id).await.unwrap(), sorted);
    assert_eq!(t.store.replica_entries(&id, &[b.hash(), a.hash()]).await.unwrap(), vec![a.clone(), b.clone()]);
    let mut positions = t.store.replica_positions(&id, &[b.hash(), EntryHash([0; 32])]).await.unwrap();
    positions.sort_by_key(|p| p.2);
    assert_eq!(positions, vec![(b.hash(), EntryKind::Metadata, 2)]);
}

/// Three sealed messages of a fresh contact group, each the parent of the next.
async fn three_messages(
    t: &common::TempStore,
) -> (veil_crypto::GroupId, Vec<veil_crypto::envelope::SealedEntry>, Vec<Links>) {
    let (secret, keys, device) = group_fixture(7);
    let gid = t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    let mut e = TestEntropy::new(b"three");
    let mut chain = SenderChain::generate(&mut e).unwrap();
    let (mut sealed, mut links) = (vec![], vec![]);
    for i in 0..3u64 {
        let l = Links {
            kind: EntryKind::Message,
            lamport: i + 1,
            parents: sealed.last().map(|s: &veil_crypto::envelope::SealedEntry| s.hash()).into_iter().collect(),
        };
        sealed.push(seal_entry(&keys, &device, &l, BodyKey::Message(&mut chain), b"m", &mut e).unwrap());
        links.push(l);
    }
    (gid, sealed, links)
}

/// The entries as appends owed to `peers`.
fn owed_to<'a>(
    group: veil_crypto::GroupId,
    sealed: &'a [veil_crypto::envelope::SealedEntry],
    links: &'a [Links],
    peers: &'a [Peer],
) -> Vec<NewEntry<'a>> {
    sealed
        .iter()
        .zip(links)
        .map(|(entry, links)| NewEntry {
            group,
            entry,
            links,
            author: None,
            payload: None,
            ratchet: None,
            outbox: peers,
        })
        .collect()
}

#[tokio::test]
async fn entries_pushed_live_come_due_only_after_their_retry_delay() {
    let t = temp_store().await;
    let (gid, sealed, links) = three_messages(&t).await;
    let peer = Peer([5; 32]);
    let batch = owed_to(gid, &sealed, &links, std::slice::from_ref(&peer));
    let retry_after = std::time::Duration::from_secs(30);
    let (first, unsynced) = t.store.append_batch_pushed(&batch[..1], retry_after).await.unwrap();
    t.store.sync(unsynced).await.unwrap();
    // The group's row id is known now: the next batch is one round trip
    // (no read), and stored the same way.
    let (rest, unsynced) = t.store.append_batch_pushed(&batch[1..], retry_after).await.unwrap();
    t.store.sync(unsynced).await.unwrap();
    assert_eq!([first, rest].concat(), vec![Appended::Stored; 3]);
    assert_eq!(t.store.outbox_len(&peer).await.unwrap(), 3, "owed all the same");
    assert!(t.store.outbox_due(&peer, t.clock.now(), 10).await.unwrap().is_empty(), "being pushed: not due");
    let retry = UnixTime(t.clock.now().0 + 30);
    let due: Vec<EntryHash> = t.store.outbox_due(&peer, retry, 10).await.unwrap().iter().map(|i| i.hash).collect();
    assert_eq!(due, sealed.iter().map(|s| s.hash()).collect::<Vec<_>>(), "unacknowledged: due, in order");
    // A new session makes them due at once.
    assert_eq!(t.store.reschedule(&peer, t.clock.now()).await.unwrap(), 3);
    // The heads are kept as by any append: the last entry only.
    assert_eq!(t.store.heads(&gid, EntryKind::Message).await.unwrap(), vec![sealed[2].hash()]);
}

#[tokio::test]
async fn acknowledgements_of_several_peers_are_recorded_together() {
    let t = temp_store().await;
    let (gid, sealed, links) = three_messages(&t).await;
    let (a, b) = (Peer([1; 32]), Peer([2; 32]));
    let both = [a, b];
    let batch = owed_to(gid, &sealed, &links, &both);
    t.store.append_batch(&batch).await.unwrap();
    let hashes: Vec<EntryHash> = sealed.iter().map(|s| s.hash()).collect();
    let unknown = EntryHash([0xee; 32]);
    let removed = t
        .store
        .ack_many(&[(a, hashes[..2].to_vec()), (b, vec![hashes[0], unknown]), (a, hashes[..1].to_vec())])
        .await
        .unwrap();
    assert_eq!(removed, vec![2, 1, 0], "per acknowledgement; unknown and repeated hashes remove nothing");
    assert_eq!(t.store.outbox_len(&a).await.unwrap(), 1);
    assert_eq!(t.store.outbox_len(&b).await.unwrap(), 2);
    assert_eq!(t.store.ack_many(&[]).await.unwrap(), Vec::<u64>::new());
}

#[tokio::test]
async fn a_log_pages_back_from_its_latest_entries() {
    let t = temp_store().await;
    let (gid, sealed, links) = three_messages(&t).await;
    t.store.append_batch(&owed_to(gid, &sealed, &links, &[])).await.unwrap();
    let hashes = |page: &[veil_storage::EntryRecord]| page.iter().map(|e| e.hash).collect::<Vec<_>>();
    let all: Vec<EntryHash> = sealed.iter().map(|s| s.hash()).collect();
    let latest = t.store.entries_before(&gid, EntryKind::Message, None, 2).await.unwrap();
    assert_eq!(hashes(&latest), all[1..], "the latest two, oldest first");
    let first = (latest[0].lamport, latest[0].hash);
    let older = t.store.entries_before(&gid, EntryKind::Message, Some(first), 2).await.unwrap();
    assert_eq!(hashes(&older), all[..1]);
    assert!(
        t.store
            .entries_before(&gid, EntryKind::Message, Some((older[0].lamport, older[0].hash)), 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(t.store.entries_before(&gid, EntryKind::Metadata, None, 2).await.unwrap().is_empty(), "its own log only");
}

#[tokio::test]
async fn unread_counts_others_messages_after_a_read_position_that_only_moves_forward() {
    let t = temp_store().await;
    let (gid, sealed, links) = three_messages(&t).await;
    let (_, _, device) = group_fixture(7);
    let batch: Vec<NewEntry<'_>> = owed_to(gid, &sealed, &links, &[])
        .into_iter()
        .map(|e| NewEntry { author: Some(device.verify_key()), payload: Some(b"m"), ..e })
        .collect();
    t.store.append_batch(&batch).await.unwrap();
    let position = |i: usize| (links[i].lamport, sealed[i].hash());
    assert_eq!(t.store.unread_count(&gid, &[]).await.unwrap(), 3);
    assert_eq!(t.store.unread_count(&gid, &[device.verify_key()]).await.unwrap(), 0, "written by us");
    t.store.mark_read(&gid, position(1)).await.unwrap();
    assert_eq!(t.store.unread_count(&gid, &[]).await.unwrap(), 1);
    t.store.mark_read(&gid, position(0)).await.unwrap();
    assert_eq!(t.store.unread_count(&gid, &[]).await.unwrap(), 1, "never moved back");
    t.store.mark_read(&gid, position(2)).await.unwrap();
    assert_eq!(t.store.unread_count(&gid, &[]).await.unwrap(), 0);
}

#[tokio::test]
async fn owed_counts_say_how_many_peers_have_not_acknowledged_each_entry() {
    let t = temp_store().await;
    let (gid, sealed, links) = three_messages(&t).await;
    let (a, b, stranger) = (Peer([1; 32]), Peer([2; 32]), Peer([3; 32]));
    t.store.append_batch(&owed_to(gid, &sealed, &links, &[a, b])).await.unwrap();
    let hashes: Vec<EntryHash> = sealed.iter().map(|s| s.hash()).collect();
    t.store.ack(&a, &hashes[..1]).await.unwrap();
    t.store.ack(&b, &hashes[..2]).await.unwrap();
    let mut counts = t.store.owed_counts(&[a, b], &hashes).await.unwrap();
    counts.sort_by_key(|(h, _)| hashes.iter().position(|x| x == h));
    assert_eq!(counts, vec![(hashes[1], 1), (hashes[2], 2)], "the first one is acknowledged by both");
    assert_eq!(t.store.owed_counts(&[b], &hashes).await.unwrap(), vec![(hashes[2], 1)]);
    assert!(t.store.owed_counts(&[stranger], &hashes).await.unwrap().is_empty());
}

#[tokio::test]
async fn one_sync_covers_every_deferred_commit_before_it() {
    let t = temp_store().await;
    let (gid, sealed, links) = three_messages(&t).await;
    let batch = owed_to(gid, &sealed, &links, &[]);
    let (_, first) = t.store.append_batch_deferred(&batch[..1]).await.unwrap();
    let (_, second) = t.store.append_batch_deferred(&batch[1..]).await.unwrap();
    assert_eq!(t.store.wal_syncs(), 0);
    t.store.sync(second).await.unwrap();
    t.store.sync(first).await.unwrap();
    t.store.sync(second).await.unwrap();
    assert_eq!(t.store.wal_syncs(), 1, "the first sync covered both");
    let (_, third) = t.store.append_batch_deferred(&batch).await.unwrap();
    let (a, b) = tokio::join!(t.store.sync(third), t.store.sync(third));
    a.unwrap();
    b.unwrap();
    assert_eq!(t.store.wal_syncs(), 2, "callers at once share one sync");
    assert_eq!(t.store.heads(&gid, EntryKind::Message).await.unwrap(), vec![sealed[2].hash()]);
}

#[tokio::test]
async fn syncs_are_skipped_under_process_crash_durability_but_not_for_reservations() {
    let dir = tempfile::tempdir().unwrap();
    let clock = veil_crypto::time::ManualClock::new(UnixTime(1_800_000_000));
    let tuning = veil_storage::Tuning { durability: veil_storage::Durability::ProcessCrash, ..Default::default() };
    let store =
        Store::create(&dir.path().join("veil.db"), &common::key_file(&dir), common::options_with(&clock, tuning))
            .await
            .unwrap();
    let t = common::TempStore { dir, store, clock };
    let (gid, sealed, links) = three_messages(&t).await;
    let (_, unsynced) = t.store.append_batch_deferred(&owed_to(gid, &sealed, &links, &[])).await.unwrap();
    t.store.sync(unsynced).await.unwrap();
    assert_eq!(t.store.wal_syncs(), 0);
    t.store.sync_regardless(unsynced).await.unwrap();
    assert_eq!(t.store.wal_syncs(), 1);
}

/// Seals the next message of `chain` and stores it deferred, reserving
/// positions up to `reserved_until`, then syncs.
async fn send_reserving(
    store: &Store,
    gid: veil_crypto::GroupId,
    chain: &mut SenderChain,
    lamport: u64,
    reserved_until: u64,
) {
    let (_, keys, device) = group_fixture(9);
    let links = Links { kind: EntryKind::Message, lamport, parents: vec![] };
    let sealed =
        seal_entry(&keys, &device, &links, BodyKey::Message(chain), b"m", &mut TestEntropy::new(b"r")).unwrap();
    let entry = NewEntry {
        group: gid,
        entry: &sealed,
        links: &links,
        author: Some(device.verify_key()),
        payload: Some(b"m"),
        ratchet: Some(RatchetUpdate::Sender { state: chain.state(), reserved_until }),
        outbox: &[],
    };
    let (_, unsynced) = store.append_batch_deferred(std::slice::from_ref(&entry)).await.unwrap();
    store.sync_regardless(unsynced).await.unwrap();
}

#[tokio::test]
async fn reserved_positions_outlive_an_unclean_stop_and_a_clean_close_releases_them() {
    let t = temp_store().await;
    let (secret, _, device) = group_fixture(9);
    let gid = t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    let mut chain = SenderChain::generate(&mut TestEntropy::new(b"reserve")).unwrap();
    t.store.save_sender_chain(&gid, chain.state()).await.unwrap();
    send_reserving(&t.store, gid, &mut chain, 1, 1 + 100).await;
    // A lower reservation never lowers what is stored.
    send_reserving(&t.store, gid, &mut chain, 2, 2).await;
    let record = t.store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!((record.state.next, record.reserved_until, record.resume_at()), (2, 101, 101));

    // Stopped without closing (as a crash would): the reservation holds.
    let common::TempStore { dir, store, clock } = t;
    drop(store);
    let (path, key) = (dir.path().join("veil.db"), common::key_file(&dir));
    let reopen = || Store::open(&path, &key, common::options(&clock));
    let store = reopen().await.unwrap();
    let record = store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!(&record.state, chain.state());
    assert_eq!(record.resume_at(), 101);

    // Closed cleanly: released, the chain resumes where it stands.
    store.close().await.unwrap();
    let store = reopen().await.unwrap();
    let record = store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!((record.state.next, record.resume_at()), (2, 2));
    // A new chain (a new epoch) starts with nothing reserved.
    store.save_sender_chain(&gid, SenderChain::generate(&mut OsEntropy).unwrap().state()).await.unwrap();
    assert_eq!(store.sender_chain(&gid).await.unwrap().unwrap().resume_at(), 0);
}

/// Received messages past their chain, appended without looking up what is
/// stored: stored with payloads, chain and heads like any append, whether
/// the chain holds skipped keys (then the lookup is made after all) or not.
#[tokio::test]
async fn received_messages_past_their_chain_are_stored_without_a_lookup() {
    let t = temp_store().await;
    let (secret, keys, device) = group_fixture(7);
    let gid = t.store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    let mut e = TestEntropy::new(b"unseen");
    let mut chain = SenderChain::generate(&mut e).unwrap();
    let mut receiver = ReceiverChain::new(chain.state().clone(), 64).unwrap();
    let author = device.verify_key();
    let (mut sealed, mut links) = (vec![], vec![]);
    for i in 0..4u64 {
        let l = Links {
            kind: EntryKind::Message,
            lamport: i + 1,
            parents: sealed.last().map(|s: &veil_crypto::envelope::SealedEntry| s.hash()).into_iter().collect(),
        };
        sealed.push(
            seal_entry(&keys, &device, &l, BodyKey::Message(&mut chain), format!("m{i}").as_bytes(), &mut e).unwrap(),
        );
        links.push(l);
    }
    let store_one = async |i: usize, receiver: &mut ReceiverChain| {
        let payload = open_entry(&keys, &sealed[i]).unwrap().read_message(receiver).unwrap();
        let new = NewEntry {
            group: gid,
            entry: &sealed[i],
            links: &links[i],
            author: Some(author),
            payload: Some(&payload[..]),
            ratchet: Some(RatchetUpdate::Receiver { device: author, chain: receiver }),
            outbox: &[],
        };
        let (outcomes, unsynced) = t.store.append_unseen_deferred(std::slice::from_ref(&new)).await.unwrap();
        t.store.sync(unsynced).await.unwrap();
        outcomes
    };
    // In order: no skipped keys (one round trip once the group is known).
    assert_eq!(store_one(0, &mut receiver).await, [Appended::Stored]);
    assert_eq!(store_one(1, &mut receiver).await, [Appended::Stored]);
    // Out of order: the chain now holds a skipped key, stored with it.
    assert_eq!(store_one(3, &mut receiver).await, [Appended::Stored]);
    let stored = t.store.receiver_chain(&gid, &author).await.unwrap().unwrap();
    assert_eq!(stored.state().next, 4);
    assert_eq!(stored.skipped_counters().collect::<Vec<_>>(), vec![2]);
    assert_eq!(store_one(2, &mut receiver).await, [Appended::Stored]);
    let stored = t.store.receiver_chain(&gid, &author).await.unwrap().unwrap();
    assert!(stored.skipped_counters().next().is_none(), "the skipped key is used and gone");
    for (i, s) in sealed.iter().enumerate() {
        let record = t.store.entry(&s.hash()).await.unwrap().unwrap();
        assert_eq!(&record.payload.unwrap()[..], format!("m{i}").as_bytes());
    }
    assert_eq!(t.store.heads(&gid, EntryKind::Message).await.unwrap(), vec![sealed[3].hash()]);
}
