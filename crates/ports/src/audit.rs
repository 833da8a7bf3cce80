//! The audit port: a durable record of every redrive of dead letters (who, when, what, and what
//! came of it), kept by the store's engine so that every process and the CLI see one history.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedriveStatus {
    /// Recorded before anything moved; a record left in this state is a redrive that stopped
    /// half way (a crash): some of its dead letters may have moved.
    Started,
    Completed,
    /// It stopped on an error; the counts say how far it got.
    Failed,
}

impl RedriveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Started, Self::Completed, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// One redrive, as the audit keeps it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RedriveAudit {
    pub id: String,
    pub at: DateTime<Utc>,
    /// An API credential's name, or `cli:$USER`.
    pub by: String,
    pub dry_run: bool,
    /// What was asked: `{"ids": [...]}` or `{"filter": {"dlq": ..., "filter": ..., "limit": ...}}`.
    pub selection: serde_json::Value,
    pub status: RedriveStatus,
    /// Moved (would move, in a dry run) and skipped, so far.
    pub moved: u64,
    pub skipped: u64,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, without the driver's details (those are in the log).
    pub error: Option<String>,
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Record a redrive, or replace the record of the same id (its start, then its end).
    async fn record_redrive(&self, record: &RedriveAudit) -> Result<(), StoreError>;

    /// The `limit` most recent redrives, newest first (by `at`, then id).
    async fn redrives(&self, limit: usize) -> Result<Vec<RedriveAudit>, StoreError>;
}
