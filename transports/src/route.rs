//! How each open connection reaches its peer: directly, through a circuit
//! relay, or directly after hole punching moved it off a relay (DCUtR).

use core::fmt;

use libp2p::PeerId;

use crate::TransportId;

/// How a connection reaches its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Dialed or accepted directly.
    Direct,
    /// Through a circuit relay (`/p2p-circuit`): the relay sees both ends.
    Relayed,
    /// Direct, opened by hole punching from a relayed connection (DCUtR);
    /// the relayed one is closed once this one stands.
    Upgraded,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Route::Direct => "direct",
            Route::Relayed => "relayed",
            Route::Upgraded => "upgraded",
        })
    }
}

/// An open connection, as [`crate::NetworkHandle::connections`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenConnection {
    /// The peer at the other end, as the connection authenticated it.
    pub peer: PeerId,
    /// The transport carrying it (for a relayed one, the transport to the relay).
    pub transport: TransportId,
    /// How it reaches the peer.
    pub route: Route,
}
