//! What BlueZ offers this machine for veil's BLE link, as `veil status`
//! would say it: `BLE ready on hci0 (address)` or `BLE unavailable: why`.
//!
//! `veil-ble-radio` prints the state once; `veil-ble-radio --follow` prints
//! it again at every change (an adapter added, removed, powered on or off)
//! until interrupted. `--advertise` advertises a fresh token (under a fresh
//! key) and prints it (`advertising TOKEN`); `--scan` prints every veil
//! token seen in range (`seen TOKEN from ADDRESS`); both run until
//! interrupted, on the adapter `--adapter NAME` or the default one.
//!
//! With `--link`, the advertiser also listens for veil connections (the
//! `ble` plug-in: L2CAP, Noise, yamux) and answers pings; the scanner
//! connects to the first advertiser it sees, prints `connected in MS ms`,
//! then `ping MS ms` for `--count N` pings (default 10) and exits. The
//! system bus is `DBUS_SYSTEM_BUS_ADDRESS`, else the standard one.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{Multiaddr, Swarm, identity::Keypair, ping, swarm::SwarmEvent};
use veil_ble::{
    l2cap::{Ble, BleAddr},
    radio::{Radio, RadioState, probe},
};
use veil_crypto::{
    OsEntropy,
    advert::{AdvertKey, AdvertToken},
};
use veil_transports::TransportPlugin;

fn line(state: &RadioState) -> String {
    match state {
        RadioState::Ready { address, .. } => format!("{} ({address})", state.describe()),
        RadioState::Unavailable(_) => state.describe(),
    }
}

/// A swarm that only pings, over the `ble` plug-in alone.
fn swarm() -> Result<Swarm<ping::Behaviour>, String> {
    let keypair = Keypair::generate_ed25519();
    let transport = Ble.build(&keypair).map_err(|e| e.to_string())?;
    let pings = ping::Config::new().with_interval(Duration::from_millis(100));
    Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| e.to_string())?
        .with_behaviour(|_| ping::Behaviour::new(pings))
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// Listens on veil's channel and answers whoever connects, until killed.
async fn answer() {
    let mut swarm = match swarm() {
        Ok(swarm) => swarm,
        Err(e) => return println!("no link: {e}"),
    };
    if let Err(e) = swarm.listen_on(BleAddr::ANY.to_multiaddr()) {
        return println!("not listening: {e}");
    }
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => println!("listening {address}"),
            SwarmEvent::ConnectionEstablished { endpoint, .. } => {
                println!("connection from {}", endpoint.get_remote_address());
            }
            SwarmEvent::ListenerClosed { reason, .. } => return println!("listener closed: {reason:?}"),
            _ => {}
        }
    }
}

/// Connects to `target` and pings it `count` times.
async fn call(target: Multiaddr, count: usize) {
    let mut swarm = match swarm() {
        Ok(swarm) => swarm,
        Err(e) => return println!("no link: {e}"),
    };
    let started = Instant::now();
    if let Err(e) = swarm.dial(target) {
        return println!("not dialing: {e}");
    }
    let mut pings = 0;
    while pings < count {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => {
                println!("connected in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => return println!("not connected: {error}"),
            SwarmEvent::Behaviour(ping::Event { result: Ok(rtt), .. }) => {
                pings += 1;
                println!("ping {:.1} ms", rtt.as_secs_f64() * 1e3);
            }
            SwarmEvent::Behaviour(ping::Event { result: Err(e), .. }) => return println!("ping failed: {e}"),
            SwarmEvent::ConnectionClosed { cause, .. } => return println!("connection closed: {cause:?}"),
            _ => {}
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str);
    let adapter = value("--adapter");
    let count = value("--count").and_then(|n| n.parse().ok()).unwrap_or(10);
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
                match has("--link") {
                    true => answer().await,
                    false => std::future::pending::<()>().await,
                }
            }
            Err(why) => println!("not advertising: {why}"),
        }
    } else if has("--scan") {
        let first = match radio.scan(adapter).await {
            Ok(sightings) => {
                let mut sightings = std::pin::pin!(sightings);
                loop {
                    let Some(seen) = sightings.next().await else { break None };
                    println!("seen {} from {}", hex(&seen.token.to_bytes()), seen.at.to_multiaddr());
                    if has("--link") {
                        break Some(seen.at);
                    }
                }
            }
            Err(why) => return println!("not scanning: {why}"),
        };
        // The scan ended above: an LE connection waits until the
        // adapter's discovery stops (10 s in the VM).
        if let Some(at) = first {
            call(at.to_multiaddr(), count).await;
        }
    } else {
        let mut changes = std::pin::pin!(radio.changes());
        while let Some(state) = changes.next().await {
            println!("{}", line(&state));
        }
    }
}
