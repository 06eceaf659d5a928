//! The storage outbox at work: messages between two contacts keep arriving,
//! each exactly once and in order, while TCP is detached in the middle of
//! the stream (QUIC stays), while the sender rotates its network key, and
//! while the receiver is offline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{T0, befriend, both_transports, peer_on, rendezvous_server, schedule, until};
use veil_actors::Node;
use veil_crypto::{
    GroupId,
    time::{ManualClock, UnixTime},
};
use veil_transports::TransportId;

/// The texts `node` holds from `prefix`, in log order.
async fn texts(node: &Node, group: &GroupId, prefix: &str) -> Vec<String> {
    let history = node.history(group, None, 10_000).await.unwrap();
    history.into_iter().map(|h| String::from_utf8(h.payload).unwrap()).filter(|t| t.starts_with(prefix)).collect()
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_a_transport_swap_a_key_rotation_and_an_offline_peer() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let a = peer_on(&dirs[1], &clock, &addr, both_transports(), schedule()).await;
    let b = peer_on(&dirs[2], &clock, &addr, both_transports(), schedule()).await;
    let link = b.share_link().await.unwrap().uri;
    let group = befriend(&a, &b, &link).await;
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
