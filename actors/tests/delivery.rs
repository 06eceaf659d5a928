//! The storage outbox at work: messages between two contacts keep arriving,
//! each exactly once and in order, while TCP is detached in the middle of
//! the stream (QUIC stays), while the sender rotates its network key, and
//! while the receiver is offline, while the network task of each side
//! panics — and a conversation that starts while one side is going offline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use veil_actors::{Node, NodeEvent};
use veil_crypto::{
    GroupId,
    time::{ManualClock, UnixTime},
};
use veil_testkit::node::{
    T0, TwoContacts, account, befriend, both_transports, peer, peer_on, rendezvous_server, schedule, two_contacts,
    two_contacts_on, until, wait_for,
};
use veil_testkit::plugins::Buggy;
use veil_transports::TransportId;

/// The texts `node` holds from `prefix`, in log order.
async fn texts(node: &Node, group: &GroupId, prefix: &str) -> Vec<String> {
    let history = node.history(group, None, 10_000).await.unwrap();
    history.into_iter().map(|h| String::from_utf8(h.payload).unwrap()).filter(|t| t.starts_with(prefix)).collect()
}

/// Sends `count` messages `prefix0000`… from `node`, `in_flight` at a time.
async fn send_at_once(node: &Node, group: GroupId, prefix: &str, count: usize, in_flight: usize) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
    let sends: Vec<_> = (0..count)
        .map(|i| {
            let (node, text, permits) = (node.clone(), format!("{prefix}{i:04}"), permits.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                node.send(&group, text.as_bytes()).await.unwrap()
            })
        })
        .collect();
    for s in sends {
        s.await.unwrap();
    }
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_a_transport_swap_a_key_rotation_and_an_offline_peer() {
    let TwoContacts { dirs, clock, server, addr, a, b, group } = two_contacts_on(both_transports).await;
    let mut b_events = b.events();

    // 1. Half the stream, then TCP goes away on A in the middle of it.
    for i in 0..50 {
        a.send(&group, format!("m{i:03}").as_bytes()).await.unwrap();
    }
    a.detach_transport(TransportId::TCP).await.unwrap();
    for i in 50..100 {
        a.send(&group, format!("m{i:03}").as_bytes()).await.unwrap();
    }
    until(&mut b_events, || async { texts(&b, &group, "m").await.len() == 100 }).await;

    // 2. A rotates its network key (new peer id) mid-stream.
    for i in 100..150 {
        a.send(&group, format!("m{i:03}").as_bytes()).await.unwrap();
        if i == 125 {
            a.rotate_network_key().await.unwrap();
        }
    }
    until(&mut b_events, || async { texts(&b, &group, "m").await.len() == 150 }).await;

    // 3. B goes offline; A keeps writing; B comes back and catches up.
    b.shutdown().await.unwrap();
    for i in 150..200 {
        a.send(&group, format!("m{i:03}").as_bytes()).await.unwrap();
    }
    let b = peer_on(&dirs[2], &clock, &addr, both_transports(), schedule()).await;
    let mut b_events = b.events();
    until(&mut b_events, || async { texts(&b, &group, "m").await.len() == 200 }).await;

    assert_eq!(texts(&b, &group, "m").await, numbered("m", 0..200), "every message once, in order");
    let mut a_events = a.events();
    until(&mut a_events, || async { a.undelivered(&group).await.unwrap() == 0 }).await;
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// The task that owns the swarm panics on each side in the middle of a
/// conversation going both ways: it rebuilds its swarm (same peer id) and
/// the outboxes deliver everything, once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_a_panic_in_the_network_task_of_either_side() {
    let TwoContacts { server, a, b, group, .. } = two_contacts().await;
    let conversation = a.conversations(Some(&[group])).await.unwrap().remove(0);
    assert_eq!(conversation.contact.map(|c| c.account), Some(account(&b).await), "B's 1:1 conversation");
    let (mut a_events, mut b_events) = (a.events(), b.events());
    for i in 0..100 {
        a.send(&group, format!("a{i:03}").as_bytes()).await.unwrap();
        b.send(&group, format!("b{i:03}").as_bytes()).await.unwrap();
        if i == 30 {
            assert!(a.attach_transport(Arc::new(Buggy)).await.is_err());
        }
        if i == 60 {
            assert!(b.attach_transport(Arc::new(Buggy)).await.is_err());
        }
    }
    until(&mut b_events, || async { texts(&b, &group, "a").await.len() == 100 }).await;
    until(&mut a_events, || async { texts(&a, &group, "b").await.len() == 100 }).await;
    assert_eq!(texts(&b, &group, "a").await, numbered("a", 0..100), "every message once, in order");
    assert_eq!(texts(&a, &group, "b").await, numbered("b", 0..100), "every message once, in order");
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// A 1:1 conversation that starts while one side goes offline: the
/// responder stops the moment `accept_contact` returns, and a requester
/// stops the moment its request is delivered. Each reads, when it comes
/// back, everything its contact wrote meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_going_offline_as_the_conversation_starts_reads_it_on_return() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let (a, b, c) =
        (peer(&dirs[1], &clock, &addr).await, peer(&dirs[2], &clock, &addr).await, peer(&dirs[3], &clock, &addr).await);
    let link = b.share_link().await.unwrap().uri;
    let (a_id, c_id) = (account(&a).await.signing, account(&c).await.signing);

    // B accepts A and stops at once; A writes while B is offline.
    let mut b_events = b.events();
    a.send_request(&link, Some("Alice")).await.unwrap();
    wait_for(&mut b_events, |e| {
        matches!(e, NodeEvent::ContactRequestReceived { account, .. } if account.signing == a_id).then_some(())
    })
    .await;
    let ab = b.accept_contact(&a_id).await.unwrap().group.unwrap();
    b.shutdown().await.unwrap();
    for i in 0..5 {
        a.send(&ab, format!("to B {i}").as_bytes()).await.unwrap();
    }

    // C's request is delivered and C stops at once; B (back) accepts and writes.
    let b = peer(&dirs[2], &clock, &addr).await;
    let (mut b_events, mut c_events) = (b.events(), c.events());
    c.send_request(&link, Some("Carol")).await.unwrap();
    let b_id = account(&b).await.signing;
    wait_for(&mut c_events, |e| {
        matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
    })
    .await;
    c.shutdown().await.unwrap();
    wait_for(&mut b_events, |e| {
        matches!(e, NodeEvent::ContactRequestReceived { account, .. } if account.signing == c_id).then_some(())
    })
    .await;
    let bc = b.accept_contact(&c_id).await.unwrap().group.unwrap();
    for i in 0..5 {
        b.send(&bc, format!("to C {i}").as_bytes()).await.unwrap();
    }

    // Both read everything once back, in order.
    let c = peer(&dirs[3], &clock, &addr).await;
    for (n, group, prefix) in [(&b, &ab, "to B "), (&c, &bc, "to C ")] {
        let mut events = n.events();
        until(&mut events, || async { texts(n, group, prefix).await.len() == 5 }).await;
        assert_eq!(texts(n, group, prefix).await, (0..5).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>());
    }
    for n in [a, b, c, server] {
        n.shutdown().await.unwrap();
    }
}

/// Many sends in flight at once are stored together (group commit) and
/// still form one chain: every message once, in the order the log holds
/// them, the same on both sides, all acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_stored_together_and_arrive_once_in_order() {
    const COUNT: usize = 300;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let (a, b) = (peer(&dirs[1], &clock, &addr).await, peer(&dirs[2], &clock, &addr).await);
    let link = b.share_link().await.unwrap().uri;
    let group = befriend(&a, &b, &link).await;

    let sends: Vec<_> = (0..COUNT)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { a.send(&group, format!("c{i:03}").as_bytes()).await.unwrap() })
        })
        .collect();
    let mut hashes = Vec::new();
    for send in sends {
        hashes.push(send.await.unwrap());
    }
    let written = texts(&a, &group, "c").await;
    assert_eq!(written.len(), COUNT);
    let mut sorted = written.clone();
    sorted.sort();
    assert_eq!(sorted, numbered("c", 0..COUNT), "each message stored once");
    let history = a.history(&group, None, 10_000).await.unwrap();
    assert!(history.windows(2).all(|w| w[0].lamport < w[1].lamport), "one chain, no concurrent heads");
    assert!(hashes.iter().all(|h| history.iter().any(|e| e.hash == *h)), "every send's hash is in the log");

    let mut events = b.events();
    until(&mut events, || async { texts(&b, &group, "c").await.len() == COUNT }).await;
    assert_eq!(texts(&b, &group, "c").await, written, "the same order on both sides");
    let mut events = a.events();
    until(&mut events, || async { a.undelivered(&group).await.unwrap() == 0 }).await;
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// A backlog far larger than one frame: the receiver takes what many frames
/// carry as one batch, and acknowledges all of it (in as many ack frames as
/// it takes). Every message arrives once, in order, and none stays owed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_many_frames_long_is_stored_and_acknowledged_in_full() {
    let TwoContacts { dirs, clock, server, addr, a, b, group } = two_contacts().await;
    b.shutdown().await.unwrap();
    // Written while B is away, concurrently: appends go in batches.
    let count = 1500;
    send_at_once(&a, group, "b", count, count).await;
    let b = peer(&dirs[2], &clock, &addr).await;
    let mut a_events = a.events();
    // Nothing owed any more: every entry acknowledged (the resend delay
    // never runs out on this clock, so nothing is sent twice to get there).
    until(&mut a_events, || async { a.undelivered(&group).await.unwrap() == 0 }).await;
    let got = texts(&b, &group, "b").await;
    assert_eq!(got.len(), count);
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), count, "each once");
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// A sender far ahead of its contact, both online: a thousand sends in
/// flight at once. Every message arrives once and is acknowledged without
/// the resend delay (which never runs out on this clock), so nothing may be
/// dropped on the way or wait for a resend. (The courier's lanes, which
/// keep a peer that falls far behind in order, showed their worth in the
/// 120 s release bench; a debug build here does not fall that far behind.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_far_ahead_of_its_contact_delivers_everything() {
    let TwoContacts { server, a, b, group, .. } = two_contacts().await;
    let count = 6000;
    send_at_once(&a, group, "f", count, 1024).await;
    let mut a_events = a.events();
    until(&mut a_events, || async { a.undelivered(&group).await.unwrap() == 0 }).await;
    let got = texts(&b, &group, "f").await;
    assert_eq!(got.len(), count);
    let mut sorted = got;
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), count, "each once");
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}
