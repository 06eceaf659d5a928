//! The `BleTransport` actor on an in-process air (`veil_ble::ether`: radios
//! that see each other's advertisements, connect over the memory transport
//! claiming to be `ble`, and can be powered off): two `offline` nodes with
//! no other way to reach each other (no mDNS, no server, nothing listening
//! on IP) find each other by their tokens, become contacts and talk; one
//! radio is powered off mid-conversation and on again, the other's actor
//! panics and is restarted by its supervisor, and nothing is lost.
//! (The same on real BlueZ: veil-ble's VM test.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use veil_actors::{ActorKind, Node, ble::BleTiming};
use veil_ble::{
    ether::{Ether, EtherAir},
    radio::RadioState,
};
use veil_crypto::time::{ManualClock, UnixTime};
use veil_testkit::node::{T0, befriend, peer_builder, schedule, texts, until};
use veil_transports::{Policy, Tcp};

const EACH_WAY: usize = 50;

/// Short cycles: a slower machine only takes more of them.
fn timing() -> BleTiming {
    BleTiming {
        scan_for: Duration::from_millis(100),
        rest_for: Duration::from_millis(150),
        resalt_every: Duration::from_secs(2),
        retry_after: Duration::from_millis(300),
    }
}

/// An `offline` node whose only way out is `air`: TCP is there but
/// listens nowhere.
async fn node_on(dir: &tempfile::TempDir, clock: &ManualClock, air: &EtherAir) -> Node {
    peer_builder(dir, clock, &[], Vec::new(), schedule())
        .policy(Policy::Offline)
        .transport(Arc::new(Tcp::new()))
        .ble(Arc::new(air.clone()), timing())
        .spawn()
        .await
        .unwrap()
}

/// Every message of `from` in `seen`, in order, once each.
fn all_of(seen: &[String], from: &str) -> bool {
    let mine: Vec<&String> = seen.iter().filter(|t| t.starts_with(from)).collect();
    mine.len() == EACH_WAY && mine.iter().enumerate().all(|(i, t)| **t == format!("{from} {i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_nodes_meet_over_ble_alone_talk_and_lose_nothing_across_a_power_cycle() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let ether = Ether::default();
    let (air_a, air_b) = (ether.radio("hci-a"), ether.radio("hci-b"));
    let (a, b) = (node_on(&dirs[0], &clock, &air_a).await, node_on(&dirs[1], &clock, &air_b).await);
    let mut events = a.events();

    // Off until enabled: nothing on the air.
    let status = a.ble_status().await.unwrap();
    assert!(!status.enabled && !status.attached && !status.advertising, "{status:?}");
    until(&mut events, || async { a.ble_status().await.unwrap().describe() == "BLE ready on hci-a; not attached" })
        .await;
    for node in [&a, &b] {
        node.set_ble(true).await.unwrap();
    }

    // Found by its token alone: the request, the acceptance and every
    // message go over the air.
    let link = b.share_link().await.unwrap().uri;
    let group = befriend(&a, &b, &link).await;
    let status = a.ble_status().await.unwrap();
    assert!(status.attached && status.advertising, "{status:?}");
    assert_eq!(status.in_range, vec![b.network_status().await.unwrap().peer_id]);
    assert_eq!(status.describe(), "BLE ready on hci-a; advertising, 1 peer in range");
    assert!(a.network_status().await.unwrap().connections.iter().all(|c| c.transport.as_str() == "ble"), "BLE only");

    for i in 0..EACH_WAY {
        a.send(&group, format!("a {i}").as_bytes()).await.unwrap();
        b.send(&group, format!("b {i}").as_bytes()).await.unwrap();
        if i == 10 {
            // The actor panics: its supervisor restarts it, back on the air.
            let fault = b.inject_panic(ActorKind::BleTransport).await;
            assert!(matches!(fault, Err(veil_actors::Error::Restarting(_))), "{fault:?}");
            until(&mut events, || async { b.ble_status().await.is_ok_and(|s| s.advertising) }).await;
        }
        if i == 20 {
            // A's radio goes off: its token, scan and channels go with it;
            // both go on writing.
            air_a.set_powered(false);
            until(&mut events, || async {
                let s = a.ble_status().await.unwrap();
                !s.attached && !s.advertising && s.in_range.is_empty()
            })
            .await;
            assert!(matches!(a.ble_status().await.unwrap().radio, Some(RadioState::Unavailable(_))));
        }
        if i == 30 {
            air_a.set_powered(true);
        }
    }
    let mut b_events = b.events();
    until(&mut b_events, || async { all_of(&texts(&b, &group).await, "a") }).await;
    until(&mut events, || async { all_of(&texts(&a, &group).await, "b") }).await;
    assert_eq!(texts(&a, &group).await.len(), 2 * EACH_WAY, "none twice");
    assert_eq!(texts(&b, &group).await.len(), 2 * EACH_WAY, "none twice");

    // Disabled: off the air, the plug-in detached.
    a.set_ble(false).await.unwrap();
    until(&mut events, || async {
        let s = a.ble_status().await.unwrap();
        !s.attached && !s.advertising
    })
    .await;
    assert!(a.network_status().await.unwrap().connections.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ble_stays_off_where_the_policy_forbids_proximity_and_without_a_radio() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 5));
    let air = Ether::default().radio("hci0");
    let a = node_on(&dirs[0], &clock, &air).await;
    let mut events = a.events();
    assert!(!over_ble(&a).await, "the audit names BLE only once enabled");
    a.set_ble(true).await.unwrap();
    until(&mut events, || async { a.ble_status().await.unwrap().advertising }).await;
    assert!(over_ble(&a).await);
    // Enabled with the radio off still counts: it comes back on its own.
    air.set_powered(false);
    until(&mut events, || async { !a.ble_status().await.unwrap().attached }).await;
    assert!(over_ble(&a).await);
    air.set_powered(true);
    until(&mut events, || async { a.ble_status().await.unwrap().advertising }).await;
    a.set_policy(Policy::Relayed).await.unwrap();
    until(&mut events, || async {
        let s = a.ble_status().await.unwrap();
        !s.attached && !s.advertising
    })
    .await;
    assert!(!a.network_status().await.unwrap().transports.iter().any(|t| t.as_str() == "ble"));
    a.set_policy(Policy::Offline).await.unwrap();
    until(&mut events, || async { a.ble_status().await.unwrap().advertising }).await;

    let plain = peer_builder(&dirs[1], &clock, &[], Vec::new(), schedule()).spawn().await.unwrap();
    assert!(plain.set_ble(true).await.is_err() && plain.ble_status().await.is_err());
}

/// Whether the audit says what a BLE neighbour learns.
async fn over_ble(node: &Node) -> bool {
    let audit = node.audit().await.unwrap();
    let row = audit.exposures.iter().find(|e| e.observer == veil_actors::audit::Observer::LanNeighbour).unwrap();
    row.applies && row.learns.iter().any(|l| l.starts_with("over BLE: that a veil device is in radio range"))
}
