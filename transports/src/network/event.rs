//! What a network reports.

use libp2p::{Multiaddr, PeerId, request_response};

use crate::plugin::TransportId;

/// Identifies a request received on `/veil/contact/1` until it is answered
/// with [`NetworkHandle::respond`](crate::NetworkHandle::respond). Opaque; valid only on the network (and
/// swarm generation) that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InboundRequestId {
    pub(crate) generation: u64,
    pub(crate) id: request_response::InboundRequestId,
}

/// What the network reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetworkEvent {
    /// The node listens on a new address.
    Listening {
        /// Where the node can now be reached, as the transport reports it
        /// (an unspecified IP is never reported, each interface's is).
        addr: Multiaddr,
    },
    /// The node no longer listens on an address (its listener or transport went away).
    ListenAddrExpired {
        /// An address earlier reported by [`NetworkEvent::Listening`].
        addr: Multiaddr,
    },
    /// The first connection to a peer is up.
    PeerConnected {
        /// The peer now connected (its first connection; more may follow
        /// without another event).
        peer: PeerId,
        /// The transport carrying the connection.
        transport: TransportId,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer with no connection left.
        peer: PeerId,
    },
    /// A frame arrived. It is acknowledged to the sender once this event has
    /// been accepted by the event channel.
    FrameReceived {
        /// The peer id the frame came from, as its connection authenticated it.
        peer: PeerId,
        /// The frame's bytes as sent (at most `max_frame_size`).
        frame: Vec<u8>,
    },
    /// A peer sent a request on `/veil/contact/1`. Answer it with
    /// [`NetworkHandle::respond`](crate::NetworkHandle::respond) (an empty response is allowed); unanswered,
    /// the requester gives up after its `request_timeout`.
    RequestReceived {
        /// The peer id the request came from (authenticated by its connection).
        peer: PeerId,
        /// What to answer.
        id: InboundRequestId,
        /// The request (at most `max_frame_size` bytes).
        request: Vec<u8>,
    },
    /// As a rendezvous server: a peer registered under a namespace.
    RendezvousRegistered {
        /// The peer id that registered (its signed record names it).
        peer: PeerId,
        /// The namespace (for veil nodes, a rendezvous point in lowercase hex).
        namespace: String,
    },
    /// As a rendezvous server: a peer's registration ended (unregistered or
    /// expired).
    RendezvousUnregistered {
        /// The peer id whose registration ended.
        peer: PeerId,
        /// The namespace it was registered under.
        namespace: String,
    },
    /// A peer told us (identify) which addresses it listens on.
    PeerIdentified {
        /// The connected peer that sent its identify record.
        peer: PeerId,
        /// The listen addresses it announced.
        listen_addrs: Vec<Multiaddr>,
    },
    /// A peer was found nearby: by mDNS on the LAN, or reported by a
    /// proximity transport ([`NetworkHandle::found_nearby`](crate::NetworkHandle::found_nearby)). Its addresses
    /// are remembered for dials.
    PeerDiscovered {
        /// The peer found nearby (not connected yet).
        peer: PeerId,
        /// Its LAN addresses.
        addrs: Vec<Multiaddr>,
    },
    /// The swarm restarted (after [`NetworkHandle::rotate`](crate::NetworkHandle::rotate) or
    /// [`NetworkHandle::set_policy`](crate::NetworkHandle::set_policy)); every connection of the old swarm is gone.
    Restarted {
        /// The node's peer id from now on.
        peer_id: PeerId,
    },
}
