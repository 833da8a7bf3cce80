//! Settings of the HTTP API. Durations are written the human way in config files ("10s").

use enrollstream_domain::limits::Limits;
use enrollstream_ports::TopicNames;

use crate::auth::AuthMode;
use crate::graphql::GraphqlConfig;
use crate::limits::LimitsConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub topics: TopicNames,
    /// CloudEvents `source` of every event the API builds from a command.
    pub source: String,
    /// Largest accepted request body; bigger ones get 413.
    pub max_body_bytes: usize,
    /// Upper bound of a read's `?wait_ms` for read-your-writes.
    #[serde(with = "humantime_serde")]
    pub max_read_wait: Duration,
    /// How long a command waits for the previous event on its entity to reach the read model.
    #[serde(with = "humantime_serde")]
    pub command_wait: Duration,
    /// `"on"` (the default): every route but `/healthz` and `/readyz` needs a credential.
    /// `"off"` is for trying enrollstream out on one machine, and is warned about at start.
    pub auth: AuthMode,
    pub limits: LimitsConfig,
    pub graphql: GraphqlConfig,
    /// Bounds on every event accepted; the binary sets them from its top-level `[limits]`,
    /// which the projector checks too.
    #[serde(skip)]
    pub event_limits: Limits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            topics: TopicNames::default(),
            source: "/enrollstream/api".into(),
            max_body_bytes: 256 * 1024,
            max_read_wait: Duration::from_secs(10),
            command_wait: Duration::from_secs(5),
            auth: AuthMode::On,
            limits: LimitsConfig::default(),
            graphql: GraphqlConfig::default(),
            event_limits: Limits::default(),
        }
    }
}

impl ApiConfig {
    /// Bounds that only make sense together.
    pub fn validate(&self) -> Result<(), String> {
        let timeout = self.limits.request_timeout;
        if timeout <= self.max_read_wait || timeout <= self.command_wait {
            return Err(format!(
                "api.limits.request_timeout ({timeout:?}) must exceed api.max_read_wait ({:?}) and api.command_wait ({:?}), or waiting reads and commands would time out",
                self.max_read_wait, self.command_wait
            ));
        }
        if self.limits.max_in_flight == 0 {
            return Err("api.limits.max_in_flight must be at least 1".into());
        }
        if self.limits.header_read_timeout.is_zero() {
            return Err("api.limits.header_read_timeout must not be zero".into());
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err("api.max_body_bytes must be between 1024 and 67108864".into());
        }
        if !self
            .source
            .starts_with(enrollstream_domain::envelope::OWN_SOURCE_PREFIX)
        {
            return Err(format!(
                "api.source must start with {:?}: events of that source are told apart from those of upstream producers",
                enrollstream_domain::envelope::OWN_SOURCE_PREFIX
            ));
        }
        self.graphql.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_defaults_and_durations_are_human() {
        let c: ApiConfig =
            serde_json::from_str(r#"{"command_wait":"250ms","topics":{"quote_events":"q"}}"#)
                .unwrap();
        assert_eq!(c.command_wait, Duration::from_millis(250));
        assert_eq!(c.max_read_wait, Duration::from_secs(10));
        assert_eq!(c.topics.quote_events, "q");
        assert_eq!(c.topics.enrollment_events, "enrollment-events");
        assert_eq!(c.max_body_bytes, 262_144);
    }
}
