//! Settings of the reminder roles. Durations are written the human way ("30s").

use enrollstream_domain::reminder::ReminderPolicy;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReminderConfig {
    /// Hours between two reminders, and between the last one and the exhaustion.
    pub interval_hours: u32,
    /// Reminders per application before it is flagged.
    pub max_attempts: u32,
    /// Longest real-time wait of an idle scheduler before it looks again (reminders created by
    /// a consumer in another process are seen within this), and the delay before a failed
    /// send is retried.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// How long a claimed reminder stays with its scheduler. A send is abandoned after half of
    /// it, so a slow server can never let a second scheduler take the same attempt meanwhile.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Reminders claimed at once.
    pub batch: usize,
    /// CloudEvents `source` of the exhaustion events.
    pub source: String,
}

impl Default for ReminderConfig {
    fn default() -> Self {
        Self {
            interval_hours: 24,
            max_attempts: 5,
            tick: Duration::from_secs(30),
            lease: Duration::from_secs(120),
            batch: 20,
            source: "/enrollstream/reminders".into(),
        }
    }
}

impl ReminderConfig {
    pub fn policy(&self) -> ReminderPolicy {
        ReminderPolicy {
            interval: chrono::Duration::hours(i64::from(self.interval_hours)),
            max_attempts: self.max_attempts,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.interval_hours >= 1,
                "reminders.interval_hours must be at least 1",
            ),
            (
                self.max_attempts >= 1,
                "reminders.max_attempts must be at least 1",
            ),
            (
                !self.tick.is_zero(),
                "reminders.tick must be more than zero",
            ),
            (
                self.lease >= Duration::from_secs(2),
                "reminders.lease must be at least 2s",
            ),
            (self.batch >= 1, "reminders.batch must be at least 1"),
            (
                !self.source.trim().is_empty(),
                "reminders.source must not be empty",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(why.to_string()),
            None => Ok(()),
        }
    }

    /// The longest a scheduler waits for one send before giving the claim back.
    pub fn send_deadline(&self) -> Duration {
        self.lease / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issue_s_and_durations_are_human() {
        let c: ReminderConfig =
            serde_json::from_str(r#"{"max_attempts":3,"tick":"250ms","lease":"1m"}"#).unwrap();
        assert_eq!(c.interval_hours, 24);
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.tick, Duration::from_millis(250));
        assert_eq!(c.send_deadline(), Duration::from_secs(30));
        assert_eq!(c.policy().interval, chrono::Duration::hours(24));
        assert!(c.validate().is_ok());
        let bad = ReminderConfig {
            max_attempts: 0,
            ..ReminderConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "reminders.max_attempts must be at least 1"
        );
    }
}
