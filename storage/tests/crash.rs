//! Crash safety, for real: a child process appends entries in a loop and
//! reports each entry on stdout only once `append` returned `Ok` (batches:
//! once `append_batch_deferred` returned and `sync` covered it); the parent kills it with SIGKILL at some point, reopens the store and
//! checks that nothing reported was lost and nothing was half-written:
//!
//! * every reported entry is stored, and `PRAGMA integrity_check` is clean;
//! * the stored sender chain is exactly the initial chain advanced once per
//!   stored message entry (the ratchet moved in the same transaction);
//! * every stored entry is owed exactly once to each peer it was enqueued for;
//! * no parent is missing and each log's only head is its newest entry;
//! * every page of both logs reads back (section hashes are checked on read),
//!   opens with the group keys, and decrypts — with a receiving chain started
//!   from the initial chain state — to the payload that was stored with it.
//!
//! The child is this test binary run again with `--exact crash_child
//! --ignored`; the environment tells it where the store is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{XorShift, companions, group_fixture, options_with, with_suffix};
use veil_crypto::{
    ChainState, GroupId, OsEntropy, ReceiverChain, SenderChain, TestEntropy,
    envelope::{BodyKey, EntryHash, EntryKind, Links, SealedEntry, open_entry, seal_entry},
    time::{ManualClock, UnixTime},
};
use veil_storage::{
    Appended, Durability, EntryRecord, GroupKind, NewEntry, Peer, RatchetUpdate, Store, Tuning, keystore::KeySource,
};

const DIR_VAR: &str = "VEIL_STORAGE_CRASH_DIR";
const SEED_VAR: &str = "VEIL_STORAGE_CRASH_SEED";
const DURABILITY_VAR: &str = "VEIL_STORAGE_CRASH_DURABILITY";
const CHECKPOINT_VAR: &str = "VEIL_STORAGE_CRASH_CHECKPOINT";
/// How long the parent waits for any one line before failing.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);
/// Entries one child appends before it stops and waits to be killed.
const CHILD_CAP: u64 = 500;
const GROUP_SEED: u8 = 0x37;
/// Every entry is owed to this peer…
const ALL: Peer = Peer([0xA1; 32]);
/// …and message entries with an even counter to this one as well.
const EVEN: Peer = Peer([0xE0; 32]);
const COMMITTED: &str = "COMMITTED ";
const CAPPED: &str = "CAPPED";

#[derive(Debug, Clone, Copy)]
struct Config {
    durability: Durability,
    /// `wal_autocheckpoint` in pages (small: a checkpoint after most commits).
    checkpoint_pages: u32,
}

impl Config {
    const PROCESS_CRASH: Self = Self { durability: Durability::ProcessCrash, checkpoint_pages: 10_000 };
    const POWER_LOSS: Self = Self { durability: Durability::PowerLoss, checkpoint_pages: 10_000 };

    fn tuning(self) -> Tuning {
        Tuning { durability: self.durability, wal_autocheckpoint_pages: self.checkpoint_pages, ..Tuning::default() }
    }

    fn from_env() -> Self {
        let durability = match std::env::var(DURABILITY_VAR).unwrap().as_str() {
            "process-crash" => Durability::ProcessCrash,
            "power-loss" => Durability::PowerLoss,
            other => panic!("unknown durability {other}"),
        };
        Self { durability, checkpoint_pages: std::env::var(CHECKPOINT_VAR).unwrap().parse().unwrap() }
    }

    fn durability_name(self) -> &'static str {
        match self.durability {
            Durability::ProcessCrash => "process-crash",
            Durability::PowerLoss => "power-loss",
        }
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("veil.db")
}

fn key(dir: &Path) -> KeySource {
    KeySource::KeyFile(dir.join("storage.key"))
}

fn clock() -> ManualClock {
    ManualClock::new(UnixTime(1_800_000_000))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The sending chain the group starts with (known to parent and child).
fn initial_chain() -> ChainState {
    SenderChain::generate(&mut TestEntropy::new(b"crash-test sender chain")).unwrap().state().clone()
}

/// The payload of message `counter`: distinct, of varying size (two padding buckets).
fn message_payload(counter: u64) -> Vec<u8> {
    format!("message {counter:06}; ").repeat(1 + (counter as usize * 7) % 23).into_bytes()
}

/// The payload of the metadata entry with Lamport clock `lamport`.
fn metadata_payload(lamport: u64) -> Vec<u8> {
    format!("metadata {lamport:06}: member list v{lamport}").into_bytes()
}

/// A new store with the group and its initial sending chain.
/// Keeps this process's store openings apart from its child spawns: a
/// child forked and not yet exec'd holds a copy of every open descriptor,
/// a store's lock among them, so a store closed and opened again meanwhile
/// is found locked (seen on a busy machine). `Command::spawn` returns once
/// the child has exec'd, dropping those copies.
static FORKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn setup(dir: &Path, config: Config) {
    let store = {
        let _no_fork = FORKING.lock().await;
        Store::create(&db_path(dir), &key(dir), options_with(&clock(), config.tuning())).await.unwrap()
    };
    let (secret, keys, device) = group_fixture(GROUP_SEED);
    let gid = store.insert_group(GroupKind::MultiMember, Some("crash"), &secret, &device).await.unwrap();
    assert_eq!(gid, keys.id);
    store.save_sender_chain(&gid, &initial_chain()).await.unwrap();
    store.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// The child.

#[test]
#[ignore = "child process of the crash tests; run by them"]
fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else { return };
    let seed: u64 = std::env::var(SEED_VAR).unwrap().parse().unwrap();
    rt().block_on(child_main(PathBuf::from(dir), seed, Config::from_env()));
}

/// The newest entry of a log (its single head) and its Lamport clock.
async fn tip(store: &Store, group: &GroupId, kind: EntryKind) -> Option<(EntryHash, u64)> {
    let heads = store.heads(group, kind).await.unwrap();
    assert!(heads.len() <= 1, "a linear log has at most one head: {heads:?}");
    let head = *heads.first()?;
    Some((head, store.entry(&head).await.unwrap().unwrap().lamport))
}

struct Built {
    sealed: SealedEntry,
    links: Links,
    payload: Vec<u8>,
    chain: Option<ChainState>,
    outbox: &'static [Peer],
}

async fn child_main(dir: PathBuf, seed: u64, config: Config) {
    let store = Store::open(&db_path(&dir), &key(&dir), options_with(&clock(), config.tuning())).await.unwrap();
    let (_, keys, device) = group_fixture(GROUP_SEED);
    let gid = keys.id;
    // Resume from what is stored, as a restarted node would.
    let mut chain = SenderChain::from_state(store.sender_chain(&gid).await.unwrap().unwrap().state);
    let mut messages = tip(&store, &gid, EntryKind::Message).await;
    let mut metadata = tip(&store, &gid, EntryKind::Metadata).await;
    assert_eq!(chain.state().next, messages.map_or(0, |(_, lamport)| lamport), "the chain matches the log");

    let mut rng = XorShift::new(seed);
    let mut out = std::io::stdout();
    // Start on a line of our own, whatever libtest printed before.
    writeln!(out).unwrap();
    let mut written = 0;
    while written < CHILD_CAP {
        let (n, single) = match rng.range(0, 3) {
            0 => (1, true),
            1 => (1, false),
            _ => (rng.range(1, 64), false),
        };
        let mut built = Vec::with_capacity(n as usize);
        for _ in 0..n {
            if rng.range(0, 7) == 0 {
                let lamport = metadata.map_or(1, |(_, l)| l + 1);
                let links = Links {
                    kind: EntryKind::Metadata,
                    lamport,
                    parents: metadata.map(|(h, _)| h).into_iter().collect(),
                };
                let payload = metadata_payload(lamport);
                let sealed = seal_entry(&keys, &device, &links, BodyKey::Metadata, &payload, &mut OsEntropy).unwrap();
                metadata = Some((sealed.hash(), lamport));
                built.push(Built { sealed, links, payload, chain: None, outbox: &[ALL] });
            } else {
                let counter = chain.state().next;
                let links = Links {
                    kind: EntryKind::Message,
                    lamport: counter + 1,
                    parents: messages.map(|(h, _)| h).into_iter().collect(),
                };
                let payload = message_payload(counter);
                let sealed =
                    seal_entry(&keys, &device, &links, BodyKey::Message(&mut chain), &payload, &mut OsEntropy).unwrap();
                messages = Some((sealed.hash(), counter + 1));
                let outbox: &'static [Peer] = if counter.is_multiple_of(2) { &[ALL, EVEN] } else { &[ALL] };
                built.push(Built { sealed, links, payload, chain: Some(chain.state().clone()), outbox });
            }
        }
        let batch: Vec<NewEntry<'_>> = built
            .iter()
            .map(|b| NewEntry {
                group: gid,
                entry: &b.sealed,
                links: &b.links,
                author: Some(device.verify_key()),
                payload: Some(&b.payload),
                ratchet: b.chain.as_ref().map(|state| RatchetUpdate::Sender { state, reserved_until: 0 }),
                outbox: b.outbox,
            })
            .collect();
        let outcomes = if single {
            let [entry] = <[NewEntry<'_>; 1]>::try_from(batch).unwrap();
            vec![store.append(entry).await.unwrap()]
        } else {
            // Batches commit deferred and are reported once synced.
            let (outcomes, unsynced) = store.append_batch_deferred(&batch).await.unwrap();
            store.sync(unsynced).await.unwrap();
            outcomes
        };
        assert!(outcomes.iter().all(|o| *o == Appended::Stored), "{outcomes:?}");
        // Committed: only now is it reported.
        for b in &built {
            writeln!(out, "{COMMITTED}{}", hex::encode(b.sealed.hash().0)).unwrap();
        }
        out.flush().unwrap();
        written += n;
    }
    writeln!(out, "{CAPPED}").unwrap();
    out.flush().unwrap();
    // Wait to be killed (or for the parent to go away).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

// ---------------------------------------------------------------------------
// The parent.

#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Right after spawning: the child may not even have opened the store.
    Spawn,
    /// After reading this many committed-entry lines.
    Lines(usize),
}

/// Kills and reaps the child however the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse_line(line: &str) -> Option<EntryHash> {
    let (_, hex_hash) = line.split_once(COMMITTED)?;
    let bytes = hex::decode(hex_hash.trim()).unwrap_or_else(|e| panic!("malformed line {line:?}: {e}"));
    Some(EntryHash(bytes.try_into().unwrap_or_else(|b| panic!("malformed hash {b:?}"))))
}

/// Runs one child on the store in `dir`, kills it at `kill`, and returns
/// every entry it reported as committed (including lines still in the pipe).
fn run_child(dir: &Path, seed: u64, config: Config, kill: KillAt) -> Vec<EntryHash> {
    let stderr_path = dir.join(format!("child-{seed}.stderr"));
    let _no_open = FORKING.blocking_lock();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--ignored", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .env(SEED_VAR, seed.to_string())
        .env(DURABILITY_VAR, config.durability_name())
        .env(CHECKPOINT_VAR, config.checkpoint_pages.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    drop(_no_open);
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let child_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let mut reported = Vec::new();
    if let KillAt::Lines(k) = kill {
        while reported.len() < k {
            match rx.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    assert!(!line.contains(CAPPED), "the child stopped at its cap before {k} lines");
                    reported.extend(parse_line(&line));
                }
                Err(e) => panic!(
                    "no line from the child ({e:?}) after {} lines; its stderr:\n{}",
                    reported.len(),
                    child_stderr()
                ),
            }
        }
    }
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child died of SIGKILL, not on its own ({status}); stderr:\n{}",
        child_stderr()
    );
    // Lines written before the kill but not read yet were committed too.
    reported.extend(rx.iter().filter_map(|line| parse_line(&line)));
    reader.join().unwrap();
    reported
}

/// What a verified store holds.
#[derive(Default)]
struct Verified {
    messages: u64,
    metadata: u64,
    hashes: BTreeSet<EntryHash>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} messages + {} metadata entries", self.messages, self.metadata)
    }
}

/// A whole log, read page by page in its total order.
async fn read_log(store: &Store, group: &GroupId, kind: EntryKind) -> Vec<EntryRecord> {
    let mut all: Vec<EntryRecord> = Vec::new();
    loop {
        let after = all.last().map(|e| (e.lamport, e.hash));
        let page =
            store.entries_after(group, kind, after, 37).await.unwrap_or_else(|e| panic!("a page does not read: {e}"));
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Checks a linear log: Lamport clocks 1..=n, each entry's parent the one
/// before, payloads as generated, every entry opening with the group keys.
/// Returns the hashes in order.
fn check_chain(records: &[EntryRecord], kind: EntryKind) -> Vec<EntryHash> {
    let (_, _, device) = group_fixture(GROUP_SEED);
    let mut prev: Option<EntryHash> = None;
    for (i, r) in records.iter().enumerate() {
        assert_eq!((r.kind, r.lamport), (kind, i as u64 + 1), "{kind:?} entry {i}");
        assert_eq!(r.parents, prev.into_iter().collect::<Vec<_>>(), "{kind:?} entry {i} names the one before");
        assert_eq!(r.author, Some(device.verify_key()));
        assert_eq!(r.sealed.hash(), r.hash);
        prev = Some(r.hash);
    }
    records.iter().map(|r| r.hash).collect()
}

/// Reopens the store in `dir` after a crash and checks every invariant.
/// `must_have` are entries reported committed (by this or earlier children).
async fn verify(dir: &Path, config: Config, must_have: &BTreeSet<EntryHash>) -> Verified {
    let db = db_path(dir);
    let no_fork = FORKING.lock().await;
    let store = Store::open(&db, &key(dir), options_with(&clock(), config.tuning()))
        .await
        .unwrap_or_else(|e| panic!("the store does not reopen after the crash: {e}"));
    drop(no_fork);
    store.integrity_check().await.unwrap();
    for h in must_have {
        assert!(store.contains_entry(h).await.unwrap(), "{h:?} was reported committed but is gone");
    }
    let (_, keys, _) = group_fixture(GROUP_SEED);
    let gid = keys.id;

    // The message log, and the ratchet that moved with it.
    let messages = read_log(&store, &gid, EntryKind::Message).await;
    let n = messages.len() as u64;
    assert_eq!(store.entry_count(&gid, EntryKind::Message).await.unwrap(), n);
    let message_hashes = check_chain(&messages, EntryKind::Message);
    let stored_chain = store.sender_chain(&gid).await.unwrap().unwrap();
    assert_eq!(
        stored_chain.state.next, n,
        "the sender chain advanced once per stored message, in the same transaction"
    );
    let mut expected = SenderChain::from_state(initial_chain());
    for _ in 0..n {
        expected.next_key().unwrap();
    }
    assert_eq!(&stored_chain.state, expected.state(), "the stored chain is the initial one advanced {n} times");
    let mut receiver = ReceiverChain::new(initial_chain(), 4).unwrap();
    for (i, r) in messages.iter().enumerate() {
        let payload = message_payload(i as u64);
        assert_eq!(r.payload.as_deref().map(|p| &p[..]), Some(&payload[..]), "stored payload of message {i}");
        let opened = open_entry(&keys, &r.sealed).unwrap_or_else(|e| panic!("message {i} does not open: {e}"));
        assert_eq!((opened.counter, opened.links.lamport, &opened.links.parents), (i as u64, r.lamport, &r.parents));
        assert_eq!(&opened.read_message(&mut receiver).unwrap()[..], &payload[..], "message {i} decrypts");
    }

    // The metadata log.
    let metadata = read_log(&store, &gid, EntryKind::Metadata).await;
    let m = metadata.len() as u64;
    assert_eq!(store.entry_count(&gid, EntryKind::Metadata).await.unwrap(), m);
    let metadata_hashes = check_chain(&metadata, EntryKind::Metadata);
    for r in &metadata {
        let payload = metadata_payload(r.lamport);
        assert_eq!(r.payload.as_deref().map(|p| &p[..]), Some(&payload[..]));
        let opened = open_entry(&keys, &r.sealed).unwrap();
        assert_eq!(&opened.read_metadata(&keys).unwrap()[..], &payload[..]);
    }

    // Heads and missing parents.
    for (kind, hashes) in [(EntryKind::Message, &message_hashes), (EntryKind::Metadata, &metadata_hashes)] {
        assert_eq!(store.heads(&gid, kind).await.unwrap(), hashes.last().copied().into_iter().collect::<Vec<_>>());
        assert!(store.missing_parents(&gid, kind).await.unwrap().is_empty(), "{kind:?}: no parent is missing");
    }

    // The outbox: exactly one row per entry and peer it was enqueued for.
    let all: BTreeSet<EntryHash> = message_hashes.iter().chain(&metadata_hashes).copied().collect();
    let even: BTreeSet<EntryHash> = message_hashes.iter().step_by(2).copied().collect();
    assert_eq!(store.outbox_len(&ALL).await.unwrap(), n + m);
    assert_eq!(store.outbox_len(&EVEN).await.unwrap(), n.div_ceil(2));
    let far = UnixTime(i64::MAX as u64);
    for (peer, expected) in [(ALL, &all), (EVEN, &even)] {
        let owed: Vec<EntryHash> =
            store.outbox_due(&peer, far, 1_000_000).await.unwrap().into_iter().map(|i| i.hash).collect();
        assert_eq!(owed.len(), expected.len(), "one outbox row per entry");
        assert_eq!(&owed.into_iter().collect::<BTreeSet<_>>(), expected);
    }
    let mut peers: Vec<Peer> = [(ALL, n + m > 0), (EVEN, n > 0)].into_iter().filter(|p| p.1).map(|p| p.0).collect();
    peers.sort();
    assert_eq!(store.outbox_peers().await.unwrap(), peers);

    store.close().await.unwrap();
    assert!(companions(&db).is_empty(), "a clean close leaves no WAL: {:?}", companions(&db));
    Verified { messages: n, metadata: m, hashes: all }
}

/// One fresh store, one child killed at `kill`, then the checks.
fn crash_once(config: Config, seed: u64, kill: KillAt) -> Verified {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(setup(dir.path(), config));
    let reported = run_child(dir.path(), seed, config, kill);
    if let KillAt::Lines(k) = kill {
        assert!(reported.len() >= k);
    }
    let reported: BTreeSet<EntryHash> = reported.into_iter().collect();
    let v = rt().block_on(verify(dir.path(), config, &reported));
    assert!(v.hashes.is_superset(&reported));
    eprintln!("{config:?}, killed at {kill:?}: {} reported, {v:?} stored", reported.len());
    v
}

/// Kill points drawn from a fixed seed, so every run asserts the same things.
fn kill_points(seed: u64, count: usize) -> Vec<usize> {
    let mut rng = XorShift::new(seed);
    (0..count).map(|_| rng.range(2, 300) as usize).collect()
}

#[test]
fn killed_at_spawn_after_one_line_and_at_random_points_process_crash() {
    let config = Config::PROCESS_CRASH;
    let v = crash_once(config, 11, KillAt::Spawn);
    assert!(v.messages + v.metadata < CHILD_CAP, "{v:?}");
    let v = crash_once(config, 12, KillAt::Lines(1));
    assert!(v.messages + v.metadata >= 1);
    for (i, k) in kill_points(0x00c0_ffee, 2).into_iter().enumerate() {
        let v = crash_once(config, 13 + i as u64, KillAt::Lines(k));
        assert!(v.messages + v.metadata >= k as u64, "{v:?} after {k} lines");
    }
}

#[test]
fn killed_at_random_points_power_loss() {
    assert_eq!(Tuning::default().durability, Durability::PowerLoss, "the default durability");
    let config = Config::POWER_LOSS;
    for (i, k) in kill_points(0x0bad_5eed, 2).into_iter().enumerate() {
        let v = crash_once(config, 21 + i as u64, KillAt::Lines(k));
        assert!(v.messages + v.metadata >= k as u64, "{v:?} after {k} lines");
    }
}

/// A checkpoint after almost every commit, so kills land around checkpoints
/// (the main file being written) as well as around commits.
#[test]
fn killed_while_checkpointing_often() {
    let config = Config { durability: Durability::ProcessCrash, checkpoint_pages: 4 };
    for (i, k) in kill_points(0x0c4e_c4e0, 2).into_iter().enumerate() {
        crash_once(config, 31 + i as u64, KillAt::Lines(k));
    }
}

/// Crash, recover, carry on from the recovered state, crash again, …: each
/// child resumes the chain and the logs where the store says they are, and
/// nothing an earlier child reported is ever lost.
#[test]
fn recovery_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(setup(dir.path(), Config::POWER_LOSS));
    let mut kept: BTreeSet<EntryHash> = BTreeSet::new();
    let mut last = Verified::default();
    let plan = [
        (Config::POWER_LOSS, KillAt::Lines(kill_points(41, 1)[0])),
        (Config::PROCESS_CRASH, KillAt::Lines(kill_points(42, 1)[0])),
        (Config::PROCESS_CRASH, KillAt::Spawn),
        (Config::POWER_LOSS, KillAt::Lines(1)),
    ];
    for (round, (config, kill)) in plan.into_iter().enumerate() {
        let reported = run_child(dir.path(), 40 + round as u64, config, kill);
        kept.extend(reported.iter().copied());
        let v = rt.block_on(verify(dir.path(), config, &kept));
        assert!(v.hashes.is_superset(&last.hashes), "round {round}: entries from earlier rounds are all still there");
        assert!(v.messages >= last.messages && v.metadata >= last.metadata, "round {round}: {v:?} after {last:?}");
        if let KillAt::Lines(k) = kill {
            assert!(
                v.hashes.len() >= last.hashes.len() + k,
                "round {round}: the child carried on from the stored state"
            );
        }
        eprintln!("round {round}: {config:?}, killed at {kill:?}: {} reported, {v:?} stored", reported.len());
        kept.extend(v.hashes.iter().copied());
        last = v;
    }
}

// ---------------------------------------------------------------------------
// A kill in the middle of a checkpoint, made deterministic.

/// The image of page 1 in the newest committed frame of a WAL file.
fn newest_page_one(wal: &[u8]) -> Vec<u8> {
    let page_size = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let salts = &wal[16..24];
    let mut found = None;
    let mut at = 32;
    while at + 24 + page_size <= wal.len() {
        let frame = &wal[at..at + 24];
        if &frame[8..16] == salts && u32::from_be_bytes(frame[..4].try_into().unwrap()) == 1 {
            found = Some(wal[at + 24..at + 24 + page_size].to_vec());
        }
        at += 24 + page_size;
    }
    found.expect("page 1 is in the WAL")
}

fn copy_files(from: &Path, to: &Path, names: &[&str]) {
    for name in names {
        let src = from.join(name);
        if src.exists() {
            std::fs::copy(&src, to.join(name)).unwrap();
        }
    }
}

/// BUG (reported, src/sqlite.rs `check_file`): a SQLite checkpoint copies
/// pages from the WAL into the main file in ascending page order, page 1
/// (whose header declares the new, larger page count) first, and the pages
/// that grow the file last. A process killed in between leaves a main file
/// shorter than its header declares — next to a WAL that holds every
/// committed page, which SQLite recovers from without loss. `check_file`
/// calls that file "truncated" and refuses it, so a node killed during a
/// checkpoint cannot reopen its (intact) database.
///
/// This builds that state exactly: a store whose growth is all in the WAL,
/// copied as a kill would leave it, then page 1 of the newest WAL frame
/// written over the main file's page 1, as the checkpoint's first write does.
#[test]
fn a_kill_during_a_checkpoint_is_recovered_not_refused() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    // No automatic checkpoints: everything after setup stays in the WAL.
    let config = Config { durability: Durability::ProcessCrash, checkpoint_pages: 0 };
    rt.block_on(setup(dir.path(), config));
    let db = db_path(dir.path());
    let (store, hashes) = rt.block_on(async {
        let store = {
            let _no_fork = FORKING.lock().await;
            Store::open(&db, &key(dir.path()), options_with(&clock(), config.tuning())).await.unwrap()
        };
        let (_, keys, device) = group_fixture(GROUP_SEED);
        let mut chain = SenderChain::from_state(initial_chain());
        let mut hashes: Vec<EntryHash> = vec![];
        for counter in 0..300u64 {
            let links = Links {
                kind: EntryKind::Message,
                lamport: counter + 1,
                parents: hashes.last().copied().into_iter().collect(),
            };
            let payload = message_payload(counter);
            let sealed =
                seal_entry(&keys, &device, &links, BodyKey::Message(&mut chain), &payload, &mut OsEntropy).unwrap();
            let outbox: &[Peer] = if counter.is_multiple_of(2) { &[ALL, EVEN] } else { &[ALL] };
            store
                .append(NewEntry {
                    group: keys.id,
                    entry: &sealed,
                    links: &links,
                    author: Some(device.verify_key()),
                    payload: Some(&payload),
                    ratchet: Some(RatchetUpdate::Sender { state: chain.state(), reserved_until: 0 }),
                    outbox,
                })
                .await
                .unwrap();
            hashes.push(sealed.hash());
        }
        (store, hashes)
    });
    // The files as a SIGKILL right now would leave them (the store is still open).
    let names = ["veil.db", "veil.db-wal", "veil.db-shm", "storage.key"];
    let killed = tempfile::tempdir().unwrap();
    copy_files(dir.path(), killed.path(), &names);
    let main = std::fs::read(db_path(killed.path())).unwrap();
    let wal = std::fs::read(with_suffix(&db_path(killed.path()), "-wal")).unwrap();
    let page_one = newest_page_one(&wal);
    let declared = u32::from_be_bytes(page_one[28..32].try_into().unwrap()) as usize;
    assert!(declared * page_one.len() > main.len(), "the database grew in the WAL only");

    // The checkpoint got as far as its first write.
    let torn = tempfile::tempdir().unwrap();
    copy_files(killed.path(), torn.path(), &names);
    let mut torn_main = main.clone();
    torn_main[..page_one.len()].copy_from_slice(&page_one);
    std::fs::write(db_path(torn.path()), &torn_main).unwrap();
    rt.block_on(store.close()).unwrap();

    let must_have: BTreeSet<EntryHash> = hashes.iter().copied().collect();
    // Control: the plain crash image recovers.
    let v = rt.block_on(verify(killed.path(), config, &must_have));
    assert_eq!(v.messages, 300);
    // The torn checkpoint recovers just the same.
    let v = rt.block_on(verify(torn.path(), config, &must_have));
    assert_eq!(v.messages, 300);
}
