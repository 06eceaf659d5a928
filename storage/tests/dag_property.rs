//! Heads and missing parents stay exactly right whatever order entries arrive
//! in and however they are batched: checked against a from-scratch
//! computation over random DAGs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{group_fixture, metadata_entry, temp_store};
use proptest::prelude::*;
use veil_crypto::envelope::{EntryHash, EntryKind, Position, SealedEntry};
use veil_storage::{Appended, GroupKind, NewEntry};

/// A random DAG: entry i names up to three earlier entries.
fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..24).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                if i == 0 {
                    Just(vec![]).boxed()
                } else {
                    proptest::collection::btree_set(0..i, 0..=3.min(i)).prop_map(|s| s.into_iter().collect()).boxed()
                }
            })
            .collect::<Vec<_>>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn heads_and_missing_match_a_recomputation(shape in dag(), order_seed in any::<u64>(), cuts in proptest::collection::vec(1usize..6, 1..10)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let t = temp_store().await;
            let (secret, keys, device) = group_fixture(9);
            let gid = t.store.insert_group(GroupKind::MultiMember, None, &secret, &device).await.unwrap();
            let mut entries: Vec<(SealedEntry, Position)> = Vec::new();
            for (i, parents) in shape.iter().enumerate() {
                let parent_hashes: Vec<EntryHash> = parents.iter().map(|p| entries[*p].0.hash()).collect();
                let lamport = parents.iter().map(|p| entries[*p].1.lamport).max().unwrap_or(0) + 1;
                entries.push(metadata_entry(&keys, &device, lamport, parent_hashes, format!("e{i}").as_bytes()));
            }
            // A deterministic shuffle, then batches of the given sizes.
            let mut order: Vec<usize> = (0..entries.len()).collect();
            let mut x = order_seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut stored: BTreeSet<usize> = BTreeSet::new();
            let mut pos = 0;
            let mut cut = cuts.iter().cycle();
            while pos < order.len() {
                let end = (pos + cut.next().unwrap()).min(order.len());
                let batch: Vec<NewEntry<'_>> = order[pos..end]
                    .iter()
                    .map(|i| NewEntry { group: gid, entry: &entries[*i].0, position: &entries[*i].1, author: None, payload: None, ratchet: None, outbox: &[] })
                    .collect();
                let out = t.store.append_batch(&batch).await.unwrap();
                assert!(out.iter().all(|o| *o == Appended::Stored));
                stored.extend(&order[pos..end]);
                pos = end;

                // Recompute from scratch over what is stored.
                let named: BTreeSet<usize> = stored.iter().flat_map(|i| shape[*i].iter().copied()).collect();
                let heads: BTreeSet<EntryHash> = stored.iter().filter(|i| !named.contains(i)).map(|i| entries[*i].0.hash()).collect();
                let missing: BTreeSet<EntryHash> = named.iter().filter(|i| !stored.contains(i)).map(|i| entries[*i].0.hash()).collect();
                let got_heads: BTreeSet<EntryHash> = t.store.heads(&gid, EntryKind::Metadata).await.unwrap().into_iter().collect();
                let got_missing: BTreeSet<EntryHash> = t.store.missing_parents(&gid, EntryKind::Metadata).await.unwrap().into_iter().collect();
                assert_eq!(got_heads, heads);
                assert_eq!(got_missing, missing);
            }
        });
    }
}
