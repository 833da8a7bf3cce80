//! The audit contract: what every `AuditLog` adapter must do. Each case takes a fresh, empty log
//! of its own and panics with the rule it saw broken.

use chrono::Duration;
use enrollstream_ports::{AuditLog, RedriveAudit, RedriveStatus, StoreError};
use serde_json::json;

use super::store::fixtures::now;

fn ok<T>(what: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn started(id: &str, minutes_ago: i64) -> RedriveAudit {
    RedriveAudit {
        id: id.to_string(),
        at: now() - Duration::minutes(minutes_ago),
        by: "cli:ops".into(),
        dry_run: false,
        selection: json!({"ids": ["enrollment-events.dlq:0:7"]}),
        status: RedriveStatus::Started,
        moved: 0,
        skipped: 0,
        finished_at: None,
        error: None,
    }
}

pub async fn a_redrive_reads_back_as_recorded(log: &dyn AuditLog) {
    let mut record = started("r-1", 0);
    record.dry_run = true;
    record.selection = json!({"filter": {"dlq": {"topic": "enrollment-notifications", "target": "salesforce"},
                                        "filter": {"reason": "rejected"}, "limit": 10}});
    ok("record", log.record_redrive(&record).await);
    assert_eq!(
        ok("list", log.redrives(10).await),
        vec![record],
        "a record reads back as written, its selection whole"
    );
}

pub async fn the_end_replaces_the_start(log: &dyn AuditLog) {
    let start = started("r-1", 0);
    ok("record the start", log.record_redrive(&start).await);
    let end = RedriveAudit {
        status: RedriveStatus::Failed,
        moved: 3,
        skipped: 1,
        finished_at: Some(now()),
        error: Some("the bus refused a publish".into()),
        ..start.clone()
    };
    ok("record the end", log.record_redrive(&end).await);
    assert_eq!(
        ok("list", log.redrives(10).await),
        vec![end],
        "one record per redrive: its end replaces its start"
    );
}

pub async fn newest_first_and_bounded(log: &dyn AuditLog) {
    for (id, minutes_ago) in [("r-old", 30), ("r-new", 1), ("r-mid", 10)] {
        ok(
            "record",
            log.record_redrive(&started(id, minutes_ago)).await,
        );
    }
    let ids = |all: Vec<RedriveAudit>| all.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(ok("list", log.redrives(10).await)),
        ["r-new", "r-mid", "r-old"]
    );
    assert_eq!(ids(ok("list 2", log.redrives(2).await)), ["r-new", "r-mid"]);
    assert!(ok("list 0", log.redrives(0).await).is_empty());
}
