//! `[api.limits]`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained requests per second per credential (key name or token subject); 0 turns the
    /// rate limit off.
    pub rate_per_second: u32,
    /// Requests a credential may send at once above the sustained rate.
    pub burst: u32,
    /// Refused credentials per second per client address (guessing keys costs a store lookup
    /// each); past it, the address gets no key lookups until its budget refills: 429, except
    /// for keys verified within `[auth] key_cache_ttl` and JWTs. 0 turns it off.
    pub refusals_per_second: u32,
    pub refusals_burst: u32,
    /// Requests one process handles at a time; more are answered 503 at once.
    pub max_in_flight: usize,
    /// Longest a request may take (it must exceed `max_read_wait` and `command_wait`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers (slow-loris clients).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            rate_per_second: 500,
            burst: 1000,
            refusals_per_second: 10,
            refusals_burst: 100,
            max_in_flight: 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}
