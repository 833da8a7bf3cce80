//! Settings of the HTTP API. Durations are written the human way in config files ("10s").

use enrollstream_ports::TopicNames;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            topics: TopicNames::default(),
            source: "/enrollstream/api".into(),
            max_body_bytes: 256 * 1024,
            max_read_wait: Duration::from_secs(10),
            command_wait: Duration::from_secs(5),
        }
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
