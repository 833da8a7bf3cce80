//! The store contract on the SQLite store, each case on a fresh data directory.

use enrollstream_ports::{Reservation, Store};
use enrollstream_sqlite::store::SqliteStore;
use enrollstream_testkit::contract::store as contract;
use enrollstream_testkit::contract::store::fixtures;
use tempfile::TempDir;

fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open the store in a temp dir");
    (dir, store)
}

enrollstream_testkit::store_contract_tests!(store, (_dir, store) = fresh());

mod generations {
    use super::fresh;
    enrollstream_testkit::generations_contract_tests!(store, (_dir, store) = fresh());

    /// Two handles on one data directory, as two processes have.
    #[tokio::test]
    async fn an_apply_that_lands_after_a_switch_follows_it() {
        let (dir, store) = fresh();
        let other = enrollstream_sqlite::store::SqliteStore::open(dir.path())
            .expect("a second handle on the store");
        enrollstream_testkit::contract::generations::an_apply_that_lands_after_a_switch_follows_it(
            &store, &other,
        )
        .await;
    }
}

#[tokio::test]
async fn commits_survive_a_reopen() {
    let (dir, store) = fresh();
    let written = contract::durable_write(&store).await;
    drop(store);
    let reopened = SqliteStore::open(dir.path()).expect("reopen the store");
    contract::durable_read_back(&reopened, &written).await;
}

#[tokio::test]
async fn reports_its_name() {
    let (_dir, store) = fresh();
    assert_eq!(store.name(), "sqlite");
}

/// Keys older than 24 h (on the callers' clock) are purged at open and replaced on reuse.
#[tokio::test]
async fn expired_idempotency_keys_are_forgotten() {
    let (dir, store) = fresh();
    let mut expired = fixtures::idempotency_record(&fixtures::idempotency_key(), "fp-old");
    expired.created_at = fixtures::now() - chrono::Duration::hours(25);
    let mut reused = fixtures::idempotency_record(&fixtures::idempotency_key(), "fp-old");
    reused.created_at = expired.created_at;
    let fresh_key = fixtures::idempotency_record(&fixtures::idempotency_key(), "fp");
    for record in [&expired, &reused, &fresh_key] {
        assert_eq!(
            store.reserve_idempotency(record).await.unwrap(),
            Reservation::Reserved
        );
    }

    let again = fixtures::idempotency_record(&reused.key, "fp-new");
    assert_eq!(
        store.reserve_idempotency(&again).await.unwrap(),
        Reservation::Reserved,
        "a key past its 24 h is reserved anew, even for another request"
    );
    drop(store);

    let reopened = SqliteStore::open(dir.path()).expect("reopen the store");
    let db = rusqlite::Connection::open(dir.path().join("store.db")).expect("open store.db");
    let keys: Vec<String> = db
        .prepare("SELECT key FROM idempotency ORDER BY key")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("read idempotency keys");
    let mut expected = vec![again.key.clone(), fresh_key.key.clone()];
    expected.sort();
    assert_eq!(
        keys, expected,
        "the expired key was purged at open, the others kept"
    );
    assert_eq!(
        reopened.reserve_idempotency(&fresh_key).await.unwrap(),
        Reservation::Existing(Box::new(fresh_key.clone()))
    );
}

/// A read waiting on one store sees an event applied through another store on the same file,
/// although no commit of its own wakes it (it re-checks the file).
#[tokio::test]
async fn wait_applied_sees_an_apply_by_another_store_on_the_file() {
    let (dir, projector) = fresh();
    let api = SqliteStore::open(dir.path()).expect("a second store on the same directory");
    let change = fixtures::new_quote();
    let id = change.event.event_id.clone();
    let (seen, outcomes) = tokio::join!(
        api.wait_applied(&id, std::time::Duration::from_secs(10)),
        projector.apply(std::slice::from_ref(&change))
    );
    assert_eq!(
        outcomes.unwrap(),
        vec![enrollstream_ports::ApplyOutcome::Applied]
    );
    assert!(
        seen.unwrap(),
        "the waiting store must see the other store's apply"
    );
}
