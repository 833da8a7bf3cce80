//! Bounds on every business event the system accepts, checked where an event enters: by the API
//! (commands and `POST /v1/events`) and by the projector (events put on the bus by others).
//!
//! They keep one input from stopping the pipeline later: a string that would push a notification
//! past the broker's message size, JSON too deep or a number too large for the store's encoding,
//! a control character in a value that becomes a header (Kafka, then HTTP), a time that no
//! consumer can read back. Each refusal names the field, like every other validation error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

use crate::envelope::CloudEvent;
use crate::events::{ApplicationEvent, DomainEvent, QuoteEvent, Submitter};
use crate::validation::FieldError;

/// The bounds; every one can be set under `[limits]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest id: the subject (entity id), `data.*_id`, the broker's id, the event id.
    /// Ids are 1 to this many of `A-Z a-z 0-9 - _ :` (safe as a header value and a key).
    pub max_id_len: usize,
    /// Longest free text: names, products, reasons, who signed or approved.
    pub max_text_len: usize,
    /// Longest email address (RFC 5321 allows 254).
    pub max_email_len: usize,
    /// Longest string anywhere else in an event: fields of `data` this version does not know,
    /// extension attribute values, `source`.
    pub max_string_len: usize,
    /// Deepest nesting of objects and arrays in `data` (the event itself is one level).
    pub max_depth: usize,
    /// Most members of one object or items of one array in `data`.
    pub max_items: usize,
    /// Most CloudEvents extension attributes on one event.
    pub max_extensions: usize,
    /// Largest event, as compact JSON.
    pub max_event_bytes: usize,
    /// Largest premium, in minor units.
    pub max_amount_minor: i64,
    /// Oldest accepted event `time` (and `signed_at`), counted back from now.
    #[serde(with = "humantime_serde")]
    pub max_event_age: Duration,
    /// Furthest accepted event `time` ahead of our clock (the producer's clock skew).
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_len: 128,
            max_text_len: 1024,
            max_email_len: 254,
            max_string_len: 4096,
            max_depth: 8,
            max_items: 100,
            max_extensions: 16,
            max_event_bytes: 64 * 1024,
            max_amount_minor: 1_000_000_000_000_000,
            max_event_age: Duration::from_secs(20 * 366 * 24 * 3600),
            max_clock_skew: Duration::from_secs(15 * 60),
        }
    }
}

impl Limits {
    /// Bounds that can never work (a zero length refuses everything) are configuration errors.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                (16..=1024).contains(&self.max_id_len),
                "limits.max_id_len must be between 16 and 1024",
            ),
            (
                self.max_text_len >= 1,
                "limits.max_text_len must be at least 1",
            ),
            (
                (6..=1024).contains(&self.max_email_len),
                "limits.max_email_len must be between 6 and 1024",
            ),
            (
                self.max_string_len >= 64,
                "limits.max_string_len must be at least 64",
            ),
            (
                (1..=64).contains(&self.max_depth),
                "limits.max_depth must be between 1 and 64",
            ),
            (self.max_items >= 1, "limits.max_items must be at least 1"),
            (
                self.max_event_bytes >= 1024,
                "limits.max_event_bytes must be at least 1024",
            ),
            (
                self.max_amount_minor >= 1,
                "limits.max_amount_minor must be at least 1",
            ),
            (
                !self.max_event_age.is_zero(),
                "limits.max_event_age must be more than zero",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(why.to_string()),
            None => Ok(()),
        }
    }

    /// Everything about an event that does not depend on the time of day: envelope attributes,
    /// the shape of `data`, and the known fields of the decoded event (its size is
    /// `check_size`'s, measured where the bytes are at hand).
    pub fn check(&self, event: &CloudEvent, decoded: &DomainEvent) -> Vec<FieldError> {
        let mut errors = Vec::new();
        self.envelope(event, &mut errors);
        self.json(&event.data, "data", 1, &mut errors);
        self.fields(decoded, &mut errors);
        errors
    }

    /// The event's times are within the window around `now`: never years no consumer can read
    /// back, never a time that would make the record lie about when the fact happened.
    pub fn check_times(
        &self,
        event: &CloudEvent,
        decoded: &DomainEvent,
        now: DateTime<Utc>,
    ) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(time) = event.time {
            self.time(time, "time", now, &mut errors);
        }
        if let DomainEvent::Application(ApplicationEvent::SignatureReceived(e)) = decoded {
            if let Some(at) = e.signed_at {
                self.time(at, "data.signed_at", now, &mut errors);
            }
        }
        errors
    }

    fn time(
        &self,
        at: DateTime<Utc>,
        field: &str,
        now: DateTime<Utc>,
        errors: &mut Vec<FieldError>,
    ) {
        let age = chrono::Duration::from_std(self.max_event_age).unwrap_or(chrono::Duration::MAX);
        let skew = chrono::Duration::from_std(self.max_clock_skew).unwrap_or(chrono::Duration::MAX);
        let earliest = now
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let latest = now
            .checked_add_signed(skew)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if at < earliest || at > latest {
            errors.push(FieldError::new(
                field,
                format!(
                    "must be between {} and {} (at most {} old and {} ahead of our clock)",
                    earliest.format("%Y-%m-%dT%H:%M:%SZ"),
                    latest.format("%Y-%m-%dT%H:%M:%SZ"),
                    humantime_serde::re::humantime::format_duration(self.max_event_age),
                    humantime_serde::re::humantime::format_duration(self.max_clock_skew),
                ),
            ));
        }
    }

    fn envelope(&self, event: &CloudEvent, errors: &mut Vec<FieldError>) {
        self.id(&event.id, "id", errors);
        if let Some(subject) = &event.subject {
            self.id(subject, "subject", errors);
        }
        header_safe(
            &event.source,
            "source",
            self.max_string_len.min(1024),
            errors,
        );
        header_safe(&event.ty, "type", 256, errors);
        if let Some(schema) = &event.dataschema {
            header_safe(schema, "dataschema", 1024, errors);
        }
        if event.extensions.len() > self.max_extensions {
            errors.push(FieldError::new(
                "$",
                format!("at most {} extension attributes", self.max_extensions),
            ));
        }
        for (name, value) in &event.extensions {
            // CloudEvents 1.0: lower-case letters and digits; they become `ce_<name>` headers.
            let ok_name = !name.is_empty()
                && name.len() <= 20
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !ok_name {
                errors.push(FieldError::new(
                    name.clone(),
                    "an extension attribute name is 1 to 20 lower-case letters or digits",
                ));
                continue;
            }
            match value {
                Value::String(s) => header_safe(s, name, self.max_string_len, errors),
                Value::Bool(_) => {}
                Value::Number(n) if n.is_i64() => {}
                _ => errors.push(FieldError::new(
                    name.clone(),
                    "an extension attribute is a string, a boolean or an integer",
                )),
            }
        }
    }

    /// The shape of arbitrary JSON: depth, sizes, and numbers every store can keep exactly.
    fn json(&self, value: &Value, path: &str, depth: usize, errors: &mut Vec<FieldError>) {
        if errors.len() >= 10 {
            return;
        }
        match value {
            Value::String(s) if s.chars().count() > self.max_string_len => errors.push(
                FieldError::new(path, format!("at most {} characters", self.max_string_len)),
            ),
            Value::Number(n) if !(n.is_i64() || n.is_f64()) => errors.push(FieldError::new(
                path,
                "integers must lie between -9223372036854775808 and 9223372036854775807",
            )),
            Value::Array(_) | Value::Object(_) if depth > self.max_depth => {
                errors.push(FieldError::new(
                    path,
                    format!("nested deeper than {} levels", self.max_depth),
                ))
            }
            Value::Array(items) => {
                if items.len() > self.max_items {
                    errors.push(FieldError::new(
                        path,
                        format!("at most {} items", self.max_items),
                    ));
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    self.json(item, &format!("{path}[{i}]"), depth + 1, errors);
                }
            }
            Value::Object(members) => {
                if members.len() > self.max_items {
                    errors.push(FieldError::new(
                        path,
                        format!("at most {} members", self.max_items),
                    ));
                    return;
                }
                for (key, member) in members {
                    if key.chars().count() > self.max_id_len || key.chars().any(char::is_control) {
                        errors.push(FieldError::new(
                            path,
                            format!("member names are at most {} characters, without control characters", self.max_id_len),
                        ));
                        continue;
                    }
                    self.json(member, &format!("{path}.{key}"), depth + 1, errors);
                }
            }
            _ => {}
        }
    }

    fn fields(&self, decoded: &DomainEvent, errors: &mut Vec<FieldError>) {
        use ApplicationEvent as A;
        use QuoteEvent as Q;
        let id_field = match decoded {
            DomainEvent::Quote(_) => "data.quote_id",
            DomainEvent::Application(_) => "data.application_id",
        };
        self.id(decoded.entity_id(), id_field, errors);
        let text = |value: &str, field: &str, errors: &mut Vec<FieldError>| {
            self.text(value, field, errors)
        };
        match decoded {
            DomainEvent::Quote(Q::Requested(e)) => {
                self.id(&e.customer_id, "data.customer_id", errors);
                text(&e.product, "data.product", errors);
            }
            DomainEvent::Quote(Q::Created(e)) => {
                self.id(&e.customer_id, "data.customer_id", errors);
                text(&e.product, "data.product", errors);
                self.amount(e.premium.amount_minor, errors);
            }
            DomainEvent::Quote(Q::Updated(e)) => {
                if let Some(p) = &e.product {
                    text(p, "data.product", errors);
                }
                if let Some(p) = &e.premium {
                    self.amount(p.amount_minor, errors);
                }
            }
            DomainEvent::Application(A::Started(e)) => {
                text(&e.applicant.name, "data.applicant.name", errors);
                self.email(&e.applicant.email, "data.applicant.email", errors);
                text(&e.product, "data.product", errors);
                if let Some(q) = &e.quote_id {
                    self.id(q, "data.quote_id", errors);
                }
            }
            DomainEvent::Application(A::Submitted(e)) => {
                if let Submitter::Broker { broker } = &e.submitter {
                    self.id(&broker.id, "data.broker.id", errors);
                    text(&broker.name, "data.broker.name", errors);
                    self.email(&broker.email, "data.broker.email", errors);
                }
            }
            DomainEvent::Application(A::SignatureReceived(e)) => {
                text(&e.signed_by, "data.signed_by", errors)
            }
            DomainEvent::Application(A::Approved(e)) => {
                if let Some(by) = &e.approved_by {
                    text(by, "data.approved_by", errors);
                }
            }
            DomainEvent::Application(A::Declined(e)) => text(&e.reason, "data.reason", errors),
            DomainEvent::Application(A::Withdrawn(e)) => {
                if let Some(r) = &e.reason {
                    text(r, "data.reason", errors);
                }
            }
            DomainEvent::Application(A::RemindersExhausted(e)) => {
                self.email(&e.broker_email, "data.broker_email", errors)
            }
        }
    }

    /// Whether `value` is an id: 1 to `max_id_len` of `A-Z a-z 0-9 - _ :`.
    pub fn is_id(&self, value: &str) -> bool {
        !value.is_empty()
            && value.len() <= self.max_id_len
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'))
    }

    /// What an id must be, as a refusal says it.
    pub fn id_rule(&self) -> String {
        format!(
            "an id is 1 to {} characters of A-Z, a-z, 0-9, '-', '_' and ':'",
            self.max_id_len
        )
    }

    /// The size of an event as JSON, against `max_event_bytes`.
    pub fn check_size(&self, bytes: usize, errors: &mut Vec<FieldError>) {
        if bytes > self.max_event_bytes {
            errors.push(FieldError::new(
                "$",
                format!(
                    "the event is {bytes} bytes as JSON, more than the limit of {}",
                    self.max_event_bytes
                ),
            ));
        }
    }

    fn id(&self, value: &str, field: &str, errors: &mut Vec<FieldError>) {
        if value.is_empty() {
            return; // named by the schema check ("must not be empty")
        }
        if !self.is_id(value) {
            errors.push(FieldError::new(field, self.id_rule()));
        }
    }

    fn text(&self, value: &str, field: &str, errors: &mut Vec<FieldError>) {
        if value.chars().count() > self.max_text_len {
            errors.push(FieldError::new(
                field,
                format!("at most {} characters", self.max_text_len),
            ));
        } else if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            errors.push(FieldError::new(
                field,
                "must not contain control characters (other than tab and newline)",
            ));
        }
    }

    fn email(&self, value: &str, field: &str, errors: &mut Vec<FieldError>) {
        if value.len() > self.max_email_len || value.chars().any(char::is_control) {
            errors.push(FieldError::new(
                field,
                format!(
                    "an email address is at most {} characters, without control characters",
                    self.max_email_len
                ),
            ));
        }
    }

    fn amount(&self, amount: i64, errors: &mut Vec<FieldError>) {
        if amount > self.max_amount_minor {
            errors.push(FieldError::new(
                "data.premium.amount_minor",
                format!("at most {}", self.max_amount_minor),
            ));
        }
    }
}

/// A value that becomes a header on the bus and toward targets: visible ASCII and spaces only
/// (an HTTP client refuses control characters in a header value, and would never send it).
fn header_safe(value: &str, field: &str, max: usize, errors: &mut Vec<FieldError>) {
    if value.len() > max {
        errors.push(FieldError::new(field, format!("at most {max} characters")));
    } else if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        errors.push(FieldError::new(
            field,
            "must be printable ASCII: it becomes a header value",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Applicant, ApplicationStarted};
    use serde_json::json;

    fn started(name: &str) -> (CloudEvent, DomainEvent) {
        let decoded = DomainEvent::Application(ApplicationEvent::Started(ApplicationStarted {
            application_id: "A-1".into(),
            applicant: Applicant {
                name: name.into(),
                email: "j@x.io".into(),
            },
            product: "p".into(),
            quote_id: None,
        }));
        let event = CloudEvent::new(&decoded, "/t", Utc::now(), None);
        (event, decoded)
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_plain_event_passes() {
        let (event, decoded) = started("Jane");
        let limits = Limits::default();
        assert!(limits.check(&event, &decoded).is_empty());
        assert!(limits.check_times(&event, &decoded, Utc::now()).is_empty());
        assert!(limits.validate().is_ok());
    }

    #[test]
    fn each_bound_names_its_field() {
        let limits = Limits::default();
        let (event, decoded) = started(&"x".repeat(2000));
        assert_eq!(
            fields(limits.check(&event, &decoded)),
            ["data.applicant.name"]
        );

        let (mut event, decoded) = started("J");
        event.subject = Some("A-1\r\nX-Evil: 1".into());
        event.data["deep"] = json!([[[[[[[[[1]]]]]]]]]);
        event.data["huge"] = json!(u64::MAX);
        event
            .extensions
            .insert("partnerid".into(), json!({"nested": true}));
        event.extensions.insert("Bad_Name".into(), json!("x"));
        let got = fields(limits.check(&event, &decoded));
        for field in [
            "subject",
            "data.deep[0][0][0][0][0][0][0]",
            "data.huge",
            "partnerid",
            "Bad_Name",
        ] {
            assert!(got.contains(&field.to_string()), "{field} not in {got:?}");
        }
    }

    #[test]
    fn times_outside_the_window_are_refused() {
        let limits = Limits::default();
        let (mut event, decoded) = started("J");
        let now = Utc::now();
        event.time = Some("+10000-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(fields(limits.check_times(&event, &decoded, now)), ["time"]);
        event.time = Some(now + chrono::Duration::hours(1));
        assert_eq!(fields(limits.check_times(&event, &decoded, now)), ["time"]);
        event.time = Some(now + chrono::Duration::minutes(1));
        assert!(limits.check_times(&event, &decoded, now).is_empty());
    }

    #[test]
    fn a_large_event_is_refused_as_a_whole() {
        let limits = Limits {
            max_event_bytes: 1024,
            ..Limits::default()
        };
        let (mut event, decoded) = started("J");
        for i in 0..10 {
            event.data[format!("note{i}")] = json!("y".repeat(200));
        }
        assert!(limits.check(&event, &decoded).is_empty());
        let mut errors = Vec::new();
        limits.check_size(event.to_vec().len(), &mut errors);
        assert_eq!(fields(errors), ["$"]);
    }
}
