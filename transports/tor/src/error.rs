//! The Tor transport's errors.

/// What can go wrong in the Tor transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Tor client could not be configured or created.
    #[error("tor configuration: {0}")]
    Config(String),
    /// The Tor client could not reach the network (yet); it keeps trying.
    #[error("tor bootstrap: {0}")]
    Bootstrap(String),
    /// A connection to an onion service failed.
    #[error("tor connect: {0}")]
    Connect(String),
    /// The onion service could not be launched.
    #[error("onion service: {0}")]
    Service(String),
    /// The onion service could not be launched yet: the previous service of
    /// the same key (the swarm restarted) is still shutting down.
    #[error("onion service: the previous service of this key is still shutting down")]
    ServiceBusy,
    /// An incoming stream could not be accepted.
    #[error("onion service stream: {0}")]
    Accept(String),
    /// The libp2p side of the transport (Noise, yamux) could not be built.
    #[error("tor transport: {0}")]
    Build(String),
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
