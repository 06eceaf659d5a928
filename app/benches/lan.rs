//! Time from "both on the same LAN" to the first message delivered, with no
//! server anywhere (goal: under 1 s). Prints one JSON line.
//!
//! Alice and Bob, already contacts, run `veil daemon` with default settings
//! in network namespaces of the bench's own, on one bridge. Each round Bob's
//! daemon restarts with no LAN address (he is away), Alice writes to him,
//! and at t0 Bob's address is added (he walks in): the round ends when
//! Bob's `veil events` reports the message. In between: Bob's mDNS query on
//! the new address, Alice's answer, Bob's membership tokens, Alice
//! recognising their conversation and pushing what she owes. The bare
//! limit, measured in the same run, is the same message path between two
//! daemons already connected.
//!
//! Needs root and `ip` (network namespaces): without them it prints the
//! reason instead. Nothing leaves the namespaces (mDNS is multicast).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use veil_testkit::daemon::{netns::Namespaces, *};

const ROUNDS: usize = 7;
const GOAL_MS: f64 = 1000.0;
const BOB_ADDR: &str = "10.4.0.2/24";

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("{}", json!({ "bench": "lan", "skipped": "not root (network namespaces need it)" }));
        return;
    }
    let lan = Namespaces::create(&["lan", "a", "b"]);
    lan.lan("lan", &[("a", "10.4.0.1/24"), ("b", BOB_ADDR)]);
    let listen = ["--listen", "/ip4/0.0.0.0/tcp/0"];
    let alice = Daemon::start_with(lan.exec("a", veil_bin()), "", &[&["--name", "Alice"][..], &listen].concat());
    let mut bob = Daemon::start_with(lan.exec("b", veil_bin()), "", &[&["--name", "Bob"][..], &listen].concat());

    // Contacts first (over the LAN too).
    let events = request_contact(&bob, &alice, "Bob");
    let conversation = alice.ok(&["contact", "accept", "Bob"])["conversation"].as_str().unwrap().to_owned();
    drop(events);
    let bob_events = bob.events();
    bob_events.until("the acceptance", || bob.ok(&["contact", "list"])["contacts"][0]["state"] == "accepted");
    drop(bob_events);

    // The bare limit: the message path between connected daemons.
    let mut connected = Vec::new();
    for i in 0..ROUNDS {
        let events = bob.events();
        let t0 = Instant::now();
        let hash = alice.ok(&["send", &conversation, &format!("connected {i}")])["message"]["hash"]
            .as_str()
            .unwrap()
            .to_owned();
        received(&events, &hash);
        connected.push(t0.elapsed().as_secs_f64() * 1e3);
    }

    let mut walk_in = Vec::new();
    let mut ready_to_message = Vec::new();
    for i in 0..ROUNDS {
        // Bob is away: his daemon restarts with no address on the LAN.
        assert_eq!(bob.stop(rustix::process::Signal::INT), 0);
        lan.ip("b", &["addr", "flush", "dev", "eth0"]);
        let args = [&["--name", "Bob"][..], &listen].concat();
        let (child, ready) = spawn_daemon_with(lan.exec("b", veil_bin()), bob.path(), &args);
        (bob.child, bob.ready) = (Some(child), ready);
        let hash =
            alice.ok(&["send", &conversation, &format!("away {i}")])["message"]["hash"].as_str().unwrap().to_owned();
        let events = bob.events();
        // He walks in.
        let t0 = Instant::now();
        lan.ip("b", &["addr", "add", BOB_ADDR, "dev", "eth0"]);
        received(&events, &hash);
        walk_in.push(t0.elapsed().as_secs_f64() * 1e3);
        // And once more from a daemon start on the LAN (opening the app at home).
        assert_eq!(bob.stop(rustix::process::Signal::INT), 0);
        let hash =
            alice.ok(&["send", &conversation, &format!("home {i}")])["message"]["hash"].as_str().unwrap().to_owned();
        let t0 = Instant::now();
        let (child, ready) = spawn_daemon_with(lan.exec("b", veil_bin()), bob.path(), &args);
        (bob.child, bob.ready) = (Some(child), ready);
        let events = bob.events();
        until_logged(&bob, &conversation, &hash, &events);
        ready_to_message.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (walk, start, bare) = (stats(&mut walk_in), stats(&mut ready_to_message), stats(&mut connected));
    println!(
        "{}",
        json!({
            "bench": "lan",
            "rounds": ROUNDS,
            "on_lan_to_first_message_ms": walk,
            "daemon_start_to_first_message_ms": start,
            "bare_connected_message_ms": bare,
            "ratio_p50_to_bare": walk["p50"].as_f64().unwrap() / bare["p50"].as_f64().unwrap(),
            "goal_ms": GOAL_MS,
            "within_goal": walk["max"].as_f64().unwrap() < GOAL_MS,
        })
    );
}

/// Waits for `veil events` to report the message `hash` received.
fn received(events: &Events, hash: &str) {
    events.next_event(&format!("message {hash}"), |e| e["event"] == "message_received" && e["hash"] == hash);
}

/// Waits until `hash` is in Bob's log (it may have arrived before `events`
/// subscribed, while the daemon was starting).
fn until_logged(bob: &Daemon, conversation: &str, hash: &str, events: &Events) {
    events.until("the message, after the start", || {
        let log = bob.ok(&["log", conversation]);
        log["messages"].as_array().unwrap().iter().any(|m| m["hash"] == hash)
    });
}

/// p50, p90 and max of `samples` (ms).
fn stats(samples: &mut [f64]) -> Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    json!({ "p50": at(0.5), "p90": at(0.9), "max": at(1.0), "samples": samples.to_vec() })
}
