//! The relay-only promise on a real network topology: A and B on separate
//! home networks behind NATs, a relay R (also rendezvous server and DHT
//! node) reachable from both, all in network namespaces built by the test.
//!
//! ```text
//!  a 10.1.0.2 ── 10.1.0.1 ra 10.99.1.2 ── 10.99.1.1 ┐
//!                (NAT)                               r  (relay, rendezvous, DHT)
//!  b 10.2.0.2 ── 10.2.0.1 rb 10.99.2.2 ── 10.99.2.1 ┘
//! ```
//!
//! With policy `relayed` (R forwards between the NATs, as the internet
//! would, but never upgrades: no hole punching), A and B become contacts
//! and exchange messages through R; every address
//! B's node learned (connections, identify, address book, DHT, rendezvous
//! records) is free of A's addresses, and a capture on B's interface shows
//! no packet to or from them. The `direct` control case lets R route
//! between the homes: A and B connect directly and the same checks find
//! A's addresses, so the checks can fail. And under `direct` behind the
//! NATs, A and B reserve on R, meet through its circuits, and hole
//! punching (DCUtR) moves them onto a direct connection between their NATs'
//! addresses: `veil peers` says "upgraded".
//!
//! Needs root, `ip`, `nft` and `tcpdump` (`.ci/run` installs them). Without
//! them the tests skip with the reason, or fail when `VEIL_FULL_TESTS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_testkit::daemon::{
    netns::{Namespaces, may_run, must, tcpdump},
    *,
};

/// A's address on its home network, and the NAT address it reaches the world from.
const A_ADDRS: [&str; 2] = ["10.1.0.2", "10.99.1.2"];
const R_PORT: &str = "4001";

/// The tools the topology and the capture need.
const TOOLS: [&str; 3] = ["ip", "nft", "tcpdump"];

/// What R forwards, besides serving as relay (it always forwards between
/// the NATs' WAN addresses).
#[derive(Clone, Copy, PartialEq)]
enum Internet {
    /// Only between the NATs' WAN addresses, as the internet does: each
    /// home's NAT drops what nobody inside asked for, so only hole punching
    /// connects A and B directly.
    BehindNats,
    /// Into both homes, as if they had public addresses.
    Open,
}

/// Builds the topology above, R forwarding as `internet` says.
fn build(internet: Internet) -> Namespaces {
    let topology = Namespaces::create(&["r", "ra", "rb", "a", "b"]);
    topology.wire(("r", "to-a", "10.99.1.1/30"), ("ra", "wan", "10.99.1.2/30"));
    topology.wire(("r", "to-b", "10.99.2.1/30"), ("rb", "wan", "10.99.2.2/30"));
    topology.wire(("ra", "lan", "10.1.0.1/24"), ("a", "eth0", "10.1.0.2/24"));
    topology.wire(("rb", "lan", "10.2.0.1/24"), ("b", "eth0", "10.2.0.2/24"));
    topology.ip("a", &["route", "add", "default", "via", "10.1.0.1"]);
    topology.ip("b", &["route", "add", "default", "via", "10.2.0.1"]);
    for (router, upstream) in [("ra", "10.99.1.1"), ("rb", "10.99.2.1")] {
        topology.ip(router, &["route", "add", "default", "via", upstream]);
        topology.forward(router);
        let ns = topology.ns(router);
        must("ip", &["netns", "exec", &ns, "nft", "add", "table", "ip", "nat"]);
        must(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "nft",
                "add",
                "chain",
                "ip",
                "nat",
                "post",
                "{ type nat hook postrouting priority 100 ; }",
            ],
        );
        must("ip", &["netns", "exec", &ns, "nft", "add", "rule", "ip", "nat", "post", "oifname", "wan", "masquerade"]);
        // Like a home router, it drops what arrives unasked rather than
        // refusing it (a refusal would also tear down a hole being punched).
        let nft = |args: &[&str]| must("ip", &[&["netns", "exec", &ns, "nft"][..], args].concat());
        nft(&["add", "table", "ip", "filter"]);
        nft(&["add", "chain", "ip", "filter", "input", "{ type filter hook input priority 0 ; }"]);
        nft(&["add", "rule", "ip", "filter", "input", "iifname", "wan", "ct", "state", "new", "drop"]);
    }
    topology.forward("r");
    if internet == Internet::Open {
        topology.ip("r", &["route", "add", "10.1.0.0/24", "via", "10.99.1.2"]);
        topology.ip("r", &["route", "add", "10.2.0.0/24", "via", "10.99.2.2"]);
    }
    topology
}

/// tcpdump on B's interface, printing one line per packet.
struct Capture {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Capture {
    fn start(topology: &Namespaces) -> Self {
        let mut child = tcpdump(topology, "b", &["-l", "ip"], Stdio::piped());
        let lines = lines_of(&mut child);
        Self { child, lines }
    }

    /// Stops the capture; every packet line.
    fn stop(mut self) -> Vec<String> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        let _ = self.child.wait();
        self.lines.try_iter().collect()
    }
}

/// Whether `text` names one of A's addresses.
fn names_a(text: &str) -> bool {
    A_ADDRS.iter().any(|a| text.contains(&format!("/ip4/{a}/")) || text.contains(&format!(" {a}.")))
}

/// What B learned and saw of A in one run.
struct Observed {
    /// Every address B's node learned (for any peer) with its sources.
    learned: Vec<(String, Vec<String>)>,
    /// Packet lines captured on B's interface.
    packets: Vec<String>,
}

/// Starts R, A and B under `policy`, makes A and B contacts, exchanges a
/// message each way, waits until every connection of B to A takes `route`
/// (direct, relayed or upgraded), exchanges two more, and returns what B
/// learned and saw.
fn converse(topology: &Namespaces, policy: &str, route: &str) -> Observed {
    let fast = "sync_interval_ms = 200\ncontact_retry_ms = 200\n";
    let listen = format!("/ip4/0.0.0.0/tcp/{R_PORT}");
    let relay = Daemon::start_with(
        topology.exec("r", veil_bin()),
        "",
        &["--listen", &listen, "--no-mdns", "--serve", "relay,rendezvous,dht"],
    );
    let r_id = relay.ready["peer_id"].as_str().unwrap().to_owned();
    let r_via = |ip: &str| format!("/ip4/{ip}/tcp/{R_PORT}/p2p/{r_id}");
    let start = |ns: &str, name: &str, r: String| {
        let mut args = vec!["--policy", policy, "--relay", &r, "--rendezvous", &r, "--bootstrap", &r, "--no-mdns"];
        args.extend(["--name", name]);
        if policy == "direct" {
            args.extend(["--listen", "/ip4/0.0.0.0/tcp/0"]);
        }
        Daemon::start_with(topology.exec(ns, veil_bin()), fast, &args)
    };
    let alice = start("a", "Alice", r_via("10.99.1.1"));
    let bob = start("b", "Bob", r_via("10.99.2.1"));
    let capture = Capture::start(topology);

    let link = alice.ok(&["link"])["uri"].as_str().unwrap().to_owned();
    let (alice_events, bob_events) = (alice.events(), bob.events());
    bob.ok(&["contact", "add", &link]);
    alice_events.until("Bob's request", || {
        contact_named(&alice.ok(&["contact", "list"]), "Bob").is_some_and(|c| c["state"] == "incoming-received")
    });
    let conversation = alice.ok(&["contact", "accept", "Bob"])["conversation"].as_str().unwrap().to_owned();
    alice.ok(&["send", &conversation, "hello from a home network"]);
    // Bob knows the conversation once Alice's acceptance reaches him; until
    // then `log` answers "unknown conversation".
    bob_events.until("Alice's message", || {
        let log = bob.run(&["log", &conversation]);
        log.code == 0 && !texts(&log.json).is_empty()
    });
    bob.ok(&["send", &conversation, "hello back"]);
    alice_events.until("Bob's answer", || texts(&alice.ok(&["log", &conversation])).len() == 2);

    // How Bob's connections reach Alice settles: then they talk on.
    let alice_id = alice.ready["peer_id"].as_str().unwrap().to_owned();
    let routes = || -> Vec<String> {
        let peers = bob.ok(&["peers"]);
        let to_alice = peers["connections"].as_array().unwrap().iter().filter(|c| c["peer_id"] == alice_id.as_str());
        to_alice.map(|c| c["route"].as_str().unwrap().to_owned()).collect()
    };
    bob_events.until(&format!("Bob's connections to Alice all {route}"), || {
        let routes = routes();
        !routes.is_empty() && routes.iter().all(|r| r == route)
    });
    bob.ok(&["send", &conversation, "still there?"]);
    alice_events.until("Bob's next message", || texts(&alice.ok(&["log", &conversation])).len() == 3);
    alice.ok(&["send", &conversation, "yes"]);
    bob_events.until("Alice's answer", || texts(&bob.ok(&["log", &conversation])).len() == 4);
    assert!(routes().iter().all(|r| r == route), "{:?}", routes());
    if route != "direct" {
        let status = bob.ok(&["status"]);
        assert!(status["connections"].as_array().unwrap().iter().any(|c| c["route"] == route), "{status}");
    }

    if policy == "relayed" {
        // A is reachable only through R's circuit.
        let status = alice.ok(&["status"]);
        let listening = status["listen_addrs"].as_array().unwrap();
        assert!(!listening.is_empty() && listening.iter().all(|a| a.as_str().unwrap().contains("/p2p-circuit")));
        let audit = alice.ok(&["audit"]);
        assert_eq!(audit["policy"], "relayed");
    }
    let peers = bob.ok(&["peers"]);
    let learned = peers["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let sources = l["sources"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
            (l["addr"].as_str().unwrap().to_owned(), sources)
        })
        .collect();
    Observed { learned, packets: capture.stop() }
}

#[test]
fn relayed_contacts_never_learn_each_others_addresses() {
    if !may_run(&TOOLS) {
        return;
    }
    // R forwards between the NATs, so hole punching could connect A and B
    // directly: under `relayed` it never runs.
    let topology = build(Internet::BehindNats);
    let seen = converse(&topology, "relayed", "relayed");
    eprintln!("B learned {} addresses; captured {} packets", seen.learned.len(), seen.packets.len());
    for (addr, sources) in &seen.learned {
        assert!(!names_a(addr), "B learned A's address {addr} from {sources:?}");
    }
    // Not vacuous: B learned circuits (through R) from the rendezvous
    // server, and the DHT ran and reported peers.
    let from = |source: &str| seen.learned.iter().filter(|(_, s)| s.iter().any(|x| x == source)).count();
    assert!(seen.learned.iter().any(|(a, _)| a.contains("/p2p-circuit")), "{:?}", seen.learned);
    assert!(from("rendezvous") > 0 && from("connection") > 0, "{:?}", seen.learned);
    assert!(from("dht") > 0, "the DHT did not run: {:?}", seen.learned);
    assert!(!seen.packets.is_empty(), "the capture saw nothing");
    let leaks: Vec<&String> = seen.packets.iter().filter(|p| names_a(p)).collect();
    assert!(leaks.is_empty(), "packets to or from A on B's interface: {leaks:?}");
}

/// The control case: where A and B can route to each other under `direct`,
/// they connect directly and the same checks find A's addresses.
#[test]
fn direct_contacts_learn_each_others_addresses() {
    if !may_run(&TOOLS) {
        return;
    }
    let topology = build(Internet::Open);
    let seen = converse(&topology, "direct", "direct");
    assert!(seen.learned.iter().any(|(a, _)| names_a(a)), "B learned no address of A: {:?}", seen.learned);
    assert!(seen.packets.iter().any(|p| names_a(p)), "no packet from A on B's interface");
}

/// Behind NATs, under `direct` with a relay configured: A and B reserve on
/// R, meet through its circuits, and hole punching (DCUtR) moves them to a
/// direct connection between their NATs' addresses.
#[test]
fn direct_contacts_behind_nats_end_up_connected_directly() {
    if !may_run(&TOOLS) {
        return;
    }
    let topology = build(Internet::BehindNats);
    let seen = converse(&topology, "direct", "upgraded");
    // The direct connection runs between the NATs' addresses.
    let punched =
        seen.learned.iter().any(|(a, s)| a.contains("/ip4/10.99.1.2/") && s.iter().any(|x| x == "connection"));
    assert!(punched, "{:?}", seen.learned);
    assert!(seen.packets.iter().any(|p| p.contains(" 10.99.1.2.")), "no packet from A's NAT on B's interface");
}
