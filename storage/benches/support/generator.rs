//! Synthetic log entries for benchmarks (the storage and one-to-one
//! benches): shaped like real ones, filled from a fast PRNG.

use veil_crypto::envelope::{EntryHash, EntryKind, Position, SealedEntry};

/// Entries shaped like real ones (section sizes of a small message with one
/// parent), filled from a fast PRNG: the store never decrypts on append.
pub(crate) struct Generator {
    state: u64,
    prev: Option<EntryHash>,
    lamport: u64,
}

impl Generator {
    /// A generator seeded with `seed` (non-zero): one chain of entries.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed, prev: None, lamport: 0 }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            out.extend_from_slice(&self.state.to_le_bytes());
        }
        out.truncate(n);
        out
    }

    pub(crate) fn next(&mut self) -> (SealedEntry, Position) {
        let entry = SealedEntry {
            position: self.bytes(12 + 11 + 32 + 16),
            header: self.bytes(133),
            body: self.bytes(256 + 16),
            tag: self.bytes(32).try_into().unwrap(),
        };
        self.lamport += 1;
        let position =
            Position { kind: EntryKind::Message, lamport: self.lamport, parents: self.prev.into_iter().collect() };
        self.prev = Some(entry.hash());
        (entry, position)
    }

    pub(crate) fn batch(&mut self, n: usize) -> Vec<(SealedEntry, Position)> {
        (0..n).map(|_| self.next()).collect()
    }
}
