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
//! The child is this test binary run again with `--exact child::crash_child
//! --ignored`; the environment tells it where the store is.
//!
//! * `fixture`: what parent and child share (the store, its group, payloads);
//! * `child`: the child's append loop;
//! * `kill`: running a child and killing it;
//! * `verify`: the checks after a crash;
//! * `random_kills`: the tests that kill children at chosen or drawn points;
//! * `torn_checkpoint`: a kill in the middle of a checkpoint, built exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod child;
mod fixture;
mod kill;
mod random_kills;
mod torn_checkpoint;
mod verify;
