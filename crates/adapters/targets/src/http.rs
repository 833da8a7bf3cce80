//! What every HTTP target shares: client settings, the rate limiter, and the mapping of HTTP
//! outcomes onto the delivery error policy.

use chrono::{DateTime, Utc};
use enrollstream_ports::target::DeliveryError;
use enrollstream_ports::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::time::Duration;

use crate::ConfigError;

/// Timeouts of one target's HTTP client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Whole request, from sending to the last byte of the response.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 32,
        }
    }
}

impl HttpSettings {
    pub fn client(&self) -> Result<reqwest::Client, ConfigError> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .user_agent(concat!("enrollstream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError(format!("cannot build the HTTP client: {e}")))
    }
}

/// Requests per second allowed toward one target, with a burst.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    /// Requests that may go out at once after an idle period; defaults to `per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// The rate limiter of one target; a target without a limit never waits.
pub struct Limiter(Option<DefaultDirectRateLimiter>);

impl Limiter {
    pub fn new(limit: Option<&RateLimit>) -> Result<Self, ConfigError> {
        let Some(limit) = limit else {
            return Ok(Self(None));
        };
        let per_second = NonZeroU32::new(limit.per_second)
            .ok_or_else(|| ConfigError("rate_limit.per_second must be at least 1".into()))?;
        let burst = NonZeroU32::new(limit.burst.unwrap_or(limit.per_second))
            .ok_or_else(|| ConfigError("rate_limit.burst must be at least 1".into()))?;
        Ok(Self(Some(RateLimiter::direct(
            Quota::per_second(per_second).allow_burst(burst),
        ))))
    }

    pub async fn until_ready(&self) {
        if let Some(limiter) = &self.0 {
            limiter.until_ready().await;
        }
    }
}

/// How long the target asked us to wait: `Retry-After` as delay-seconds or an HTTP-date.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or_default())
}

/// The error policy for a status outside 2xx, for targets without a richer error vocabulary.
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    clock: &dyn Clock,
) -> DeliveryError {
    let code = status.as_u16();
    let error = describe(status, body);
    match code {
        401 | 403 => DeliveryError::Unauthorized {
            status: code,
            error,
        },
        // 408: the server gave up waiting for us; 409: a request with the same idempotency key is
        // still in progress at the target; 425: too early. All say "same request, later".
        408 | 409 | 425 | 429 => DeliveryError::Transient {
            status: Some(code),
            retry_after: retry_after(headers, clock.now()),
            error,
        },
        _ if status.is_server_error() => DeliveryError::Transient {
            status: Some(code),
            retry_after: retry_after(headers, clock.now()),
            error,
        },
        _ => DeliveryError::Permanent {
            status: Some(code),
            error,
        },
    }
}

/// "HTTP 500 Internal Server Error: <first part of the body>".
pub fn describe(status: StatusCode, body: &str) -> String {
    let body = body.trim();
    let reason = status.canonical_reason().unwrap_or("");
    if body.is_empty() {
        format!("{} {reason}", status.as_u16())
    } else {
        format!("{} {reason}: {}", status.as_u16(), truncate(body, 512))
    }
}

/// A transport failure (timeout, refused or reset connection, broken body) is always worth a
/// retry. The URL is stripped: it may carry a signature.
pub fn transport_error(e: reqwest::Error) -> DeliveryError {
    // A request that cannot even be built (a header value with a control character, say) will
    // never be: the message goes to the DLQ at once, and the target, never called, is not
    // blamed for it (no status: the circuit breaker does not count it).
    if e.is_builder() {
        return DeliveryError::Permanent {
            status: None,
            error: format!(
                "the request cannot be built: {}",
                error_chain(&e.without_url())
            ),
        };
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    DeliveryError::Transient {
        status: None,
        retry_after: None,
        error: format!("{kind}: {}", error_chain(&e.without_url())),
    }
}

/// An error and its causes on one line ("error sending request: connection reset by peer").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Read at most what is needed of an error body.
pub async fn error_body(response: reqwest::Response) -> String {
    match response.bytes().await {
        Ok(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned(),
        Err(_) => String::new(),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use enrollstream_ports::ManualClock;

    fn headers(retry: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, retry.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers("Thu, 01 Jan 2026 00:01:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_permanent() {
        let error = reqwest::Client::new()
            .post("http://127.0.0.1:9/")
            .header("ce-subject", "A-1\r\nX-Injected: 1")
            .send()
            .await
            .unwrap_err();
        let classified = transport_error(error);
        assert_eq!(classified.kind(), "rejected", "{classified}");
        assert_eq!(classified.status(), None);
    }

    #[test]
    fn statuses_follow_the_error_policy() {
        let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
        let none = HeaderMap::new();
        let kind = |code: u16, h: &HeaderMap| {
            classify_status(StatusCode::from_u16(code).unwrap(), h, "", &clock)
        };
        assert_eq!(kind(401, &none).kind(), "unauthorized");
        assert_eq!(kind(403, &none).kind(), "unauthorized");
        assert_eq!(kind(400, &none).kind(), "rejected");
        assert_eq!(kind(404, &none).kind(), "rejected");
        assert_eq!(kind(500, &none).kind(), "transient");
        assert_eq!(kind(503, &none).kind(), "transient");
        match kind(429, &headers("3")) {
            DeliveryError::Transient { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)))
            }
            other => panic!("{other:?}"),
        }
    }
}
