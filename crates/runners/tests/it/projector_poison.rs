//! The projector against a store that refuses one change for good (`StoreError::Fatal`, as
//! MongoDB does for a document it cannot encode): the refused event alone is dead-lettered with
//! the reason, the events around it (the same entity's next one included) are applied, and the
//! partition moves on; a store that fails an event only a few times gets it applied. And the fence: a rebuild is refused while a projector holds its lease,
//! and a projector applies nothing while a rebuild holds the read model.
//!
//! The store is the real SQLite store behind a decorator that injects the refusal; the bus is the
//! embedded one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_domain::limits::Limits;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::{CloudEvent, EntityKind};
use enrollstream_ports::{
    codec, ApplyOutcome, Change, EntityQuery, EntityRecord, EventBus, HealthRegistry,
    IdempotencyRecord, Lease, Reservation, Store, StoreError, StoredEvent, StoredOutboxMessage,
    SystemClock, TopicSpec,
};
use enrollstream_runners::consumer::{ConsumerLoop, ConsumerSettings};
use enrollstream_runners::fence::{ProjectorFence, RebuildFence};
use enrollstream_runners::projector::{Projector, GROUP, REFUSAL_ATTEMPTS};
use enrollstream_sqlite::bus::EmbeddedBus;
use enrollstream_sqlite::store::SqliteStore;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "enrollment-events";

/// The SQLite store, except that any call applying a change whose event carries
/// `data.poison` fails as a whole with `Fatal`, the way a store fails a batch it cannot encode;
/// and the first `hiccups` calls applying a change whose event carries `data.hiccup` fail the
/// same way, as FerretDB does for a write that waited out its SQLite lock.
struct Refusing(SqliteStore, AtomicU32);

impl Refusing {
    fn new(store: SqliteStore, hiccups: u32) -> Self {
        Self(store, AtomicU32::new(hiccups))
    }
}

#[async_trait]
impl Store for Refusing {
    async fn apply(&self, changes: &[Change]) -> Result<Vec<ApplyOutcome>, StoreError> {
        let carries = |field: &str| {
            changes
                .iter()
                .any(|c| c.event.envelope.data.get(field).is_some())
        };
        if carries("poison") {
            return Err(StoreError::Fatal("cannot encode the document".into()));
        }
        if carries("hiccup")
            && self
                .1
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(StoreError::Fatal(
                "database is locked (5) (SQLITE_BUSY)".into(),
            ));
        }
        self.0.apply(changes).await
    }
    async fn applied(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        self.0.applied(ids).await
    }
    async fn entity(&self, kind: EntityKind, id: &str) -> Result<Option<EntityRecord>, StoreError> {
        self.0.entity(kind, id).await
    }
    async fn entities(
        &self,
        keys: &[(EntityKind, String)],
    ) -> Result<Vec<EntityRecord>, StoreError> {
        self.0.entities(keys).await
    }
    async fn list_entities(&self, query: &EntityQuery) -> Result<Vec<EntityRecord>, StoreError> {
        self.0.list_entities(query).await
    }
    async fn event_log(&self, kind: EntityKind, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.0.event_log(kind, id).await
    }
    async fn wait_applied(&self, id: &str, timeout: Duration) -> Result<bool, StoreError> {
        self.0.wait_applied(id, timeout).await
    }
    async fn reset_read_model(&self) -> Result<(), StoreError> {
        self.0.reset_read_model().await
    }
    async fn pending_outbox(&self, limit: usize) -> Result<Vec<StoredOutboxMessage>, StoreError> {
        self.0.pending_outbox(limit).await
    }
    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        self.0.mark_published(ids).await
    }
    async fn wait_for_outbox(&self, max: Duration) {
        self.0.wait_for_outbox(max).await
    }
    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.0.outbox_backlog().await
    }
    async fn reserve_idempotency(&self, r: &IdempotencyRecord) -> Result<Reservation, StoreError> {
        self.0.reserve_idempotency(r).await
    }
    async fn mark_idempotency_published(&self, key: &str) -> Result<(), StoreError> {
        self.0.mark_idempotency_published(key).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.0.check().await
    }
    async fn park_outbox(
        &self,
        m: &StoredOutboxMessage,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.0.park_outbox(m, reason, at).await
    }
    async fn parked_outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<(StoredOutboxMessage, String)>, StoreError> {
        self.0.parked_outbox(limit).await
    }
    async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        self.0.take_lease(name, owner, until, now).await
    }
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.0.release_lease(name, owner).await
    }
    async fn leases(&self, prefix: &str, now: DateTime<Utc>) -> Result<Vec<Lease>, StoreError> {
        self.0.leases(prefix, now).await
    }
    fn name(&self) -> &'static str {
        "refusing-sqlite"
    }
}

fn event(ty: &str, data: serde_json::Value) -> CloudEvent {
    CloudEvent::from_json(&json!({
        "specversion": "1.0", "id": enrollstream_domain::ids::new_id(), "source": "/enrollstream/test",
        "type": format!("com.enrollstream.application.{ty}.v1"), "subject": "A-1",
        "time": Utc::now().to_rfc3339(), "datacontenttype": "application/json", "data": data,
    }))
    .unwrap()
}

fn started() -> serde_json::Value {
    json!({"application_id": "A-1", "applicant": {"name": "Jane", "email": "j@x.io"}, "product": "p"})
}

fn projector(store: Arc<dyn Store>, fence: Option<ProjectorFence>) -> Projector {
    Projector {
        store,
        rules: Arc::new(RoutingRules::default()),
        replay: None,
        limits: Arc::new(Limits::default()),
        fence,
        strikes: Default::default(),
    }
}

/// The embedded bus with `events` on the topic, the store behind `Refusing` with `hiccups`, and
/// a projector consuming; `stop` ends the projector and returns the dead letters.
struct Bed {
    bus: Arc<EmbeddedBus>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Bed {
    async fn start(events: &[&CloudEvent], hiccups: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = Arc::new(EmbeddedBus::open(dir.path(), 1).unwrap());
        let store: Arc<dyn Store> = Arc::new(Refusing::new(
            SqliteStore::open(dir.path()).unwrap(),
            hiccups,
        ));
        bus.ensure_topics(&[TopicSpec {
            name: TOPIC.into(),
            partitions: 1,
            replication: 1,
            retention: None,
        }])
        .await
        .unwrap();
        bus.publisher()
            .publish(TOPIC, events.iter().map(|e| codec::encode(e)).collect())
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(
            ConsumerLoop {
                bus: bus.clone(),
                handler: projector(store.clone(), None),
                settings: ConsumerSettings::new(GROUP, vec![TOPIC.into()]),
                health: HealthRegistry::default(),
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        Self {
            bus,
            store,
            shutdown,
            run,
            _dir: dir,
        }
    }

    /// Stops the projector (so every dead letter is written), then reads the DLQ.
    async fn stop(self) -> Vec<enrollstream_ports::InboundMessage> {
        self.shutdown.cancel();
        self.run.await.unwrap();
        let mut spec =
            enrollstream_ports::SubscriptionSpec::new("reader", &["enrollment-events.dlq"]);
        spec.start = enrollstream_ports::StartFrom::Earliest;
        let mut sub = self.bus.subscribe(spec).await.unwrap();
        sub.poll(10, Duration::from_millis(500)).await.unwrap()
    }
}

#[tokio::test]
async fn a_change_the_store_refuses_is_dead_lettered_alone_and_the_partition_moves_on() {
    let mut poison_data = started();
    poison_data["poison"] = json!(true);
    // One batch: the poison first, then a valid start and a submission of the same entity.
    let poison = event("started", poison_data);
    let start = event("started", started());
    let submit = event(
        "submitted",
        json!({"application_id": "A-1", "submitted_by": "member"}),
    );
    let bed = Bed::start(&[&poison, &start, &submit], 0).await;
    let store = bed.store.clone();
    assert!(
        store
            .wait_applied(&submit.id, Duration::from_secs(60))
            .await
            .unwrap(),
        "the events behind the refused one are applied"
    );
    let record = store
        .entity(EntityKind::Application, "A-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.version, 2,
        "the start and the submission, not the poison"
    );
    assert!(store
        .applied(std::slice::from_ref(&poison.id))
        .await
        .unwrap()
        .is_empty());
    let dead = bed.stop().await;
    assert_eq!(dead.len(), 1, "only the refused event is dead-lettered");
    assert_eq!(dead[0].header("ce_id"), Some(poison.id.as_str()));
    assert_eq!(dead[0].header("dlq_reason"), Some("store_refused"));
}

/// A store that fails an event a few times and then takes it (fewer times than
/// `REFUSAL_ATTEMPTS`): the event is applied, nothing is dead-lettered.
#[tokio::test]
async fn an_event_the_store_fails_a_few_times_is_applied_not_dead_lettered() {
    let mut data = started();
    data["hiccup"] = json!(true);
    let start = event("started", data);
    // Each failed attempt costs two calls: the batch, then the event alone.
    let bed = Bed::start(&[&start], 2 * (REFUSAL_ATTEMPTS - 1)).await;
    assert!(
        bed.store
            .wait_applied(&start.id, Duration::from_secs(60))
            .await
            .unwrap(),
        "the event is applied once the store takes it"
    );
    let dead = bed.stop().await;
    assert!(dead.is_empty(), "nothing is dead-lettered: {dead:?}");
}

#[tokio::test]
async fn a_rebuild_and_live_projectors_keep_each_other_out() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let clock = Arc::new(SystemClock);
    let ttl = Duration::from_secs(30);
    let mut live = ProjectorFence::new(store.clone(), clock.clone(), ttl);
    live.enter()
        .await
        .expect("a projector enters a free read model");
    let refused = RebuildFence::take(store.clone(), clock.clone(), ttl)
        .await
        .err()
        .expect("a rebuild is refused while a projector is live");
    assert!(refused.contains("projector(s) are live"), "{refused}");
    live.release().await;
    let rebuild = RebuildFence::take(store.clone(), clock.clone(), ttl)
        .await
        .expect("a rebuild starts once the projector stopped");
    let mut late = ProjectorFence::new(store.clone(), clock.clone(), ttl);
    let waiting = late
        .enter()
        .await
        .expect_err("a projector waits out a rebuild");
    assert!(waiting.contains("being rebuilt"), "{waiting}");
    rebuild.release().await;
    late.enter().await.expect("and projects once it is done");
}
