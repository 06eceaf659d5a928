//! The crate's error type.

use libp2p::Multiaddr;
use veil_crypto::ErrorKind;

use crate::plugin::TransportId;
use crate::policy::Policy;

/// Everything that can go wrong in the transport layer.
///
/// Errors never carry secrets. Addresses do appear in [`Error::PolicyForbids`]
/// and [`Error::NoTransport`] because the caller passed them in; they are not
/// logged above `debug`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The privacy policy forbids this dial or listen; nothing reached libp2p.
    #[error("the {policy} policy forbids {addr}: {reason}")]
    PolicyForbids {
        /// The policy in force.
        policy: Policy,
        /// The refused address.
        addr: Multiaddr,
        /// Why the policy refuses it.
        reason: &'static str,
    },
    /// No attached transport can dial or listen on this address.
    #[error("no attached transport handles {addr}")]
    NoTransport {
        /// The address.
        addr: Multiaddr,
    },
    /// A transport with this id is already attached.
    #[error("transport {0} is already attached")]
    AlreadyAttached(TransportId),
    /// No transport with this id is attached.
    #[error("transport {0} is not attached")]
    NotAttached(TransportId),
    /// Building a transport failed (for example the Noise key could not be derived).
    #[error("cannot build transport {id}: {reason}")]
    Build {
        /// The transport.
        id: TransportId,
        /// What failed.
        reason: String,
    },
    /// The network key could not be turned into a libp2p identity.
    #[error("invalid network key")]
    InvalidKey,
    /// A frame is larger than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Listening failed.
    #[error("cannot listen: {0}")]
    Listen(String),
    /// Dialing failed.
    #[error("dial failed: {0}")]
    Dial(String),
    /// A frame was not acknowledged by the peer (it may or may not have arrived;
    /// resend it).
    #[error("frame not acknowledged: {0}")]
    SendFailed(String),
    /// A request on `/veil/contact/1` got no response (the peer could not be
    /// reached, refused the protocol, or the connection closed).
    #[error("request failed: {0}")]
    RequestFailed(String),
    /// A request or query got no answer within `request_timeout`.
    #[error("no answer within the request timeout")]
    Timeout,
    /// No inbound request with this id is waiting for a response (answered
    /// already, timed out, or from before a restart).
    #[error("no such inbound request")]
    NoSuchRequest,
    /// Announcing or looking up at a rendezvous point failed at every
    /// rendezvous server and in the DHT (or none is configured).
    #[error("rendezvous failed: {0}")]
    Rendezvous(String),
    /// The privacy policy rules this operation out altogether.
    #[error("the {policy} policy does not allow {what}")]
    NotUnderPolicy {
        /// The policy in force.
        policy: Policy,
        /// What was refused.
        what: &'static str,
    },
    /// The swarm was restarted (new network key or new policy) while the request
    /// was in flight; retry it.
    #[error("the network restarted while the request was in flight")]
    Restarted,
    /// The network task has stopped.
    #[error("the network has shut down")]
    Shutdown,
    /// There is no tokio runtime to run the network on.
    #[error("a tokio runtime is required")]
    NoRuntime,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// An I/O error from building a behaviour.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl veil_crypto::HasKind for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::PolicyForbids { .. }
            | Error::NoTransport { .. }
            | Error::AlreadyAttached(_)
            | Error::NotAttached(_)
            | Error::NotUnderPolicy { .. } => ErrorKind::Refused,
            Error::Build { .. } | Error::Listen(_) | Error::Io(_) => ErrorKind::LocalResource,
            Error::InvalidKey | Error::FrameTooLarge { .. } | Error::Config(_) => ErrorKind::InvalidInput,
            Error::Dial(_)
            | Error::SendFailed(_)
            | Error::RequestFailed(_)
            | Error::Rendezvous(_)
            | Error::Restarted
            | Error::Shutdown => ErrorKind::Transient,
            Error::Timeout => ErrorKind::TimedOut,
            Error::NoSuchRequest => ErrorKind::NotFound,
            Error::NoRuntime => ErrorKind::Internal,
        }
    }
}
