//! Shared set-up of the delivery tests: the embedded bus in a temp dir, notifications made by
//! the domain's projection and published as the relay publishes them, a manual clock the test
//! moves, fake targets on 127.0.0.1, and the delivery runner as a task that can be stopped or
//! killed. Waits poll a condition against a deadline; none is a timed assertion.

use chrono::{DateTime, Utc};
use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::CloudEvent;
use enrollstream_ports::target::Target;
use enrollstream_ports::{
    CommitPosition, EventBus, HealthRegistry, InboundMessage, ManualClock, OutboundMessage,
    StartFrom, SubscriptionSpec,
};
use enrollstream_runners::deliveries::{self, BreakerSettings, DeliverySettings, RetryPolicy};
use enrollstream_sqlite::bus::EmbeddedBus;
use enrollstream_targets::{HttpSettings, LogicAppsConfig, LogicAppsTarget};
use enrollstream_testkit::targets::fixtures::{messages_for, outbox_of};
use enrollstream_testkit::targets::{Fake, LogicApps};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound of every wait; reached only when something is broken.
pub const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(5);

pub const ENROLLMENT: &str = "enrollment-notifications";
pub const QUOTES: &str = "quote-notifications";

pub fn start_time() -> DateTime<Utc> {
    "2026-05-04T08:00:00Z".parse().unwrap()
}

/// Small budgets so that tests reach the interesting states in few clock steps.
pub fn settings() -> DeliverySettings {
    DeliverySettings {
        concurrency: 8,
        poll_wait: Duration::from_millis(50),
        commit_interval: Duration::from_millis(10),
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        },
        breaker: BreakerSettings {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(20),
        },
        pause_probe_interval: Duration::from_secs(30),
        ..DeliverySettings::default()
    }
}

/// HTTP timeouts far below the fakes' injected delays.
pub fn quick_http() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    }
}

pub struct Bed {
    _dir: TempDir,
    pub bus: Arc<EmbeddedBus>,
    pub clock: ManualClock,
    pub health: HealthRegistry,
    readers: AtomicUsize,
}

impl Bed {
    pub fn new(partitions: i32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = EmbeddedBus::open(dir.path(), partitions).expect("embedded bus");
        Self {
            _dir: dir,
            bus: Arc::new(bus),
            clock: ManualClock::new(start_time()),
            health: HealthRegistry::default(),
            readers: AtomicUsize::new(0),
        }
    }

    pub fn dyn_bus(&self) -> Arc<dyn EventBus> {
        self.bus.clone()
    }

    /// Project `events` and publish their notifications as the relay does; returns the outbox.
    pub async fn publish(&self, events: &[CloudEvent], rules: &RoutingRules) -> Vec<OutboxMessage> {
        let outbox = outbox_of(events, rules);
        for topic in [ENROLLMENT, QUOTES] {
            let messages = messages_for(&outbox, topic);
            if !messages.is_empty() {
                self.publish_raw(topic, messages).await;
            }
        }
        outbox
    }

    pub async fn publish_raw(&self, topic: &str, messages: Vec<OutboundMessage>) {
        self.bus
            .publisher()
            .publish(topic, messages)
            .await
            .expect("publish");
    }

    /// Start a delivery runner; it stops gracefully on `stop` or dies on `kill`.
    pub fn start(&self, target: Arc<dyn Target>, settings: DeliverySettings) -> Runner {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(deliveries::run(
            self.dyn_bus(),
            target,
            settings,
            Arc::new(self.clock.clone()),
            self.health.clone(),
            shutdown.clone(),
        ));
        Runner { shutdown, task }
    }

    /// The same, journaling each outcome into `journal`.
    pub fn start_journaled(
        &self,
        target: Arc<dyn Target>,
        settings: DeliverySettings,
        journal: deliveries::Journal,
    ) -> Runner {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(deliveries::run_journaled(
            self.dyn_bus(),
            target,
            settings,
            Arc::new(self.clock.clone()),
            self.health.clone(),
            shutdown.clone(),
            Some(journal),
        ));
        Runner { shutdown, task }
    }

    pub async fn committed(&self, group: &str, topics: &[&str]) -> Vec<CommitPosition> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        self.bus.committed(group, &topics).await.expect("committed")
    }

    /// Everything on `topic`, read by a group of its own from the beginning.
    pub async fn read_all(&self, topic: &str, expected: usize) -> Vec<InboundMessage> {
        let n = self.readers.fetch_add(1, Ordering::SeqCst);
        let mut spec = SubscriptionSpec::new(format!("test-reader-{n}"), &[topic]);
        spec.start = StartFrom::Earliest;
        let mut sub = self.bus.subscribe(spec).await.expect("subscribe");
        let started = Instant::now();
        let mut out = Vec::new();
        while out.len() < expected && started.elapsed() < DEADLINE {
            out.extend(
                sub.poll(100, Duration::from_millis(100))
                    .await
                    .expect("poll"),
            );
        }
        // Anything beyond what was expected shows as a failed count in the caller.
        out.extend(
            sub.poll(100, Duration::from_millis(50))
                .await
                .expect("poll"),
        );
        out
    }

    /// Poll `cond` until it holds, moving the manual clock by `step` each round (retries,
    /// breaker and pause timers run on it). Panics with `what` at the real-time deadline.
    pub async fn eventually(
        &self,
        step: chrono::Duration,
        what: &str,
        mut cond: impl FnMut() -> bool,
    ) {
        let started = Instant::now();
        while !cond() {
            if started.elapsed() > DEADLINE {
                panic!("timed out waiting for: {what}");
            }
            self.clock.advance(step);
            tokio::time::sleep(POLL).await;
        }
    }

    /// Like `eventually`, for conditions that need the bus.
    pub async fn eventually_async<F, Fut>(&self, step: chrono::Duration, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !cond().await {
            if started.elapsed() > DEADLINE {
                panic!("timed out waiting for: {what}");
            }
            self.clock.advance(step);
            tokio::time::sleep(POLL).await;
        }
    }

    /// Run the manual clock forward by `total` in steps, letting the system react between.
    pub async fn pass(&self, total: chrono::Duration, step: chrono::Duration) {
        let until = self.clock_now() + total;
        while self.clock_now() < until {
            self.clock.advance(step);
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        use enrollstream_ports::Clock;
        self.clock.now()
    }
}

pub struct Runner {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Runner {
    /// Graceful stop: lanes stop, finished work is committed, the group is left.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("runner ended cleanly");
    }

    /// A crash: the task dies wherever it is, nothing more is committed.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub async fn logic_apps(sig: &str) -> (Fake<LogicApps>, Arc<dyn Target>) {
    logic_apps_with(sig, quick_http()).await
}

/// For tests that hold the clock still: a call must not time out on a busy machine, since its
/// retry would wait for the clock.
pub async fn patient_logic_apps(sig: &str) -> (Fake<LogicApps>, Arc<dyn Target>) {
    let http = HttpSettings {
        timeout: Duration::from_secs(60),
        ..HttpSettings::default()
    };
    logic_apps_with(sig, http).await
}

async fn logic_apps_with(sig: &str, http: HttpSettings) -> (Fake<LogicApps>, Arc<dyn Target>) {
    let fake = Fake::logic_apps(sig, None).await;
    let mut config = LogicAppsConfig::new(fake.trigger_url());
    config.http = http;
    let target = LogicAppsTarget::new(&config, Arc::new(enrollstream_ports::SystemClock))
        .expect("logic apps target");
    (fake, Arc::new(target))
}

/// The notifications in `outbox` routed to `target`.
pub fn routed_to<'a>(outbox: &'a [OutboxMessage], target: &str) -> Vec<&'a OutboxMessage> {
    outbox
        .iter()
        .filter(|m| {
            m.event
                .extensions
                .get("routingtargets")
                .and_then(|v| v.as_str())
                .is_some_and(|v| v.split(',').any(|t| t == target))
        })
        .collect()
}

/// Every notification applied exactly once, under exactly one key, and in version order per
/// entity.
pub fn assert_applied_once<R: enrollstream_testkit::targets::Role>(
    fake: &Fake<R>,
    expected: &[&OutboxMessage],
) {
    for m in expected {
        assert_eq!(
            fake.times_applied(&m.id),
            1,
            "notification {} ({}) applied {} times",
            m.id,
            m.event.ty,
            fake.times_applied(&m.id)
        );
        assert_eq!(fake.keys_of(&m.id).len(), 1, "one key per notification");
    }
    assert_eq!(fake.applied_count(), expected.len(), "nothing else applied");
    for (entity, versions) in fake.versions_by_entity() {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{entity} applied out of order: {versions:?}"
        );
    }
}
