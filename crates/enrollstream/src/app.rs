//! Wiring: picks the adapters, provisions topics, starts the roles, and shuts down gracefully.

use anyhow::Context;
use enrollstream_api::{ops_router, router, ApiState};
use enrollstream_ports::{
    EventBus, HealthRegistry, StartFrom, Store, SubscriptionSpec, SystemClock, TopicSpec,
};
use enrollstream_runners::consumer::{ConsumerLoop, ConsumerSettings};
use enrollstream_runners::dead_letter;
use enrollstream_runners::projector::{self, Projector};
use enrollstream_runners::relay::Relay;
use enrollstream_runners::reminders;
use enrollstream_runners::{deliveries, leads};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::{DlqCommand, Role};
use crate::config::Config;

/// The adapters under every role.
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    /// The store again when it is MongoDB: the reminder store shares its client.
    mongodb: Option<Arc<enrollstream_mongodb::MongoStore>>,
    /// Held for the life of the process: the embedded adapters serve one process only.
    _lock: Option<File>,
}

pub async fn open_adapters(config: &Config) -> anyhow::Result<Adapters> {
    let embedded = config.kafka.is_none() || config.mongodb.is_none();
    let lock = if embedded {
        Some(lock_data_dir(config)?)
    } else {
        None
    };
    let mongodb = match &config.mongodb {
        Some(m) => Some(Arc::new(
            enrollstream_mongodb::MongoStore::connect_with(&m.uri, &m.database, mongo_settings(m))
                .await
                .with_context(|| {
                    format!(
                        "cannot connect to MongoDB at {}",
                        crate::config::redact_uri(&m.uri)
                    )
                })?,
        )),
        None => None,
    };
    let store: Arc<dyn Store> = match &mongodb {
        Some(store) => store.clone(),
        None => Arc::new(
            enrollstream_sqlite::store::SqliteStore::open(&config.data_dir).with_context(|| {
                format!("cannot open the store in {}", config.data_dir.display())
            })?,
        ),
    };
    let bus: Arc<dyn EventBus> = match &config.kafka {
        Some(k) => {
            let mut k = k.clone();
            k.partitions = config.partitions;
            k.replication = config.replication;
            Arc::new(
                enrollstream_kafka::KafkaBus::new(k).context("cannot configure the Kafka bus")?,
            )
        }
        None => Arc::new(
            enrollstream_sqlite::bus::EmbeddedBus::open(&config.data_dir, config.partitions)
                .with_context(|| {
                    format!(
                        "cannot open the embedded bus in {}",
                        config.data_dir.display()
                    )
                })?,
        ),
    };
    Ok(Adapters {
        store,
        bus,
        mongodb,
        _lock: lock,
    })
}

/// One delivery runner per configured target; a target without configuration is simply not
/// delivered to (its notifications wait on the topic, so configuring it later catches up).
fn spawn_deliveries(
    config: &Config,
    roles: &[Role],
    bus: &Arc<dyn EventBus>,
    health: &HealthRegistry,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let clock: Arc<dyn enrollstream_ports::Clock> = Arc::new(SystemClock);
    let notification_topics = vec![
        config.topics.enrollment_notifications.clone(),
        config.topics.quote_notifications.clone(),
    ];
    let prepare = |mut d: deliveries::DeliverySettings| {
        d.topics = notification_topics.clone();
        d.dlq_suffix = config.topics.dlq_suffix.clone();
        d.dlq_partitions = config.partitions;
        d.dlq_replication = config.replication;
        d
    };
    let mut run_target = |target: Arc<dyn enrollstream_ports::target::Target>,
                          settings: deliveries::DeliverySettings| {
        tasks.spawn(deliveries::run(
            bus.clone(),
            target,
            settings,
            clock.clone(),
            health.clone(),
            shutdown.clone(),
        ));
    };
    if roles.contains(&Role::Deliveries) {
        let d = &config.deliveries;
        if let Some(s) = &d.logic_apps {
            let target = enrollstream_targets::LogicAppsTarget::new(&s.target, clock.clone())
                .map_err(|e| anyhow::anyhow!("logic_apps: {e}"))?;
            run_target(Arc::new(target), prepare(s.delivery.clone()));
        }
        if let Some(s) = &d.salesforce {
            let target = enrollstream_targets::SalesforceTarget::new(&s.target, clock.clone())
                .map_err(|e| anyhow::anyhow!("salesforce: {e}"))?;
            run_target(Arc::new(target), prepare(s.delivery.clone()));
        }
        if d.logic_apps.is_none() && d.salesforce.is_none() {
            tracing::info!("no delivery target configured ([deliveries.logic_apps], [deliveries.salesforce]): nothing to deliver");
        }
    }
    if roles.contains(&Role::Leads) {
        match &config.deliveries.lead_management {
            Some(s) => {
                let mut producer = s.producer.clone();
                producer.topics = notification_topics.clone();
                producer.output_topic = config.topics.lead_integration_events.clone();
                tasks.spawn(leads::run_producer(bus.clone(), producer, health.clone(), shutdown.clone()));
                let target = enrollstream_targets::LeadManagementTarget::new(&s.target, clock.clone()).map_err(|e| anyhow::anyhow!("lead_management: {e}"))?;
                let mut delivery = s.delivery.clone();
                delivery.dlq_suffix = config.topics.dlq_suffix.clone();
                delivery.dlq_partitions = config.partitions;
                delivery.dlq_replication = config.replication;
                let topic = config.topics.lead_integration_events.clone();
                let (bus, clock, health, shutdown) = (bus.clone(), clock.clone(), health.clone(), shutdown.clone());
                tasks.spawn(async move {
                    leads::run_integration(bus, Arc::new(target), delivery, &topic, clock, health, shutdown).await;
                });
            }
            None => tracing::info!("Lead Management is not configured ([deliveries.lead_management]): no lead integration"),
        }
    }
    Ok(())
}

/// Where reminder state lives: beside the read model, in the same engine (on MongoDB, through
/// the store's client).
async fn open_reminders(
    config: &Config,
    adapters: &Adapters,
) -> anyhow::Result<Arc<dyn enrollstream_ports::reminders::ReminderStore>> {
    Ok(match &adapters.mongodb {
        Some(store) => Arc::new(
            store
                .reminder_store()
                .await
                .context("cannot open the reminder store in MongoDB")?,
        ),
        None => Arc::new(
            enrollstream_sqlite::reminders::SqliteReminderStore::open(&config.data_dir)
                .with_context(|| {
                    format!(
                        "cannot open the reminder store in {}",
                        config.data_dir.display()
                    )
                })?,
        ),
    })
}

fn mongo_settings(m: &crate::config::MongoConfig) -> enrollstream_mongodb::MongoSettings {
    enrollstream_mongodb::MongoSettings {
        server_selection_timeout: Duration::from_millis(m.server_selection_timeout_ms),
        operation_timeout: Duration::from_millis(m.operation_timeout_ms),
        ..Default::default()
    }
}

/// The embedded adapters serve one process: a second one on the same directory is refused.
fn lock_data_dir(config: &Config) -> anyhow::Result<File> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let lock_path = config.data_dir.join("LOCK");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "data dir {} is in use by another enrollstream process; the embedded adapters serve one \
             process, so to run roles in separate processes use Kafka and MongoDB",
            config.data_dir.display()
        )
    })?;
    Ok(lock)
}

/// Every topic the system publishes to or reads from, dead-letter topics included.
fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    let mut names = config.topics.all();
    for t in config.routing.topics() {
        for name in [t.clone(), config.topics.dlq(&t)] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .map(|name| TopicSpec {
            name,
            partitions: config.partitions,
            replication: config.replication,
        })
        .collect()
}

fn event_topics(config: &Config) -> Vec<String> {
    vec![
        config.topics.enrollment_events.clone(),
        config.topics.quote_events.clone(),
    ]
}

pub async fn serve(config: Config, roles: &[Role]) -> anyhow::Result<()> {
    let metrics = crate::telemetry::init_metrics()?;
    let adapters = open_adapters(&config).await?;
    let Adapters { store, bus, .. } = &adapters;
    bus.ensure_topics(&topic_specs(&config))
        .await
        .context("cannot provision topics")?;

    let shutdown = CancellationToken::new();
    let health = HealthRegistry::default();
    let mut tasks = JoinSet::new();
    tracing::info!(?roles, store = store.name(), bus = bus.name(), data_dir = %config.data_dir.display(), "starting");

    if roles.contains(&Role::Projector) {
        let mut settings = ConsumerSettings::new(projector::GROUP, event_topics(&config));
        settings.batch_size = config.projector.batch_size;
        settings.dlq_suffix = config.topics.dlq_suffix.clone();
        let consumer = ConsumerLoop {
            bus: bus.clone(),
            handler: Projector {
                store: store.clone(),
                rules: Arc::new(config.routing.clone()),
                replay: None,
            },
            settings,
            health: health.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.spawn(consumer.run());
    }
    if roles.contains(&Role::Relay) {
        let relay = Relay {
            store: store.clone(),
            bus: bus.clone(),
            health: health.clone(),
            shutdown: shutdown.clone(),
            batch_size: config.relay.batch_size,
            idle_wait: Duration::from_secs(1),
        };
        tasks.spawn(relay.run());
    }
    // Only the reminders role and the API (which shows an application's reminder) use it.
    let reminder_store = if roles.contains(&Role::Reminders) || roles.contains(&Role::Api) {
        Some(open_reminders(&config, &adapters).await?)
    } else {
        None
    };
    if let Some(reminder_db) = reminder_store
        .as_ref()
        .filter(|_| roles.contains(&Role::Reminders))
    {
        let clock: Arc<dyn enrollstream_ports::Clock> = Arc::new(SystemClock);
        let mailer = config
            .mail
            .mailer(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("mail: {}", e.0))?;
        let composer = config
            .mail
            .composer()
            .map_err(|e| anyhow::anyhow!("mail: {}", e.0))?;
        tasks.spawn(reminders::run_consumer(
            bus.clone(),
            reminder_db.clone(),
            config.reminders.clone(),
            config.topics.clone(),
            clock.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        let scheduler = reminders::Scheduler::new(
            reminder_db.clone(),
            mailer,
            composer,
            bus.publisher(),
            &config.topics,
            clock,
            config.reminders.clone(),
        );
        tasks.spawn(reminders::run_scheduler(
            scheduler,
            health.clone(),
            shutdown.clone(),
        ));
    }
    if roles.contains(&Role::Deliveries) || roles.contains(&Role::Leads) {
        spawn_deliveries(&config, roles, bus, &health, &shutdown, &mut tasks)?;
    }
    // Every process listens: without the API role it serves only the probes and metrics.
    {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let state = ApiState {
            store: store.clone(),
            bus: bus.clone(),
            clock: Arc::new(SystemClock),
            health: health.clone(),
            metrics: Arc::new(move || metrics.render()),
            config: Arc::new(config.api.clone()),
            reminders: reminder_store.clone(),
        };
        let app = if roles.contains(&Role::Api) {
            router(state)
        } else {
            ops_router(state)
        };
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the HTTP server failed");
            }
        });
        // A line on stdout, for people and for tests that start the binary on port 0.
        println!("enrollstream listening on http://{addr}");
        tracing::info!(%addr, "API listening");
    }

    wait_for_signal(&shutdown).await;
    tracing::info!("shutting down: finishing in-flight work");
    shutdown.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "some roles did not stop within 30 s; exiting anyway (uncommitted work is redelivered)"
        );
    }
    Ok(())
}

async fn wait_for_signal(shutdown: &CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; use SIGINT");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = shutdown.cancelled() => {}
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// Read a dead-letter topic from its beginning without committing (inspection) or with the
/// redrive group (redrive), until it has been quiet for a moment.
pub async fn dlq(config: Config, command: DlqCommand) -> anyhow::Result<()> {
    let adapters = open_adapters(&config).await?;
    let bus = adapters.bus.clone();
    let (topic, redrive) = match &command {
        DlqCommand::List { topic, .. } => (topic.clone(), false),
        DlqCommand::Redrive { topic } => (topic.clone(), true),
    };
    let dlq_topic = config.topics.dlq(&topic);
    let spec = if redrive {
        SubscriptionSpec {
            group: "dlq-redrive".into(),
            topics: vec![dlq_topic.clone()],
            start: StartFrom::Committed,
            client_id: "dlq-redrive".into(),
        }
    } else {
        SubscriptionSpec {
            group: format!("dlq-inspect-{}", enrollstream_domain::ids::new_id()),
            topics: vec![dlq_topic.clone()],
            start: StartFrom::Earliest,
            client_id: "dlq-inspect".into(),
        }
    };
    let limit = match command {
        DlqCommand::List { limit, .. } => limit,
        DlqCommand::Redrive { .. } => usize::MAX,
    };
    let mut sub = bus.subscribe(spec).await?;
    let publisher = bus.publisher();
    let mut seen = 0usize;
    // Wait for an assignment first (a Kafka group join takes seconds), then read until quiet.
    let joined_by = tokio::time::Instant::now() + Duration::from_secs(60);
    while sub.assignment().is_empty() && tokio::time::Instant::now() < joined_by {
        let batch = sub.poll(100, Duration::from_millis(500)).await?;
        seen += handle_dead_letters(&batch, redrive, limit - seen.min(limit), publisher.as_ref())
            .await?;
        if redrive && !batch.is_empty() {
            sub.commit(&enrollstream_runners::consumer::commit_positions(&batch))
                .await?;
        }
    }
    while seen < limit {
        let batch = sub.poll(100, Duration::from_secs(2)).await?;
        if batch.is_empty() {
            break;
        }
        seen += handle_dead_letters(&batch, redrive, limit - seen, publisher.as_ref()).await?;
        if redrive {
            sub.commit(&enrollstream_runners::consumer::commit_positions(&batch))
                .await?;
        }
    }
    sub.close().await?;
    eprintln!(
        "{} {seen} dead letter(s) of {dlq_topic}",
        if redrive { "redrove" } else { "listed" }
    );
    Ok(())
}

async fn handle_dead_letters(
    batch: &[enrollstream_ports::InboundMessage],
    redrive: bool,
    room: usize,
    publisher: &dyn enrollstream_ports::Publisher,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for m in batch.iter().take(room) {
        if redrive {
            let (topic, original) = dead_letter::redrive_message(m).with_context(|| {
                format!(
                    "dead letter at offset {} has no {} header",
                    m.offset,
                    dead_letter::ORIGINAL_TOPIC
                )
            })?;
            publisher.publish(&topic, vec![original]).await?;
        } else {
            let payload: serde_json::Value =
                serde_json::from_slice(&m.payload).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&m.payload).into_owned())
                });
            let line = serde_json::json!({
                "dlq_offset": m.offset,
                "dlq_partition": m.partition,
                "key": m.key,
                "reason": m.header(dead_letter::REASON),
                "error": m.header(dead_letter::ERROR),
                "original_topic": m.header(dead_letter::ORIGINAL_TOPIC),
                "original_partition": m.header(dead_letter::ORIGINAL_PARTITION),
                "original_offset": m.header(dead_letter::ORIGINAL_OFFSET),
                "failed_at": m.header(dead_letter::FAILED_AT),
                "consumer_group": m.header(dead_letter::CONSUMER_GROUP),
                "headers": m.headers.iter().filter(|(k, _)| !k.starts_with("dlq_")).collect::<Vec<_>>(),
                "payload": payload,
            });
            println!("{line}");
        }
        n += 1;
    }
    Ok(n)
}

/// Rebuild the read model from the event topics. Events the projector group had already
/// committed are replayed without side effects (their notifications were published before);
/// anything after that is projected normally. Refuses while the outbox still holds unpublished
/// messages, since the reset would drop them.
pub async fn rebuild(config: Config) -> anyhow::Result<()> {
    let adapters = open_adapters(&config).await?;
    let Adapters { store, bus, .. } = &adapters;
    let backlog = store.outbox_backlog().await?;
    anyhow::ensure!(
        backlog == 0,
        "the outbox still holds {backlog} unpublished message(s); run the relay until it drains, then rebuild"
    );
    let topics = event_topics(&config);
    let committed = bus.committed(projector::GROUP, &topics).await?;
    let replay_below: std::collections::HashMap<(String, i32), i64> = committed
        .iter()
        .map(|c| ((c.topic.clone(), c.partition), c.next_offset))
        .collect();
    store.reset_read_model().await?;
    let group = format!("read-model-rebuild-{}", enrollstream_domain::ids::new_id());
    let mut sub = bus
        .subscribe(SubscriptionSpec {
            group: group.clone(),
            topics: topics.clone(),
            start: StartFrom::Earliest,
            client_id: group.clone(),
        })
        .await?;
    let mut projector = Projector {
        store: store.clone(),
        rules: Arc::new(config.routing.clone()),
        replay: Some(replay_below.clone()),
    };
    let mut progress: std::collections::HashMap<(String, i32), i64> = Default::default();
    let done = |progress: &std::collections::HashMap<(String, i32), i64>| {
        replay_below
            .iter()
            .all(|(k, target)| progress.get(k).copied().unwrap_or(0) >= *target)
    };
    let mut applied = 0usize;
    let deadline_quiet = Duration::from_secs(5);
    while !done(&progress) {
        let batch = sub.poll(500, deadline_quiet).await?;
        if batch.is_empty() && !sub.assignment().is_empty() {
            anyhow::bail!("the event topics ended before the committed offsets of {}: {progress:?} < {replay_below:?}", projector::GROUP);
        }
        use enrollstream_runners::consumer::BatchHandler;
        let outcomes = projector
            .handle(&batch)
            .await
            .map_err(|e| anyhow::anyhow!(e.0))?;
        applied += outcomes.len();
        for m in &batch {
            let e = progress.entry((m.topic.clone(), m.partition)).or_insert(0);
            *e = (*e).max(m.offset + 1);
        }
    }
    sub.close().await?;
    eprintln!("rebuilt the read model from {applied} event(s); the projector continues from its committed offsets");
    Ok(())
}
