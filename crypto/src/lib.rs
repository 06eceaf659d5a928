//! # veil-crypto
//!
//! The cryptographic core of veil: pure, synchronous, no I/O (randomness comes
//! from an injected [`Entropy`], time from arguments), no async, no actix.
//!
//! * identities made offline: [`Identity`] (account, alias and device keys) and
//!   the rotating [`NetworkKey`];
//! * groups: the [`GroupKeys`] schedule, [`contact_group_secret`] and per-group
//!   [`MemberKeys`] derived from the private alias key;
//! * rotating [`rendezvous`] points, and the tokens a node [`advert`]ises over
//!   Bluetooth LE;
//! * [`ContactLink`] and [`GroupInvitation`] values (their text form is in `veil-proto`);
//! * the contact-request [`handshake`] (Noise XK, encrypted request);
//! * [`device_link`]ing: a new device joins the account from a one-time
//!   [`DeviceOffer`] (Noise NNpsk0, a short code both users compare, then a
//!   session for the account's secrets);
//! * the per-device message [`ratchet`] and the sealed log-entry [`envelope`].
//!
//! The wire format is specified in `docs/PROTOCOL.md`.
//!
//! ```
//! use veil_crypto::{
//!     envelope::{open_entry, seal_entry, BodyKey, EntryKind, Position},
//!     handshake::{Requester, Responder},
//!     contact_group_secret, GroupKeys, Identity, OsEntropy, ReceiverChain, SenderChain,
//! };
//!
//! # fn main() -> Result<(), veil_crypto::Error> {
//! let mut rng = OsEntropy;
//! let (alice, bob) = (Identity::generate(&mut rng)?, Identity::generate(&mut rng)?);
//!
//! // Alice knows Bob's public account from his link; the handshake authenticates both.
//! let (requester, m1) = Requester::start(&alice.account, &bob.account.public(), b"hi, it's Alice")?;
//! let (responder, m2) = Responder::respond(&bob.account, &m1)?;
//! let (_sent, m3) = requester.read_response(&m2)?;
//! let request = responder.read_request(&m3)?;
//! assert_eq!(request.requester, alice.account.public());
//!
//! // Both derive the same contact group on their own.
//! let keys = GroupKeys::derive(&contact_group_secret(&alice.account, &bob.account.public())?);
//!
//! // Alice seals a message with her ratchet; Bob opens it with her shared chain state.
//! let mut chain = SenderChain::generate(&mut rng)?;
//! let mut bobs_view = ReceiverChain::new(chain.state().clone(), 1024)?;
//! let position = Position { kind: EntryKind::Message, lamport: 1, parents: vec![] };
//! let entry = seal_entry(&keys, &alice.device, &position, BodyKey::Message(&mut chain), b"hello Bob", &mut rng)?;
//! let opened = open_entry(&keys, &entry)?;
//! assert_eq!(&opened.read_message(&mut bobs_view)?[..], b"hello Bob");
//! # Ok(())
//! # }
//! ```

pub mod advert;
mod aead;
pub mod device_link;
mod entry_signature;
pub mod envelope;
pub mod epoch;
mod error;
mod group;
pub mod handshake;
#[cfg(test)]
mod kat_tests;
mod kdf;
mod keys;
pub mod kind;
mod link;
pub mod padding;
pub mod ratchet;
pub mod rendezvous;
pub mod seal;
mod secret;
pub mod time;

pub use device_link::{DeviceOffer, OfferSecret};
pub use epoch::{EpochId, EpochSecret};
pub use error::{Error, Result};
pub use group::{
    EntryAuthKey, GroupId, GroupKey, GroupKeys, GroupSecret, MemberKeys, MemberPublic, ReplicationCredential,
    ReplicationId, account_group_secret, contact_group_secret,
};
pub use kdf::label;
pub use keys::{
    AccountKeys, AccountPublic, AgreementPublic, AgreementSecret, AliasKey, DeviceKey, Identity, NetworkKey, Signature,
    SigningSecret, VerifyKey,
};
pub use kind::{ErrorKind, HasKind};
pub use link::{ContactLink, GroupInvitation, MAX_INVITATION_EPOCHS, MAX_NAME_LEN, Name};
pub use ratchet::{ChainKey, ChainState, MessageKey, ReceiverChain, SenderChain};
pub use rendezvous::{RendezvousPoint, RendezvousSeed};
pub use secret::{Entropy, OsEntropy, TestEntropy, ThreadEntropy};
