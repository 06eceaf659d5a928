//! A daemon's life, process-level: one per home behind a private socket,
//! `veil init`, signals that stop it cleanly, its default log, and the
//! scripted demo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_testkit::daemon::*;

#[test]
fn one_daemon_per_home_a_private_socket_and_a_clean_stop_on_signals() {
    let mut d = Daemon::start("", &[]);
    let socket = PathBuf::from(d.ready["socket"].as_str().unwrap());
    assert_eq!(socket, d.path().join("veil.sock"));
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    let second =
        veil().arg("--home").arg(d.path()).args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0"]).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8(second.stderr).unwrap();
    assert!(stderr.contains("veil: error: another veil process is already running on"), "{stderr}");
    d.ok(&["status"]); // the first one is untouched

    // Policies switch at run time; back under `direct` it listens again.
    assert_eq!(d.ok(&["policy", "anonymous"])["policy"], "anonymous");
    assert_eq!(d.ok(&["status"])["listen_addrs"], json!([]));
    assert_eq!(d.ok(&["policy", "direct"])["policy"], "direct");
    assert_eq!(d.ok(&["status"])["listen_addrs"].as_array().unwrap().len(), 1);

    assert_eq!(d.stop(rustix::process::Signal::TERM), 0, "SIGTERM stops it cleanly");
    assert!(!socket.exists(), "the socket is removed");
}

/// At its default level (`info`) the daemon's log names no peer id or
/// address: libp2p's own INFO lines (the local peer id, observed and
/// discovered addresses) are left out; they are there at `debug`.
#[test]
fn the_daemons_default_log_names_no_peer_id() {
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("default.log");
    let mut cmd = veil();
    cmd.env_remove("VEIL_LOG").arg("--home").arg(home.path()).args(["--json", "daemon"]);
    let mut child = cmd
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let ready: Value = serde_json::from_str(&lines.recv_timeout(WAIT).unwrap()).unwrap();
    ok_in(home.path(), &["policy", "anonymous"]);
    ok_in(home.path(), &["policy", "direct"]);
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM).unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("daemon API listening"), "INFO lines are logged: {text}");
    let peer = ready["peer_id"].as_str().unwrap();
    assert!(!text.contains(peer), "the peer id in the log: {text}");
    assert!(!text.contains("127.0.0.1"), "an address in the log: {text}");
}

#[test]
fn init_makes_a_private_home_and_sigint_stops_a_daemon() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let home = home.as_path();
    let init = ok_in(home, &["init", "--name", "Alice"]);
    assert_eq!(std::fs::metadata(home).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(init["config_created"], true);
    let again = ok_in(home, &["init", "--name", "Alice"]);
    assert_eq!((again["config_created"].clone(), again["account"].clone()), (json!(false), init["account"].clone()));
    let config = std::fs::read_to_string(home.join("veil.toml")).unwrap();
    assert!(config.starts_with("name = \"Alice\""), "{config}");
    let r = run_in(home, &["init", "--name", "Bob"]);
    assert_eq!(r.code, 1, "a different name is not silently ignored");

    let (mut child, ready) = spawn_daemon(home, &[]);
    assert_eq!(ready["account"], init["account"]);
    assert_eq!(ok_in(home, &["id"])["account"], init["account"]);
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::INT).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(run_in(home, &["id"]).code, 3, "stopped");
}

#[test]
fn the_scripted_demo_prints_a_conversation_and_exits_0() {
    let out = veil().args(["--json", "demo", "--script"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages = doc["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{doc}");
    assert_eq!(messages[1], json!({ "from": "you", "text": "Hello Bob! This is the veil demo." }));
    assert_eq!(messages[2]["from"], "Bob");
    assert_eq!(doc["accepted"], "Dave");
}
