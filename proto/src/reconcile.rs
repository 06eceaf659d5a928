//! Range-based set reconciliation of a group's entry hashes
//! (docs/PROTOCOL.md §11.2).
//!
//! Two replicas find the entries one has and the other lacks in a few round
//! trips, however far apart they are, instead of walking the DAG back one
//! level of parents per round trip. The key space is the first 8 bytes of the
//! hash (big-endian); a range is summarised by a [`Fingerprint`] (count and
//! XOR of the hashes' first 16 bytes) or, when small, listed in full.
//!
//! Each side runs [`respond`] on what it receives: ranges that match are
//! done, small ones are listed, large ones are split in [`SPLIT`] parts at the
//! responder's own quantiles. A listed range settles the difference: the
//! receiver of a list knows exactly what it lacks and what the other lacks.
//! The functions here are pure; the caller loads the hashes and moves entries.
//!
//! ```
//! use veil_crypto::envelope::EntryHash;
//! use veil_proto::reconcile::{initial, respond};
//!
//! let a: Vec<EntryHash> = (0u8..100).map(|i| EntryHash([i; 32])).collect();
//! let b: Vec<EntryHash> = (50u8..120).map(|i| EntryHash([i; 32])).collect();
//! // A opens; B answers; they alternate until nobody has anything to say.
//! // What one side wants or is given, it receives.
//! let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
//! let mut message = initial(&a);
//! for turn in 0.. {
//!     let b_turn = turn % 2 == 0;
//!     let step = respond(if b_turn { &b } else { &a }, &message);
//!     let (mine, theirs) = if b_turn { (&mut to_b, &mut to_a) } else { (&mut to_a, &mut to_b) };
//!     mine.extend(step.want);
//!     theirs.extend(step.give);
//!     if step.reply.is_empty() {
//!         break;
//!     }
//!     message = step.reply;
//! }
//! to_a.sort();
//! to_b.sort();
//! assert_eq!(to_a, b[50..].to_vec());
//! assert_eq!(to_b, a[..50].to_vec());
//! ```

use veil_crypto::envelope::EntryHash;

/// Most ranges in one reconciliation message.
pub const MAX_RANGES: usize = 256;
/// Most hashes listed for one range.
pub const MAX_LISTED: usize = 256;
/// A range with at most this many of the responder's entries is listed
/// rather than split.
pub const LIST_THRESHOLD: usize = 32;
/// How many parts a large mismatched range is split into.
pub const SPLIT: usize = 16;

/// The summary of a range: how many entries, and the XOR of the first 16
/// bytes of their hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// How many entries.
    pub count: u32,
    /// XOR of their hashes' first 16 bytes.
    pub xor: [u8; 16],
}

impl Fingerprint {
    /// The fingerprint of `hashes`.
    pub fn of(hashes: &[EntryHash]) -> Self {
        let mut xor = [0u8; 16];
        for h in hashes {
            for (x, b) in xor.iter_mut().zip(&h.0[..16]) {
                *x ^= b;
            }
        }
        Self { count: u32::try_from(hashes.len()).unwrap_or(u32::MAX), xor }
    }
}

/// What a range carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Summary {
    /// The sender's entries in the range, summarised.
    Fingerprint(Fingerprint),
    /// All the sender's entries in the range.
    Hashes(Vec<EntryHash>),
}

/// The entries whose key (first 8 hash bytes, big-endian) is in `lo..=hi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRange {
    /// Lowest key, inclusive.
    pub lo: u64,
    /// Highest key, inclusive.
    pub hi: u64,
    /// What the sender has there.
    pub summary: Summary,
}

/// What one reconciliation step asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// The message to send back (empty: this side has nothing more to say).
    pub reply: Vec<HashRange>,
    /// Entries the other side has and this side lacks: ask for them.
    pub want: Vec<EntryHash>,
    /// Entries this side has and the other lacks: send them.
    pub give: Vec<EntryHash>,
}

/// The key of a hash: its first 8 bytes, big-endian.
pub fn key(hash: &EntryHash) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&hash.0[..8]);
    u64::from_be_bytes(k)
}

/// The hashes of `sorted` whose key lies in `lo..=hi`.
fn within(sorted: &[EntryHash], lo: u64, hi: u64) -> &[EntryHash] {
    let start = sorted.partition_point(|h| key(h) < lo);
    let end = sorted.partition_point(|h| key(h) <= hi);
    &sorted[start..end.max(start)]
}

/// The opening message: this side's whole set, listed if small.
/// `mine` must be sorted.
pub fn initial(mine: &[EntryHash]) -> Vec<HashRange> {
    vec![summarise(mine, 0, u64::MAX)]
}

fn summarise(mine: &[EntryHash], lo: u64, hi: u64) -> HashRange {
    let here = within(mine, lo, hi);
    let summary = if here.len() <= LIST_THRESHOLD {
        Summary::Hashes(here.to_vec())
    } else {
        Summary::Fingerprint(Fingerprint::of(here))
    };
    HashRange { lo, hi, summary }
}

/// Splits `lo..=hi` into at most [`SPLIT`] ranges at the quantiles of
/// `here` (this side's hashes in it, sorted), each summarised.
fn split(here: &[EntryHash], lo: u64, hi: u64) -> Vec<HashRange> {
    let mut bounds = vec![lo];
    for i in 1..SPLIT {
        let k = key(&here[i * here.len() / SPLIT]);
        if k > *bounds.last().unwrap_or(&lo) {
            bounds.push(k);
        }
    }
    let mut out = Vec::with_capacity(bounds.len());
    for (i, &start) in bounds.iter().enumerate() {
        let end = bounds.get(i + 1).map_or(hi, |next| next - 1);
        out.push(summarise(here, start, end));
    }
    out
}

/// Answers one reconciliation message. `mine` must be sorted; ranges out of
/// order or overlapping are answered as they come (the result is still
/// correct, only less efficient). Ranges that would push the reply over
/// [`MAX_RANGES`] are echoed with this side's summary, so the other side
/// carries on with them next round.
pub fn respond(mine: &[EntryHash], incoming: &[HashRange]) -> Step {
    let mut step = Step::default();
    for (i, range) in incoming.iter().enumerate() {
        let (lo, hi) = (range.lo, range.hi.max(range.lo));
        let here = within(mine, lo, hi);
        match &range.summary {
            Summary::Hashes(theirs) => {
                let mut theirs = theirs.clone();
                theirs.sort();
                // Theirs may lie outside the range (a peer's list is not
                // checked against its bounds): want only what this side
                // lacks anywhere.
                step.want.extend(theirs.iter().filter(|h| mine.binary_search(h).is_err()));
                step.give.extend(here.iter().filter(|h| theirs.binary_search(h).is_err()));
            }
            Summary::Fingerprint(fp) => {
                if Fingerprint::of(here) == *fp {
                    continue;
                }
                // Keep one slot for each range still to answer.
                let later = incoming.len() - i - 1;
                let room = MAX_RANGES.saturating_sub(step.reply.len() + later);
                if here.len() <= LIST_THRESHOLD || lo == hi {
                    if room > 0 {
                        step.reply.push(HashRange { lo, hi, summary: Summary::Hashes(cap(here)) });
                    }
                } else if fp.count == 0 {
                    // They have nothing here: everything goes.
                    step.give.extend_from_slice(here);
                } else if room >= SPLIT {
                    step.reply.extend(split(here, lo, hi));
                } else if room > 0 {
                    step.reply.push(summarise(here, lo, hi));
                }
            }
        }
    }
    step
}

/// At most [`MAX_LISTED`] hashes (a single key holding more is beyond any
/// real group: 2^32 entries before two share 8 bytes by chance).
fn cap(hashes: &[EntryHash]) -> Vec<EntryHash> {
    hashes[..hashes.len().min(MAX_LISTED)].to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn hash(seed: u32) -> EntryHash {
        use sha2::{Digest, Sha256};
        EntryHash(Sha256::digest(seed.to_be_bytes()).into())
    }

    /// Runs the protocol to the end; returns what each side wanted and
    /// was given, and the number of messages.
    fn run(a: &[EntryHash], b: &[EntryHash]) -> (BTreeSet<EntryHash>, BTreeSet<EntryHash>, usize) {
        let (mut to_a, mut to_b) = (BTreeSet::new(), BTreeSet::new());
        let mut message = initial(a);
        let mut messages = 1;
        for turn in 0.. {
            let b_turn = turn % 2 == 0;
            let step = respond(if b_turn { b } else { a }, &message);
            let (mine, theirs) = if b_turn { (&mut to_b, &mut to_a) } else { (&mut to_a, &mut to_b) };
            mine.extend(step.want);
            theirs.extend(step.give);
            if step.reply.is_empty() {
                break;
            }
            message = step.reply;
            messages += 1;
            assert!(messages < 64, "reconciliation does not terminate");
        }
        (to_a, to_b, messages)
    }

    proptest! {
        #[test]
        fn both_sides_end_with_the_union(
            common in proptest::collection::btree_set(0u32..1_000_000, 0..600),
            only_a in proptest::collection::btree_set(1_000_000u32..2_000_000, 0..80),
            only_b in proptest::collection::btree_set(2_000_000u32..3_000_000, 0..80),
        ) {
            let mut a: Vec<EntryHash> = common.iter().chain(&only_a).map(|&i| hash(i)).collect();
            let mut b: Vec<EntryHash> = common.iter().chain(&only_b).map(|&i| hash(i)).collect();
            a.sort();
            b.sort();
            let (to_a, to_b, messages) = run(&a, &b);
            let expect_a: BTreeSet<EntryHash> = only_b.iter().map(|&i| hash(i)).collect();
            let expect_b: BTreeSet<EntryHash> = only_a.iter().map(|&i| hash(i)).collect();
            prop_assert_eq!(to_a, expect_a);
            prop_assert_eq!(to_b, expect_b);
            // log16(680 / 32) levels of splitting, plus listing.
            prop_assert!(messages <= 6, "{} messages", messages);
        }
    }

    #[test]
    fn an_empty_side_gets_everything_at_once() {
        let mut a: Vec<EntryHash> = (0..10_000).map(hash).collect();
        a.sort();
        // The empty side opens: its (empty) list settles everything.
        let (to_empty, to_full, messages) = run(&[], &a);
        assert_eq!((to_empty.len(), to_full.len(), messages), (10_000, 0, 1));
        // The full side opens: the empty side's list comes back.
        let (to_full, to_empty, messages) = run(&a, &[]);
        assert_eq!((to_empty.len(), to_full.len(), messages), (10_000, 0, 2));
    }

    #[test]
    fn a_listed_hash_outside_its_range_is_not_wanted_if_held() {
        let mut a: Vec<EntryHash> = (0..100).map(hash).collect();
        a.sort();
        // The peer lists one of ours, and one we lack, under a range that
        // holds neither.
        let lacking = hash(1_000);
        let range = HashRange { lo: 0, hi: 0, summary: Summary::Hashes(vec![a[50], lacking]) };
        assert_eq!(respond(&a, &[range]).want, vec![lacking]);
    }

    #[test]
    fn equal_sets_settle_in_one_message() {
        let mut a: Vec<EntryHash> = (0..5_000).map(hash).collect();
        a.sort();
        let step = respond(&a, &initial(&a));
        assert_eq!(step, Step::default());
    }

    #[test]
    fn a_full_reply_echoes_what_it_cannot_split() {
        let mut a: Vec<EntryHash> = (0..100_000).map(hash).collect();
        a.sort();
        // 200 mismatching ranges from an empty-ish peer: only 16 can be split.
        let ranges: Vec<HashRange> = (0..200u64)
            .map(|i| HashRange {
                lo: i << 56,
                hi: ((i + 1) << 56) - 1,
                summary: Summary::Fingerprint(Fingerprint { count: 1, xor: [1; 16] }),
            })
            .collect();
        let step = respond(&a, &ranges);
        assert!(step.reply.len() <= MAX_RANGES);
        let covered: u64 = step.reply.iter().map(|r| r.hi - r.lo + 1).sum();
        assert_eq!(covered, 200u64 << 56, "every incoming range is answered");
    }
}
