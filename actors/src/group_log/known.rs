//! Where the entries stored lately sit in the DAG, so a received batch need
//! not ask the store.
//!
//! Receiving an entry needs its parents' log and Lamport clock (parents
//! come first and earlier) and whether it is stored already. That was a
//! query per batch: a round trip to a reader thread, ~0.1 ms on the path of
//! every message. A conversation's next entry names as parents the entries
//! stored just before it (this device's own, or the contact's previous
//! one), so the positions of the entries stored lately answer the parents;
//! and a message whose ratchet counter is at or past its author's chain
//! position cannot have been stored before (storing it moved the chain
//! past it), so it is new without asking. Anything else is asked as before.
//!
//! The map is bounded between batches (`MAX_KNOWN`, oldest first out);
//! within a batch it only grows, so a parent taken early in a batch is
//! still there for its children.

use std::collections::{HashMap, VecDeque};

use veil_crypto::envelope::{EntryHash, EntryKind};

/// Positions kept between batches.
const MAX_KNOWN: usize = 4096;

/// Positions (log and Lamport clock) of stored entries.
#[derive(Default)]
pub(super) struct Known {
    positions: HashMap<EntryHash, (EntryKind, u64)>,
    /// Insertion order, for trimming.
    order: VecDeque<EntryHash>,
}

impl Known {
    pub(super) fn get(&self, hash: &EntryHash) -> Option<&(EntryKind, u64)> {
        self.positions.get(hash)
    }

    pub(super) fn contains_key(&self, hash: &EntryHash) -> bool {
        self.positions.contains_key(hash)
    }

    /// Records a stored entry's position.
    pub(super) fn insert(&mut self, hash: EntryHash, position: (EntryKind, u64)) {
        if self.positions.insert(hash, position).is_none() {
            self.order.push_back(hash);
        }
    }

    /// Forgets the oldest positions beyond the bound (between batches).
    pub(super) fn trim(&mut self) {
        while self.order.len() > MAX_KNOWN {
            if let Some(old) = self.order.pop_front() {
                self.positions.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u32) -> EntryHash {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_be_bytes());
        EntryHash(h)
    }

    #[test]
    fn keeps_the_newest_positions_once_trimmed() {
        let mut known = Known::default();
        let count = u32::try_from(MAX_KNOWN).unwrap() + 10;
        for i in 0..count {
            known.insert(hash(i), (EntryKind::Message, u64::from(i)));
        }
        known.insert(hash(count - 1), (EntryKind::Message, 0));
        assert!(known.contains_key(&hash(0)), "nothing is forgotten within a batch");
        known.trim();
        assert!(!known.contains_key(&hash(9)));
        assert_eq!(known.get(&hash(10)), Some(&(EntryKind::Message, 10)));
        assert_eq!(known.get(&hash(count - 1)), Some(&(EntryKind::Message, 0)), "updated in place");
        assert_eq!(known.order.len(), MAX_KNOWN);
    }
}
