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
//! The harness (modes, the bare baseline) is `veil_testkit::bench::frames`.
//!
//! `VEIL_BENCH_SECS` sets the seconds per measurement (default 3).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use veil_actors::{Node, NodeEvent};
use veil_storage::keystore::KdfParams;
use veil_testkit::bench::{
    frames::{FRAME, Stats, WINDOW, bench_bare, bench_network, measure},
    round1, round3, secs,
};
use veil_testkit::network::config as network_config;
use veil_transports::{Policy, Quic, Tcp, TransportPlugin};

/// Actor-layer throughput with 64 in flight, as a share of bare request-response.
const TCP_THROUGHPUT_MIN: f64 = 0.8;
const QUIC_THROUGHPUT_MIN: f64 = 0.7;
/// Actor-layer sequential p50 RTT, as a multiple of bare request-response.
const RTT_P50_MAX: f64 = 1.3;

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
    let dur = secs(3.0);
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
