//! The per-sender-device symmetric ratchet.
//!
//! Each sending device keeps a chain key `CK_n`. One step is
//! `CK_{n+1} ‖ K_n ‖ N_n = HKDF-Expand(PRK = CK_n, info = "veil/v1/ratchet-step", 76)`,
//! giving the AES-256-GCM key `K_n` and nonce `N_n` of message `n`. The
//! old chain key is overwritten, so a device compromised later cannot decrypt
//! earlier messages (Berty keeps decrypted message keys forever).
//!
//! Receivers decrypt out of order within a bounded window: keys of skipped
//! messages are kept until used, then deleted; a counter received twice, or
//! one that fell behind the window, is refused as a replay.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::{
    AgreementPublic, AgreementSecret, Error, GroupId, Result, VerifyKey,
    aead::NONCE_LEN,
    kdf::{expand_prk, label},
    seal::{open_sealed, seal_to},
    secret::{Entropy, secret32},
};

secret32!(
    /// The secret a chain steps from: each step gives the next chain key and one message key (PROTOCOL.md §8).
    ChainKey
);

/// Default out-of-order window: messages at most this far ahead of the next
/// expected one decrypt, and skipped keys older than this are dropped.
pub const DEFAULT_WINDOW: u64 = 1024;
/// The largest window a receiver accepts (it bounds memory per sender).
pub const MAX_WINDOW: u64 = 16_384;

/// The key and nonce of one message. Zeroized on drop.
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct MessageKey {
    pub(crate) key: [u8; 32],
    pub(crate) nonce: [u8; NONCE_LEN],
}

impl MessageKey {
    /// Rebuilds a key from `key ‖ nonce` (44 bytes), e.g. when loading a
    /// persisted skipped key. `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 + NONCE_LEN {
            return None;
        }
        let mut mk = MessageKey { key: [0; 32], nonce: [0; NONCE_LEN] };
        mk.key.copy_from_slice(&bytes[..32]);
        mk.nonce.copy_from_slice(&bytes[32..]);
        Some(mk)
    }

    /// The AES-256-GCM key. Handle with care: never log or persist it unsealed.
    pub fn expose_key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The AES-GCM nonce that goes with the key.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }
}

impl core::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MessageKey(<redacted>)")
    }
}

fn step(chain: &ChainKey) -> (ChainKey, MessageKey) {
    let okm: Zeroizing<[u8; 76]> = expand_prk(chain.expose_secret(), &[label::RATCHET_STEP]);
    let mut next = [0u8; 32];
    let mut mk = MessageKey { key: [0; 32], nonce: [0; NONCE_LEN] };
    next.copy_from_slice(&okm[..32]);
    mk.key.copy_from_slice(&okm[32..64]);
    mk.nonce.copy_from_slice(&okm[64..76]);
    (ChainKey::from_bytes(next), mk)
}

/// A chain at a position: what is persisted, and what is shared with members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    /// The chain key for message `next`.
    pub chain_key: ChainKey,
    /// The counter of the next message.
    pub next: u64,
}

impl ChainState {
    /// `chain_key ‖ u64_be(next)`.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 40]> {
        let mut out = Zeroizing::new([0u8; 40]);
        out[..32].copy_from_slice(self.chain_key.expose_secret());
        out[32..].copy_from_slice(&self.next.to_be_bytes());
        out
    }

    /// Parses [`ChainState::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 40 {
            return Err(Error::Malformed { what: "chain state", reason: "must be 40 bytes" });
        }
        let mut ck = [0u8; 32];
        ck.copy_from_slice(&bytes[..32]);
        let mut next = [0u8; 8];
        next.copy_from_slice(&bytes[32..]);
        Ok(Self { chain_key: ChainKey::from_bytes(ck), next: u64::from_be_bytes(next) })
    }
}

/// A device's sending chain in one group.
#[derive(Debug, Clone)]
pub struct SenderChain {
    state: ChainState,
}

impl SenderChain {
    /// A new chain with a random chain key, at message 0.
    pub fn generate(entropy: &mut impl Entropy) -> Result<Self> {
        Ok(Self { state: ChainState { chain_key: ChainKey::generate(entropy)?, next: 0 } })
    }

    /// Resumes a persisted chain.
    pub fn from_state(state: ChainState) -> Self {
        Self { state }
    }

    /// The current position (persist it after every message; share it with a
    /// new member so it can read from here on, not before).
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// Moves the chain on to message `counter` without sealing anything
    /// (positions that may have been used before a crash are never used
    /// again). Receivers step over the gap as over lost messages, so it must
    /// stay within their window: a receiver that read everything before the
    /// gap opens message `counter` only if it is fewer than
    /// [`DEFAULT_WINDOW`] positions ahead, so a longer gap is refused.
    pub fn skip_to(&mut self, counter: u64) -> Result<()> {
        if counter <= self.state.next {
            return Ok(());
        }
        if counter - self.state.next >= DEFAULT_WINDOW {
            return Err(Error::TooFarAhead { counter, next: self.state.next, window: DEFAULT_WINDOW });
        }
        let mut chain_key = self.state.chain_key.clone();
        for _ in self.state.next..counter {
            chain_key = step(&chain_key).0;
        }
        self.state = ChainState { chain_key, next: counter };
        Ok(())
    }

    /// The key of the next message, and its counter; advances the chain.
    pub fn next_key(&mut self) -> Result<(u64, MessageKey)> {
        let counter = self.state.next;
        let next = counter.checked_add(1).ok_or(Error::ChainExhausted)?;
        let (ck, mk) = step(&self.state.chain_key);
        self.state = ChainState { chain_key: ck, next };
        Ok((counter, mk))
    }
}

/// The receiving side of one sender's chain.
#[derive(Debug, Clone)]
pub struct ReceiverChain {
    state: ChainState,
    skipped: BTreeMap<u64, MessageKey>,
    window: u64,
}

impl ReceiverChain {
    /// A receiver starting at `state` with the out-of-order `window`.
    pub fn new(state: ChainState, window: u64) -> Result<Self> {
        if window == 0 || window > MAX_WINDOW {
            return Err(Error::InvalidConfig("ratchet window must be between 1 and MAX_WINDOW"));
        }
        Ok(Self { state, skipped: BTreeMap::new(), window })
    }

    /// Messages up to `window - 1` past the chain position open; skipped keys more than `window` behind it are dropped.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The chain position (counter of the next unseen in-order message).
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// Counters below the chain position whose keys are still held.
    pub fn skipped_counters(&self) -> impl Iterator<Item = u64> + '_ {
        self.skipped.keys().copied()
    }

    /// Restores skipped keys saved with [`ReceiverChain::export_skipped`].
    pub fn import_skipped(&mut self, keys: impl IntoIterator<Item = (u64, MessageKey)>) {
        for (c, k) in keys {
            if c < self.state.next && c.saturating_add(self.window) >= self.state.next {
                self.skipped.insert(c, k);
            }
        }
    }

    /// The skipped keys, for persisting.
    pub fn export_skipped(&self) -> Vec<(u64, MessageKey)> {
        self.skipped.iter().map(|(c, k)| (*c, k.clone())).collect()
    }

    /// Decrypts message `counter` with `decrypt`. The chain only changes if
    /// `decrypt` succeeds, so a forged message cannot burn a key; the key used
    /// is then deleted.
    pub fn open<T>(&mut self, counter: u64, decrypt: impl FnOnce(&MessageKey) -> Result<T>) -> Result<T> {
        if counter < self.state.next {
            let key = self.skipped.get(&counter).ok_or(Error::Replay { counter })?;
            let out = decrypt(key)?;
            self.skipped.remove(&counter);
            return Ok(out);
        }
        let ahead = counter - self.state.next;
        if ahead >= self.window {
            return Err(Error::TooFarAhead { counter, next: self.state.next, window: self.window });
        }
        let mut chain = self.state.chain_key.clone();
        let mut newly_skipped = Vec::with_capacity(ahead as usize);
        for c in self.state.next..counter {
            let (next, mk) = step(&chain);
            newly_skipped.push((c, mk));
            chain = next;
        }
        let (after, mk) = step(&chain);
        let out = decrypt(&mk)?;
        self.skipped.extend(newly_skipped);
        self.state = ChainState { chain_key: after, next: counter + 1 };
        let oldest = self.state.next.saturating_sub(self.window);
        self.skipped = self.skipped.split_off(&oldest);
        Ok(out)
    }
}

fn share_aad(group: &GroupId) -> Vec<u8> {
    let mut aad = label::CHAIN_SHARE.to_vec();
    aad.extend_from_slice(&group.0);
    aad
}

/// Seals a sender's chain position to a member's agreement key, so the member
/// can read that sender's messages from `state.next` on.
///
/// Plaintext: `device_pk ‖ chain_key ‖ u64_be(next)` (72 bytes), sealed with
/// [`seal_to`] under associated data `"veil/v1/chain-share" ‖ group_id`.
pub fn seal_chain_state(
    group: &GroupId,
    sender_device: &VerifyKey,
    state: &ChainState,
    member: &AgreementPublic,
    entropy: &mut impl Entropy,
) -> Result<Vec<u8>> {
    let mut pt = Zeroizing::new(Vec::with_capacity(72));
    pt.extend_from_slice(&sender_device.to_bytes());
    pt.extend_from_slice(&state.to_bytes()[..]);
    seal_to(member, &share_aad(group), &pt, entropy)
}

/// Opens a chain state sealed with [`seal_chain_state`]: the sender device and its chain position.
pub fn open_chain_state(group: &GroupId, member: &AgreementSecret, sealed: &[u8]) -> Result<(VerifyKey, ChainState)> {
    let pt = open_sealed(member, &share_aad(group), sealed)?;
    if pt.len() != 72 {
        return Err(Error::Malformed { what: "shared chain state", reason: "must be 72 bytes" });
    }
    let device = VerifyKey::from_slice(&pt[..32])?;
    Ok((device, ChainState::from_bytes(&pt[32..])?))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::secret::{OsEntropy, TestEntropy};

    fn pair(window: u64) -> (SenderChain, ReceiverChain) {
        let s = SenderChain::generate(&mut TestEntropy::new(b"ratchet")).unwrap();
        let r = ReceiverChain::new(s.state().clone(), window).unwrap();
        (s, r)
    }

    fn check(expected: &MessageKey) -> impl FnOnce(&MessageKey) -> Result<()> + '_ {
        move |got| if got.key == expected.key && got.nonce == expected.nonce { Ok(()) } else { Err(Error::Decrypt) }
    }

    proptest! {
        #[test]
        fn any_order_within_window_decrypts_once(n in 1usize..60, seed in any::<u64>()) {
            let (mut s, mut r) = pair(64);
            let mut keys: Vec<(u64, MessageKey)> = (0..n).map(|_| s.next_key().unwrap()).collect();
            // Deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..keys.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                keys.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for (c, k) in &keys {
                prop_assert!(r.open(*c, check(k)).is_ok());
            }
            // Every key was used and deleted: replays all fail.
            for (c, k) in &keys {
                prop_assert_eq!(r.open(*c, check(k)), Err(Error::Replay { counter: *c }));
            }
            prop_assert_eq!(r.skipped_counters().count(), 0);
        }

        #[test]
        fn in_order_never_keeps_keys(n in 1usize..100) {
            let (mut s, mut r) = pair(8);
            for _ in 0..n {
                let (c, k) = s.next_key().unwrap();
                prop_assert!(r.open(c, check(&k)).is_ok());
                prop_assert_eq!(r.skipped_counters().count(), 0);
            }
        }
    }

    #[test]
    fn window_bounds_and_failed_decrypt_changes_nothing() {
        let (mut s, mut r) = pair(4);
        let keys: Vec<_> = (0..10).map(|_| s.next_key().unwrap()).collect();
        assert!(matches!(r.open(4, check(&keys[4].1)), Err(Error::TooFarAhead { .. })));
        // A forged message at counter 2 fails and burns nothing.
        assert_eq!(r.open(2, |_| Err::<(), _>(Error::Decrypt)), Err(Error::Decrypt));
        assert_eq!(r.state().next, 0);
        assert!(r.open(3, check(&keys[3].1)).is_ok());
        assert_eq!(r.skipped_counters().collect::<Vec<_>>(), vec![0, 1, 2]);
        // Moving far ahead drops keys that fell out of the window.
        assert!(r.open(7, check(&keys[7].1)).is_ok());
        assert_eq!(r.skipped_counters().collect::<Vec<_>>(), vec![4, 5, 6]);
        assert_eq!(r.open(1, check(&keys[1].1)), Err(Error::Replay { counter: 1 }));
    }

    #[test]
    fn skipping_never_reuses_a_key_and_receivers_step_over_the_gap() {
        let (mut s, mut r) = pair(DEFAULT_WINDOW);
        let (c0, k0) = s.next_key().unwrap();
        let mut resumed = SenderChain::from_state(s.state().clone());
        resumed.skip_to(c0).unwrap(); // behind: nothing moves
        assert_eq!(resumed.state(), s.state());
        resumed.skip_to(1 + DEFAULT_WINDOW - 1).unwrap();
        let (c, k) = resumed.next_key().unwrap();
        assert_eq!(c, DEFAULT_WINDOW);
        // The same position as the untouched chain would reach, no other.
        for _ in 1..DEFAULT_WINDOW {
            s.next_key().unwrap();
        }
        assert_eq!(s.next_key().unwrap().1.expose_key(), k.expose_key());
        assert!(r.open(c0, check(&k0)).is_ok());
        assert!(r.open(c, check(&k)).is_ok());
        let mut far = SenderChain::from_state(resumed.state().clone());
        assert!(matches!(far.skip_to(c + 2 + DEFAULT_WINDOW), Err(Error::TooFarAhead { .. })));
    }

    /// The longest gap a sender may skip is the longest a receiver that read
    /// everything before it can step over; one more is refused at the sender.
    #[test]
    fn the_longest_skip_is_the_longest_a_receiver_opens() {
        let (s, mut r) = pair(DEFAULT_WINDOW);
        let mut too_far = SenderChain::from_state(s.state().clone());
        assert!(matches!(too_far.skip_to(DEFAULT_WINDOW), Err(Error::TooFarAhead { .. })));
        assert_eq!(too_far.state(), s.state(), "a refused skip moves nothing");
        let mut longest = SenderChain::from_state(s.state().clone());
        longest.skip_to(DEFAULT_WINDOW - 1).unwrap();
        let (c, k) = longest.next_key().unwrap();
        assert_eq!(c, DEFAULT_WINDOW - 1);
        assert!(r.open(c, check(&k)).is_ok());
    }

    #[test]
    fn shared_state_reads_from_then_on_only() {
        let mut e = OsEntropy;
        let mut sender = SenderChain::generate(&mut e).unwrap();
        let device = crate::SigningSecret::generate(&mut e).unwrap().verify_key();
        let member = AgreementSecret::generate(&mut e).unwrap();
        let group = GroupId([5; 32]);
        let (_, before) = sender.next_key().unwrap();
        let sealed = seal_chain_state(&group, &device, sender.state(), &member.public(), &mut e).unwrap();
        let (got_device, state) = open_chain_state(&group, &member, &sealed).unwrap();
        assert_eq!(got_device, device);
        let mut r = ReceiverChain::new(state, DEFAULT_WINDOW).unwrap();
        assert_eq!(r.open(0, check(&before)), Err(Error::Replay { counter: 0 }));
        let (c, after) = sender.next_key().unwrap();
        assert!(r.open(c, check(&after)).is_ok());
        assert!(open_chain_state(&GroupId([6; 32]), &member, &sealed).is_err());
    }
}
