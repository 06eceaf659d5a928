//! Tor between two veil nodes, on a private Tor network on loopback, next
//! to arti alone over the same kind of circuit in the same run:
//!
//! * **round trip**: a 64-byte frame from one veil network to the other and
//!   its acknowledgement (Noise, yamux, the frame stream), against a 64-byte
//!   echo over a bare onion-service stream (goal ≤ 1.2×, bar ≤ 1.5×);
//! * **throughput** over one onion connection: 1 KiB frames, 64 in flight;
//! * **attach to reachable**: a running node attaches Tor (bootstrapped)
//!   and listens until its new onion service can be reached.
//!
//! Needs the `tor` binary. Progress on stderr, one JSON line on stdout.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arti_client::TorClient;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use serde_json::json;
use tor_hsservice::config::OnionServiceConfigBuilder;
use veil_crypto::{NetworkKey, OsEntropy};
use veil_tor::{Tor, TorConfig, testnet::TestNetwork};
use veil_transports::libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use veil_transports::{Network, NetworkConfig, NetworkEvent, NetworkHandle, Policy, TransportPlugin};

const ROUND_TRIPS: usize = 200;
const PATIENCE: Duration = Duration::from_secs(120);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    json!({ "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99), "max_ms": ms[ms.len() - 1] })
}

/// A 64-byte echo over a bare onion-service stream: arti on both sides.
async fn raw_echo(dir: &std::path::Path, net: &TestNetwork) -> (Vec<f64>, f64) {
    let client = |name: &str| {
        let config = TorConfig::new(dir.join(name)).on_network(net.network()).arti().unwrap();
        TorClient::create_bootstrapped(config)
    };
    let (service_side, client_side) = (client("raw-service").await.unwrap(), client("raw-client").await.unwrap());
    let mut config = OnionServiceConfigBuilder::default();
    config.nickname("raw-echo".parse().unwrap());
    let (service, requests) = service_side.launch_onion_service(config.build().unwrap()).unwrap().unwrap();
    tokio::spawn(async move {
        let mut streams = std::pin::pin!(tor_hsservice::handle_rend_requests(requests));
        while let Some(request) = streams.next().await {
            tokio::spawn(async move {
                let Ok(mut stream) = request.accept(tor_cell::relaycell::msg::Connected::new_empty()).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                while stream.read_exact(&mut buf).await.is_ok() {
                    if stream.write_all(&buf).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let host = {
        use safelog::DisplayRedacted;
        service.onion_address().unwrap().display_unredacted().to_string()
    };
    let started = Instant::now();
    let stream = loop {
        match client_side.connect((host.as_str(), 443)).await {
            Ok(s) => break s,
            Err(_) if started.elapsed() < PATIENCE => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => panic!("the raw service is unreachable: {e}"),
        }
    };
    // Throughput: 1 MiB echoed in 1 KiB writes (reads run beside the writes).
    let (mut reader, mut writer) = AsyncReadExt::split(stream);
    const BULK: usize = 1024 * 1024;
    let t = Instant::now();
    let write = async move {
        for _ in 0..BULK / 1024 {
            writer.write_all(&[9u8; 1024]).await.unwrap();
        }
        writer.flush().await.unwrap();
        writer
    };
    let read = async move {
        let mut left = BULK;
        let mut chunk = vec![0u8; 16 * 1024];
        while left > 0 {
            let n = reader.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the echo stream ended");
            left = left.saturating_sub(n);
        }
        reader
    };
    let (writer, reader) = futures::join!(write, read);
    let bulk_mib_per_s = 1.0 / t.elapsed().as_secs_f64();
    let mut stream = reader.reunite(writer).unwrap();
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    let mut buf = [0u8; 64];
    for i in 0..ROUND_TRIPS + 10 {
        let t = Instant::now();
        stream.write_all(&[i as u8; 64]).await.unwrap();
        stream.flush().await.unwrap();
        stream.read_exact(&mut buf).await.unwrap();
        if i >= 10 {
            rtts.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    (rtts, bulk_mib_per_s)
}

fn network(tor: Option<&Tor>) -> (NetworkHandle, tokio::sync::mpsc::Receiver<NetworkEvent>, PeerId) {
    let key = NetworkKey::generate(&mut OsEntropy).unwrap();
    let peer = veil_transports::peer_id_of(&key).unwrap();
    let plugins: Vec<Arc<dyn TransportPlugin>> = tor.iter().map(|t| Arc::new((*t).clone()) as _).collect();
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config.request_timeout = Duration::from_secs(60);
    let (handle, events) = Network::spawn(&key, Policy::Anonymous, plugins, config).unwrap();
    (handle, events, peer)
}

/// Takes every frame B receives, so its acknowledgements flow.
fn drain(mut events: tokio::sync::mpsc::Receiver<NetworkEvent>) {
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let mut net = TestNetwork::start(&dir.path().join("tornet")).unwrap();
        tokio::task::block_in_place(|| net.wait_ready(Duration::from_secs(150))).unwrap();
        let network_start = t.elapsed().as_secs_f64();
        eprintln!("private Tor network ready in {network_start:.1} s");

        let (raw, raw_mib_per_s) = raw_echo(dir.path(), &net).await;
        eprintln!("raw echo: {} round trips", raw.len());

        let tor = |name: &str| Tor::start(TorConfig::new(dir.path().join(name)).on_network(net.network())).unwrap();
        let (tor_a, tor_b) = (tor("a"), tor("b"));
        let (a, _a_events, _) = network(Some(&tor_a));
        let (b, b_events, b_peer) = network(Some(&tor_b));
        drain(b_events);
        let onion = tokio::time::timeout(PATIENCE, b.listen(tor_b.listen_addr())).await.unwrap().unwrap();
        a.dial(onion.with(Protocol::P2p(b_peer))).await.unwrap();
        let mut veil = Vec::with_capacity(ROUND_TRIPS);
        for i in 0..ROUND_TRIPS + 10 {
            let t = Instant::now();
            a.send_frame(b_peer, vec![i as u8; 64]).await.unwrap();
            if i >= 10 {
                veil.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        eprintln!("veil frames: {} round trips", veil.len());

        // Throughput: 1 KiB frames, 64 in flight, for five seconds.
        const FRAME: usize = 1024;
        const IN_FLIGHT: usize = 64;
        let window = Duration::from_secs(5);
        let start = Instant::now();
        let mut sent = 0usize;
        let mut in_flight = futures::stream::FuturesUnordered::new();
        while start.elapsed() < window {
            while in_flight.len() < IN_FLIGHT {
                let a = a.clone();
                in_flight.push(async move { a.send_frame(b_peer, vec![7u8; FRAME]).await });
            }
            in_flight.next().await.unwrap().unwrap();
            sent += 1;
        }
        while let Some(r) = in_flight.next().await {
            r.unwrap();
            sent += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!("throughput: {sent} frames in {secs:.1} s");

        // A running node attaches Tor and listens until reachable.
        let (c, c_events, _) = network(None);
        drain(c_events);
        let t = Instant::now();
        c.attach(Arc::new(tor_a.clone())).await.unwrap();
        let reachable: Multiaddr =
            tokio::time::timeout(PATIENCE, c.listen(tor_a.listen_addr())).await.unwrap().unwrap();
        let attach_to_reachable = t.elapsed().as_secs_f64();
        eprintln!("attach to reachable: {attach_to_reachable:.2} s ({reachable})");

        let (raw_s, veil_s) = (summary(raw), summary(veil));
        let ratio = veil_s["p50_ms"].as_f64().unwrap() / raw_s["p50_ms"].as_f64().unwrap();
        println!(
            "{}",
            json!({
                "bench": "tor",
                "network_start_s": network_start,
                "round_trip": {
                    "raw_onion_echo": raw_s,
                    "veil_frame": veil_s,
                    "ratio_p50": ratio,
                    "goal": 1.2,
                    "bar": 1.5,
                    "within_goal": ratio <= 1.2,
                    "within_bar": ratio <= 1.5,
                },
                "throughput_one_connection": {
                    "frame_bytes": FRAME,
                    "in_flight": IN_FLIGHT,
                    "frames_per_s": sent as f64 / secs,
                    "mib_per_s": (sent * FRAME) as f64 / secs / (1024.0 * 1024.0),
                    "raw_onion_echo_mib_per_s_each_way": raw_mib_per_s,
                },
                "attach_to_reachable_s": attach_to_reachable,
            })
        );
        for n in [a, b, c] {
            let _ = n.shutdown().await;
        }
    });
}
