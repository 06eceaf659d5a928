//! The BLE link in the VM (`vm/run.sh`: real BlueZ over btvirt's emulated
//! air, software-emulated CPU): the time to connect with the `ble` plug-in
//! (an LE connection, Noise and yamux), the round trip of a ping over it,
//! and a bulk transfer over a bare L2CAP channel. Reported, not targeted:
//! the emulation is not a radio. One JSON line on stdout.
//!
//! Needs what the VM test needs (qemu-system-x86, linux-image-amd64,
//! busybox-static, bluez, bluez-test-tools); without them it reports why.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

use std::process::Command;

use serde_json::json;

const PINGS: usize = 100;
const BULK: usize = 256 * 1024;

/// The number in `line` after `prefix`, up to the next space.
fn number_after(line: &str, prefix: &str) -> Option<f64> {
    line.strip_prefix(prefix)?.split(' ').next()?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * p).round() as usize).copied()
}

fn main() {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/vm/run.sh"))
        .env("VEIL_BLE_RADIO", env!("CARGO_BIN_EXE_veil-ble-radio"))
        .env("VEIL_BLE_PINGS", PINGS.to_string())
        .env("VEIL_BLE_BULK", BULK.to_string())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    if !said.contains("VM-RESULT: pass") {
        eprintln!("{said}{}", String::from_utf8_lossy(&out.stderr));
        println!("{}", json!({ "bench": "ble_link", "error": said.lines().last().unwrap_or("no output") }));
        return;
    }
    let link: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("VM link: ")).collect();
    let connect_ms = link.iter().find_map(|l| number_after(l, "connected in "));
    let mut rtts: Vec<f64> = link.iter().filter_map(|l| number_after(l, "ping ")).collect();
    rtts.sort_by(f64::total_cmp);
    let bulk_ms = link
        .iter()
        .find_map(|l| l.strip_prefix(&format!("bulk {BULK} bytes in "))?.split(' ').next()?.parse::<f64>().ok());
    let throughput = bulk_ms.map(|ms| BULK as f64 / 1024.0 / (ms / 1e3));
    eprintln!("{}", link.join("\n"));
    println!(
        "{}",
        json!({
            "bench": "ble_link",
            "where": "QEMU software emulation, btvirt's virtual air, BlueZ, LE privacy",
            "connect_ms": connect_ms,
            "ping_ms": { "count": rtts.len(), "p50": percentile(&rtts, 0.5), "p99": percentile(&rtts, 0.99), "max": rtts.last() },
            "bulk": { "bytes": BULK, "ms": bulk_ms, "kib_per_s": throughput },
        })
    );
}
