//! Each target by its own consumer group over the embedded bus: it gets exactly the
//! notifications routed to it, in order per entity, in parallel across entities, and a failing
//! target delays nobody else.

use crate::deliveries_support;

use deliveries_support::*;
use enrollstream_domain::routing::{RoutingRules, LOGIC_APPS, SALESFORCE};
use enrollstream_ports::target::Target;
use enrollstream_targets::{SalesforceConfig, SalesforceTarget};
use enrollstream_testkit::targets::fixtures::{application_journey, quote_journey};
use enrollstream_testkit::targets::{Fake, Fault, FaultRule, Salesforce};
use std::sync::Arc;
use std::time::Duration;

/// Quotes notify Logic Apps only; applications notify both.
fn rules() -> RoutingRules {
    let mut rules = RoutingRules::default();
    rules.rules[0].targets = vec![LOGIC_APPS.to_string()];
    rules
}

async fn salesforce() -> (Fake<Salesforce>, Arc<dyn Target>) {
    let fake = Fake::salesforce("client-id", "client-secret").await;
    let mut config = SalesforceConfig::new(fake.base_url(), "client-id", "client-secret");
    config.http = quick_http();
    let target = SalesforceTarget::new(&config, Arc::new(enrollstream_ports::SystemClock))
        .expect("salesforce target");
    (fake, Arc::new(target))
}

fn events() -> Vec<enrollstream_domain::CloudEvent> {
    let mut events = Vec::new();
    for i in 0..5 {
        events.extend(application_journey(&format!("A-{i}"), start_time()));
        events.extend(quote_journey(&format!("Q-{i}"), 5, start_time()));
    }
    events
}

fn total(positions: &[enrollstream_ports::CommitPosition]) -> i64 {
    positions.iter().map(|p| p.next_offset).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_gets_what_is_routed_to_it_by_its_own_group() {
    let bed = Bed::new(3);
    let outbox = bed.publish(&events(), &rules()).await;
    let (la_fake, la) = logic_apps("sig").await;
    let (sf_fake, sf) = salesforce().await;
    let la_runner = bed.start(la, settings());
    let sf_runner = bed.start(sf, settings());

    let for_la = routed_to(&outbox, LOGIC_APPS);
    let for_sf = routed_to(&outbox, SALESFORCE);
    assert_eq!(for_la.len(), 5 * 4 + 5 * 6);
    assert_eq!(for_sf.len(), 5 * 4, "quotes are not routed to Salesforce");
    bed.eventually(
        chrono::Duration::seconds(1),
        "both targets have everything",
        || la_fake.applied_count() == for_la.len() && sf_fake.applied_count() == for_sf.len(),
    )
    .await;
    assert_applied_once(&la_fake, &for_la);
    assert_applied_once(&sf_fake, &for_sf);
    // Salesforce skipped the quote notifications by their headers and committed past them.
    let quotes_on_bus = outbox.iter().filter(|m| m.topic == QUOTES).count() as i64;
    let enrollments_on_bus = outbox.iter().filter(|m| m.topic == ENROLLMENT).count() as i64;
    bed.eventually_async(
        chrono::Duration::seconds(1),
        "both groups committed to the end",
        || async {
            total(&bed.committed("delivery-salesforce", &[QUOTES]).await) == quotes_on_bus
                && total(&bed.committed("delivery-salesforce", &[ENROLLMENT]).await)
                    == enrollments_on_bus
                && total(
                    &bed.committed("delivery-logic-apps", &[QUOTES, ENROLLMENT])
                        .await,
                ) == quotes_on_bus + enrollments_on_bus
        },
    )
    .await;
    assert!(bed.health.all_ready());
    la_runner.stop().await;
    sf_runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_delays_no_other_target() {
    let bed = Bed::new(3);
    let outbox = bed.publish(&events(), &RoutingRules::default()).await;
    let (la_fake, la) = logic_apps("sig").await;
    let (sf_fake, sf) = salesforce().await;
    la_fake.inject(FaultRule::always(Fault::status(503)));
    let la_runner = bed.start(la, settings());
    let sf_runner = bed.start(sf, settings());
    let for_sf = routed_to(&outbox, SALESFORCE);
    bed.eventually(
        chrono::Duration::seconds(1),
        "Salesforce has everything",
        || sf_fake.applied_count() == for_sf.len(),
    )
    .await;
    assert_applied_once(&sf_fake, &for_sf);
    assert_eq!(la_fake.applied_count(), 0);
    assert!(la_fake.request_count() > 0, "Logic Apps was tried");
    sf_runner.stop().await;
    la_runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_lanes_keep_each_entity_in_order_with_a_slow_target() {
    // One partition: every entity shares it, so parallelism comes from the lanes alone.
    let bed = Bed::new(1);
    let mut events = Vec::new();
    for i in 0..12 {
        events.extend(quote_journey(&format!("Q-{i}"), 6, start_time()));
    }
    let outbox = bed.publish(&events, &RoutingRules::default()).await;
    let (fake, target) = logic_apps("sig").await;
    // Some calls are too slow: they time out after the workflow ran, and are retried while
    // the entity's later notifications wait. Rules match in order: these first.
    for i in [1, 4, 7] {
        let slow = routed_to(&outbox, LOGIC_APPS)
            .into_iter()
            .filter(|m| m.key == format!("Q-{i}"))
            .nth(2)
            .unwrap()
            .id
            .clone();
        fake.inject(FaultRule::next_for(
            &slow,
            2,
            Fault::Delay(Duration::from_secs(1)),
        ));
    }
    // Every other call is slow but within the timeout: calls overlap.
    fake.inject(FaultRule::always(Fault::Delay(Duration::from_millis(30))));
    let runner = bed.start(target, settings());
    let expected = routed_to(&outbox, LOGIC_APPS);
    bed.eventually(
        chrono::Duration::seconds(1),
        "every notification applied",
        || fake.applied_count() == expected.len(),
    )
    .await;
    assert_applied_once(&fake, &expected);
    assert!(
        fake.max_concurrent() > 1,
        "different entities were delivered in parallel"
    );
    assert!(fake.duplicates() > 0, "timed-out calls were retried");
    runner.stop().await;
}
