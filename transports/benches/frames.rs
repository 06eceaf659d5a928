//! Frame throughput and round-trip time between two `Network`s over loopback
//! TCP and QUIC, next to a bare libp2p request-response pair using the same
//! codec, transport and Noise/yamux stack, measured in the same run (the
//! harness is `veil_testkit::bench::frames`).
//!
//! Two measurements per stack: 64 frames in flight (frames/s) and one frame
//! at a time (round-trip p50/p99). Frames are 256 bytes; acknowledgements are
//! empty. Prints one JSON document (the last line).
//!
//! `VEIL_BENCH_SECS` sets the seconds per measurement (default 2).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;

use serde_json::{Value, json};
use veil_testkit::bench::{
    frames::{FRAME, Stats, WINDOW, bench_bare, bench_network},
    round3, secs,
};
use veil_transports::{Quic, Tcp, TransportPlugin};

fn compare(network: &Stats, bare: &Stats) -> Value {
    json!({
        "network": network.json(),
        "bare_request_response": bare.json(),
        "pipelined_ratio": round3(network.pipelined_fps / bare.pipelined_fps),
        "rtt_p50_ratio": round3(network.rtt_p50_us / bare.rtt_p50_us),
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dur = secs(2.0);
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
