//! Contacts end to end between real nodes on loopback TCP: link → request →
//! accept → messages both ways; rotation across a period boundary; link
//! reset and disable. A third node serves the libp2p rendezvous protocol;
//! time is a `ManualClock` with a one-minute period.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use std::{sync::Arc, time::Duration};

use veil_actors::{NodeEvent, RetryPolicy, messages::rendezvous::WatchKey, time::SteppedTime};
use veil_crypto::{
    envelope::EntryHash,
    rendezvous::{Schedule, Topic},
    time::{ManualClock, UnixTime},
};
use veil_storage::{ContactState, LinkLimits};
use veil_testkit::node::{
    GRACE, PERIOD, T0, TwoContacts, account, memory, peer, peer_builder, peer_on, rendezvous_server, schedule,
    state_of, tcp, two_contacts, until, wait_for,
};
use veil_transports::libp2p::PeerId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_request_accept_and_a_hundred_messages_each_way() {
    let TwoContacts { server, a, b, group, .. } = two_contacts().await;
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

/// The hex rendezvous point of `link`'s owner at time `t`: the namespace a
/// rendezvous server sees.
fn link_namespace(link: &str, t: u64) -> String {
    let parsed = veil_proto::link::parse_contact(link).unwrap();
    schedule().point_at(&Topic::contact(&parsed.account.signing), &parsed.seed, UnixTime(t)).to_hex()
}

/// A request started just before a period boundary, to a responder that only
/// comes online after it, survives a restart of the requester and is
/// delivered after the boundary. A rendezvous server recording every
/// namespace registered over several periods never sees one twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_across_a_period_boundary_and_namespaces_never_repeat() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + PERIOD - 2));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let mut observed = server.events();
    let a = peer(&dirs[1], &clock, &addr).await;
    let b = peer(&dirs[2], &clock, &addr).await;
    let link = b.share_link().await.unwrap().uri;
    let b_id = account(&b).await.signing;
    b.shutdown().await.unwrap();

    // A starts before the boundary; nobody answers yet. A restarts.
    let mut a_events = a.events();
    a.send_request(&link, None).await.unwrap();
    wait_for(&mut a_events, |e| matches!(e, NodeEvent::ContactRequestUndelivered { .. }).then_some(())).await;
    a.shutdown().await.unwrap();
    let a = peer(&dirs[1], &clock, &addr).await;
    let mut a_events = a.events();

    // Past the boundary and its grace window: only the new period's point is
    // active on both sides. B comes back and announces it.
    clock.set(UnixTime(T0 + PERIOD + GRACE + 1));
    let b = peer(&dirs[2], &clock, &addr).await;
    wait_for(&mut a_events, |e| {
        matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
    })
    .await;
    assert_eq!(state_of(&a.contacts().await.unwrap(), &b_id), Some(ContactState::OutgoingSent));

    // Several periods, each entered past its grace window: everything
    // registered in one must be new, and B's link point of each period shows
    // up. Every namespace here belongs to one node (A's link, B's link, the
    // 1:1 group only A has started), and that node takes a new peer id every
    // period: a namespace registered twice, or under two peer ids, would let
    // the server link them. That includes what was registered before this
    // loop (A announced just before the first boundary).
    let mut seen: HashMap<String, (u64, PeerId)> = HashMap::new();
    for period in 1..6 {
        let t = T0 + period * PERIOD + GRACE + 1;
        clock.set(UnixTime(t));
        let expected = link_namespace(&link, t);
        wait_for(&mut observed, |e| match e {
            NodeEvent::RendezvousRegistered { namespace, peer } => {
                if let Some((earlier, by)) = seen.insert(namespace.clone(), (period, peer)) {
                    panic!("namespace {namespace} registered twice (by {by} then {peer}, seen in periods {earlier} and {period})");
                }
                (namespace == expected).then_some(())
            }
            _ => None,
        })
        .await;
    }
    for n in [a, b, server] {
        n.shutdown().await.unwrap();
    }
}

/// Requesters whose clocks are a minute ahead of and behind the responder's,
/// just before a boundary, still reach it (points overlap in the grace window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_clock_skew_either_way_is_tolerated() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let wide = Schedule::new(600, 90).unwrap();
    let boundary = T0 - T0 % 600 + 600;
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let clocks: Vec<ManualClock> =
        [boundary - 30, boundary + 30, boundary - 90].into_iter().map(|t| ManualClock::new(UnixTime(t))).collect();
    let b = peer_on(&dirs[1], &clocks[0], &addr, tcp(), wide).await;
    let ahead = peer_on(&dirs[2], &clocks[1], &addr, tcp(), wide).await;
    let behind = peer_on(&dirs[3], &clocks[2], &addr, tcp(), wide).await;
    let link = b.share_link().await.unwrap().uri;
    let b_id = account(&b).await.signing;
    for requester in [&ahead, &behind] {
        let mut events = requester.events();
        requester.send_request(&link, None).await.unwrap();
        wait_for(&mut events, |e| {
            matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
        })
        .await;
    }
    assert_eq!(b.contacts().await.unwrap().len(), 2);
    for n in [b, ahead, behind, server] {
        n.shutdown().await.unwrap();
    }
}

/// A rendezvous server (and what it observes) and three peers using it.
struct Three {
    _dirs: Vec<tempfile::TempDir>,
    server: veil_actors::Node,
    observed: tokio::sync::broadcast::Receiver<NodeEvent>,
    a: veil_actors::Node,
    b: veil_actors::Node,
    c: veil_actors::Node,
}

async fn three(clock: &ManualClock) -> Three {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let observed = server.events();
    let a = peer(&dirs[1], clock, &addr).await;
    let b = peer(&dirs[2], clock, &addr).await;
    let c = peer(&dirs[3], clock, &addr).await;
    Three { _dirs: dirs, server, observed, a, b, c }
}

/// Waits until a request has failed three times in a row (and never went through).
async fn refused(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>) {
    wait_for(events, |e| match e {
        NodeEvent::ContactRequestUndelivered { failures, .. } if failures >= 3 => Some(()),
        NodeEvent::ContactRequestDelivered { .. } => panic!("a link that should not answer did"),
        _ => None,
    })
    .await;
}

/// A one-time link answers one request, then nobody, and is withdrawn; a
/// link with an expiry answers until then, then nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_up_and_expired_links_get_no_answer() {
    let now = T0 + GRACE + 1;
    let clock = ManualClock::new(UnixTime(now));
    let Three { _dirs, server, mut observed, a, b, c } = three(&clock).await;
    let b_id = account(&b).await.signing;

    let once = b.reset_link_with(LinkLimits { uses: Some(1), ..LinkLimits::default() }).await.unwrap();
    assert!(once.answers && once.limits.uses == Some(1));
    let mut a_events = a.events();
    a.send_request(&once.uri, None).await.unwrap();
    wait_for(&mut a_events, |e| {
        matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
    })
    .await;
    // Used up: withdrawn from the server, and the next requester hears nothing.
    let withdrawn = link_namespace(&once.uri, now);
    wait_for(&mut observed, |e| {
        matches!(e, NodeEvent::RendezvousUnregistered { namespace, .. } if namespace == withdrawn).then_some(())
    })
    .await;
    let spent = b.share_link().await.unwrap();
    assert!(!spent.answers && spent.enabled && spent.limits.uses == Some(0));
    let mut c_events = c.events();
    c.send_request(&once.uri, None).await.unwrap();
    refused(&mut c_events).await;
    assert_eq!(b.contacts().await.unwrap().len(), 1, "only A's request reached B");

    // An expiry: answered before it, not after.
    let timed = b.reset_link_with(LinkLimits { expires_at: Some(UnixTime(now + 20)), uses: None }).await.unwrap();
    assert!(timed.answers);
    clock.set(UnixTime(now + 20));
    let withdrawn = link_namespace(&timed.uri, now);
    wait_for(&mut observed, |e| {
        matches!(e, NodeEvent::RendezvousUnregistered { namespace, .. } if namespace == withdrawn).then_some(())
    })
    .await;
    assert!(!b.share_link().await.unwrap().answers);
    let mut c_events = c.events();
    c.send_request(&timed.uri, None).await.unwrap();
    refused(&mut c_events).await;
    assert_eq!(b.contacts().await.unwrap().len(), 1);
    for n in [a, b, c, server] {
        n.shutdown().await.unwrap();
    }
}

/// After a reset, the old link reaches nobody and the new one works; while
/// the link is disabled, no link works and nothing is announced for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_disabled_links_stop_working() {
    let clock = ManualClock::new(UnixTime(T0 + GRACE + 1));
    let Three { _dirs, server, mut observed, a, b, c } = three(&clock).await;
    let b_id = account(&b).await.signing;

    // Reset: a request through the old link fails, again and again.
    let old = b.share_link().await.unwrap().uri;
    let new = b.reset_link().await.unwrap().uri;
    assert_ne!(old, new);
    let mut a_events = a.events();
    a.send_request(&old, None).await.unwrap();
    refused(&mut a_events).await;
    assert_eq!(state_of(&a.contacts().await.unwrap(), &b_id), Some(ContactState::OutgoingEnqueued));
    assert!(b.contacts().await.unwrap().is_empty(), "B heard nothing");
    // The new link works (the same contact, now with the new seed).
    a.send_request(&new, None).await.unwrap();
    wait_for(&mut a_events, |e| {
        matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
    })
    .await;

    // Disabled: the server sees the link's point withdrawn, and in the next
    // period nothing is registered for the link while C keeps trying.
    let now = T0 + GRACE + 1;
    let current = b.set_link_enabled(false).await.unwrap();
    assert!(!current.enabled);
    assert!(b.active_points().await.unwrap().iter().all(|(k, _)| *k != WatchKey::OwnLink));
    let withdrawn = link_namespace(&current.uri, now);
    wait_for(&mut observed, |e| {
        matches!(e, NodeEvent::RendezvousUnregistered { namespace, .. } if namespace == withdrawn).then_some(())
    })
    .await;
    let next = T0 + PERIOD + GRACE + 1;
    clock.set(UnixTime(next));
    let forbidden = [link_namespace(&current.uri, now), link_namespace(&current.uri, next)];
    let mut c_events = c.events();
    c.send_request(&current.uri, None).await.unwrap();
    refused(&mut c_events).await;
    while let Ok(e) = observed.try_recv() {
        if let NodeEvent::RendezvousRegistered { namespace, .. } = e {
            assert!(!forbidden.contains(&namespace), "a disabled link was announced");
        }
    }
    // Enabled again: it is announced, and C's pending request goes through.
    b.set_link_enabled(true).await.unwrap();
    let announced = link_namespace(&current.uri, next);
    wait_for(&mut observed, |e| {
        matches!(e, NodeEvent::RendezvousRegistered { namespace, .. } if namespace == announced).then_some(())
    })
    .await;
    wait_for(&mut c_events, |e| {
        matches!(e, NodeEvent::ContactRequestDelivered { account } if account == b_id).then_some(())
    })
    .await;
    for n in [a, b, c, server] {
        n.shutdown().await.unwrap();
    }
}

/// The contact book's retries run on the node's injected time: a request
/// nobody answers is tried once while time stands still, and again only when
/// stepped time passes its backoff (10 s here, which the test never waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_is_tried_again_when_stepped_time_passes_its_backoff() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + GRACE + 1));
    let time = SteppedTime::new(UnixTime(T0 + GRACE + 1));
    let (_server, addr) = rendezvous_server(&dirs[0]).await;
    let b = peer(&dirs[2], &clock, &addr).await;
    let link = b.share_link().await.unwrap().uri;
    b.shutdown().await.unwrap();
    let a = peer_builder(&dirs[1], &clock, &addr, memory(), schedule())
        .clock(Arc::new(time.clone()))
        .timers(Arc::new(time.clone()))
        .contact_retry(RetryPolicy { base: Duration::from_secs(10), max: Duration::from_secs(60) })
        .spawn()
        .await
        .unwrap();
    let mut events = a.events();
    let failed = |e: NodeEvent| match e {
        NodeEvent::ContactRequestUndelivered { failures, .. } => Some(failures),
        NodeEvent::ContactRequestDelivered { .. } => panic!("nobody is there to answer"),
        _ => None,
    };

    a.send_request(&link, None).await.unwrap();
    assert_eq!(wait_for(&mut events, failed).await, 1);
    // Standing still, or short of the backoff, nothing is tried again (the
    // ticks come and find it not due).
    for _ in 0..9 {
        time.advance(Duration::from_secs(1));
        a.contacts().await.unwrap();
    }
    while let Ok(e) = events.try_recv() {
        assert_eq!(failed(e), None, "tried again before its backoff passed");
    }
    time.advance(Duration::from_secs(1));
    assert_eq!(wait_for(&mut events, failed).await, 2, "the tick at 10 s finds it due");
    a.shutdown().await.unwrap();
}
