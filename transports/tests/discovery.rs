//! The contact protocol (`request`/`respond`) and rendezvous points
//! (`announce`/`withdraw`/`lookup`) through rendezvous servers and the DHT.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use veil_testkit::network::*;
use veil_transports::policy::is_circuit;
use veil_transports::{Error, Memory, NetworkConfig, NetworkEvent, NetworkHandle, Policy, Tcp, TransportPlugin};

const TTL: Duration = Duration::from_secs(120);

fn memory() -> Vec<Arc<dyn TransportPlugin>> {
    vec![Arc::new(Memory::new())]
}

fn tcp() -> Vec<Arc<dyn TransportPlugin>> {
    vec![Arc::new(Tcp::new())]
}

fn hex(point: &[u8; 32]) -> String {
    point.iter().map(|b| format!("{b:02x}")).collect()
}

/// Answers every contact request with `re:` and the request, in the background.
fn answer_requests(handle: &NetworkHandle, mut events: mpsc::Receiver<NetworkEvent>) {
    let handle = handle.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetworkEvent::RequestReceived { id, request, .. } = event {
                let mut answer = b"re:".to_vec();
                answer.extend(request);
                handle.respond(id, answer).await.unwrap();
            }
        }
    });
}

async fn next_request(
    events: &mut mpsc::Receiver<NetworkEvent>,
) -> (PeerId, veil_transports::InboundRequestId, Vec<u8>) {
    wait_for(events, |e| match e {
        NetworkEvent::RequestReceived { peer, id, request } => Some((peer, id, request)),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_respond() {
    let mut cfg = config();
    cfg.request_timeout = Duration::from_millis(500);
    cfg.max_frame_size = 1024;
    let a = spawn_with(Policy::Direct, memory(), cfg.clone());
    let mut b = spawn_with(Policy::Direct, memory(), cfg);
    let b_addr = b.handle.listen(ma("/memory/0")).await.unwrap();
    a.handle.dial(b_addr.clone()).await.unwrap();

    // A round trip.
    let (answer, (peer, id, request)) = tokio::join!(a.handle.request(b.peer, b"hello".to_vec()), async {
        let got = next_request(&mut b.events).await;
        b.handle.respond(got.1, b"welcome".to_vec()).await.unwrap();
        got
    });
    assert_eq!(answer.unwrap(), b"welcome");
    assert_eq!((peer, request), (a.peer, b"hello".to_vec()));
    // An id answers once.
    assert!(matches!(b.handle.respond(id, Vec::new()).await, Err(Error::NoSuchRequest)));

    // An empty response is a response.
    let (answer, ()) = tokio::join!(a.handle.request(b.peer, b"knock".to_vec()), async {
        let (_, id, _) = next_request(&mut b.events).await;
        b.handle.respond(id, Vec::new()).await.unwrap();
    });
    assert_eq!(answer.unwrap(), Vec::<u8>::new());

    // Never answered: the requester times out.
    let (answer, (_, late, _)) =
        tokio::join!(a.handle.request(b.peer, b"anyone?".to_vec()), next_request(&mut b.events));
    assert!(matches!(answer, Err(Error::Timeout)), "{answer:?}");
    // A late answer goes nowhere: refused if b already noticed the requester
    // left (which races with the requester's timeout), never delivered.
    let late_answer = b.handle.respond(late, b"too late".to_vec()).await;
    assert!(matches!(late_answer, Ok(()) | Err(Error::RequestFailed(_) | Error::NoSuchRequest)), "{late_answer:?}");
    let (answer, ()) = tokio::join!(a.handle.request(b.peer, b"again".to_vec()), async {
        let (_, id, _) = next_request(&mut b.events).await;
        b.handle.respond(id, b"fresh".to_vec()).await.unwrap();
    });
    assert_eq!(answer.unwrap(), b"fresh");

    // Oversize: refused locally, and by the receiver's codec before allocation.
    assert!(matches!(
        a.handle.request(b.peer, vec![0; 1025]).await,
        Err(Error::FrameTooLarge { len: 1025, max: 1024 })
    ));
    assert!(matches!(b.handle.respond(late, vec![0; 1025]).await, Err(Error::FrameTooLarge { .. })));
    let mut big = config();
    big.max_frame_size = 4096;
    let c = spawn_with(Policy::Direct, memory(), big);
    c.handle.dial(b_addr).await.unwrap();
    let refused = c.handle.request(b.peer, vec![1; 2000]).await;
    assert!(matches!(refused, Err(Error::RequestFailed(_))), "{refused:?}");
    // b saw nothing of it and still answers.
    let (answer, ()) = tokio::join!(c.handle.request(b.peer, b"small".to_vec()), async {
        let (peer, id, request) = next_request(&mut b.events).await;
        assert_eq!((peer, request), (c.peer, b"small".to_vec()));
        b.handle.respond(id, b"ok".to_vec()).await.unwrap();
    });
    assert_eq!(answer.unwrap(), b"ok");
}

/// A rendezvous server and two clients over loopback TCP.
struct Trio {
    server: RunningNetwork,
    a: RunningNetwork,
    b: RunningNetwork,
}

async fn trio(transports: fn() -> Vec<Arc<dyn TransportPlugin>>, listen: &str, client: NetworkConfig) -> Trio {
    trio_served(transports, listen, config(), client).await
}

/// [`trio`] with the server's own settings.
async fn trio_served(
    transports: fn() -> Vec<Arc<dyn TransportPlugin>>,
    listen: &str,
    mut s_cfg: NetworkConfig,
    client: NetworkConfig,
) -> Trio {
    s_cfg.rendezvous_server = true;
    let server = spawn_with(Policy::Direct, transports(), s_cfg);
    let s_addr = server.handle.listen(ma(listen)).await.unwrap().with_p2p(server.peer).unwrap();
    let mut cfg = client;
    cfg.rendezvous_servers = vec![s_addr];
    let a = spawn_with(Policy::Direct, transports(), cfg.clone());
    let b = spawn_with(Policy::Direct, transports(), cfg);
    Trio { server, a, b }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_lookup_request_withdraw() {
    let Trio { mut server, a, b } = trio(tcp, "/ip4/127.0.0.1/tcp/0", config()).await;
    let point = [0x5a; 32];
    let a_peer = a.peer;
    answer_requests(&a.handle, a.events);

    // Announced before a listens: made once it does.
    let (announced, listening) = tokio::join!(a.handle.announce(point, TTL), async {
        tokio::task::yield_now().await;
        a.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await
    });
    listening.unwrap();
    announced.unwrap();
    // The server sees exactly the point in hex as the namespace.
    let (peer, namespace) = wait_for(&mut server.events, |e| match e {
        NetworkEvent::RendezvousRegistered { peer, namespace } => Some((peer, namespace)),
        _ => None,
    })
    .await;
    assert_eq!((peer, namespace.as_str()), (a_peer, hex(&point).as_str()));

    // b finds a, with a dialable address, and reaches it by id.
    let found = b.handle.lookup(point).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, a_peer);
    assert!(!found[0].1.is_empty());
    assert!(!b.handle.connected_peers().await.unwrap().contains(&a_peer));
    assert_eq!(b.handle.request(a_peer, b"hi".to_vec()).await.unwrap(), b"re:hi");
    b.handle.dial_peer(a_peer).await.unwrap();
    // A point nobody announced is empty; a node never finds itself.
    assert!(b.handle.lookup([0x11; 32]).await.unwrap().is_empty());
    assert!(a.handle.lookup(point).await.unwrap().is_empty());

    // Withdrawn (once the server has processed it), a is no longer found.
    a.handle.withdraw(point).await.unwrap();
    let (peer, namespace) = wait_for(&mut server.events, |e| match e {
        NetworkEvent::RendezvousUnregistered { peer, namespace } => Some((peer, namespace)),
        _ => None,
    })
    .await;
    assert_eq!((peer, namespace), (a_peer, hex(&point)));
    assert!(b.handle.lookup(point).await.unwrap().is_empty());

    // Out-of-range lifetimes are refused before anything is sent.
    assert!(matches!(a.handle.announce(point, Duration::from_secs(5)).await, Err(Error::Config(_))));
}

/// A node in more conversations than libp2p's default of 32 registrations
/// per peer is met at every one of its points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_met_at_each_of_a_hundred_points() {
    let Trio { server: _server, a, b } = trio(tcp, "/ip4/127.0.0.1/tcp/0", config()).await;
    a.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    let points: Vec<[u8; 32]> = (0..100u8).map(|i| [i; 32]).collect();
    for point in &points {
        a.handle.announce(*point, TTL).await.unwrap();
    }
    for point in &points {
        let found = b.handle.lookup(*point).await.unwrap();
        assert_eq!(found.iter().map(|(peer, _)| *peer).collect::<Vec<_>>(), vec![a.peer], "at {}", hex(point));
    }
}

/// A server keeps no more registrations of one peer than it is set to,
/// and still takes other peers' registrations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_holds_each_peer_to_its_registration_limit() {
    let mut server = config();
    server.rendezvous_registrations_per_peer = 8;
    let Trio { server: _server, a, b } = trio_served(tcp, "/ip4/127.0.0.1/tcp/0", server, config()).await;
    for node in [&a, &b] {
        node.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    }
    for i in 0..8u8 {
        a.handle.announce([i; 32], TTL).await.unwrap();
    }
    let refused = a.handle.announce([8; 32], TTL).await;
    assert!(refused.is_err(), "a ninth registration was kept: {refused:?}");
    b.handle.announce([8; 32], TTL).await.unwrap();
    assert!(b.handle.lookup([7; 32]).await.unwrap().iter().any(|(peer, _)| *peer == a.peer));
    assert!(a.handle.lookup([8; 32]).await.unwrap().iter().any(|(peer, _)| *peer == b.peer));
}

/// What was decided under one peer id is never registered under the next:
/// after a rotation, `announce_as`/`withdraw_as` for the old id are refused
/// and the server only ever sees the new id, at the point announced for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_for_an_old_peer_id_are_refused_after_a_rotation() {
    let Trio { mut server, a, .. } = trio(tcp, "/ip4/127.0.0.1/tcp/0", config()).await;
    let old = a.peer;
    a.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    let new = a.handle.rotate(&key()).await.unwrap();
    assert_ne!(old, new);
    let (stale, fresh) = ([0x21; 32], [0x22; 32]);
    assert!(matches!(a.handle.announce_as(stale, TTL, old).await, Err(Error::Restarted)));
    assert!(matches!(a.handle.withdraw_as(stale, old).await, Err(Error::Restarted)));
    a.handle.announce_as(fresh, TTL, new).await.unwrap();
    // The first registration the server sees is the new id's, at the fresh point.
    let (peer, namespace) = wait_for(&mut server.events, |e| match e {
        NetworkEvent::RendezvousRegistered { peer, namespace } => Some((peer, namespace)),
        _ => None,
    })
    .await;
    assert_eq!((peer, namespace), (new, hex(&fresh)));
    a.handle.withdraw_as(fresh, new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_needs_a_source_and_a_policy() {
    // Nothing configured: announcing and looking up fail clearly.
    let a = spawn(Policy::Direct, memory());
    assert!(matches!(a.handle.announce([1; 32], TTL).await, Err(Error::Rendezvous(_))));
    assert!(matches!(a.handle.lookup([1; 32]).await, Err(Error::Rendezvous(_))));
    // Offline: no rendezvous or DHT at all, even when servers are configured.
    let server = spawn(Policy::Direct, memory());
    let addr = server.handle.listen(ma("/memory/0")).await.unwrap().with_p2p(server.peer).unwrap();
    let mut cfg = config();
    cfg.rendezvous_servers = vec![addr.clone()];
    let offline = spawn_with(Policy::Offline, memory(), cfg);
    assert!(matches!(offline.handle.announce([1; 32], TTL).await, Err(Error::NotUnderPolicy { .. })));
    assert!(matches!(offline.handle.lookup([1; 32]).await, Err(Error::NotUnderPolicy { .. })));
    offline.handle.withdraw([1; 32]).await.unwrap();
    // Server addresses must name the server.
    assert!(matches!(a.handle.set_rendezvous_servers(vec![ma("/memory/5")]).await, Err(Error::Config(_))));
    // A server that does not serve rendezvous: the lookup fails, it is not empty.
    a.handle.set_rendezvous_servers(vec![addr]).await.unwrap();
    assert!(matches!(a.handle.lookup([1; 32]).await, Err(Error::Rendezvous(_))));
    // An unknown peer cannot be dialed by id.
    assert!(matches!(a.handle.dial_peer(peer_of_new_key()).await, Err(Error::Dial(_))));
}

fn peer_of_new_key() -> PeerId {
    veil_transports::peer_id_of(&key()).unwrap()
}

/// A relayed node registers only its relay circuit address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_announcements_carry_only_circuits() {
    // The relay also serves rendezvous.
    let mut r_cfg = config();
    r_cfg.relay_server = true;
    r_cfg.rendezvous_server = true;
    let relay = spawn_with(Policy::Direct, memory(), r_cfg);
    let r_addr = relay.handle.listen(ma("/memory/0")).await.unwrap();
    relay.handle.add_external_address(r_addr.clone()).await.unwrap();
    let r_full = r_addr.with_p2p(relay.peer).unwrap();

    let mut x_cfg = config();
    x_cfg.relays = vec![r_full.clone()];
    x_cfg.rendezvous_servers = vec![r_full.clone()];
    let x = spawn_with(Policy::Relayed, memory(), x_cfg);
    // Announced before the circuit exists: nothing may be registered until it
    // does, then the announcement goes through.
    let circuit = r_full.clone().with(libp2p::multiaddr::Protocol::P2pCircuit);
    let (announced, listening) = tokio::join!(x.handle.announce([7; 32], TTL), async {
        tokio::task::yield_now().await;
        x.handle.listen(circuit).await
    });
    listening.unwrap();
    announced.unwrap();

    let mut c_cfg = config();
    c_cfg.rendezvous_servers = vec![r_full];
    let c = spawn_with(Policy::Direct, memory(), c_cfg);
    let found = c.handle.lookup([7; 32]).await.unwrap();
    assert_eq!(found.len(), 1);
    let (peer, addrs) = &found[0];
    assert_eq!(*peer, x.peer);
    assert!(!addrs.is_empty() && addrs.iter().all(is_circuit), "x registered {addrs:?}");
    drain(x.events);
    // And the contact reaches x through the circuit, by id.
    c.handle.send_frame(x.peer, b"via the relay".to_vec()).await.unwrap();
}

/// Announcing and looking up through the DHT only (no rendezvous server):
/// a and b join through a DHT node s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_and_lookup_in_the_dht() {
    let mut s_cfg = config();
    s_cfg.kad = true;
    let s = spawn_with(Policy::Direct, memory(), s_cfg);
    let s_addr = s.handle.listen(ma("/memory/0")).await.unwrap();
    // A confirmed address makes s a DHT server.
    s.handle.add_external_address(s_addr.clone()).await.unwrap();
    let mut cfg = config();
    cfg.bootstrap = vec![s_addr.with_p2p(s.peer).unwrap()];
    let a = spawn_with(Policy::Direct, memory(), cfg.clone());
    a.handle.listen(ma("/memory/0")).await.unwrap();
    let b = spawn_with(Policy::Direct, memory(), cfg);
    drain(s.events);
    let a_peer = a.peer;
    answer_requests(&a.handle, a.events);

    let point = [0x42; 32];
    a.handle.announce(point, TTL).await.unwrap();
    // An announcement is done once the provider records are sent; the DHT
    // node stores them when it reads them (no answer comes back), so a
    // lookup may reach it first: look again until it holds them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let found = loop {
        let found = b.handle.lookup(point).await.unwrap();
        if !found.is_empty() {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "the DHT never held a's record");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(found.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![a_peer]);
    assert!(!found[0].1.is_empty());
    assert_eq!(b.handle.request(a_peer, b"dht".to_vec()).await.unwrap(), b"re:dht");

    a.handle.withdraw(point).await.unwrap();
    let _: Vec<(PeerId, Vec<Multiaddr>)> = b.handle.lookup([0x43; 32]).await.unwrap();
}
