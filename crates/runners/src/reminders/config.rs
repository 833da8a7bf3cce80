//! Settings of the reminder roles. Durations are written the human way ("24h", "30s"), so a
//! staging system can run a whole reminder cycle in seconds (`interval = "2s"`).

use enrollstream_domain::reminder::ReminderPolicy;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ReminderFile")]
pub struct ReminderConfig {
    /// Time between two reminders, and between the last one and the exhaustion.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
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

/// The section as written: `interval_hours` is the older spelling of `interval`, still read.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ReminderFile {
    #[serde(with = "humantime_serde")]
    interval: Duration,
    interval_hours: Option<u32>,
    max_attempts: u32,
    #[serde(with = "humantime_serde")]
    tick: Duration,
    #[serde(with = "humantime_serde")]
    lease: Duration,
    batch: usize,
    source: String,
}

impl Default for ReminderFile {
    fn default() -> Self {
        let d = ReminderConfig::default();
        Self {
            interval: d.interval,
            interval_hours: None,
            max_attempts: d.max_attempts,
            tick: d.tick,
            lease: d.lease,
            batch: d.batch,
            source: d.source,
        }
    }
}

impl TryFrom<ReminderFile> for ReminderConfig {
    type Error = String;

    fn try_from(f: ReminderFile) -> Result<Self, String> {
        // The defaults are merged under the file, so `interval` is always present: only an
        // interval other than the default says both spellings were given.
        let interval = match f.interval_hours {
            Some(hours) if f.interval != ReminderConfig::default().interval => {
                return Err(format!(
                    "reminders: give interval ({:?}) or the older interval_hours ({hours}), not both",
                    f.interval
                ))
            }
            Some(hours) => Duration::from_secs(u64::from(hours) * 3600),
            None => f.interval,
        };
        Ok(Self {
            interval,
            max_attempts: f.max_attempts,
            tick: f.tick,
            lease: f.lease,
            batch: f.batch,
            source: f.source,
        })
    }
}

impl Default for ReminderConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(24 * 3600),
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
            interval: chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::MAX),
            max_attempts: self.max_attempts,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.interval >= Duration::from_secs(1),
                "reminders.interval must be at least 1s",
            ),
            (
                self.interval <= Duration::from_secs(366 * 24 * 3600),
                "reminders.interval must be at most a year",
            ),
            (
                (1..=100).contains(&self.max_attempts),
                "reminders.max_attempts must be between 1 and 100",
            ),
            (
                !self.tick.is_zero(),
                "reminders.tick must be more than zero",
            ),
            (
                self.lease >= Duration::from_secs(2),
                "reminders.lease must be at least 2s",
            ),
            (
                (1..=10_000).contains(&self.batch),
                "reminders.batch must be between 1 and 10000",
            ),
            (
                self.source.starts_with(enrollstream_domain::envelope::OWN_SOURCE_PREFIX),
                "reminders.source must start with /enrollstream/: POST /v1/events refuses those sources, so no caller can pre-empt the exhaustion events' derived ids",
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
        assert_eq!(c.interval, Duration::from_secs(24 * 3600));
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
            "reminders.max_attempts must be between 1 and 100"
        );
    }

    #[test]
    fn interval_is_a_duration_and_interval_hours_is_still_read() {
        let c: ReminderConfig = serde_json::from_str(r#"{"interval":"2s"}"#).unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        assert!(c.validate().is_ok());
        let c: ReminderConfig = serde_json::from_str(r#"{"interval_hours":2}"#).unwrap();
        assert_eq!(c.interval, Duration::from_secs(7200));
        let both =
            serde_json::from_str::<ReminderConfig>(r#"{"interval":"2s","interval_hours":2}"#);
        assert!(both.unwrap_err().to_string().contains("not both"));
        let typo = serde_json::from_str::<ReminderConfig>(r#"{"intervl_hours":2}"#);
        assert!(typo.unwrap_err().to_string().contains("intervl_hours"));
        // What `enrollstream config` prints reads back as the same settings.
        let printed = serde_json::to_string(&ReminderConfig::default()).unwrap();
        assert_eq!(
            serde_json::from_str::<ReminderConfig>(&printed).unwrap(),
            ReminderConfig::default()
        );
    }
}
