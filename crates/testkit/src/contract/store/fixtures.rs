//! Realistic changes for the store contract, built by the domain itself (`project` with the
//! default routing rules), so states and outbox messages look like the projector's.
//!
//! Ids are fresh UUIDs on every call: cases never collide, whatever else shares the store.

use chrono::{DateTime, SubsecRound, Utc};
use enrollstream_domain::envelope::new_traceparent;
use enrollstream_domain::events::{
    Applicant, ApplicationApproved, ApplicationEvent, ApplicationStarted, ApplicationSubmitted,
    Broker, QuoteCreated, QuoteEvent, SignatureReceived, Submitter,
};
use enrollstream_domain::projection::project;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::{CloudEvent, DomainEvent, Money};
use enrollstream_ports::{Change, IdempotencyRecord, StoredEvent};
use serde_json::json;
use uuid::Uuid;

const SOURCE: &str = "/enrollstream/contract";

/// Now, to the millisecond: every store keeps at least that (BSON dates keep no more), so a
/// value written is the value read back.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

pub fn application_id() -> String {
    format!("A-{}", Uuid::new_v4())
}

pub fn quote_id() -> String {
    format!("Q-{}", Uuid::new_v4())
}

fn envelope(event: DomainEvent) -> CloudEvent {
    CloudEvent::new(&event, SOURCE, now(), Some(new_traceparent()))
}

/// A broker's application from start to approval: started, submitted, signed, approved.
pub fn application_lifecycle(application_id: &str) -> Vec<CloudEvent> {
    let id = application_id.to_string();
    let app = |e| envelope(DomainEvent::Application(e));
    vec![
        app(ApplicationEvent::Started(ApplicationStarted {
            application_id: id.clone(),
            applicant: Applicant {
                name: "Jane Doe".into(),
                email: "jane.doe@example.com".into(),
            },
            product: "dental-basic".into(),
            quote_id: None,
        })),
        app(ApplicationEvent::Submitted(ApplicationSubmitted {
            application_id: id.clone(),
            submitter: Submitter::Broker {
                broker: Broker {
                    id: "B-17".into(),
                    name: "Sam Broker".into(),
                    email: "sam.broker@example.com".into(),
                },
            },
        })),
        app(ApplicationEvent::SignatureReceived(SignatureReceived {
            application_id: id.clone(),
            signed_by: "Jane Doe".into(),
            signed_at: Some(now()),
        })),
        app(ApplicationEvent::Approved(ApplicationApproved {
            application_id: id,
            approved_by: Some("underwriting".into()),
        })),
    ]
}

pub fn quote_created(quote_id: &str) -> CloudEvent {
    envelope(DomainEvent::Quote(QuoteEvent::Created(QuoteCreated {
        quote_id: quote_id.to_string(),
        customer_id: "C-42".into(),
        product: "vision-plus".into(),
        premium: Money::new(12_950, "USD"),
    })))
}

/// The change `event` makes to an entity whose last change was `previous` (`None` if new), as
/// the projector would compute it.
pub fn change(event: &CloudEvent, previous: Option<&Change>) -> Change {
    let current = previous.map(|p| (p.event.version, &p.state));
    let projection = project(event, current, &RoutingRules::default())
        .unwrap_or_else(|e| panic!("fixture event {} does not project: {e}", event.ty));
    Change {
        event: StoredEvent {
            event_id: event.id.clone(),
            entity_kind: projection.kind,
            entity_id: projection.entity_id,
            version: projection.version,
            event_type: event.ty.clone(),
            occurred_at: event.time.expect("fixture events carry a time"),
            envelope: event.clone(),
            source: Some(format!("contract-events/0/{}", projection.version - 1)),
            recorded_at: now(),
        },
        expected_version: previous.map_or(0, |p| p.event.version),
        status: projection.status,
        state: projection.state,
        outbox: projection.outbox,
        replay: false,
    }
}

/// One change per event, each chained onto the one before (one entity's history).
pub fn history(events: &[CloudEvent]) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::with_capacity(events.len());
    for event in events {
        let next = change(event, out.last());
        out.push(next);
    }
    out
}

/// The changes of a fresh application's whole lifecycle (four changes, versions 1 to 4).
pub fn application_history() -> Vec<Change> {
    history(&application_lifecycle(&application_id()))
}

/// The first change of a fresh quote.
pub fn new_quote() -> Change {
    change(&quote_created(&quote_id()), None)
}

/// What the API remembers for an `Idempotency-Key`.
pub fn idempotency_record(key: &str, fingerprint: &str) -> IdempotencyRecord {
    let event = quote_created(&quote_id());
    IdempotencyRecord {
        key: key.to_string(),
        fingerprint: fingerprint.to_string(),
        topic: "quote-events".into(),
        status: 202,
        response: json!({ "event_id": event.id, "entity_id": event.subject }),
        event,
        published: false,
        created_at: now(),
    }
}

pub fn idempotency_key() -> String {
    format!("idem-{}", Uuid::new_v4())
}

/// States no MongoDB server can keep, each in a fresh application's first two changes (the
/// second chained onto the first): a number above `i64::MAX`, JSON nested 120 levels deep, and
/// a state over 16 MiB. A store that can write them must read them back as written.
pub fn unwritable_histories() -> Vec<(&'static str, Vec<Change>)> {
    let mut deep = json!("bottom");
    for _ in 0..120 {
        deep = json!({ "nested": deep });
    }
    let cases = [
        ("a number above i64::MAX", json!(u64::MAX)),
        ("JSON nested 120 levels deep", deep),
        ("a state over 16 MiB", json!("x".repeat(17 * 1024 * 1024))),
    ];
    cases
        .into_iter()
        .map(|(what, value)| {
            let mut history = application_history();
            history.truncate(2);
            for c in &mut history {
                c.state["unwritable"] = value.clone();
            }
            (what, history)
        })
        .collect()
}
