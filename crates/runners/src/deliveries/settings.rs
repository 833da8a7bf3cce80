//! Per-target delivery settings: which messages, how many at once, how hard to retry, when to
//! stop calling a failing target. Durations are written the human way ("30s").

use enrollstream_domain::notification::NOTIFICATION;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Consumer group; `delivery-<target>` when not set (`delivery-logic-apps`, ...).
    pub group: Option<String>,
    pub topics: Vec<String>,
    /// `ce_type` values this runner delivers; others are skipped.
    pub event_types: Vec<String>,
    /// The value of `ce_routingtargets` that selects a message; the target's name when not set.
    pub routing_target: Option<String>,
    /// Deliveries under way at once (each to a different key).
    pub concurrency: usize,
    /// Messages taken from the bus and not finished yet; polling stops at this many.
    pub max_in_flight: usize,
    pub poll_batch: usize,
    #[serde(with = "humantime_serde")]
    pub poll_wait: Duration,
    /// Finished work is committed at most this often.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerSettings,
    /// While the target refuses our credentials, how often one message is tried again.
    #[serde(with = "humantime_serde")]
    pub pause_probe_interval: Duration,
    /// Dead letters of `<topic>` go to `<topic>.<target><dlq_suffix>`.
    pub dlq_suffix: String,
    /// Partitions and replication of the dead-letter topics this runner creates if missing.
    pub dlq_partitions: i32,
    pub dlq_replication: i16,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            group: None,
            topics: vec![
                "enrollment-notifications".into(),
                "quote-notifications".into(),
            ],
            event_types: vec![NOTIFICATION.to_string()],
            routing_target: None,
            concurrency: 16,
            max_in_flight: 1000,
            poll_batch: 200,
            poll_wait: Duration::from_millis(200),
            commit_interval: Duration::from_millis(100),
            retry: RetryPolicy::default(),
            breaker: BreakerSettings::default(),
            pause_probe_interval: Duration::from_secs(30),
            dlq_suffix: ".dlq".into(),
            dlq_partitions: 3,
            dlq_replication: 1,
        }
    }
}

impl DeliverySettings {
    pub fn group_for(&self, target: &str) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("delivery-{}", topic_safe(target)))
    }

    /// Where dead letters of `topic` for `target` go, e.g.
    /// `enrollment-notifications.salesforce.dlq`, `quote-notifications.logic-apps.dlq`.
    pub fn dlq_topic(&self, topic: &str, target: &str) -> String {
        format!("{topic}.{}{}", topic_safe(target), self.dlq_suffix)
    }

    /// Bounds that keep a runner working: zero batches or in-flight limits would stall it or
    /// make it spin. `section` names the settings in errors (`deliveries.salesforce.delivery`).
    pub fn validate(&self, section: &str) -> Result<(), String> {
        let r = &self.retry;
        let b = &self.breaker;
        let checks = [
            (
                (1..=1024).contains(&self.concurrency),
                "concurrency must be between 1 and 1024",
            ),
            (
                self.max_in_flight >= 1 && self.max_in_flight <= 1_000_000,
                "max_in_flight must be between 1 and 1000000",
            ),
            (
                (1..=10_000).contains(&self.poll_batch),
                "poll_batch must be between 1 and 10000",
            ),
            (
                !self.poll_wait.is_zero(),
                "poll_wait must be more than zero",
            ),
            (
                !self.commit_interval.is_zero(),
                "commit_interval must be more than zero",
            ),
            (
                (1..=1000).contains(&r.max_attempts),
                "retry.max_attempts must be between 1 and 1000",
            ),
            (
                !r.initial_backoff.is_zero(),
                "retry.initial_backoff must be more than zero",
            ),
            (
                r.max_backoff >= r.initial_backoff,
                "retry.max_backoff must be at least retry.initial_backoff",
            ),
            (
                b.failure_threshold >= 1,
                "breaker.failure_threshold must be at least 1",
            ),
            (
                !b.open_for.is_zero(),
                "breaker.open_for must be more than zero",
            ),
            (
                b.max_open_for >= b.open_for,
                "breaker.max_open_for must be at least breaker.open_for",
            ),
            (
                !self.pause_probe_interval.is_zero(),
                "pause_probe_interval must be more than zero",
            ),
            (
                !self.topics.is_empty(),
                "topics must name at least one topic",
            ),
            (
                !self.event_types.is_empty(),
                "event_types must name at least one type",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(format!("{section}.{why}")),
            None => Ok(()),
        }
    }

    /// Every dead-letter topic of this runner (for provisioning).
    pub fn dlq_topics(&self, target: &str) -> Vec<String> {
        self.topics
            .iter()
            .map(|t| self.dlq_topic(t, target))
            .collect()
    }
}

/// Target names use `_` (`logic_apps`); topic and group names use `-`, since Kafka warns about
/// topics mixing `.` and `_`.
fn topic_safe(target: &str) -> String {
    target.replace('_', "-")
}

/// How a message that fails transiently is retried before it is dead-lettered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Failed attempts (timeouts, connection errors, 429, 5xx) before the DLQ. Attempts made as
    /// the circuit breaker's probe, and refusals of our credentials, do not count: an outage or
    /// a misconfiguration must not empty the topic into the DLQ.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a target asking for more gets this.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(600),
        }
    }
}

/// The circuit breaker of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive transient failures (any message) that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before one probe goes through; doubles after every
    /// failed probe, up to `max_open_for`.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    #[serde(with = "humantime_serde")]
    pub max_open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_target() {
        let s = DeliverySettings::default();
        assert_eq!(s.group_for("logic_apps"), "delivery-logic-apps");
        assert_eq!(
            s.dlq_topic("enrollment-notifications", "salesforce"),
            "enrollment-notifications.salesforce.dlq"
        );
        assert_eq!(
            s.dlq_topics("logic_apps"),
            vec![
                "enrollment-notifications.logic-apps.dlq",
                "quote-notifications.logic-apps.dlq"
            ]
        );
    }

    #[test]
    fn reads_human_durations_and_defaults() {
        let s: DeliverySettings = serde_json::from_value(serde_json::json!({
            "concurrency": 4,
            "retry": {"max_attempts": 3, "initial_backoff": "250ms"},
            "breaker": {"open_for": "1m"},
        }))
        .unwrap();
        assert_eq!(s.concurrency, 4);
        assert_eq!(s.retry.max_attempts, 3);
        assert_eq!(s.retry.initial_backoff, Duration::from_millis(250));
        assert_eq!(s.retry.max_backoff, Duration::from_secs(120));
        assert_eq!(s.breaker.open_for, Duration::from_secs(60));
        assert_eq!(s.max_in_flight, 1000);
    }

    #[test]
    fn bounds_that_would_stall_a_runner_are_refused() {
        assert!(DeliverySettings::default().validate("d").is_ok());
        let stalled = DeliverySettings {
            max_in_flight: 0,
            ..DeliverySettings::default()
        };
        assert_eq!(
            stalled
                .validate("deliveries.salesforce.delivery")
                .unwrap_err(),
            "deliveries.salesforce.delivery.max_in_flight must be between 1 and 1000000"
        );
        let spinning = DeliverySettings {
            poll_batch: 0,
            ..DeliverySettings::default()
        };
        assert!(spinning.validate("d").unwrap_err().contains("poll_batch"));
    }
}
