//! # veil-proto
//!
//! veil's wire formats: the protobuf schemas in `schemas/veil/v1/` (compiled by
//! prost with a vendored `protoc`), the text forms of contact links and group
//! invitations, and validated conversions to and from `veil-crypto` values.
//!
//! Every decoder checks the input size **before** parsing and validates every
//! field after; anything malformed is an [`Error`], never a panic.
//!
//! Protobuf carries the outer structures only. What is signed, MACed or
//! encrypted uses the fixed byte layouts of `veil-crypto`, because protobuf
//! encodings are not canonical (see `docs/PROTOCOL.md`).
//!
//! ```
//! use veil_crypto::{ContactLink, Identity, Name, OsEntropy, RendezvousSeed};
//! use veil_proto::link;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let me = Identity::generate(&mut OsEntropy)?;
//! let mine = ContactLink {
//!     account: me.account.public(),
//!     seed: RendezvousSeed::generate(&mut OsEntropy)?,
//!     display_name: Some(Name::new("Alice")?),
//! };
//! let uri = link::contact_uri(&mine);
//! assert!(uri.starts_with("veil://contact/"));
//! assert_eq!(link::parse_contact(&uri)?, mine);
//! assert_eq!(link::parse_contact(&link::contact_qr(&mine))?, mine);
//! assert!(link::parse_contact(&uri[..uri.len() - 3]).is_err());
//! # Ok(())
//! # }
//! ```

pub mod account;
pub mod base45;
pub mod device;
pub mod entry;
mod error;
mod fields;
pub mod handshake;
pub mod link;
pub mod metadata;
pub mod reconcile;
pub mod sync;

/// The prost-generated protobuf types (package `veil.v1`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/veil.v1.rs"));
}

pub use error::{Error, Result};
