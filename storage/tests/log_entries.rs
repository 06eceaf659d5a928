//! Group logs in the store: the DAG's heads and missing parents, sync order, appends with their payload, ratchet and outbox, revealing unread entries, pages, read positions and hash lookups.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bare, group_fixture, inserted_group, metadata_entry, owed_to, temp_store, three_messages};
use veil_crypto::{
    ReceiverChain, SenderChain, TestEntropy,
    envelope::{BodyKey, EntryHash, EntryKind, Position, open_entry, seal_entry},
    time::{Clock, UnixTime},
};
use veil_storage::{Addressee, Appended, GroupKind, NewEntry, RatchetUpdate, Store};

#[tokio::test]
async fn dag_heads_missing_parents_and_order() {
    let t = temp_store().await;
    let (gid, keys, device) = inserted_group(&t.store, 4).await;
    let (a, la) = metadata_entry(&keys, &device, 1, vec![], b"a");
    let (b, lb) = metadata_entry(&keys, &device, 2, vec![a.hash()], b"b");
    let (c, lc) = metadata_entry(&keys, &device, 2, vec![a.hash()], b"c");
    let (d, ld) = metadata_entry(&keys, &device, 3, vec![b.hash(), c.hash()], b"d");
    fn put<'a>(gid: veil_crypto::GroupId, e: &'a veil_crypto::envelope::SealedEntry, l: &'a Position) -> NewEntry<'a> {
        bare(gid, e, l)
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
    let (gid, keys, device) = inserted_group(&t.store, 4).await;
    let (other, other_keys, other_device) = inserted_group(&t.store, 5).await;
    let (a, la) = metadata_entry(&keys, &device, 1, vec![], b"a");
    let (b, lb) = metadata_entry(&keys, &device, 2, vec![a.hash()], b"b");
    let (c, lc) = metadata_entry(&keys, &device, 3, vec![b.hash()], b"c");
    let (x, lx) = metadata_entry(&other_keys, &other_device, 1, vec![], b"x");
    for (g, e, l) in [(gid, &c, &lc), (gid, &a, &la), (other, &x, &lx), (gid, &b, &lb)] {
        let new = bare(g, e, l);
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
    let (gid, keys, device) = inserted_group(&t.store, 6).await;
    let (other, other_keys, other_device) = inserted_group(&t.store, 7).await;
    let (x, lx) = metadata_entry(&other_keys, &other_device, 1, vec![], b"x");
    let new = bare(other, &x, &lx);
    t.store.append(new).await.unwrap();
    // Two forks of 350 entries each: equal Lamport clocks, ordered by hash.
    let mut hashes = Vec::new();
    for fork in [b'a', b'b'] {
        let mut parent = Vec::new();
        for i in 0..350u64 {
            let label = [&[fork][..], &i.to_be_bytes()].concat();
            let (e, l) = metadata_entry(&keys, &device, i + 1, parent, &label);
            let new = NewEntry {
                group: gid,
                entry: &e,
                position: &l,
                author: None,
                payload: None,
                ratchet: None,
                outbox: &[],
            };
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
            position: &l,
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
    let peer = Addressee([9; 32]);
    let mut hashes = vec![];
    for i in 0..3u64 {
        let position = Position {
            kind: EntryKind::Message,
            lamport: i + 1,
            parents: hashes.last().copied().into_iter().collect(),
        };
        let text = format!("message {i}");
        let sealed =
            seal_entry(&keys, &device, &position, BodyKey::Message(&mut chain), text.as_bytes(), &mut e).unwrap();
        let out = t
            .store
            .append(NewEntry {
                group: gid,
                entry: &sealed,
                position: &position,
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
    let newcomer = Addressee([1; 32]);
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
    let (gid, keys, device) = inserted_group(&t.store, 7).await;
    let mut e = TestEntropy::new(b"unread");
    let mut chain = SenderChain::generate(&mut e).unwrap();
    let start = chain.state().clone();
    let author = device.verify_key();
    let mut hashes = vec![];
    for i in 0..2u64 {
        let position = Position { kind: EntryKind::Message, lamport: i + 1, parents: hashes.clone() };
        let sealed = seal_entry(&keys, &device, &position, BodyKey::Message(&mut chain), b"later", &mut e).unwrap();
        let new = NewEntry {
            group: gid,
            entry: &sealed,
            position: &position,
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

/// Entries are indexed by the first 8 bytes of their hash; two hashes sharing
/// them must still be told apart by every lookup, append and outbox query.
#[tokio::test]
async fn hashes_sharing_an_index_key_stay_apart() {
    use sqlx::Connection;

    let t = temp_store().await;
    let (gid, keys, device) = inserted_group(&t.store, 9).await;
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
    let put = bare(gid, &a, &la);
    assert_eq!(t.store.append(put).await.unwrap(), Appended::Stored);
    assert_eq!(t.store.entry(&a.hash()).await.unwrap().unwrap().sealed, a);
    assert!(!t.store.contains_entry(&phantom).await.unwrap());

    // A child naming a and an unstored twin of it: only the twin is missing.
    let (c, lc) = metadata_entry(&keys, &device, 2, vec![a.hash(), phantom], b"c");
    let put = bare(gid, &c, &lc);
    assert_eq!(t.store.append(put).await.unwrap(), Appended::Stored);
    assert_eq!(t.store.missing_parents(&gid, EntryKind::Metadata).await.unwrap(), vec![phantom]);

    // Owing and acknowledging a touches a's row only.
    let peer = Addressee([7; 32]);
    t.store.enqueue(&peer, &[a.hash()]).await.unwrap();
    assert_eq!(t.store.outbox_len(&peer).await.unwrap(), 1);
    assert_eq!(t.store.ack(&peer, &[decoy]).await.unwrap(), 0);
    assert_eq!(t.store.ack(&peer, &[a.hash()]).await.unwrap(), 1);
}

#[tokio::test]
async fn a_log_pages_back_from_its_latest_entries() {
    let t = temp_store().await;
    let (gid, sealed, position) = three_messages(&t).await;
    t.store.append_batch(&owed_to(gid, &sealed, &position, &[])).await.unwrap();
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
    let (gid, sealed, position) = three_messages(&t).await;
    let (_, _, device) = group_fixture(7);
    let batch: Vec<NewEntry<'_>> = owed_to(gid, &sealed, &position, &[])
        .into_iter()
        .map(|e| NewEntry { author: Some(device.verify_key()), payload: Some(b"m"), ..e })
        .collect();
    t.store.append_batch(&batch).await.unwrap();
    let position = |i: usize| (position[i].lamport, sealed[i].hash());
    assert_eq!(t.store.unread_count(&gid, &[]).await.unwrap(), 3);
    assert_eq!(t.store.unread_count(&gid, &[device.verify_key()]).await.unwrap(), 0, "written by us");
    t.store.mark_read(&gid, position(1)).await.unwrap();
    assert_eq!(t.store.unread_count(&gid, &[]).await.unwrap(), 1);
    t.store.mark_read(&gid, position(0)).await.unwrap();
    assert_eq!(t.store.unread_count(&gid, &[]).await.unwrap(), 1, "never moved back");
    t.store.mark_read(&gid, position(2)).await.unwrap();
    assert_eq!(t.store.unread_count(&gid, &[]).await.unwrap(), 0);
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
    let (mut sealed, mut position) = (vec![], vec![]);
    for i in 0..4u64 {
        let l = Position {
            kind: EntryKind::Message,
            lamport: i + 1,
            parents: sealed.last().map(|s: &veil_crypto::envelope::SealedEntry| s.hash()).into_iter().collect(),
        };
        sealed.push(
            seal_entry(&keys, &device, &l, BodyKey::Message(&mut chain), format!("m{i}").as_bytes(), &mut e).unwrap(),
        );
        position.push(l);
    }
    let store_one = async |i: usize, receiver: &mut ReceiverChain| {
        let payload = open_entry(&keys, &sealed[i]).unwrap().read_message(receiver).unwrap();
        let new = NewEntry {
            group: gid,
            entry: &sealed[i],
            position: &position[i],
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
