//! veil's test and benchmark harness, for development only (never published).
//!
//! One copy of what veil's tests and benches need, in place of the copies
//! each crate's `tests/common` used to hold:
//!
//! * [`node`]: veil [`Node`](veil_actors::Node)s with a manual clock and a
//!   one-minute rendezvous period, an in-process rendezvous node, on the
//!   memory transport (no sockets) or on loopback TCP and QUIC; contact and
//!   group fixtures; waits on node events.
//! * [`network`]: bare transports [`Network`](veil_actors::transports::Network)s
//!   and waits on their events, and a TCP proxy that records and freezes.
//! * [`daemon`]: the reference app as processes (`veil` commands, daemons
//!   in temporary homes, `veil events` followers) and network namespaces.
//! * [`plugins`]: transport plug-ins that fail on purpose.
//! * [`bench`](mod@bench): the frame-measuring harness of the benches (pipelined and
//!   one-at-a-time sends, the bare libp2p request-response baseline), and
//!   process figures (CPU time, resident set).
//!
//! Every wait is bounded ([`node::WAIT`], [`network::PATIENCE`]) and ends at
//! its event or condition: a bound, never a pause. Waits on a condition check
//! again after every event and on a short timer, since a condition may turn
//! true without an event of its own.
//!
//! Helpers panic on failure: they are for tests, where a panic is the failure.
//!
//! ```
//! use veil_testkit::node::{texts, two_contacts, until};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! // A rendezvous node and two contacts, all in this process, on the memory transport.
//! let pair = two_contacts().await;
//! pair.a.post(&pair.group, b"hello").await.unwrap();
//! let mut events = pair.b.events();
//! until(&mut events, || async { texts(&pair.b, &pair.group).await == ["hello"] }).await;
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a harness fails the test that calls it by panicking")]

pub mod bench;
pub mod daemon;
pub mod network;
pub mod node;
pub mod plugins;
