//! `anonymous` end to end: daemons that reach each other over Tor only, on
//! a private Tor network on loopback (three authorities, four relays, from
//! Debian's `tor`). A rendezvous server is itself an onion service; Alice
//! and Bob become contacts and talk through it and through each other's
//! onion services; then a conversation moves from TCP to Tor and back.
//!
//! Needs `tor` and `tor-gencert`; without them the tests skip with the
//! reason, or fail when `VEIL_FULL_TESTS=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use veil_testkit::daemon::*;
use veil_tor::testnet::{self, TestNetwork};

/// How long one step over Tor may take: onion services, circuits and
/// rendezvous are slow on one busy core (`just stress`). A bound, not a pause.
const TOR_WAIT: Duration = Duration::from_secs(240);

/// One test at a time: each runs four daemons with a Tor client apiece.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Messages each way in the 1:1 conversation.
const MESSAGES: usize = 100;

/// The network's start, bounded.
const NETWORK_START: Duration = Duration::from_secs(150);

/// The private Tor network of this test binary, started once (its start
/// takes 15-50 s) and shared by the tests; its tor processes end with this
/// process.
static TOR_NETWORK: std::sync::OnceLock<Option<TestNetwork>> = std::sync::OnceLock::new();

fn network() -> Option<&'static TestNetwork> {
    TOR_NETWORK
        .get_or_init(|| {
            if let Err(reason) = testnet::available() {
                assert!(std::env::var("VEIL_FULL_TESTS").as_deref() != Ok("1"), "VEIL_FULL_TESTS=1 but {reason}");
                eprintln!("skipped: {reason}");
                return None;
            }
            // A directory per run: an earlier run's tor processes live on
            // for a few seconds after it (until they notice their owner is
            // gone) and would write into a reused one. Those of runs whose
            // process is gone are removed.
            let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            for old in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                let name = old.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("tornet-app-") else { continue };
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(old.path());
                }
            }
            let dir = base.join(format!("tornet-app-{}", std::process::id()));
            let mut net = TestNetwork::start(&dir).unwrap();
            net.wait_ready(NETWORK_START).unwrap();
            Some(net)
        })
        .as_ref()
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
    let events = d.events().patient(TOR_WAIT);
    let mut status = Value::Null;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        events.until("the onion service", || {
            status = d.ok(&["status"]);
            let onion = status["tor"]["onion"].as_str().unwrap_or_default();
            let reachable = status["tor"]["service"] == "reachable";
            reachable && status["listen_addrs"].as_array().unwrap().iter().any(|a| a == onion)
        })
    }));
    if let Err(panic) = waited {
        eprintln!("the daemon's last status: {status}");
        std::panic::resume_unwind(panic);
    }
    status["tor"]["onion"].as_str().unwrap_or_default().to_owned()
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

/// The TCP and UDP sockets of a process, from /proc: for each, its state
/// (hex, as the kernel writes it: 01 established, 0A listening, …) and
/// remote port; `udp` is true for UDP sockets.
fn sockets(pid: u32) -> Vec<(bool, String, u16)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut out = Vec::new();
    for (table, udp) in [("tcp", false), ("tcp6", false), ("udp", true), ("udp6", true)] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.iter().any(|i| i == f[9]) {
                let port = f[2].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()).unwrap_or(0);
                out.push((udp, f[3].to_owned(), port));
            }
        }
    }
    out
}

/// Under `anonymous` a daemon listens on no TCP port, has no UDP socket,
/// and is connected to the Tor network's OR ports and nothing else: so not
/// to another veil node.
fn only_tor_sockets(d: &Daemon, tornet: &TestNetwork) {
    let pid = d.child.as_ref().unwrap().id();
    let or_ports = tornet.or_ports();
    let found = sockets(pid);
    assert!(!found.is_empty(), "a daemon talking over Tor has sockets to the Tor network");
    for (udp, state, port) in found {
        assert!(!udp, "a UDP socket under anonymous");
        assert_ne!(state, "0A", "listening on TCP under anonymous");
        if state == "01" || state == "02" {
            assert!(or_ports.contains(&port), "connected to port {port}, not a Tor OR port {or_ports:?}");
        }
    }
}

#[test]
fn anonymous_daemons_meet_and_talk_over_tor_only() {
    let Some(tornet) = network() else { return };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tor = tor_table(tornet, None);
    let server =
        Daemon::start_with(veil(), &format!("policy = \"anonymous\"\nserve = [\"rendezvous\"]\n{tor}"), &["--no-mdns"]);
    let server_onion = onion_of(&server);
    let rendezvous = format!("{server_onion}/p2p/{}", server.ok(&["status"])["peer_id"].as_str().unwrap());

    let peer = |name: &str| {
        let config = format!("policy = \"anonymous\"\n{FAST}{tor}");
        Daemon::start_with(veil(), &config, &["--no-mdns", "--rendezvous", &rendezvous, "--name", name])
    };
    let (alice, bob, carol) = (peer("Alice"), peer("Bob"), peer("Carol"));
    for d in [&alice, &bob, &carol] {
        onion_of(d);
    }

    let bob_events = request_contact_within(&alice, &bob, "Alice", TOR_WAIT);
    let conversation = bob.ok(&["contact", "accept", "Alice"])["conversation"].as_str().unwrap().to_owned();
    let alice_events = alice.events().patient(TOR_WAIT);
    alice_events.until("Bob's acceptance", || {
        contact_named(&alice.ok(&["contact", "list"]), "Bob").is_some_and(|c| c["state"] == "accepted")
    });
    // A hundred messages each way, every one acknowledged.
    for i in 0..MESSAGES {
        alice.ok(&["send", &conversation, &format!("a{i}")]);
        bob.ok(&["send", &conversation, &format!("b{i}")]);
    }
    let all = |d: &Daemon, from: char| {
        let log = d.ok(&["log", &conversation, "-n", "1000"]);
        let theirs: Vec<String> = texts(&log).into_iter().filter(|(mine, _)| !mine).map(|(_, t)| t).collect();
        let acknowledged =
            log["messages"].as_array().unwrap().iter().filter(|m| m["mine"] == true).all(|m| m["waiting_for"] == 0);
        theirs == (0..MESSAGES).map(|i| format!("{from}{i}")).collect::<Vec<_>>() && acknowledged
    };
    bob_events.until("Alice's hundred, in order, and his acknowledged", || all(&bob, 'a'));
    alice_events.until("Bob's hundred, in order, and hers acknowledged", || all(&alice, 'b'));

    // A group of three over Tor: Bob and Carol join with Alice's
    // invitation, everyone writes, and the three logs agree.
    let club = alice.ok(&["group", "create", "onion club"])["id"].as_str().unwrap().to_owned();
    let invitation = alice.ok(&["group", "invite", &club])["uri"].as_str().unwrap().to_owned();
    let carol_events = carol.events().patient(TOR_WAIT);
    bob.ok(&["group", "join", &invitation]);
    carol.ok(&["group", "join", &invitation]);
    // A newcomer reads what is written after the writer learned of its join
    // (THREATS.md, "Joining"): everyone writes once all know all.
    let members = |d: &Daemon| d.ok(&["group", "members", &club])["members"].as_array().unwrap().len();
    for (d, events) in [(&alice, &alice_events), (&bob, &bob_events), (&carol, &carol_events)] {
        events.until("three members", || members(d) == 3);
    }
    for (d, text) in [(&alice, "from Alice"), (&bob, "from Bob"), (&carol, "from Carol")] {
        d.ok(&["send", &club, text]);
    }
    let log_of = |d: &Daemon| {
        let log = d.ok(&["log", &club]);
        let mut entries: Vec<String> =
            log["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect();
        entries.sort();
        entries
    };
    let everyone = vec!["from Alice".to_owned(), "from Bob".to_owned(), "from Carol".to_owned()];
    for (d, events) in [(&alice, &alice_events), (&bob, &bob_events), (&carol, &carol_events)] {
        let deadline = Instant::now() + TOR_WAIT;
        while log_of(d) != everyone {
            assert!(
                Instant::now() < deadline,
                "the group did not converge: Alice {:?}, Bob {:?}, Carol {:?}; members {} / {} / {}",
                log_of(&alice),
                log_of(&bob),
                log_of(&carol),
                alice.ok(&["group", "members", &club]),
                bob.ok(&["group", "members", &club]),
                carol.ok(&["group", "members", &club]),
            );
            let _ = events.lines.recv_timeout(RECHECK);
        }
    }
    let ordered = |d: &Daemon| texts(&d.ok(&["log", &club]));
    let order: Vec<String> = ordered(&alice).into_iter().map(|(_, t)| t).collect();
    for d in [&bob, &carol] {
        assert_eq!(ordered(d).into_iter().map(|(_, t)| t).collect::<Vec<_>>(), order, "one order for all");
    }

    for d in [&server, &alice, &bob, &carol] {
        onion_only(d);
        only_tor_sockets(d, tornet);
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
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A rendezvous server on loopback TCP and as an onion service.
    let server = Daemon::start(&format!("serve = [\"rendezvous\"]\n{}", tor_table(tornet, Some(true))), &[]);
    let over_tcp = server.addr();
    let over_tor = format!("{}/p2p/{}", onion_of(&server), server.ready["peer_id"].as_str().unwrap());
    let peer = |name: &str| {
        let config = format!("{FAST}{}", tor_table(tornet, Some(false)));
        Daemon::start(&config, &["--rendezvous", &over_tcp, "--rendezvous", &over_tor, "--name", name])
    };
    let (alice, bob) = (peer("Alice"), peer("Bob"));
    let bob_events = request_contact_within(&alice, &bob, "Alice", TOR_WAIT);
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
    // Attached again by hand, Tor brings a new onion service up beside TCP.
    let listed = alice.ok(&["transport", "attach", "tor"]);
    assert!(listed["attached"].as_array().unwrap().iter().any(|t| t == "tor"), "{listed}");
    onion_of(&alice);
    assert_eq!(alice.ok(&["status"])["tor"]["attached"], true);
}
