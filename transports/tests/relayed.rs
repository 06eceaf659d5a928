//! A relayed node moving between relays and rotating its key: it is
//! reachable through the relay it uses now, never through its own address,
//! and the addresses its contact learned for it are all circuits; a relay
//! learned from a contact joins the relays it may listen through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use libp2p::Multiaddr;
use veil_testkit::network::*;
use veil_transports::{
    AddressSource, KnownRelay, Memory, NetworkEvent, Policy, RelayOrigin, Tcp, TransportPlugin,
    policy::{is_circuit, relay_hop},
};

/// A Direct relay server listening on `listen`; its dialable address.
async fn relay(plugins: Vec<Arc<dyn TransportPlugin>>, listen: &str) -> (RunningNetwork, Multiaddr) {
    let mut cfg = config();
    cfg.relay_server = true;
    let relay = spawn_with(Policy::Direct, plugins, cfg);
    // No explicit external address: serving as a relay declares the listen
    // address (a relay without one refuses every reservation).
    let addr = relay.handle.listen(ma(listen)).await.unwrap();
    let full = addr.with_p2p(relay.peer).unwrap();
    (relay, full)
}

fn through(addr: &Multiaddr) -> Option<libp2p::PeerId> {
    relay_hop(addr).as_ref().and_then(veil_transports::policy::peer_of)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_node_moves_between_relays_and_rotates_its_key() {
    let memory = || vec![Arc::new(Memory::new()) as Arc<dyn TransportPlugin>];
    let (r1, r1_addr) = relay(memory(), "/memory/0").await;
    let (r2, r2_addr) = relay(memory(), "/memory/0").await;
    drain(r1.events);
    drain(r2.events);

    let mut x_cfg = config();
    x_cfg.relays = vec![r1_addr.clone(), r2_addr.clone()];
    let mut x = spawn_with(Policy::Relayed, memory(), x_cfg);
    let configured = |addr: &Multiaddr| KnownRelay { addr: addr.clone(), origin: RelayOrigin::Configured };
    assert_eq!(x.handle.known_relays().await.unwrap(), vec![configured(&r1_addr), configured(&r2_addr)]);

    let on_r1 = x.handle.use_relay(r1_addr.clone()).await.unwrap();
    assert!(is_circuit(&on_r1) && through(&on_r1) == Some(r1.peer), "{on_r1}");
    // Asking again for the same relay answers at once with the same circuit.
    assert_eq!(x.handle.use_relay(r1_addr.clone()).await.unwrap(), on_r1);

    // Moving to r2 drops the circuit through r1.
    let on_r2 = x.handle.use_relay(r2_addr.clone()).await.unwrap();
    assert_eq!(through(&on_r2), Some(r2.peer), "{on_r2}");
    wait_for(&mut x.events, |e| match e {
        NetworkEvent::ListenAddrExpired { addr } if through(&addr) == Some(r1.peer) => Some(()),
        _ => None,
    })
    .await;
    assert!(x.handle.listen_addrs().await.unwrap().iter().all(|a| through(a) == Some(r2.peer)));

    // A contact reaches x through r2.
    let c = spawn(Policy::Direct, memory());
    let x_circuit = on_r2.clone().with_p2p(x.peer).unwrap_or(on_r2.clone());
    assert_eq!(c.handle.dial(x_circuit).await.unwrap(), x.peer);
    c.handle.send_frame(x.peer, b"one".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut x.events, 1).await[0], (c.peer, b"one".to_vec()));

    // A rotation: the circuit through r2 is reserved again under the new
    // peer id, and the first reservation succeeds (no "listener closed").
    let started = Instant::now();
    let new_peer = x.handle.rotate(&key()).await.unwrap();
    let reopened = wait_for(&mut x.events, |e| match e {
        NetworkEvent::Listening { addr } => Some(addr),
        _ => None,
    })
    .await;
    assert_eq!(through(&reopened), Some(r2.peer), "{reopened}");
    eprintln!("reservation after rotation took {:?}", started.elapsed());
    assert_eq!(x.handle.use_relay(r2_addr).await.unwrap(), reopened);

    let x_circuit = reopened.clone().with_p2p(new_peer).unwrap_or(reopened);
    assert_eq!(c.handle.dial(x_circuit).await.unwrap(), new_peer);
    c.handle.send_frame(new_peer, b"two".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut x.events, 1).await[0], (c.peer, b"two".to_vec()));

    // Everything the contact learned for x (old and new peer id) is a circuit.
    let learned = c.handle.learned_addresses().await.unwrap();
    let for_x: Vec<_> = learned.iter().filter(|l| l.peer == x.peer || l.peer == new_peer).collect();
    assert!(for_x.iter().any(|l| l.sources.contains(&AddressSource::Connection)), "{learned:?}");
    assert!(for_x.iter().all(|l| is_circuit(&l.addr)), "{for_x:?}");
}

/// The relay's first reservation after the relayed node rotated its key,
/// over TCP (where the old attempt saw "listener closed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_reservation_after_a_rotation_succeeds_over_tcp() {
    let tcp = || vec![Arc::new(Tcp::new()) as Arc<dyn TransportPlugin>];
    let (r, r_addr) = relay(tcp(), "/ip4/127.0.0.1/tcp/0").await;
    drain(r.events);
    let mut x_cfg = config();
    x_cfg.relays = vec![r_addr.clone()];
    let x = spawn_with(Policy::Relayed, tcp(), x_cfg);
    drain(x.events);
    x.handle.use_relay(r_addr.clone()).await.unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        x.handle.rotate(&key()).await.unwrap();
        let circuit = x.handle.use_relay(r_addr.clone()).await.unwrap();
        assert_eq!(through(&circuit), Some(r.peer), "{circuit}");
        eprintln!("reserved again in {:?}", started.elapsed());
    }
}

/// A relayed node that reached a contact through the contact's relay may
/// listen through that relay once it learned it from the contact, and not
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_relay_is_learned_and_may_then_be_listened_through() {
    let memory = || vec![Arc::new(Memory::new()) as Arc<dyn TransportPlugin>];
    let (r1, r1_addr) = relay(memory(), "/memory/0").await;
    let (r2, r2_addr) = relay(memory(), "/memory/0").await;
    drain(r1.events);
    drain(r2.events);
    let relayed_on = |addr: &Multiaddr| {
        let mut cfg = config();
        cfg.relays = vec![addr.clone()];
        spawn_with(Policy::Relayed, memory(), cfg)
    };
    let x = relayed_on(&r1_addr);
    let mut y = relayed_on(&r2_addr);
    drain(x.events);
    let y_circuit = y.handle.use_relay(r2_addr.clone()).await.unwrap().with_p2p(y.peer).unwrap();

    // Before: r2 is not a relay x may listen through.
    assert!(x.handle.use_relay(r2_addr.clone()).await.is_err());
    assert_eq!(x.handle.learn_relays_of(y.peer).await.unwrap(), Vec::<Multiaddr>::new());

    assert_eq!(x.handle.dial(y_circuit).await.unwrap(), y.peer);
    x.handle.send_frame(y.peer, b"hi".to_vec()).await.unwrap();
    assert_eq!(recv_frames(&mut y.events, 1).await[0], (x.peer, b"hi".to_vec()));

    // Learned once, then known as learned, and usable.
    assert_eq!(x.handle.learn_relays_of(y.peer).await.unwrap(), vec![r2_addr.clone()]);
    assert!(x.handle.learn_relays_of(y.peer).await.unwrap().is_empty());
    let known = x.handle.known_relays().await.unwrap();
    assert_eq!(
        known,
        vec![
            KnownRelay { addr: r1_addr.clone(), origin: RelayOrigin::Configured },
            KnownRelay { addr: r2_addr.clone(), origin: RelayOrigin::Learned },
        ]
    );
    let on_r2 = x.handle.use_relay(r2_addr.clone()).await.unwrap();
    assert_eq!(through(&on_r2), Some(r2.peer), "{on_r2}");

    // Replacing the configured relays keeps the learned one.
    x.handle.set_relays(vec![]).await.unwrap();
    let known = x.handle.known_relays().await.unwrap();
    assert_eq!(known, vec![KnownRelay { addr: r2_addr, origin: RelayOrigin::Learned }]);
}
