//! Salesforce REST error bodies (`[{"errorCode": "...", "message": "..."}]`) mapped onto the
//! delivery error policy. The status alone misleads: Salesforce answers 403 both for missing
//! permissions (pause) and for an exhausted daily API limit (wait), and 400 for row lock
//! contention (retry).

use enrollstream_ports::target::DeliveryError;
use enrollstream_ports::Clock;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::http::{classify_status, retry_after};

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "errorCode", default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// Error codes that mean "the same request may succeed later".
const TRANSIENT_CODES: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    "TXN_SECURITY_METERING_ERROR",
    "QUERY_TIMEOUT",
];

/// Error codes that mean our credentials or permissions are wrong, whatever the status.
const UNAUTHORIZED_CODES: &[&str] = &[
    "INVALID_SESSION_ID",
    "INSUFFICIENT_ACCESS",
    "INSUFFICIENT_ACCESS_OR_READONLY",
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
    "API_DISABLED_FOR_ORG",
    "API_CURRENTLY_DISABLED",
];

pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    clock: &dyn Clock,
) -> DeliveryError {
    let errors: Vec<ApiError> = serde_json::from_str(body).unwrap_or_default();
    let Some(first) = errors.first() else {
        return classify_status(status, headers, body, clock);
    };
    let code = status.as_u16();
    let error = errors
        .iter()
        .map(|e| format!("{}: {}", e.error_code, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    let error = format!("{code} {error}");
    let named = first.error_code.as_str();
    if TRANSIENT_CODES.contains(&named) {
        return DeliveryError::Transient {
            status: Some(code),
            retry_after: retry_after(headers, clock.now()),
            error,
        };
    }
    if UNAUTHORIZED_CODES.contains(&named) {
        return DeliveryError::Unauthorized {
            status: code,
            error,
        };
    }
    match classify_status(status, headers, body, clock) {
        DeliveryError::Transient { retry_after, .. } => DeliveryError::Transient {
            status: Some(code),
            retry_after,
            error,
        },
        DeliveryError::Unauthorized { .. } => DeliveryError::Unauthorized {
            status: code,
            error,
        },
        DeliveryError::Permanent { .. } => DeliveryError::Permanent {
            status: Some(code),
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enrollstream_ports::ManualClock;

    fn kind(status: u16, body: &str) -> DeliveryError {
        let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
            &clock,
        )
    }

    #[test]
    fn error_codes_decide_over_statuses() {
        let limit = kind(
            403,
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!(limit.kind(), "transient");
        assert!(limit.error().contains("REQUEST_LIMIT_EXCEEDED"));
        assert_eq!(
            kind(400, r#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]"#).kind(),
            "transient"
        );
        assert_eq!(
            kind(
                403,
                r#"[{"message":"no","errorCode":"INSUFFICIENT_ACCESS"}]"#
            )
            .kind(),
            "unauthorized"
        );
        let invalid = kind(
            400,
            r#"[{"message":"No such column 'Foo__c'","errorCode":"INVALID_FIELD"}]"#,
        );
        assert_eq!(invalid.kind(), "rejected");
        assert_eq!(invalid.status(), Some(400));
        assert_eq!(kind(500, "oops").kind(), "transient");
        assert_eq!(kind(404, "[]").kind(), "rejected");
    }
}
