//! The Python example (`examples/python-client/two_friends.py`) against two
//! real daemons and a rendezvous server: over the gRPC API alone, Alice adds
//! Bob's link, Bob accepts, and each reads the other's message.
//!
//! Needs Python with grpcio and grpcio-tools (`VEIL_PYTHON` names the
//! interpreter; `.ci/run` makes a virtual environment with them). Without
//! them the test skips with the reason, or fails when `VEIL_FULL_TESTS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_testkit::daemon::*;

#[test]
fn the_python_client_befriends_and_talks_over_the_api() {
    let python = std::env::var("VEIL_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let usable = Command::new(&python).args(["-c", "import grpc, grpc_tools"]).output();
    if !usable.as_ref().is_ok_and(|o| o.status.success()) {
        let reason = format!("{python} cannot import grpc and grpc_tools (pip install grpcio grpcio-tools)");
        assert!(std::env::var("VEIL_FULL_TESTS").as_deref() != Ok("1"), "VEIL_FULL_TESTS=1 but {reason}");
        eprintln!("skipping the Python client test: {reason}");
        return;
    }
    let server = Daemon::start("", &["--serve", "rendezvous"]);
    let rendezvous = server.addr();
    let alice = Daemon::start(FAST, &["--rendezvous", &rendezvous]);
    let bob = Daemon::start(FAST, &["--rendezvous", &rendezvous, "--name", "Bob"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python-client/two_friends.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(alice.path().join("veil.sock"))
        .arg(bob.path().join("veil.sock"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Bob got a request from Alice"), "{stdout}");
    assert!(stdout.contains("Bob read: hello from Python"), "{stdout}");
    assert!(stdout.contains("Alice read: hello back"), "{stdout}");
    // The CLI sees what the Python client did.
    assert_eq!(
        texts(&bob.ok(&["log", "Alice"])),
        vec![(false, "hello from Python".into()), (true, "hello back".into())]
    );
}
