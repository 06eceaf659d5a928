//! What kind of failure an error is, for every veil crate: each crate's
//! error maps itself to one [`ErrorKind`] ([`HasKind`]), looking through
//! the errors it wraps, so a caller decides what to do (retry, tell the
//! user, answer with a status) from the kind instead of matching variants
//! several crates deep. arti's errors work the same way. The type lives in
//! this bottom crate so that every crate above can name it.

/// The class of a failure, whichever crate raised it; callers decide from it whether to retry, tell the user or report
/// a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Input from the user or a peer is malformed, oversize, forged or
    /// otherwise unusable.
    InvalidInput,
    /// What was named does not exist here.
    NotFound,
    /// What would be created exists already.
    AlreadyExists,
    /// Refused in the current state: by the privacy policy, a setting, an
    /// expiry, a peer's answer, a wrong passphrase.
    Refused,
    /// Something on this machine is in the way: a file, its permissions, a
    /// lock held by another process, a port.
    LocalResource,
    /// Impossible for now (a peer unreachable, the network restarting, the
    /// disk full, an actor restarting); the same request may work later.
    Transient,
    /// Took longer than allowed.
    TimedOut,
    /// Stored data is damaged.
    Corrupt,
    /// A bug, or a library failing in a way veil does not expect; the
    /// details belong in a log, not in front of a user.
    Internal,
}

/// An error that knows its [`ErrorKind`].
pub trait HasKind {
    /// The kind of this failure, looking through the errors it wraps.
    fn kind(&self) -> ErrorKind;
}

impl HasKind for crate::Error {
    fn kind(&self) -> ErrorKind {
        use crate::Error as E;
        match self {
            E::Rng | E::ChainExhausted => ErrorKind::Internal,
            E::Expired { .. } => ErrorKind::Refused,
            E::InvalidPublicKey(_)
            | E::WeakKeyAgreement
            | E::Decrypt
            | E::BadSignature
            | E::TooLarge { .. }
            | E::TooMany { .. }
            | E::Malformed { .. }
            | E::Handshake(_)
            | E::DeviceLink(_)
            | E::Replay { .. }
            | E::TooFarAhead { .. }
            | E::InvalidConfig(_) => ErrorKind::InvalidInput,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_invalid_input_and_a_failing_rng_is_internal() {
        assert_eq!(crate::Error::Decrypt.kind(), ErrorKind::InvalidInput);
        assert_eq!(crate::Error::Rng.kind(), ErrorKind::Internal);
        assert_eq!(crate::Error::Expired { what: "invitation", expired_at: 1, now: 2 }.kind(), ErrorKind::Refused);
    }
}
