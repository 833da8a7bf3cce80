//! The versioned event envelope: CloudEvents 1.0, structured JSON mode, plus the W3C
//! `traceparent` extension so a trace follows an event from the API to every delivery.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::events::{DomainEvent, EntityKind};
use crate::ids;
use crate::validation::{FieldError, ValidationError};

pub const SPEC_VERSION: &str = "1.0";
/// Sources of the events enrollstream builds itself (`/enrollstream/api`,
/// `/enrollstream/reminders`); `POST /v1/events` refuses them, so no caller can speak for us.
pub const OWN_SOURCE_PREFIX: &str = "/enrollstream/";
pub const JSON: &str = "application/json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CloudEvent {
    pub specversion: String,
    /// Unique per event; the key of every idempotency fence downstream.
    pub id: String,
    /// URI-reference of the producer, e.g. `/enrollstream/api`.
    pub source: String,
    /// Versioned event type, e.g. `com.enrollstream.application.submitted.v1`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The entity id (quote id or application id); also the bus partition key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// W3C trace context of the request that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
    /// Other CloudEvents extension attributes, kept and passed on untouched.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

impl CloudEvent {
    /// Wrap a domain event in a new envelope with a fresh id.
    pub fn new(
        event: &DomainEvent,
        source: &str,
        time: DateTime<Utc>,
        traceparent: Option<String>,
    ) -> Self {
        Self::with_id(ids::new_id(), event, source, time, traceparent)
    }

    /// Wrap a domain event in an envelope with a given (usually derived) id.
    pub fn with_id(
        id: String,
        event: &DomainEvent,
        source: &str,
        time: DateTime<Utc>,
        traceparent: Option<String>,
    ) -> Self {
        Self {
            specversion: SPEC_VERSION.to_string(),
            id,
            source: source.to_string(),
            ty: event.event_type().to_string(),
            subject: Some(event.entity_id().to_string()),
            time: Some(time),
            datacontenttype: Some(JSON.to_string()),
            dataschema: Some(schema_uri(event.event_type())),
            traceparent,
            data: event.data(),
            extensions: BTreeMap::new(),
        }
    }

    /// Parse a structured-mode CloudEvent, naming the field that is wrong.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, ValidationError> {
        let event: CloudEvent = ValidationError::decode("", value)?;
        event.validate_envelope()?;
        Ok(event)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, ValidationError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ValidationError::single("$", format!("malformed JSON: {e}")))?;
        Self::from_json(&value)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a CloudEvent always serialises")
    }

    /// The checks of the CloudEvents 1.0 spec that concern us (required attributes, JSON data).
    pub fn validate_envelope(&self) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        if self.specversion != SPEC_VERSION {
            errors.push(FieldError::new("specversion", "must be \"1.0\""));
        }
        if self.id.trim().is_empty() {
            errors.push(FieldError::new("id", "must not be empty"));
        }
        if self.source.trim().is_empty() {
            errors.push(FieldError::new("source", "must not be empty"));
        }
        if self.ty.trim().is_empty() {
            errors.push(FieldError::new("type", "must not be empty"));
        }
        match self.subject.as_deref() {
            Some(s) if !s.trim().is_empty() => {}
            _ => errors.push(FieldError::new(
                "subject",
                "must be the entity id (it is the partition key)",
            )),
        }
        if let Some(ct) = self.datacontenttype.as_deref() {
            if ct != JSON && !ct.starts_with("application/json;") {
                errors.push(FieldError::new(
                    "datacontenttype",
                    "only application/json data is accepted",
                ));
            }
        }
        if let Some(tp) = self.traceparent.as_deref() {
            if !is_traceparent(tp) {
                errors.push(FieldError::new(
                    "traceparent",
                    "must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)",
                ));
            }
        }
        ValidationError::check(errors)
    }

    /// The event's key in the read model and in every id derived from it: CloudEvents ids are
    /// unique per `source`, so events of different sources never share a key. Our own events
    /// keep their id (fresh UUIDs, or ids derived from our own keys); an upstream producer's
    /// event gets a UUIDv5 of its source and id, so that no caller can take the (predictable)
    /// id of an event we derive, such as `SignatureRemindersExhausted`, before we publish it.
    pub fn key(&self) -> String {
        if self.source.starts_with(OWN_SOURCE_PREFIX) {
            self.id.clone()
        } else {
            ids::derived_id(&["event", &self.source, &self.id])
        }
    }

    pub fn entity_kind(&self) -> Option<EntityKind> {
        EntityKind::of_type(&self.ty)
    }

    pub fn entity_id(&self) -> &str {
        self.subject.as_deref().unwrap_or_default()
    }

    /// `time` as RFC 3339, the form used in Kafka headers.
    pub fn time_rfc3339(&self) -> Option<String> {
        self.time
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

/// Where the JSON Schema of an event type is served by the API.
pub fn schema_uri(event_type: &str) -> String {
    format!("/v1/schemas/{event_type}")
}

fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

/// A new W3C traceparent for a request that arrived without one.
pub fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// A child traceparent: same trace, and a span id derived from the parent and the child
/// message's own (derived) id, not drawn at random: a message built again after a crash or in a
/// replay is then the same message, byte for byte. A malformed parent (validation keeps them out)
/// gets a trace derived the same way.
pub fn child_traceparent(parent: &str, child_id: &str) -> String {
    let hex = |parts: &[&str], n: usize| -> String {
        ids::derived_id(parts)
            .chars()
            .filter(|c| *c != '-')
            .take(n)
            .collect()
    };
    let span = hex(&["span", parent, child_id], 16);
    let parts: Vec<&str> = parent.split('-').collect();
    match parts.as_slice() {
        // The flags too: a trace the caller does not sample stays unsampled all the way down.
        [_, trace, _, flags] if trace.len() == 32 && flags.len() == 2 => {
            format!("00-{trace}-{span}-{flags}")
        }
        _ => format!("00-{}-{span}-01", hex(&["trace", child_id], 32)),
    }
}

/// A traceparent for a new span in `parent`'s trace (its trace id and flags, a fresh span id),
/// or the root of a new trace without one: the span of the API request that makes an event, so
/// that everything downstream hangs under it rather than beside it.
pub fn continue_trace(parent: Option<&str>) -> String {
    let fresh = new_traceparent();
    match parent.map(|p| p.split('-').collect::<Vec<_>>()) {
        Some(parts) if parts.len() == 4 && parts[1].len() == 32 => {
            format!("00-{}-{}-{}", parts[1], &fresh[36..52], parts[3])
        }
        _ => fresh,
    }
}

/// The trace id of a traceparent (its 32 hex digits) for log lines; empty when malformed.
pub fn trace_id(traceparent: &str) -> &str {
    traceparent
        .split('-')
        .nth(1)
        .filter(|t| t.len() == 32)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Applicant, ApplicationEvent, ApplicationStarted};
    use serde_json::json;

    fn started() -> DomainEvent {
        DomainEvent::Application(ApplicationEvent::Started(ApplicationStarted {
            application_id: "A-1".into(),
            applicant: Applicant {
                name: "Jane Doe".into(),
                email: "jane@example.com".into(),
            },
            product: "dental-basic".into(),
            quote_id: None,
        }))
    }

    #[test]
    fn a_continued_trace_keeps_the_trace_and_flags_with_a_new_span() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let child = continue_trace(Some(parent));
        assert!(is_traceparent(&child), "{child}");
        assert_eq!(trace_id(&child), trace_id(parent));
        assert_eq!(trace_id(parent), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(&child[36..52], &parent[36..52]);
        assert!(child.ends_with("-00"));
        let root = continue_trace(None);
        assert!(is_traceparent(&root));
        assert_ne!(trace_id(&root), trace_id(parent));
        assert_eq!(trace_id("garbage"), "");
    }

    #[test]
    fn envelope_round_trips_and_decodes() {
        let ev = CloudEvent::new(&started(), "/test", Utc::now(), Some(new_traceparent()));
        let back = CloudEvent::from_slice(&ev.to_vec()).unwrap();
        assert_eq!(back, ev);
        assert_eq!(DomainEvent::from_cloud_event(&back).unwrap(), started());
        assert_eq!(back.subject.as_deref(), Some("A-1"));
    }

    #[test]
    fn missing_required_attribute_is_named() {
        let err = CloudEvent::from_json(
            &json!({"specversion":"1.0","source":"/x","type":"t","subject":"s"}),
        )
        .unwrap_err();
        assert_eq!(err.errors[0].field, "id");
    }

    #[test]
    fn bad_data_field_is_named_with_its_path() {
        let mut ev = CloudEvent::new(&started(), "/test", Utc::now(), None);
        ev.data["applicant"]["email"] = json!(42);
        let err = DomainEvent::from_cloud_event(&ev).unwrap_err();
        assert_eq!(err.errors[0].field, "data.applicant.email");
        ev.data["applicant"]["email"] = json!("not-an-email");
        let err = DomainEvent::from_cloud_event(&ev).unwrap_err();
        assert_eq!(err.errors[0].field, "data.applicant.email");
    }

    #[test]
    fn subject_must_match_entity() {
        let mut ev = CloudEvent::new(&started(), "/test", Utc::now(), None);
        ev.subject = Some("A-2".into());
        let err = DomainEvent::from_cloud_event(&ev).unwrap_err();
        assert_eq!(err.errors[0].field, "subject");
    }

    #[test]
    fn keys_are_per_source() {
        let mut ev = CloudEvent::new(&started(), "/enrollstream/api", Utc::now(), None);
        assert_eq!(ev.key(), ev.id);
        let own = ev.key();
        ev.source = "/partner".into();
        assert_ne!(ev.key(), own);
        let partner = ev.key();
        ev.source = "/other".into();
        assert_ne!(ev.key(), partner);
    }

    #[test]
    fn extensions_survive() {
        let mut v =
            serde_json::to_value(CloudEvent::new(&started(), "/t", Utc::now(), None)).unwrap();
        v["partnerid"] = json!("p-9");
        let ev = CloudEvent::from_json(&v).unwrap();
        assert_eq!(ev.extensions["partnerid"], json!("p-9"));
        assert_eq!(
            serde_json::to_value(&ev).unwrap()["partnerid"],
            json!("p-9")
        );
    }

    #[test]
    fn traceparent_children_keep_the_trace_with_a_span_of_their_own() {
        let p = new_traceparent();
        assert!(is_traceparent(&p));
        let c = child_traceparent(&p, "message-1");
        assert!(is_traceparent(&c));
        assert_eq!(p.split('-').nth(1), c.split('-').nth(1));
        assert_ne!(p.split('-').nth(2), c.split('-').nth(2));
        // The same child of the same parent, every time; another child, another span.
        assert_eq!(c, child_traceparent(&p, "message-1"));
        assert_ne!(c, child_traceparent(&p, "message-2"));
        let orphan = child_traceparent("garbage", "message-1");
        assert!(is_traceparent(&orphan));
        assert_eq!(orphan, child_traceparent("garbage", "message-1"));
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(child_traceparent(unsampled, "message-1").ends_with("-00"));
    }
}
