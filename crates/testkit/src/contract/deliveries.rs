//! The delivery log contract (`DeliveryLog`): records read back whole, newest first, by
//! entity and bounded; the purge drops what is past the retention and nothing else. Each case
//! takes a fresh, empty log. Times are whole milliseconds (what every adapter keeps).

use chrono::{DateTime, Duration, Utc};
use enrollstream_ports::delivery_log::{
    summarize, DeliveryLog, DeliveryOutcome, DeliveryRecord, RETENTION,
};

fn t0() -> DateTime<Utc> {
    "2026-03-01T09:00:00.123Z".parse().expect("valid time")
}

/// A record of `entity` at `t0() + seconds`.
pub fn record(entity: &str, seconds: i64, outcome: DeliveryOutcome) -> DeliveryRecord {
    let dead = outcome == DeliveryOutcome::DeadLettered;
    DeliveryRecord {
        notification_id: format!("N-{entity}-{seconds}"),
        event_id: Some(format!("E-{entity}-{seconds}")),
        entity_kind: Some("application".into()),
        entity_id: entity.into(),
        target: "salesforce".into(),
        outcome,
        attempts: if dead { 3 } else { 1 },
        status: Some(if dead { 400 } else { 201 }),
        error: dead.then(|| summarize("rejected (HTTP 400): REQUIRED_FIELD_MISSING")),
        dlq_topic: dead.then(|| "enrollment-notifications.salesforce.dlq".into()),
        at: t0() + Duration::seconds(seconds),
    }
}

async fn write(log: &dyn DeliveryLog, record: &DeliveryRecord) {
    log.record(record)
        .await
        .unwrap_or_else(|e| panic!("record {record:?}: {e}"));
}

async fn of(log: &dyn DeliveryLog, entity: &str, limit: usize) -> Vec<DeliveryRecord> {
    log.by_entity(entity, limit)
        .await
        .unwrap_or_else(|e| panic!("by_entity({entity:?}, {limit}): {e}"))
}

pub async fn records_read_back_newest_first_by_entity(log: &dyn DeliveryLog) {
    let delivered = record("A-1", 0, DeliveryOutcome::Delivered);
    let dead = record("A-1", 10, DeliveryOutcome::DeadLettered);
    let again = DeliveryRecord {
        notification_id: delivered.notification_id.clone(),
        ..record("A-1", 20, DeliveryOutcome::SkippedDuplicate)
    };
    // Written out of time order: the listing's order is the records' time.
    write(log, &dead).await;
    write(log, &delivered).await;
    write(log, &again).await;
    let bare = DeliveryRecord {
        event_id: None,
        entity_kind: None,
        status: None,
        error: None,
        dlq_topic: None,
        ..record("Q-1", 5, DeliveryOutcome::Delivered)
    };
    write(log, &bare).await;

    assert_eq!(
        of(log, "A-1", 10).await,
        vec![again.clone(), dead.clone(), delivered],
        "every record of the entity, whole, newest first"
    );
    assert_eq!(of(log, "A-1", 2).await, vec![again, dead], "bounded");
    assert_eq!(
        of(log, "Q-1", 10).await,
        vec![bare],
        "absent fields stay absent"
    );
    assert!(of(log, "A-404", 10).await.is_empty());
    assert!(of(log, "A-1", 0).await.is_empty(), "limit 0 lists nothing");
}

pub async fn purge_drops_what_is_past_the_retention(log: &dyn DeliveryLog) {
    let now = t0() + Duration::days(40);
    let old = record("A-1", 0, DeliveryOutcome::Delivered);
    let recent = DeliveryRecord {
        at: now - Duration::days(1),
        ..record("A-1", 1, DeliveryOutcome::Delivered)
    };
    write(log, &old).await;
    write(log, &recent).await;
    let gone = log.purge(now - RETENTION).await.expect("purge");
    assert_eq!(gone, 1, "only the record older than the retention");
    assert_eq!(of(log, "A-1", 10).await, vec![recent]);
    assert_eq!(log.purge(now - RETENTION).await.expect("purge again"), 0);
}

pub async fn check_and_name(log: &dyn DeliveryLog) {
    log.check().await.expect("a fresh log is healthy");
    assert!(["sqlite", "mongodb"].contains(&log.name()));
}
