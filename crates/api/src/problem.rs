//! RFC 9457 problem details: every 4xx and 5xx this API answers is `application/problem+json`,
//! with the offending fields named in `errors` so a client can point at the exact input.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use enrollstream_domain::{FieldError, TransitionError, ValidationError};
use enrollstream_ports::{BusError, StoreError};
use serde::Serialize;
use serde_json::Value;

pub const CONTENT_TYPE: &str = "application/problem+json";
pub const TYPE_BASE: &str = "https://enrollstream.dev/problems/";

/// Boxed: it travels in every handler's `Result`, and the happy path should not pay for its size.
#[derive(Clone, Debug)]
pub struct Problem(Box<Details>);

#[derive(Clone, Debug, Serialize)]
pub struct Details {
    #[serde(rename = "type")]
    pub ty: String,
    pub title: String,
    #[serde(serialize_with = "as_u16")]
    pub status: StatusCode,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extension members (RFC 9457 §3.2), e.g. the component list of `/readyz`.
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, Value>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

fn as_u16<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self(Box::new(Details {
            ty: format!("{TYPE_BASE}{slug}"),
            title: title.to_string(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
            extensions: serde_json::Map::new(),
            retry_after: None,
        }))
    }

    pub fn details(&self) -> &Details {
        &self.0
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.0.errors = errors;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.0.retry_after = Some(seconds);
        self
    }

    /// An extension member; it must not reuse a standard member's name.
    pub fn with_extension(mut self, name: &str, value: Value) -> Self {
        debug_assert!(!["type", "title", "status", "detail", "errors"].contains(&name));
        self.0.extensions.insert(name.to_string(), value);
        self
    }

    pub fn malformed_json(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            "the request body is not valid JSON",
        )
        .with_errors(vec![FieldError::new(
            "$",
            format!("malformed JSON: {reason}"),
        )])
    }

    pub fn unsupported_media_type(got: Option<&str>, expected: &[&str]) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!(
                "Content-Type {} is not accepted here; send one of: {}",
                got.map(|g| format!("{g:?}"))
                    .unwrap_or_else(|| "(none)".into()),
                expected.join(", ")
            ),
        )
        .with_errors(vec![FieldError::new(
            "Content-Type",
            format!("must be one of {}", expected.join(", ")),
        )])
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request does not match its schema",
            detail,
        )
        .with_errors(errors)
    }

    pub fn validation(err: ValidationError) -> Self {
        Self::invalid(err.errors)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no {what} {id:?} in the read model (yet)"),
        )
        .with_errors(vec![FieldError::new("id", format!("no such {what}"))])
    }

    pub fn route_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "route-not-found",
            "No such route",
            format!("nothing is served at {path:?}; see /openapi.json"),
        )
    }

    pub fn invalid_transition(err: &TransitionError) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid-transition",
            "The command does not fit the entity's current status",
            err.to_string(),
        )
        .with_extension("current_status", Value::String(err.from.clone()))
        .with_extension("reason", Value::String(err.reason.clone()))
    }

    pub fn not_yet_projected(event_id: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "not-yet-projected",
            "The awaited event is not in the read model yet",
            format!("event {event_id:?} was not projected within the wait; retry shortly"),
        )
        .with_extension("awaited_event_id", Value::String(event_id.to_string()))
        .with_retry_after(1)
    }

    pub fn idempotency_mismatch(key: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-mismatch",
            "Idempotency-Key reused with a different request",
            format!("the key {key:?} was first used with another method, path or body"),
        )
        .with_errors(vec![FieldError::new(
            "Idempotency-Key",
            "already used with a different request",
        )])
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Request body too large",
            format!("the body exceeds the limit of {limit} bytes"),
        )
    }

    /// The driver's error is logged, never sent: it names hosts, brokers and internals.
    pub fn bus(err: &BusError) -> Self {
        tracing::warn!(error = %err, "publish failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bus-unavailable",
            "The event bus did not accept the event",
            "the event bus is unavailable; nothing was accepted, retry later",
        )
        .with_retry_after(1)
    }

    pub fn store(err: &StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %err, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "The read model is unavailable",
                    "the store is unavailable; retry later",
                )
                .with_retry_after(1)
            }
            StoreError::Fatal(_) => Self::internal(format!("store: {err}")),
        }
    }

    /// `detail` is logged; the caller is told only that it happened.
    pub fn internal(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed to handle the request; it is logged",
        )
    }

    /// A problem for a bare status produced outside our handlers (method routing, layers).
    pub fn from_status(status: StatusCode, detail: String) -> Self {
        let slug = match status {
            StatusCode::NOT_FOUND => "route-not-found".to_string(),
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed".to_string(),
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large".to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type".to_string(),
            StatusCode::INTERNAL_SERVER_ERROR => "internal".to_string(),
            other => format!("http-{}", other.as_u16()),
        };
        let title = status.canonical_reason().unwrap_or("Error");
        Self::new(status, &slug, title, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&*self.0).expect("a problem always serialises");
        let mut response = (self.0.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(seconds) = self.0.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_rfc9457_with_extensions() {
        let p = Problem::invalid(vec![FieldError::new(
            "applicant.email",
            "must be an email address",
        )])
        .with_extension("x", Value::Bool(true));
        let v = serde_json::to_value(p.details()).unwrap();
        assert_eq!(v["type"], "https://enrollstream.dev/problems/validation");
        assert_eq!(v["status"], 422);
        assert_eq!(v["errors"][0]["field"], "applicant.email");
        assert_eq!(v["x"], true);
        assert!(v.get("retry_after").is_none());
    }
}
