//! The bookkeeping of a log's DAG kept right on every append: its heads and
//! the parents it names but lacks.

use std::collections::BTreeSet;

use sqlx::{QueryBuilder, Sqlite};

use super::{ROWS_PER_STATEMENT, hash_key};
use crate::script::Script;

/// Keeps `heads` and `missing_parents` of one log right after `new` entries
/// (naming `parents`) were stored. Work is proportional to the batch's
/// frontier, not its size: parents inside the batch need no bookkeeping.
pub(super) fn push_dag_update(
    script: &mut Script,
    group: i64,
    kind: i64,
    new: &[[u8; 32]],
    parents: &BTreeSet<[u8; 32]>,
) {
    let new_set: BTreeSet<[u8; 32]> = new.iter().copied().collect();
    // Heads: new entries no entry names, neither in the batch nor stored
    // before it (a stored entry naming one made it a missing parent).
    let heads: Vec<[u8; 32]> = new.iter().filter(|h| !parents.contains(*h)).copied().collect();
    for chunk in heads.chunks(ROWS_PER_STATEMENT) {
        let qb = script.statement("INSERT INTO heads (group_ref, kind, hash) SELECT ");
        qb.push_bind(group).push(", ").push_bind(kind).push(", v.column1 FROM (VALUES ");
        let mut sep = qb.separated(", ");
        for h in chunk {
            sep.push("(").push_bind_unseparated(h.to_vec()).push_unseparated(")");
        }
        qb.push(") AS v WHERE NOT EXISTS (SELECT 1 FROM missing_parents m WHERE m.group_ref = ")
            .push_bind(group)
            .push(" AND m.kind = ")
            .push_bind(kind)
            .push(" AND m.hash = v.column1) ON CONFLICT DO NOTHING");
    }
    // New entries that were missing parents are missing no more.
    for chunk in new.chunks(ROWS_PER_STATEMENT) {
        let qb = script.statement("DELETE FROM missing_parents WHERE group_ref = ");
        qb.push_bind(group).push(" AND kind = ").push_bind(kind).push(" AND hash IN (");
        push_hashes(qb, chunk);
        qb.push(")");
    }
    // Parents from before this batch stop being heads; those not stored are missing.
    let older: Vec<[u8; 32]> = parents.difference(&new_set).copied().collect();
    for chunk in older.chunks(ROWS_PER_STATEMENT) {
        let qb = script.statement("DELETE FROM heads WHERE group_ref = ");
        qb.push_bind(group).push(" AND kind = ").push_bind(kind).push(" AND hash IN (");
        push_hashes(qb, chunk);
        qb.push(")");
        let qb = script.statement("INSERT INTO missing_parents (group_ref, kind, hash) SELECT ");
        qb.push_bind(group).push(", ").push_bind(kind).push(", v.column2 FROM (VALUES ");
        let mut sep = qb.separated(", ");
        for h in chunk {
            sep.push("(")
                .push_bind_unseparated(hash_key(h))
                .push_unseparated(", ")
                .push_bind_unseparated(h.to_vec())
                .push_unseparated(")");
        }
        qb.push(
            ") AS v WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.hash_key = v.column1 AND e.hash = v.column2) \
             ON CONFLICT DO NOTHING",
        );
    }
}

fn push_hashes(qb: &mut QueryBuilder<Sqlite>, hashes: &[[u8; 32]]) {
    let mut sep = qb.separated(", ");
    for h in hashes {
        sep.push_bind(h.to_vec());
    }
}
