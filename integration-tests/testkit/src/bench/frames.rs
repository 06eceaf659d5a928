//! Frame throughput and round-trip time of any sender, and the same for a
//! bare libp2p request-response pair with veil's frame codec: the limit a
//! frame bench compares with, measured in the same run.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm,
    identity::Keypair,
    request_response::{self, ProtocolSupport},
    swarm::SwarmEvent,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use veil_actors::transports::{DEFAULT_MAX_FRAME, FrameCodec, Network, Policy, TransportPlugin};

use super::{cpu_time, percentile_us, round1};
use crate::network::{config, key};

/// Bytes per frame.
pub const FRAME: usize = 256;
/// Frames in flight when pipelined.
pub const WINDOW: usize = 64;

/// The bare baseline's protocol (one substream per frame).
const BARE_PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/frame-rr/1");

/// What one sender achieved.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Frames per second with [`WINDOW`] in flight.
    pub pipelined_fps: f64,
    /// Process CPU microseconds per frame, pipelined.
    pub pipelined_cpu_us: f64,
    /// Median round trip one at a time, in microseconds.
    pub rtt_p50_us: f64,
    /// 99th percentile round trip one at a time, in microseconds.
    pub rtt_p99_us: f64,
    /// Frames per second one at a time.
    pub sequential_fps: f64,
}

impl Stats {
    /// The figures as JSON (rates whole, times to 0.1 µs).
    pub fn json(&self) -> Value {
        json!({
            "pipelined_fps": self.pipelined_fps.round(),
            "sequential_fps": self.sequential_fps.round(),
            "rtt_p50_us": round1(self.rtt_p50_us),
            "rtt_p99_us": round1(self.rtt_p99_us),
            "cpu_us_per_frame": round1(self.pipelined_cpu_us),
        })
    }
}

/// Runs `send` with `window` in flight for `dur`; returns frames per second
/// and process CPU µs per frame.
pub async fn pipelined<F, Fut>(dur: Duration, window: usize, send: F) -> (f64, f64)
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

/// Runs `send` one at a time for `dur`; returns the sorted round trips and
/// frames per second.
pub async fn sequential<F, Fut>(dur: Duration, send: F) -> (Vec<Duration>, f64)
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

/// Both modes after a warm-up of each: pipelined for `dur`, then one at a
/// time for `dur`.
pub async fn measure<F, Fut>(dur: Duration, send: F) -> Stats
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let _ = pipelined(dur / 4, WINDOW, &send).await;
    let _ = sequential(dur / 8, &send).await;
    let (pipelined_fps, pipelined_cpu_us) = pipelined(dur, WINDOW, &send).await;
    let (rtts, sequential_fps) = sequential(dur, &send).await;
    Stats {
        pipelined_fps,
        pipelined_cpu_us,
        rtt_p50_us: percentile_us(&rtts, 0.5),
        rtt_p99_us: percentile_us(&rtts, 0.99),
        sequential_fps,
    }
}

/// Two transports `Network`s (no actors) on `plugin`, B listening on
/// `listen`: A's acknowledged frames to B.
pub async fn bench_network(plugin: fn() -> Arc<dyn TransportPlugin>, listen: &str, dur: Duration) -> Stats {
    let (a, mut a_events) = Network::spawn(&key(), Policy::Direct, vec![plugin()], config()).unwrap();
    let (b, mut b_events) = Network::spawn(&key(), Policy::Direct, vec![plugin()], config()).unwrap();
    // The consumers take every event at once (acknowledgements follow).
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

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Bare {
    rr: request_response::Behaviour<FrameCodec>,
}

fn bare_swarm(plugin: &dyn TransportPlugin) -> Swarm<Bare> {
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let transport = plugin.build(&keypair).unwrap();
    let rr = request_response::Behaviour::with_codec(
        FrameCodec::new(DEFAULT_MAX_FRAME),
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

/// The bare limit: a libp2p request-response pair on `plugin`'s stack (its
/// Noise and yamux), the server answering each frame at once, the client a
/// swarm task that sends on request and reports each response.
pub async fn bench_bare(plugin: fn() -> Arc<dyn TransportPlugin>, listen: &str, dur: Duration) -> Stats {
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
