//! Hot swap: frames keep flowing while the transport under them is replaced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use veil_testkit::network::*;
use veil_transports::{NetworkEvent, Policy, Quic, Tcp, TransportId, TransportPlugin};

const N: usize = 300;
const WINDOW: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_quic_loses_nothing() {
    let tcp: Arc<dyn TransportPlugin> = Arc::new(Tcp::new());
    let quic: Arc<dyn TransportPlugin> = Arc::new(Quic::new());
    let mut a = spawn(Policy::Direct, vec![tcp.clone()]);
    let b = spawn(Policy::Direct, vec![tcp.clone(), quic.clone()]);
    let b_tcp = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    let b_quic = b.handle.listen(ma("/ip4/127.0.0.1/udp/0/quic-v1")).await.unwrap();
    a.handle.dial(b_tcp).await.unwrap();
    assert_eq!(wait_connected(&mut a.events, b.peer).await, TransportId::TCP);

    // b records every frame it receives (duplicates included).
    let a_peer = a.peer;
    let mut b_events = b.events;
    let receiver = tokio::spawn(async move {
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut distinct = HashSet::new();
        while distinct.len() < N {
            let f = wait_for(&mut b_events, |e| match e {
                NetworkEvent::FrameReceived { peer, frame } => Some((peer, frame)),
                _ => None,
            })
            .await;
            assert_eq!(f.0, a_peer);
            distinct.insert(f.1.clone());
            got.push(f.1);
        }
        (got, b_events)
    });

    // a sends with a window of WINDOW frames in flight and re-sends whatever
    // fails, like the outbox will. Once a third is acknowledged, TCP goes away
    // and QUIC comes in.
    let mut queue: VecDeque<usize> = (0..N).collect();
    let mut acked: HashMap<usize, usize> = HashMap::new();
    let mut failures = 0usize;
    let mut in_flight = FuturesUnordered::new();
    let mut swapped = false;
    while acked.len() < N {
        while in_flight.len() < WINDOW {
            let Some(i) = queue.pop_front() else { break };
            let h = a.handle.clone();
            let peer = b.peer;
            in_flight.push(async move { (i, h.send_frame(peer, frame("f", i)).await) });
        }
        let (i, result) = in_flight.next().await.unwrap();
        match result {
            Ok(()) => *acked.entry(i).or_default() += 1,
            Err(_) => {
                failures += 1;
                queue.push_back(i);
            }
        }
        if !swapped && acked.len() >= N / 3 {
            swapped = true;
            a.handle.detach(TransportId::TCP).await.unwrap();
            // The TCP connection is closed by the detach.
            wait_disconnected(&mut a.events, b.peer).await;
            assert!(!a.handle.connected_peers().await.unwrap().contains(&b.peer));
            assert_eq!(a.handle.transports().await.unwrap(), Vec::<TransportId>::new());
            // Frames in flight now fail (no transport can reach b); they are re-queued.
            while let Some((i, result)) = in_flight.next().await {
                match result {
                    Ok(()) => *acked.entry(i).or_default() += 1,
                    Err(_) => {
                        failures += 1;
                        queue.push_back(i);
                    }
                }
            }
            a.handle.attach(quic.clone()).await.unwrap();
            a.handle.dial(b_quic.clone()).await.unwrap();
            assert_eq!(wait_connected(&mut a.events, b.peer).await, TransportId::QUIC);
        }
    }
    assert!(swapped);
    assert!(acked.values().all(|&n| n == 1), "every frame acknowledged exactly once");
    assert_eq!(acked.len(), N);

    let (got, _) = tokio::time::timeout(PATIENCE, receiver).await.unwrap().unwrap();
    let distinct: HashSet<_> = got.iter().cloned().collect();
    assert_eq!(distinct, (0..N).map(|i| frame("f", i)).collect::<HashSet<_>>());
    // A duplicate can only come from a frame whose acknowledgement was lost.
    assert!(got.len() - N <= failures, "{} duplicates, {failures} failures", got.len() - N);
    eprintln!("hot swap: {failures} failed sends re-sent, {} duplicates delivered", got.len() - N);

    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_closes_listeners_and_reattach_works() {
    let tcp: Arc<dyn TransportPlugin> = Arc::new(Tcp::new());
    let a = spawn(Policy::Direct, vec![tcp.clone()]);
    let mut b = spawn(Policy::Direct, vec![tcp.clone()]);
    let addr = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    a.handle.dial(addr.clone()).await.unwrap();
    wait_connected(&mut b.events, a.peer).await;

    // Detaching on the listening side closes its listener and the connection
    // (the two events come in either order).
    b.handle.detach(TransportId::TCP).await.unwrap();
    let (mut expired, mut disconnected) = (None, false);
    wait_for(&mut b.events, |e| {
        match e {
            NetworkEvent::ListenAddrExpired { addr } => expired = Some(addr),
            NetworkEvent::PeerDisconnected { peer } if peer == a.peer => disconnected = true,
            _ => {}
        }
        (expired.is_some() && disconnected).then_some(())
    })
    .await;
    assert_eq!(expired, Some(addr.clone()));
    assert!(b.handle.listen_addrs().await.unwrap().is_empty());
    // Nothing listens there any more.
    assert!(a.handle.dial(addr).await.is_err());
    // Dialing or listening without a transport is a clear error.
    assert!(matches!(
        b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await,
        Err(veil_transports::Error::NoTransport { .. })
    ));
    // Attaching twice is refused; re-attaching after the detach works.
    b.handle.attach(tcp.clone()).await.unwrap();
    assert!(matches!(b.handle.attach(tcp.clone()).await, Err(veil_transports::Error::AlreadyAttached(_))));
    let addr = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    a.handle.dial(addr).await.unwrap();
    a.handle.send_frame(b.peer, b"again".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut b.events, 1).await[0].1, b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_keeps_connections_over_other_transports() {
    let tcp: Arc<dyn TransportPlugin> = Arc::new(Tcp::new());
    let quic: Arc<dyn TransportPlugin> = Arc::new(Quic::new());
    let mut a = spawn(Policy::Direct, vec![tcp.clone(), quic.clone()]);
    let mut b = spawn(Policy::Direct, vec![tcp.clone(), quic.clone()]);
    let b_tcp = b.handle.listen(ma("/ip4/127.0.0.1/tcp/0")).await.unwrap();
    let b_quic = b.handle.listen(ma("/ip4/127.0.0.1/udp/0/quic-v1")).await.unwrap();
    a.handle.dial(b_tcp).await.unwrap();
    assert_eq!(wait_connected(&mut a.events, b.peer).await, TransportId::TCP);
    a.handle.dial(b_quic).await.unwrap();

    a.handle.detach(TransportId::TCP).await.unwrap();
    assert_eq!(a.handle.transports().await.unwrap(), vec![TransportId::QUIC]);
    // Still connected over QUIC: frames keep flowing with no reconnect.
    assert_eq!(a.handle.connected_peers().await.unwrap(), vec![b.peer]);
    for i in 0..20 {
        a.handle.send_frame(b.peer, frame("q", i)).await.unwrap();
    }
    let got = recv_frames(&mut b.events, 20).await;
    assert_eq!(got.into_iter().map(|(_, f)| f).collect::<Vec<_>>(), (0..20).map(|i| frame("q", i)).collect::<Vec<_>>());
    // The peer was never reported disconnected.
    while let Ok(event) = a.events.try_recv() {
        assert!(!matches!(event, NetworkEvent::PeerDisconnected { .. }), "{event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_address_is_free_again_after_a_detach_and_after_a_restart() {
    // libp2p's memory transport keeps a port registered until its listener
    // is removed: detaching (or restarting the swarm) must remove it, so the
    // same fixed address can be listened on again (the BLE actor listens at
    // its radio's address after every radio fault).
    let memory: Arc<dyn TransportPlugin> = Arc::new(veil_transports::Memory::new());
    let a = spawn(Policy::Direct, vec![memory.clone()]);
    let mut b = spawn(Policy::Direct, vec![memory.clone()]);
    let fixed = ma(&format!("/memory/{}", 0x5eed_0000_u64 + u64::from(std::process::id())));
    b.handle.listen(fixed.clone()).await.unwrap();
    b.handle.detach(TransportId::MEMORY).await.unwrap();
    b.handle.attach(memory.clone()).await.unwrap();
    assert_eq!(b.handle.listen(fixed.clone()).await.unwrap(), fixed);
    // A restart (a policy change) reopens the listener at the same address
    // (once the new swarm reports it).
    b.handle.set_policy(Policy::Offline).await.unwrap();
    wait_for(&mut b.events, |e| matches!(e, NetworkEvent::Restarted { .. }).then_some(())).await;
    let reopened = wait_for(&mut b.events, |e| match e {
        NetworkEvent::Listening { addr } => Some(addr),
        _ => None,
    })
    .await;
    assert_eq!(reopened, fixed);
    assert_eq!(a.handle.dial(fixed).await.unwrap(), b.peer);
}
