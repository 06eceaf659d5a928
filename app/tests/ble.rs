//! A daemon on a machine without Bluetooth runs normally and says why BLE
//! is unavailable in `veil status`, in JSON and in text, and refuses to
//! attach the `ble` transport with that reason. (The radio layer itself is
//! tested against a mocked BlueZ in veil-ble, the plug-in on real BlueZ.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use veil_testkit::daemon::*;

#[test]
fn a_daemon_without_a_system_bus_says_ble_is_unavailable_and_why() {
    let nowhere = tempfile::tempdir().unwrap();
    let mut cmd = veil();
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}", nowhere.path().join("no-bus").display()));
    let d = Daemon::start_with(cmd, "", &["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"]);
    let events = d.events();
    let mut ble = String::new();
    events.until("the radio read", || {
        ble = d.ok(&["status"])["ble"].as_str().unwrap().to_owned();
        ble != "BLE: checking the radio"
    });
    assert!(ble.starts_with("BLE unavailable: no D-Bus system bus ("), "{ble}");
    let text = veil().arg("--home").arg(d.path()).arg("status").output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("ble          BLE unavailable: no D-Bus")), "{text}");
    let transports = d.ok(&["transport"]);
    let r = d.run(&["transport", "attach", "ble"]);
    assert_eq!((r.code, r.json["error"]["code"].as_str()), (1, Some("refused")), "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("BLE unavailable: no D-Bus system bus ("), "{message}");
    assert_eq!(d.ok(&["transport"]), transports, "nothing attached");
    // And the node works: it listens and answers.
    assert!(!d.ok(&["status"])["listen_addrs"].as_array().unwrap().is_empty());
}
