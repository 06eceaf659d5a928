//! Privacy policies and the pure checks that enforce them.
//!
//! Every dial and listen is checked twice: by the network when the caller asks
//! (a clear [`Error::PolicyForbids`](crate::Error::PolicyForbids), nothing reaches
//! libp2p), and again inside the [`SwitchableTransport`](crate::SwitchableTransport)
//! for every dial and every inbound connection, so no libp2p behaviour (Kademlia,
//! the relay client, identify-learned addresses) can get around the policy.
//!
//! The checks are pure functions of the policy, the transport kind, the address
//! and the set of relays; they have unit and property tests below.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use libp2p::kad;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::plugin::TransportKind;

/// What a user lets the network reveal.
///
/// | policy | transports | who sees your IP |
/// |---|---|---|
/// | `Direct` | everything: TCP/QUIC, mDNS (if configured), DHT server, hole punching | contacts, DHT peers, LAN |
/// | `Relayed` | reachable only through a circuit relay; IP dials only to relays; own addresses never advertised; no mDNS, DHT client only, no hole punching, no AutoNAT | the relays |
/// | `Anonymous` | mixnet transports only; every IP dial refused | nobody (beyond the mixnet's guarantees) |
/// | `Offline` | proximity transports and the LAN (IP only to private, link-local and loopback addresses); mDNS on | nearby devices |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// Everything allowed.
    #[default]
    Direct,
    /// Only reachable through a circuit relay; only relays see the IP address.
    Relayed,
    /// Mixnet transports only.
    Anonymous,
    /// Proximity transports and the LAN only.
    Offline,
}

impl Policy {
    /// All policies.
    pub const ALL: [Policy; 4] = [Policy::Direct, Policy::Relayed, Policy::Anonymous, Policy::Offline];

    /// Whether mDNS runs under this policy (`configured` is the network's own
    /// setting, which only `Direct` honours; `Offline` always runs it).
    pub fn mdns(self, configured: bool) -> bool {
        match self {
            Policy::Direct => configured,
            Policy::Offline => true,
            Policy::Relayed | Policy::Anonymous => false,
        }
    }

    /// Whether peers found nearby are offered this node's membership tokens,
    /// and offers from nearby peers answered (proximity discovery).
    pub fn proximity(self) -> bool {
        matches!(self, Policy::Direct | Policy::Offline)
    }

    /// Whether DCUtR hole punching runs (it reveals the address to the peer).
    pub fn hole_punching(self) -> bool {
        self == Policy::Direct
    }

    /// Whether AutoNAT probes run (they ask peers to dial the node's addresses).
    pub fn autonat(self) -> bool {
        self == Policy::Direct
    }

    /// Whether identify may announce and push the node's listen addresses.
    /// When it may not, only external addresses the policy allows (relay
    /// circuit addresses) are sent.
    pub fn advertises_listen_addrs(self) -> bool {
        matches!(self, Policy::Direct | Policy::Offline)
    }

    /// Whether `addr` may be kept as a confirmed external address (and so be
    /// sent by identify and rendezvous): anything under `Direct` and
    /// `Offline`; relay circuits and onion services otherwise.
    pub fn may_advertise(self, addr: &Multiaddr) -> bool {
        match self {
            Policy::Direct | Policy::Offline => true,
            Policy::Relayed | Policy::Anonymous => is_circuit(addr) || is_onion(addr),
        }
    }

    /// Whether rendezvous registration and discovery and the Kademlia DHT may
    /// run (not under `Offline`, which talks to nearby devices only).
    pub fn discovery(self) -> bool {
        self != Policy::Offline
    }

    /// The Kademlia mode: `None` lets Kademlia pick (server once an external
    /// address is confirmed).
    pub fn kad_mode(self) -> Option<kad::Mode> {
        match self {
            Policy::Direct => None,
            Policy::Offline => Some(kad::Mode::Server),
            Policy::Relayed | Policy::Anonymous => Some(kad::Mode::Client),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Direct => "direct",
            Policy::Relayed => "relayed",
            Policy::Anonymous => "anonymous",
            Policy::Offline => "offline",
        })
    }
}

/// The error of parsing a [`Policy`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy (expected direct, relayed, anonymous or offline)")]
pub struct UnknownPolicy;

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(Policy::Direct),
            "relayed" => Ok(Policy::Relayed),
            "anonymous" => Ok(Policy::Anonymous),
            "offline" => Ok(Policy::Offline),
            _ => Err(UnknownPolicy),
        }
    }
}

/// Why a policy refuses something (a short, static explanation).
pub type Reason = &'static str;

/// Relays learned from contacts that are remembered (the oldest is
/// forgotten first).
pub const MAX_LEARNED_RELAYS: usize = 16;

/// Where a relay a node knows came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayOrigin {
    /// Given in the configuration (or by [`crate::NetworkHandle::set_relays`]).
    Configured,
    /// The relay an authenticated contact is reachable through.
    Learned,
}

/// A relay a node knows, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KnownRelay {
    /// Its address, ending in `/p2p/<relay peer id>`.
    pub addr: Multiaddr,
    /// Where it came from.
    pub origin: RelayOrigin,
}

/// The relays a `Relayed` node may talk to directly.
///
/// Configured relays and relays learned from contacts may be listened on
/// through; a relay named in a `/p2p-circuit` address the caller dials is
/// added as a peer only (it will see the node's IP address, which the caller
/// accepted by dialing through it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelaySet {
    configured: Vec<(PeerId, Multiaddr)>,
    /// Oldest first, at most [`MAX_LEARNED_RELAYS`].
    learned: VecDeque<(PeerId, Multiaddr)>,
    dialed: HashSet<PeerId>,
}

impl RelaySet {
    /// A set with no relay configured or learned: under `Relayed`, no IP
    /// address can be dialed until one is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of configured relays from their addresses, each ending in
    /// `/p2p/<relay peer id>`. Returns `None` if an address names no peer.
    pub fn from_addrs<'a>(addrs: impl IntoIterator<Item = &'a Multiaddr>) -> Option<Self> {
        let mut set = Self::new();
        set.replace_configured(addrs).then_some(set)
    }

    /// Replaces the configured relays, keeping the learned and dialed ones;
    /// `false` (and nothing changed) if an address names no peer.
    pub fn replace_configured<'a>(&mut self, addrs: impl IntoIterator<Item = &'a Multiaddr>) -> bool {
        let configured: Option<Vec<(PeerId, Multiaddr)>> =
            addrs.into_iter().map(|a| peer_of(a).map(|p| (p, a.clone()))).collect();
        let Some(configured) = configured else { return false };
        self.learned.retain(|(p, _)| !configured.iter().any(|(c, _)| c == p));
        self.configured = configured;
        true
    }

    /// Adds a relay learned from a contact (an address ending in
    /// `/p2p/<relay peer id>` with a transport part). Returns whether it is
    /// new; a configured or already learned relay is not.
    pub fn add_learned(&mut self, addr: &Multiaddr) -> bool {
        let Some(peer) = peer_of(addr) else { return false };
        if without_peer(addr).iter().next().is_none() || self.may_listen_through(&peer) {
            return false;
        }
        if self.learned.len() >= MAX_LEARNED_RELAYS {
            self.learned.pop_front();
        }
        self.learned.push_back((peer, addr.clone()));
        true
    }

    /// Whether any relay is configured (not merely learned or dialed through).
    pub fn has_configured(&self) -> bool {
        !self.configured.is_empty()
    }

    /// Adds a relay that a dialed circuit address goes through.
    pub fn add_dialed(&mut self, peer: PeerId) {
        self.dialed.insert(peer);
    }

    /// Whether the node may listen through `peer`: a configured or learned relay.
    pub fn may_listen_through(&self, peer: &PeerId) -> bool {
        self.listenable().any(|(p, _)| p == peer)
    }

    /// The relays the node may listen through: the configured ones, then the
    /// learned ones (oldest first).
    pub fn known(&self) -> Vec<KnownRelay> {
        let configured = self.configured.iter().map(|(_, a)| (a, RelayOrigin::Configured));
        let learned = self.learned.iter().map(|(_, a)| (a, RelayOrigin::Learned));
        configured.chain(learned).map(|(addr, origin)| KnownRelay { addr: addr.clone(), origin }).collect()
    }

    fn listenable(&self) -> impl Iterator<Item = &(PeerId, Multiaddr)> {
        self.configured.iter().chain(&self.learned)
    }

    /// Whether a direct connection to `addr` reaches a relay: it names a relay's
    /// peer id, or it is a known relay's address.
    pub fn is_relay_addr(&self, addr: &Multiaddr) -> bool {
        match peer_of(addr) {
            Some(p) => self.may_listen_through(&p) || self.dialed.contains(&p),
            None => self.listenable().any(|(_, a)| without_peer(a) == *addr),
        }
    }
}

/// Whether `addr` is a Tor onion service (`/onion3/…`, not through a
/// circuit relay): whoever reaches it learns no IP address, so every policy
/// may advertise it.
pub fn is_onion(addr: &Multiaddr) -> bool {
    matches!(addr.iter().next(), Some(Protocol::Onion3(_))) && !is_circuit(addr)
}

/// Whether `addr` goes through a circuit relay.
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The part of a circuit address before `/p2p-circuit` (the address of the
/// relay), or `None` if `addr` is not a circuit address.
pub fn relay_hop(addr: &Multiaddr) -> Option<Multiaddr> {
    if !is_circuit(addr) {
        return None;
    }
    Some(addr.iter().take_while(|p| !matches!(p, Protocol::P2pCircuit)).collect())
}

/// The peer id in the last `/p2p/` component, if it is the last component.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

/// Whether `ip` is on the local network: loopback, private (RFC 1918, IPv6
/// unique local) or link-local.
pub fn is_lan_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_lan_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_lan_v4(v4),
            None => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
        },
    }
}

fn is_lan_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_private() || ip.is_link_local()
}

fn first_ip(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => Some(IpAddr::V4(ip)),
        Some(Protocol::Ip6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// Whether `addr` is an unspecified IP address (`0.0.0.0`, `::`).
pub(crate) fn is_unspecified_addr(addr: &Multiaddr) -> bool {
    is_unspecified(addr)
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip == Ipv4Addr::UNSPECIFIED,
        Some(Protocol::Ip6(ip)) => ip == Ipv6Addr::UNSPECIFIED,
        _ => false,
    }
}

const ANON_ONLY_MIXNET: Reason = "anonymous: only mixnet transports may be used";
const RELAYED_ONLY_RELAYS: Reason = "relayed: direct connections go only to relays";
const RELAYED_LISTEN: Reason = "relayed: listen only through a known relay (/p2p-circuit)";
const RELAYED_UNKNOWN_RELAY: Reason = "relayed: listen only through a configured or learned relay";
const RELAYED_PROXIMITY: Reason = "relayed: proximity links would make the node directly reachable";
const RELAYED_CIRCUIT_PEER: Reason = "relayed: the circuit address must name the relay's peer id";
const OFFLINE_LAN: Reason = "offline: IP traffic only to loopback, private and link-local addresses";
const OFFLINE_MIXNET: Reason = "offline: mixnets need the internet";
const OFFLINE_NAME: Reason = "offline: a host name may resolve to a public address";

fn offline_ip(addr: &Multiaddr, allow_unspecified: bool) -> Result<(), Reason> {
    match first_ip(addr) {
        Some(ip) if is_lan_ip(ip) => Ok(()),
        Some(_) if allow_unspecified && is_unspecified(addr) => Ok(()),
        Some(_) => Err(OFFLINE_LAN),
        None => Err(OFFLINE_NAME),
    }
}

/// May the node dial `addr` (not a circuit address) over a transport of `kind`?
pub fn check_dial(policy: Policy, kind: TransportKind, addr: &Multiaddr, relays: &RelaySet) -> Result<(), Reason> {
    use TransportKind::*;
    match (policy, kind) {
        (Policy::Direct, _) => Ok(()),
        (Policy::Relayed, Mixnet) => Ok(()),
        (Policy::Relayed, Proximity) => Err(RELAYED_PROXIMITY),
        (Policy::Relayed, Ip | Memory) => {
            if relays.is_relay_addr(addr) {
                Ok(())
            } else {
                Err(RELAYED_ONLY_RELAYS)
            }
        }
        (Policy::Anonymous, Mixnet) => Ok(()),
        (Policy::Anonymous, _) => Err(ANON_ONLY_MIXNET),
        (Policy::Offline, Proximity | Memory) => Ok(()),
        (Policy::Offline, Mixnet) => Err(OFFLINE_MIXNET),
        (Policy::Offline, Ip) => offline_ip(addr, false),
    }
}

/// May the node listen on `addr` (not a circuit address) over a transport of `kind`?
pub fn check_listen(policy: Policy, kind: TransportKind, addr: &Multiaddr) -> Result<(), Reason> {
    use TransportKind::*;
    match (policy, kind) {
        (Policy::Direct, _) => Ok(()),
        (Policy::Relayed, Mixnet) => Ok(()),
        (Policy::Relayed, _) => Err(RELAYED_LISTEN),
        (Policy::Anonymous, Mixnet) => Ok(()),
        (Policy::Anonymous, _) => Err(ANON_ONLY_MIXNET),
        (Policy::Offline, Proximity | Memory) => Ok(()),
        (Policy::Offline, Mixnet) => Err(OFFLINE_MIXNET),
        // Listening on 0.0.0.0 is allowed offline: inbound connections from
        // non-LAN addresses are then refused by `check_inbound`.
        (Policy::Offline, Ip) => offline_ip(addr, true),
    }
}

/// May the node accept a connection from `remote` over a transport of `kind`?
pub fn check_inbound(policy: Policy, kind: TransportKind, remote: &Multiaddr) -> Result<(), Reason> {
    use TransportKind::*;
    match (policy, kind) {
        (Policy::Direct, _) => Ok(()),
        (Policy::Relayed, Mixnet) => Ok(()),
        (Policy::Relayed, _) => Err(RELAYED_LISTEN),
        (Policy::Anonymous, Mixnet) => Ok(()),
        (Policy::Anonymous, _) => Err(ANON_ONLY_MIXNET),
        (Policy::Offline, Proximity | Memory) => Ok(()),
        (Policy::Offline, Mixnet) => Err(OFFLINE_MIXNET),
        (Policy::Offline, Ip) => offline_ip(remote, false),
    }
}

/// May the node dial the circuit address `addr`, whose hop to the relay
/// would go over a transport of `hop_kind`?
///
/// Under `Relayed`, any relay may be used for dialing (the caller adds it to
/// the [`RelaySet`] as dialed, so the hop passes [`check_dial`]); under the
/// other policies the hop itself must be allowed.
pub fn check_circuit_dial(
    policy: Policy,
    hop_kind: TransportKind,
    addr: &Multiaddr,
    relays: &RelaySet,
) -> Result<(), Reason> {
    let hop = relay_hop(addr).unwrap_or_else(|| addr.clone());
    match policy {
        Policy::Direct => Ok(()),
        Policy::Relayed => match peer_of(&hop) {
            Some(_) => Ok(()),
            None => Err(RELAYED_CIRCUIT_PEER),
        },
        Policy::Anonymous | Policy::Offline => check_dial(policy, hop_kind, &hop, relays),
    }
}

/// May the node listen through the relay of circuit address `addr`, whose
/// hop would go over a transport of `hop_kind`?
pub fn check_circuit_listen(
    policy: Policy,
    hop_kind: TransportKind,
    addr: &Multiaddr,
    relays: &RelaySet,
) -> Result<(), Reason> {
    let hop = relay_hop(addr).unwrap_or_else(|| addr.clone());
    match policy {
        Policy::Direct => Ok(()),
        Policy::Relayed => match peer_of(&hop) {
            Some(p) if relays.may_listen_through(&p) => Ok(()),
            Some(_) => Err(RELAYED_UNKNOWN_RELAY),
            None => Err(RELAYED_CIRCUIT_PEER),
        },
        Policy::Anonymous | Policy::Offline => check_dial(policy, hop_kind, &hop, relays),
    }
}

#[cfg(test)]
mod tests;
