//! The crate's error type.

use veil_crypto::ErrorKind;

/// Everything that can go wrong in the actor layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed; the wrapped error says how, and its kind decides (a full disk is transient).
    #[error(transparent)]
    Storage(#[from] veil_storage::Error),
    /// A cryptographic operation failed.
    #[error(transparent)]
    Crypto(#[from] veil_crypto::Error),
    /// The network refused or failed an operation (policy, transport, peer).
    #[error(transparent)]
    Network(#[from] veil_transports::Error),
    /// A link, request or frame could not be decoded.
    #[error(transparent)]
    Wire(#[from] veil_proto::Error),
    /// The operation was refused (an own link, a peer that did not answer).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// An actor's mailbox is closed (the node is shutting down).
    #[error("the {0} actor is not running")]
    Unavailable(&'static str),
    /// An actor failed while handling the request and is being restarted;
    /// the request was not carried out and may be retried.
    #[error("the {0} actor failed and is restarting; retry the request")]
    Restarting(&'static str),
    /// A group was joined here, but no member or replication node
    /// confirmed holding this device's announcement in time; it goes out
    /// when one is reachable.
    #[error("joined, but no member or replication node has confirmed it yet; it is announced when one is reachable")]
    JoinUnconfirmed,
    /// A group is not known to this node.
    #[error("unknown group")]
    UnknownGroup,
    /// The node's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// An argument is out of its range.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The node's thread could not be started or ended unexpectedly.
    #[error("the node runtime stopped: {0}")]
    Runtime(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl veil_crypto::HasKind for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Storage(e) => e.kind(),
            Error::Crypto(e) => e.kind(),
            Error::Network(e) => e.kind(),
            Error::Wire(e) => e.kind(),
            Error::Refused(_) => ErrorKind::Refused,
            Error::Unavailable(_) | Error::Restarting(_) => ErrorKind::Transient,
            Error::JoinUnconfirmed => ErrorKind::TimedOut,
            Error::UnknownGroup => ErrorKind::NotFound,
            Error::Config(_) | Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::Runtime(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use veil_crypto::HasKind;

    use super::*;

    #[test]
    fn a_kind_is_found_through_the_errors_it_wraps() {
        let forbidden = Error::Network(veil_transports::Error::NotAttached(veil_transports::TransportId::TCP));
        assert_eq!(forbidden.kind(), ErrorKind::Refused);
        assert_eq!(Error::Storage(veil_storage::Error::DiskFull).kind(), ErrorKind::Transient);
        assert_eq!(Error::Wire(veil_proto::Error::Checksum).kind(), ErrorKind::InvalidInput);
        assert_eq!(Error::UnknownGroup.kind(), ErrorKind::NotFound);
    }
}
