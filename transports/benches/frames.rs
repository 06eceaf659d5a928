//! Frame throughput and round-trip time between two `Network`s over loopback
//! TCP and QUIC, next to a bare libp2p request-response pair using the same
//! codec, transport and Noise/yamux stack, measured in the same run.
//!
//! Two measurements per stack: 64 frames in flight (frames/s) and one frame
//! at a time (round-trip p50/p99). Frames are 256 bytes; acknowledgements are
//! empty. Prints one JSON document (the last line).
//!
//! `VEIL_BENCH_SECS` sets the seconds per measurement (default 2).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use veil_crypto::{NetworkKey, OsEntropy};
use veil_transports::{FrameCodec, Network, NetworkConfig, Policy, Quic, Tcp, TransportPlugin};

const FRAME: usize = 256;

/// The bare request-response baseline's protocol (one substream per frame).
const BARE_PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/bench/frame-rr/1");
const WINDOW: usize = 64;

fn secs() -> Duration {
    let s = std::env::var("VEIL_BENCH_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

struct Stats {
    pipelined_fps: f64,
    rtt_p50_us: f64,
    rtt_p99_us: f64,
    sequential_fps: f64,
}

impl Stats {
    fn json(&self) -> Value {
        json!({
            "pipelined_fps": self.pipelined_fps.round(),
            "sequential_fps": self.sequential_fps.round(),
            "rtt_p50_us": (self.rtt_p50_us * 10.0).round() / 10.0,
            "rtt_p99_us": (self.rtt_p99_us * 10.0).round() / 10.0,
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Runs `send` with `window` in flight for `dur`; returns frames per second.
async fn pipelined<F, Fut>(dur: Duration, window: usize, send: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..window {
        in_flight.push(send());
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < dur {
        in_flight.next().await;
        done += 1;
        in_flight.push(send());
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    while in_flight.next().await.is_some() {}
    rate
}

/// Runs `send` one at a time for `dur`; returns sorted round-trip times.
async fn sequential<F, Fut>(dur: Duration, send: F) -> (Vec<Duration>, f64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
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
    Fut: std::future::Future<Output = ()>,
{
    // Warm up.
    let _ = pipelined(dur / 4, WINDOW, &send).await;
    let pipelined_fps = pipelined(dur, WINDOW, &send).await;
    let (rtts, sequential_fps) = sequential(dur, &send).await;
    Stats { pipelined_fps, rtt_p50_us: percentile(&rtts, 0.5), rtt_p99_us: percentile(&rtts, 0.99), sequential_fps }
}

async fn bench_network(plugin: fn() -> Arc<dyn TransportPlugin>, listen: &str, dur: Duration) -> Stats {
    let mut config = NetworkConfig::default();
    config.mdns = false;
    let key = || NetworkKey::generate(&mut OsEntropy).unwrap();
    let (a, a_events) = Network::spawn(&key(), Policy::Direct, vec![plugin()], config.clone()).unwrap();
    let (b, mut b_events) = Network::spawn(&key(), Policy::Direct, vec![plugin()], config).unwrap();
    // The consumer: takes every event at once (acknowledgements follow).
    tokio::spawn(async move { while b_events.recv().await.is_some() {} });
    let mut a_events = a_events;
    tokio::spawn(async move { while a_events.recv().await.is_some() {} });
    let addr = b.listen(listen.parse().unwrap()).await.unwrap();
    let b_peer = a.dial(addr).await.unwrap();
    let frame = vec![0x5a; FRAME];
    let stats = measure(dur, || {
        let a = a.clone();
        let frame = frame.clone();
        async move { a.send_frame(b_peer, frame).await.unwrap() }
    })
    .await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    stats
}

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
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(BareEvent::Rr(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) = server.select_next_some().await
            {
                let _ = server.behaviour_mut().rr.send_response(channel, Vec::new());
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
        let mut pending = std::collections::HashMap::new();
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
    stats
}

fn compare(network: &Stats, bare: &Stats) -> Value {
    json!({
        "network": network.json(),
        "bare_request_response": bare.json(),
        "pipelined_ratio": ((network.pipelined_fps / bare.pipelined_fps) * 1000.0).round() / 1000.0,
        "rtt_p50_ratio": ((network.rtt_p50_us / bare.rtt_p50_us) * 1000.0).round() / 1000.0,
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dur = secs();
    let result = runtime.block_on(async {
        let tcp = || Arc::new(Tcp::new()) as Arc<dyn TransportPlugin>;
        let quic = || Arc::new(Quic::new()) as Arc<dyn TransportPlugin>;
        let tcp_addr = "/ip4/127.0.0.1/tcp/0";
        let quic_addr = "/ip4/127.0.0.1/udp/0/quic-v1";
        let tcp_bare = bench_bare(tcp, tcp_addr, dur).await;
        eprintln!("tcp bare done");
        let tcp_net = bench_network(tcp, tcp_addr, dur).await;
        eprintln!("tcp network done");
        let quic_bare = bench_bare(quic, quic_addr, dur).await;
        eprintln!("quic bare done");
        let quic_net = bench_network(quic, quic_addr, dur).await;
        eprintln!("quic network done");
        json!({
            "bench": "veil-transports/frames",
            "frame_bytes": FRAME,
            "in_flight": WINDOW,
            "seconds_per_measurement": dur.as_secs_f64(),
            "tcp": compare(&tcp_net, &tcp_bare),
            "quic": compare(&quic_net, &quic_bare),
        })
    });
    println!("{result}");
}
