//! Linking a new device to an account that already holds a lot (issue 22):
//! the first device has `VEIL_BENCH_CONVERSATIONS` conversations (default
//! 100) holding `VEIL_BENCH_MESSAGES` messages between them (default
//! 10 000). Timed from the start of the join (the new device's network
//! starting, as `veil device join` does) until the new device, started on
//! the store it received, shows every conversation with its last message
//! (target: under 5 s). The user's part (comparing codes) is played at once.
//!
//! The bare limit, measured in the same run on the same store: copying it
//! for a device and making the copy a store (`Store::device_copy`, every
//! piece read, `ReceivedCopy`), with no network, no session and no node.
//!
//! Loopback TCP, the test fixtures' rendezvous node. Progress goes to
//! stderr; one JSON document is printed on stdout.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use serde_json::json;
use veil_actors::{Node, NodeEvent};
use veil_crypto::{
    GroupId, OsEntropy, SigningSecret,
    time::{ManualClock, UnixTime},
};
use veil_proto::device::PIECE_LEN;
use veil_storage::{ReceivedCopy, Store, StoreOptions, keystore::KeySource};
use veil_testkit::bench::{env_or, round1};
use veil_testkit::node::{T0, peer_on, rendezvous_server, schedule, tcp};

const TARGET_MS: f64 = 5000.0;
/// Sends in flight while the conversations are filled.
const WRITERS: usize = 64;
/// How long a step may take before the bench gives up.
const STEP: Duration = Duration::from_secs(300);

/// Whether `node` shows every conversation of `groups`, each with `last`
/// as its latest message.
async fn shows_all(node: &Node, groups: &[(GroupId, String)]) -> bool {
    let conversations = node.conversations(None).await.unwrap();
    if conversations.len() < groups.len() {
        return false;
    }
    for (group, last) in groups {
        match node.history_before(group, None, 1).await {
            Ok(page) if page.last().is_some_and(|m| m.payload == last.as_bytes()) => {}
            _ => return false,
        }
    }
    true
}

fn ms(d: Duration) -> f64 {
    round1(d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let conversations = env_or("VEIL_BENCH_CONVERSATIONS", 100);
    let messages = env_or("VEIL_BENCH_MESSAGES", 10_000);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(UnixTime(T0 + 20));
    let (server, addr) = rendezvous_server(&dirs[0]).await;
    let first = peer_on(&dirs[1], &clock, &addr, tcp(), schedule()).await;

    let filling = Instant::now();
    let mut groups = Vec::new();
    for i in 0..conversations {
        groups.push(first.create_group(Some(&format!("conversation {i}"))).await.unwrap());
    }
    let sends: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (first, groups) = (first.clone(), groups.clone());
            tokio::spawn(async move {
                for i in (w..messages).step_by(WRITERS) {
                    first.send(&groups[i % groups.len()], format!("message {i}").as_bytes()).await.unwrap();
                }
            })
        })
        .collect();
    for send in sends {
        send.await.unwrap();
    }
    let mut expected = Vec::new();
    for group in &groups {
        let last = first.history_before(group, None, 1).await.unwrap().pop().map(|m| m.payload).unwrap_or_default();
        expected.push((*group, String::from_utf8(last).unwrap()));
    }
    eprintln!(
        "device-join: {conversations} conversations, {messages} messages written in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    // The join, as `veil device join` runs it.
    let mut events = first.events();
    let (offer_id, offer) = first.link_device(Duration::from_secs(600)).await.unwrap();
    let new_home = &dirs[3];
    let start = Instant::now();
    let vehicle = peer_on(&dirs[2], &clock, &addr, tcp(), schedule()).await;
    let join = vehicle.join_device(&offer).await.unwrap();
    let handshake = start.elapsed();
    let code = loop {
        match tokio::time::timeout(STEP, events.recv()).await.expect("a code in time") {
            Ok(NodeEvent::DeviceLinkCode { offer, code }) if offer == offer_id => break code,
            _ => {}
        }
    };
    first.confirm_device(offer_id, code).await.unwrap();
    let store = join
        .complete(code, &new_home.path().join("veil.db"), &new_home.path().join("storage.key"), StoreOptions::default())
        .await
        .unwrap();
    let transferred = start.elapsed();
    let copy_bytes = std::fs::metadata(new_home.path().join("veil.db")).map(|m| m.len()).unwrap_or(0);
    store.close().await.unwrap();
    vehicle.shutdown().await.unwrap();
    let second = peer_on(new_home, &clock, &addr, tcp(), schedule()).await;
    let started = start.elapsed();
    let mut second_events = second.events();
    while !shows_all(&second, &expected).await {
        assert!(start.elapsed() < STEP, "the new device did not show every conversation in time");
        let _ = tokio::time::timeout(Duration::from_millis(20), second_events.recv()).await;
    }
    let shown = start.elapsed();
    eprintln!("device-join: every conversation shown after {:.0} ms", ms(shown));
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
    server.shutdown().await.unwrap();

    // The bare limit: the same store copied and made a store, locally.
    let key = KeySource::KeyFile(dirs[1].path().join("storage.key"));
    let store = Store::open(&dirs[1].path().join("veil.db"), &key, StoreOptions::default()).await.unwrap();
    let access = store.key_access().unwrap();
    let bare_dir = tempfile::tempdir().unwrap();
    let bare = Instant::now();
    let mut copy = store.device_copy(&access, bare_dir.path()).await.unwrap();
    let mut received =
        ReceivedCopy::begin(&bare_dir.path().join("veil.db"), &bare_dir.path().join("storage.key"), copy.total_len())
            .unwrap();
    loop {
        let piece = copy.next_piece(PIECE_LEN).unwrap();
        if piece.is_empty() {
            break;
        }
        received.push(&piece).unwrap();
    }
    let device = SigningSecret::generate(&mut OsEntropy).unwrap();
    let made = received.finish(&device, StoreOptions::default()).await.unwrap();
    let bare_ms = ms(bare.elapsed());
    made.close().await.unwrap();
    store.close().await.unwrap();

    let shown_ms = ms(shown);
    println!(
        "{}",
        json!({
            "bench": "device_join",
            "conversations": conversations,
            "messages": messages,
            "copy_bytes": copy_bytes,
            "join_to_every_conversation_ms": shown_ms,
            "phases_ms": {
                "handshake": ms(handshake),
                "transfer_and_store": ms(transferred - handshake),
                "node_start": ms(started - transferred),
                "until_shown": ms(shown - started),
            },
            "bare_copy_and_store_ms": bare_ms,
            "target_ms": TARGET_MS,
            "met": shown_ms < TARGET_MS,
        })
    );
}
