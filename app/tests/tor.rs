//! `anonymous` end to end: daemons that reach each other over Tor only, on
//! a private Tor network on loopback (three authorities, four relays, from
//! Debian's `tor`). A rendezvous server is itself an onion service; Alice
//! and Bob become contacts and talk through it and through each other's
//! onion services; then a conversation moves from TCP to Tor and back.
//!
//! Needs `tor` and `tor-gencert`; without them the tests skip with the
//! reason, or fail when `VEIL_FULL_TESTS=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::{Mutex, MutexGuard};

use common::*;
use veil_tor::testnet::{self, TestNetwork};

/// The network's start, bounded.
const NETWORK_START: Duration = Duration::from_secs(150);

/// One private Tor network at a time: each is seven tor processes.
static TOR_NETWORK: Mutex<()> = Mutex::new(());

struct Network {
    _dir: TempDir,
    net: TestNetwork,
    _one_at_a_time: MutexGuard<'static, ()>,
}

fn network() -> Option<Network> {
    if let Err(reason) = testnet::available() {
        assert!(std::env::var("VEIL_FULL_TESTS").as_deref() != Ok("1"), "VEIL_FULL_TESTS=1 but {reason}");
        eprintln!("skipped: {reason}");
        return None;
    }
    let guard = TOR_NETWORK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let mut net = TestNetwork::start(&dir.path().join("tornet")).unwrap();
    net.wait_ready(NETWORK_START).unwrap();
    Some(Network { _dir: dir, net, _one_at_a_time: guard })
}

/// The `[tor]` table that points a daemon at the private network.
fn tor_table(net: &TestNetwork, enabled: Option<bool>) -> String {
    let n = net.network();
    let quoted = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let fallbacks: Vec<String> = n
        .fallbacks
        .iter()
        .map(|f| {
            format!(
                "{{ rsa_identity = {:?}, ed_identity = {:?}, orport = \"{}\" }}",
                f.rsa_identity, f.ed_identity, f.orport
            )
        })
        .collect();
    let enabled = enabled.map(|e| format!("enabled = {e}\n")).unwrap_or_default();
    format!(
        "[tor]\n{enabled}loopback = true\nauthorities = [{}]\nfallbacks = [{}]\n",
        quoted(&n.authorities),
        fallbacks.join(", ")
    )
}

/// Waits until the daemon's onion service can be reached; its address.
fn onion_of(d: &Daemon) -> String {
    let events = d.events();
    let mut onion = String::new();
    events.until("the onion service", || {
        let status = d.ok(&["status"]);
        let reachable = status["tor"]["service"] == "reachable";
        onion = status["tor"]["onion"].as_str().unwrap_or_default().to_owned();
        reachable && status["listen_addrs"].as_array().unwrap().iter().any(|a| a == onion.as_str())
    });
    onion
}

fn onion_only(d: &Daemon) {
    let status = d.ok(&["status"]);
    assert_eq!(status["policy"], "anonymous");
    for addr in status["listen_addrs"].as_array().unwrap() {
        assert!(addr.as_str().unwrap().starts_with("/onion3/"), "listening on {addr}");
    }
    for c in status["connections"].as_array().unwrap() {
        assert_eq!(c["transport"], "tor", "{status}");
    }
    assert_eq!(status["tor"]["bootstrap"], "ready");
}

#[test]
fn anonymous_daemons_meet_and_talk_over_tor_only() {
    let Some(tornet) = network() else { return };
    let tor = tor_table(&tornet.net, None);
    let server =
        Daemon::start_with(veil(), &format!("policy = \"anonymous\"\nserve = [\"rendezvous\"]\n{tor}"), &["--no-mdns"]);
    let server_onion = onion_of(&server);
    let rendezvous = format!("{server_onion}/p2p/{}", server.ok(&["status"])["peer_id"].as_str().unwrap());

    let peer = |name: &str| {
        let config = format!("policy = \"anonymous\"\n{FAST}{tor}");
        Daemon::start_with(veil(), &config, &["--no-mdns", "--rendezvous", &rendezvous, "--name", name])
    };
    let (alice, bob) = (peer("Alice"), peer("Bob"));
    onion_of(&alice);
    onion_of(&bob);

    let bob_events = request_contact(&alice, &bob, "Alice");
    let conversation = bob.ok(&["contact", "accept", "Alice"])["conversation"].as_str().unwrap().to_owned();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || {
        contact_named(&alice.ok(&["contact", "list"]), "Bob").is_some_and(|c| c["state"] == "accepted")
    });
    alice.ok(&["send", &conversation, "over tor"]);
    bob_events.until("Alice's message", || !texts(&bob.ok(&["log", &conversation])).is_empty());
    bob.ok(&["send", &conversation, "back over tor"]);
    alice_events.until("Bob's answer", || texts(&alice.ok(&["log", &conversation])).len() == 2);
    assert_eq!(
        texts(&alice.ok(&["log", &conversation])),
        vec![(true, "over tor".to_owned()), (false, "back over tor".to_owned())]
    );
    // A group over Tor: Bob joins with Alice's invitation, both write.
    let club = alice.ok(&["group", "create", "onion club"])["id"].as_str().unwrap().to_owned();
    let invitation = alice.ok(&["group", "invite", &club])["uri"].as_str().unwrap().to_owned();
    bob.ok(&["group", "join", &invitation]);
    alice.ok(&["send", &club, "welcome"]);
    bob_events.until("the group's welcome", || texts(&bob.ok(&["log", &club])).iter().any(|(_, t)| t == "welcome"));
    bob.ok(&["send", &club, "glad to be here"]);
    alice_events.until("Bob in the group", || texts(&alice.ok(&["log", &club])).len() == 2);
    for d in [&server, &alice, &bob] {
        onion_only(d);
    }
    // The audit names the Tor network as an observer, and no IP address
    // for the contact or the rendezvous server.
    let audit = alice.ok(&["audit"]);
    for e in audit["exposures"].as_array().unwrap() {
        let learns = e["learns"].to_string();
        match e["observer"].as_str().unwrap() {
            "Tor network" => assert!(e["applies"] == true && learns.contains("guard relay only"), "{e}"),
            "contact" | "rendezvous server" => {
                assert!(!learns.contains("IP address") && learns.contains("onion address"), "{e}");
            }
            _ => {}
        }
    }
    // The server only ever saw onion addresses registered.
    let peers = server.ok(&["peers"]);
    for learned in peers["addresses"].as_array().unwrap() {
        assert!(learned["addr"].as_str().unwrap().starts_with("/onion3/"), "{learned}");
    }
}

/// Bob's view of the conversation: the texts, in order.
fn received(d: &Daemon, conversation: &str) -> Vec<String> {
    texts(&d.ok(&["log", conversation])).into_iter().filter(|(mine, _)| !mine).map(|(_, t)| t).collect()
}

fn every_connection_over(d: &Daemon, transport: &str) -> bool {
    let status = d.ok(&["status"]);
    let connections = status["connections"].as_array().unwrap();
    !connections.is_empty() && connections.iter().all(|c| c["transport"] == transport)
}

#[test]
fn a_conversation_moves_from_tcp_to_tor_and_back_losing_nothing() {
    let Some(tornet) = network() else { return };
    // A rendezvous server on loopback TCP and as an onion service.
    let server = Daemon::start(&format!("serve = [\"rendezvous\"]\n{}", tor_table(&tornet.net, Some(true))), &[]);
    let over_tcp = server.addr();
    let over_tor = format!("{}/p2p/{}", onion_of(&server), server.ready["peer_id"].as_str().unwrap());
    let peer = |name: &str| {
        let config = format!("{FAST}{}", tor_table(&tornet.net, Some(false)));
        Daemon::start(&config, &["--rendezvous", &over_tcp, "--rendezvous", &over_tor, "--name", name])
    };
    let (alice, bob) = (peer("Alice"), peer("Bob"));
    let bob_events = request_contact(&alice, &bob, "Alice");
    let conversation = bob.ok(&["contact", "accept", "Alice"])["conversation"].as_str().unwrap().to_owned();
    let send = |range: std::ops::RangeInclusive<u32>| {
        for i in range {
            alice.ok(&["send", &conversation, &format!("m{i}")]);
        }
    };
    let expect = |n: u32| (1..=n).map(|i| format!("m{i}")).collect::<Vec<_>>();

    send(1..=5);
    bob_events.until("five messages over TCP", || received(&bob, &conversation).len() >= 5);
    assert_eq!(received(&bob, &conversation), expect(5));
    assert!(every_connection_over(&alice, "tcp"));

    // Both move to Tor; Alice keeps writing while they do.
    bob.ok(&["policy", "anonymous"]);
    alice.ok(&["policy", "anonymous"]);
    send(6..=10);
    onion_of(&alice);
    onion_of(&bob);
    bob_events.until("five more over Tor", || received(&bob, &conversation).len() >= 10);
    assert_eq!(received(&bob, &conversation), expect(10), "in order, once each");
    bob_events.until("Alice's connections over Tor", || every_connection_over(&alice, "tor"));
    onion_only(&alice);

    // And back: direct again, Tor detached.
    for d in [&bob, &alice] {
        d.ok(&["policy", "direct"]);
        d.ok(&["transport", "detach", "tor"]);
    }
    send(11..=15);
    bob_events.until("five more over TCP again", || received(&bob, &conversation).len() >= 15);
    assert_eq!(received(&bob, &conversation), expect(15), "in order, once each");
    assert!(every_connection_over(&alice, "tcp"));
    assert_eq!(alice.ok(&["status"])["tor"]["attached"], false);
}
