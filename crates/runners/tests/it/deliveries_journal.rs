//! The delivery journal over the embedded bus and a real SQLite delivery log: every outcome of
//! a run lands in the log by entity, and a log that cannot be written (its file's write lock
//! held by another connection) delays no delivery, no commit and no shutdown: its records are
//! dropped instead.

use crate::deliveries_support;

use deliveries_support::*;
use enrollstream_domain::routing::{RoutingRules, LOGIC_APPS};
use enrollstream_ports::delivery_log::{DeliveryLog, DeliveryOutcome};
use enrollstream_runners::deliveries::Journal;
use enrollstream_sqlite::deliveries::{SqliteDeliveryLog, FILE_NAME};
use enrollstream_testkit::targets::fixtures::application_journey;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn events(entities: usize) -> Vec<enrollstream_domain::CloudEvent> {
    (0..entities)
        .flat_map(|i| application_journey(&format!("A-{i}"), start_time()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_is_journaled_by_entity() {
    let bed = Bed::new(3);
    let outbox = bed.publish(&events(5), &RoutingRules::default()).await;
    let expected = routed_to(&outbox, LOGIC_APPS);
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteDeliveryLog::open(dir.path()).expect("delivery log"));
    let (fake, target) = logic_apps("sig").await;
    let runner = bed.start_journaled(target, settings(), Journal::start(log.clone(), 64));
    bed.eventually(
        chrono::Duration::seconds(1),
        "every notification delivered",
        || fake.applied_count() >= expected.len(),
    )
    .await;
    let mut journaled = Vec::new();
    let started = Instant::now();
    // The journal writes behind the deliveries: poll until it caught up.
    while journaled.len() < expected.len() {
        assert!(started.elapsed() < DEADLINE, "journaled only {journaled:?}");
        journaled.clear();
        for i in 0..5 {
            journaled.extend(log.by_entity(&format!("A-{i}"), 100).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runner.stop().await;
    assert_eq!(journaled.len(), expected.len(), "one record per delivery");
    for m in &expected {
        let record = journaled
            .iter()
            .find(|r| r.notification_id == m.id)
            .unwrap_or_else(|| panic!("{} journaled", m.id));
        assert_eq!(record.target, LOGIC_APPS);
        assert_eq!(record.outcome, DeliveryOutcome::Delivered);
        assert_eq!(record.entity_id, m.key);
        assert_eq!(record.entity_kind.as_deref(), Some("application"));
        assert!(record.event_id.is_some() && record.status.is_some_and(|s| s < 300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_log_delays_no_delivery_commit_or_shutdown() {
    let bed = Bed::new(3);
    let outbox = bed.publish(&events(10), &RoutingRules::default()).await;
    let expected = routed_to(&outbox, LOGIC_APPS);
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteDeliveryLog::open(dir.path()).expect("delivery log"));
    // Another connection holds the file's write lock: every write of the journal waits for it
    // (the busy timeout, then a failure) while the deliveries go on.
    let mut blocker = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    let held = blocker
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let (fake, target) = patient_logic_apps("sig").await;
    let runner = bed.start_journaled(target, settings(), Journal::start(log.clone(), 1));
    let started = Instant::now();
    bed.eventually(
        chrono::Duration::seconds(1),
        "every notification delivered",
        || fake.applied_count() >= expected.len(),
    )
    .await;
    let delivered_in = started.elapsed();
    // A journal that waited for its log would take a busy timeout (5 s) per record here.
    assert!(
        delivered_in < Duration::from_secs(15),
        "{} deliveries took {delivered_in:?} beside the stuck log",
        expected.len()
    );
    let positions = outbox
        .iter()
        .filter(|m| m.topic == ENROLLMENT || m.topic == QUOTES)
        .count() as i64;
    bed.eventually_async(
        chrono::Duration::seconds(1),
        "everything committed",
        || async {
            let committed = bed
                .committed("delivery-logic-apps", &[ENROLLMENT, QUOTES])
                .await;
            committed.iter().map(|p| p.next_offset).sum::<i64>() == positions
        },
    )
    .await;
    let stopping = Instant::now();
    runner.stop().await;
    let stopped = stopping.elapsed();
    assert!(
        stopped < Duration::from_secs(2),
        "the shutdown waited {stopped:?}"
    );
    assert_applied_once(&fake, &expected);
    held.rollback().unwrap();
    let mut kept = 0;
    for i in 0..10 {
        kept += log.by_entity(&format!("A-{i}"), 100).await.unwrap().len();
    }
    assert!(
        kept < expected.len(),
        "with the log stuck and room for one record, records were dropped ({kept} of {} kept)",
        expected.len()
    );
}

/// The purge runs at start and then every hour of the clock port, dropping what is past the
/// retention (30 days) and nothing younger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_purge_drops_records_past_the_retention_on_the_clock() {
    use enrollstream_ports::delivery_log::{DeliveryRecord, RETENTION};
    use enrollstream_ports::{Clock, ManualClock};
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteDeliveryLog::open(dir.path()).expect("delivery log"));
    let clock = ManualClock::new(start_time());
    let at = |age: chrono::Duration, id: &str| DeliveryRecord {
        notification_id: id.into(),
        event_id: None,
        entity_kind: None,
        entity_id: "A-1".into(),
        target: LOGIC_APPS.into(),
        outcome: DeliveryOutcome::Delivered,
        attempts: 1,
        status: Some(202),
        error: None,
        dlq_topic: None,
        at: start_time() - age,
    };
    let stale = at(RETENTION + chrono::Duration::hours(1), "N-stale");
    let aging = at(RETENTION - chrono::Duration::minutes(30), "N-aging");
    let fresh = at(chrono::Duration::hours(1), "N-fresh");
    for record in [&stale, &aging, &fresh] {
        log.record(record).await.unwrap();
    }
    let ids = || async {
        let mut ids: Vec<String> = log
            .by_entity("A-1", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.notification_id)
            .collect();
        ids.sort();
        ids
    };
    let until = |want: Vec<&'static str>| {
        let ids = &ids;
        async move {
            let started = Instant::now();
            loop {
                let now = ids().await;
                if now == want {
                    return;
                }
                assert!(
                    started.elapsed() < DEADLINE,
                    "still {now:?}, waiting for {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let purge = tokio::spawn(enrollstream_runners::deliveries::run_purge(
        log.clone(),
        Arc::new(clock.clone()),
        shutdown.clone(),
    ));
    until(vec!["N-aging", "N-fresh"]).await;
    // Half an hour on: not yet the next purge (and `aging` only just reaches the retention).
    clock.advance(chrono::Duration::minutes(30));
    assert_eq!(ids().await, ["N-aging", "N-fresh"]);
    // The next purge, an hour after the first: `aging` is past the retention now.
    clock.advance(chrono::Duration::minutes(31));
    until(vec!["N-fresh"]).await;
    assert!(clock.now() - fresh.at < RETENTION);
    shutdown.cancel();
    purge.await.expect("the purge ends on shutdown");
}
