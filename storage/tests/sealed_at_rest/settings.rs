//! Settings are stored sealed, and ones from before that are sealed on open.

use std::path::Path;

use crate::common::{self, companions, contains_bytes, options};

/// The database file and whichever companions it has, read whole.
fn file_bytes(db: &Path) -> Vec<u8> {
    let mut all = std::fs::read(db).unwrap();
    for companion in companions(db) {
        all.extend(std::fs::read(companion).unwrap());
    }
    all
}

#[tokio::test]
async fn settings_are_sealed_and_ones_stored_in_clear_before_are_sealed_on_open() {
    let t = common::temp_store().await;
    t.store.set_setting("display-name", b"Alice Settingsname").await.unwrap();
    assert_eq!(t.store.setting("display-name").await.unwrap().as_deref(), Some(&b"Alice Settingsname"[..]));
    t.store.close().await.unwrap();
    assert!(!contains_bytes(&file_bytes(&t.db_path()), b"Alice Settingsname"), "a setting in clear");

    // A store from before schema 11 held its settings in clear.
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", t.db_path().display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO settings (name, value, sealed) VALUES ('legacy', x'426f62204c6567616379', 0)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    assert!(contains_bytes(&file_bytes(&t.db_path()), b"Bob Legacy"));
    let store = veil_storage::Store::open(&t.db_path(), &t.key(), options(&t.clock)).await.unwrap();
    assert_eq!(store.setting("legacy").await.unwrap().as_deref(), Some(&b"Bob Legacy"[..]));
    assert_eq!(store.setting("display-name").await.unwrap().as_deref(), Some(&b"Alice Settingsname"[..]));
    store.checkpoint().await.unwrap();
    store.close().await.unwrap();
    let bytes = file_bytes(&t.db_path());
    assert!(!contains_bytes(&bytes, b"Bob Legacy") && !contains_bytes(&bytes, b"Alice Settingsname"));
}
