//! CloudEvents Kafka protocol binding, binary mode: attributes travel as `ce_*` headers and the
//! message value is the JSON `data`. Every bus adapter uses this codec, so a message looks the
//! same on the embedded bus and on Kafka, and any Kafka client can produce or read our events.
//! Structured mode (`content-type: application/cloudevents+json`) is accepted on input.

use enrollstream_domain::envelope::{CloudEvent, JSON};
use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::ValidationError;

use crate::bus::{Header, InboundMessage, OutboundMessage};

pub const CONTENT_TYPE: &str = "content-type";
pub const TRACEPARENT: &str = "traceparent";
pub const STRUCTURED: &str = "application/cloudevents+json";

pub fn encode(event: &CloudEvent) -> OutboundMessage {
    let mut headers: Vec<Header> = vec![
        ("ce_specversion".into(), event.specversion.clone()),
        ("ce_id".into(), event.id.clone()),
        ("ce_source".into(), event.source.clone()),
        ("ce_type".into(), event.ty.clone()),
    ];
    if let Some(s) = &event.subject {
        headers.push(("ce_subject".into(), s.clone()));
    }
    if let Some(t) = event.time_rfc3339() {
        headers.push(("ce_time".into(), t));
    }
    if let Some(s) = &event.dataschema {
        headers.push(("ce_dataschema".into(), s.clone()));
    }
    headers.push((
        CONTENT_TYPE.into(),
        event
            .datacontenttype
            .clone()
            .unwrap_or_else(|| JSON.to_string()),
    ));
    if let Some(tp) = &event.traceparent {
        headers.push((TRACEPARENT.into(), tp.clone()));
    }
    for (k, v) in &event.extensions {
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        headers.push((format!("ce_{k}"), value));
    }
    OutboundMessage {
        key: event.entity_id().to_string(),
        headers,
        payload: serde_json::to_vec(&event.data).expect("JSON value serialises"),
    }
}

/// An outbox message as it goes on the bus: its event encoded, keyed as recorded.
pub fn encode_outbox(message: &OutboxMessage) -> OutboundMessage {
    let mut encoded = encode(&message.event);
    encoded.key.clone_from(&message.key);
    encoded
}

/// Decode a bus message into a CloudEvent, naming what is missing or malformed.
pub fn decode(message: &InboundMessage) -> Result<CloudEvent, ValidationError> {
    let content_type = message.header(CONTENT_TYPE).unwrap_or(JSON);
    if content_type.starts_with(STRUCTURED) {
        return CloudEvent::from_slice(&message.payload);
    }
    let attr = |name: &str| message.header(&format!("ce_{name}")).map(str::to_string);
    let require = |name: &str| {
        attr(name).ok_or_else(|| ValidationError::single(format!("ce_{name}"), "header is missing"))
    };
    let data: serde_json::Value = if message.payload.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&message.payload)
            .map_err(|e| ValidationError::single("data", format!("malformed JSON: {e}")))?
    };
    let time = match attr("time") {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| ValidationError::single("ce_time", format!("not RFC 3339: {e}")))?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let known = [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "dataschema",
    ];
    let extensions = message
        .headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("ce_")?;
            (!known.contains(&name))
                .then(|| (name.to_string(), serde_json::Value::String(v.clone())))
        })
        .collect();
    let event = CloudEvent {
        specversion: require("specversion")?,
        id: require("id")?,
        source: require("source")?,
        ty: require("type")?,
        subject: attr("subject"),
        time,
        datacontenttype: Some(content_type.to_string()),
        dataschema: attr("dataschema"),
        traceparent: message.header(TRACEPARENT).map(str::to_string),
        data,
        extensions,
    };
    event.validate_envelope()?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use enrollstream_domain::events::*;
    use enrollstream_domain::DomainEvent;

    fn inbound(out: OutboundMessage) -> InboundMessage {
        InboundMessage {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: Some(out.key),
            headers: out.headers,
            payload: out.payload,
            timestamp_ms: None,
        }
    }

    #[test]
    fn binary_mode_round_trips() {
        let e = DomainEvent::Quote(QuoteEvent::Requested(QuoteRequested {
            quote_id: "Q".into(),
            customer_id: "C".into(),
            product: "p".into(),
        }));
        let mut ce = CloudEvent::new(
            &e,
            "/api",
            Utc::now(),
            Some(enrollstream_domain::envelope::new_traceparent()),
        );
        ce.extensions.insert("routingtargets".into(), "a,b".into());
        let out = encode(&ce);
        assert_eq!(out.key, "Q");
        assert!(out
            .headers
            .iter()
            .any(|(k, v)| k == "ce_routingtargets" && v == "a,b"));
        let back = decode(&inbound(out)).unwrap();
        assert_eq!(back.id, ce.id);
        assert_eq!(back.data, ce.data);
        assert_eq!(back.extensions, ce.extensions);
        assert_eq!(back.traceparent, ce.traceparent);
        // Micro-second precision in the header is what survives.
        assert_eq!(back.time_rfc3339(), ce.time_rfc3339());
    }

    #[test]
    fn missing_header_is_named() {
        let mut msg = inbound(OutboundMessage {
            key: "k".into(),
            headers: vec![],
            payload: b"{}".to_vec(),
        });
        let err = decode(&msg).unwrap_err();
        assert_eq!(err.errors[0].field, "ce_specversion");
        msg.headers = vec![("content-type".into(), STRUCTURED.into())];
        msg.payload = b"{not json".to_vec();
        assert!(decode(&msg).is_err());
    }
}
