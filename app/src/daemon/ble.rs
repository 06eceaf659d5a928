//! The BLE radio as `veil status` reports it ("BLE ready on hci0" or "BLE
//! unavailable: why"), followed in the background so a status read costs
//! nothing: adapters added and removed, powered on and off. A machine
//! without Bluetooth (or without a D-Bus system bus) is normal: the daemon
//! runs and says why, and looks again every few seconds.

use futures::StreamExt;
use tokio::sync::watch;
use veil_ble::radio::{RECHECK, Radio, RadioState};

/// Shown until the radio was first read.
const CHECKING: &str = "BLE: checking the radio";

/// Starts following the radio; the receiver holds the latest line.
pub(crate) fn follow() -> watch::Receiver<String> {
    let (tx, rx) = watch::channel(CHECKING.to_owned());
    let report = move |state: RadioState| {
        let line = state.describe();
        tx.send_if_modified(|now| {
            let changed = *now != line;
            if changed {
                tracing::info!(radio = %line, "BLE radio");
                *now = line;
            }
            changed
        });
        !tx.is_closed()
    };
    tokio::spawn(async move {
        loop {
            match Radio::connect().await {
                Err(why) => {
                    if !report(RadioState::Unavailable(why)) {
                        return;
                    }
                }
                Ok(radio) => {
                    let mut changes = std::pin::pin!(radio.changes());
                    while let Some(state) = changes.next().await {
                        if !report(state) {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(RECHECK).await;
        }
    });
    rx
}
