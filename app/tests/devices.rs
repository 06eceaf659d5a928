//! Linking a new device through the CLI (issue 22): `veil device link` on
//! Alice's daemon, `veil init --link` in a new home, both codes typed as a
//! user would; then both of Alice's devices talk with Bob, who sees one
//! contact. Real processes on loopback, waiting on events, never on sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use veil_testkit::daemon::*;

/// The next line `lines` gives, as JSON.
fn next_json(lines: &mpsc::Receiver<String>, what: &str) -> Value {
    let line = lines.recv_timeout(WAIT).unwrap_or_else(|_| panic!("no {what} in time"));
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("{what}: not JSON: {line}"))
}

#[test]
fn a_new_device_joins_through_the_cli_and_both_devices_talk_with_bob() {
    let Befriended { server: _server, rendezvous, alice, bob, bob_events, conversation } = befriended();
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.run(&["send", &conversation, "before the link"]).code == 0);
    bob_events.until("Alice's message", || texts(&bob.ok(&["log", "Alice"])).len() == 1);
    let account = alice.ok(&["id"])["account"].as_str().unwrap().to_owned();

    // On the first device: the offer, then the code of whoever answers.
    let mut offering = veil()
        .arg("--home")
        .arg(alice.path())
        .args(["--json", "device", "link", "--lifetime", "5m"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut offering_in, offered) = (offering.stdin.take().unwrap(), lines_of(&mut offering));
    let offer = next_json(&offered, "the offer");
    let uri = offer["uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("veil://device/"), "{offer}");

    // On the new device, a home of its own that knows the rendezvous server.
    let home = TempDir::new().unwrap();
    std::fs::write(
        home.path().join("veil.toml"),
        format!("{FAST}rendezvous_servers = [\"{rendezvous}\"]\nmdns = false\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n"),
    )
    .unwrap();
    let mut joining = veil()
        .arg("--home")
        .arg(home.path())
        .args(["--json", "init", "--link", &uri])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut joining_in, joined) = (joining.stdin.take().unwrap(), lines_of(&mut joining));
    let new_code = next_json(&joined, "the new device's code")["code"].as_str().unwrap().to_owned();
    let first_code = next_json(&offered, "the first device's code")["code"].as_str().unwrap().to_owned();
    assert_eq!(new_code, first_code, "both devices show the same code");
    assert_eq!(new_code.len(), 7, "six digits in two groups: {new_code}");
    // The user types on each device the code the other shows.
    writeln!(offering_in, "{new_code}").unwrap();
    writeln!(joining_in, "{}", first_code.replace(' ', "")).unwrap();
    assert_eq!(next_json(&offered, "the confirmation")["confirmed"], true);
    let device = next_json(&offered, "the link")["linked"].as_str().unwrap().to_owned();
    let done = next_json(&joined, "the new home");
    assert_eq!(done["account"], account.as_str());
    assert!(offering.wait().unwrap().success());
    assert!(joining.wait().unwrap().success());
    assert!(!home.path().join(".device-join").exists(), "the node that carried the link is gone");

    // The new device is Alice: her account, her history, her contact.
    let (child, ready) = spawn_daemon(home.path(), &["--rendezvous", &rendezvous]);
    let alice2 = Daemon { home, child: Some(child), ready };
    assert_eq!(alice2.ok(&["id"])["account"], account.as_str());
    assert_eq!(alice2.ok(&["id"])["device"], device.as_str());
    assert_eq!(texts(&alice2.ok(&["log", &conversation])), vec![(true, "before the link".to_owned())]);
    for d in [&alice, &alice2] {
        let devices = d.ok(&["device", "list"])["devices"].as_array().unwrap().clone();
        assert_eq!(devices.len(), 2, "{devices:?}");
        assert_eq!(devices.iter().filter(|d| d["this_device"] == true).count(), 1);
    }

    // Both of Alice's devices write; all three read everything.
    let alice2_events = alice2.events();
    alice2.ok(&["send", &conversation, "from the new device"]);
    bob_events.until("the new device's message", || texts(&bob.ok(&["log", "Alice"])).len() == 2);
    bob.ok(&["send", "Alice", "hello to both"]);
    alice.ok(&["send", &conversation, "from the first device"]);
    for (d, events) in [(&alice, &alice_events), (&alice2, &alice2_events)] {
        events.until("every message", || texts(&d.ok(&["log", &conversation])).len() == 4);
    }
    bob_events.until("every message", || texts(&bob.ok(&["log", "Alice"])).len() == 4);
    let seen: Vec<String> = texts(&bob.ok(&["log", "Alice"])).into_iter().map(|(_, t)| t).collect();
    for d in [&alice, &alice2] {
        let theirs: Vec<String> = texts(&d.ok(&["log", &conversation])).into_iter().map(|(_, t)| t).collect();
        assert_eq!(theirs, seen, "the same order on every device");
    }
    assert_eq!(bob.ok(&["contact", "list"])["contacts"].as_array().unwrap().len(), 1, "Bob sees one contact");

    // The first device removes the new one, naming it by the start of its key.
    assert_ne!(alice.run(&["device", "remove", "zz"]).code, 0, "not a key");
    let removed = alice.ok(&["device", "remove", &device[..12]]);
    assert_eq!(removed["removed"], device.as_str());
    assert_eq!(removed["groups_renewed"], 2, "the 1:1 and the account's own group");
    assert_ne!(alice.run(&["device", "remove", &device]).code, 0, "removed once");
    let listed = |d: &Daemon| d.ok(&["device", "list"])["devices"].as_array().unwrap().clone();
    assert!(listed(&alice).iter().any(|d| d["device"] == device.as_str() && d["removed_at"].is_u64()));
    // The removed device learns it.
    alice2_events
        .until("its removal", || listed(&alice2).iter().any(|d| d["this_device"] == true && d["removed_at"].is_u64()));
    // The first device writes under the new keys; Bob reads it, and writes
    // under them himself once he has.
    alice.ok(&["send", &conversation, "after the removal"]);
    bob_events.until("the message after the removal", || texts(&bob.ok(&["log", "Alice"])).len() == 5);
    bob.ok(&["send", "Alice", "bob after the removal"]);
    alice_events.until("Bob's message after the removal", || texts(&alice.ok(&["log", &conversation])).len() == 6);
    // The removed device got none of it in the clear.
    let theirs = texts(&alice2.ok(&["log", &conversation]));
    assert_eq!(theirs.len(), 4, "{theirs:?}");
    let refused = alice2.run(&["send", &conversation, "still here?"]);
    assert!(refused.code != 0 && refused.stderr.contains("removed from its account"), "{}", refused.stderr);
}

#[test]
fn a_used_offer_and_a_bad_one_are_refused() {
    let home = TempDir::new().unwrap();
    let bad = run_in(home.path(), &["init", "--link", "veil://device/AAAA"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not a device offer"), "{}", bad.stderr);
    assert!(!home.path().join("veil.db").exists());
    // A home that holds an account already is not joined into.
    ok_in(home.path(), &["init"]);
    let again = run_in(home.path(), &["device", "join", "veil://device/AAAA"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already holds an account"), "{}", again.stderr);
}
