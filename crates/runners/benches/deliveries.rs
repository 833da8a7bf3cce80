//! Deliveries per second through the delivery runner, from the embedded bus to a Logic Apps
//! server on 127.0.0.1: once answering at once, once answering after 50 ms. Many keys with ten
//! notifications each; per-key order and once-only application are checked after every run.
//!
//! Run: `cargo bench -p enrollstream-runners --bench deliveries`.

use enrollstream_domain::routing::{RoutingRules, LOGIC_APPS};
use enrollstream_ports::{EventBus, HealthRegistry, SystemClock};
use enrollstream_runners::deliveries::{self, DeliverySettings};
use enrollstream_sqlite::bus::EmbeddedBus;
use enrollstream_targets::{LogicAppsConfig, LogicAppsTarget};
use enrollstream_testkit::targets::fixtures::{messages_for, outbox_of, quote_journey};
use enrollstream_testkit::targets::{Fake, Fault, FaultRule};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const NOTIFICATIONS_PER_KEY: usize = 10;

struct Case {
    name: &'static str,
    keys: usize,
    latency: Option<Duration>,
    concurrency: usize,
}

async fn run(case: &Case) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(dir.path(), 3).expect("bus"));
    let events: Vec<_> = (0..case.keys)
        .flat_map(|i| {
            quote_journey(
                &format!("Q-{i}"),
                NOTIFICATIONS_PER_KEY - 1,
                "2026-01-01T00:00:00Z".parse().unwrap(),
            )
        })
        .collect();
    let outbox = outbox_of(&events, &RoutingRules::default());
    let messages = messages_for(&outbox, "quote-notifications");
    let total = messages.len();
    for chunk in messages.chunks(1000) {
        bus.publisher()
            .publish("quote-notifications", chunk.to_vec())
            .await
            .expect("publish");
    }

    let fake = Fake::logic_apps("sig", None).await;
    if let Some(latency) = case.latency {
        fake.inject(FaultRule::always(Fault::Delay(latency)));
    }
    let target = LogicAppsTarget::new(
        &LogicAppsConfig::new(fake.trigger_url()),
        Arc::new(SystemClock),
    )
    .expect("target");
    let settings = DeliverySettings {
        concurrency: case.concurrency,
        max_in_flight: 5000,
        ..DeliverySettings::default()
    };
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let runner = tokio::spawn(deliveries::run(
        bus.clone(),
        Arc::new(target),
        settings,
        Arc::new(SystemClock),
        HealthRegistry::default(),
        shutdown.clone(),
    ));
    while fake.applied_count() < total {
        if started.elapsed() > Duration::from_secs(600) {
            panic!(
                "{}: only {} of {total} delivered",
                case.name,
                fake.applied_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    runner.await.expect("runner");

    for (entity, versions) in fake.versions_by_entity() {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{entity} out of order: {versions:?}"
        );
        assert_eq!(versions.len(), NOTIFICATIONS_PER_KEY);
    }
    assert_eq!(fake.applied_count(), total);
    assert!(outbox
        .iter()
        .filter(|m| m.topic == "quote-notifications")
        .all(|m| fake.times_applied(&m.id) == 1));
    println!(
        "{LOGIC_APPS}: {:<26} {:>6} deliveries in {:>7.2?}  {:>6.0} deliveries/s  (concurrency {}, {} keys x {NOTIFICATIONS_PER_KEY}, per-key order kept, each applied once)",
        case.name,
        total,
        elapsed,
        total as f64 / elapsed.as_secs_f64(),
        case.concurrency,
        case.keys,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cases = [
        Case {
            name: "fast local target",
            keys: 500,
            latency: None,
            concurrency: 16,
        },
        Case {
            name: "fast local target",
            keys: 500,
            latency: None,
            concurrency: 64,
        },
        Case {
            name: "target with 50 ms latency",
            keys: 200,
            latency: Some(Duration::from_millis(50)),
            concurrency: 16,
        },
        Case {
            name: "target with 50 ms latency",
            keys: 200,
            latency: Some(Duration::from_millis(50)),
            concurrency: 64,
        },
    ];
    for case in &cases {
        runtime.block_on(run(case));
    }
}
