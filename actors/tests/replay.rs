//! Replays (issue 20): a stranger's contact request, captured whole (its
//! first and third handshake messages, as its sender or anyone who saw them
//! in clear would hold them) and sent again at once, to another node, and
//! two rendezvous periods later. Every replay is refused and counted, the
//! request is recorded once, and the node's real conversation goes on.
//!
//! Frames and entries need no test of their own here: a frame names its
//! session by an HMAC over the sender's and receiver's peer ids, which the
//! transport's Noise handshake authenticates, so one replayed from another
//! peer or to another node names no session (the hostile-peer test sends
//! thousands of such frames), and an entry is stored under its hash, once
//! (PROTOCOL.md §7). Bytes captured on the wire are replayed in
//! transports/tests/replay.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tokio::time::timeout;
use veil_actors::{Node, NodeEvent};
use veil_crypto::{
    AccountKeys, Name, NetworkKey, OsEntropy, RendezvousSeed,
    handshake::Requester,
    rendezvous::{Topic, point_proof},
    time::Clock,
};
use veil_proto::{
    handshake::{ContactRequest, HandshakeFrame},
    link::parse_contact,
};
use veil_storage::ContactState;
use veil_testkit::node::{
    PERIOD, TwoContacts, WAIT, account, peer_on, schedule, tcp, two_contacts_on, until, wait_for,
};
use veil_transports::{
    Network, NetworkConfig, NetworkHandle, Policy, Tcp,
    libp2p::{Multiaddr, PeerId},
};

async fn tcp_addr(node: &Node) -> Multiaddr {
    let status = node.network_status().await.unwrap();
    status.listen_addrs.into_iter().find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/")).unwrap()
}

/// What a contact-protocol request was answered with: `None` for the empty
/// answer of a refusal, else the handshake frame.
async fn ask(mallory: &NetworkHandle, to: PeerId, bytes: &[u8]) -> Option<HandshakeFrame> {
    let answer = mallory.request(to, bytes.to_vec()).await.unwrap();
    (!answer.is_empty()).then(|| HandshakeFrame::decode(&answer).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_contact_requests_are_refused_and_the_request_is_recorded_once() {
    let TwoContacts { dirs: _dirs, clock, server: _server, addr, a, b, group } = two_contacts_on(tcp).await;
    let carol_dir = tempfile::tempdir().unwrap();
    let carol = peer_on(&carol_dir, &clock, &addr, tcp(), schedule()).await;
    carol.share_link().await.unwrap();
    let link = parse_contact(&b.share_link().await.unwrap().uri).unwrap();

    // Mallory: a network endpoint and an account of her own.
    let mut config = NetworkConfig::default();
    config.mdns = false;
    let (mallory, mut mallory_events) = Network::spawn(
        &NetworkKey::generate(&mut OsEntropy).unwrap(),
        Policy::Direct,
        vec![Arc::new(Tcp::new())],
        config,
    )
    .unwrap();
    tokio::spawn(async move { while mallory_events.recv().await.is_some() {} });
    let bob = mallory.dial(tcp_addr(&b).await).await.unwrap();
    let carol_peer = mallory.dial(tcp_addr(&carol).await).await.unwrap();
    let keys = AccountKeys::generate(&mut OsEntropy).unwrap();
    let request = ContactRequest {
        display_name: Some(Name::new("Mallory").unwrap()),
        seed: RendezvousSeed::generate(&mut OsEntropy).unwrap(),
    }
    .encode();

    // The genuine request, through the handshake as a node runs it.
    let mut bob_events = b.events();
    let (requester, msg1) = Requester::start(&keys, &link.account, &request).unwrap();
    let point = schedule().active_points(&Topic::contact(&link.account.signing), &link.seed, clock.now()).current;
    let start = HandshakeFrame::RequestStart { point_proof: point_proof(&point, &msg1), message: msg1 }.encode();
    let Some(HandshakeFrame::Response(msg2)) = ask(&mallory, bob, &start).await else { panic!("Bob answers") };
    let (_, msg3) = requester.read_response(&msg2).unwrap();
    let finish = HandshakeFrame::RequestFinish(msg3).encode();
    assert_eq!(ask(&mallory, bob, &finish).await, Some(HandshakeFrame::Response(Vec::new())), "recorded");
    let from = wait_for(&mut bob_events, |e| match e {
        NodeEvent::ContactRequestReceived { account, .. } => Some(account),
        _ => None,
    })
    .await;
    assert_eq!(from, keys.public());
    let (bob_refused, carol_refused) = (b.refusals().contact_requests, carol.refusals().contact_requests);

    // Replayed at once: message 1 draws a fresh message 2 (a new ephemeral
    // key, nothing else kept), so the captured message 3 finishes nothing.
    let Some(HandshakeFrame::Response(fresh)) = ask(&mallory, bob, &start).await else { panic!("answered") };
    assert_ne!(fresh, msg2, "every answer is a new handshake");
    assert_eq!(ask(&mallory, bob, &finish).await, None, "a replayed message 3 is refused");
    // Message 3 alone, with no handshake of this peer in progress.
    assert_eq!(ask(&mallory, bob, &finish).await, None);
    // To another node: the proof names none of Carol's points.
    assert_eq!(ask(&mallory, carol_peer, &start).await, None, "Carol refuses Bob's request");

    // Two periods later, once Bob answers at the new period's points, the
    // proof names a point he no longer answers at.
    // Bob's peer id rotates with the period: Mallory finds him again.
    let old_peer = b.network_status().await.unwrap().peer_id;
    clock.advance(2 * PERIOD);
    let me = account(&b).await;
    let now_point = schedule().active_points(&Topic::contact(&me.signing), &link.seed, clock.now()).current;
    until(&mut b.events(), || async {
        let rotated = b.network_status().await.is_ok_and(|s| s.peer_id != old_peer);
        rotated && b.active_points().await.unwrap().iter().any(|(_, points)| points.current == now_point)
    })
    .await;
    let bob = mallory.dial(tcp_addr(&b).await).await.unwrap();
    assert_eq!(ask(&mallory, bob, &start).await, None, "an old period's request is refused");

    let refused = (b.refusals().contact_requests - bob_refused, carol.refusals().contact_requests - carol_refused);
    assert_eq!(refused, (3, 1), "every replay counted where it was refused");
    // Recorded once: one request from Mallory, no second event.
    let contacts = b.contacts().await.unwrap();
    let mallorys: Vec<_> = contacts.iter().filter(|c| c.account == keys.public()).collect();
    assert_eq!(mallorys.len(), 1);
    assert_eq!(mallorys[0].state, ContactState::IncomingReceived);
    assert!(carol.contacts().await.unwrap().is_empty(), "Carol recorded nothing");
    while let Ok(event) = bob_events.try_recv() {
        assert!(!matches!(event, NodeEvent::ContactRequestReceived { .. }), "a second request event: {event:?}");
    }

    // Bob's real contact is undisturbed: Alice's next message reaches him.
    let mut events = b.events();
    let hash = a.send(&group, b"after the replays").await.unwrap();
    timeout(WAIT, async {
        loop {
            if let Ok(NodeEvent::MessageReceived { hash: h, .. }) = events.recv().await
                && h == hash
            {
                break;
            }
        }
    })
    .await
    .expect("Alice's message reached Bob");
}
