//! Notifications made the way production makes them: business events folded by the domain's
//! projection, whose outbox messages are encoded with the bus codec.

use chrono::{DateTime, Utc};
use enrollstream_domain::events::{
    Applicant, ApplicationApproved, ApplicationEvent, ApplicationStarted, ApplicationSubmitted,
    Broker, QuoteCreated, QuoteEvent, QuoteUpdated, SignatureReceived, Submitter,
};
use enrollstream_domain::ids::derived_id;
use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::projection::project;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::{CloudEvent, DomainEvent, Money};
use enrollstream_ports::codec;
use enrollstream_ports::OutboundMessage;
use std::collections::HashMap;

fn envelope(entity: &str, index: usize, event: DomainEvent, at: DateTime<Utc>) -> CloudEvent {
    let id = derived_id(&["fixture", entity, &index.to_string()]);
    CloudEvent::with_id(
        id,
        &event,
        "/tests",
        at + chrono::Duration::seconds(index as i64),
        Some(enrollstream_domain::envelope::new_traceparent()),
    )
}

/// An application a broker submits, the member signs, and underwriting approves: four events,
/// each notifying Logic Apps and Salesforce, the first three the Lead Management system too.
pub fn application_journey(application_id: &str, at: DateTime<Utc>) -> Vec<CloudEvent> {
    let id = application_id.to_string();
    let events = [
        ApplicationEvent::Started(ApplicationStarted {
            application_id: id.clone(),
            applicant: Applicant {
                name: "Jane Doe".into(),
                email: "jane@example.com".into(),
            },
            product: "dental-basic".into(),
            quote_id: None,
        }),
        ApplicationEvent::Submitted(ApplicationSubmitted {
            application_id: id.clone(),
            submitter: Submitter::Broker {
                broker: Broker {
                    id: "B-7".into(),
                    name: "Bob Broker".into(),
                    email: "bob@brokers.example".into(),
                },
            },
        }),
        ApplicationEvent::SignatureReceived(SignatureReceived {
            application_id: id.clone(),
            signed_by: "Jane Doe".into(),
            signed_at: None,
        }),
        ApplicationEvent::Approved(ApplicationApproved {
            application_id: id.clone(),
            approved_by: Some("underwriting".into()),
        }),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| envelope(&id, i, DomainEvent::Application(e), at))
        .collect()
}

/// A quote created and then repriced `updates` times: `updates + 1` events of one key.
pub fn quote_journey(quote_id: &str, updates: usize, at: DateTime<Utc>) -> Vec<CloudEvent> {
    let id = quote_id.to_string();
    let mut events = vec![QuoteEvent::Created(QuoteCreated {
        quote_id: id.clone(),
        customer_id: "C-1".into(),
        product: "dental-basic".into(),
        premium: Money::new(10_000, "EUR"),
    })];
    events.extend((1..=updates).map(|n| {
        QuoteEvent::Updated(QuoteUpdated {
            quote_id: id.clone(),
            premium: Some(Money::new(10_000 + n as i64, "EUR")),
            product: None,
        })
    }));
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| envelope(&id, i, DomainEvent::Quote(e), at))
        .collect()
}

/// The outbox messages the projection records for `events` (folded in order per entity).
pub fn outbox_of(events: &[CloudEvent], rules: &RoutingRules) -> Vec<OutboxMessage> {
    let mut state: HashMap<String, (u64, serde_json::Value)> = HashMap::new();
    let mut out = Vec::new();
    for event in events {
        let key = event.entity_id().to_string();
        let current = state.get(&key).map(|(v, s)| (*v, s));
        let projection = project(event, current, rules)
            .unwrap_or_else(|e| panic!("fixture event {} does not project: {e}", event.ty));
        out.extend(projection.outbox);
        state.insert(key, (projection.version, projection.state));
    }
    out
}

/// The bus messages of the outbox messages published to `topic`, as the relay publishes them.
pub fn messages_for(outbox: &[OutboxMessage], topic: &str) -> Vec<OutboundMessage> {
    outbox
        .iter()
        .filter(|m| m.topic == topic)
        .map(|m| {
            let mut message = codec::encode(&m.event);
            message.key = m.key.clone();
            message
        })
        .collect()
}
