//! Messages of device linking: the identity vault's side of an offer (it
//! holds the keys and the store's copy) and the `DeviceLinker`'s (the
//! network side).

use super::*;
use veil_crypto::device_link::{DeviceOffer, ShortCode};
use veil_crypto::time::UnixTime;
use veil_transports::libp2p::PeerId;

/// Names a live device offer of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OfferId(pub u64);

impl core::fmt::Display for OfferId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Vault command: a new offer of this account, valid until `expires_at`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(OfferId, DeviceOffer)>")]
pub struct CreateOffer {
    /// When the offer stops being answered.
    pub expires_at: UnixTime,
}

/// Vault command: answer a message 1 for `offer` from `peer`; message 2
/// and the code to show.
#[derive(Debug, Message)]
#[rtype(result = "Result<(ShortCode, Vec<u8>)>")]
pub struct OfferHello {
    /// The offer whose point the message proved.
    pub offer: OfferId,
    /// Who sent it (the session is bound to this peer).
    pub peer: PeerId,
    /// Noise message 1.
    pub message: Vec<u8>,
    /// The wall clock now (an expired offer answers nothing).
    pub now: UnixTime,
}

/// Vault command: the user typed the code the new device shows. `true`:
/// confirmed; `false`: the codes differ, and the offer was dropped.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool>")]
pub struct ConfirmOffer {
    /// The offer.
    pub offer: OfferId,
    /// What the user typed.
    pub code: ShortCode,
}

/// Vault command: answer a session message of `offer` from `peer`.
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionAnswer>")]
pub struct OfferMessage {
    /// The offer.
    pub offer: OfferId,
    /// Who sent it.
    pub peer: PeerId,
    /// The sealed message.
    pub message: Vec<u8>,
}

/// What the vault answers a session message with.
#[derive(Debug)]
pub enum SessionAnswer {
    /// The user has not confirmed the code yet.
    Waiting,
    /// A sealed reply.
    Reply(Vec<u8>),
    /// The sealed farewell: the new device stored the copy and is one of
    /// this account's devices now.
    Linked {
        /// The sealed reply.
        reply: Vec<u8>,
        /// The new device's own key.
        device: VerifyKey,
    },
}

/// Vault command: forget an offer (withdrawn), or every offer expired at
/// `now`. Answers which offers are gone: the one, or those of `known` the
/// vault no longer holds (expired now, or dropped earlier: used, failed).
#[derive(Debug, Message)]
#[rtype(result = "Vec<OfferId>")]
pub enum DropOffers {
    /// This one.
    One(OfferId),
    /// Those expired at `now` (a confirmed session finishes first).
    Expired {
        /// The wall clock now.
        now: UnixTime,
        /// The offers the linker still announces.
        known: Vec<OfferId>,
    },
}

/// Linker command (from the facade): make an offer and announce it.
#[derive(Debug, Message)]
#[rtype(result = "Result<(OfferId, DeviceOffer)>")]
pub struct LinkDevice {
    /// How long it is answered.
    pub lifetime: std::time::Duration,
}

/// Linker command (from the facade): the user typed this code.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct ConfirmDevice {
    /// The offer.
    pub offer: OfferId,
    /// The code the user typed.
    pub code: ShortCode,
}

/// Linker command (from the facade): withdraw an offer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CancelOffer(pub OfferId);
