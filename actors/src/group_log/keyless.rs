//! Entries sealed in an epoch this device holds no keys for yet, kept
//! until a batch brings the epoch.
//!
//! A removal or renewal and what its author wrote next in the new epoch
//! travel separately (metadata and messages are pushed apart, and a pushed
//! entry can overtake another), so an entry of the new epoch may come
//! before the event that gives its keys. Dropping it left it to its
//! author's resend delay, or, for this account's own other devices in a
//! 1:1, to the next session. So it waits here, its tag and position
//! checked, and is opened again as soon as a batch brings a new epoch.
//! Bounded: past [`MAX_KEYLESS`] an entry is held back as before.

use std::collections::HashSet;

use veil_crypto::envelope::{EntryHash, SealedEntry};

/// Most entries waiting for their epoch, per group.
pub(super) const MAX_KEYLESS: usize = 256;

/// The entries waiting for their epoch's keys.
#[derive(Default)]
pub(super) struct Keyless {
    entries: Vec<SealedEntry>,
    hashes: HashSet<EntryHash>,
}

impl Keyless {
    /// Keeps `entry`; `false` if there is no room (it is kept already, or
    /// now: `true`).
    pub(super) fn hold(&mut self, entry: SealedEntry) -> bool {
        let hash = entry.hash();
        if self.hashes.contains(&hash) {
            return true;
        }
        if self.hashes.len() >= MAX_KEYLESS {
            return false;
        }
        self.hashes.insert(hash);
        self.entries.push(entry);
        true
    }

    /// Whether `hash` waits here.
    pub(super) fn holds(&self, hash: &EntryHash) -> bool {
        self.hashes.contains(hash)
    }

    /// Every entry waiting, no longer kept.
    pub(super) fn take_all(&mut self) -> Vec<SealedEntry> {
        self.hashes.clear();
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use veil_crypto::{
        GroupKeys, GroupSecret, OsEntropy, SigningSecret,
        envelope::{BodyKey, EntryKind, Position, seal_entry},
    };

    use super::*;

    #[test]
    fn entries_are_kept_once_up_to_the_bound_and_taken_together() {
        let keys = GroupKeys::derive(&GroupSecret::from_bytes([1; 32]));
        let author = SigningSecret::generate(&mut OsEntropy).unwrap();
        let entry = |lamport| {
            let position = Position { kind: EntryKind::Metadata, lamport, parents: vec![] };
            seal_entry(&keys, &author, &position, BodyKey::Metadata, b"x", &mut OsEntropy).unwrap()
        };
        let mut keyless = Keyless::default();
        let first = entry(1);
        assert!(keyless.hold(first.clone()));
        assert!(keyless.hold(first.clone()), "kept once");
        for lamport in 2..=MAX_KEYLESS as u64 {
            assert!(keyless.hold(entry(lamport)));
        }
        assert!(!keyless.hold(entry(0)), "no room past the bound");
        assert!(keyless.holds(&first.hash()));
        assert_eq!(keyless.take_all().len(), MAX_KEYLESS);
        assert!(!keyless.holds(&first.hash()));
        assert!(keyless.take_all().is_empty());
    }
}
