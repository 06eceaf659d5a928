//! What BlueZ offers this machine for veil's BLE link, as `veil status`
//! would say it: `BLE ready on hci0 (address)` or `BLE unavailable: why`.
//!
//! `veil-ble-radio` prints the state once; `veil-ble-radio --follow` prints
//! it again at every change (an adapter added, removed, powered on or off)
//! until interrupted. The system bus is `DBUS_SYSTEM_BUS_ADDRESS`, else the
//! standard one.
#![allow(clippy::print_stdout)]

use futures::StreamExt;
use veil_ble::radio::{Radio, RadioState, probe};

fn line(state: &RadioState) -> String {
    match state {
        RadioState::Ready { address, .. } => format!("{} ({address})", state.describe()),
        RadioState::Unavailable(_) => state.describe(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let follow = std::env::args().skip(1).any(|a| a == "--follow");
    if !follow {
        println!("{}", line(&probe().await));
        return;
    }
    match Radio::connect().await {
        Err(why) => println!("{}", line(&RadioState::Unavailable(why))),
        Ok(radio) => {
            let mut changes = std::pin::pin!(radio.changes());
            while let Some(state) = changes.next().await {
                println!("{}", line(&state));
            }
        }
    }
}
