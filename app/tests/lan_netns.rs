//! LAN-only messaging: hosts in network namespaces of the test's own on one
//! bridge, no rendezvous server and no route anywhere else. Peers find each
//! other over mDNS and prove the groups they share with salted tokens
//! (docs/PROTOCOL.md §11.4): contact requests, acceptances, 1:1 messages,
//! a group of three and its catch-up all work, under `direct` and under
//! `offline`. A neighbour on the same LAN that shares nothing with them
//! sees no identifier of theirs in its capture.
//!
//! ```text
//!  a 10.3.0.1 ─┐
//!  b 10.3.0.2 ─┼─ br0 (namespace "lan", multicast on)
//!  c 10.3.0.3 ─┤
//!  n 10.3.0.9 ─┘   a neighbour, not a contact
//! ```
//!
//! mDNS is multicast: run on the machine's own interfaces it would reach
//! the real network, so it runs only here. Needs root, `ip` and `tcpdump`;
//! without them a test skips with the reason, or fails when
//! `VEIL_FULL_TESTS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_actors::crypto::{
    GroupKeys,
    rendezvous::{Schedule, Topic},
    time::UnixTime,
};
use veil_testkit::daemon::{
    netns::{Namespaces, may_run, tcpdump},
    *,
};

const HOSTS: [(&str, &str); 4] =
    [("a", "10.3.0.1/24"), ("b", "10.3.0.2/24"), ("c", "10.3.0.3/24"), ("n", "10.3.0.9/24")];

/// The hosts `names` (and the switch) on one LAN.
fn lan(names: &[&'static str]) -> Namespaces {
    let mut all = vec!["lan"];
    all.extend_from_slice(names);
    let lan = Namespaces::create(&all);
    let hosts: Vec<(&str, &str)> = HOSTS.iter().copied().filter(|(h, _)| names.contains(h)).collect();
    lan.lan("lan", &hosts);
    lan
}

fn start(lan: &Namespaces, host: &str, name: &str, policy: &str) -> Daemon {
    let args = ["--name", name, "--listen", "/ip4/0.0.0.0/tcp/0", "--policy", policy];
    Daemon::start_with(lan.exec(host, veil_bin()), FAST, &args)
}

/// `from` asks `to` over the LAN and `to` accepts: returns the 1:1
/// conversation once both sides see the contact accepted (the requester
/// knows the acceptor by the name it introduced itself with).
fn befriend(from: &Daemon, from_name: &str, to: &Daemon, to_name: &str) -> String {
    let events = request_contact(from, to, from_name);
    let accepted = to.ok(&["contact", "accept", from_name]);
    let conversation = accepted["conversation"].as_str().unwrap().to_owned();
    drop(events);
    let from_events = from.events();
    from_events.until("the acceptance, over the LAN", || {
        contact_named(&from.ok(&["contact", "list"]), to_name)
            .is_some_and(|c| c["state"] == "accepted" && c["conversation"] == conversation.as_str())
    });
    conversation
}

/// Two daemons under `policy` become contacts and talk both ways.
fn two_talk_over_a_lan(policy: &str) {
    if !may_run(&["ip"]) {
        return;
    }
    let lan = lan(&["a", "b"]);
    let alice = start(&lan, "a", "Alice", policy);
    let bob = start(&lan, "b", "Bob", policy);
    let conversation = befriend(&bob, "Bob", &alice, "Alice");

    // Not by chance: Bob found Alice's LAN address through mDNS.
    let peers = bob.ok(&["peers"]);
    let from_mdns = peers["addresses"].as_array().unwrap().iter().any(|l| {
        l["addr"].as_str().unwrap().contains("/ip4/10.3.0.1/")
            && l["sources"].as_array().unwrap().iter().any(|s| s == "mdns")
    });
    assert!(from_mdns, "Bob learned Alice's LAN address from mDNS: {peers}");

    let (alice_events, bob_events) = (alice.events(), bob.events());
    bob.ok(&["send", &conversation, "hello over the LAN"]);
    alice_events.until("Bob's message", || !texts(&alice.ok(&["log", &conversation])).is_empty());
    alice.ok(&["send", &conversation, "hello back"]);
    bob_events.until("Alice's answer", || texts(&bob.ok(&["log", &conversation])).len() == 2);
    assert_eq!(
        texts(&bob.ok(&["log", &conversation])),
        vec![(true, "hello over the LAN".to_owned()), (false, "hello back".to_owned())]
    );
    assert_eq!(alice.ok(&["status"])["policy"], policy);
}

#[test]
fn two_daemons_become_contacts_and_talk_over_a_lan_under_direct() {
    two_talk_over_a_lan("direct");
}

#[test]
fn two_daemons_become_contacts_and_talk_over_a_lan_under_offline() {
    two_talk_over_a_lan("offline");
}

/// tcpdump writing every packet on a host's `eth0` to a file.
struct Capture {
    child: Child,
    file: tempfile::NamedTempFile,
}

impl Capture {
    fn start(lan: &Namespaces, host: &str) -> Self {
        let file = tempfile::NamedTempFile::new().unwrap();
        let child = tcpdump(lan, host, &["-U", "-s", "0", "-w", file.path().to_str().unwrap()], Stdio::null());
        Self { child, file }
    }

    /// Waits until the capture holds `text` (or fails after [`WAIT`]).
    fn until_holds(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !String::from_utf8_lossy(&std::fs::read(self.file.path()).unwrap()).contains(text) {
            assert!(Instant::now() < deadline, "the capture never saw {text}");
            std::thread::sleep(RECHECK);
        }
    }

    /// Stops the capture; the bytes of the capture file.
    fn stop(mut self) -> Vec<u8> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        let _ = self.child.wait();
        std::fs::read(self.file.path()).unwrap()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything identifying the contacts and the group a LAN neighbour must
/// never see: account keys, link seeds and this period's contact points;
/// the group's id, secret, rendezvous seed and point; the 1:1 group's id.
fn identifiers(links: &[String], invitation: &str, conversations: &[&str]) -> Vec<(String, Vec<u8>)> {
    let now = UnixTime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let mut out = Vec::new();
    for uri in links {
        let link = veil_actors::proto::link::parse_contact(uri).unwrap();
        out.push(("account key".to_owned(), link.account.signing.to_bytes().to_vec()));
        out.push(("link seed".to_owned(), link.seed.expose_secret().to_vec()));
        let point = Schedule::DEFAULT.point_at(&Topic::contact(&link.account.signing), &link.seed, now);
        out.push(("contact point".to_owned(), point.0.to_vec()));
    }
    let invitation = veil_actors::proto::link::parse_invitation(invitation).unwrap();
    let keys = GroupKeys::derive(&invitation.secret);
    out.push(("group id".to_owned(), keys.id.0.to_vec()));
    out.push(("group secret".to_owned(), invitation.secret.expose_secret().to_vec()));
    out.push(("group member key".to_owned(), invitation.inviter.to_bytes().to_vec()));
    out.push(("group seed".to_owned(), keys.rendezvous_seed.expose_secret().to_vec()));
    let point = Schedule::DEFAULT.point_at(&Topic::group(), &keys.rendezvous_seed, now);
    out.push(("group point".to_owned(), point.0.to_vec()));
    for c in conversations {
        out.push((
            "1:1 group id".to_owned(),
            (0..c.len()).step_by(2).map(|i| u8::from_str_radix(&c[i..i + 2], 16).unwrap()).collect(),
        ));
    }
    out
}

#[test]
fn three_daemons_share_a_group_over_a_lan_and_a_neighbour_learns_nothing() {
    if !may_run(&["ip", "tcpdump"]) {
        return;
    }
    let lan = lan(&["a", "b", "c", "n"]);
    let capture = Capture::start(&lan, "n");
    let _neighbour = start(&lan, "n", "Neighbour", "direct");
    let alice = start(&lan, "a", "Alice", "offline");
    let bob = start(&lan, "b", "Bob", "direct");
    let mut carol = start(&lan, "c", "Carol", "offline");
    let links: Vec<String> =
        [&alice, &bob, &carol].iter().map(|d| d.ok(&["link"])["uri"].as_str().unwrap().to_owned()).collect();
    let ab = befriend(&bob, "Bob", &alice, "Alice");

    // Alice's group; Bob and Carol join with her invitation.
    let club = alice.ok(&["group", "create", "lan club"])["id"].as_str().unwrap().to_owned();
    let invitation = alice.ok(&["group", "invite", &club])["uri"].as_str().unwrap().to_owned();
    let (alice_events, bob_events, carol_events) = (alice.events(), bob.events(), carol.events());
    bob.ok(&["group", "join", &invitation]);
    carol.ok(&["group", "join", &invitation]);
    alice.ok(&["send", &club, "welcome"]);
    bob_events.until("Alice's welcome", || texts(&bob.ok(&["log", &club])).iter().any(|(_, t)| t == "welcome"));
    carol_events.until("Alice's welcome", || texts(&carol.ok(&["log", &club])).iter().any(|(_, t)| t == "welcome"));
    bob.ok(&["send", &club, "hi from Bob"]);
    alice_events.until("Bob's message", || texts(&alice.ok(&["log", &club])).iter().any(|(_, t)| t == "hi from Bob"));
    carol_events.until("Bob's message", || texts(&carol.ok(&["log", &club])).iter().any(|(_, t)| t == "hi from Bob"));

    // Carol goes away; what is written meanwhile reaches her when she is back.
    drop(carol_events);
    assert_eq!(carol.stop(rustix::process::Signal::INT), 0);
    alice.ok(&["send", &club, "while Carol was away"]);
    bob.ok(&["send", &ab, "a 1:1 message meanwhile"]);
    let args = ["--name", "Carol", "--listen", "/ip4/0.0.0.0/tcp/0", "--policy", "offline"];
    let (child, ready) = spawn_daemon_with(lan.exec("c", veil_bin()), carol.path(), &args);
    (carol.child, carol.ready) = (Some(child), ready);
    let carol_events = carol.events();
    carol_events
        .until("the catch-up", || texts(&carol.ok(&["log", &club])).iter().any(|(_, t)| t == "while Carol was away"));
    carol.ok(&["send", &club, "back"]);
    bob_events.until("Carol's return", || texts(&bob.ok(&["log", &club])).iter().any(|(_, t)| t == "back"));
    alice_events.until("Bob's 1:1 message", || texts(&alice.ok(&["log", &ab])).len() == 1);

    // The neighbour: a veil node (so it was offered tokens) that shares
    // nothing with them. Its capture holds none of their identifiers.
    // It did hear them: mDNS announces their peer ids (as THREATS.md says).
    capture.until_holds(alice.ready["peer_id"].as_str().unwrap());
    let packets = capture.stop();
    let text = String::from_utf8_lossy(&packets).to_lowercase();
    for (what, bytes) in identifiers(&links, &invitation, &[&ab, &club]) {
        assert!(!packets.windows(bytes.len()).any(|w| w == bytes), "the neighbour saw a {what}");
        assert!(!text.contains(&hex(&bytes)), "the neighbour saw a {what} in hex");
    }
    let neighbour = _neighbour.ok(&["conversations"]);
    assert_eq!(neighbour["conversations"].as_array().unwrap().len(), 0, "{neighbour}");
}
