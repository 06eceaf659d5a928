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
//! `ble` plug-in: Noise and yamux over an L2CAP channel or over veil's GATT
//! service) and answers pings; the scanner (over GATT with `--gatt`)
//! connects to the first advertiser it sees (with `--want TOKEN`, the one
//! advertising that token), prints `connected in MS ms`,
//! then `ping MS ms` for `--count N` pings (default 10), then with
//! `--bulk BYTES` sends that many bytes over a bare L2CAP channel (the
//! link's own throughput, beside veil's: PSM 0x83, which the advertiser
//! also answers) and prints `bulk BYTES bytes in MS ms`, and exits. The
//! system bus is `DBUS_SYSTEM_BUS_ADDRESS`, else the standard one.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{Swarm, identity::Keypair, ping, swarm::SwarmEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use veil_ble::{
    addr::GATT,
    l2cap::{Ble, BleAddr},
    radio::{Radio, RadioState, probe},
};
use veil_crypto::{
    OsEntropy,
    advert::{AdvertKey, AdvertToken},
};
use veil_transports::TransportPlugin;

/// The most a call (connecting, pinging, the bulk transfer) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The bare channel the bulk transfer runs on.
const BULK_PSM: u16 = 0x83;

fn line(state: &RadioState) -> String {
    match state {
        RadioState::Ready { address, .. } => format!("{} ({address})", state.describe()),
        RadioState::Unavailable(_) => state.describe(),
    }
}

/// A swarm that only pings, over the `ble` plug-in alone.
fn swarm(plugin: Ble) -> Result<Swarm<ping::Behaviour>, String> {
    let keypair = Keypair::generate_ed25519();
    let transport = plugin.build(&keypair).map_err(|e| e.to_string())?;
    let pings = ping::Config::new().with_interval(Duration::from_millis(100));
    Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| e.to_string())?
        .with_behaviour(|_| ping::Behaviour::new(pings))
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        // Longer than the plug-in's own connect limit, so its errors (which
        // say what stalled) are the ones reported, not a bare timeout.
        .with_connection_timeout(veil_ble::l2cap::CONNECT_TIMEOUT + Duration::from_secs(10))
        .build())
}

/// Listens on veil's channel and answers whoever connects, until killed.
async fn answer() {
    let mut swarm = match swarm(Ble::ANY_ADAPTER) {
        Ok(swarm) => swarm,
        Err(e) => return println!("no link: {e}"),
    };
    // Both links: the L2CAP channel and veil's GATT service.
    for addr in [BleAddr::ANY, BleAddr { psm: GATT, ..BleAddr::ANY }] {
        if let Err(e) = swarm.listen_on(addr.to_multiaddr()) {
            return println!("not listening on {addr}: {e}");
        }
    }
    tokio::spawn(sink());
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

/// Takes bare L2CAP channels on `BULK_PSM`: reads a length (8 bytes,
/// big-endian; L2CAP has no half-close to mark an end) and that many bytes,
/// then answers how many came.
async fn sink() {
    let listener =
        match bluer::l2cap::StreamListener::bind(BleAddr { psm: BULK_PSM, ..BleAddr::ANY }.socket_addr()).await {
            Ok(listener) => listener,
            Err(e) => return println!("no bulk listener: {e}"),
        };
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut length = [0u8; 8];
            if stream.read_exact(&mut length).await.is_err() {
                return;
            }
            let (length, mut total, mut buf) = (u64::from_be_bytes(length), 0u64, vec![0u8; 4096]);
            while total < length {
                match stream.read(&mut buf).await {
                    Ok(n @ 1..) => total += n as u64,
                    _ => break,
                }
            }
            let _ = stream.write_all(&total.to_be_bytes()).await;
        });
    }
}

/// Sends `bytes` over a bare channel to `at` and waits for the count back.
async fn bulk(from: Option<[u8; 6]>, at: BleAddr, bytes: usize) -> std::io::Result<u64> {
    // From the adapter that saw it, as the link: left to the kernel, the
    // route may leave from the other adapter, where no one knows the device.
    let socket = bluer::l2cap::Socket::<bluer::l2cap::Stream>::new_stream()?;
    if let Some(device) = from {
        socket.bind(bluer::l2cap::SocketAddr::new(bluer::Address(device), bluer::AddressType::LePublic, 0))?;
    }
    let mut stream = socket.connect(BleAddr { psm: BULK_PSM, ..at }.socket_addr()).await?;
    stream.write_all(&(bytes as u64).to_be_bytes()).await?;
    let chunk = vec![0x5a; 4096];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).await?;
        left -= n;
    }
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).await?;
    Ok(u64::from_be_bytes(count))
}

/// Connects to `at` from the adapter at `from` (else any), pings it `count`
/// times, then sends it `bulk` bytes.
async fn call(from: Option<[u8; 6]>, at: BleAddr, count: usize, bulk_bytes: usize) {
    let plugin = from.map_or(Ble::ANY_ADAPTER, Ble::from_adapter);
    let mut swarm = match swarm(plugin) {
        Ok(swarm) => swarm,
        Err(e) => return println!("no link: {e}"),
    };
    let started = Instant::now();
    if let Err(e) = swarm.dial(at.to_multiaddr()) {
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
    if bulk_bytes > 0 {
        let started = Instant::now();
        match bulk(from, at, bulk_bytes).await {
            Ok(n) if n == bulk_bytes as u64 => {
                println!("bulk {n} bytes in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
            }
            Ok(n) => println!("bulk: {n} of {bulk_bytes} bytes arrived"),
            Err(e) => println!("bulk failed: {e}"),
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
    let bulk_bytes = value("--bulk").and_then(|n| n.parse().ok()).unwrap_or(0);
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
                    let wanted = value("--want").is_none_or(|want| want == hex(&seen.token.to_bytes()));
                    if has("--link") && wanted {
                        break Some(seen.at);
                    }
                }
            }
            Err(why) => return println!("not scanning: {why}"),
        };
        // The scan ended above, but BlueZ stops its discovery a little
        // later, and an LE connection waits until it has (10 s in the VM).
        if let Some(at) = first {
            match radio.scan_stopped(adapter, Duration::from_secs(15)).await {
                Ok(true) => {}
                Ok(false) => println!("the adapter still discovers; connecting anyway"),
                Err(why) => return println!("not connecting: {why}"),
            }
            // Over veil's GATT service instead of an L2CAP channel.
            let at = if has("--gatt") { BleAddr { psm: GATT, ..at } } else { at };
            // From the adapter that saw it (BlueZ knows the device there).
            let from = match radio.state(adapter).await {
                RadioState::Ready { address, .. } => address.parse::<bluer::Address>().ok().map(|a| a.0),
                RadioState::Unavailable(_) => None,
            };
            let call = call(from, at, count, bulk_bytes);
            if tokio::time::timeout(CALL_TIMEOUT, call).await.is_err() {
                println!("the call took over {} s", CALL_TIMEOUT.as_secs());
            }
        }
    } else {
        let mut changes = std::pin::pin!(radio.changes(adapter));
        while let Some(state) = changes.next().await {
            println!("{}", line(&state));
        }
    }
}
