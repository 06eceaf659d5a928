//! Entries that arrived before a parent of theirs, kept until it comes.
//!
//! Frames from one peer arrive in order, but what a peer sends is not
//! always in log order: entries it pushes as they are written can overtake
//! older ones it sends again from its outbox (after a lost connection), and
//! in a group several members serve the same entries. An entry whose parent
//! is not stored cannot be stored (no cycle and no gap may enter the log),
//! and dropping it left it to its author's resend delay, or, in a contact
//! group, to nothing else. So it waits here, opened and checked, under the
//! parent it lacks, and is received again as soon as a batch stores that
//! parent. Bounded: past [`MAX_ORPHANS`] an entry is dropped as before.

use std::collections::{HashMap, HashSet};

use veil_crypto::{
    EpochId,
    envelope::{EntryHash, OpenedEntry, SealedEntry},
};

/// Most entries waiting for a parent, per group.
pub(super) const MAX_ORPHANS: usize = 1024;

/// An entry as it arrived, opened and checked (what waits for a parent).
#[derive(Clone)]
pub(super) struct Arrived {
    pub entry: SealedEntry,
    pub epoch: EpochId,
    pub opened: OpenedEntry,
}

/// The entries waiting, by the parent each lacks.
#[derive(Default)]
pub(super) struct Orphans {
    by_parent: HashMap<EntryHash, Vec<Arrived>>,
    held: HashSet<EntryHash>,
}

impl Orphans {
    /// Keeps `orphan` until `parent` is stored; `false` if it was kept
    /// already or there is no room.
    pub(super) fn hold(&mut self, parent: EntryHash, orphan: Arrived) -> bool {
        if self.held.len() >= MAX_ORPHANS || !self.held.insert(orphan.opened.hash) {
            return false;
        }
        self.by_parent.entry(parent).or_default().push(orphan);
        true
    }

    /// The entries waiting for any of `stored`, no longer kept.
    pub(super) fn unlocked(&mut self, stored: &[EntryHash]) -> Vec<Arrived> {
        let mut out = Vec::new();
        for hash in stored {
            for orphan in self.by_parent.remove(hash).unwrap_or_default() {
                self.held.remove(&orphan.opened.hash);
                out.push(orphan);
            }
        }
        out
    }

    /// How many entries wait.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use veil_crypto::{
        GroupKeys, GroupSecret, OsEntropy, SenderChain, SigningSecret,
        envelope::{BodyKey, EntryKind, Position, open_entry, seal_entry},
    };

    use super::*;

    fn orphans(n: usize) -> Vec<Arrived> {
        let keys = GroupKeys::derive(&GroupSecret::from_bytes([1; 32]));
        let author = SigningSecret::generate(&mut OsEntropy).unwrap();
        let mut chain = SenderChain::generate(&mut OsEntropy).unwrap();
        (0..n)
            .map(|i| {
                let position = Position { kind: EntryKind::Message, lamport: i as u64 + 1, parents: vec![] };
                let entry =
                    seal_entry(&keys, &author, &position, BodyKey::Message(&mut chain), b"x", &mut OsEntropy).unwrap();
                let opened = open_entry(&keys, &entry).unwrap();
                Arrived { entry, epoch: EpochId::ROOT, opened }
            })
            .collect()
    }

    #[test]
    fn an_orphan_waits_for_its_parent_once() {
        let (p, q) = (EntryHash([1; 32]), EntryHash([2; 32]));
        let all = orphans(3);
        let mut held = Orphans::default();
        assert!(held.hold(p, all[0].clone()));
        assert!(!held.hold(p, all[0].clone()), "the same entry again is kept once");
        assert!(held.hold(p, all[1].clone()));
        assert!(held.hold(q, all[2].clone()));
        assert!(held.unlocked(&[EntryHash([9; 32])]).is_empty());
        let out = held.unlocked(&[p]);
        assert_eq!(out.iter().map(|o| o.opened.hash).collect::<Vec<_>>(), [all[0].opened.hash, all[1].opened.hash]);
        assert_eq!(held.len(), 1);
        assert!(held.unlocked(&[p]).is_empty(), "handed out once");
        assert!(held.hold(p, all[0].clone()), "kept again if it comes again");
    }

    #[test]
    fn orphans_are_bounded() {
        let all = orphans(1);
        let mut held = Orphans::default();
        for i in 0..MAX_ORPHANS {
            let mut o = all[0].clone();
            o.opened.hash = EntryHash([
                (i % 251) as u8,
                (i / 251) as u8,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
            ]);
            assert!(held.hold(EntryHash([0; 32]), o));
        }
        assert!(!held.hold(EntryHash([0; 32]), all[0].clone()), "full");
        assert_eq!(held.unlocked(&[EntryHash([0; 32])]).len(), MAX_ORPHANS);
    }
}
