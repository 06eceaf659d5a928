//! One-to-one messaging end to end, with the bare limits of the same work
//! measured in the same run. Two nodes in this process (the test fixtures:
//! loopback TCP, a rendezvous server node), each store prefilled with
//! `VEIL_BENCH_PREFILL` entries (default 1 000 000) of a group of its own:
//!
//! * **contact**: request → B sees it, accept → A sees it;
//! * **one at a time**: each message sent once the previous one arrived;
//! * **latency at an offered rate** (1 000 and 5 000 msg/s): sends start on
//!   a fixed schedule whatever the node does (kept by a thread of its own,
//!   not tokio's millisecond timer); latency runs from the scheduled start
//!   until B reports the message received (p50/p99/max);
//!   and at 1 000 msg/s once more between two other nodes whose stores
//!   skip the fsync of each commit (`Durability::ProcessCrash`);
//! * **pipelined**: `VEIL_BENCH_IN_FLIGHT` sends outstanding (default
//!   `IN_FLIGHT`) for `VEIL_BENCH_SECS`
//!   (default 60): appends/s at A (sends resolved, i.e. stored), delivered/s
//!   at B (counted, not recorded one by one, so the bench's own memory
//!   stays flat), acknowledged/s back at A, and the process RSS each second;
//!   per 10 s window, delivered/s and how long sends took to resolve
//!   (p50/p99: neither may degrade over the run); both nodes' CPU time per
//!   message and how many of the two cores they kept busy;
//! * **bare limits**: the crypto send step (ratchet, seal, sign), the
//!   receive step (open, verify, read), and batched store appends alone.
//!
//! `VEIL_BENCH_ONLY=pipelined` runs the pipelined part alone (for comparing
//! builds; the report then lacks the other figures).
//!
//! Targets (issue 15): ≥ 10 000 msg/s delivered; p50 < 1 ms and p99 < 5 ms
//! at 1 000 msg/s. Both nodes share the process, so RSS is the pair's.
//! Progress goes to stderr; one JSON document is printed on stdout.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

#[path = "../../storage/benches/support/generator.rs"]
mod generator;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, broadcast};
use veil_actors::{Node, NodeEvent};
use veil_crypto::{
    GroupId, GroupKeys, GroupSecret, OsEntropy, ReceiverChain, SenderChain, SigningSecret,
    envelope::{BodyKey, EntryHash, EntryKind, Position, SealedEntry, open_entry, seal_entry},
    ratchet::DEFAULT_WINDOW,
    time::{ManualClock, UnixTime},
};
use veil_storage::{
    Durability, GroupKind, NewEntry, Store, StoreOptions, Tuning,
    keystore::{KdfParams, KeySource},
};
use veil_testkit::bench::{cpu_time, env_or, percentile, rss_mib};
use veil_testkit::node::{T0, peer_builder, peer_on, rendezvous_server, schedule, tcp};

const IN_FLIGHT: usize = 256;
const PAYLOAD: usize = 100;
const TARGET_DELIVERED: f64 = 10_000.0;
const TARGET_P50_MS: f64 = 1.0;
const TARGET_P99_MS: f64 = 5.0;
const PREFILL_BATCH: usize = 5000;
/// How long the bench waits for stragglers before it reports them lost.
const DRAIN: Duration = Duration::from_secs(120);

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("{i:08}").into_bytes();
    p.resize(PAYLOAD, b'.');
    p
}

/// The store at `dir` (a node's own files), with a contact group nobody
/// else knows to fill.
async fn filler_store(dir: &Path) -> (Store, GroupId) {
    let key = KeySource::KeyFile(dir.join("storage.key"));
    let options = StoreOptions { kdf: KdfParams::FAST_INSECURE_FOR_TESTS, ..StoreOptions::default() };
    let store = Store::open_or_create(&dir.join("veil.db"), &key, options).await.unwrap();
    let secret = GroupSecret::from_bytes(rand_bytes());
    let device = SigningSecret::generate(&mut OsEntropy).unwrap();
    let group = store.insert_group(GroupKind::Contact, None, &secret, &device).await.unwrap();
    (store, group)
}

/// Appends `rows` in one transaction.
async fn append_rows(store: &Store, group: GroupId, rows: &[(SealedEntry, Position)]) {
    let batch: Vec<NewEntry<'_>> = rows
        .iter()
        .map(|(e, l)| NewEntry {
            group,
            entry: e,
            position: l,
            author: None,
            payload: None,
            ratchet: None,
            outbox: &[],
        })
        .collect();
    store.append_batch(&batch).await.unwrap();
}

/// Fills the store at `dir` with `count` entries, so its indexes hold a
/// million rows before the node starts.
async fn prefill(dir: &Path, count: usize) {
    let (store, group) = filler_store(dir).await;
    let mut generator = generator::Generator::new(u64::from_le_bytes(rand_bytes()[..8].try_into().unwrap()) | 1);
    let mut done = 0;
    while done < count {
        let rows = generator.batch(PREFILL_BATCH.min(count - done));
        append_rows(&store, group, &rows).await;
        done += rows.len();
    }
    store.close().await.unwrap();
}

fn rand_bytes() -> [u8; 32] {
    use veil_crypto::Entropy;
    let mut bytes = [0u8; 32];
    OsEntropy.fill(&mut bytes).unwrap();
    bytes
}

/// A task that stops when this is dropped.
struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The messages B reported received, and when; listens until dropped.
#[derive(Clone)]
struct Arrivals {
    seen: Arc<Mutex<HashMap<EntryHash, Instant>>>,
    news: Arc<Notify>,
    _listener: Arc<Listener>,
}

impl Arrivals {
    fn of(node: &Node) -> Self {
        let (seen, news): (Arc<Mutex<HashMap<EntryHash, Instant>>>, Arc<Notify>) = Default::default();
        let (mut events, record, told) = (node.events(), seen.clone(), news.clone());
        let task = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::MessageReceived { hash, .. }) => {
                        record.lock().unwrap().insert(hash, Instant::now());
                        told.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => eprintln!("arrivals: {n} events lost (lagging)"),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self { seen, news, _listener: Arc::new(Listener(task)) }
    }

    /// Waits until `check` holds of the arrivals, or `limit` passed.
    async fn until(&self, limit: Duration, check: impl Fn(&HashMap<EntryHash, Instant>) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let news = self.news.notified();
            if check(&self.seen.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, news).await.is_err() {
                return false;
            }
        }
    }
}

/// How many messages B reported received; listens until dropped. Keeps no
/// record per message, so the bench's own memory does not grow with the run.
struct Received {
    count: Arc<std::sync::atomic::AtomicUsize>,
    news: Arc<Notify>,
    _listener: Listener,
}

impl Received {
    fn of(node: &Node) -> Self {
        let (count, news): (Arc<std::sync::atomic::AtomicUsize>, Arc<Notify>) = Default::default();
        let (mut events, counted, told) = (node.events(), count.clone(), news.clone());
        let task = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::MessageReceived { .. }) => {
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        told.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => eprintln!("received: {n} events lost (lagging)"),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self { count, news, _listener: Listener(task) }
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` were received, or `limit` passed.
    async fn until(&self, limit: Duration, n: usize) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let news = self.news.notified();
            if self.count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, news).await.is_err() {
                return false;
            }
        }
    }
}

async fn contact(a: &Node, b: &Node) -> (GroupId, f64, f64) {
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let link = b.share_link().await.unwrap().uri;
    let start = Instant::now();
    a.send_request(&link, Some("A")).await.unwrap();
    let from = loop {
        if let Ok(NodeEvent::ContactRequestReceived { account, .. }) = b_events.recv().await {
            break account;
        }
    };
    let request_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let group = b.accept_contact(&from.signing).await.unwrap().group.unwrap();
    loop {
        if let Ok(NodeEvent::ContactAccepted { group: Some(g), .. }) = a_events.recv().await
            && g == group
        {
            break;
        }
    }
    (group, request_ms, start.elapsed().as_secs_f64() * 1e3)
}

async fn one_at_a_time(a: &Node, b: &Node, group: GroupId, count: usize) -> Value {
    let arrivals = Arrivals::of(b);
    let start = Instant::now();
    for i in 0..count {
        let hash = a.send(&group, &payload(i)).await.unwrap();
        assert!(arrivals.until(DRAIN, |seen| seen.contains_key(&hash)).await, "message {i} never arrived");
    }
    let per_s = count as f64 / start.elapsed().as_secs_f64();
    eprintln!("one at a time: {per_s:.0} msg/s");
    json!({ "messages": count, "msg_per_s": per_s })
}

/// Offers `rate` msg/s for `count` messages; latency from the scheduled start.
///
/// The schedule is kept by a thread of its own that sleeps until each send
/// is due and starts it on the runtime: tokio's timer has a resolution of
/// a millisecond, so sends scheduled with it would start up to 1 ms late,
/// and that lateness (the bench's, not the node's) would count as latency.
/// The thread's timer slack is cut to a nanosecond: Linux lets a sleep
/// overshoot by 50 µs by default, and that (the bench's lateness, not the
/// node's) counted as latency. How late the sends really started is
/// reported (`start_late_*`).
async fn offered(a: &Node, b: &Node, group: GroupId, rate: usize, count: usize) -> Value {
    let arrivals = Arrivals::of(b);
    let sent: Arc<Mutex<Vec<(EntryHash, Instant)>>> = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let (runtime, a) = (tokio::runtime::Handle::current(), a.clone());
    let start = Instant::now();
    let pacer = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            // Best effort: the lateness is reported either way.
            let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
            let mut tasks = Vec::with_capacity(count);
            let mut late = Vec::with_capacity(count);
            for i in 0..count {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                late.push(due.elapsed().as_secs_f64() * 1e3);
                let (a, sent) = (a.clone(), sent.clone());
                tasks.push(runtime.spawn(async move {
                    let hash = a.send(&group, &payload(i)).await.unwrap();
                    sent.lock().unwrap().push((hash, due));
                }));
            }
            (tasks, late)
        })
    };
    let (tasks, mut late) = tokio::task::spawn_blocking(move || pacer.join().unwrap()).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    late.sort_by(f64::total_cmp);
    let offering_s = start.elapsed().as_secs_f64();
    let all = arrivals.until(DRAIN, |seen| seen.len() >= count).await;
    let seen = arrivals.seen.lock().unwrap();
    let mut latencies: Vec<f64> = sent
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(hash, due)| Some(seen.get(hash)?.duration_since(*due).as_secs_f64() * 1e3))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let (p50, p99, max) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies.last().copied());
    let late_p50 = percentile(&late, 0.5);
    eprintln!(
        "offered {rate} msg/s: p50 {p50:.2} ms, p99 {p99:.2} ms, sends took {offering_s:.1} s, started {late_p50:.3} ms late"
    );
    json!({
        "offered_per_s": rate, "messages": count, "received": latencies.len(), "all_received": all,
        "sending_took_s": offering_s, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
        "start_late_p50_ms": late_p50, "start_late_p99_ms": percentile(&late, 0.99),
    })
}

async fn pipelined(a: &Node, b: &Node, group: GroupId, secs: u64) -> Value {
    let arrivals = Received::of(b);
    let acked = Arc::new(Mutex::new(0usize));
    let _acks = {
        let (mut events, acked) = (a.events(), acked.clone());
        Listener(tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::EntriesDelivered { hashes, .. }) => *acked.lock().unwrap() += hashes.len(),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }))
    };
    let in_flight = env_or("VEIL_BENCH_IN_FLIGHT", IN_FLIGHT);
    let permits = Arc::new(Semaphore::new(in_flight));
    let appended = Arc::new(Mutex::new(0usize));
    let (start, window) = (Instant::now(), Duration::from_secs(secs));
    // How long each send took to resolve (stored durably), by the 10 s
    // window it started in: the latency must not grow over the run.
    let send_ms: Arc<Mutex<Vec<Vec<f64>>>> = Arc::new(Mutex::new(vec![Vec::new(); secs.div_ceil(10) as usize]));
    let mut rss = vec![rss_mib()];
    let mut delivered_at = vec![0usize];
    let mut next_sample = start + Duration::from_secs(1);
    let cpu_start = cpu_time().as_secs_f64();
    let mut i = 0;
    while start.elapsed() < window {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (a, appended, send_ms) = (a.clone(), appended.clone(), send_ms.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            a.send(&group, &payload(i)).await.unwrap();
            let took = sent.elapsed().as_secs_f64() * 1e3;
            let slot = (sent.duration_since(start).as_secs() / 10) as usize;
            if let Some(slot) = send_ms.lock().unwrap().get_mut(slot) {
                slot.push(took);
            }
            *appended.lock().unwrap() += 1;
            drop(permit);
        });
        i += 1;
        if Instant::now() >= next_sample {
            rss.push(rss_mib());
            delivered_at.push(arrivals.count());
            next_sample += Duration::from_secs(1);
        }
    }
    let _ = permits.acquire_many(in_flight as u32).await.unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_time().as_secs_f64() - cpu_start;
    let (appended, delivered_in_window) = (*appended.lock().unwrap(), arrivals.count());
    let drained = arrivals.until(DRAIN, appended).await;
    let total = start.elapsed().as_secs_f64();
    let delivered = arrivals.count();
    let acked = *acked.lock().unwrap();
    rss.push(rss_mib());
    let peak = rss.iter().copied().fold(0.0, f64::max);
    let (appends_per_s, delivered_per_s) = (appended as f64 / elapsed, delivered as f64 / total);
    // Both nodes' CPU time per message appended in the window, and how
    // much of the machine's two cores it kept busy.
    let (cpu_us_per_message, cores_busy) = (cpu * 1e6 / appended.max(1) as f64, cpu / elapsed);
    eprintln!(
        "pipelined: {appends_per_s:.0} appends/s, {delivered_per_s:.0} delivered/s, {acked} acked, peak RSS {peak:.0} MiB, \
         {cpu_us_per_message:.0} us CPU per message, {cores_busy:.2} cores busy"
    );
    // Delivered per second and send latency in each 10 s window.
    let delivered_every_10_s: Vec<f64> =
        delivered_at.windows(11).step_by(10).map(|w| (w[10] - w[0]) as f64 / 10.0).collect();
    let latency_every_10_s: Vec<Value> = send_ms
        .lock()
        .unwrap()
        .iter_mut()
        .filter(|ms| !ms.is_empty())
        .map(|ms| {
            ms.sort_by(f64::total_cmp);
            json!({ "p50_ms": percentile(ms, 0.50), "p99_ms": percentile(ms, 0.99) })
        })
        .collect();
    json!({
        "in_flight": in_flight, "window_s": elapsed, "appended": appended, "appends_per_s": appends_per_s,
        "delivered_per_s_every_10_s": delivered_every_10_s, "send_latency_every_10_s": latency_every_10_s,
        "delivered": delivered, "delivered_in_window": delivered_in_window, "all_delivered": drained,
        "delivered_per_s": delivered_per_s, "acked": acked, "acked_per_s": acked as f64 / total,
        "cpu_us_per_message": cpu_us_per_message, "cores_busy": cores_busy,
        "rss_mib": {
            "start": rss[0], "end": rss[rss.len() - 1], "peak": peak,
            "every_10_s": rss.iter().step_by(10).copied().collect::<Vec<f64>>(),
        },
    })
}

/// The crypto steps alone: (send/s, receive/s).
fn bare_crypto(count: usize) -> (f64, f64) {
    let keys = GroupKeys::derive(&GroupSecret::from_bytes([3u8; 32]));
    let author = SigningSecret::generate(&mut OsEntropy).unwrap();
    let mut chain = SenderChain::generate(&mut OsEntropy).unwrap();
    let mut receiver = ReceiverChain::new(chain.state().clone(), DEFAULT_WINDOW).unwrap();
    let position = Position { kind: EntryKind::Message, lamport: 1, parents: vec![] };
    let start = Instant::now();
    let entries: Vec<_> = (0..count)
        .map(|i| {
            seal_entry(&keys, &author, &position, BodyKey::Message(&mut chain), &payload(i), &mut OsEntropy).unwrap()
        })
        .collect();
    let send = count as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for entry in &entries {
        open_entry(&keys, entry).unwrap().read_message(&mut receiver).unwrap();
    }
    (send, count as f64 / start.elapsed().as_secs_f64())
}

/// Batched appends alone into a fresh store: entries/s.
async fn bare_store(count: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, group) = filler_store(dir.path()).await;
    let rows = generator::Generator::new(7).batch(count);
    let start = Instant::now();
    for chunk in rows.chunks(PREFILL_BATCH) {
        append_rows(&store, group, chunk).await;
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    store.close().await.unwrap();
    rate
}

/// Latency at 1 000 msg/s between two more nodes whose stores skip the
/// fsync of each commit: what the two commits of a message cost under the
/// default durability.
async fn relaxed_latency(addr: &[libp2p::Multiaddr], clock: &ManualClock, prefill_count: usize) -> Value {
    let relaxed = Tuning { durability: Durability::ProcessCrash, ..Tuning::default() };
    let more: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for dir in &more {
        prefill(dir.path(), prefill_count).await;
    }
    let [c, d] = [&more[0], &more[1]]
        .map(|dir| peer_builder(dir, clock, addr, tcp(), schedule()).storage_tuning(relaxed).spawn());
    let (c, d) = (c.await.unwrap(), d.await.unwrap());
    let (relaxed_group, _, _) = contact(&c, &d).await;
    eprint!("process-crash durability: ");
    let at_1000 = offered(&c, &d, relaxed_group, 1000, 3000).await;
    for n in [c, d] {
        n.shutdown().await.unwrap();
    }
    at_1000
}

fn main() {
    let prefill_count = env_or("VEIL_BENCH_PREFILL", 1_000_000);
    let secs = env_or("VEIL_BENCH_SECS", 60) as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = runtime.block_on(async {
        let (crypto_send, crypto_receive) = bare_crypto(20_000);
        let store_append = bare_store(50_000).await;
        eprintln!("bare: send {crypto_send:.0}/s, receive {crypto_receive:.0}/s, store {store_append:.0}/s");

        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let started = Instant::now();
        for dir in &dirs[1..] {
            prefill(dir.path(), prefill_count).await;
        }
        eprintln!("prefilled {prefill_count} entries per store in {:.0} s", started.elapsed().as_secs_f64());
        let clock = ManualClock::new(UnixTime(T0 + 20));
        let (server, addr) = rendezvous_server(&dirs[0]).await;
        let (a, b) = (
            peer_on(&dirs[1], &clock, &addr, tcp(), schedule()).await,
            peer_on(&dirs[2], &clock, &addr, tcp(), schedule()).await,
        );
        let (group, request_ms, accept_ms) = contact(&a, &b).await;
        eprintln!("contact: request {request_ms:.1} ms, accept {accept_ms:.1} ms");

        let only_pipelined = std::env::var("VEIL_BENCH_ONLY").is_ok_and(|v| v == "pipelined");
        let (single, at_1000, at_5000) = match only_pipelined {
            true => (Value::Null, Value::Null, Value::Null),
            false => (
                one_at_a_time(&a, &b, group, 500).await,
                offered(&a, &b, group, 1000, 3000).await,
                offered(&a, &b, group, 5000, 10_000).await,
            ),
        };
        let piped = pipelined(&a, &b, group, secs).await;
        for n in [a, b] {
            n.shutdown().await.unwrap();
        }
        let relaxed_at_1000 = match only_pipelined {
            true => Value::Null,
            false => relaxed_latency(&addr, &clock, prefill_count).await,
        };
        server.shutdown().await.unwrap();

        let limit = crypto_send.min(crypto_receive).min(store_append);
        let delivered = piped["delivered_per_s"].as_f64().unwrap_or(0.0);
        let (p50, p99) =
            (at_1000["p50_ms"].as_f64().unwrap_or(f64::NAN), at_1000["p99_ms"].as_f64().unwrap_or(f64::NAN));
        json!({
            "bench": "one_to_one",
            "prefilled_per_store": prefill_count,
            "contact_ms": { "request_seen": request_ms, "accept_seen": accept_ms },
            "one_at_a_time": single,
            "latency": {
                "at_1000": at_1000, "at_5000": at_5000,
                "at_1000_process_crash_durability": relaxed_at_1000,
            },
            "pipelined": piped,
            "bare": {
                "crypto_send_per_s": crypto_send, "crypto_receive_per_s": crypto_receive,
                "store_batched_append_per_s": store_append, "limit_per_s": limit,
            },
            "ratio_delivered_to_limit": delivered / limit,
            "targets": {
                "delivered_per_s": TARGET_DELIVERED, "p50_ms_at_1000": TARGET_P50_MS, "p99_ms_at_1000": TARGET_P99_MS,
                "met": delivered >= TARGET_DELIVERED && p50 < TARGET_P50_MS && p99 < TARGET_P99_MS,
            },
        })
    });
    println!("{report}");
}
