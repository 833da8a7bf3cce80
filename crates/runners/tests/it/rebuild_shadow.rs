//! The rebuild into a shadow copy, in process on the embedded adapters: a build that refuses an
//! event the live read model holds never switches in; one that holds them all does, and neither
//! records an outbox message.

use chrono::{DateTime, Utc};
use enrollstream_domain::limits::Limits;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_ports::{
    codec, EventBus, ShadowBuild, StartFrom, Store, SubscriptionSpec, SystemClock, SWITCH_LEASE,
};
use enrollstream_runners::consumer::{BatchHandler, Outcome};
use enrollstream_runners::projector::{self, Projector};
use enrollstream_runners::rebuild::{RebuildReport, Rebuilt, ShadowRebuild, SHADOW_LEASE};
use enrollstream_sqlite::bus::EmbeddedBus;
use enrollstream_sqlite::store::SqliteStore;
use enrollstream_testkit::contract::store::fixtures::{quote_created, quote_id};
use std::sync::Arc;
use std::time::Duration;

const TOPIC: &str = "quote-events";

#[derive(Default)]
struct Heard {
    not_projected: Vec<String>,
}

impl RebuildReport for Heard {
    fn started(&mut self, _: &ShadowBuild) {}
    fn progress(&mut self, _: u64, _: u64) {}
    fn not_projected(&mut self, source: &str, _: &str) {
        self.not_projected.push(source.to_string());
    }
    fn pausing(&mut self) {}
    fn waiting(&mut self, owner: &str, until: DateTime<Utc>) {
        panic!("no other rebuild holds the lease here ({owner} until {until})");
    }
}

fn rebuild(store: &Arc<SqliteStore>, bus: &Arc<EmbeddedBus>, limits: Limits) -> ShadowRebuild {
    ShadowRebuild {
        store: store.clone(),
        bus: bus.clone(),
        topics: vec![TOPIC.into()],
        rules: Arc::new(RoutingRules::default()),
        limits: Arc::new(limits),
        clock: Arc::new(SystemClock),
        lease_ttl: Duration::from_secs(30),
        fresh: true,
    }
}

/// Three quotes projected by a live projector member, its offsets committed.
async fn live(store: &Arc<SqliteStore>, bus: &Arc<EmbeddedBus>) {
    let events: Vec<_> = (0..3)
        .map(|_| codec::encode(&quote_created(&quote_id())))
        .collect();
    bus.publisher().publish(TOPIC, events).await.unwrap();
    let mut spec = SubscriptionSpec::new(projector::GROUP, &[TOPIC]);
    spec.start = StartFrom::Committed;
    let mut sub = bus.subscribe(spec).await.unwrap();
    let batch = sub.poll(10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(batch.len(), 3, "the live member reads the quotes");
    let mut live = Projector {
        store: store.clone(),
        rules: Arc::new(RoutingRules::default()),
        replay: None,
        limits: Arc::new(Limits::default()),
        fence: None,
        strikes: Default::default(),
    };
    let outcomes = live.handle(&batch).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Done)));
    let positions: Vec<_> = batch.iter().map(|m| m.next_position()).collect();
    sub.commit(&positions).await.unwrap();
    sub.close().await.unwrap();
}

#[tokio::test]
async fn a_build_missing_a_live_event_never_switches_in_and_a_whole_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EmbeddedBus::open(dir.path(), 1).unwrap());
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    live(&store, &bus).await;
    let pending = store.pending_outbox(100).await.unwrap().len();
    assert!(pending > 0, "the live quotes announce something");
    let generations = store.generations().unwrap();

    // A fold that now refuses what the live one took (a lower premium bound, say).
    let stricter = Limits {
        max_amount_minor: 100,
        ..Limits::default()
    };
    let mut heard = Heard::default();
    let refused = rebuild(&store, &bus, stricter).run(&mut heard).await;
    let why = refused.expect_err("a build lacking live events must not switch in");
    assert!(
        why.contains("not switching") && why.contains("3 event(s)"),
        "{why}"
    );
    assert_eq!(heard.not_projected.len(), 3, "each refusal is reported");
    assert_eq!(generations.active_generation().await.unwrap(), 1);
    let now = Utc::now();
    assert!(
        store.leases(SWITCH_LEASE, now).await.unwrap().is_empty()
            && store.leases(SHADOW_LEASE, now).await.unwrap().is_empty(),
        "a refused rebuild releases its leases: live applies go on"
    );

    let mut heard = Heard::default();
    let rebuilt = rebuild(&store, &bus, Limits::default())
        .run(&mut heard)
        .await
        .expect("a whole build switches in");
    assert_eq!(
        rebuilt,
        Rebuilt {
            generation: 2,
            projected: 3,
            refused: 0
        }
    );
    assert_eq!(generations.active_generation().await.unwrap(), 2);
    assert_eq!(
        store.pending_outbox(100).await.unwrap().len(),
        pending,
        "neither build announced anything"
    );
}
