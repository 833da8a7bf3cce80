//! How far behind the pipeline is, sampled on a tick into gauges: consumer lag in messages per
//! group and partition, dead letters waiting for a redrive, the unpublished outbox, and the
//! scheduled signature reminders. A tick
//! rather than per-message updates because each answer costs the bus or the store a query.

use enrollstream_ports::reminders::ReminderStore;
use enrollstream_ports::{BusError, Clock, CommitPosition, EventBus, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The group `dlq redrive` commits with: what it has not read yet is the dead-letter depth.
pub const REDRIVE_GROUP: &str = "dlq-redrive";

pub struct BacklogSampler {
    pub bus: Arc<dyn EventBus>,
    /// Sampled for the outbox when set (the process that relays it).
    pub store: Option<Arc<dyn Store>>,
    /// Sampled for the reminder schedule when set (the process that sends reminders).
    pub reminders: Option<Arc<dyn ReminderStore>>,
    pub clock: Arc<dyn Clock>,
    /// (group, topics) of the consumer groups whose lag to report.
    pub groups: Vec<(String, Vec<String>)>,
    /// Dead-letter topics whose depth to report.
    pub dlq_topics: Vec<String>,
    pub every: Duration,
    pub shutdown: CancellationToken,
}

impl BacklogSampler {
    pub async fn run(self) {
        describe();
        loop {
            self.sample().await;
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// One round; a failed query leaves its gauges at their last value and says why.
    pub async fn sample(&self) {
        for (group, topics) in &self.groups {
            match lag(self.bus.as_ref(), group, topics).await {
                Ok(lags) => {
                    for (position, behind) in lags {
                        metrics::gauge!("enrollstream_consumer_lag_messages", "group" => group.clone(), "topic" => position.topic, "partition" => position.partition.to_string())
                            .set(behind as f64);
                    }
                }
                Err(e) => tracing::debug!(%group, error = %e, "consumer lag not sampled"),
            }
        }
        if !self.dlq_topics.is_empty() {
            match lag(self.bus.as_ref(), REDRIVE_GROUP, &self.dlq_topics).await {
                Ok(lags) => {
                    let mut depth: HashMap<String, i64> =
                        self.dlq_topics.iter().map(|t| (t.clone(), 0)).collect();
                    for (position, behind) in lags {
                        *depth.entry(position.topic).or_default() += behind;
                    }
                    for (topic, n) in depth {
                        metrics::gauge!("enrollstream_dlq_depth", "topic" => topic).set(n as f64);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "dead-letter depth not sampled"),
            }
        }
        if let Some(store) = &self.store {
            self.sample_outbox(store.as_ref()).await;
        }
        if let Some(reminders) = &self.reminders {
            self.sample_reminders(reminders.as_ref()).await;
        }
    }

    /// How many reminders are scheduled and when the next one is due. Due now and unsent is the
    /// scheduler's own `enrollstream_reminders_due_backlog`.
    async fn sample_reminders(&self, reminders: &dyn ReminderStore) {
        let now = self.clock.now();
        // Every scheduled reminder is due within a century: the port's count up to then is all
        // of them, without a second counting query in each adapter.
        match reminders
            .due_backlog(now + chrono::Duration::days(36_500))
            .await
        {
            Ok(n) => metrics::gauge!("enrollstream_reminders_scheduled").set(n as f64),
            Err(e) => tracing::debug!(error = %e, "scheduled reminders not sampled"),
        }
        match reminders.next_wake().await {
            Ok(next) => {
                // Negative when overdue; NaN when nothing is scheduled, so no threshold matches.
                let seconds =
                    next.map_or(f64::NAN, |at| (at - now).num_milliseconds() as f64 / 1000.0);
                metrics::gauge!("enrollstream_reminder_next_due_seconds").set(seconds);
            }
            Err(e) => tracing::debug!(error = %e, "next reminder not sampled"),
        }
    }

    async fn sample_outbox(&self, store: &dyn Store) {
        match store.outbox_backlog().await {
            Ok(n) => metrics::gauge!("enrollstream_outbox_backlog").set(n as f64),
            Err(e) => tracing::debug!(error = %e, "outbox backlog not sampled"),
        }
        match store.pending_outbox(1).await {
            Ok(oldest) => {
                let age = oldest.first().map_or(0.0, |m| {
                    (self.clock.now() - m.created_at)
                        .to_std()
                        .unwrap_or_default()
                        .as_secs_f64()
                });
                metrics::gauge!("enrollstream_outbox_oldest_age_seconds").set(age);
            }
            Err(e) => tracing::debug!(error = %e, "outbox age not sampled"),
        }
    }
}

/// Messages `group` has not committed, per partition. A partition the group never committed on
/// is read from its beginning, so all of it is lag.
async fn lag(
    bus: &dyn EventBus,
    group: &str,
    topics: &[String],
) -> Result<Vec<(CommitPosition, i64)>, BusError> {
    let ends = bus.end_offsets(topics).await?;
    let committed: HashMap<(String, i32), i64> = bus
        .committed(group, topics)
        .await?
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.next_offset))
        .collect();
    Ok(ends
        .into_iter()
        .map(|end| {
            let done = committed
                .get(&(end.topic.clone(), end.partition))
                .copied()
                .unwrap_or(0);
            let behind = (end.next_offset - done).max(0);
            (end, behind)
        })
        .collect())
}

fn describe() {
    metrics::describe_gauge!(
        "enrollstream_consumer_lag_messages",
        "Messages a consumer group has not committed yet, by group, topic and partition"
    );
    metrics::describe_gauge!(
        "enrollstream_consumer_lag_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest message a consumer group is processing (0 when caught up), by group, topic and partition"
    );
    metrics::describe_gauge!(
        "enrollstream_dlq_depth",
        "Dead letters not redriven yet, by dead-letter topic"
    );
    metrics::describe_gauge!(
        "enrollstream_outbox_backlog",
        "Outbox messages the relay has not published yet"
    );
    metrics::describe_gauge!(
        "enrollstream_outbox_oldest_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest unpublished outbox message (0 when empty)"
    );
    metrics::describe_gauge!(
        "enrollstream_reminders_scheduled",
        "Signature reminders waiting for their next send (applications submitted by a broker and not signed)"
    );
    metrics::describe_gauge!(
        "enrollstream_reminder_next_due_seconds",
        metrics::Unit::Seconds,
        "Seconds until the next signature reminder is due (negative when overdue, NaN when none is scheduled)"
    );
}
