//! Contacts end to end between real nodes on loopback TCP: link → request →
//! accept → messages both ways; rotation across a period boundary; link
//! reset and disable. A third node serves the libp2p rendezvous protocol;
//! time is a `ManualClock` with a one-minute period.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{GRACE, PERIOD, T0, account, befriend, peer, rendezvous_server, state_of, until, wait_for};
use veil_actors::{NodeEvent, messages::rendezvous::WatchKey};
use veil_crypto::{
    envelope::EntryHash,
    time::{ManualClock, UnixTime},
};
use veil_storage::ContactState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_request_accept_and_a_hundred_messages_each_way() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let a = peer(&dirs[1], &clock, &addr).await;
    let b = peer(&dirs[2], &clock, &addr).await;
    let link = b.share_link().await.unwrap().uri;
    let group = befriend(&a, &b, &link).await;
    let (a_id, b_id) = (account(&a).await.signing, account(&b).await.signing);
    assert_eq!(state_of(&a.contacts().await.unwrap(), &b_id), Some(ContactState::Accepted));
    assert_eq!(state_of(&b.contacts().await.unwrap(), &a_id), Some(ContactState::Accepted));

    let (mut a_events, mut b_events) = (a.events(), b.events());
    for i in 0..100 {
        a.send(&group, format!("a{i:03}").as_bytes()).await.unwrap();
        b.send(&group, format!("b{i:03}").as_bytes()).await.unwrap();
    }
    // Every message arrives, and every one is acknowledged back to its sender.
    for (node, events) in [(&a, &mut a_events), (&b, &mut b_events)] {
        until(events, || async { node.history(&group, None, 1000).await.unwrap().len() == 200 }).await;
        until(events, || async { node.undelivered(&group).await.unwrap() == 0 }).await;
    }

    for (node, mine, theirs) in [(&a, "a", "b"), (&b, "b", "a")] {
        let history = node.history(&group, None, 1000).await.unwrap();
        assert_eq!(history.len(), 200, "each side holds both conversations once");
        let hashes: HashSet<EntryHash> = history.iter().map(|h| h.hash).collect();
        assert_eq!(hashes.len(), 200, "no duplicates");
        for prefix in [mine, theirs] {
            let texts: Vec<String> = history
                .iter()
                .map(|h| String::from_utf8(h.payload.clone()).unwrap())
                .filter(|t| t.starts_with(prefix))
                .collect();
            let expected: Vec<String> = (0..100).map(|i| format!("{prefix}{i:03}")).collect();
            assert_eq!(texts, expected, "each sender's messages in the order sent");
        }
    }
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// A request started just before a period boundary, to a responder that only
/// comes online after it, is still delivered; and the points every watch
/// goes through never repeat across periods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_across_a_period_boundary_and_points_never_repeat() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + PERIOD - 2));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let a = peer(&dirs[1], &clock, &addr).await;
    let b = peer(&dirs[2], &clock, &addr).await;
    let link = b.share_link().await.unwrap().uri;
    let b_id = account(&b).await.signing;
    b.shutdown().await.unwrap();

    // A starts before the boundary; nobody answers yet.
    let mut a_events = a.events();
    a.send_request(&link, None).await.unwrap();
    wait_for(&mut a_events, |e| matches!(e, NodeEvent::ContactRequestUndelivered { .. }).then_some(())).await;

    // Past the boundary and past the grace window: only the new period's
    // point is active on both sides. B comes back and announces it.
    clock.set(UnixTime(T0 + PERIOD + GRACE + 1));
    let b = peer(&dirs[2], &clock, &addr).await;
    wait_for(&mut a_events, |e| {
        matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
    })
    .await;
    assert_eq!(state_of(&a.contacts().await.unwrap(), &b_id), Some(ContactState::OutgoingSent));

    // An observer of every point B's link and A's pending request went
    // through over several periods never sees one twice.
    let mut b_events = b.events();
    let mut seen: Vec<[u8; 32]> = Vec::new();
    for period in 2..7 {
        clock.set(UnixTime(T0 + period * PERIOD + GRACE + 1));
        let current = wait_for(&mut b_events, |e| match e {
            NodeEvent::RendezvousRotated { key: WatchKey::OwnLink, points } => Some(points.current.0),
            _ => None,
        })
        .await;
        seen.push(current);
    }
    let distinct: HashSet<[u8; 32]> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "a point repeated across periods");
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// After a reset, the old link reaches nobody and the new one works; while
/// the link is disabled, no link works and nothing is watched for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_disabled_links_stop_working() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let a = peer(&dirs[1], &clock, &addr).await;
    let b = peer(&dirs[2], &clock, &addr).await;
    let c = peer(&dirs[3], &clock, &addr).await;
    let b_id = account(&b).await.signing;

    // Reset: a request through the old link fails, again and again.
    let old = b.share_link().await.unwrap().uri;
    let new = b.reset_link().await.unwrap().uri;
    assert_ne!(old, new);
    let mut a_events = a.events();
    a.send_request(&old, None).await.unwrap();
    wait_for(&mut a_events, |e| match e {
        NodeEvent::ContactRequestUndelivered { failures, .. } if failures >= 3 => Some(()),
        NodeEvent::ContactRequestDelivered { .. } => panic!("the old link still works"),
        _ => None,
    })
    .await;
    assert_eq!(state_of(&a.contacts().await.unwrap(), &b_id), Some(ContactState::OutgoingEnqueued));
    assert!(b.contacts().await.unwrap().is_empty(), "B heard nothing");
    // The new link works (the same contact, now with the new seed).
    a.send_request(&new, None).await.unwrap();
    wait_for(&mut a_events, |e| {
        matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
    })
    .await;

    // Disabled: even the current link fails, and B watches no link point.
    let current = b.set_link_enabled(false).await.unwrap();
    assert!(!current.enabled);
    assert!(b.active_points().await.unwrap().iter().all(|(k, _)| *k != WatchKey::OwnLink));
    let mut c_events = c.events();
    c.send_request(&current.uri, None).await.unwrap();
    wait_for(&mut c_events, |e| match e {
        NodeEvent::ContactRequestUndelivered { failures, .. } if failures >= 3 => Some(()),
        NodeEvent::ContactRequestDelivered { .. } => panic!("a disabled link still works"),
        _ => None,
    })
    .await;
    // Enabled again: C's pending request goes through.
    b.set_link_enabled(true).await.unwrap();
    wait_for(&mut c_events, |e| {
        matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
    })
    .await;
    for n in [a, b, c, server] {
        n.shutdown().await.unwrap();
    }
}
