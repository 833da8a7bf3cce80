//! The reminder store contract on SQLite, each case on a fresh data directory.

use enrollstream_ports::reminders::ReminderStore;
use enrollstream_sqlite::reminders::SqliteReminderStore;
use enrollstream_testkit::contract::reminders as contract;
use tempfile::TempDir;

fn fresh() -> (TempDir, SqliteReminderStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteReminderStore::open(dir.path()).expect("open the reminder store");
    (dir, store)
}

enrollstream_testkit::reminder_contract_tests!(store, (_dir, store) = fresh());

/// Two stores on one file, as two scheduler processes would open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_from_two_processes_never_overlap() {
    let (dir, a) = fresh();
    let b = SqliteReminderStore::open(dir.path()).expect("open a second handle");
    contract::concurrent_claims_never_overlap(&a, &b).await;
}

#[tokio::test]
async fn state_and_leases_survive_a_reopen() {
    let (dir, store) = fresh();
    let leased = contract::durable_write(&store).await;
    drop(store);
    let reopened = SqliteReminderStore::open(dir.path()).expect("reopen");
    contract::durable_read_back(&reopened, &leased).await;
}

#[tokio::test]
async fn keeps_its_own_file() {
    let (dir, store) = fresh();
    assert_eq!(store.name(), "sqlite");
    assert!(dir.path().join("reminders.db").exists());
    assert!(!dir.path().join("store.db").exists());
}
