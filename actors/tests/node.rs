//! The node facade end to end, on one machine: identity, link, rendezvous
//! rotation with an injected clock, group logs, restarts and supervision.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use tokio::time::timeout;
use veil_actors::{ActorKind, Error, Node, NodeEvent, messages::rendezvous::WatchKey};
use veil_crypto::{
    rendezvous::Schedule,
    time::{ManualClock, UnixTime},
};
use veil_storage::keystore::KdfParams;

const WAIT: Duration = Duration::from_secs(20);

async fn node(dir: &std::path::Path, clock: &ManualClock) -> Node {
    Node::builder()
        .data_dir(dir)
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .clock(Arc::new(clock.clone()))
        .rendezvous_schedule(Schedule::new(100, 10).unwrap())
        .rotation_check_interval(Duration::from_millis(20))
        .spawn()
        .await
        .unwrap()
}

#[tokio::test]
async fn identity_is_created_offline_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime(1_000_000));
    let n = node(dir.path(), &clock).await;
    let id = n.identity().await.unwrap();
    n.shutdown().await.unwrap();
    let n = node(dir.path(), &clock).await;
    assert_eq!(n.identity().await.unwrap(), id);
    n.shutdown().await.unwrap();
}

#[tokio::test]
async fn link_reset_and_disable_change_what_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime(1_000_050));
    let n = node(dir.path(), &clock).await;
    let first = n.share_link().await.unwrap();
    assert!(first.enabled);
    assert_eq!(n.share_link().await.unwrap(), first, "sharing twice gives the same link");
    let own = |points: Vec<(WatchKey, veil_crypto::rendezvous::ActivePoints)>| {
        points.into_iter().find(|(k, _)| *k == WatchKey::OwnLink).map(|(_, p)| p)
    };
    let before = own(n.active_points().await.unwrap()).expect("own link watched");
    let reset = n.reset_link().await.unwrap();
    assert_ne!(reset.uri, first.uri);
    let after = own(n.active_points().await.unwrap()).expect("own link watched");
    assert_ne!(before.current, after.current, "a reset moves the rendezvous point");
    let disabled = n.set_link_enabled(false).await.unwrap();
    assert!(!disabled.enabled);
    assert_eq!(own(n.active_points().await.unwrap()), None, "a disabled link is not announced");
    n.set_link_enabled(true).await.unwrap();
    assert_eq!(own(n.active_points().await.unwrap()).map(|p| p.current), Some(after.current));
    n.shutdown().await.unwrap();
}

#[tokio::test]
async fn rotation_follows_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime(1_000_050));
    let n = node(dir.path(), &clock).await;
    let mut events = n.events();
    n.share_link().await.unwrap();
    let first = loop {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            NodeEvent::RendezvousRotated { key: WatchKey::OwnLink, points } => break points,
            _ => continue,
        }
    };
    // Jump past the period boundary (period 100 s): the point changes, and
    // the previous one stays active during the grace window.
    clock.set(UnixTime(1_000_102));
    let second = loop {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            NodeEvent::RendezvousRotated { key: WatchKey::OwnLink, points } if points.current != first.current => {
                break points;
            }
            _ => continue,
        }
    };
    assert_eq!(second.previous, Some(first.current));
    n.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_clock_jumping_hours_forward_and_back_never_brings_a_point_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime(1_000_050));
    let n = node(dir.path(), &clock).await;
    let mut events = n.events();
    n.share_link().await.unwrap();
    let mut seen = std::collections::HashSet::new();
    // The next point of the own link unlike every point before it.
    let mut next_point = async |seen: &mut std::collections::HashSet<_>| loop {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            NodeEvent::RendezvousRotated { key: WatchKey::OwnLink, points } if seen.insert(points.current) => {
                break points.current;
            }
            NodeEvent::RendezvousRotated { key: WatchKey::OwnLink, points } => {
                panic!("a point came back: {points:?}");
            }
            _ => continue,
        }
    };
    let first = next_point(&mut seen).await;
    // Three hours forward (period 100 s): a new point.
    clock.set(UnixTime(1_010_850));
    let ahead = next_point(&mut seen).await;
    // Back to the first period: its point would come back; it is held.
    clock.set(UnixTime(1_000_060));
    let held = n.active_points().await.unwrap();
    let own = held.iter().find(|(k, _)| *k == WatchKey::OwnLink).map(|(_, p)| p.current);
    assert_eq!(own, Some(ahead), "held at the point of the period after");
    // The next period was never used: rotation goes on from there.
    clock.set(UnixTime(1_000_110));
    let recovered = next_point(&mut seen).await;
    assert_ne!(recovered, first);
    n.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_restarted_with_its_clock_back_never_brings_a_point_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime(1_000_050));
    // The own link's next point other than `not`.
    let own_link = async |events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, not| loop {
        if let NodeEvent::RendezvousRotated { key: WatchKey::OwnLink, points } =
            timeout(WAIT, events.recv()).await.unwrap().unwrap()
            && Some(points.current) != not
        {
            break points.current;
        }
    };
    let n = node(dir.path(), &clock).await;
    let mut events = n.events();
    n.share_link().await.unwrap();
    let first = own_link(&mut events, None).await;
    clock.set(UnixTime(1_010_850));
    let ahead = own_link(&mut events, Some(first)).await;
    n.shutdown().await.unwrap();

    // Started again with the clock back in the first period: what the run
    // before announced is still known, so the first point stays unused.
    clock.set(UnixTime(1_000_060));
    let n = node(dir.path(), &clock).await;
    let held = n.active_points().await.unwrap();
    let own = held.iter().find(|(k, _)| *k == WatchKey::OwnLink).map(|(_, p)| p.current);
    assert_eq!(own, Some(ahead), "held at the point announced last");
    n.shutdown().await.unwrap();
}

#[tokio::test]
async fn group_messages_are_ordered_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime(1_000_000));
    let n = node(dir.path(), &clock).await;
    let g = n.create_group(Some("notes")).await.unwrap();
    for i in 0..50 {
        n.send(&g, format!("m{i}").as_bytes()).await.unwrap();
    }
    n.shutdown().await.unwrap();
    let n = node(dir.path(), &clock).await;
    assert_eq!(n.groups().await.unwrap(), vec![g]);
    for i in 50..60 {
        n.send(&g, format!("m{i}").as_bytes()).await.unwrap();
    }
    let history = n.history(&g, None, 1000).await.unwrap();
    let texts: Vec<String> = history.iter().map(|h| String::from_utf8(h.payload.clone()).unwrap()).collect();
    assert_eq!(texts, (0..60).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert!(history.windows(2).all(|w| w[0].lamport < w[1].lamport));
    let page = n.history(&g, Some((history[9].lamport, history[9].hash)), 5).await.unwrap();
    assert_eq!(page.len(), 5);
    assert_eq!(page[0].hash, history[10].hash);
    // A message posted comes back as history shows it.
    let posted = n.post(&g, b"posted").await.unwrap().expect("stored");
    assert!(posted.mine);
    assert_eq!(posted.payload, b"posted");
    assert_eq!(n.history_before(&g, None, 1).await.unwrap(), vec![posted]);
    let conversations = n.conversations(None).await.unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!((conversations[0].group, conversations[0].name.as_deref()), (g, Some("notes")));
    assert!(conversations[0].contact.is_none(), "a group, not a contact's conversation");
    n.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_actor_recovers_from_a_panic_while_busy_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UnixTime(1_000_000));
    let n = node(dir.path(), &clock).await;
    let g = n.create_group(None).await.unwrap();
    let link = n.share_link().await.unwrap();

    // A writer keeps the group busy; a failed send (the actor was restarting)
    // is retried, as the app would.
    let writer = {
        let n = n.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                loop {
                    match n.send(&g, &i.to_be_bytes()).await {
                        Ok(_) => break,
                        Err(Error::Restarting(_)) | Err(Error::Unavailable(_)) => tokio::task::yield_now().await,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
        })
    };
    for actor in [
        ActorKind::IdentityVault,
        ActorKind::RendezvousRotator,
        ActorKind::ContactBook,
        ActorKind::GroupLog(g),
        ActorKind::Courier,
        ActorKind::Replica,
        ActorKind::NetworkPeriod,
    ] {
        let r = n.inject_panic(actor).await;
        assert!(matches!(r, Err(Error::Restarting(_))), "{actor:?}: {r:?}");
    }
    timeout(WAIT, writer).await.unwrap().unwrap();

    // Every actor answers again, with the state it had.
    let credential = n.replication_credential(&g).await.unwrap();
    let id = n.replicate(&credential).await.unwrap();
    assert_eq!(n.replicated_entries(&id).await.unwrap(), 0);
    assert_eq!(n.share_link().await.unwrap(), link);
    assert!(n.active_points().await.unwrap().iter().any(|(k, _)| *k == WatchKey::OwnLink));
    n.identity().await.unwrap();
    let history = n.history(&g, None, 1000).await.unwrap();
    let got: Vec<u32> = history.iter().map(|h| u32::from_be_bytes(h.payload[..4].try_into().unwrap())).collect();
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "every message stored once, in order");
    n.shutdown().await.unwrap();
}
