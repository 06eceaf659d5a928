//! Searching a store's files for secrets that must not be there.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::{
    common::{contains_bytes, with_suffix},
    fixture::{Fixture, Needle, needle},
};

/// The database file and whichever of its WAL and shared-memory files exist.
pub(crate) fn files_of(db: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    [db.to_owned(), with_suffix(db, "-wal"), with_suffix(db, "-shm")]
        .into_iter()
        .filter(|p| p.exists())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Every 16-byte window of some files, indexed once (fast even unoptimised).
pub(crate) struct Scan<'a> {
    files: Vec<(&'a Path, HashSet<&'a [u8]>)>,
}

pub(crate) const PIECE: usize = 16;

impl<'a> Scan<'a> {
    pub(crate) fn new(files: &'a [(PathBuf, Vec<u8>)]) -> Self {
        Self { files: files.iter().map(|(p, b)| (p.as_path(), b.windows(PIECE).collect())).collect() }
    }

    /// The first needle — or 16-byte aligned piece of one — found. (Every
    /// needle is at least 16 bytes, so a whole needle present shows as its
    /// first piece; the pieces also catch a secret stored split up.)
    pub(crate) fn first_found(&self, needles: &[Needle]) -> Option<String> {
        for (path, windows) in &self.files {
            for n in needles {
                assert!(n.bytes.len() >= PIECE, "{} is too short to search for", n.what);
                for (i, piece) in n.bytes.chunks_exact(PIECE).enumerate() {
                    if windows.contains(piece) {
                        return Some(format!("bytes {}.. of {} found in {}", i * PIECE, n.what, path.display()));
                    }
                }
            }
        }
        None
    }
}

/// None of `needles` is anywhere in `files`, while public values stored in
/// clear are found by the same scan (so it does see the data).
pub(crate) fn assert_absent(files: &[(PathBuf, Vec<u8>)], f: &Fixture, needles: &[Needle]) {
    let scan = Scan::new(files);
    let public = f.identity.account.public().signing.to_bytes();
    let mut in_clear = vec![needle("group id", &f.group.0), needle("account key", &public)];
    in_clear.extend(f.hashes.iter().map(|h| needle("entry hash", &h.0)));
    for n in &in_clear {
        assert!(scan.first_found(std::slice::from_ref(n)).is_some(), "the scan finds the {}, stored in clear", n.what);
    }
    let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    assert!(contains_bytes(&all, &f.group.0), "a plain search finds the group id too");
    if let Some(found) = scan.first_found(needles) {
        panic!("{found}");
    }
}
