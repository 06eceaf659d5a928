//! The BlueZ adapter layer against a mocked BlueZ on a private D-Bus
//! (python3-dbusmock's `bluez5` template; no Bluetooth, no root, no real
//! system bus): no bus, no BlueZ, no adapter, an adapter on, off, on again,
//! and removed — what `veil status` says in each case, and that
//! [`Radio::changes`] follows each change as it happens.
//!
//! Needs `dbus-daemon` and python3-dbusmock (`apt-get install dbus
//! python3-dbusmock`); without them the test skips with the reason, or
//! fails when `VEIL_FULL_TESTS=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// The system's Python, which Debian's python3-dbusmock is installed for.
const PYTHON: &str = "/usr/bin/python3";
/// How long any step may take.
const WAIT: Duration = Duration::from_secs(30);

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn available() -> Result<(), String> {
    let ok = |cmd: &mut Command| cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok(Command::new("dbus-daemon").arg("--version")) {
        return Err("`dbus-daemon` is not installed (apt-get install dbus)".into());
    }
    if !ok(Command::new(PYTHON).args(["-c", "import dbusmock"])) {
        return Err("python3-dbusmock is not installed (apt-get install python3-dbusmock)".into());
    }
    Ok(())
}

/// A private bus at `socket`; returns once it listens (it prints its
/// address then).
fn bus(socket: &Path) -> Running {
    let mut child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address"])
        .arg(format!("--address=unix:path={}", socket.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("unix:"), "dbus-daemon printed {line:?}");
    Running(child)
}

/// `method` of the mock (or of an adapter object) through `dbus-send`.
fn call(address: &str, path: &str, method: &str, args: &[&str]) {
    let status = Command::new("dbus-send")
        .env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .args(["--system", "--print-reply", "--dest=org.bluez", path, method])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "dbus-send {path} {method} {args:?}");
}

/// `veil-ble-radio` (this crate's tool) on the bus at `address`.
fn radio(address: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_veil-ble-radio"));
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", address).stderr(Stdio::null());
    cmd
}

/// What `veil-ble-radio` says once.
fn probe(address: &str) -> String {
    let out = radio(address).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `veil-ble-radio --follow`: its lines, as they come.
struct Follow {
    _child: Running,
    lines: mpsc::Receiver<String>,
}

impl Follow {
    fn start(address: &str) -> Self {
        let mut child = radio(address).arg("--follow").stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { _child: Running(child), lines }
    }

    fn next(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a change within the bound")
    }
}

#[test]
fn the_radio_says_what_is_missing_and_follows_an_adapter_on_off_and_away() {
    if let Err(reason) = available() {
        assert!(std::env::var("VEIL_FULL_TESTS").as_deref() != Ok("1"), "VEIL_FULL_TESTS=1 but {reason}");
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("system_bus");
    let address = format!("unix:path={}", socket.display());

    // No bus at all.
    let nothing = format!("unix:path={}", dir.path().join("nothing").display());
    let said = probe(&nothing);
    assert!(said.starts_with("BLE unavailable: no D-Bus system bus ("), "{said}");

    // A bus, but no BlueZ on it.
    let _bus = bus(&socket);
    assert_eq!(probe(&address), "BLE unavailable: BlueZ (bluetoothd) is not running");

    // BlueZ without an adapter (the mock takes its bus name a moment after
    // it starts).
    let bluez = mock_bluez(&address);
    let deadline = Instant::now() + WAIT;
    let mut said = probe(&address);
    while said == "BLE unavailable: BlueZ (bluetoothd) is not running" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        said = probe(&address);
    }
    assert_eq!(said, "BLE unavailable: no Bluetooth adapter");

    // Each change, as it happens.
    let follow = Follow::start(&address);
    assert_eq!(follow.next(), "BLE unavailable: no Bluetooth adapter", "first, the state now");
    call(&address, "/org/bluez", "org.bluez.Mock.AddAdapter", &["string:hci0", "string:veil-test"]);
    let ready = "BLE ready on hci0 (00:01:02:03:04:05)";
    assert_eq!(follow.next(), ready);
    let powered = |on: bool| {
        let value = format!("variant:boolean:{on}");
        let args = ["string:org.bluez.Adapter1", "string:Powered", value.as_str()];
        call(&address, "/org/bluez/hci0", "org.freedesktop.DBus.Properties.Set", &args);
    };
    powered(false);
    assert_eq!(follow.next(), "BLE unavailable: the Bluetooth adapter hci0 is powered off");
    powered(true);
    assert_eq!(follow.next(), ready);
    call(&address, "/org/bluez", "org.bluez.Mock.RemoveAdapter", &["string:hci0"]);
    assert_eq!(follow.next(), "BLE unavailable: no Bluetooth adapter");

    // BlueZ killed outright, as a crash: it says nothing on its way out
    // (no adapter removed, no property changed), yet the radio sees it go
    // and come back.
    call(&address, "/org/bluez", "org.bluez.Mock.AddAdapter", &["string:hci0", "string:veil-test"]);
    assert_eq!(follow.next(), ready);
    drop(bluez);
    assert_eq!(follow.next(), "BLE unavailable: BlueZ (bluetoothd) is not running");
    let _bluez = mock_bluez(&address);
    assert_eq!(follow.next(), "BLE unavailable: no Bluetooth adapter");
    call(&address, "/org/bluez", "org.bluez.Mock.AddAdapter", &["string:hci0", "string:veil-test"]);
    assert_eq!(follow.next(), ready);
}

/// python-dbusmock's BlueZ on the bus at `address`, killed when dropped.
fn mock_bluez(address: &str) -> Running {
    Running(
        Command::new(PYTHON)
            .args(["-m", "dbusmock", "--system", "--template", "bluez5"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}
