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

macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (_dir, store) = fresh();
            contract::$case(&store).await;
        }
    )*};
}

contract_cases!(
    broker_submission_creates_a_due_reminder,
    redelivered_event_is_a_no_op,
    approval_is_ignored,
    stop_events_end_the_schedule,
    stop_before_submission_stays_stopped,
    member_submission_is_never_due,
    claims_only_due_reminders_and_leases_them,
    claims_respect_limit_and_due_order,
    attempts_are_fenced_on_owner_and_number,
    release_keeps_the_attempt_and_delays,
    exhaustion_after_the_last_interval,
    signature_during_a_claim_stops_after_the_record,
    events_keep_the_lease,
    refused_attempt_is_consumed,
    due_backlog_counts_due_reminders,
    check_and_name,
);

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
