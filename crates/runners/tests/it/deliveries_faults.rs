//! The error policy of a delivery runner against a real HTTP server with injected faults:
//! transient failures are retried until they land, once; a poison message and a rejected one
//! go to the target's DLQ with their reason while the partition flows on; a later notification
//! never overtakes an earlier one being retried; the committed offset never passes an
//! unfinished message; an outage opens the circuit instead of filling the DLQ; refused
//! credentials pause the target.

use crate::deliveries_support;

use deliveries_support::*;
use enrollstream_domain::notification::{OutboxMessage, NOTIFICATION};
use enrollstream_domain::routing::{RoutingRules, LOGIC_APPS, SALESFORCE};
use enrollstream_ports::{InboundMessage, OutboundMessage};
use enrollstream_runners::dead_letter;
use enrollstream_runners::deliveries::{redrive_delivery, DLQ_LAST_STATUS, DLQ_TARGET};
use enrollstream_targets::{LogicAppsConfig, LogicAppsTarget, SalesforceConfig, SalesforceTarget};
use enrollstream_testkit::targets::fixtures::{application_journey, quote_journey};
use enrollstream_testkit::targets::{Fake, Fault, FaultRule, Gate};
use std::sync::Arc;
use std::time::Duration;

const LA_DLQ: &str = "enrollment-notifications.logic-apps.dlq";
const LA_QUOTES_DLQ: &str = "quote-notifications.logic-apps.dlq";

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn journeys(n: usize) -> Vec<enrollstream_domain::CloudEvent> {
    (0..n)
        .flat_map(|i| application_journey(&format!("A-{i}"), start_time()))
        .collect()
}

/// One notification per quote, each its own key.
fn single_quotes(n: usize) -> Vec<enrollstream_domain::CloudEvent> {
    (0..n)
        .flat_map(|i| quote_journey(&format!("Q-{i}"), 0, start_time()))
        .collect()
}

fn of_key<'a>(outbox: &'a [OutboxMessage], key: &str) -> Vec<&'a OutboxMessage> {
    routed_to(outbox, LOGIC_APPS)
        .into_iter()
        .filter(|m| m.key == key)
        .collect()
}

/// Index of the first (or last) request the fake saw for `notification_id`.
fn request_index(
    fake: &Fake<enrollstream_testkit::targets::LogicApps>,
    notification_id: &str,
    last: bool,
) -> usize {
    let hits: Vec<usize> = fake
        .requests()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.body_text().contains(notification_id))
        .map(|(i, _)| i)
        .collect();
    *(if last { hits.last() } else { hits.first() }).expect("requested")
}

fn header<'a>(m: &'a InboundMessage, name: &str) -> &'a str {
    m.header(name)
        .unwrap_or_else(|| panic!("dead letter has no {name} header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_until_each_notification_lands_once() {
    let bed = Bed::new(2);
    let outbox = bed.publish(&journeys(6), &RoutingRules::default()).await;
    let (fake, target) = logic_apps("sig").await;
    // The first requests meet every kind of trouble, in this order.
    fake.inject(FaultRule::next(3, Fault::status(500)));
    fake.inject(FaultRule::next(2, Fault::too_many_requests(5)));
    fake.inject(FaultRule::next(3, Fault::Reset));
    fake.inject(FaultRule::next(2, Fault::ResetAfterApply));
    fake.inject(FaultRule::next(2, Fault::status(503)));
    fake.inject(FaultRule::next(2, Fault::Delay(Duration::from_secs(1))));
    let mut settings = settings();
    // This test is about faults healing, not about budgets running out.
    settings.retry.max_attempts = 20;
    let runner = bed.start(target, settings);
    let expected = routed_to(&outbox, LOGIC_APPS);
    bed.eventually(secs(1), "every notification applied", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_applied_once(&fake, &expected);
    assert!(
        fake.duplicates() >= 2,
        "responses lost after applying were retried and recognised"
    );
    assert!(fake.request_count() >= expected.len() + 14);
    runner.stop().await;
    assert!(
        bed.read_all(LA_DLQ, 0).await.is_empty(),
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dlq_without_blocking_its_partition() {
    let bed = Bed::new(1);
    let outbox = bed.publish(&journeys(4), &RoutingRules::default()).await;
    let (fake, target) = logic_apps("sig").await;
    let a1 = of_key(&outbox, "A-1");
    let poison = a1[1];
    fake.inject(FaultRule::always_for(&poison.id, Fault::status(500)));
    let runner = bed.start(target, settings());

    let expected: Vec<&OutboxMessage> = routed_to(&outbox, LOGIC_APPS)
        .into_iter()
        .filter(|m| m.id != poison.id)
        .collect();
    bed.eventually(secs(1), "everything but the poison applied", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_applied_once(&fake, &expected);
    // The entity's later notifications went out only after the poison was given up.
    assert!(request_index(&fake, &a1[2].id, false) > request_index(&fake, &poison.id, true));

    let dead = bed.read_all(LA_DLQ, 1).await;
    assert_eq!(dead.len(), 1, "exactly the poison is dead-lettered");
    let d = &dead[0];
    assert_eq!(d.header("ce_id"), Some(poison.id.as_str()));
    assert_eq!(d.key.as_deref(), Some("A-1"));
    assert_eq!(header(d, dead_letter::REASON), "retries_exhausted");
    assert_eq!(header(d, DLQ_LAST_STATUS), "500");
    assert_eq!(header(d, DLQ_TARGET), LOGIC_APPS);
    assert!(header(d, dead_letter::ATTEMPTS).parse::<u32>().unwrap() >= 4);
    assert!(header(d, dead_letter::ERROR).contains("500"));
    assert_eq!(
        header(d, dead_letter::CONSUMER_GROUP),
        "delivery-logic-apps"
    );
    assert_eq!(header(d, dead_letter::ORIGINAL_TOPIC), ENROLLMENT);
    // The payload is the original notification, ready for a redrive.
    let original = enrollstream_ports::codec::encode(&poison.event);
    assert_eq!(d.payload, original.payload);

    // Once the cause is fixed, a redrive delivers it, with the same idempotency key.
    fake.clear_faults();
    let (topic, message) = redrive_delivery(d).expect("a delivery dead letter");
    assert_eq!(topic, ENROLLMENT);
    bed.publish_raw(&topic, vec![message]).await;
    bed.eventually(secs(1), "the redriven poison applied", || {
        fake.times_applied(&poison.id) == 1
    })
    .await;
    assert_eq!(fake.keys_of(&poison.id).len(), 1);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_undecodable_messages_go_straight_to_the_dlq() {
    let bed = Bed::new(1);
    let outbox = bed.publish(&journeys(2), &RoutingRules::default()).await;
    // Meant for Logic Apps, but not a CloudEvent at all / not a notification.
    let garbage = OutboundMessage {
        key: "X-1".into(),
        headers: vec![
            ("ce_type".into(), NOTIFICATION.into()),
            ("ce_routingtargets".into(), LOGIC_APPS.into()),
        ],
        payload: b"{not json".to_vec(),
    };
    let mut not_a_notification = outbox[0].event.clone();
    not_a_notification.id = "not-a-notification".into();
    not_a_notification.subject = Some("X-2".into());
    not_a_notification.data = serde_json::json!({"hello": "world"});
    let mut odd = enrollstream_ports::codec::encode(&not_a_notification);
    odd.key = "X-2".into();
    bed.publish_raw(ENROLLMENT, vec![garbage, odd]).await;

    let (fake, target) = patient_logic_apps("sig").await;
    let rejected = of_key(&outbox, "A-0")[1];
    fake.inject(FaultRule::always_for(
        &rejected.id,
        Fault::with_body(422, "field premium is invalid"),
    ));
    let runner = bed.start(target, settings());
    let dead = bed.read_all(LA_DLQ, 3).await;
    assert_eq!(dead.len(), 3);
    let by_key = |k: &str| dead.iter().find(|d| d.key.as_deref() == Some(k)).unwrap();

    let d = by_key("A-0");
    assert_eq!(header(d, dead_letter::REASON), "rejected");
    assert_eq!(header(d, DLQ_LAST_STATUS), "422");
    assert_eq!(header(d, dead_letter::ATTEMPTS), "1");
    assert!(header(d, dead_letter::ERROR).contains("premium is invalid"));
    assert_eq!(header(by_key("X-1"), dead_letter::REASON), "undecodable");
    let d = by_key("X-2");
    assert_eq!(header(d, dead_letter::REASON), "rejected");
    assert!(header(d, dead_letter::ERROR).contains("not a notification"));
    assert!(d.header(DLQ_LAST_STATUS).is_none(), "no HTTP call was made");

    let expected: Vec<&OutboxMessage> = routed_to(&outbox, LOGIC_APPS)
        .into_iter()
        .filter(|m| m.id != rejected.id)
        .collect();
    bed.eventually(secs(1), "the rest applied", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_applied_once(&fake, &expected);
    let calls = fake
        .requests()
        .iter()
        .filter(|r| r.body_text().contains(&rejected.id))
        .count();
    assert_eq!(calls, 1, "a rejection is not retried");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_notification_waits_for_an_earlier_one_being_retried() {
    let bed = Bed::new(1);
    let outbox = bed.publish(&journeys(3), &RoutingRules::default()).await;
    let (fake, target) = patient_logic_apps("sig").await;
    let a0 = of_key(&outbox, "A-0");
    fake.inject(FaultRule::next_for(&a0[0].id, 3, Fault::status(502)));
    let runner = bed.start(target, settings());
    // The clock stands still, so A-0 waits for its first retry; the other entities do not.
    let others: Vec<&OutboxMessage> = ["A-1", "A-2"]
        .iter()
        .flat_map(|k| of_key(&outbox, k))
        .collect();
    bed.eventually(secs(0), "the other entities applied", || {
        others.iter().all(|m| fake.times_applied(&m.id) == 1)
    })
    .await;
    let sent = |id: &str| fake.requests().iter().any(|r| r.body_text().contains(id));
    assert!(sent(&a0[0].id));
    assert!(
        !sent(&a0[1].id),
        "A-0's second notification waits behind its first"
    );

    let expected = routed_to(&outbox, LOGIC_APPS);
    bed.eventually(secs(1), "every notification applied", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_applied_once(&fake, &expected);
    // A-0's second notification was sent only after the first one got through.
    assert!(request_index(&fake, &a0[1].id, false) > request_index(&fake, &a0[0].id, true));
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.body_text().contains(&a0[0].id))
            .count(),
        4
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_offset_never_passes_an_unfinished_message() {
    let bed = Bed::new(1);
    // Offsets: Q-0 at 0, Q-1 at 1, then two notifications each for Q-2..Q-5.
    let mut events = single_quotes(2);
    for i in 2..6 {
        events.extend(quote_journey(&format!("Q-{i}"), 1, start_time()));
    }
    let outbox = bed.publish(&events, &RoutingRules::default()).await;
    let fake = Fake::logic_apps("sig", None).await;
    let mut config = LogicAppsConfig::new(fake.trigger_url());
    // The held call stays open until the gate opens.
    config.http.timeout = Duration::from_secs(120);
    let target =
        Arc::new(LogicAppsTarget::new(&config, Arc::new(enrollstream_ports::SystemClock)).unwrap());
    let gate = Gate::new();
    let held = of_key(&outbox, "Q-1")[0];
    fake.inject(FaultRule::next_for(&held.id, 1, Fault::Hold(gate.clone())));
    let runner = bed.start(target.clone(), settings());

    bed.eventually_async(secs(0), "Q-0 committed", || async {
        bed.committed("delivery-logic-apps", &[QUOTES])
            .await
            .first()
            .map(|c| c.next_offset)
            == Some(1)
    })
    .await;
    // A key's second notification is sent only once its first finished in the runner: when
    // all second ones are applied, everything but Q-1 is finished.
    let seconds: Vec<&OutboxMessage> = (2..6)
        .map(|i| of_key(&outbox, &format!("Q-{i}"))[1])
        .collect();
    bed.eventually(secs(0), "the keys after Q-1 are done", || {
        seconds.iter().all(|m| fake.times_applied(&m.id) == 1)
    })
    .await;
    // A graceful stop commits everything finished: still not past Q-1.
    runner.stop().await;
    let committed = bed.committed("delivery-logic-apps", &[QUOTES]).await;
    assert_eq!(committed.len(), 1);
    assert_eq!(
        committed[0].next_offset, 1,
        "the commit stops at the unfinished Q-1"
    );

    gate.open();
    let runner = bed.start(target, settings());
    let expected = routed_to(&outbox, LOGIC_APPS);
    bed.eventually_async(secs(1), "committed to the end", || async {
        bed.committed("delivery-logic-apps", &[QUOTES]).await[0].next_offset
            == expected.len() as i64
    })
    .await;
    assert_applied_once(&fake, &expected);
    assert!(
        fake.duplicates() >= 9,
        "Q-1..Q-5 were delivered again and recognised"
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_opens_the_circuit_instead_of_filling_the_dlq() {
    let bed = Bed::new(2);
    let outbox = bed
        .publish(&single_quotes(8), &RoutingRules::default())
        .await;
    let (fake, target) = logic_apps("sig").await;
    fake.inject(FaultRule::always(Fault::status(503)));
    let runner = bed.start(target, settings());
    // Ten minutes of outage: without the breaker each message would spend its 4 attempts
    // within seconds and land in the DLQ.
    bed.pass(chrono::Duration::minutes(10), secs(2)).await;
    let during = fake.request_count();
    // Probes: at most one per open period (10s, then 20s).
    assert!(
        during <= 5 + 8 + 600 / 10,
        "{during} calls during the outage"
    );
    assert!(
        bed.health.all_ready(),
        "an outage of a target is not our unreadiness"
    );

    fake.clear_faults();
    let expected = routed_to(&outbox, LOGIC_APPS);
    bed.eventually(secs(1), "everything applied after the outage", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_applied_once(&fake, &expected);
    runner.stop().await;
    assert!(
        bed.read_all(LA_QUOTES_DLQ, 0).await.is_empty(),
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_pause_the_target_without_flooding_the_dlq() {
    let bed = Bed::new(2);
    let outbox = bed
        .publish(&single_quotes(8), &RoutingRules::default())
        .await;
    let (fake, target) = logic_apps("sig").await;
    // Someone regenerated the workflow's access key: our URL's signature is refused.
    fake.rotate_signature("regenerated");
    let runner = bed.start(target, settings());
    bed.eventually(secs(1), "the target is paused", || {
        bed.health
            .snapshot()
            .get("delivery:logic_apps")
            .is_some_and(|h| !h.ready && h.detail.contains("paused") && h.detail.contains("401"))
    })
    .await;
    let before = fake.request_count();
    bed.pass(chrono::Duration::minutes(5), secs(5)).await;
    let probes = fake.request_count() - before;
    // One probe per 30 s (plus calls already under way when the pause began), not a retry
    // storm of eight lanes.
    assert!(probes <= 8 + 5 * 60 / 30 + 1, "{probes} calls while paused");
    assert_eq!(fake.applied_count(), 0);

    // The old key is back (or the configuration fixed): the next probe resumes.
    fake.rotate_signature("sig");
    let expected = routed_to(&outbox, LOGIC_APPS);
    bed.eventually(secs(5), "everything applied after resuming", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_applied_once(&fake, &expected);
    assert!(bed.health.all_ready(), "ready again");
    runner.stop().await;
    assert!(
        bed.read_all(LA_QUOTES_DLQ, 0).await.is_empty(),
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_refreshes_an_expired_token_and_pauses_on_a_rotated_secret() {
    let bed = Bed::new(2);
    let fake = Fake::salesforce("client-id", "client-secret").await;
    let mut config = SalesforceConfig::new(fake.base_url(), "client-id", "client-secret");
    config.http = quick_http();
    let target = Arc::new(
        SalesforceTarget::new(&config, Arc::new(enrollstream_ports::SystemClock)).unwrap(),
    );
    let runner = bed.start(target, settings());
    let first = bed.publish(&journeys(2), &RoutingRules::default()).await;
    let mut expected = routed_to(&first, SALESFORCE);
    bed.eventually(secs(1), "first batch applied", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_eq!(fake.token_requests(), 1, "one token for the whole batch");

    // The session expires: one refresh, no pause.
    fake.expire_tokens();
    let events: Vec<_> = (2..4)
        .flat_map(|i| application_journey(&format!("A-{i}"), start_time()))
        .collect();
    let second = bed.publish(&events, &RoutingRules::default()).await;
    expected.extend(routed_to(&second, SALESFORCE));
    bed.eventually(secs(1), "second batch applied", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_eq!(fake.token_requests(), 2);
    assert!(bed.health.all_ready());

    // The connected app's secret is rotated: pause with the reason, nothing dead-lettered.
    fake.rotate_client_secret("rotated");
    let events: Vec<_> = (4..6)
        .flat_map(|i| application_journey(&format!("A-{i}"), start_time()))
        .collect();
    let third = bed.publish(&events, &RoutingRules::default()).await;
    expected.extend(routed_to(&third, SALESFORCE));
    bed.eventually(secs(1), "paused on invalid_client", || {
        bed.health
            .snapshot()
            .get("delivery:salesforce")
            .is_some_and(|h| !h.ready && h.detail.contains("invalid_client"))
    })
    .await;
    bed.pass(chrono::Duration::minutes(2), secs(5)).await;
    fake.rotate_client_secret("client-secret");
    bed.eventually(secs(5), "third batch applied after resuming", || {
        fake.applied_count() == expected.len()
    })
    .await;
    assert_applied_once(&fake, &expected);
    assert_eq!(
        fake.record_count(),
        6,
        "one record per application, never a duplicate"
    );
    assert!(bed.health.all_ready());
    runner.stop().await;
    assert!(bed
        .read_all("enrollment-notifications.salesforce.dlq", 0)
        .await
        .is_empty());
}
