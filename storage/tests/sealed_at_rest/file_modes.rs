//! Every file of a store is readable by its owner alone, whatever the umask.

use std::os::unix::fs::PermissionsExt;

use crate::common::{self, with_suffix};

/// The modes of the database, its WAL and shared-memory files, the lock
/// file and the key file, as found.
fn modes(t: &common::TempStore) -> Vec<(String, u32)> {
    let db = t.db_path();
    let mut files = vec![db.clone(), t.dir.path().join("storage.key")];
    files.extend(["-wal", "-shm", ".lock"].map(|suffix| with_suffix(&db, suffix)));
    files
        .into_iter()
        .filter_map(|f| {
            let mode = std::fs::metadata(&f).ok()?.permissions().mode() & 0o777;
            Some((f.file_name()?.to_string_lossy().into_owned(), mode))
        })
        .collect()
}

#[tokio::test]
async fn every_file_of_a_store_is_its_owners_alone_whatever_the_umask() {
    // This process's umask (022 on a usual machine) would make new files
    // 0644: readable by every local user.
    let t = common::temp_store().await;
    t.store.set_setting("probe", b"x").await.unwrap();
    let found = modes(&t);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"veil.db") && names.contains(&"veil.db-wal"), "{found:?}");
    assert!(found.iter().all(|(_, mode)| *mode == 0o600), "{found:?}");

    // A store whose files were left open to others (made before this, or
    // by hand) is tightened when opened.
    // A crash leaves the WAL and shared-memory files behind (empty ones
    // here: SQLite starts them over).
    t.store.close().await.unwrap();
    for suffix in ["-wal", "-shm"] {
        std::fs::write(with_suffix(&t.db_path(), suffix), b"").unwrap();
    }
    // (A key file open to others is refused, not tightened: see
    // `src/keystore/tests.rs`.)
    for (name, _) in modes(&t).into_iter().filter(|(n, _)| n.starts_with("veil.db")) {
        let path = t.dir.path().join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = veil_storage::Store::open(&t.db_path(), &t.key(), common::options(&t.clock)).await.unwrap();
    store.set_setting("probe", b"y").await.unwrap();
    let reopened = modes(&t);
    let db_files = reopened.iter().filter(|(n, _)| n.starts_with("veil.db"));
    assert_eq!(db_files.clone().count(), 4, "{reopened:?}");
    assert!(db_files.into_iter().all(|(_, mode)| *mode == 0o600), "{reopened:?}");
    store.close().await.unwrap();
}
