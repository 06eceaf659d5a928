//! The cost of veil's per-message protocol next to the bare primitives it is
//! built from, measured in the same run.
//!
//! * `send`: ratchet step + seal position/header/body + Ed25519 sign + entry tag
//!   (`seal_entry`), against bare AES-256-GCM seal + Ed25519 sign;
//! * `recv`: tag + position/header open + Ed25519 verify + ratchet step + body open
//!   (`open_entry` + `read_message`), against bare AES-256-GCM open + Ed25519 verify;
//! * `recv_batched`: the same for 64 entries of one author opened together,
//!   their signatures checked as one batch (`open_header_unchecked` +
//!   `failed_signatures`), reported per entry.
//!
//! After criterion's own output it prints one JSON document (the last line)
//! with the medians and the ratios; the target is a ratio of at most 1.5.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{hint::black_box, path::PathBuf};

use aes_gcm::{
    Aes256Gcm, Key,
    aead::{Aead, KeyInit, Nonce},
};
use criterion::{BatchSize, Criterion};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use veil_crypto::{
    GroupKeys, GroupSecret, Identity, OsEntropy, ReceiverChain, SenderChain,
    envelope::{
        AuthorKeys, BodyKey, EntryKind, Position, failed_signatures, open_entry, open_header_unchecked, seal_entry,
    },
    ratchet::MAX_WINDOW,
};

/// Payload size: the largest that fits the smallest padding bucket.
const PAYLOAD: usize = 252;
const TARGET_RATIO: f64 = 1.5;
/// Entries checked together in `recv_batched`.
const BATCH: usize = 64;

fn output_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"))
}

fn bench(c: &mut Criterion) {
    let payload = vec![0x42u8; PAYLOAD];
    let mut group = c.benchmark_group("message");

    // Bare primitives.
    let aes = Aes256Gcm::new(&Key::<Aes256Gcm>::from([7u8; 32]));
    let nonce = Nonce::<Aes256Gcm>::from([1u8; 12]);
    let sk = SigningKey::from_bytes(&[9u8; 32]);
    let vk = sk.verifying_key();
    group.bench_function("bare_aes_gcm_seal", |b| b.iter(|| aes.encrypt(&nonce, black_box(&payload[..])).unwrap()));
    let ct = aes.encrypt(&nonce, &payload[..]).unwrap();
    group.bench_function("bare_aes_gcm_open", |b| b.iter(|| aes.decrypt(&nonce, black_box(&ct[..])).unwrap()));
    group.bench_function("bare_ed25519_sign", |b| b.iter(|| sk.sign(black_box(&ct))));
    let sig = sk.sign(&ct);
    group.bench_function("bare_ed25519_verify", |b| b.iter(|| vk.verify(black_box(&ct), &sig).unwrap()));

    // The protocol.
    let mut entropy = OsEntropy;
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([3u8; 32]));
    let author = Identity::generate(&mut entropy).unwrap().device;
    let position = Position { kind: EntryKind::Message, lamport: 1, parents: vec![] };
    let mut chain = SenderChain::generate(&mut entropy).unwrap();
    let start = chain.state().clone();
    group.bench_function("protocol_seal_sign", |b| {
        b.iter(|| {
            seal_entry(&keys, &author, &position, BodyKey::Message(&mut chain), black_box(&payload), &mut entropy)
                .unwrap()
        })
    });
    group.bench_function("protocol_open_verify", |b| {
        b.iter_batched(
            || {
                // Every iteration opens message 0 of a chain at `start`, with
                // a receiver that has not seen it yet.
                let mut sender = SenderChain::from_state(start.clone());
                let entry =
                    seal_entry(&keys, &author, &position, BodyKey::Message(&mut sender), &payload, &mut entropy)
                        .unwrap();
                (entry, ReceiverChain::new(start.clone(), MAX_WINDOW).unwrap())
            },
            |(entry, mut receiver)| {
                let opened = open_entry(&keys, &entry).unwrap();
                opened.read_message(&mut receiver).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("protocol_open_verify_batch64", |b| {
        b.iter_batched(
            || {
                let mut sender = SenderChain::from_state(start.clone());
                let entries: Vec<_> = (0..BATCH)
                    .map(|_| {
                        seal_entry(&keys, &author, &position, BodyKey::Message(&mut sender), &payload, &mut entropy)
                            .unwrap()
                    })
                    .collect();
                (entries, ReceiverChain::new(start.clone(), MAX_WINDOW).unwrap(), AuthorKeys::default())
            },
            |(entries, mut receiver, mut authors)| {
                let (opened, checks): (Vec<_>, Vec<_>) = entries
                    .iter()
                    .map(|entry| {
                        entry.verify_tag(&keys.entry_auth_key).unwrap();
                        let position = entry.open_position(&keys.position_key).unwrap();
                        open_header_unchecked(&keys, entry, position, &mut authors).unwrap()
                    })
                    .unzip();
                assert!(failed_signatures(&checks).is_empty());
                opened.iter().map(|o| o.read_message(&mut receiver).unwrap().len()).sum::<usize>()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn median_ns(id: &str) -> Option<f64> {
    let path = output_dir().join("message").join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn report() {
    let ids = [
        "bare_aes_gcm_seal",
        "bare_aes_gcm_open",
        "bare_ed25519_sign",
        "bare_ed25519_verify",
        "protocol_seal_sign",
        "protocol_open_verify",
        "protocol_open_verify_batch64",
    ];
    let medians: Vec<(&str, Option<f64>)> = ids.iter().map(|id| (*id, median_ns(id))).collect();
    let get = |id: &str| medians.iter().find(|(i, _)| *i == id).and_then(|(_, v)| *v);
    let ratio = |proto: &str, a: &str, b: &str| Some(get(proto)? / (get(a)? + get(b)?));
    let send = ratio("protocol_seal_sign", "bare_aes_gcm_seal", "bare_ed25519_sign");
    let recv = ratio("protocol_open_verify", "bare_aes_gcm_open", "bare_ed25519_verify");
    let batched = get("protocol_open_verify_batch64").map(|ns| ns / BATCH as f64);
    let recv_batched = batched.and_then(|b| Some(b / (get("bare_aes_gcm_open")? + get("bare_ed25519_verify")?)));
    let fields: Vec<String> =
        medians.iter().map(|(id, v)| format!("\"{id}\":{}", v.map_or("null".into(), |v| format!("{v:.1}")))).collect();
    let fmt = |r: Option<f64>| r.map_or("null".into(), |r| format!("{r:.3}"));
    let within = matches!((send, recv), (Some(s), Some(r)) if s <= TARGET_RATIO && r <= TARGET_RATIO);
    println!(
        "{{\"benchmark\":\"veil-crypto/message\",\"payload_bytes\":{PAYLOAD},\"median_ns\":{{{}}},\
         \"recv_batched_ns_per_entry\":{},\"ratio_send\":{},\"ratio_recv\":{},\"ratio_recv_batched\":{},\
         \"target_ratio\":{TARGET_RATIO},\"within_target\":{within}}}",
        fields.join(","),
        batched.map_or("null".into(), |v| format!("{v:.1}")),
        fmt(send),
        fmt(recv),
        fmt(recv_batched),
    );
}

fn main() {
    let mut c = Criterion::default().output_directory(&output_dir()).configure_from_args();
    bench(&mut c);
    c.final_summary();
    report();
}
