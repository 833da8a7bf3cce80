//! Bounds on what callers can make the API hold: requests in flight (past the bound, 503 at
//! once rather than a queue growing in memory), time per request, and each credential's
//! request rate (429 with `Retry-After`). The header-read timeout lives in `server`.

pub mod config;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use lru::LruCache;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub use config::LimitsConfig;

use crate::problem::Problem;

/// Credentials tracked before idle ones are dropped from the rate limiter's table.
const TRACKED_CALLERS: usize = 10_000;

pub struct Limits {
    config: LimitsConfig,
    rate: Option<DefaultKeyedRateLimiter<String>>,
    refusals: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses over their budget of refusals, and until when.
    blocked: Mutex<LruCache<IpAddr, Instant>>,
    in_flight: Arc<Semaphore>,
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            config: config.clone(),
            rate: keyed(config.rate_per_second, config.burst),
            refusals: keyed(config.refusals_per_second, config.refusals_burst),
            blocked: Mutex::new(LruCache::new(
                NonZeroUsize::new(TRACKED_CALLERS).expect("non-zero"),
            )),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        }
    }

    /// Ok, or the whole seconds until this caller may send again.
    pub fn check_rate(&self, caller: &str) -> Result<(), u64> {
        check(self.rate.as_ref(), &caller.to_string())
    }

    /// Ok, or the whole seconds until `peer` may present a credential again: an address that
    /// spent its budget of refused credentials is answered before any lookup.
    pub fn check_refusals(&self, peer: IpAddr) -> Result<(), u64> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match blocked.get(&peer).copied() {
            Some(until) if until > now => Err(seconds(until - now)),
            Some(_) => {
                blocked.pop(&peer);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Charge a refused credential to `peer`; the seconds it must wait if that spent its budget.
    pub fn refused(&self, peer: IpAddr) -> Option<u64> {
        let wait = check(self.refusals.as_ref(), &peer).err()?;
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(peer, Instant::now() + Duration::from_secs(wait));
        Some(wait)
    }
}

fn keyed<K: Hash + Eq + Clone>(per_second: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_second).map(|per_second| {
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
    })
}

fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Ok, or the whole seconds until `key` may go again; bounded in memory by pruning idle keys.
fn check<K: Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), u64> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if limiter.len() > TRACKED_CALLERS {
        limiter.retain_recent();
    }
    limiter
        .check_key(key)
        .map_err(|not_until| seconds(not_until.wait_time_from(DefaultClock::default().now())))
}

/// The in-flight bound and the request timeout. `/healthz` is exempt: an overloaded process is
/// alive, and restarting it for being busy would only make the overload worse.
pub async fn bound(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("enrollstream_http_shed_total", "reason" => "in_flight").increment(1);
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many requests in flight",
            format!(
                "this process already handles {} requests; retry shortly",
                limits.config.max_in_flight
            ),
        )
        .with_retry_after(1)
        .into_response();
    };
    let timeout = limits.config.request_timeout;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("enrollstream_http_shed_total", "reason" => "timeout").increment(1);
            tracing::warn!(?timeout, "request timed out");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request-timeout",
                "The request took too long",
                format!("no answer within {timeout:?}; a command may or may not have been accepted: retry with the same Idempotency-Key"),
            )
            .with_retry_after(1)
            .into_response()
        }
    }
}
