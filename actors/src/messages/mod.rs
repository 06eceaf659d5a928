//! Every message the actors exchange, grouped by the actor that handles it.
//! Commands are imperative, queries start with `Get`, events are past tense.

use actix::Message;
use veil_crypto::{
    AccountPublic, ChainState, EpochId, EpochSecret, GroupId, GroupSecret, MemberPublic, NetworkKey, VerifyKey,
    envelope::EntryHash,
    rendezvous::{ActivePoints, RendezvousPoint},
};
use veil_proto::metadata::MemberJoined;
use zeroize::Zeroizing;

use crate::Result;

pub mod contacts;
pub mod courier;
pub mod device;
pub mod group;
pub(crate) mod registry;
pub mod rendezvous;
pub mod replica;
pub mod vault;

/// Test-only fault injection (feature `fault-injection`): makes the
/// receiving actor's handler panic, to exercise supervision.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct InjectPanic;
