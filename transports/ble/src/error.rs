//! The BLE link's errors.

/// What can go wrong on a BLE link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A packet longer than any link carries.
    #[error("a packet of {len} bytes (at most {max})")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The longest packet a receiver accepts ([`MAX_PACKET`](crate::packet::MAX_PACKET), 512 bytes).
        max: usize,
    },
    /// Bytes that are no packet: too short, of an unknown kind, a data packet without data, or a control packet of the
    /// wrong length.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A well-formed packet that breaks the link's rules: the link ends.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// Writing after this side closed.
    #[error("the link is closed")]
    Closed,
    /// Nothing to read yet.
    #[error("nothing to read yet")]
    WouldBlock,
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
