//! Extractors whose rejections are problem+json. axum's own rejections answer in plain text;
//! these wrap them so that no client ever sees a non-problem error body.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use enrollstream_domain::FieldError;
use serde_json::Value;
use std::collections::HashMap;

use crate::problem::Problem;

pub const AFTER_HEADER: &str = "x-enrollstream-after";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Most event ids one request may wait for: each is a store wait, so the list is bounded.
pub const MAX_AFTER_IDS: usize = 16;

/// The raw request body and its media type (lower-case, parameters dropped).
pub struct Body {
    pub media_type: Option<String>,
    pub bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Request body too large",
                    rejection.body_text(),
                )
            } else {
                Problem::from_status(rejection.status(), rejection.body_text())
            }
        })?;
        Ok(Self { media_type, bytes })
    }
}

impl Body {
    /// A command body: JSON (`application/json` or any `+json` type). An empty body counts as
    /// `{}` so that commands without required fields (approve, withdraw) need no body at all.
    pub fn command_json(&self) -> Result<Value, Problem> {
        if self.bytes.is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        let json = self.media_type.as_deref().is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
        if !json {
            return Err(Problem::unsupported_media_type(
                self.media_type.as_deref(),
                &["application/json"],
            ));
        }
        match self.json()? {
            object @ Value::Object(_) => Ok(object),
            _ => Err(Problem::invalid(vec![FieldError::new(
                "$",
                "must be a JSON object",
            )])),
        }
    }

    pub fn json(&self) -> Result<Value, Problem> {
        serde_json::from_slice(&self.bytes).map_err(Problem::malformed_json)
    }
}

/// The `{id}` segment of an entity route.
pub struct EntityId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for EntityId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|r| Problem::invalid(vec![FieldError::new("id", r.body_text())]))?;
        Ok(Self(id))
    }
}

/// Read-your-writes options of a read: `?after=<event id>` and/or `X-Enrollstream-After`, and
/// `?wait_ms=` to bound the wait.
#[derive(Debug, Default)]
pub struct ReadOptions {
    pub after: Vec<String>,
    pub wait_ms: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for ReadOptions {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|r| Problem::invalid(vec![FieldError::new("query", r.body_text())]))?;
        let wait_ms = match query.get("wait_ms") {
            Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
                Problem::invalid(vec![FieldError::new(
                    "wait_ms",
                    "must be a non-negative integer (milliseconds)",
                )])
            })?),
            None => None,
        };
        let mut after = after_header(&parts.headers)?;
        if let Some(id) = query.get("after") {
            if id.trim().is_empty() {
                return Err(Problem::invalid(vec![FieldError::new(
                    "after",
                    "must be an event id",
                )]));
            }
            after.push(id.clone());
        }
        if after.len() > MAX_AFTER_IDS {
            return Err(Problem::invalid(vec![FieldError::new(
                "after",
                format!(
                    "names {} event ids; at most {MAX_AFTER_IDS} (with X-Enrollstream-After)",
                    after.len()
                ),
            )]));
        }
        Ok(Self { after, wait_ms })
    }
}

/// Event ids named by `X-Enrollstream-After` (comma-separated or repeated).
pub fn after_header(headers: &HeaderMap) -> Result<Vec<String>, Problem> {
    let mut ids = Vec::new();
    for value in headers.get_all(AFTER_HEADER) {
        let text = value.to_str().map_err(|_| {
            Problem::invalid(vec![FieldError::new(
                "X-Enrollstream-After",
                "must be visible ASCII",
            )])
        })?;
        ids.extend(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        if ids.len() > MAX_AFTER_IDS {
            return Err(Problem::invalid(vec![FieldError::new(
                "X-Enrollstream-After",
                format!("names more than {MAX_AFTER_IDS} event ids"),
            )]));
        }
    }
    Ok(ids)
}

/// The request's W3C `traceparent` if it is well-formed; a malformed one is replaced rather than
/// refused, as the trace context spec asks of receivers.
pub fn traceparent(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get("traceparent")?
        .to_str()
        .ok()?
        .trim()
        .to_ascii_lowercase();
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let well_formed = parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2);
    well_formed.then_some(value)
}

/// The client's `Idempotency-Key`, if any: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::invalid(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )]));
    }
    Ok(Some(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn traceparent_is_taken_only_when_well_formed() {
        let mut h = HeaderMap::new();
        assert_eq!(traceparent(&h), None);
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert("traceparent", HeaderValue::from_static(good));
        assert_eq!(traceparent(&h).as_deref(), Some(good));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent(&h), None);
        h.insert("traceparent", HeaderValue::from_static("garbage"));
        assert_eq!(traceparent(&h), None);
    }

    #[test]
    fn idempotency_keys_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert(IDEMPOTENCY_HEADER, HeaderValue::from_static("k-1"));
        assert_eq!(idempotency_key(&h).unwrap().as_deref(), Some("k-1"));
        h.insert(IDEMPOTENCY_HEADER, HeaderValue::from_static(""));
        assert_eq!(
            idempotency_key(&h).unwrap_err().details().errors[0].field,
            "Idempotency-Key"
        );
    }

    #[test]
    fn after_header_takes_lists() {
        let mut h = HeaderMap::new();
        h.append(AFTER_HEADER, HeaderValue::from_static("a, b"));
        h.append(AFTER_HEADER, HeaderValue::from_static("c"));
        assert_eq!(after_header(&h).unwrap(), vec!["a", "b", "c"]);
    }
}
