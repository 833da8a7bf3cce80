//! The delivery log contract on SQLite, each case on a fresh data directory.

use enrollstream_ports::delivery_log::DeliveryLog;
use enrollstream_sqlite::deliveries::SqliteDeliveryLog;
use tempfile::TempDir;

fn fresh() -> (TempDir, SqliteDeliveryLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = SqliteDeliveryLog::open(dir.path()).expect("open the delivery log");
    (dir, log)
}

enrollstream_testkit::delivery_log_contract_tests!(log, (_dir, log) = fresh());

#[tokio::test]
async fn records_survive_a_reopen_in_their_own_file() {
    use enrollstream_ports::delivery_log::DeliveryOutcome;
    use enrollstream_testkit::contract::deliveries::record;
    let (dir, log) = fresh();
    let written = record("A-1", 0, DeliveryOutcome::Delivered);
    log.record(&written).await.expect("record");
    drop(log);
    assert!(dir.path().join("deliveries.db").exists());
    assert!(!dir.path().join("store.db").exists());
    let reopened = SqliteDeliveryLog::open(dir.path()).expect("reopen");
    assert_eq!(reopened.by_entity("A-1", 10).await.unwrap(), vec![written]);
}
