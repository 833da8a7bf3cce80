//! The delivery target port: one downstream system (Azure Logic Apps, Salesforce, the Lead
//! Management API) that a delivery runner pushes messages to.
//!
//! A target makes one attempt per call and says how it went; retries, backoff, the circuit
//! breaker, pausing and dead-lettering belong to the runner, so every target gets the same error
//! policy. A target must be idempotent toward its system: the same message delivered twice (a
//! retry after a lost response, a redelivery after a crash) carries the same idempotency key and
//! is applied once.

use async_trait::async_trait;
use enrollstream_domain::CloudEvent;
use std::time::Duration;

/// One attempt to deliver one message.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The message as a CloudEvent (decoded from the bus headers and payload); its
    /// `traceparent` names this attempt's span (a child of the notification's), which the
    /// target passes on.
    pub event: CloudEvent,
    /// 1 for the first attempt; retries and redeliveries within one run count up.
    pub attempt: u32,
}

/// The target accepted the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// HTTP status of the accepting response.
    pub status: u16,
    /// What the target said it did, for logs ("created", "updated", a record id).
    pub detail: String,
}

/// Why an attempt failed, classified for the runner's error policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// May succeed later: a timeout, a refused or reset connection, 429, 5xx, a lock contention
    /// error. Retried with backoff; `retry_after` is the target's own wish, when it stated one.
    #[error("transient failure{}: {error}", status_suffix(*status))]
    Transient {
        status: Option<u16>,
        retry_after: Option<Duration>,
        error: String,
    },
    /// Our credentials are refused (401/403 after a token refresh). A misconfiguration: the
    /// runner pauses the whole target instead of failing message after message.
    #[error("unauthorized{}: {error}", status_suffix(Some(*status)))]
    Unauthorized { status: u16, error: String },
    /// This message will never be accepted as it is (other 4xx, an undecodable message).
    #[error("rejected{}: {error}", status_suffix(*status))]
    Permanent { status: Option<u16>, error: String },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

impl DeliveryError {
    /// The HTTP status of the failed attempt, if a response came back.
    pub fn status(&self) -> Option<u16> {
        match self {
            DeliveryError::Transient { status, .. } | DeliveryError::Permanent { status, .. } => {
                *status
            }
            DeliveryError::Unauthorized { status, .. } => Some(*status),
        }
    }

    /// A short code for metrics labels and DLQ headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DeliveryError::Transient { .. } => "transient",
            DeliveryError::Unauthorized { .. } => "unauthorized",
            DeliveryError::Permanent { .. } => "rejected",
        }
    }

    /// The message without the classification prefix.
    pub fn error(&self) -> &str {
        match self {
            DeliveryError::Transient { error, .. }
            | DeliveryError::Unauthorized { error, .. }
            | DeliveryError::Permanent { error, .. } => error,
        }
    }
}

#[async_trait]
pub trait Target: Send + Sync {
    /// The target's name as used in routing metadata (`logic_apps`, `salesforce`,
    /// `lead_management`), metrics labels and DLQ topic names.
    fn name(&self) -> &str;

    /// Make one attempt. Must not retry on its own except where the protocol demands it (a
    /// Salesforce token refresh after a 401).
    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DeliveryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_status_and_kind() {
        let e = DeliveryError::Transient {
            status: Some(503),
            retry_after: None,
            error: "busy".into(),
        };
        assert_eq!(e.to_string(), "transient failure (HTTP 503): busy");
        assert_eq!(e.status(), Some(503));
        assert_eq!(e.kind(), "transient");
        let e = DeliveryError::Permanent {
            status: None,
            error: "bad data".into(),
        };
        assert_eq!(e.to_string(), "rejected: bad data");
        assert_eq!(e.error(), "bad data");
    }
}
