//! The delivery log port: one record per delivery outcome (a notification delivered to a
//! target, dead-lettered, or delivered again as a duplicate), listed by the entity it is about.
//!
//! A journal, not a fence: the delivery runners write it off their delivery path (a record that
//! cannot be written is dropped and counted), so it may miss a delivery but never holds one up.
//! Records are kept for [`RETENTION`]; adapters purge older ones (MongoDB with a TTL index too).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// How long a record is kept.
pub const RETENTION: Duration = Duration::days(30);
/// The longest error summary kept, in bytes.
pub const MAX_ERROR: usize = 256;
/// The most records one listing returns.
pub const MAX_LIST: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The target accepted the notification.
    Delivered,
    /// Parked in the target's dead-letter topic (`dlq_topic`).
    DeadLettered,
    /// Accepted again after it had been delivered already (a redelivery after a rebalance or
    /// a restart): the target skipped it as a duplicate by its idempotency key.
    SkippedDuplicate,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 3] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::DeadLettered,
        DeliveryOutcome::SkippedDuplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::DeadLettered => "dead_lettered",
            DeliveryOutcome::SkippedDuplicate => "skipped_duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One delivery outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub notification_id: String,
    /// The business event that caused the notification, when the message said.
    pub event_id: Option<String>,
    /// `application`, `quote` (or what the message said), when known.
    pub entity_kind: Option<String>,
    pub entity_id: String,
    /// The target's name as its runner knows it (`logic_apps`, `salesforce`, `lead_management`).
    pub target: String,
    pub outcome: DeliveryOutcome,
    pub attempts: u32,
    /// The HTTP status of the last answer, when one came back.
    pub status: Option<u16>,
    /// Why the last attempt failed, at most [`MAX_ERROR`] bytes (see [`summarize`]).
    pub error: Option<String>,
    /// Where a dead-lettered notification went, e.g. `enrollment-notifications.salesforce.dlq`.
    pub dlq_topic: Option<String>,
    pub at: DateTime<Utc>,
}

/// An error text fit for the log: control characters become spaces, and it is cut to
/// [`MAX_ERROR`] bytes on a character boundary. The texts are the targets' classified errors
/// (status and the start of a response body), the same the DLQ headers carry: never a request
/// header or a credential.
pub fn summarize(error: &str) -> String {
    let mut out = String::with_capacity(error.len().min(MAX_ERROR));
    for c in error.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_ERROR {
            break;
        }
        out.push(c);
    }
    out
}

#[async_trait]
pub trait DeliveryLog: Send + Sync {
    async fn record(&self, record: &DeliveryRecord) -> Result<(), StoreError>;

    /// The latest `limit` records of one entity, newest first.
    async fn by_entity(
        &self,
        entity_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Drop the records older than `before`; how many went.
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn check(&self) -> Result<(), StoreError>;

    /// Which adapter this is ("sqlite", "mongodb").
    fn name(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_bounded_single_lines() {
        assert_eq!(summarize("a\nb\tc"), "a b c");
        let long = "é".repeat(MAX_ERROR);
        let cut = summarize(&long);
        assert!(cut.len() <= MAX_ERROR && cut.chars().all(|c| c == 'é'));
        for outcome in DeliveryOutcome::ALL {
            assert_eq!(DeliveryOutcome::parse(outcome.as_str()), Some(outcome));
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::json!(outcome.as_str())
            );
        }
    }
}
