//! What BlueZ offers this machine for veil's BLE link, as `veil status`
//! would say it: `BLE ready on hci0 (address)` or `BLE unavailable: why`.
//!
//! `veil-ble-radio` prints the state once; `veil-ble-radio --follow` prints
//! it again at every change (an adapter added, removed, powered on or off)
//! until interrupted. `--advertise` advertises a fresh token (under a fresh
//! key) and prints it (`advertising TOKEN`); `--scan` prints every veil
//! token seen in range (`seen TOKEN from ADDRESS`); both run until
//! interrupted, on the adapter `--adapter NAME` or the default one. The
//! system bus is `DBUS_SYSTEM_BUS_ADDRESS`, else the standard one.
#![allow(clippy::print_stdout)]

use futures::StreamExt;
use veil_ble::radio::{Radio, RadioState, probe};
use veil_crypto::{
    OsEntropy,
    advert::{AdvertKey, AdvertToken},
};

fn line(state: &RadioState) -> String {
    match state {
        RadioState::Ready { address, .. } => format!("{} ({address})", state.describe()),
        RadioState::Unavailable(_) => state.describe(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let adapter = args.iter().position(|a| a == "--adapter").and_then(|i| args.get(i + 1)).map(String::as_str);
    if !["--follow", "--advertise", "--scan"].iter().any(|f| has(f)) {
        println!("{}", line(&probe().await));
        return;
    }
    let radio = match Radio::connect().await {
        Ok(radio) => radio,
        Err(why) => return println!("{}", line(&RadioState::Unavailable(why))),
    };
    if has("--advertise") {
        let token = AdvertKey::generate(&mut OsEntropy).and_then(|key| AdvertToken::fresh(&key, &mut OsEntropy));
        let token = match token {
            Ok(token) => token,
            Err(e) => return println!("no token: {e}"),
        };
        match radio.advertise(adapter, &token).await {
            Ok(_advertising) => {
                println!("advertising {}", hex(&token.to_bytes()));
                std::future::pending::<()>().await;
            }
            Err(why) => println!("not advertising: {why}"),
        }
    } else if has("--scan") {
        match radio.scan(adapter).await {
            Ok(sightings) => {
                let mut sightings = std::pin::pin!(sightings);
                while let Some(seen) = sightings.next().await {
                    println!("seen {} from {}", hex(&seen.token.to_bytes()), seen.address);
                }
            }
            Err(why) => println!("not scanning: {why}"),
        }
    } else {
        let mut changes = std::pin::pin!(radio.changes());
        while let Some(state) = changes.next().await {
            println!("{}", line(&state));
        }
    }
}
