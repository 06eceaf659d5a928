//! Linking a second device to an account (issue 22): two devices of Alice
//! and one of Bob on the memory transport, a rendezvous node between them,
//! time on a `ManualClock`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use veil_actors::{Node, NodeEvent, messages::device::OfferId};
use veil_crypto::{GroupId, device_link::ShortCode};
use veil_storage::StoreOptions;
use veil_testkit::node::{
    TwoContacts, account, befriend, group_between, peer, state_of, texts, two_contacts, until, wait_for,
};

/// Links a new device to `first`'s account through a throwaway node that
/// only carries the handshake; returns the new device, started on `dir`.
async fn link(t: &TwoContacts, first: &Node, dir: &tempfile::TempDir) -> Node {
    let mut events = first.events();
    let (offer_id, offer) = first.link_device(Duration::from_secs(600)).await.unwrap();
    let vehicle_dir = tempfile::tempdir().unwrap();
    let vehicle = peer(&vehicle_dir, &t.clock, &t.addr).await;
    let join = vehicle.join_device(&offer).await.unwrap();
    assert_eq!(join.account(), account(first).await);
    let shown = code_of(&mut events, offer_id).await;
    assert_eq!(shown, join.code(), "both devices show the same code");
    // The user types on the first device the code the new one shows.
    first.confirm_device(offer_id, join.code()).await.unwrap();
    let typed = join.code();
    let store = join
        .complete(typed, &dir.path().join("veil.db"), &dir.path().join("storage.key"), StoreOptions::default())
        .await
        .unwrap();
    let device = wait_for(&mut events, |e| match e {
        NodeEvent::DeviceLinked { offer, device } if offer == offer_id => Some(device),
        _ => None,
    })
    .await;
    store.close().await.unwrap();
    vehicle.shutdown().await.unwrap();
    let second = peer(dir, &t.clock, &t.addr).await;
    assert_eq!(second.identity().await.unwrap().device, device, "the first device lists the new one by its key");
    second
}

async fn code_of(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, id: OfferId) -> ShortCode {
    wait_for(events, |e| match e {
        NodeEvent::DeviceLinkCode { offer, code } if offer == id => Some(code),
        _ => None,
    })
    .await
}

/// Why the offer `id` closed, once it did.
async fn closed(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, id: OfferId) -> &'static str {
    wait_for(events, |e| match e {
        NodeEvent::DeviceOfferClosed { offer, reason } if offer == id => Some(reason),
        _ => None,
    })
    .await
}

/// Waits until `node` shows `expected` in `group`, in this order.
async fn shows(node: &Node, group: &GroupId, expected: &[&str]) {
    let mut events = node.events();
    until(&mut events, || async { texts(node, group).await == expected }).await;
}

/// Waits until each of `nodes` shows `count` messages in each of `groups`,
/// then checks that they show them in the same order.
async fn read_alike(nodes: &[&Node], groups: &[GroupId], count: usize) {
    for node in nodes {
        for g in groups {
            let mut events = node.events();
            until(&mut events, || async { texts(node, g).await.len() == count }).await;
        }
    }
    for g in groups {
        let seen = texts(nodes[0], g).await;
        for node in &nodes[1..] {
            assert_eq!(texts(node, g).await, seen);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_is_the_same_account_in_the_one_to_one_and_in_a_group() {
    let t = two_contacts().await;
    let (alice, bob, one_to_one) = (&t.a, &t.b, t.group);
    let (group, _) = group_between(alice, bob).await;
    alice.send(&one_to_one, b"before the link").await.unwrap();
    alice.send(&group, b"group before").await.unwrap();
    shows(bob, &one_to_one, &["before the link"]).await;
    shows(bob, &group, &["group before"]).await;

    let dir = tempfile::tempdir().unwrap();
    let alice2 = link(&t, alice, &dir).await;
    assert_eq!(account(&alice2).await, account(alice).await);
    assert_eq!(alice.devices().await.unwrap().len(), 2);
    assert_eq!(alice2.devices().await.unwrap().len(), 2);
    // History from before the link came with the copy.
    assert_eq!(texts(&alice2, &one_to_one).await, ["before the link"]);
    assert_eq!(texts(&alice2, &group).await, ["group before"]);

    // Each of Alice's devices writes; the three devices read everything.
    alice2.send(&one_to_one, b"from the new device").await.unwrap();
    alice.send(&one_to_one, b"from the first device").await.unwrap();
    bob.send(&one_to_one, b"from bob").await.unwrap();
    alice2.send(&group, b"group: new device").await.unwrap();
    alice.send(&group, b"group: first device").await.unwrap();
    bob.send(&group, b"group: bob").await.unwrap();
    // Four messages in each, in the same order everywhere.
    read_alike(&[alice, &alice2, bob], &[one_to_one, group], 4).await;
    // Bob has one contact, Alice, and she is one member of the group.
    assert_eq!(bob.contacts().await.unwrap().len(), 1);
    assert_eq!(bob.members(&group).await.unwrap().len(), 2);

    // The new device away: the first writes, and it catches up on return.
    alice2.shutdown().await.unwrap();
    drop(alice2);
    // Several: the newest arrives first (its heads), the ones before by
    // reconciliation.
    for i in 0..5 {
        alice.send(&one_to_one, format!("away {i}").as_bytes()).await.unwrap();
    }
    alice.send(&one_to_one, b"while the new device was away").await.unwrap();
    bob.send(&group, b"group: while away").await.unwrap();
    let alice2 = peer(&dir, &t.clock, &t.addr).await;
    let mut events = alice2.events();
    until(&mut events, || async {
        let one = texts(&alice2, &one_to_one).await;
        one.len() == 10
            && one.last().map(String::as_str) == Some("while the new device was away")
            && texts(&alice2, &group).await.last().map(String::as_str) == Some("group: while away")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_withdraws_the_offer_and_a_used_offer_answers_no_one() {
    let t = two_contacts().await;
    let alice = &t.a;
    let mut events = alice.events();
    let (offer_id, offer) = alice.link_device(Duration::from_secs(600)).await.unwrap();
    let vehicle_dir = tempfile::tempdir().unwrap();
    let vehicle = peer(&vehicle_dir, &t.clock, &t.addr).await;
    let join = vehicle.join_device(&offer).await.unwrap();
    let code = code_of(&mut events, offer_id).await;
    let wrong: ShortCode = format!("{:06}", (code.value() + 1) % 1_000_000).parse().unwrap();
    assert!(alice.confirm_device(offer_id, wrong).await.is_err());
    let reason = closed(&mut events, offer_id).await;
    assert_eq!(reason, "the codes differ");
    // The new device got nothing, and the offer answers no one now.
    let dir = tempfile::tempdir().unwrap();
    let typed = join.code();
    let (db, key) = (dir.path().join("veil.db"), dir.path().join("storage.key"));
    assert!(join.complete(typed, &db, &key, StoreOptions::default()).await.is_err());
    assert!(!dir.path().join("veil.db").exists());
    assert!(vehicle.join_device(&offer).await.is_err(), "a withdrawn offer gets no answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_the_link_and_groups_stay_in_step_between_the_devices() {
    let t = two_contacts().await;
    let alice = &t.a;
    let dir = tempfile::tempdir().unwrap();
    let alice2 = link(&t, alice, &dir).await;

    // A contact accepted on the first device is the second's too, and
    // the second talks with it.
    let carol_dir = tempfile::tempdir().unwrap();
    let carol = peer(&carol_dir, &t.clock, &t.addr).await;
    let carol_account = account(&carol).await;
    let alice_link = alice.share_link().await.unwrap().uri;
    let with_carol = befriend(&carol, alice, &alice_link).await;
    let mut events = alice2.events();
    until(&mut events, || async {
        state_of(&alice2.contacts().await.unwrap(), &carol_account.signing)
            == Some(veil_storage::ContactState::Accepted)
    })
    .await;
    alice2.send(&with_carol, b"hello Carol, from the new device").await.unwrap();
    let mut carol_events = carol.events();
    until(&mut carol_events, || async { texts(&carol, &with_carol).await == ["hello Carol, from the new device"] })
        .await;

    // A link reset on the second device is the first's link too.
    let reset = alice2.reset_link().await.unwrap().uri;
    assert_ne!(reset, alice_link);
    let mut events = alice.events();
    until(&mut events, || async { alice.share_link().await.unwrap().uri == reset }).await;

    // A group created on the first device is the second's too.
    let group = alice.create_group(Some("plans")).await.unwrap();
    let mut events = alice2.events();
    until(&mut events, || async { alice2.groups().await.unwrap().contains(&group) }).await;
    alice2.send(&group, b"my own group, from the new device").await.unwrap();
    shows(alice, &group, &["my own group, from the new device"]).await;
    // The account's own group is not a conversation.
    assert_eq!(alice.conversations(None).await.unwrap().len(), alice2.conversations(None).await.unwrap().len());

    // A device the second links is listed on the first too.
    let dir3 = tempfile::tempdir().unwrap();
    let alice3 = link(&t, &alice2, &dir3).await;
    let third = alice3.identity().await.unwrap().device;
    let mut events = alice.events();
    until(&mut events, || async { alice.devices().await.unwrap().iter().any(|d| d.device == third) }).await;
    assert_eq!(alice.devices().await.unwrap().len(), 3);

    // Blocked on the second device: blocked on the first.
    alice2.block_contact(&carol_account.signing).await.unwrap();
    let mut events = alice.events();
    until(&mut events, || async {
        state_of(&alice.contacts().await.unwrap(), &carol_account.signing) == Some(veil_storage::ContactState::Blocked)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_offer_gets_no_answer() {
    let t = two_contacts().await;
    let alice = &t.a;
    let mut events = alice.events();
    let (offer_id, offer) = alice.link_device(Duration::from_secs(30)).await.unwrap();
    // The new device's clock is behind: it still thinks the offer is live
    // and finds it; the first device's says it expired.
    let behind = veil_crypto::time::ManualClock::new(veil_crypto::time::Clock::now(&t.clock));
    t.clock.advance(31);
    let vehicle_dir = tempfile::tempdir().unwrap();
    let vehicle = peer(&vehicle_dir, &behind, &t.addr).await;
    assert!(vehicle.join_device(&offer).await.is_err(), "an expired offer answers nothing");
    let reason = closed(&mut events, offer_id).await;
    assert_eq!(reason, "expired");
}

/// Waits until a removed device dropped each of `hashes` for want of its
/// epoch's keys: it received them and cannot read them.
async fn dropped_unread(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    mut hashes: Vec<veil_crypto::envelope::EntryHash>,
) {
    while !hashes.is_empty() {
        let hash = wait_for(events, |e| match e {
            NodeEvent::EntryRefused { hash, reason: "sealed in an epoch this device was left out of", .. }
                if hashes.contains(&hash) =>
            {
                Some(hash)
            }
            _ => None,
        })
        .await;
        hashes.retain(|h| *h != hash);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_reads_nothing_written_afterwards_and_the_others_carry_on() {
    let t = two_contacts().await;
    let (alice, bob, one_to_one) = (&t.a, &t.b, t.group);
    let (group, _) = group_between(alice, bob).await;
    let (dir2, dir3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice2 = link(&t, alice, &dir2).await;
    let alice3 = link(&t, alice, &dir3).await;
    let removed = alice2.identity().await.unwrap().device;
    // Everyone reads everyone before the removal.
    bob.send(&one_to_one, b"before").await.unwrap();
    bob.send(&group, b"group before").await.unwrap();
    for node in [alice, &alice2, &alice3] {
        shows(node, &one_to_one, &["before"]).await;
        shows(node, &group, &["group before"]).await;
    }

    let mut removed_events = alice2.events();
    let mut third_events = alice3.events();
    // The 1:1, the group and the account's own group.
    assert_eq!(alice.remove_device(&removed).await.unwrap(), 3);
    assert!(alice.remove_device(&removed).await.is_err(), "removed once");
    let me = alice.identity().await.unwrap().device;
    assert!(alice.remove_device(&me).await.is_err(), "a device cannot remove itself");
    // The removed device learns it, and so does the third.
    wait_for(&mut removed_events, |e| match e {
        NodeEvent::DeviceRemoved { device, this_device: true, synced: true } if device == removed => Some(()),
        _ => None,
    })
    .await;
    wait_for(&mut third_events, |e| match e {
        NodeEvent::DeviceRemoved { device, this_device: false, synced: true } if device == removed => Some(()),
        _ => None,
    })
    .await;
    assert!(alice3.devices().await.unwrap().iter().any(|d| d.device == removed && d.removed_at.is_some()));

    // The first device writes in the new epoch; whoever reads that holds
    // it, and writes in it from then on. (What Bob wrote before he learned
    // of the renewal would be in the old epoch, which the removed device
    // still holds: the removal takes effect as each writer learns of it.)
    let mut after = vec![
        alice.send(&one_to_one, b"after: first").await.unwrap(),
        alice.send(&group, b"group after: first").await.unwrap(),
    ];
    for node in [bob, &alice3] {
        shows(node, &one_to_one, &["before", "after: first"]).await;
        shows(node, &group, &["group before", "group after: first"]).await;
    }
    // Bob and the third device write too; everyone but the removed device reads it all.
    for (node, name) in [(bob, "bob"), (&alice3, "third")] {
        after.push(node.send(&one_to_one, format!("after: {name}").as_bytes()).await.unwrap());
        after.push(node.send(&group, format!("group after: {name}").as_bytes()).await.unwrap());
    }
    read_alike(&[alice, &alice3, bob], &[one_to_one, group], 4).await;

    // The removed device received all of it and reads none of it.
    dropped_unread(&mut removed_events, after).await;
    assert_eq!(texts(&alice2, &one_to_one).await, ["before"]);
    assert_eq!(texts(&alice2, &group).await, ["group before"]);
    // It writes nothing more, and cannot remove the others.
    assert!(alice2.send(&one_to_one, b"still here?").await.is_err());
    assert!(alice2.remove_device(&me).await.is_err());
    // Bob still has one contact.
    assert_eq!(bob.contacts().await.unwrap().len(), 1);
}
