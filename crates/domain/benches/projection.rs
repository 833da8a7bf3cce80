//! The projector's pure step per event: decode the event, fold it onto the entity's state and
//! build the messages it announces (`domain::projection::project`). No I/O, one thread, so the
//! figure is steadier than the pipeline's on a noisy machine: use it to compare changes to the
//! fold and to the notifications.
//!
//! `cargo bench -p enrollstream-domain --bench projection` (env: BENCH_EVENTS, BENCH_ROUNDS).
//! Prints the best round's nanoseconds per event for new quotes and for application journeys.

use chrono::{DateTime, Utc};
use enrollstream_domain::events::{
    Applicant, ApplicationEvent, ApplicationStarted, ApplicationSubmitted, Broker, QuoteCreated,
    QuoteEvent, SignatureReceived, Submitter,
};
use enrollstream_domain::projection::project;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::{CloudEvent, DomainEvent, Money};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn at() -> DateTime<Utc> {
    "2026-05-04T08:00:00Z".parse().unwrap()
}

fn envelope(event: DomainEvent) -> CloudEvent {
    CloudEvent::new(
        &event,
        "/enrollstream/api",
        at(),
        Some(enrollstream_domain::envelope::new_traceparent()),
    )
}

fn quote(i: usize) -> CloudEvent {
    envelope(DomainEvent::Quote(QuoteEvent::Created(QuoteCreated {
        quote_id: format!("Q-{i}"),
        customer_id: format!("C-{i}"),
        product: "dental-basic".into(),
        premium: Money::new(5_000 + i as i64, "USD"),
    })))
}

/// Started, submitted by a broker, signed: three events on one application.
fn application(i: usize) -> Vec<CloudEvent> {
    let id = format!("A-{i}");
    [
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
                    name: "Acme Brokers".into(),
                    email: "agent@acme.test".into(),
                },
            },
        }),
        ApplicationEvent::SignatureReceived(SignatureReceived {
            application_id: id,
            signed_by: "Jane Doe".into(),
            signed_at: None,
        }),
    ]
    .into_iter()
    .map(|e| envelope(DomainEvent::Application(e)))
    .collect()
}

/// Best round, in nanoseconds per event.
fn best(rounds: usize, events: usize, mut round: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        round();
        best = best.min(started.elapsed());
    }
    best.as_nanos() as f64 / events as f64
}

fn main() {
    let n = env_or("BENCH_EVENTS", 20_000);
    let rounds = env_or("BENCH_ROUNDS", 7);
    let rules = RoutingRules::default();

    let quotes: Vec<CloudEvent> = (0..n).map(quote).collect();
    let per_quote = best(rounds, n, || {
        for event in &quotes {
            black_box(project(event, None, &rules).expect("projects"));
        }
    });

    let journeys: Vec<Vec<CloudEvent>> = (0..n / 3).map(application).collect();
    let per_step = best(rounds, journeys.len() * 3, || {
        for journey in &journeys {
            let mut state: Option<(u64, serde_json::Value)> = None;
            for event in journey {
                let p =
                    project(event, state.as_ref().map(|(v, s)| (*v, s)), &rules).expect("projects");
                state = Some((p.version, p.state));
                black_box(p.outbox);
            }
        }
    });

    println!("project, new quotes: {per_quote:.0} ns/event (best of {rounds} rounds of {n})");
    println!("project, application journeys (started, submitted, signed): {per_step:.0} ns/event");
}
