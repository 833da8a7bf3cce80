//! Text forms of values in columns: timestamps and JSON.

use chrono::{DateTime, SecondsFormat, Utc};

use super::failure::{Failure, Result};

/// RFC 3339 with nanoseconds and `Z`: fixed width, so text order is time order (the idempotency
/// purge and the reminders' due index compare these strings), and exact, so a timestamp reads
/// back equal.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(crate) fn parse_time(column: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Failure::Corrupt(format!("{column} {s:?} is not a timestamp: {e}")))
}

pub(crate) fn json<T: serde::Serialize>(column: &str, v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| Failure::Corrupt(format!("{column} cannot be encoded: {e}")))
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Failure::Corrupt(format!("{column} is not valid: {e}")))
}
