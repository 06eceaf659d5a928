//! Relays: those learnt from contacts, reservations, hole punching, and
//! peers found nearby (whose addresses the policy must allow).

use super::*;

impl Driver {
    /// The relays named in the circuit addresses `peer` gave itself
    /// (identify, its signed rendezvous record) or that reached it before.
    pub(super) fn relays_of(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let trusted = [AddressSource::Connection, AddressSource::Identify, AddressSource::Rendezvous];
        self.learned
            .addrs_of(peer)
            .filter(|(_, sources)| sources.iter().any(|s| trusted.contains(s)))
            .filter_map(|(addr, _)| policy::relay_hop(addr))
            .collect()
    }

    /// Lets a dial of `peer` by peer id go through the relays of its own
    /// circuit addresses, as a dial of one of those addresses would (the
    /// relay sees this node's IP address: the price of reaching a contact
    /// that drew another relay). Relays named by third parties (the DHT)
    /// stay refused.
    pub(super) fn allow_relays_of(&mut self, peer: PeerId) {
        for relay in self.relays_of(&peer).iter().filter_map(policy::peer_of) {
            self.relays.add_dialed(relay);
            self.swarm_state.switch.allow_relay(relay);
        }
    }

    /// Learns the relays `peer` is reachable through: the relay part of each
    /// circuit address the peer gave itself (identify, its signed rendezvous
    /// record) or that reached it (a dialed connection). Third-party sources
    /// (the DHT, the address book, mDNS) are not trusted for this. Returns
    /// the relays that are new.
    pub(super) fn learn_relays_of(&mut self, peer: PeerId) -> Vec<Multiaddr> {
        let new: Vec<Multiaddr> =
            self.relays_of(&peer).into_iter().filter(|hop| self.relays.add_learned(hop)).collect();
        if !new.is_empty() {
            self.swarm_state.switch.set_guard(self.policy, self.relays.clone());
            tracing::debug!(count = new.len(), "relays learned from a contact");
        }
        new
    }

    /// `peer` was found nearby at `addrs` (by `source`): they are kept for
    /// dials, and whoever needs nearby peers hears of it.
    pub(super) fn found_nearby(&mut self, peer: PeerId, addrs: &[Multiaddr], source: AddressSource) -> Result<()> {
        if !self.policy.proximity() {
            return Err(Error::Config("the privacy policy has no proximity discovery"));
        }
        // Only addresses the policy lets this node dial are kept.
        let mut refused = None;
        let addrs: Vec<Multiaddr> = addrs
            .iter()
            .filter(|a| match self.check_dial(a) {
                Ok(()) => true,
                Err(e) => {
                    refused = Some(e);
                    false
                }
            })
            .cloned()
            .collect();
        if let (true, Some(e)) = (addrs.is_empty(), refused) {
            return Err(e);
        }
        self.learned.record_all(peer, &addrs, source);
        for addr in &addrs {
            self.swarm_state.swarm.add_peer_address(peer, addr.clone());
        }
        self.emit(NetworkEvent::PeerDiscovered { peer, addrs });
        Ok(())
    }

    /// A hole punch with `peer` ended: on success the new connection is
    /// marked upgraded and the relayed ones to the peer close (their frame
    /// streams reopen on the direct connection; frames in flight on them are resent
    /// by their senders, like on any lost connection).
    pub(super) fn hole_punched(&mut self, peer: PeerId, result: Result<ConnectionId, dcutr::Error>) {
        let upgraded = match result {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "hole punching failed; the connection stays relayed");
                return;
            }
        };
        let Some(open) = self.swarm_state.connections.get_mut(&upgraded) else { return };
        open.2 = Route::Upgraded;
        tracing::debug!(%peer, "hole punched: a direct connection replaces the relayed one");
        let relayed: Vec<ConnectionId> = self
            .swarm_state
            .connections
            .iter()
            .filter(|(_, (p, _, route))| *p == peer && *route == Route::Relayed)
            .map(|(c, _)| *c)
            .collect();
        for c in relayed {
            self.swarm_state.close(c);
        }
    }
}
