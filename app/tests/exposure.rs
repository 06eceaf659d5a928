//! `veil audit` and `veil peers` against real daemons on loopback, through
//! the CLI with `--json`. Waiting is on `veil events`, never on sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_testkit::daemon::*;

/// The ten observers, in the audit's order.
const OBSERVERS: [&str; 10] = [
    "contact",
    "group member",
    "relay",
    "rendezvous server",
    "DHT peer",
    "LAN/BLE neighbour",
    "network eavesdropper",
    "replication node",
    "Tor network",
    "device-offer reader",
];

fn observers(audit: &Value) -> Vec<&str> {
    audit["exposures"].as_array().unwrap().iter().map(|e| e["observer"].as_str().unwrap()).collect()
}

fn learns(exposure: &Value) -> Vec<&str> {
    exposure["learns"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect()
}

fn exposure<'a>(audit: &'a Value, observer: &str) -> &'a Value {
    audit["exposures"].as_array().unwrap().iter().find(|e| e["observer"] == observer).unwrap()
}

/// Every entry of a `veil peers --json` answer is a peer id, an address and
/// at least one known source.
fn assert_well_formed(peers: &Value) -> &Vec<Value> {
    let list = peers["addresses"].as_array().unwrap_or_else(|| panic!("no address list: {peers}"));
    let sources = ["connection", "identify", "peer-store", "dht", "rendezvous", "mdns"];
    for a in list {
        assert!(a["peer_id"].as_str().unwrap().starts_with("12D3KooW"), "{a}");
        assert!(a["addr"].as_str().unwrap().starts_with('/'), "{a}");
        let named = a["sources"].as_array().unwrap();
        assert!(!named.is_empty() && named.iter().all(|s| sources.contains(&s.as_str().unwrap())), "{a}");
    }
    list
}

#[test]
fn the_audit_names_every_observer_and_follows_the_policy() {
    let server = Daemon::start("", &["--serve", "rendezvous"]);
    let d = Daemon::start("", &["--rendezvous", &server.addr()]);
    let direct = d.ok(&["audit"]);
    assert_eq!(observers(&direct), OBSERVERS);
    assert_eq!(direct["policy"], "direct");
    assert_eq!(direct["rotating_peer_id"], true);
    assert_eq!(direct["period_seconds"], 86_400);
    // Under direct, a contact learns the IP address and the peer id of the day.
    let contact = exposure(&direct, "contact");
    assert!(learns(contact).iter().any(|l| l.contains("IP address")), "{contact}");
    assert!(learns(contact).iter().any(|l| l.contains("peer id (it changes every 1 day(s)")), "{contact}");
    assert_eq!(exposure(&direct, "rendezvous server")["applies"], true);
    // How many devices the account has is what contacts learn of them; a
    // device offer's reader learns the account's public keys, not its secrets.
    assert!(learns(contact).iter().any(|l| l.contains("how many devices")), "{contact}");
    assert!(learns(contact).iter().any(|l| l.contains("how many devices remain")), "{contact}");
    let offer = exposure(&direct, "device-offer reader");
    assert!(learns(offer).iter().any(|l| l.contains("public keys")), "{offer}");

    // Offline: the same observers, but no rendezvous server or DHT
    // applies any more, and the audit says so.
    assert_eq!(d.ok(&["policy", "offline"])["policy"], "offline");
    let offline = d.ok(&["audit"]);
    assert_eq!(observers(&offline), OBSERVERS);
    assert_eq!(offline["policy"], "offline");
    assert_ne!(offline["exposures"], direct["exposures"]);
    assert_eq!(exposure(&offline, "rendezvous server")["applies"], false);
    assert_eq!(exposure(&offline, "DHT peer")["applies"], false);

    let contact = exposure(&offline, "contact");
    assert!(learns(contact).iter().any(|l| l.contains("LAN address")), "{contact}");

    // Back to direct: the same report as before.
    d.ok(&["policy", "direct"]);
    assert_eq!(d.ok(&["audit"]), direct);

    // The text form names every observer too.
    let text = veil().arg("--home").arg(d.path()).arg("audit").output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(OBSERVERS.iter().all(|o| text.contains(o)), "{text}");
}

#[test]
fn a_daemon_that_keeps_its_peer_id_says_so() {
    let d = Daemon::start("rotate_peer_id = false\n", &[]);
    let audit = d.ok(&["audit"]);
    assert_eq!(audit["rotating_peer_id"], false);
    assert_eq!(observers(&audit), OBSERVERS);
    let contact = exposure(&audit, "contact");
    assert!(learns(contact).iter().any(|l| l.contains("sessions can be linked by it")), "{contact}");
}

#[test]
fn peers_lists_the_addresses_learned_through_a_contact_exchange() {
    // A fresh daemon has learned nothing yet: a well-formed empty list.
    let lonely = Daemon::start("", &[]);
    assert_eq!(lonely.ok(&["peers"]), json!({ "addresses": [], "connections": [] }));
    let text = veil().arg("--home").arg(lonely.path()).arg("peers").output().unwrap();
    assert_eq!(String::from_utf8(text.stdout).unwrap().trim(), "no peer addresses learned yet");

    let server = Daemon::start("", &["--serve", "rendezvous"]);
    let rendezvous = server.addr();
    let alice = Daemon::start(FAST, &["--rendezvous", &rendezvous, "--name", "Alice"]);
    let bob = Daemon::start(FAST, &["--rendezvous", &rendezvous, "--name", "Bob"]);
    request_contact(&alice, &bob, "Alice");

    // Alice found Bob at his rendezvous point and connected to him: his
    // address is on record with where it came from. The server's address
    // was learned too.
    let bob_peer = bob.ok(&["status"])["peer_id"].as_str().unwrap().to_owned();
    let bob_port = bob.ok(&["status"])["listen_addrs"][0].as_str().unwrap().to_owned();
    let peers = alice.ok(&["peers"]);
    let list = assert_well_formed(&peers);
    let of_bob: Vec<&Value> = list.iter().filter(|a| a["peer_id"] == bob_peer.as_str()).collect();
    assert!(!of_bob.is_empty(), "no address of Bob: {peers}");
    let bob_sources: Vec<&str> =
        of_bob.iter().flat_map(|a| a["sources"].as_array().unwrap()).map(|s| s.as_str().unwrap()).collect();
    assert!(bob_sources.contains(&"rendezvous"), "{peers}");
    assert!(of_bob.iter().any(|a| a["addr"].as_str().unwrap().starts_with(&bob_port)), "{peers}");
    let server_peer = server.ready["peer_id"].as_str().unwrap();
    assert!(list.iter().any(|a| a["peer_id"] == server_peer), "{peers}");
    // Bob learned Alice's connection.
    assert_well_formed(&bob.ok(&["peers"]));
    // Open connections say how they reach the peer: on loopback, directly.
    let to_bob = peers["connections"].as_array().unwrap().iter().find(|c| c["peer_id"] == bob_peer.as_str());
    assert_eq!(to_bob.map(|c| (c["route"].clone(), c["transport"].clone())), Some((json!("direct"), json!("tcp"))));
    let text = veil().arg("--home").arg(alice.path()).arg("peers").output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(&format!("connected  {bob_peer}  direct over tcp")), "{text}");
    let status = alice.ok(&["status"]);
    assert!(status["connections"].as_array().unwrap().iter().any(|c| c["peer_id"] == bob_peer.as_str()), "{status}");
}
