//! The record of every address this node learned for each peer, and where
//! from: the evidence for what a node knows about its peers' locations
//! (`veil peers`, and the relay-only tests that check a relayed contact's IP
//! never reaches this node).
//!
//! It outlives swarm restarts (rotation, policy changes) and is bounded: at
//! most [`MAX_PEERS`] peers (the oldest peer is forgotten first) with at most
//! [`MAX_ADDRS_PER_PEER`] addresses each (later ones are not recorded).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use libp2p::{Multiaddr, PeerId};

/// Peers remembered.
pub const MAX_PEERS: usize = 1024;
/// Addresses remembered per peer (each with its sources).
pub const MAX_ADDRS_PER_PEER: usize = 32;

/// Where an address of a peer was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum AddressSource {
    /// The remote address of a connection with the peer (dialed or accepted).
    Connection,
    /// The listen addresses the peer announced through identify.
    Identify,
    /// An address given to the swarm's address book for dials by peer id
    /// (configured servers, bootstrap peers, dialed addresses).
    PeerStore,
    /// A Kademlia routing-table entry or provider record.
    Dht,
    /// A rendezvous server's registration record.
    Rendezvous,
    /// A LAN announcement (mDNS).
    Mdns,
    /// A proximity transport's report of a peer in range
    /// ([`crate::NetworkHandle::found_nearby`]).
    Proximity,
}

impl AddressSource {
    /// Every source.
    pub const ALL: [AddressSource; 7] = [
        AddressSource::Connection,
        AddressSource::Identify,
        AddressSource::PeerStore,
        AddressSource::Dht,
        AddressSource::Rendezvous,
        AddressSource::Mdns,
        AddressSource::Proximity,
    ];
}

impl fmt::Display for AddressSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressSource::Connection => "connection",
            AddressSource::Identify => "identify",
            AddressSource::PeerStore => "peer-store",
            AddressSource::Dht => "dht",
            AddressSource::Rendezvous => "rendezvous",
            AddressSource::Mdns => "mdns",
            AddressSource::Proximity => "proximity",
        })
    }
}

/// One address learned for a peer, with every source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedAddress {
    /// The peer the address was given for (not checked by dialing it).
    pub peer: PeerId,
    /// The address, without a trailing `/p2p/<peer id>`.
    pub addr: Multiaddr,
    /// Where it was learned (sorted, each once).
    pub sources: Vec<AddressSource>,
}

#[derive(Debug, Default)]
pub(crate) struct LearnedAddresses {
    by_peer: HashMap<PeerId, Vec<(Multiaddr, BTreeSet<AddressSource>)>>,
    /// Peers in the order first seen, for forgetting the oldest.
    order: VecDeque<PeerId>,
}

impl LearnedAddresses {
    /// Records that `addr` of `peer` was learned from `source`.
    pub(crate) fn record(&mut self, peer: PeerId, addr: &Multiaddr, source: AddressSource) {
        if !self.by_peer.contains_key(&peer) {
            if self.order.len() >= MAX_PEERS
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_peer.remove(&oldest);
            }
            self.order.push_back(peer);
        }
        let addrs = self.by_peer.entry(peer).or_default();
        if let Some((_, sources)) = addrs.iter_mut().find(|(a, _)| a == addr) {
            sources.insert(source);
        } else if addrs.len() < MAX_ADDRS_PER_PEER {
            addrs.push((addr.clone(), BTreeSet::from([source])));
        }
    }

    /// Records every address of `addrs` for `peer` from `source`.
    pub(crate) fn record_all<'a>(
        &mut self,
        peer: PeerId,
        addrs: impl IntoIterator<Item = &'a Multiaddr>,
        source: AddressSource,
    ) {
        for addr in addrs {
            self.record(peer, addr, source);
        }
    }

    /// The addresses recorded for `peer`, with their sources.
    pub(crate) fn addrs_of(&self, peer: &PeerId) -> impl Iterator<Item = (&Multiaddr, &BTreeSet<AddressSource>)> {
        self.by_peer.get(peer).into_iter().flatten().map(|(addr, sources)| (addr, sources))
    }

    /// Everything recorded, by peer (in the order first seen), then address.
    pub(crate) fn snapshot(&self) -> Vec<LearnedAddress> {
        self.order
            .iter()
            .flat_map(|peer| {
                self.by_peer.get(peer).into_iter().flatten().map(move |(addr, sources)| LearnedAddress {
                    peer: *peer,
                    addr: addr.clone(),
                    sources: sources.iter().copied().collect(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_merge_per_address_and_bounds_hold() {
        let mut learned = LearnedAddresses::default();
        let (p, q) = (PeerId::random(), PeerId::random());
        learned.record(p, &ma("/ip4/10.0.0.1/tcp/1"), AddressSource::Identify);
        learned.record(p, &ma("/ip4/10.0.0.1/tcp/1"), AddressSource::Connection);
        learned.record_all(q, &[ma("/memory/1"), ma("/memory/2")], AddressSource::Rendezvous);
        let all = learned.snapshot();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].sources, vec![AddressSource::Connection, AddressSource::Identify]);
        assert!(all[1..].iter().all(|l| l.peer == q && l.sources == [AddressSource::Rendezvous]));

        for i in 0..(MAX_ADDRS_PER_PEER as u64 + 5) {
            learned.record(p, &ma(&format!("/memory/{}", i + 100)), AddressSource::Dht);
        }
        assert_eq!(learned.snapshot().iter().filter(|l| l.peer == p).count(), MAX_ADDRS_PER_PEER);

        for _ in 0..MAX_PEERS {
            learned.record(PeerId::random(), &ma("/memory/9"), AddressSource::Mdns);
        }
        let peers: BTreeSet<PeerId> = learned.snapshot().iter().map(|l| l.peer).collect();
        assert_eq!(peers.len(), MAX_PEERS);
        assert!(!peers.contains(&p), "the oldest peer is forgotten first");
    }
}
