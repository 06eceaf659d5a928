//! Rotating rendezvous points.
//!
//! `point = HMAC-SHA256(key = topic ‖ seed, msg = u64_be(period_start))`, where
//! `period_start = floor(t / period) * period`. Points are pure functions of
//! (topic, seed, time): anyone holding the seed finds the same point in the same
//! period, and without the seed points of different periods cannot be linked.

use crate::{
    Error, Result, VerifyKey,
    kdf::{hmac, hmac_verify, label, put_lp},
    secret::secret32,
    time::UnixTime,
};

secret32!(
    /// The 32-byte seed a rendezvous point is derived from. A contact link
    /// carries it; resetting a link draws a new one.
    RendezvousSeed
);

/// What a rendezvous point is for; its bytes prefix the HMAC key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic(Vec<u8>);

impl Topic {
    /// The topic of an account's contact link: `"veil/v1/rdv/contact" ‖ account_pk`.
    pub fn contact(account: &VerifyKey) -> Self {
        let mut t = label::RDV_CONTACT.to_vec();
        t.extend_from_slice(&account.to_bytes());
        Self(t)
    }

    /// The topic of every group (the group's rendezvous seed tells groups apart).
    pub fn group() -> Self {
        Self(label::RDV_GROUP.to_vec())
    }

    /// The topic of every replication node's points (the credential's
    /// rendezvous seed tells groups apart).
    pub fn replica() -> Self {
        Self(label::RDV_REPLICA.to_vec())
    }

    /// The topic of every device-link offer (the offer's one-time seed
    /// tells offers apart; see [`DeviceOffer`](crate::device_link::DeviceOffer)).
    pub fn device() -> Self {
        Self(label::RDV_DEVICE.to_vec())
    }

    /// The bytes keyed into every point before the seed (`HMAC(topic ‖ seed, …)`, PROTOCOL.md §4).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A 32-byte rendezvous point: what is announced and looked up on the network.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RendezvousPoint(pub [u8; 32]);

impl RendezvousPoint {
    /// Lower-case hex, the form used as a discovery namespace.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl core::fmt::Debug for RendezvousPoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RendezvousPoint({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// The point for the period starting at `period_start`.
pub fn point(topic: &Topic, seed: &RendezvousSeed, period_start: UnixTime) -> RendezvousPoint {
    let mut key = zeroize::Zeroizing::new(Vec::with_capacity(topic.0.len() + 32));
    key.extend_from_slice(&topic.0);
    key.extend_from_slice(seed.expose_secret());
    RendezvousPoint(hmac(&key, &[&period_start.0.to_be_bytes()]))
}

/// Proves to whoever announced `point` that the sender knows it, bound to
/// `message` (the handshake message it travels with):
/// `HMAC(point, "veil/v1/point-proof" ‖ message)`. Knowing a contact point
/// means knowing the link's current seed, so a reset link stops working even
/// for a requester that can still reach the node some other way.
pub fn point_proof(point: &RendezvousPoint, message: &[u8]) -> [u8; 32] {
    hmac(&point.0, &[label::POINT_PROOF, message])
}

/// Checks a [`point_proof`] in constant time.
pub fn check_point_proof(point: &RendezvousPoint, message: &[u8], proof: &[u8; 32]) -> bool {
    hmac_verify(&point.0, &[label::POINT_PROOF, message], proof)
}

/// The tag that names a group on the connection from peer `from` to peer
/// `to` (their network peer ids, as bytes):
/// `HMAC(seed, "veil/v1/session-tag" ‖ lp(from) ‖ lp(to))` with the group's
/// rendezvous seed. Only members can compute it, and it changes whenever
/// either side rotates its peer id, so it names the group to nobody else and
/// links nothing across sessions.
pub fn session_tag(seed: &RendezvousSeed, from: &[u8], to: &[u8]) -> [u8; 32] {
    let mut msg = label::SESSION_TAG.to_vec();
    put_lp(&mut msg, from);
    put_lp(&mut msg, to);
    hmac(seed.expose_secret(), &[&msg])
}

/// Proves membership of a group to a nearby peer (found on the LAN or over
/// a proximity transport) without naming the group:
/// `HMAC(seed, "veil/v1/nearby" ‖ salt ‖ lp(from) ‖ lp(to))` with the
/// group's rendezvous seed and the sender's fresh 32-byte `salt`. A member
/// recognises it; anyone else sees 32 random-looking bytes that a new salt
/// makes unlinkable to any other token of the same group, and that are
/// bound to one sender and one receiver (a neighbour cannot replay them to
/// another node, nor reflect them).
pub fn nearby_token(seed: &RendezvousSeed, salt: &[u8; 32], from: &[u8], to: &[u8]) -> [u8; 32] {
    let mut msg = label::NEARBY_TOKEN.to_vec();
    msg.extend_from_slice(salt);
    put_lp(&mut msg, from);
    put_lp(&mut msg, to);
    hmac(seed.expose_secret(), &[&msg])
}

/// Whether `tokens` holds the [`nearby_token`] of `seed` for this salt and
/// these peers: one HMAC, compared with each token in constant time.
pub fn holds_nearby_token(seed: &RendezvousSeed, salt: &[u8; 32], from: &[u8], to: &[u8], tokens: &[[u8; 32]]) -> bool {
    let expected = nearby_token(seed, salt, from, to);
    tokens
        .iter()
        .fold(subtle::Choice::from(0), |found, t| found | subtle::ConstantTimeEq::ct_eq(&t[..], &expected[..]))
        .into()
}

/// The rotation schedule: period length and grace window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    period: u64,
    grace: u64,
}

/// The points a node should answer to at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivePoints {
    /// The current period's point: announce here.
    pub current: RendezvousPoint,
    /// The previous period's point, while inside the grace window after a boundary.
    pub previous: Option<RendezvousPoint>,
    /// The next period's point, while inside the grace window before a boundary
    /// (a peer whose clock runs ahead is already looking there).
    pub next: Option<RendezvousPoint>,
}

impl ActivePoints {
    /// Every active point, current first.
    pub fn all(&self) -> impl Iterator<Item = RendezvousPoint> + '_ {
        core::iter::once(self.current).chain(self.previous).chain(self.next)
    }
}

impl Schedule {
    /// veil's default: 24 h periods with a 10 min grace window.
    pub const DEFAULT: Schedule = Schedule { period: 86_400, grace: 600 };

    /// A schedule of `period` seconds with a `grace` window in seconds.
    /// The grace window must be shorter than half a period.
    pub fn new(period: u64, grace: u64) -> Result<Self> {
        if period == 0 {
            return Err(Error::InvalidConfig("the rendezvous period must be at least one second"));
        }
        if grace.saturating_mul(2) >= period {
            return Err(Error::InvalidConfig("the grace window must be shorter than half a period"));
        }
        Ok(Self { period, grace })
    }

    /// Seconds in one rendezvous period; every node of a network must agree on it.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// Seconds either side of a boundary during which the neighbouring period's point is also active; under half a
    /// period.
    pub fn grace(&self) -> u64 {
        self.grace
    }

    /// The start of the period containing `t`.
    pub fn period_start(&self, t: UnixTime) -> UnixTime {
        UnixTime(t.0 - t.0 % self.period)
    }

    /// The first boundary strictly after `t` (saturates at the end of time).
    pub fn next_boundary(&self, t: UnixTime) -> UnixTime {
        self.period_start(t).plus(self.period)
    }

    /// The point of the period containing `t`.
    pub fn point_at(&self, topic: &Topic, seed: &RendezvousSeed, t: UnixTime) -> RendezvousPoint {
        point(topic, seed, self.period_start(t))
    }

    /// The points to answer to at `t`: the current one, plus the previous one
    /// within `grace` after a boundary and the next one within `grace` before it.
    pub fn active_points(&self, topic: &Topic, seed: &RendezvousSeed, t: UnixTime) -> ActivePoints {
        let start = self.period_start(t);
        let into = t.0 - start.0;
        let previous =
            (into < self.grace && start.0 >= self.period).then(|| point(topic, seed, UnixTime(start.0 - self.period)));
        let next_start = start.0.checked_add(self.period);
        let next = next_start.filter(|n| n - t.0 <= self.grace).map(|n| point(topic, seed, UnixTime(n)));
        ActivePoints { current: point(topic, seed, start), previous, next }
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn seed(b: u8) -> RendezvousSeed {
        RendezvousSeed::from_bytes([b; 32])
    }

    proptest! {
        #[test]
        fn same_point_for_all_times_in_a_period(period in 1u64..100_000, base in 0u64..1u64 << 40, a in any::<u64>(), b in any::<u64>()) {
            let s = Schedule::new(period, 0).unwrap();
            let start = base - base % period;
            let (ta, tb) = (UnixTime(start + a % period), UnixTime(start + b % period));
            prop_assert_eq!(s.point_at(&Topic::group(), &seed(1), ta), s.point_at(&Topic::group(), &seed(1), tb));
        }

        #[test]
        fn different_points_across_periods(period in 1u64..100_000, t in 0u64..1u64 << 40, k in 1u64..1000) {
            let s = Schedule::new(period, 0).unwrap();
            let t1 = UnixTime(t);
            let t2 = UnixTime(t + k * period);
            prop_assert_ne!(s.point_at(&Topic::group(), &seed(1), t1), s.point_at(&Topic::group(), &seed(1), t2));
        }

        #[test]
        fn boundary_is_after_and_within_a_period(period in 1u64..100_000, t in 0u64..1u64 << 40) {
            let s = Schedule::new(period, 0).unwrap();
            let b = s.next_boundary(UnixTime(t));
            prop_assert!(b.0 > t && b.0 - t <= period && b.0.is_multiple_of(period));
        }
    }

    #[test]
    fn point_proofs_bind_point_and_message() {
        let p = Schedule::DEFAULT.point_at(&Topic::group(), &seed(1), UnixTime(1_800_000_000));
        let q = Schedule::DEFAULT.point_at(&Topic::group(), &seed(2), UnixTime(1_800_000_000));
        let proof = point_proof(&p, b"msg1");
        assert!(check_point_proof(&p, b"msg1", &proof));
        assert!(!check_point_proof(&q, b"msg1", &proof));
        assert!(!check_point_proof(&p, b"msg2", &proof));
    }

    #[test]
    fn session_tags_depend_on_direction_peers_and_seed() {
        let t = session_tag(&seed(1), b"alice", b"bob");
        assert_ne!(t, session_tag(&seed(1), b"bob", b"alice"));
        assert_ne!(t, session_tag(&seed(2), b"alice", b"bob"));
        // Length prefixes keep the peer ids apart.
        assert_ne!(t, session_tag(&seed(1), b"aliceb", b"ob"));
    }

    #[test]
    fn nearby_tokens_depend_on_salt_direction_peers_and_seed() {
        let t = nearby_token(&seed(1), &[7; 32], b"alice", b"bob");
        assert_ne!(t, nearby_token(&seed(1), &[8; 32], b"alice", b"bob"));
        assert_ne!(t, nearby_token(&seed(1), &[7; 32], b"bob", b"alice"));
        assert_ne!(t, nearby_token(&seed(2), &[7; 32], b"alice", b"bob"));
        assert_ne!(t, nearby_token(&seed(1), &[7; 32], b"aliceb", b"ob"));
        let mut others = [[0u8; 32]; 16];
        assert!(!holds_nearby_token(&seed(1), &[7; 32], b"alice", b"bob", &others));
        others[9] = t;
        assert!(holds_nearby_token(&seed(1), &[7; 32], b"alice", b"bob", &others));
        assert!(!holds_nearby_token(&seed(1), &[7; 32], b"bob", b"alice", &others));
        // Never a session tag of the same seed and peers.
        assert_ne!(t, session_tag(&seed(1), b"alice", b"bob"));
    }

    #[test]
    fn topics_and_seeds_separate_points() {
        let s = Schedule::DEFAULT;
        let t = UnixTime(1_800_000_000);
        let alice = crate::SigningSecret::from_seed(&[7; 32]).verify_key();
        let p = s.point_at(&Topic::contact(&alice), &seed(1), t);
        assert_ne!(p, s.point_at(&Topic::group(), &seed(1), t));
        assert_ne!(p, s.point_at(&Topic::contact(&alice), &seed(2), t));
    }

    #[test]
    fn grace_window_accepts_neighbouring_periods() {
        let s = Schedule::new(100, 10).unwrap();
        let topic = Topic::group();
        let just_after = s.active_points(&topic, &seed(3), UnixTime(1005));
        assert_eq!(just_after.previous, Some(point(&topic, &seed(3), UnixTime(900))));
        assert_eq!(just_after.next, None);
        let middle = s.active_points(&topic, &seed(3), UnixTime(1050));
        assert_eq!((middle.previous, middle.next), (None, None));
        let just_before = s.active_points(&topic, &seed(3), UnixTime(1095));
        assert_eq!(just_before.next, Some(point(&topic, &seed(3), UnixTime(1100))));
        assert_eq!(just_before.all().count(), 2);
        // The very first period has no predecessor.
        assert_eq!(s.active_points(&topic, &seed(3), UnixTime(5)).previous, None);
    }

    #[test]
    fn invalid_schedules_are_refused() {
        assert!(Schedule::new(0, 0).is_err());
        assert!(Schedule::new(100, 50).is_err());
        assert!(Schedule::new(100, 49).is_ok());
    }
}
