//! Device copies: a first device's store streamed in pieces to a newly
//! linked device, which makes it a store of its own as a new device of the
//! same account.
//!
//! * `fixture`: the first device's store;
//! * `linked`: the copy, however it is cut into pieces, and the new store;
//! * `refusals`: what a copy refuses, and that it then leaves nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod fixture;
mod linked;
mod refusals;
