//! Addresses of peers that dials by peer id use, as a behaviour learned
//! them (the frame streams from connections and identify, discovery from
//! rendezvous servers and the DHT). Each behaviour keeps its own and gives
//! them to the swarm when it dials a peer by id.

use std::collections::{HashMap, VecDeque};

use libp2p::{Multiaddr, PeerId};

/// Peers a book remembers (least recently added forgotten first).
const BOOK_PEERS: usize = 1024;

/// Addresses remembered per peer.
const BOOK_ADDRS: usize = 8;

/// Addresses of peers, bounded (oldest peer forgotten first).
#[derive(Default)]
pub(crate) struct AddressBook {
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    order: VecDeque<PeerId>,
}

impl AddressBook {
    /// Remembers `addr` for `peer` (stored without a trailing `/p2p/<peer>`).
    pub(crate) fn add(&mut self, peer: PeerId, addr: Multiaddr) {
        // Stored without the trailing /p2p/<peer>: the swarm appends it.
        let addr = match addr.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) if p == peer => {
                let mut a = addr.clone();
                a.pop();
                a
            }
            _ => addr,
        };
        let entry = match self.addrs.get_mut(&peer) {
            Some(e) => e,
            None => {
                if self.order.len() >= BOOK_PEERS
                    && let Some(old) = self.order.pop_front()
                {
                    self.addrs.remove(&old);
                }
                self.order.push_back(peer);
                self.addrs.entry(peer).or_default()
            }
        };
        if let Some(i) = entry.iter().position(|a| a == &addr) {
            entry.remove(i);
        } else if entry.len() >= BOOK_ADDRS {
            entry.remove(0);
        }
        // Most recent last; dials try them newest first.
        entry.push(addr);
    }

    /// `peer`'s addresses, the most recently added first.
    pub(crate) fn get(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.addrs.get(peer).map(|a| a.iter().rev().cloned().collect()).unwrap_or_default()
    }
}
