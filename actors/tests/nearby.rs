//! Proximity discovery without mDNS and without any server: nodes told of
//! one another with `Node::found_nearby` (as a proximity transport such as
//! BLE reports who is in range), in one direction only (as mDNS tells only
//! the node that asks), become contacts, talk, share a group, and reach a
//! replication node nearby (docs/PROTOCOL.md §11.4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_actors::Node;
use veil_crypto::time::{ManualClock, UnixTime};
use veil_testkit::node::{self, T0, befriend, peer, until};
use veil_transports::Policy;

/// `finder` learns that `found` is nearby (and `found` hears nothing).
async fn finds(finder: &Node, found: &Node) {
    let status = found.network_status().await.unwrap();
    finder.found_nearby(status.peer_id, status.listen_addrs).await.unwrap();
}

async fn texts(node: &Node, group: &veil_crypto::GroupId) -> Vec<Vec<u8>> {
    node.history(group, None, 1000).await.unwrap().into_iter().map(|h| h.payload).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_found_nearby_become_contacts_and_talk_without_a_server() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let (a, b) = (peer(&dirs[0], &clock, &[]).await, peer(&dirs[1], &clock, &[]).await);
    finds(&a, &b).await;
    let link = b.share_link().await.unwrap().uri;
    // The request, the acceptance (seen by A) and the messages all go
    // nearby: there is no rendezvous server.
    let group = befriend(&a, &b, &link).await;
    a.send(&group, b"hello nearby").await.unwrap();
    let mut events = b.events();
    until(&mut events, || async { texts(&b, &group).await == [b"hello nearby".to_vec()] }).await;
    b.send(&group, b"hello back").await.unwrap();
    let mut events = a.events();
    until(&mut events, || async { texts(&a, &group).await.len() == 2 }).await;

    // Where proximity is off, nothing nearby is taken.
    a.set_policy(Policy::Relayed).await.unwrap();
    let status = b.network_status().await.unwrap();
    assert!(a.found_nearby(status.peer_id, status.listen_addrs).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_never_online_together_converge_through_a_replication_node_nearby() {
    const COUNT: usize = 20;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let (a, b, r) =
        (peer(&dirs[0], &clock, &[]).await, peer(&dirs[1], &clock, &[]).await, peer(&dirs[2], &clock, &[]).await);
    finds(&b, &a).await;
    let (group, _) = node::group_between(&a, &b).await;
    let replication = r.replicate(&a.replication_credential(&group).await.unwrap()).await.unwrap();
    // The replication node finds A nearby: A's tokens name the group's
    // replication session, the node answers with its own, A reconciles.
    finds(&r, &a).await;

    // B goes away; A writes, and the replication node takes it all.
    b.shutdown().await.unwrap();
    drop(b);
    for i in 0..COUNT {
        a.send(&group, format!("left nearby {i}").as_bytes()).await.unwrap();
    }
    node::until_replicated(&r, &replication, &a, &group).await;

    // A goes away too; B comes back next to the replication node only.
    a.shutdown().await.unwrap();
    drop(a);
    let b = peer(&dirs[1], &clock, &[]).await;
    finds(&b, &r).await;
    let mut events = b.events();
    until(&mut events, || async { texts(&b, &group).await.len() == COUNT }).await;
    assert_eq!(texts(&b, &group).await.last().unwrap(), format!("left nearby {}", COUNT - 1).as_bytes());
}
