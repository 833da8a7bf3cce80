//! The delivery journal: what each delivery ended in, written to the `DeliveryLog` port off
//! the delivery path. A lane hands its record to a bounded channel with `try_send` and goes on;
//! one background task per journal drains the channel into the log, each write bounded in
//! time. A record that finds the channel full, or whose write fails or times out, is dropped
//! and counted in `enrollstream_delivery_log_dropped_total`: the journal may miss a delivery,
//! it never delays one, nor a commit, a rebalance or a shutdown (nothing waits for the drain;
//! it ends when the last handle is dropped, or with the runtime).
//!
//! The drain also names duplicates: a notification accepted by a target that this process saw
//! that target accept before (a redelivery after a rebalance, or of an uncommitted offset) is
//! recorded as `skipped_duplicate`, since the target dedupes it by its idempotency key. It only
//! remembers the latest [`RECENT`] deliveries of this process.

use chrono::{DateTime, Utc};
use enrollstream_domain::CloudEvent;
use enrollstream_ports::delivery_log::{
    summarize, DeliveryLog, DeliveryOutcome, DeliveryRecord, RETENTION,
};
use enrollstream_ports::{Clock, InboundMessage};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

use super::worker::wait_until;

/// Records waiting for the drain, per journal.
pub const CAPACITY: usize = 4096;
/// The longest one write may take before its record is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries the drain remembers to tell a duplicate.
const RECENT: usize = 10_000;
/// How often the purge drops records past the retention.
const PURGE_EVERY: chrono::Duration = chrono::Duration::hours(1);

pub const DROPPED: &str = "enrollstream_delivery_log_dropped_total";

/// The lanes' handle on the journal; cloning it is cheap.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<DeliveryRecord>,
}

impl Journal {
    /// Starts the drain of a journal into `log`, holding at most `capacity` waiting records.
    pub fn start(log: Arc<dyn DeliveryLog>, capacity: usize) -> Self {
        metrics::describe_counter!(
            DROPPED,
            "Delivery log records dropped (channel full, or the write failed or timed out); the deliveries themselves went on"
        );
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(drain(rx, log));
        Self { tx }
    }

    /// Hands `record` to the drain, or drops it: never waits.
    pub fn record(&self, record: DeliveryRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => dropped("full"),
            Err(TrySendError::Closed(_)) => dropped("closed"),
        }
    }

    /// A notification the target accepted.
    pub fn delivered(
        &self,
        target: &str,
        event: &CloudEvent,
        attempts: u32,
        status: u16,
        at: DateTime<Utc>,
    ) {
        self.record(DeliveryRecord {
            status: Some(status),
            ..base(
                target,
                Some(event),
                None,
                DeliveryOutcome::Delivered,
                attempts,
                at,
            )
        });
    }

    /// A message parked in `dlq_topic` (`event` is `None` when it could not be decoded).
    #[allow(clippy::too_many_arguments)]
    pub fn dead_lettered(
        &self,
        target: &str,
        message: &InboundMessage,
        event: Option<&CloudEvent>,
        attempts: u32,
        status: Option<u16>,
        error: &str,
        dlq_topic: &str,
        at: DateTime<Utc>,
    ) {
        self.record(DeliveryRecord {
            status,
            error: Some(summarize(error)),
            dlq_topic: Some(dlq_topic.to_string()),
            ..base(
                target,
                event,
                Some(message),
                DeliveryOutcome::DeadLettered,
                attempts,
                at,
            )
        });
    }
}

fn base(
    target: &str,
    event: Option<&CloudEvent>,
    message: Option<&InboundMessage>,
    outcome: DeliveryOutcome,
    attempts: u32,
    at: DateTime<Utc>,
) -> DeliveryRecord {
    let data = |field: &str| {
        event
            .and_then(|e| e.data.get(field))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let header = |name: &str| message.and_then(|m| m.header(name)).map(str::to_string);
    let entity_id = event
        .and_then(|e| e.subject.clone())
        .or_else(|| data("entity_id"))
        .or_else(|| message.and_then(|m| m.key.clone()))
        .unwrap_or_default();
    DeliveryRecord {
        notification_id: event
            .map(|e| e.id.clone())
            .or_else(|| header("ce_id"))
            .unwrap_or_default(),
        // A lead message names the event it announces `source_event_id`.
        event_id: data("event_id").or_else(|| data("source_event_id")),
        entity_kind: data("entity_kind"),
        entity_id,
        target: target.to_string(),
        outcome,
        attempts,
        status: None,
        error: None,
        dlq_topic: None,
        at,
    }
}

fn dropped(reason: &'static str) {
    metrics::counter!(DROPPED, "reason" => reason).increment(1);
}

/// The latest deliveries of this process, by target and notification.
#[derive(Default)]
struct Recent {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl Recent {
    fn classify(&mut self, record: &mut DeliveryRecord) {
        if record.outcome != DeliveryOutcome::Delivered || record.notification_id.is_empty() {
            return;
        }
        let key = (record.target.clone(), record.notification_id.clone());
        if self.seen.contains(&key) {
            record.outcome = DeliveryOutcome::SkippedDuplicate;
            return;
        }
        if self.order.len() >= RECENT {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
    }
}

async fn drain(mut rx: mpsc::Receiver<DeliveryRecord>, log: Arc<dyn DeliveryLog>) {
    let mut recent = Recent::default();
    let mut failing = false;
    while let Some(mut record) = rx.recv().await {
        recent.classify(&mut record);
        let error = match tokio::time::timeout(WRITE_TIMEOUT, log.record(&record)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(("failed", e.to_string())),
            Err(_) => Some(("timeout", format!("no answer within {WRITE_TIMEOUT:?}"))),
        };
        match error {
            None if failing => {
                failing = false;
                tracing::info!(log = log.name(), "delivery log writes again");
            }
            None => {}
            Some((reason, e)) => {
                dropped(reason);
                // Once per outage, not once per record.
                if !failing {
                    tracing::warn!(log = log.name(), error = %e, "delivery log write failed; records are dropped until it works again (deliveries go on)");
                }
                failing = true;
            }
        }
    }
}

/// Drops the records past the retention every hour on the clock port, the first time at once,
/// until `shutdown`. MongoDB's TTL index does the same on servers that run it.
pub async fn run_purge(
    log: Arc<dyn DeliveryLog>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    loop {
        let now = clock.now();
        match log.purge(now - RETENTION).await {
            Ok(0) => {}
            Ok(gone) => tracing::info!(gone, "delivery log: records past the retention purged"),
            Err(e) => {
                tracing::warn!(error = %e, "delivery log purge failed; trying again in an hour")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wait_until(clock.as_ref(), now + PURGE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(target: &str, id: &str) -> DeliveryRecord {
        DeliveryRecord {
            notification_id: id.into(),
            ..base(
                target,
                None,
                None,
                DeliveryOutcome::Delivered,
                1,
                DateTime::UNIX_EPOCH,
            )
        }
    }

    #[test]
    fn a_second_acceptance_by_the_same_target_is_a_duplicate() {
        let mut recent = Recent::default();
        let mut first = delivered("salesforce", "N-1");
        recent.classify(&mut first);
        assert_eq!(first.outcome, DeliveryOutcome::Delivered);
        let mut other_target = delivered("logic_apps", "N-1");
        recent.classify(&mut other_target);
        assert_eq!(other_target.outcome, DeliveryOutcome::Delivered);
        let mut again = delivered("salesforce", "N-1");
        recent.classify(&mut again);
        assert_eq!(again.outcome, DeliveryOutcome::SkippedDuplicate);
    }

    #[test]
    fn the_memory_of_deliveries_is_bounded() {
        let mut recent = Recent::default();
        for i in 0..RECENT + 10 {
            recent.classify(&mut delivered("t", &format!("N-{i}")));
        }
        assert_eq!(recent.seen.len(), RECENT);
        let mut oldest = delivered("t", "N-0");
        recent.classify(&mut oldest);
        assert_eq!(oldest.outcome, DeliveryOutcome::Delivered, "forgotten");
    }
}
