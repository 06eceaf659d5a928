//! The kill -9 soak (issue 20), through the daemons: Alice sends 10 000
//! messages to Bob one after another while Bob's daemon is killed with
//! SIGKILL at random 20 times (and left down for a while each time) and
//! Alice's 5 times, each time with a send in flight. Every send the daemon
//! acknowledged (the API call returned: stored durably) must reach Bob
//! exactly once, in the order sent; sends cut off by a kill may arrive or
//! not, but never twice and never out of order.
//!
//! Long: `just soak` runs it (ignored by `cargo test`). The schedule comes
//! from `VEIL_SOAK_SEED` (printed, so a failure can be replayed), the sizes
//! from `VEIL_SOAK_MESSAGES`, `VEIL_SOAK_RECEIVER_KILLS` and
//! `VEIL_SOAK_SENDER_KILLS`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;

use rustix::process::Signal;
use veil_app::api;
use veil_testkit::daemon::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift64*): the schedule only.
struct Schedule(u64);

impl Schedule {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    /// `count` distinct message numbers in `range`.
    fn picks(&mut self, count: u64, range: std::ops::Range<u64>) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        while (out.len() as u64) < count.min(range.end - range.start) {
            out.insert(range.start + self.below(range.end - range.start));
        }
        out
    }
}

fn body(i: u64) -> String {
    format!("soak {i:06}")
}

fn number(body: &[u8]) -> u64 {
    let text = std::str::from_utf8(body).unwrap();
    text.strip_prefix("soak ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a soak message: {text}"))
}

/// Every message of `conversation` in log order, paging back from the
/// latest.
async fn whole_log(client: &mut veil_app::client::Client, conversation: &str) -> Vec<api::Message> {
    let mut pages: Vec<Vec<api::Message>> = Vec::new();
    let mut before: Option<(u64, String)> = None;
    loop {
        let mut request =
            api::HistoryRequest { conversation: conversation.to_owned(), limit: 1000, ..Default::default() };
        if let Some((lamport, hash)) = &before {
            (request.before_lamport, request.before_hash) = (*lamport, hash.clone());
        }
        let page = client.history(request).await.unwrap().into_inner().messages;
        let Some(first) = page.first() else { break };
        before = Some((first.lamport, first.hash.clone()));
        pages.push(page);
    }
    pages.into_iter().rev().flatten().collect()
}

/// Restarts the daemon of `d`'s home after it was killed.
fn restart(d: &mut Daemon, args: &[&str]) {
    let (child, ready) = spawn_daemon(d.path(), args);
    (d.child, d.ready) = (Some(child), ready);
}

async fn connect(d: &Daemon) -> veil_app::client::Client {
    veil_app::client::connect(&veil_app::config::socket_path(d.path())).await.unwrap()
}

#[test]
#[ignore = "a soak of several minutes: `just soak`"]
fn killed_daemons_lose_no_acknowledged_message_and_duplicate_none() {
    let seed = env("VEIL_SOAK_SEED", 20_261_206);
    let messages = env("VEIL_SOAK_MESSAGES", 10_000);
    let (receiver_kills, sender_kills) = (env("VEIL_SOAK_RECEIVER_KILLS", 20), env("VEIL_SOAK_SENDER_KILLS", 5));
    eprintln!("soak: seed {seed}, {messages} messages, Bob killed {receiver_kills} times, Alice {sender_kills} times");
    let mut schedule = Schedule(seed | 1);
    let bob_dies = schedule.picks(receiver_kills, 10..messages);
    let alice_dies = schedule.picks(sender_kills, 10..messages);

    let Befriended { server: _server, rendezvous, mut alice, mut bob, bob_events, conversation } = befriended();
    let args = ["--rendezvous", rendezvous.as_str()];
    let alice_events = alice.events();
    alice_events.until("Bob's acceptance", || alice.run(&["send", &conversation, &body(0)]).code == 0);
    drop((alice_events, bob_events));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut acknowledged = vec![0u64];
    let mut cut_off = Vec::new();
    let mut client = runtime.block_on(connect(&alice));
    let mut bob_back_at = None;
    let started = Instant::now();
    for i in 1..messages {
        if bob_dies.contains(&i) && alice.child.is_some() && bob.child.is_some() {
            bob.stop(Signal::KILL);
            // Down for up to 300 messages: they wait in Alice's outbox.
            bob_back_at = Some(i + 1 + schedule.below(300));
        }
        if bob_back_at.is_some_and(|at| at <= i) {
            restart(&mut bob, &args);
            bob_back_at = None;
        }
        let request = api::SendRequest { conversation: conversation.clone(), body: body(i).into_bytes() };
        if alice_dies.contains(&i) {
            // Killed with this send in flight: stored or not, the call may
            // fail; only a call that returned counts as acknowledged.
            let mut in_flight = client.clone();
            let send = runtime.spawn(async move { in_flight.send(request).await });
            alice.stop(Signal::KILL);
            match runtime.block_on(send).unwrap() {
                Ok(_) => acknowledged.push(i),
                Err(_) => cut_off.push(i),
            }
            restart(&mut alice, &args);
            client = runtime.block_on(connect(&alice));
            continue;
        }
        runtime.block_on(client.send(request)).unwrap_or_else(|e| panic!("send {i}: {e}"));
        acknowledged.push(i);
    }
    if bob.child.is_none() {
        restart(&mut bob, &args);
    }
    eprintln!(
        "soak: sent in {:.0} s; {} acknowledged, cut off by a kill: {cut_off:?}",
        started.elapsed().as_secs_f64(),
        acknowledged.len()
    );

    // Alice lost none of hers.
    let hers: Vec<u64> =
        runtime.block_on(whole_log(&mut client, &conversation)).iter().map(|m| number(&m.body)).collect();
    let missing: Vec<&u64> = acknowledged.iter().filter(|i| hers.binary_search(i).is_err()).collect();
    assert!(missing.is_empty(), "Alice's log lacks acknowledged sends {missing:?}");

    // Bob gets every acknowledged one, once, in order.
    let mut bob_client = runtime.block_on(connect(&bob));
    let mut his = Vec::new();
    bob.events().patient(Duration::from_secs(300)).until("every acknowledged message at Bob", || {
        his = runtime.block_on(whole_log(&mut bob_client, &conversation)).iter().map(|m| number(&m.body)).collect();
        let held: BTreeSet<u64> = his.iter().copied().collect();
        acknowledged.iter().all(|i| held.contains(i))
    });
    assert!(his.windows(2).all(|w| w[0] < w[1]), "Bob's log is out of order or holds a duplicate: {his:?}");
    assert!(his.iter().all(|i| acknowledged.binary_search(i).is_ok() || cut_off.contains(i)));
    assert_eq!(hers, his, "both logs hold the same messages in the same order");
    eprintln!("soak: Bob holds all {} acknowledged messages in order, no duplicate", acknowledged.len());
}
