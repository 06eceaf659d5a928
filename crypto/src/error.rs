//! The crate's error type.

/// Everything that can go wrong in `veil-crypto`.
///
/// Decryption and verification failures are deliberately coarse: they never say
/// which byte or which check failed, so an attacker learns nothing from them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// A public key is not a valid point or is a weak (low-order) key.
    #[error("invalid {0} public key")]
    InvalidPublicKey(&'static str),
    /// Key agreement produced an all-zero secret: the peer sent a low-order point.
    #[error("key agreement with a low-order public key was refused")]
    WeakKeyAgreement,
    /// Authenticated decryption failed (wrong key, tampered data or wrong context).
    #[error("decryption failed: wrong key or tampered data")]
    Decrypt,
    /// A signature did not verify; for a batch of entry signatures, at least one did not, without saying which.
    #[error("signature verification failed")]
    BadSignature,
    /// An input is larger than the protocol allows.
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes.
        len: usize,
        /// The most bytes allowed.
        max: usize,
    },
    /// A list has more items than the protocol allows.
    #[error("{what} has {count} items, more than the {max} allowed")]
    TooMany {
        /// What list was too long.
        what: &'static str,
        /// How many items it had.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// An input does not have the expected structure.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The contact handshake failed (tampering, wrong key, replay or misuse).
    #[error("contact handshake failed: {0}")]
    Handshake(&'static str),
    /// Linking a new device failed: its handshake (a wrong offer secret,
    /// tampering, a first device that does not hold the account key) or its
    /// session (a replayed, reordered, truncated or modified message, or use
    /// after such a failure).
    #[error("device link failed: {0}")]
    DeviceLink(&'static str),
    /// A ratchet message was already received, or its key has been deleted.
    #[error("message {counter} was already received or is too old for the window")]
    Replay {
        /// The message's position in its sender's chain; its key was used or dropped.
        counter: u64,
    },
    /// A ratchet message is further ahead than the out-of-order window allows.
    #[error("message {counter} is too far ahead of the chain (at {next}, window {window})")]
    TooFarAhead {
        /// The message's position in its sender's chain.
        counter: u64,
        /// The next counter the chain expects.
        next: u64,
        /// The out-of-order window in force: how far past `next` a counter may be.
        window: u64,
    },
    /// A sending chain has used every counter.
    #[error("the sending chain is exhausted")]
    ChainExhausted,
    /// An invitation or a device-link offer was used at or after its expiry time, by the checking node's clock.
    #[error("the {what} expired at {expired_at} (now {now})")]
    Expired {
        /// What expired: `"invitation"` or `"device-link offer"`.
        what: &'static str,
        /// Expiry, unix seconds.
        expired_at: u64,
        /// The time it was checked at, unix seconds.
        now: u64,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
