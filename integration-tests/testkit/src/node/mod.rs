//! veil nodes in this process: the rendezvous node and peers, contact and
//! group fixtures, and waits on node events.
//!
//! Peers run on a [`ManualClock`](veil_actors::crypto::time::ManualClock)
//! starting near [`T0`], with one-minute rendezvous periods ([`PERIOD`],
//! [`GRACE`]) and short retry and sync intervals, so rotation and expiry
//! tests move the clock instead of waiting.

mod fixtures;
mod spawn;
mod wait;

pub use fixtures::{
    GroupOfTwo, TwoContacts, account, befriend, group_between, group_between_within, group_of_two, state_of, texts,
    two_contacts, two_contacts_on, until_replicated, until_replicated_within,
};
pub use spawn::{
    GRACE, PERIOD, T0, Transports, both_transports, memory, peer, peer_builder, peer_on, rendezvous_server, schedule,
    tcp,
};
pub use wait::{RECHECK, WAIT, until, until_within, wait_for};
