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

/// The line `veil status` shows for the radio as last read (`None`: not
/// read yet).
pub(crate) fn line(radio: Option<&RadioState>) -> String {
    radio.map_or_else(|| CHECKING.to_owned(), RadioState::describe)
}

/// Starts following the radio; the receiver holds the latest state.
pub(crate) fn follow() -> watch::Receiver<Option<RadioState>> {
    let (tx, rx) = watch::channel(None);
    let report = move |state: RadioState| {
        tx.send_if_modified(|now| {
            let changed = now.as_ref() != Some(&state);
            if changed {
                tracing::info!(radio = %state.describe(), "BLE radio");
                *now = Some(state);
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
