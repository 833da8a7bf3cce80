//! The dead-letter port: what an operator does with parked messages (list, inspect, redrive),
//! offered to the admin API by the runners and wired by the binary, so that the API never
//! depends on the runners. The CLI calls the same implementation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::RedriveAudit;
use crate::{BusError, StoreError};

/// Which dead letters an operator means; every field set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The message key: the entity (application, quote) the message is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Failed at or after (`dlq_failed_at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_since: Option<DateTime<Utc>>,
    /// Failed before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_until: Option<DateTime<Utc>>,
}

/// A DLQ topic named the way operators think of it: the original topic, and for a delivery
/// DLQ the target that failed (`enrollment-notifications` + `salesforce`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DlqName {
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What a redrive moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedriveSelection {
    /// These dead letters (`DLQ_TOPIC:PARTITION:OFFSET`); their topics are in the ids.
    Ids(Vec<String>),
    /// Every dead letter of one DLQ the filter picks, the first `limit` of them if set.
    Filter {
        dlq: DlqName,
        filter: DeadLetterFilter,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedriveRequest {
    pub selection: RedriveSelection,
    pub dry_run: bool,
    /// Who asks, for the audit: an API credential's name, or `cli:$USER`.
    pub by: String,
}

/// What happened to one dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RedriveOutcome {
    pub id: String,
    /// `moved`, `would_move` (a dry run) or `skipped`.
    pub action: &'static str,
    /// Where it went (or would go).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Why it stayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// The audit record of this redrive.
    pub audit_id: String,
    pub dry_run: bool,
    /// DLQ topics read.
    pub topics: Vec<String>,
    /// Moved, or would move in a dry run.
    pub moved: u64,
    pub skipped: u64,
    pub outcomes: Vec<RedriveOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The request names no known DLQ, or an id is malformed: the caller's to fix.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// The DLQ topic `name` stands for; an unknown topic or target is `Invalid`.
    fn resolve(&self, name: &DlqName) -> Result<String, DeadLetterError>;

    /// The first `limit` dead letters of `dlq` the filter picks, as operators read them (id,
    /// reason, error, attempts, failures, redrives, origin, payload).
    async fn list(
        &self,
        dlq: &DlqName,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, DeadLetterError>;

    /// One dead letter, whole (its headers too); `None` if its topic holds no such id.
    async fn inspect(&self, id: &str) -> Result<Option<serde_json::Value>, DeadLetterError>;

    /// Move (or, in a dry run, tell what would move) and record it in the audit, before and
    /// after: a redrive that cannot be recorded does not start.
    async fn redrive(&self, request: &RedriveRequest) -> Result<RedriveReport, DeadLetterError>;

    /// The most recent redrives first.
    async fn audit(&self, limit: usize) -> Result<Vec<RedriveAudit>, DeadLetterError>;
}
