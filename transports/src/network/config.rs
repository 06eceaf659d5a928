//! A network's settings.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::codec::DEFAULT_MAX_FRAME;
use crate::error::{Error, Result};
use crate::policy::RelaySet;

/// The longest the network waits, at start and after a restart, for its
/// listeners' first addresses before it takes commands anyway.
pub(crate) const STARTUP_LISTEN_WAIT: Duration = Duration::from_secs(2);

/// Settings of a [`Network`](crate::Network). Server roles are off by default; any node can
/// enable them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// Serve as a circuit relay for other nodes.
    pub relay_server: bool,
    /// Serve as a rendezvous point for other nodes.
    pub rendezvous_server: bool,
    /// Announce and discover peers on the LAN with mDNS. Only honoured under
    /// [`Policy::Direct`](crate::Policy::Direct); [`Policy::Offline`](crate::Policy::Offline) always runs mDNS, the other
    /// policies never do.
    pub mdns: bool,
    /// How often mDNS asks the LAN who is there (default 60 s; libp2p's own
    /// default of 5 min makes a newcomer wait that long to find a peer that
    /// started before it).
    pub mdns_query_interval: Duration,
    /// The largest frame sent or accepted, in bytes (default 256 KiB). Larger
    /// inbound frames are refused before anything is allocated.
    pub max_frame_size: usize,
    /// Relays this node may connect to and listen through under
    /// [`Policy::Relayed`](crate::Policy::Relayed); each address must end in `/p2p/<relay peer id>`.
    pub relays: Vec<Multiaddr>,
    /// How long a frame may wait for its acknowledgement, a request for its
    /// response, and a Kademlia query for its answer (default 10 s).
    pub request_timeout: Duration,
    /// How long a frame stream with nothing to send stays open, and then how
    /// long a connection without open streams stays open (default 60 s).
    pub idle_connection_timeout: Duration,
    /// Concurrent request-response streams per connection, both directions
    /// (default 256).
    pub max_concurrent_streams: usize,
    /// Frames written to a peer and not yet acknowledged, per frame stream
    /// (default 256). Further sends wait.
    pub max_frames_in_flight: usize,
    /// Ping every connection at this interval (default 15 s); a connection
    /// whose ping goes unanswered for `request_timeout` is closed. A peer
    /// gone without a word, or a path cut (a partition, a lost NAT mapping),
    /// would otherwise hold its connection until TCP gives up, hours later,
    /// and every send would time out on it. Pings keep no connection open.
    /// `None`: no pings.
    pub ping_interval: Option<Duration>,
    /// Take part in the Kademlia DHT even without bootstrap peers (for a
    /// bootstrap node). Kademlia also runs whenever `bootstrap` is non-empty;
    /// never under [`Policy::Offline`](crate::Policy::Offline).
    pub kad: bool,
    /// Kademlia peers to join the DHT through, each ending in `/p2p/<peer id>`
    /// (default none).
    pub bootstrap: Vec<Multiaddr>,
    /// Rendezvous servers [`NetworkHandle::announce`](crate::NetworkHandle::announce) registers at and
    /// [`NetworkHandle::lookup`](crate::NetworkHandle::lookup) asks, each ending in `/p2p/<peer id>`
    /// (default none; none is built in). Replace them at run time with
    /// [`NetworkHandle::set_rendezvous_servers`](crate::NetworkHandle::set_rendezvous_servers).
    pub rendezvous_servers: Vec<Multiaddr>,
    /// Addresses to listen on from the start (default none). The network
    /// takes no command until each has its first address (at most 2 s): a
    /// node's first dials then leave from its
    /// listening port, so the address peers observe is one hole punching
    /// can use (TCP port reuse).
    pub listen: Vec<Multiaddr>,
    /// Capacity of the command channel (default 256).
    pub command_capacity: usize,
    /// Capacity of the event channel (default 256). Behind a full channel up
    /// to as many events more wait in the network's queue; when that is full
    /// too, the network stops reading from its connections (and acknowledges
    /// nothing) until the consumer catches up. If the receiver is dropped,
    /// events are discarded and frames are no longer acknowledged.
    pub event_capacity: usize,
    /// When this node is a relay: the longest circuit it carries (default 1 h).
    pub relay_circuit_duration: Duration,
    /// When this node is a relay: the most bytes per circuit (default 64 MiB).
    pub relay_circuit_bytes: u64,
    /// When this node is a relay: the most reservations it holds (default 128).
    pub relay_max_reservations: usize,
    /// When this node is a relay: the most circuits open at once (default 16).
    pub relay_max_circuits: usize,
    /// When this node is a relay: the most circuits per peer (default 4).
    pub relay_max_circuits_per_peer: usize,
    /// When this node is a relay: the reservations a peer may make per
    /// minute (default 30; every rotation of a relayed node's key is a new
    /// peer, so the per-IP limit of 60 per minute matters more).
    pub relay_reservations_per_minute: u32,
    /// When this node is a rendezvous server: the registrations it keeps
    /// for one peer (default 1 024). A node registers one point per
    /// conversation (and its link's and offers' points), so this bounds the
    /// conversations a node can be met in through one server; libp2p's own
    /// default of 32 left a node with more conversations unmet at the rest.
    pub rendezvous_registrations_per_peer: usize,
    /// When this node is a rendezvous server: the registrations it keeps in
    /// all (default 10 000). Peer ids cost nothing, so this, not the
    /// per-peer bound, is what holds a flood.
    pub rendezvous_registrations_total: usize,
    /// Inbound connections still setting up (Noise and yamux not done) at
    /// once (default 128); more are closed at once.
    pub max_pending_incoming: u32,
    /// Inbound connections established at once (default 512); more are
    /// closed at once. A relay or rendezvous server for many nodes raises it.
    pub max_incoming_connections: u32,
    /// Connections with one peer at once, both directions (default 8).
    pub max_connections_per_peer: u32,
    /// How long an inbound connection may take to finish its set-up
    /// (default 20 s); a peer that opens connections and stays silent holds
    /// none of them longer.
    pub handshake_timeout: Duration,
    /// How long a dial may take, connecting and setting up (default 120 s:
    /// a circuit over Tor on a busy machine is slow); a peer that accepts and
    /// stays silent holds none of this node's dials longer.
    pub dial_timeout: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            relay_server: false,
            rendezvous_server: false,
            mdns: true,
            mdns_query_interval: Duration::from_secs(60),
            max_frame_size: DEFAULT_MAX_FRAME,
            relays: Vec::new(),
            request_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(60),
            max_concurrent_streams: 256,
            max_frames_in_flight: 256,
            ping_interval: Some(Duration::from_secs(15)),
            kad: false,
            bootstrap: Vec::new(),
            rendezvous_servers: Vec::new(),
            listen: Vec::new(),
            command_capacity: 256,
            event_capacity: 256,
            relay_circuit_duration: Duration::from_secs(3600),
            relay_circuit_bytes: 64 << 20,
            relay_max_reservations: 128,
            relay_max_circuits: 16,
            relay_max_circuits_per_peer: 4,
            relay_reservations_per_minute: 30,
            rendezvous_registrations_per_peer: 1024,
            rendezvous_registrations_total: 10_000,
            max_pending_incoming: 128,
            max_incoming_connections: 512,
            max_connections_per_peer: 8,
            handshake_timeout: Duration::from_secs(20),
            dial_timeout: Duration::from_secs(120),
        }
    }
}

impl NetworkConfig {
    pub(crate) fn validate(&self) -> Result<RelaySet> {
        if self.max_frame_size == 0 || u32::try_from(self.max_frame_size).is_err() {
            return Err(Error::Config("max_frame_size must be between 1 and 2^32 - 1"));
        }
        if self.command_capacity == 0
            || self.event_capacity == 0
            || self.max_concurrent_streams == 0
            || self.max_frames_in_flight == 0
            || self.max_pending_incoming == 0
            || self.max_incoming_connections == 0
            || self.max_connections_per_peer == 0
        {
            return Err(Error::Config("capacities must be at least 1"));
        }
        if self.handshake_timeout.is_zero() || self.dial_timeout.is_zero() {
            return Err(Error::Config("timeouts must be above zero"));
        }
        if self.relay_server
            && (self.relay_max_reservations == 0
                || self.relay_max_circuits == 0
                || self.relay_max_circuits_per_peer == 0
                || self.relay_reservations_per_minute == 0)
        {
            return Err(Error::Config("relay limits must be at least 1"));
        }
        if self.rendezvous_server
            && (self.rendezvous_registrations_per_peer == 0 || self.rendezvous_registrations_total == 0)
        {
            return Err(Error::Config("rendezvous limits must be at least 1"));
        }
        if self.bootstrap.iter().any(|a| crate::policy::peer_of(a).is_none()) {
            return Err(Error::Config("bootstrap addresses must end in /p2p/<peer id>"));
        }
        servers_of(&self.rendezvous_servers)?;
        RelaySet::from_addrs(&self.relays).ok_or(Error::Config("relay addresses must end in /p2p/<peer id>"))
    }
}

/// The rendezvous servers of `addrs`, each of which must end in `/p2p/<peer id>`.
pub(crate) fn servers_of(addrs: &[Multiaddr]) -> Result<Vec<(PeerId, Multiaddr)>> {
    addrs
        .iter()
        .map(|a| {
            crate::policy::peer_of(a)
                .map(|p| (p, a.clone()))
                .ok_or(Error::Config("rendezvous server addresses must end in /p2p/<peer id>"))
        })
        .collect()
}
