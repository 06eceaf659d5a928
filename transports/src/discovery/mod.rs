//! Announcing and looking up rendezvous points, at the rendezvous servers
//! and in the DHT: the [`Discovery`] behaviour makes the libp2p calls and
//! feeds their outcomes into the bookkeeping here ([`Pending`]: which
//! server answers and Kademlia queries each command waits for, and the
//! merged, bounded result of a lookup).

mod behaviour;

pub(crate) use behaviour::{Discovery, DiscoveryEvent};

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use libp2p::kad::QueryId;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{Error, Result};

type Reply<T> = oneshot::Sender<Result<T>>;

/// The most peers a lookup returns.
pub const MAX_LOOKUP_PEERS: usize = 64;

/// The most addresses a lookup returns per peer.
pub const MAX_LOOKUP_ADDRS: usize = 8;

/// The shortest announcement lifetime (veil's rendezvous servers accept it).
pub const MIN_ANNOUNCE_TTL: Duration = Duration::from_secs(60);

/// The longest announcement lifetime (libp2p rendezvous' maximum, 72 h).
pub const MAX_ANNOUNCE_TTL: Duration = Duration::from_secs(72 * 3600);

/// A rendezvous point's namespace: its 32 bytes in lowercase hex.
pub(crate) fn namespace(point: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in point {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Peers found by a lookup, in the order first seen; bounded.
pub(crate) struct Found {
    me: PeerId,
    order: Vec<PeerId>,
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
}

impl Found {
    fn new(me: PeerId) -> Self {
        Self { me, order: Vec::new(), addrs: HashMap::new() }
    }

    /// Adds a peer and its addresses (itself, and peers beyond the bound, are ignored).
    pub(crate) fn add(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        if peer == self.me {
            return;
        }
        if !self.addrs.contains_key(&peer) {
            if self.order.len() >= MAX_LOOKUP_PEERS {
                return;
            }
            self.order.push(peer);
        }
        let known = self.addrs.entry(peer).or_default();
        for a in addrs {
            if known.len() < MAX_LOOKUP_ADDRS && !known.contains(&a) {
                known.push(a);
            }
        }
    }

    fn into_vec(mut self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.order.into_iter().map(|p| (p, self.addrs.remove(&p).unwrap_or_default())).collect()
    }
}

/// Outcomes of the parts of one command (one per server, one for the DHT).
struct Parts {
    left: usize,
    ok: usize,
    errors: Vec<String>,
}

impl Parts {
    fn new(left: usize) -> Self {
        Self { left, ok: 0, errors: Vec::new() }
    }

    /// Records one outcome; `true` once every part is in.
    fn record(&mut self, outcome: Result<(), String>) -> bool {
        match outcome {
            Ok(()) => self.ok += 1,
            Err(e) => self.errors.push(e),
        }
        self.left = self.left.saturating_sub(1);
        self.left == 0
    }

    /// Success if any part succeeded.
    fn verdict(&self) -> Result<()> {
        if self.ok > 0 { Ok(()) } else { Err(Error::Rendezvous(self.errors.join("; "))) }
    }
}

/// What a server that did not answer in time counts as.
const NO_ANSWER: &str = "no answer in time";

struct Announce {
    parts: Parts,
    deadline: Instant,
    reply: Reply<()>,
}

struct Lookup {
    parts: Parts,
    found: Found,
    deadline: Instant,
    reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>>,
}

/// Announcements and lookups in flight.
#[derive(Default)]
pub(crate) struct Pending {
    next: u64,
    announces: HashMap<u64, Announce>,
    lookups: HashMap<u64, Lookup>,
    /// The deadline of each announcement and lookup in flight, earliest
    /// first (the driver asks for the earliest on every turn of its loop).
    deadlines: BTreeSet<(Instant, u64)>,
    /// Announcements waiting for a server's answer to a registration.
    registering: HashMap<(PeerId, String), VecDeque<u64>>,
    /// The discovery in flight at each server (one at a time: libp2p's
    /// answer to an empty discovery does not name its namespace).
    discovering: HashMap<PeerId, (String, u64)>,
    /// Discoveries waiting for their server.
    queued: HashMap<PeerId, VecDeque<(String, u64)>>,
    kad_announces: HashMap<QueryId, u64>,
    kad_lookups: HashMap<QueryId, u64>,
}

impl Pending {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Starts an announcement with `parts` answers to wait for (at least
    /// one), until `deadline`.
    pub(crate) fn announce(&mut self, parts: usize, deadline: Instant, reply: Reply<()>) -> u64 {
        let id = self.id();
        self.announces.insert(id, Announce { parts: Parts::new(parts), deadline, reply });
        self.deadlines.insert((deadline, id));
        id
    }

    /// Starts a lookup with `parts` answers to wait for (at least one),
    /// until `deadline`.
    pub(crate) fn lookup(
        &mut self,
        me: PeerId,
        parts: usize,
        deadline: Instant,
        reply: Reply<Vec<(PeerId, Vec<Multiaddr>)>>,
    ) -> u64 {
        let id = self.id();
        self.lookups.insert(id, Lookup { parts: Parts::new(parts), found: Found::new(me), deadline, reply });
        self.deadlines.insert((deadline, id));
        id
    }

    /// The earliest deadline of an announcement or lookup in flight.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Answers the announcements and lookups whose deadline passed with
    /// what their servers answered so far: one server that does not answer
    /// (unreachable through a transport that hangs, or gone) must not hold
    /// up the others'. Late answers are then ignored.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first()
            && deadline <= now
        {
            self.deadlines.pop_first();
            if let Some(mut a) = self.announces.remove(&id) {
                while !a.parts.record(Err(NO_ANSWER.to_owned())) {}
                let _ = a.reply.send(a.parts.verdict());
            } else if let Some(mut l) = self.lookups.remove(&id) {
                while !l.parts.record(Err(NO_ANSWER.to_owned())) {}
                let _ = l.reply.send(l.parts.verdict().map(|()| l.found.into_vec()));
            }
        }
    }

    pub(crate) fn announce_part(&mut self, id: u64, outcome: Result<(), String>) {
        if let Some(a) = self.announces.get_mut(&id)
            && a.parts.record(outcome)
            && let Some(a) = self.announces.remove(&id)
        {
            self.deadlines.remove(&(a.deadline, id));
            let _ = a.reply.send(a.parts.verdict());
        }
    }

    pub(crate) fn lookup_part(&mut self, id: u64, outcome: Result<(), String>) {
        if let Some(l) = self.lookups.get_mut(&id)
            && l.parts.record(outcome)
            && let Some(l) = self.lookups.remove(&id)
        {
            self.deadlines.remove(&(l.deadline, id));
            let _ = l.reply.send(l.parts.verdict().map(|()| l.found.into_vec()));
        }
    }

    /// Where a lookup collects what it finds.
    pub(crate) fn found(&mut self, id: u64) -> Option<&mut Found> {
        self.lookups.get_mut(&id).map(|l| &mut l.found)
    }

    pub(crate) fn registering(&mut self, server: PeerId, namespace: String, id: u64) {
        self.registering.entry((server, namespace)).or_default().push_back(id);
    }

    /// A server answered a registration: the announcement it belongs to.
    pub(crate) fn registered(&mut self, server: PeerId, namespace: String) -> Option<u64> {
        let key = (server, namespace);
        let waiting = self.registering.get_mut(&key)?;
        let id = waiting.pop_front();
        if waiting.is_empty() {
            self.registering.remove(&key);
        }
        id
    }

    /// Queues a discovery; returns it if the server is free to be asked now.
    pub(crate) fn queue_discovery(&mut self, server: PeerId, namespace: String, id: u64) -> Option<String> {
        match self.discovering.entry(server) {
            Entry::Occupied(_) => {
                self.queued.entry(server).or_default().push_back((namespace, id));
                None
            }
            Entry::Vacant(free) => {
                free.insert((namespace.clone(), id));
                Some(namespace)
            }
        }
    }

    /// A server answered the discovery in flight: its lookup, and the next
    /// namespace to ask that server for, if any.
    pub(crate) fn discovered(&mut self, server: PeerId) -> (Option<(String, u64)>, Option<String>) {
        let done = self.discovering.remove(&server);
        let next = self.queued.get_mut(&server).and_then(VecDeque::pop_front);
        if self.queued.get(&server).is_some_and(VecDeque::is_empty) {
            self.queued.remove(&server);
        }
        let next_ns = next.map(|(ns, id)| {
            self.discovering.insert(server, (ns.clone(), id));
            ns
        });
        (done, next_ns)
    }

    pub(crate) fn kad_announce(&mut self, query: QueryId, id: u64) {
        self.kad_announces.insert(query, id);
    }

    pub(crate) fn kad_lookup(&mut self, query: QueryId, id: u64) {
        self.kad_lookups.insert(query, id);
    }

    /// The announcement a finished Kademlia query belonged to.
    pub(crate) fn kad_announce_done(&mut self, query: &QueryId) -> Option<u64> {
        self.kad_announces.remove(query)
    }

    /// The lookup a Kademlia query belongs to (`finished`: forget the query).
    pub(crate) fn kad_lookup_of(&mut self, query: &QueryId, finished: bool) -> Option<u64> {
        if finished { self.kad_lookups.remove(query) } else { self.kad_lookups.get(query).copied() }
    }

    /// Fails everything in flight (the swarm is going away).
    pub(crate) fn fail_all(&mut self, error: impl Fn() -> Error) {
        self.deadlines.clear();
        for (_, a) in self.announces.drain() {
            let _ = a.reply.send(Err(error()));
        }
        for (_, l) in self.lookups.drain() {
            let _ = l.reply.send(Err(error()));
        }
        *self = Self { next: self.next, ..Self::default() };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use libp2p::identity::Keypair;

    use super::*;

    fn peer() -> PeerId {
        Keypair::generate_ed25519().public().to_peer_id()
    }

    #[test]
    fn a_server_that_does_not_answer_holds_up_a_lookup_only_until_its_deadline() {
        let mut d = Pending::default();
        let (now, found) = (Instant::now(), peer());
        let (tx, mut rx) = oneshot::channel();
        let id = d.lookup(peer(), 2, now + Duration::from_secs(20), tx);
        let (atx, mut arx) = oneshot::channel();
        let announce = d.announce(2, now + Duration::from_secs(30), atx);
        // One server answers; the other never does.
        d.found(id).unwrap().add(found, ["/ip4/127.0.0.1/tcp/1".parse().unwrap()]);
        d.lookup_part(id, Ok(()));
        d.announce_part(announce, Ok(()));
        assert!(rx.try_recv().is_err() && arx.try_recv().is_err(), "both wait for the second server");
        assert_eq!(d.next_deadline(), Some(now + Duration::from_secs(20)));
        d.expire(now + Duration::from_secs(19));
        assert!(rx.try_recv().is_err(), "not before the deadline");
        d.expire(now + Duration::from_secs(20));
        let got = rx.try_recv().unwrap().unwrap();
        assert_eq!(got.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![found], "what the answering server found");
        assert_eq!(d.next_deadline(), Some(now + Duration::from_secs(30)));
        d.expire(now + Duration::from_secs(30));
        assert!(arx.try_recv().unwrap().is_ok(), "registered at one server is registered");
        assert_eq!(d.next_deadline(), None);
        // The late answer changes nothing.
        d.lookup_part(id, Ok(()));
    }

    #[test]
    fn namespace_is_lowercase_hex() {
        let mut p = [0u8; 32];
        p[0] = 0xab;
        p[31] = 0x0f;
        let ns = namespace(&p);
        assert_eq!(ns.len(), 64);
        assert!(ns.starts_with("ab00"));
        assert!(ns.ends_with("000f"));
    }

    #[test]
    fn found_is_bounded_and_excludes_self() {
        let me = peer();
        let mut f = Found::new(me);
        f.add(me, ["/memory/1".parse().unwrap()]);
        let others: Vec<PeerId> = (0..MAX_LOOKUP_PEERS + 5).map(|_| peer()).collect();
        for p in &others {
            let addrs: Vec<Multiaddr> = (0..20u64).map(|i| format!("/memory/{i}").parse().unwrap()).collect();
            f.add(*p, addrs);
        }
        let out = f.into_vec();
        assert_eq!(out.len(), MAX_LOOKUP_PEERS);
        assert!(out.iter().all(|(p, a)| *p != me && a.len() == MAX_LOOKUP_ADDRS));
        assert_eq!(out[0].0, others[0]);
    }

    #[tokio::test]
    async fn lookup_succeeds_if_any_part_does() {
        let mut d = Pending::default();
        let (tx, rx) = oneshot::channel();
        let later = Instant::now() + Duration::from_secs(60);
        let id = d.lookup(peer(), 2, later, tx);
        let p = peer();
        d.found(id).unwrap().add(p, ["/memory/7".parse().unwrap()]);
        d.lookup_part(id, Err("server down".into()));
        d.lookup_part(id, Ok(()));
        assert_eq!(rx.await.unwrap().unwrap(), vec![(p, vec!["/memory/7".parse().unwrap()])]);

        let (tx, rx) = oneshot::channel();
        let id = d.announce(1, later, tx);
        d.announce_part(id, Err("refused".into()));
        assert!(matches!(rx.await.unwrap(), Err(Error::Rendezvous(_))));
    }

    #[test]
    fn one_discovery_per_server_at_a_time() {
        let mut d = Pending::default();
        let s = peer();
        assert_eq!(d.queue_discovery(s, "a".into(), 1), Some("a".into()));
        assert_eq!(d.queue_discovery(s, "b".into(), 2), None);
        let (done, next) = d.discovered(s);
        assert_eq!(done, Some(("a".into(), 1)));
        assert_eq!(next, Some("b".into()));
        let (done, next) = d.discovered(s);
        assert_eq!(done, Some(("b".into(), 2)));
        assert_eq!(next, None);
    }
}
