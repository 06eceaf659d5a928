//! Frame throughput and round-trip time between two veil `Node`s (the actor
//! layer: `Node::send_frame` → `TransportManager` actor → network, and on the
//! receiver network → `TransportManager` → `NodeEvent::FrameReceived`) over
//! loopback TCP and QUIC, next to a bare libp2p request-response pair using
//! the same codec (`FrameCodec`), transport and Noise/yamux stack, measured in
//! the same run. For attribution it also measures two transports `Network`s
//! driven directly (no actors, swarms on the bench's runtime).
//!
//! Two measurements per stack: 64 frames in flight (frames/s) and one frame
//! at a time (round-trip p50/p99). Frames are 256 bytes; a frame counts as
//! done when its send future resolves, i.e. the receiver acknowledged it.
//! Progress goes to stderr; one JSON document is printed on stdout at the end.
//!
//! `VEIL_BENCH_SECS` sets the seconds per measurement (default 3).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use veil_actors::{Node, NodeEvent};
use veil_crypto::{NetworkKey, OsEntropy};
use veil_storage::keystore::KdfParams;
use veil_transports::{FrameCodec, Network, NetworkConfig, Policy, Quic, Tcp, TransportPlugin};

const FRAME: usize = 256;

/// The bare request-response baseline's protocol (one substream per frame).
const BARE_PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/bench/frame-rr/1");
const WINDOW: usize = 64;

/// Actor-layer throughput with 64 in flight, as a share of bare request-response.
const TCP_THROUGHPUT_MIN: f64 = 0.8;
const QUIC_THROUGHPUT_MIN: f64 = 0.7;
/// Actor-layer sequential p50 RTT, as a multiple of bare request-response.
const RTT_P50_MAX: f64 = 1.3;

fn secs() -> Duration {
    let s = std::env::var("VEIL_BENCH_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(3.0);
    Duration::from_secs_f64(s)
}

/// Process CPU time (user + system), from `/proc/self/stat` (10 ms ticks).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14 and stime field 15 (1-based); `rest` starts at field 3.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

struct Stats {
    pipelined_fps: f64,
    pipelined_cpu_us: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
    sequential_fps: f64,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Runs `send` with `window` in flight for `dur`; returns frames per second
/// and process CPU µs per frame.
async fn pipelined<F, Fut>(dur: Duration, window: usize, send: F) -> (f64, f64)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..window {
        in_flight.push(send());
    }
    let (start, cpu) = (Instant::now(), cpu_time());
    let mut done = 0u64;
    while start.elapsed() < dur {
        in_flight.next().await;
        done += 1;
        in_flight.push(send());
    }
    let (elapsed, cpu) = (start.elapsed(), cpu_time().saturating_sub(cpu));
    while in_flight.next().await.is_some() {}
    (done as f64 / elapsed.as_secs_f64(), cpu.as_secs_f64() * 1e6 / done.max(1) as f64)
}

/// Runs `send` one at a time for `dur`; returns sorted round-trip times and
/// frames per second.
async fn sequential<F, Fut>(dur: Duration, send: F) -> (Vec<Duration>, f64)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut rtts = Vec::new();
    let start = Instant::now();
    while start.elapsed() < dur {
        let t = Instant::now();
        send().await;
        rtts.push(t.elapsed());
    }
    let rate = rtts.len() as f64 / start.elapsed().as_secs_f64();
    rtts.sort();
    (rtts, rate)
}

async fn measure<F, Fut>(dur: Duration, send: F) -> Stats
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    // Warm up both modes.
    let _ = pipelined(dur / 4, WINDOW, &send).await;
    let _ = sequential(dur / 8, &send).await;
    let (pipelined_fps, pipelined_cpu_us) = pipelined(dur, WINDOW, &send).await;
    let (rtts, sequential_fps) = sequential(dur, &send).await;
    Stats {
        pipelined_fps,
        pipelined_cpu_us,
        rtt_p50_us: percentile(&rtts, 0.5),
        rtt_p99_us: percentile(&rtts, 0.99),
        sequential_fps,
    }
}

fn network_config() -> NetworkConfig {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    config
}

// --- the actor layer: two `Node`s -------------------------------------------

async fn spawn_node(dir: &tempfile::TempDir, plugin: Arc<dyn TransportPlugin>) -> Node {
    Node::builder()
        .data_dir(dir.path())
        .kdf(KdfParams::FAST_INSECURE_FOR_TESTS)
        .policy(Policy::Direct)
        .network_config(network_config())
        .transport(plugin)
        .spawn()
        .await
        .unwrap()
}

/// Drains a node's events, counting received frames and lost (lagged) events.
fn drain(mut events: broadcast::Receiver<NodeEvent>, frames: Arc<AtomicU64>, lagged: Arc<AtomicU64>) {
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::FrameReceived { .. }) => {
                    frames.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

struct NodeRun {
    stats: Stats,
    acked: u64,
    received: u64,
    lagged: u64,
}

async fn bench_node(plugin: fn() -> Arc<dyn TransportPlugin>, listen: &str, dur: Duration) -> NodeRun {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // `receiver` listens and consumes its events; `sender` dials and sends.
    let receiver = spawn_node(&da, plugin()).await;
    let sender = spawn_node(&db, plugin()).await;
    let (frames, lagged) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    drain(receiver.events(), frames.clone(), lagged.clone());
    drain(sender.events(), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let addr = receiver.listen(listen.parse().unwrap()).await.unwrap();
    let peer = sender.dial(addr).await.unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let frame = vec![0x5a; FRAME];
    let stats = measure(dur, || {
        let (sender, frame, acked) = (sender.clone(), frame.clone(), acked.clone());
        async move {
            sender.send_frame(peer, frame).await.unwrap();
            acked.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await;
    // Let the last events reach the drain before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let run = NodeRun {
        stats,
        acked: acked.load(Ordering::Relaxed),
        received: frames.load(Ordering::Relaxed),
        lagged: lagged.load(Ordering::Relaxed),
    };
    sender.shutdown().await.unwrap();
    receiver.shutdown().await.unwrap();
    run
}

// --- attribution: two transports `Network`s without actors ------------------

async fn bench_network(plugin: fn() -> Arc<dyn TransportPlugin>, listen: &str, dur: Duration) -> Stats {
    let key = || NetworkKey::generate(&mut OsEntropy).unwrap();
    let (a, mut a_events) = Network::spawn(&key(), Policy::Direct, vec![plugin()], network_config()).unwrap();
    let (b, mut b_events) = Network::spawn(&key(), Policy::Direct, vec![plugin()], network_config()).unwrap();
    tokio::spawn(async move { while b_events.recv().await.is_some() {} });
    tokio::spawn(async move { while a_events.recv().await.is_some() {} });
    let addr = b.listen(listen.parse().unwrap()).await.unwrap();
    let b_peer = a.dial(addr).await.unwrap();
    let frame = vec![0x5a; FRAME];
    let stats = measure(dur, || {
        let (a, frame) = (a.clone(), frame.clone());
        async move { a.send_frame(b_peer, frame).await.unwrap() }
    })
    .await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    stats
}

// --- the baseline: bare libp2p request-response -----------------------------

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Bare {
    rr: request_response::Behaviour<FrameCodec>,
}

fn bare_swarm(plugin: &dyn TransportPlugin) -> Swarm<Bare> {
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let transport = plugin.build(&keypair).unwrap();
    let rr = request_response::Behaviour::with_codec(
        FrameCodec::new(veil_transports::DEFAULT_MAX_FRAME),
        [(BARE_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_max_concurrent_streams(256),
    );
    Swarm::new(
        transport,
        Bare { rr },
        peer,
        libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(Duration::from_secs(60)),
    )
}

/// Bare request-response: a client swarm task that sends on request and
/// replies when the response arrives, and a server that answers at once.
async fn bench_bare(plugin: fn() -> Arc<dyn TransportPlugin>, listen: &str, dur: Duration) -> Stats {
    let mut server = bare_swarm(&*plugin());
    let mut client = bare_swarm(&*plugin());
    server.listen_on(listen.parse().unwrap()).unwrap();
    let addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_peer: PeerId = *server.local_peer_id();
    let (stop_server, mut server_stopped) = oneshot::channel::<()>();
    let server_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut server_stopped => return,
                event = server.select_next_some() => {
                    if let SwarmEvent::Behaviour(BareEvent::Rr(request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    })) = event
                    {
                        let _ = server.behaviour_mut().rr.send_response(channel, Vec::new());
                    }
                }
            }
        }
    });
    client.dial(addr).unwrap();
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = client.select_next_some().await {
            break;
        }
    }
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<()>>(WINDOW * 2);
    let driver = tokio::spawn(async move {
        let mut pending = HashMap::new();
        loop {
            tokio::select! {
                req = rx.recv() => match req {
                    Some(reply) => {
                        let id = client.behaviour_mut().rr.send_request(&server_peer, vec![0x5a; FRAME]);
                        pending.insert(id, reply);
                    }
                    None => return,
                },
                event = client.select_next_some() => {
                    if let SwarmEvent::Behaviour(BareEvent::Rr(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, .. }, ..
                    })) = event
                        && let Some(reply) = pending.remove(&request_id)
                    {
                        let _ = reply.send(());
                    }
                }
            }
        }
    });
    let stats = measure(dur, || {
        let tx = tx.clone();
        async move {
            let (reply, done) = oneshot::channel();
            tx.send(reply).await.unwrap();
            done.await.unwrap();
        }
    })
    .await;
    drop(tx);
    driver.await.unwrap();
    let _ = stop_server.send(());
    server_task.await.unwrap();
    stats
}

// --- report -------------------------------------------------------------------

struct Transport {
    bare: Stats,
    network: Stats,
    node: NodeRun,
}

impl Transport {
    fn throughput_ratio(&self) -> f64 {
        self.node.stats.pipelined_fps / self.bare.pipelined_fps
    }

    fn rtt_ratio(&self) -> f64 {
        self.node.stats.rtt_p50_us / self.bare.rtt_p50_us
    }

    fn json(&self) -> Value {
        let (bare, net, node) = (&self.bare, &self.network, &self.node.stats);
        json!({
            "bare_per_s": bare.pipelined_fps.round(),
            "node_per_s": node.pipelined_fps.round(),
            "ratio": round3(self.throughput_ratio()),
            "bare_rtt_p50_us": round1(bare.rtt_p50_us),
            "node_rtt_p50_us": round1(node.rtt_p50_us),
            "rtt_ratio": round3(self.rtt_ratio()),
            "bare_rtt_p99_us": round1(bare.rtt_p99_us),
            "node_rtt_p99_us": round1(node.rtt_p99_us),
            "bare_sequential_per_s": bare.sequential_fps.round(),
            "node_sequential_per_s": node.sequential_fps.round(),
            "bare_cpu_us_per_frame": round1(bare.pipelined_cpu_us),
            "node_cpu_us_per_frame": round1(node.pipelined_cpu_us),
            "network": {
                "per_s": net.pipelined_fps.round(),
                "ratio": round3(net.pipelined_fps / bare.pipelined_fps),
                "rtt_p50_us": round1(net.rtt_p50_us),
                "rtt_p99_us": round1(net.rtt_p99_us),
                "cpu_us_per_frame": round1(net.pipelined_cpu_us),
            },
            "node_frames": {
                "acked": self.node.acked,
                "received": self.node.received,
                "lagged": self.node.lagged,
            },
        })
    }
}

async fn bench_transport(
    name: &str,
    plugin: fn() -> Arc<dyn TransportPlugin>,
    listen: &str,
    dur: Duration,
) -> Transport {
    let bare = bench_bare(plugin, listen, dur).await;
    eprintln!(
        "{name} bare:    {:>7.0} frames/s, rtt p50 {:>6.1} us, p99 {:>7.1} us",
        bare.pipelined_fps, bare.rtt_p50_us, bare.rtt_p99_us
    );
    let network = bench_network(plugin, listen, dur).await;
    eprintln!(
        "{name} network: {:>7.0} frames/s, rtt p50 {:>6.1} us, p99 {:>7.1} us",
        network.pipelined_fps, network.rtt_p50_us, network.rtt_p99_us
    );
    let node = bench_node(plugin, listen, dur).await;
    eprintln!(
        "{name} node:    {:>7.0} frames/s, rtt p50 {:>6.1} us, p99 {:>7.1} us",
        node.stats.pipelined_fps, node.stats.rtt_p50_us, node.stats.rtt_p99_us
    );
    Transport { bare, network, node }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dur = secs();
    let result = runtime.block_on(async {
        let tcp = || Arc::new(Tcp::new()) as Arc<dyn TransportPlugin>;
        let quic = || Arc::new(Quic::new()) as Arc<dyn TransportPlugin>;
        let tcp = bench_transport("tcp", tcp, "/ip4/127.0.0.1/tcp/0", dur).await;
        let quic = bench_transport("quic", quic, "/ip4/127.0.0.1/udp/0/quic-v1", dur).await;
        let checks = json!({
            "tcp_throughput": tcp.throughput_ratio() >= TCP_THROUGHPUT_MIN,
            "quic_throughput": quic.throughput_ratio() >= QUIC_THROUGHPUT_MIN,
            "tcp_rtt_p50": tcp.rtt_ratio() <= RTT_P50_MAX,
            "quic_rtt_p50": quic.rtt_ratio() <= RTT_P50_MAX,
        });
        let within = checks.as_object().is_some_and(|c| c.values().all(|v| v == &Value::Bool(true)));
        json!({
            "benchmark": "veil-actors/frames",
            "frame_bytes": FRAME,
            "in_flight": WINDOW,
            "seconds_per_measurement": dur.as_secs_f64(),
            "tcp": tcp.json(),
            "quic": quic.json(),
            "targets": {
                "tcp_throughput_ratio_min": TCP_THROUGHPUT_MIN,
                "quic_throughput_ratio_min": QUIC_THROUGHPUT_MIN,
                "rtt_p50_ratio_max": RTT_P50_MAX,
            },
            "checks": checks,
            "within_targets": within,
        })
    });
    println!("{result}");
}
