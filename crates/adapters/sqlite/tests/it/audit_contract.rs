//! The audit of redrives on SQLite, each case on a fresh data directory.

use enrollstream_sqlite::audit::SqliteAuditLog;
use tempfile::TempDir;

fn fresh() -> (TempDir, SqliteAuditLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = SqliteAuditLog::open(dir.path()).expect("open the audit log");
    (dir, log)
}

enrollstream_testkit::audit_contract_tests!(log, (_dir, log) = fresh());

/// `dlq audit` runs as a second process beside a serving one: both open the file.
#[tokio::test]
async fn a_record_written_by_another_handle_is_seen_at_once() {
    use enrollstream_ports::AuditLog;
    let (dir, serving) = fresh();
    let cli = SqliteAuditLog::open(dir.path()).expect("second handle");
    enrollstream_testkit::contract::audit::a_redrive_reads_back_as_recorded(&serving).await;
    assert_eq!(cli.redrives(10).await.unwrap().len(), 1);
    assert!(dir.path().join("audit.db").exists());
    assert!(!dir.path().join("store.db").exists(), "a file of its own");
}
