//! Children killed at spawn, after one line and at points drawn from fixed
//! seeds, under both durabilities, with frequent checkpoints, and again and
//! again on the same store.

use std::collections::BTreeSet;

use veil_crypto::envelope::EntryHash;
use veil_storage::{Durability, Tuning};

use crate::{
    common::XorShift,
    fixture::{CHILD_CAP, Config, rt, setup},
    kill::{KillAt, run_child},
    verify::{Verified, verify},
};

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
