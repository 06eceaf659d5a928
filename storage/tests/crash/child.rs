//! The child: appends entries in a loop, resuming from what is stored, and
//! reports each on stdout only once it is committed; then waits to be killed.

use std::{
    io::{Read, Write},
    path::PathBuf,
};

use veil_crypto::{
    ChainState, GroupId, OsEntropy, SenderChain,
    envelope::{BodyKey, EntryHash, EntryKind, Position, SealedEntry, seal_entry},
};
use veil_storage::{Addressee, Appended, NewEntry, RatchetUpdate, Store};

use crate::{
    common::{XorShift, group_fixture, options_with},
    fixture::{
        ALL, CAPPED, CHILD_CAP, COMMITTED, Config, DIR_VAR, EVEN, GROUP_SEED, SEED_VAR, clock, db_path, key,
        message_payload, metadata_payload, rt,
    },
};

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
    position: Position,
    payload: Vec<u8>,
    chain: Option<ChainState>,
    outbox: &'static [Addressee],
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
                let position = Position {
                    kind: EntryKind::Metadata,
                    lamport,
                    parents: metadata.map(|(h, _)| h).into_iter().collect(),
                };
                let payload = metadata_payload(lamport);
                let sealed =
                    seal_entry(&keys, &device, &position, BodyKey::Metadata, &payload, &mut OsEntropy).unwrap();
                metadata = Some((sealed.hash(), lamport));
                built.push(Built { sealed, position, payload, chain: None, outbox: &[ALL] });
            } else {
                let counter = chain.state().next;
                let position = Position {
                    kind: EntryKind::Message,
                    lamport: counter + 1,
                    parents: messages.map(|(h, _)| h).into_iter().collect(),
                };
                let payload = message_payload(counter);
                let sealed =
                    seal_entry(&keys, &device, &position, BodyKey::Message(&mut chain), &payload, &mut OsEntropy)
                        .unwrap();
                messages = Some((sealed.hash(), counter + 1));
                let outbox: &'static [Addressee] = if counter.is_multiple_of(2) { &[ALL, EVEN] } else { &[ALL] };
                built.push(Built { sealed, position, payload, chain: Some(chain.state().clone()), outbox });
            }
        }
        let batch: Vec<NewEntry<'_>> = built
            .iter()
            .map(|b| NewEntry {
                group: gid,
                entry: &b.sealed,
                position: &b.position,
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
