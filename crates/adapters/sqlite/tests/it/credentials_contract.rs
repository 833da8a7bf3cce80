//! The credential store and the listing queries on SQLite, each case on a fresh data directory.

use enrollstream_sqlite::credentials::SqliteCredentialStore;
use enrollstream_sqlite::store::SqliteStore;
use tempfile::TempDir;

fn fresh() -> (TempDir, SqliteCredentialStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteCredentialStore::open(dir.path()).expect("open the credential store");
    (dir, store)
}

fn fresh_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open the store");
    (dir, store)
}

mod credentials {
    use super::*;
    enrollstream_testkit::credential_contract_tests!(store, (_dir, store) = fresh());

    /// `api-key create` runs as a second process beside a serving one: both open the file.
    #[tokio::test]
    async fn a_key_written_by_another_handle_is_seen_at_once() {
        use enrollstream_ports::CredentialStore;
        let (dir, serving) = fresh();
        let cli = SqliteCredentialStore::open(dir.path()).expect("second handle");
        enrollstream_testkit::contract::credentials::create_then_find_by_hash(&cli).await;
        assert_eq!(serving.api_keys().await.unwrap().len(), 1);
        assert!(dir.path().join("credentials.db").exists());
        assert!(!dir.path().join("store.db").exists(), "a file of its own");
    }
}

mod listing {
    use super::*;
    enrollstream_testkit::listing_contract_tests!(store, (_dir, store) = fresh_store());
}
