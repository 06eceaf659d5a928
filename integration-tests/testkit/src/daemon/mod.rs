//! The reference app as processes: `veil` commands with a clean
//! environment, daemons in temporary homes, `veil events` followers, and
//! network namespaces ([`netns`]) for tests that need hosts of their own.
//!
//! The `veil` binary is the one Cargo built beside the running test or
//! bench (see [`veil_bin`]): these helpers serve the app crate's tests and
//! benches. For those, the module also brings what they use of `std`,
//! `serde_json` and `tempfile` into scope.

pub use std::{
    io::{BufRead, BufReader, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub use serde_json::{Value, json};

pub mod netns;
pub use tempfile::TempDir;

pub use crate::node::{RECHECK, WAIT};

/// The `veil` binary Cargo built for the running test or bench: beside the
/// `deps` folder the test's own executable is in.
pub fn veil_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(Path::parent).expect("a test runs from target/<profile>/deps");
        let bin = dir.join("veil");
        assert!(bin.exists(), "{} is missing: run the app crate's tests or benches", bin.display());
        bin.to_string_lossy().into_owned()
    })
}

/// `veil` with no VEIL_* settings from the environment.
pub fn veil() -> Command {
    clean(Command::new(veil_bin()))
}

/// `cmd` without VEIL_* settings from the environment, logging warnings only.
pub fn clean(mut cmd: Command) -> Command {
    for var in [
        "VEIL_HOME",
        "VEIL_LISTEN",
        "VEIL_RENDEZVOUS",
        "VEIL_RELAYS",
        "VEIL_BOOTSTRAP",
        "VEIL_POLICY",
        "VEIL_SERVE",
        "VEIL_NAME",
        "VEIL_NO_MDNS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("VEIL_LOG", "warn");
    // Test daemons never touch this machine's Bluetooth: no system bus.
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/veil-tests-have-no-system-bus");
    cmd
}

/// The lines a child prints, read on a thread of their own.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running `veil daemon` in a home of its own; killed when dropped, its
/// log's end printed if the test is failing.
#[derive(Debug)]
pub struct Daemon {
    /// Its home (configuration, store, log).
    pub home: TempDir,
    /// The process, until stopped.
    pub child: Option<Child>,
    /// The daemon's ready line.
    pub ready: Value,
}

/// A result of a CLI call: exit code, the JSON document, standard error.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    /// The first line of standard output as JSON (null if none).
    pub json: Value,
    /// Standard error.
    pub stderr: String,
}

/// A finished CLI call as a [`Run`].
pub fn parse(output: Output) -> Run {
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = stdout.lines().next().map(|l| serde_json::from_str(l).unwrap()).unwrap_or(Value::Null);
    Run { code: output.status.code().unwrap_or(-1), json, stderr: String::from_utf8(output.stderr).unwrap() }
}

/// `veil --home HOME --json ARGS…`, run to its end.
pub fn run_in(home: &Path, args: &[&str]) -> Run {
    parse(veil().arg("--home").arg(home).arg("--json").args(args).output().unwrap())
}

/// Runs and expects success.
pub fn ok_in(home: &Path, args: &[&str]) -> Value {
    let r = run_in(home, args);
    assert_eq!(r.code, 0, "veil {args:?} failed: {} {}", r.json, r.stderr);
    r.json
}

/// Starts `veil daemon` on loopback in `home` and waits for its ready line.
pub fn spawn_daemon(home: &Path, args: &[&str]) -> (Child, Value) {
    let loopback = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
    spawn_daemon_with(veil(), home, &[&loopback[..], args].concat())
}

/// Where a daemon started by [`spawn_daemon_with`] writes its log (warnings,
/// and the Tor transport's progress), shown when a test fails.
pub const DAEMON_LOG: &str = "daemon.log";

/// Starts `veil daemon` in `home` with exactly `args` through `cmd` (a
/// `veil` command, or a wrapper running it) and waits for its ready line.
pub fn spawn_daemon_with(mut cmd: Command, home: &Path, args: &[&str]) -> (Child, Value) {
    let log = std::fs::File::create(home.join(DAEMON_LOG)).unwrap();
    let mut child = cmd
        .env(
            "VEIL_LOG",
            std::env::var("VEIL_TEST_LOG")
                .unwrap_or_else(|_| "warn,veil_tor=debug,tor_hsservice=info,tor_guardmgr=info".into()),
        )
        .arg("--home")
        .arg(home)
        .args(["--json", "daemon"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let line = lines.recv_timeout(WAIT).expect("the daemon printed its ready line");
    (child, serde_json::from_str(&line).unwrap())
}

impl Daemon {
    /// Starts `veil daemon` on a new home with `config` and `args`, and
    /// waits for its ready line.
    pub fn start(config: &str, args: &[&str]) -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("veil.toml"), config).unwrap();
        let (child, ready) = spawn_daemon(home.path(), args);
        Self { home, child: Some(child), ready }
    }

    /// Starts `veil daemon` through `cmd` (see [`spawn_daemon_with`]) on a
    /// new home with `config` and exactly `args`.
    pub fn start_with(cmd: Command, config: &str, args: &[&str]) -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("veil.toml"), config).unwrap();
        let (child, ready) = spawn_daemon_with(cmd, home.path(), args);
        Self { home, child: Some(child), ready }
    }

    /// Its home.
    pub fn path(&self) -> &Path {
        self.home.path()
    }

    /// A CLI call against this daemon's home.
    pub fn run(&self, args: &[&str]) -> Run {
        run_in(self.path(), args)
    }

    /// A CLI call against this daemon's home, expected to succeed.
    pub fn ok(&self, args: &[&str]) -> Value {
        ok_in(self.path(), args)
    }

    /// Its dialable address, ending in `/p2p/<peer id>`.
    pub fn addr(&self) -> String {
        format!("{}/p2p/{}", self.ready["listen_addrs"][0].as_str().unwrap(), self.ready["peer_id"].as_str().unwrap())
    }

    /// `veil events`, once it is subscribed.
    pub fn events(&self) -> Events {
        let mut child = veil()
            .arg("--home")
            .arg(self.path())
            .args(["--json", "events"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(&mut child);
        let first: Value = serde_json::from_str(&lines.recv_timeout(WAIT).unwrap()).unwrap();
        assert_eq!(first, json!({ "event": "subscribed" }));
        Events { child, lines, patience: WAIT }
    }

    /// Stops the daemon with `signal` and returns its exit code.
    pub fn stop(&mut self, signal: rustix::process::Signal) -> i32 {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, signal).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait().map(|s| s.code().unwrap_or(-1)));
        });
        match rx.recv_timeout(WAIT) {
            Ok(code) => code.unwrap(),
            Err(_) => {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                panic!("the daemon did not stop within {WAIT:?}");
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.path().join(DAEMON_LOG)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            let name = self.ready["peer_id"].as_str().unwrap_or("?");
            // Whole logs kept for diagnosis when asked (VEIL_TEST_KEEP_LOGS=dir).
            if let Ok(dir) = std::env::var("VEIL_TEST_KEEP_LOGS") {
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(Path::new(&dir).join(format!("{name}.log")), &log);
            }
            eprintln!("--- the end of daemon {name}'s log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A running `veil events`; killed when dropped.
#[derive(Debug)]
pub struct Events {
    /// The process.
    pub child: Child,
    /// What it prints, one event per line.
    pub lines: mpsc::Receiver<String>,
    /// How long a wait may take before it fails ([`WAIT`] unless set).
    pub patience: Duration,
}

impl Events {
    /// The same, waiting up to `patience` (a bound for slow paths such as
    /// Tor, never a pause).
    pub fn patient(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Waits until `check` holds, checking again after every event and at
    /// least every 100 ms (a condition may turn true without an event).
    pub fn until(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + self.patience;
        while !check() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}");
            if let Err(mpsc::RecvTimeoutError::Disconnected) = self.lines.recv_timeout(left.min(RECHECK)) {
                panic!("`veil events` stopped while waiting for {what}");
            }
        }
    }
}

impl Events {
    /// The next event (as `veil events --json` prints it) that `pick`
    /// accepts; fails after [`WAIT`]. `pick` may assert on the events it
    /// passes over.
    pub fn next_event(&self, what: &str, mut pick: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + self.patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}");
            if let Ok(line) = self.lines.recv_timeout(left) {
                let event: Value = serde_json::from_str(&line).unwrap();
                if pick(&event) {
                    return event;
                }
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Short retry and sync intervals: everything happens within a second.
pub const FAST: &str = "sync_interval_ms = 200\ncontact_retry_ms = 200\n";

/// `from` adds `to`'s contact link; returns `to`'s events once `from`'s
/// request (from `name`) is there.
pub fn request_contact(from: &Daemon, to: &Daemon, name: &str) -> Events {
    request_contact_within(from, to, name, WAIT)
}

/// [`request_contact`], waiting up to `patience`.
pub fn request_contact_within(from: &Daemon, to: &Daemon, name: &str, patience: Duration) -> Events {
    let link = to.ok(&["link"])["uri"].as_str().unwrap().to_owned();
    let events = to.events().patient(patience);
    from.ok(&["contact", "add", &link]);
    events.until("the contact request", || {
        contact_named(&to.ok(&["contact", "list"]), name).is_some_and(|c| c["state"] == "incoming-received")
    });
    events
}

/// A rendezvous server, and Alice and Bob as contacts: Alice asked, Bob
/// accepted (Alice may not have heard yet).
#[derive(Debug)]
pub struct Befriended {
    /// The rendezvous server.
    pub server: Daemon,
    /// Its address.
    pub rendezvous: String,
    /// Who asked.
    pub alice: Daemon,
    /// Who accepted.
    pub bob: Daemon,
    /// Bob's events, subscribed before Alice's request.
    pub bob_events: Events,
    /// Their 1:1 conversation.
    pub conversation: String,
}

/// Starts a rendezvous server, Alice and Bob (with [`FAST`] intervals), and
/// makes them contacts.
pub fn befriended() -> Befriended {
    let server = Daemon::start("", &["--serve", "rendezvous"]);
    let rendezvous = server.addr();
    let alice = Daemon::start(FAST, &["--rendezvous", &rendezvous, "--name", "Alice"]);
    let bob = Daemon::start(FAST, &["--rendezvous", &rendezvous, "--name", "Bob"]);
    let bob_events = request_contact(&alice, &bob, "Alice");
    let conversation = bob.ok(&["contact", "accept", "Alice"])["conversation"].as_str().unwrap().to_owned();
    Befriended { server, rendezvous, alice, bob, bob_events, conversation }
}

/// The contact shown as `name` (its nickname, else the name it gave).
pub fn contact_named<'a>(contacts: &'a Value, name: &str) -> Option<&'a Value> {
    contacts["contacts"].as_array().unwrap().iter().find(|c| c["name"] == name)
}

/// The messages of a `veil log` document: whether each is mine, and its text.
pub fn texts(log: &Value) -> Vec<(bool, String)> {
    log["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["mine"].as_bool().unwrap(), m["text"].as_str().unwrap().to_owned()))
        .collect()
}
