//! A hostile peer (issue 20): a bare veil network endpoint, not a node,
//! connects to Bob and sends him thousands of junk messages over the
//! protocols a node serves to anyone: frames on `/veil/frame/2` (random
//! bytes, group frames of every kind under made-up session tags, forged
//! entries, truncated encodings) and contact requests on
//! `/veil/contact/1`. Meanwhile Alice, his contact, goes on writing to him.
//! Bob stays up, stores nothing of the hostile peer's, gains no contact,
//! counts what he refused (`Node::refusals`, shown by `veil status`), and
//! gets every one of Alice's messages.
//!
//! Timing is not asserted here (tests never depend on the machine's speed):
//! the latencies with and without the flood are printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use futures::StreamExt;
use tokio::time::timeout;
use veil_actors::{Node, NodeEvent};
use veil_crypto::{
    GroupId, NetworkKey, OsEntropy,
    envelope::{EntryHash, SealedEntry},
};
use veil_proto::sync::{GroupBody, GroupFrame, NEARBY_PAD};
use veil_testkit::node::{TwoContacts, WAIT, tcp, two_contacts_on};
use veil_transports::{Network, NetworkConfig, Policy, Tcp};

/// Junk messages the hostile peer sends (frames and contact requests).
const JUNK: u64 = 10_000;
/// Of which contact requests: one in this many.
const REQUEST_EVERY: u64 = 10;
/// Junk messages in flight at once.
const IN_FLIGHT: usize = 32;
/// Alice's messages to Bob, before and during the flood.
const MESSAGES: usize = 30;

/// A deterministic generator of junk (xorshift64*).
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Up to `max` random bytes.
    fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.next() as usize % max;
        self.bytes(len)
    }

    fn array(&mut self) -> [u8; 32] {
        self.bytes(32).try_into().unwrap()
    }

    fn hashes(&mut self, n: usize) -> Vec<EntryHash> {
        (0..n).map(|_| EntryHash(self.array())).collect()
    }

    fn entry(&mut self) -> SealedEntry {
        let mut position = self.bytes(16);
        position.extend(self.some_bytes(80));
        let (header, body) = (self.some_bytes(200), self.bytes(64));
        SealedEntry { position, header, body, tag: self.array() }
    }

    /// The `i`th junk frame: each kind of group frame under a made-up
    /// session tag, raw bytes, or an encoding cut short.
    fn frame(&mut self, i: u64) -> Vec<u8> {
        let n = 1 + self.next() as usize % 20;
        let body = match i % 7 {
            0 => return self.some_bytes(600),
            1 => GroupBody::Entries((0..n).map(|_| self.entry()).collect()),
            2 => GroupBody::Ack(self.hashes(n)),
            3 => GroupBody::Heads { metadata: self.hashes(1), messages: self.hashes(n) },
            4 => GroupBody::Want(self.hashes(n)),
            5 => GroupBody::Nearby((0..NEARBY_PAD).map(|_| self.array()).collect()),
            _ => GroupBody::Entries(vec![self.entry()]),
        };
        let mut encoded = GroupFrame { session_tag: self.array(), body }.encode();
        if i.is_multiple_of(3) {
            encoded.truncate(self.next() as usize % encoded.len().max(1));
        }
        encoded
    }
}

/// Alice sends `MESSAGES` to Bob one at a time; returns how long each took
/// to reach him, in ms, sorted.
async fn converse(a: &Node, b: &Node, group: &GroupId, tag: &str) -> Vec<f64> {
    let mut events = b.events();
    let mut took = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let sent = Instant::now();
        let hash = a.send(group, format!("{tag} {i}").as_bytes()).await.unwrap();
        timeout(WAIT, async {
            loop {
                match events.recv().await.unwrap() {
                    NodeEvent::MessageReceived { hash: h, .. } if h == hash => break,
                    _ => continue,
                }
            }
        })
        .await
        .expect("Alice's message reached Bob");
        took.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    took.sort_by(f64::total_cmp);
    took
}

async fn groups_of(node: &Node) -> Vec<GroupId> {
    let mut groups = node.groups().await.unwrap();
    groups.sort();
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_flooding_junk_gets_nothing_stored_and_delivery_goes_on() {
    let TwoContacts { a, b, group, .. } = two_contacts_on(tcp).await;
    let quiet = converse(&a, &b, &group, "before").await;
    let (stored_before, contacts_before, groups_before) =
        (b.stored_entries(&group).await.unwrap(), b.contacts().await.unwrap().len(), groups_of(&b).await);

    // The hostile peer: a network endpoint of its own on loopback.
    let mut config = NetworkConfig::default();
    config.mdns = false;
    // Mallory's own limit lets her send frames over Bob's.
    config.max_frame_size = 1 << 20;
    let key = NetworkKey::generate(&mut OsEntropy).unwrap();
    let (mallory, mut mallory_events) =
        Network::spawn(&key, Policy::Direct, vec![Arc::new(Tcp::new())], config).unwrap();
    tokio::spawn(async move { while mallory_events.recv().await.is_some() {} });
    let status = b.network_status().await.unwrap();
    let bob_addr = status.listen_addrs.iter().find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/")).unwrap();
    let bob = mallory.dial(bob_addr.clone()).await.unwrap();

    let started = Instant::now();
    let flood = {
        let mallory = mallory.clone();
        tokio::spawn(async move {
            let mut junk = Junk(0x5eed_1234_abcd_0001);
            let messages: Vec<(u64, Vec<u8>)> = (0..JUNK).map(|i| (i, junk.frame(i))).collect();
            // Frames and requests the transport carried to Bob.
            let (frames, requests) = (AtomicUsize::new(0), AtomicUsize::new(0));
            futures::stream::iter(messages)
                .for_each_concurrent(IN_FLIGHT, |(i, bytes)| {
                    let (mallory, frames, requests) = (mallory.clone(), &frames, &requests);
                    async move {
                        // A failure here is fine (a reset stream); only
                        // what reached Bob is counted.
                        if i.is_multiple_of(REQUEST_EVERY) {
                            if mallory.request(bob, bytes).await.is_ok() {
                                requests.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if mallory.send_frame(bob, bytes).await.is_ok() {
                            frames.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .await;
            (frames.into_inner(), requests.into_inner())
        })
    };
    let flooded = converse(&a, &b, &group, "during").await;
    let (frames, requests) = flood.await.unwrap();
    let flood_took = started.elapsed();
    // Frames over Bob's limit: he reads the length prefix, closes the
    // stream and allocates nothing; none is acknowledged.
    for _ in 0..3 {
        assert!(mallory.send_frame(bob, vec![7u8; 512 * 1024]).await.is_err(), "an oversized frame was accepted");
    }

    // Bob is up, stored only Alice's messages, has no new contact or group.
    b.identity().await.unwrap();
    assert_eq!(b.stored_entries(&group).await.unwrap(), stored_before + MESSAGES);
    assert_eq!(b.contacts().await.unwrap().len(), contacts_before);
    assert_eq!(groups_of(&b).await, groups_before);
    // What Bob refused, as `veil status` shows it: every junk request (each
    // answered with nothing), the frames that were not group frames (the
    // rest named no session of his and were dropped unread), no entry (none
    // named a session of his).
    let refused = b.refusals();
    assert_eq!(refused.contact_requests, requests as u64, "{refused:?}");
    assert!(refused.frames > 0 && refused.frames <= frames as u64, "{refused:?}");
    assert_eq!(refused.entries, 0, "{refused:?}");
    eprintln!(
        "hostile: {JUNK} junk messages in {:.1} s ({frames} frames and {requests} requests reached Bob), Bob refused \
         {refused:?}; Alice to Bob p50 {:.2} ms alone, {:.2} ms during the flood (max {:.2} / {:.2})",
        flood_took.as_secs_f64(),
        quiet[quiet.len() / 2],
        flooded[flooded.len() / 2],
        quiet[quiet.len() - 1],
        flooded[flooded.len() - 1],
    );
    mallory.shutdown().await.unwrap();
}
