//! The lead integration over the embedded bus: the lead producer turns the configured
//! notifications into lead messages on `lead-integration-events`, and the lead integration
//! service pushes them to a Lead Management API on 127.0.0.1, once each, in order per
//! application, through faults and redeliveries.

use crate::deliveries_support;

use deliveries_support::*;
use enrollstream_domain::events::{APPLICATION_SUBMITTED, SIGNATURE_RECEIVED};
use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::routing::{RoutingRules, LEAD_MANAGEMENT};
use enrollstream_ports::{HealthRegistry, InboundMessage};
use enrollstream_runners::consumer::BatchHandler;
use enrollstream_runners::leads::{
    lead_message_id, run_integration, run_producer, LeadProducer, LeadProducerSettings, LEAD,
};
use enrollstream_targets::{LeadManagementConfig, LeadManagementTarget, Secret};
use enrollstream_testkit::targets::fixtures::{application_journey, quote_journey};
use enrollstream_testkit::targets::{Fake, Fault, FaultRule, LeadManagement};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const LEADS: &str = "lead-integration-events";

fn events() -> Vec<enrollstream_domain::CloudEvent> {
    let mut events = Vec::new();
    for i in 0..4 {
        events.extend(application_journey(&format!("A-{i}"), start_time()));
        events.extend(quote_journey(&format!("Q-{i}"), 2, start_time()));
    }
    events
}

/// The notifications that make leads: routed to lead management, of the wanted types.
fn leads_of<'a>(outbox: &'a [OutboxMessage], types: &[&str]) -> Vec<&'a OutboxMessage> {
    routed_to(outbox, LEAD_MANAGEMENT)
        .into_iter()
        .filter(|m| {
            m.event.data["event_type"]
                .as_str()
                .is_some_and(|t| types.contains(&t))
        })
        .collect()
}

struct Leads {
    fake: Fake<LeadManagement>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Leads {
    async fn start(bed: &Bed, producer: LeadProducerSettings) -> Self {
        let fake = Fake::lead_management("lead-api-key").await;
        let mut config = LeadManagementConfig::new(fake.endpoint());
        config.api_key = Some(Secret::new("lead-api-key"));
        config.http = quick_http();
        let target = LeadManagementTarget::new(&config, Arc::new(enrollstream_ports::SystemClock))
            .expect("lead target");
        let shutdown = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(run_producer(
                bed.dyn_bus(),
                producer,
                ".dlq".to_string(),
                bed.health.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(run_integration(
                bed.dyn_bus(),
                Arc::new(target),
                settings(),
                LEADS,
                Arc::new(bed.clock.clone()),
                bed.health.clone(),
                shutdown.clone(),
                None,
            )),
        ];
        Self {
            fake,
            shutdown,
            tasks,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            t.await.expect("clean stop");
        }
    }
}

fn lead_ids(messages: &[InboundMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.header("ce_id").unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_become_leads_at_the_lead_api_once_each() {
    let bed = Bed::new(2);
    let outbox = bed.publish(&events(), &RoutingRules::default()).await;
    let leads = Leads::start(&bed, LeadProducerSettings::default()).await;
    // Defaults: started, submitted and signature received of each application.
    let expected = leads_of(
        &outbox,
        &[
            enrollstream_domain::events::APPLICATION_STARTED,
            APPLICATION_SUBMITTED,
            SIGNATURE_RECEIVED,
        ],
    );
    assert_eq!(expected.len(), 4 * 3);
    bed.eventually(chrono::Duration::seconds(1), "every lead applied", || {
        leads.fake.applied_count() == expected.len()
    })
    .await;
    assert_applied_once(&leads.fake, &expected);

    let on_topic = bed.read_all(LEADS, expected.len()).await;
    assert_eq!(on_topic.len(), expected.len());
    let mut want: Vec<String> = expected.iter().map(|m| lead_message_id(&m.id)).collect();
    let mut got = lead_ids(&on_topic);
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "lead message ids are derived from the notification ids"
    );
    let first = &on_topic[0];
    assert_eq!(first.header("ce_type"), Some(LEAD));
    assert!(first.key.as_deref().unwrap().starts_with("A-"));
    let request = &leads.fake.requests()[0];
    let body = request.json().unwrap();
    assert_eq!(body["contact"]["email"], "jane@example.com");
    assert!(body["lead_id"].is_string());
    assert!(bed.health.all_ready());
    leads.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_event_types_become_leads() {
    let bed = Bed::new(2);
    let outbox = bed.publish(&events(), &RoutingRules::default()).await;
    let producer = LeadProducerSettings {
        event_types: vec![APPLICATION_SUBMITTED.to_string()],
        ..LeadProducerSettings::default()
    };
    let leads = Leads::start(&bed, producer).await;
    let expected = leads_of(&outbox, &[APPLICATION_SUBMITTED]);
    assert_eq!(expected.len(), 4);
    bed.eventually(
        chrono::Duration::seconds(1),
        "the submitted leads applied",
        || leads.fake.applied_count() == expected.len(),
    )
    .await;
    // The producer committed past everything it skipped.
    let on_bus = outbox.iter().filter(|m| m.topic == ENROLLMENT).count() as i64;
    bed.eventually_async(
        chrono::Duration::seconds(0),
        "producer committed to the end",
        || async {
            bed.committed("lead-producer-service", &[ENROLLMENT])
                .await
                .iter()
                .map(|c| c.next_offset)
                .sum::<i64>()
                == on_bus
        },
    )
    .await;
    assert_applied_once(&leads.fake, &expected);
    leads.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_yields_the_same_leads_and_the_api_applies_them_once() {
    let bed = Bed::new(1);
    let outbox = bed.publish(&events(), &RoutingRules::default()).await;
    // The producer's handler run twice on the same batch, as after a crash before its commit.
    let batch = bed
        .read_all(
            ENROLLMENT,
            outbox.iter().filter(|m| m.topic == ENROLLMENT).count(),
        )
        .await;
    let mut producer = LeadProducer {
        publisher: bed.dyn_bus().publisher(),
        settings: LeadProducerSettings::default(),
    };
    producer.handle(&batch).await.expect("first run");
    producer.handle(&batch).await.expect("second run");
    let on_topic = bed.read_all(LEADS, 24).await;
    assert_eq!(on_topic.len(), 24);
    let ids = lead_ids(&on_topic);
    assert_eq!(ids[..12], ids[12..], "the same lead messages, same ids");

    // The integration service (with the Lead API failing now and then) applies each once.
    let fake = Fake::lead_management("k").await;
    fake.inject(FaultRule::next(2, Fault::status(503)));
    fake.inject(FaultRule::next(2, Fault::ResetAfterApply));
    let mut config = LeadManagementConfig::new(fake.endpoint());
    config.api_key = Some(Secret::new("k"));
    config.http = quick_http();
    let target =
        LeadManagementTarget::new(&config, Arc::new(enrollstream_ports::SystemClock)).unwrap();
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(run_integration(
        bed.dyn_bus(),
        Arc::new(target),
        settings(),
        LEADS,
        Arc::new(bed.clock.clone()),
        HealthRegistry::default(),
        shutdown.clone(),
        None,
    ));
    let expected = leads_of(
        &outbox,
        &[
            enrollstream_domain::events::APPLICATION_STARTED,
            APPLICATION_SUBMITTED,
            SIGNATURE_RECEIVED,
        ],
    );
    bed.eventually(chrono::Duration::seconds(1), "every lead applied", || {
        fake.applied_count() == expected.len()
    })
    .await;
    bed.eventually_async(
        chrono::Duration::seconds(0),
        "integration committed to the end",
        || async {
            bed.committed("lead-integration-service", &[LEADS])
                .await
                .first()
                .map(|c| c.next_offset)
                == Some(24)
        },
    )
    .await;
    assert_applied_once(&fake, &expected);
    assert!(
        fake.duplicates() >= 12,
        "the repeated lead messages were recognised"
    );
    shutdown.cancel();
    service.await.unwrap();
}
