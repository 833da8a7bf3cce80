//! A crash of our process in the middle of deliveries: calls under way, responses lost after
//! the target applied them, nothing committed for them. A new runner on the same bus delivers
//! everything again from the committed offsets: every notification reaches its target at least
//! once and is applied exactly once, because every retry carries the same key.

use crate::deliveries_support;

use deliveries_support::*;
use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::routing::{RoutingRules, LOGIC_APPS, SALESFORCE};
use enrollstream_ports::target::Target;
use enrollstream_targets::{LogicAppsConfig, LogicAppsTarget, SalesforceConfig, SalesforceTarget};
use enrollstream_testkit::targets::fixtures::application_journey;
use enrollstream_testkit::targets::{Fake, Fault, FaultRule, Gate};
use std::sync::Arc;
use std::time::Duration;

fn long_http() -> enrollstream_targets::HttpSettings {
    enrollstream_targets::HttpSettings {
        // Held calls stay open until the crash.
        timeout: Duration::from_secs(120),
        ..enrollstream_targets::HttpSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_delivery_loses_nothing_and_applies_each_notification_once() {
    let bed = Bed::new(2);
    let events: Vec<_> = (0..6)
        .flat_map(|i| application_journey(&format!("A-{i}"), start_time()))
        .collect();
    let outbox = bed.publish(&events, &RoutingRules::default()).await;
    let for_la = routed_to(&outbox, LOGIC_APPS);
    let for_sf = routed_to(&outbox, SALESFORCE);

    let la_fake = Fake::logic_apps("sig", None).await;
    let mut la_config = LogicAppsConfig::new(la_fake.trigger_url());
    la_config.http = long_http();
    let la: Arc<dyn Target> = Arc::new(
        LogicAppsTarget::new(&la_config, Arc::new(enrollstream_ports::SystemClock)).unwrap(),
    );
    let sf_fake = Fake::salesforce("client-id", "client-secret").await;
    let mut sf_config = SalesforceConfig::new(sf_fake.base_url(), "client-id", "client-secret");
    sf_config.http = long_http();
    let sf: Arc<dyn Target> = Arc::new(
        SalesforceTarget::new(&sf_config, Arc::new(enrollstream_ports::SystemClock)).unwrap(),
    );

    // At the moment of the crash: some calls applied but unanswered (held), some applied with
    // the response lost, the rest of those entities waiting in their lanes.
    let gate = Gate::new();
    for key in ["A-1", "A-4"] {
        la_fake.inject(FaultRule::always_for(
            &format!("\"entity_id\":\"{key}\""),
            Fault::Hold(gate.clone()),
        ));
        sf_fake.inject(FaultRule::always_for(
            &format!(
                "\"Last_Notification_Id__c\":\"{}\"",
                for_sf.iter().find(|m| m.key == key).unwrap().id
            ),
            Fault::Hold(gate.clone()),
        ));
    }
    la_fake.inject(FaultRule::next_for(
        "\"entity_id\":\"A-2\"",
        1,
        Fault::ResetAfterApply,
    ));

    let la_runner = bed.start(la.clone(), settings());
    let sf_runner = bed.start(sf.clone(), settings());
    let first_of =
        |key: &str, of: &[&OutboxMessage]| of.iter().find(|m| m.key == key).unwrap().id.clone();
    let held: Vec<(String, String)> = ["A-1", "A-4"]
        .iter()
        .map(|k| (first_of(k, &for_la), first_of(k, &for_sf)))
        .collect();
    bed.eventually(
        chrono::Duration::seconds(0),
        "the held calls applied and the rest flowing",
        || {
            held.iter()
                .all(|(la, sf)| la_fake.times_applied(la) == 1 && sf_fake.times_applied(sf) == 1)
                && la_fake.applied_count() >= 10
                && sf_fake.applied_count() >= 10
        },
    )
    .await;

    // The crash: both runners die wherever they are.
    la_runner.kill().await;
    sf_runner.kill().await;
    gate.open();
    la_fake.clear_faults();
    sf_fake.clear_faults();
    let la_before = la_fake.request_count();

    let la_runner = bed.start(la, settings());
    let sf_runner = bed.start(sf, settings());
    bed.eventually(
        chrono::Duration::seconds(1),
        "everything applied after the restart",
        || la_fake.applied_count() == for_la.len() && sf_fake.applied_count() == for_sf.len(),
    )
    .await;
    assert_applied_once(&la_fake, &for_la);
    assert_applied_once(&sf_fake, &for_sf);
    assert!(
        la_fake.request_count() > la_before,
        "the new runner delivered again"
    );
    assert!(
        la_fake.duplicates() >= 2,
        "applied-but-unanswered calls came again and were recognised"
    );
    assert!(sf_fake.duplicates() >= 2);
    assert_eq!(sf_fake.record_count(), 6, "no duplicate records");
    la_runner.stop().await;
    sf_runner.stop().await;
    assert!(bed
        .read_all("enrollment-notifications.logic-apps.dlq", 0)
        .await
        .is_empty());
    assert!(bed
        .read_all("enrollment-notifications.salesforce.dlq", 0)
        .await
        .is_empty());
}
