//! Message latency through a circuit relay next to direct latency, in the
//! same run: a Direct sender reaches a receiver over loopback TCP directly,
//! and a second receiver (policy `Relayed`) through a relay's
//! `/p2p-circuit`. Frames of 256 bytes are sent one at a time; each send
//! resolves when the receiver acknowledged it (a round trip). Prints one
//! JSON document (the last line).
//!
//! `VEIL_BENCH_SECS` sets the seconds per measurement (default 2).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::{PeerId, multiaddr::Protocol};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use veil_crypto::{NetworkKey, OsEntropy};
use veil_transports::{Network, NetworkConfig, NetworkEvent, NetworkHandle, Policy, Tcp, TransportPlugin};

const FRAME: usize = 256;

fn secs() -> Duration {
    let s = std::env::var("VEIL_BENCH_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

fn spawn(policy: Policy, config: NetworkConfig) -> (NetworkHandle, mpsc::Receiver<NetworkEvent>, PeerId) {
    let key = NetworkKey::generate(&mut OsEntropy).unwrap();
    let peer = veil_transports::peer_id_of(&key).unwrap();
    let tcp = vec![Arc::new(Tcp::new()) as Arc<dyn TransportPlugin>];
    let (handle, events) = Network::spawn(&key, policy, tcp, config).unwrap();
    (handle, events, peer)
}

fn config() -> NetworkConfig {
    let mut c = NetworkConfig::default();
    c.mdns = false;
    c
}

/// Consumes events so the receivers keep acknowledging.
fn drain(mut events: mpsc::Receiver<NetworkEvent>) {
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

/// Round trips to `to` for `secs()`: p50, p99 and the count.
async fn rtts(from: &NetworkHandle, to: PeerId) -> Value {
    for _ in 0..50 {
        from.send_frame(to, vec![0; FRAME]).await.unwrap();
    }
    let mut samples = Vec::new();
    let end = Instant::now() + secs();
    while Instant::now() < end {
        let t = Instant::now();
        from.send_frame(to, vec![0; FRAME]).await.unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    json!({ "rtt_p50_us": at(0.5).round(), "rtt_p99_us": at(0.99).round(), "samples": samples.len() })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut relay_cfg = config();
    relay_cfg.relay_server = true;
    let (relay, relay_events, relay_id) = spawn(Policy::Direct, relay_cfg);
    drain(relay_events);
    let relay_addr = relay.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap().with(Protocol::P2p(relay_id));

    let (direct, direct_events, direct_id) = spawn(Policy::Direct, config());
    drain(direct_events);
    let direct_addr = direct.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await.unwrap();

    let mut relayed_cfg = config();
    relayed_cfg.relays = vec![relay_addr.clone()];
    let (relayed, relayed_events, relayed_id) = spawn(Policy::Relayed, relayed_cfg);
    drain(relayed_events);
    let circuit = relayed.use_relay(relay_addr).await.unwrap();

    let (sender, sender_events, _) = spawn(Policy::Direct, config());
    drain(sender_events);
    sender.dial(direct_addr).await.unwrap();
    sender.dial(circuit.with_p2p(relayed_id).unwrap()).await.unwrap();

    let direct_rtt = rtts(&sender, direct_id).await;
    let relayed_rtt = rtts(&sender, relayed_id).await;
    let report = json!({
        "bench": "relay",
        "frame_bytes": FRAME,
        "transport": "tcp-loopback",
        "direct": direct_rtt,
        "relayed": relayed_rtt,
        "relayed_over_direct_p50": (relayed_rtt["rtt_p50_us"].as_f64().unwrap() / direct_rtt["rtt_p50_us"].as_f64().unwrap() * 100.0).round() / 100.0,
    });
    println!("{report}");
}
