//! A LAN of the test's own: two hosts in network namespaces on one link,
//! no rendezvous server anywhere. Bob adds Alice's link and the request
//! reaches her over mDNS (message 1 still proves the link's point) — what
//! a shared LAN gives today; the acceptance and messages after it need a
//! rendezvous server until LAN-only messaging lands.
//!
//! ```text
//!  a 10.3.0.1 ── 10.3.0.2 b     (one veth link, multicast on)
//! ```
//!
//! mDNS is multicast: run on the machine's own interfaces it would reach
//! the real network, so it runs only here. Needs root and `ip`; without
//! them the test skips with the reason, or fails when `VEIL_FULL_TESTS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    netns::{Namespaces, may_run},
    *,
};

/// Two hosts on one link, multicast routed onto it.
fn lan() -> Namespaces {
    let lan = Namespaces::create(&["a", "b"]);
    lan.wire(("a", "eth0", "10.3.0.1/24"), ("b", "eth0", "10.3.0.2/24"));
    for host in ["a", "b"] {
        lan.ip(host, &["link", "set", "eth0", "multicast", "on"]);
        lan.ip(host, &["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    }
    lan
}

#[test]
fn a_contact_request_crosses_a_lan_over_mdns_without_any_server() {
    if !may_run(&["ip"]) {
        return;
    }
    let lan = lan();
    let start = |host: &str, name: &str| {
        Daemon::start_with(lan.exec(host, VEIL), FAST, &["--name", name, "--listen", "/ip4/0.0.0.0/tcp/0"])
    };
    let alice = start("a", "Alice");
    let bob = start("b", "Bob");

    let link = alice.ok(&["link"])["uri"].as_str().unwrap().to_owned();
    let alice_events = alice.events();
    bob.ok(&["contact", "add", &link]);
    alice_events.until("Bob's request over mDNS", || {
        contact_named(&alice.ok(&["contact", "list"]), "Bob").is_some_and(|c| c["state"] == "incoming-received")
    });
    // Not by chance: Bob found Alice's LAN address through mDNS.
    let peers = bob.ok(&["peers"]);
    let from_mdns = peers["addresses"].as_array().unwrap().iter().any(|l| {
        l["addr"].as_str().unwrap().contains("/ip4/10.3.0.1/")
            && l["sources"].as_array().unwrap().iter().any(|s| s == "mdns")
    });
    assert!(from_mdns, "Bob learned Alice's LAN address from mDNS: {peers}");
}
