//! A partition and its heal (issue 20): three group members on a LAN of
//! the test's own (network namespaces, `offline` policy, no server). Carol's
//! link goes down mid-conversation; Alice and Bob go on writing on their
//! side, Carol on hers; the link comes back up. Every message reaches every
//! member, and the three logs end in one and the same order.
//!
//! ```text
//!  a 10.5.0.1 ─┐
//!  b 10.5.0.2 ─┼─ br0 (namespace "lan")
//!  c 10.5.0.3 ─┘   (port2, Carol's, goes down and up)
//! ```
//!
//! Needs root and `ip`; without them the test skips with the reason, or
//! fails when `VEIL_FULL_TESTS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_testkit::daemon::{
    netns::{Namespaces, may_run},
    *,
};

/// Messages each member writes while partitioned.
const EACH: usize = 10;
/// How long reconnecting after the heal may take: mDNS asks the LAN again
/// once a minute. A bound, not a pause.
const HEAL_WAIT: Duration = Duration::from_secs(240);

fn start(lan: &Namespaces, host: &str, name: &str) -> Daemon {
    let args = ["--name", name, "--listen", "/ip4/0.0.0.0/tcp/0", "--policy", "offline"];
    Daemon::start_with(lan.exec(host, veil_bin()), FAST, &args)
}

fn log_of(d: &Daemon, group: &str) -> Vec<String> {
    texts(&d.ok(&["log", group, "-n", "1000"])).into_iter().map(|(_, t)| t).collect()
}

#[test]
fn a_partitioned_group_heals_with_nothing_lost_and_one_order() {
    if !may_run(&["ip"]) {
        return;
    }
    let lan = Namespaces::create(&["lan", "a", "b", "c"]);
    lan.lan("lan", &[("a", "10.5.0.1/24"), ("b", "10.5.0.2/24"), ("c", "10.5.0.3/24")]);
    let (alice, bob, carol) = (start(&lan, "a", "Alice"), start(&lan, "b", "Bob"), start(&lan, "c", "Carol"));
    let club = alice.ok(&["group", "create", "partitioned"])["id"].as_str().unwrap().to_owned();
    let invitation = alice.ok(&["group", "invite", &club])["uri"].as_str().unwrap().to_owned();
    let events = [alice.events(), bob.events(), carol.events()];
    bob.ok(&["group", "join", &invitation]);
    carol.ok(&["group", "join", &invitation]);
    let members = |d: &Daemon| d.ok(&["group", "members", &club])["members"].as_array().unwrap().len();
    for (d, e) in [&alice, &bob, &carol].into_iter().zip(&events) {
        e.until("three members", || members(d) == 3);
    }
    alice.ok(&["send", &club, "before"]);
    for (d, e) in [&bob, &carol].into_iter().zip(&events[1..]) {
        e.until("Alice's first message", || log_of(d, &club).contains(&"before".to_owned()));
    }

    // The partition: Carol's port on the switch goes down.
    lan.ip("lan", &["link", "set", "port2", "down"]);
    for i in 0..EACH {
        alice.ok(&["send", &club, &format!("alice {i}")]);
        bob.ok(&["send", &club, &format!("bob {i}")]);
        carol.ok(&["send", &club, &format!("carol {i}")]);
    }
    // Alice and Bob still reach each other.
    let ab: Vec<String> = (0..EACH).flat_map(|i| [format!("alice {i}"), format!("bob {i}")]).collect();
    for (d, e) in [&alice, &bob].into_iter().zip(&events) {
        e.until("the other side's messages", || {
            let log = log_of(d, &club);
            ab.iter().all(|m| log.contains(m))
        });
    }
    assert!(!log_of(&carol, &club).iter().any(|m| m.starts_with("alice") || m.starts_with("bob")), "Carol was cut off");
    assert!(!log_of(&alice, &club).iter().any(|m| m.starts_with("carol")), "Alice was cut off from Carol");
    // Long enough for the frames to Carol to time out and her connections
    // to be given up: the heal is then a reconnection, not a retransmission.
    let carol_peer = carol.ready["peer_id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    alice.events().patient(HEAL_WAIT).until("Alice to give Carol's connection up", || {
        let status = alice.ok(&["status"]);
        !status["connections"].as_array().unwrap().iter().any(|c| c["peer_id"] == carol_peer.as_str())
    });
    eprintln!("partition: Alice gave Carol's connection up after {:?}", started.elapsed());

    // The heal.
    lan.ip("lan", &["link", "set", "port2", "up"]);
    let mut everything: Vec<String> = ab.clone();
    everything.extend((0..EACH).map(|i| format!("carol {i}")));
    everything.push("before".to_owned());
    everything.sort();
    for (d, e) in [&alice, &bob, &carol].into_iter().zip(events) {
        e.patient(HEAL_WAIT).until("every message", || {
            let mut log = log_of(d, &club);
            log.sort();
            log == everything
        });
    }
    let order = log_of(&alice, &club);
    assert_eq!(log_of(&bob, &club), order, "Bob's order is Alice's");
    assert_eq!(log_of(&carol, &club), order, "Carol's order is Alice's");
    // Each member's own messages keep the order they were written in.
    for who in ["alice", "bob", "carol"] {
        let theirs: Vec<&String> = order.iter().filter(|m| m.starts_with(who)).collect();
        let written: Vec<String> = (0..EACH).map(|i| format!("{who} {i}")).collect();
        assert_eq!(theirs, written.iter().collect::<Vec<_>>(), "{who}'s messages in the order written");
    }
}
