//! The crate's error type.

use libp2p::{Multiaddr, request_response, swarm::DialError};
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
        /// The policy that refused it.
        policy: Policy,
        /// The address asked for.
        addr: Multiaddr,
        /// Why the policy refuses it.
        reason: &'static str,
    },
    /// No attached transport can dial or listen on this address.
    #[error("no attached transport handles {addr}")]
    NoTransport {
        /// The address no plug-in's `handles` accepted.
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
        /// The plug-in whose `build` failed.
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
        /// `max_frame_size` of this network.
        max: usize,
    },
    /// Listening failed.
    #[error("cannot listen: {0}")]
    Listen(ListenFailure),
    /// Dialing failed.
    #[error("dial failed: {0}")]
    Dial(DialFailure),
    /// A frame was not acknowledged by the peer (it may or may not have arrived;
    /// resend it).
    #[error("frame not acknowledged: {0}")]
    SendFailed(SendFailure),
    /// A request on `/veil/contact/1` got no response (the peer could not be
    /// reached, refused the protocol, or the connection closed).
    #[error("request failed: {0}")]
    RequestFailed(RequestFailure),
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
        /// The policy that refused it.
        policy: Policy,
        /// What was refused.
        what: &'static str,
    },
    /// The swarm was restarted (new network key or new policy) while the request
    /// was in flight, or the request was meant for a peer id the network no
    /// longer has ([`NetworkHandle::send_frame_as`](crate::NetworkHandle::send_frame_as),
    /// announcements); retry it as the new peer id.
    #[error("the network restarted while the request was in flight")]
    Restarted,
    /// The network task has stopped (shut down, or out of panics to survive);
    /// the handle answers nothing any more.
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

/// Why a listener could not be opened, or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenFailure {
    /// The listener closed before it had an address.
    #[error("the listener closed")]
    Closed,
    /// The transport's listener failed with this I/O error kind.
    #[error("{0}")]
    Io(std::io::ErrorKind),
}

/// Why a dial failed (libp2p's `DialError`, without its types).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialFailure {
    /// No address is known for the peer.
    #[error("no address is known for the peer")]
    NoAddresses,
    /// The address named this node's own peer id.
    #[error("that is this node's own peer id")]
    LocalPeer,
    /// A different peer answered than the one asked for.
    #[error("a different peer answered")]
    WrongPeer,
    /// The dial was aborted (its swarm restarted or gave up on it).
    #[error("the dial was aborted")]
    Aborted,
    /// This node's own behaviour refused the connection.
    #[error("refused here: {0}")]
    Denied(String),
    /// No address could be reached; what each transport said.
    #[error("unreachable: {0}")]
    Unreachable(String),
}

impl From<&DialError> for DialFailure {
    fn from(e: &DialError) -> Self {
        match e {
            DialError::LocalPeerId { .. } => Self::LocalPeer,
            DialError::NoAddresses => Self::NoAddresses,
            DialError::WrongPeerId { .. } => Self::WrongPeer,
            DialError::Aborted | DialError::DialPeerConditionFalse(_) => Self::Aborted,
            DialError::Denied { cause } => Self::Denied(cause.to_string()),
            DialError::Transport(errors) => {
                Self::Unreachable(errors.iter().map(|(_, e)| transport_failure(e)).collect::<Vec<_>>().join("; "))
            }
        }
    }
}

/// What one transport said about one address. libp2p's `TransportError`
/// displays nothing for a transport's own error (it leaves it to `source`),
/// so the error itself is shown; the address is not (it stays out of logs).
fn transport_failure(e: &libp2p::TransportError<std::io::Error>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(_) => "no transport for the address".into(),
        libp2p::TransportError::Other(e) => e.to_string(),
    }
}

/// Why a frame went unacknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendFailure {
    /// The peer did not acknowledge it in time.
    #[error("the acknowledgement timed out")]
    AckTimedOut,
    /// The connection carrying it closed.
    #[error("the connection closed")]
    ConnectionClosed,
    /// Its frame stream closed (idle, or ended by the peer).
    #[error("the frame stream closed")]
    StreamClosed,
    /// Every new frame stream closed at once, again and again.
    #[error("the frame stream kept closing")]
    KeptClosing,
    /// No connection to the peer could be made.
    #[error("no connection: {0}")]
    NoConnection(DialFailure),
    /// The peer's connection would not open a frame stream.
    #[error("no frame stream: {0}")]
    NoStream(String),
    /// Reading or writing the frame stream failed.
    #[error("{0}")]
    Io(std::io::ErrorKind),
}

/// Why a request on `/veil/contact/1` got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The peer could not be reached.
    #[error("the peer could not be reached")]
    Unreachable,
    /// The connection closed before the response.
    #[error("the connection closed")]
    ConnectionClosed,
    /// The peer does not speak the protocol.
    #[error("the peer does not speak the contact protocol")]
    Unsupported,
    /// Reading or writing the stream failed.
    #[error("{0}")]
    Io(std::io::ErrorKind),
    /// The requester left before the response could be sent.
    #[error("the requester is gone")]
    RequesterGone,
}

impl From<&request_response::OutboundFailure> for RequestFailure {
    fn from(e: &request_response::OutboundFailure) -> Self {
        use request_response::OutboundFailure as F;
        match e {
            F::DialFailure => Self::Unreachable,
            F::ConnectionClosed | F::Timeout => Self::ConnectionClosed,
            F::UnsupportedProtocols => Self::Unsupported,
            F::Io(e) => Self::Io(e.kind()),
        }
    }
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
