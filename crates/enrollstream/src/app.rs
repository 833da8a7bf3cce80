//! Wiring: picks the adapters, provisions topics, starts the roles, and shuts down gracefully.

use anyhow::Context;
use enrollstream_api::{ops_router, router, ApiState};
use enrollstream_domain::routing::{LOGIC_APPS, SALESFORCE};
use enrollstream_ports::{EventBus, HealthRegistry, Store, SystemClock, TopicSpec};
use enrollstream_runners::backlog::BacklogSampler;
use enrollstream_runners::consumer::{ConsumerLoop, ConsumerSettings};
use enrollstream_runners::fence::ProjectorFence;
use enrollstream_runners::projector::{self, Projector};
use enrollstream_runners::relay::Relay;
use enrollstream_runners::reminders;
use enrollstream_runners::{deliveries, leads};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::cli::Role;
use crate::config::Config;
use crate::supervise::Roles;

/// How long a projector's or a rebuild's lease lasts without renewal: a rebuild can start this
/// long after the last projector stopped.
pub(crate) const FENCE_TTL: Duration = Duration::from_secs(30);

/// The adapters under every role.
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    /// The store again when it is MongoDB: the reminder store shares its client.
    pub(crate) mongodb: Option<Arc<enrollstream_mongodb::MongoStore>>,
    /// Held for the life of the process: the embedded adapters serve one process only.
    _lock: Option<File>,
}

pub async fn open_adapters(config: &Config) -> anyhow::Result<Adapters> {
    open_adapters_locked(config, DataDirLock::Exclusive).await
}

/// Which lock of the data directory a process takes on the embedded engines.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DataDirLock {
    /// `LOCK`: the one process that runs roles or an operation that must run alone.
    Exclusive,
    /// `REBUILD.LOCK`: a rebuild into a shadow copy, beside a running `serve` (SQLite
    /// serialises the two processes' writes; one rebuild at a time).
    Rebuild,
}

pub async fn open_adapters_locked(config: &Config, which: DataDirLock) -> anyhow::Result<Adapters> {
    let embedded = config.kafka.is_none() || config.mongodb.is_none();
    let lock = if embedded {
        Some(lock_data_dir(config, which)?)
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
    journal: Option<deliveries::Journal>,
    health: &HealthRegistry,
    shutdown: &CancellationToken,
    tasks: &mut Roles,
) -> anyhow::Result<()> {
    let clock: Arc<dyn enrollstream_ports::Clock> = Arc::new(SystemClock);
    let notification_topics = notification_topics(config);
    let prepare = |mut d: deliveries::DeliverySettings| {
        d.topics = notification_topics.clone();
        d.dlq_suffix = config.topics.dlq_suffix.clone();
        d.dlq_partitions = config.partitions;
        d.dlq_replication = config.replication;
        d
    };
    let mut run_target = |target: Arc<dyn enrollstream_ports::target::Target>,
                          settings: deliveries::DeliverySettings| {
        tasks.spawn(
            format!("deliveries:{}", target.name()),
            deliveries::run_journaled(
                bus.clone(),
                target,
                settings,
                clock.clone(),
                health.clone(),
                shutdown.clone(),
                journal.clone(),
            ),
        );
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
                tasks.spawn("leads:producer", leads::run_producer(bus.clone(), producer, config.topics.dlq_suffix.clone(), health.clone(), shutdown.clone()));
                let target = enrollstream_targets::LeadManagementTarget::new(&s.target, clock.clone()).map_err(|e| anyhow::anyhow!("lead_management: {e}"))?;
                let mut delivery = s.delivery.clone();
                delivery.dlq_suffix = config.topics.dlq_suffix.clone();
                delivery.dlq_partitions = config.partitions;
                delivery.dlq_replication = config.replication;
                let topic = config.topics.lead_integration_events.clone();
                let (bus, clock, health, shutdown, journal) = (bus.clone(), clock.clone(), health.clone(), shutdown.clone(), journal.clone());
                tasks.spawn("leads:integration", async move {
                    leads::run_integration(bus, Arc::new(target), delivery, &topic, clock, health, shutdown, journal).await;
                });
            }
            None => tracing::info!("Lead Management is not configured ([deliveries.lead_management]): no lead integration"),
        }
    }
    Ok(())
}

/// Where API keys live: beside the read model, in the same engine (on MongoDB, through the
/// store's client; on SQLite, in `credentials.db`, which `api-key create` writes beside us).
async fn open_credentials(
    config: &Config,
    adapters: &Adapters,
) -> anyhow::Result<Arc<dyn enrollstream_ports::CredentialStore>> {
    match &adapters.mongodb {
        Some(store) => Ok(Arc::new(
            store
                .credential_store()
                .await
                .context("cannot open the API keys in MongoDB")?,
        )),
        None => crate::keys::open(config).await,
    }
}

/// The authenticator of the API; says loudly when nothing can get in, or everything can.
async fn authenticator(
    config: &Config,
    adapters: &Adapters,
    serves_api: bool,
) -> anyhow::Result<Arc<enrollstream_api::Authenticator>> {
    use enrollstream_api::auth::AuthMode;
    let keys = open_credentials(config, adapters).await?;
    if serves_api && config.api.auth == AuthMode::On && config.auth.jwt.is_none() {
        let active = keys
            .api_keys()
            .await
            .context("cannot read the API keys")?
            .iter()
            .filter(|k| k.revoked_at.is_none())
            .count();
        if active == 0 {
            tracing::warn!("no API key exists: every request but /healthz and /readyz is refused with 401; create one with `enrollstream api-key create --name NAME --scope admin`");
        }
    }
    let clock: Arc<dyn enrollstream_ports::Clock> = Arc::new(SystemClock);
    let auth = enrollstream_api::Authenticator::new(config.api.auth, &config.auth, keys, clock)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(Arc::new(auth))
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

pub(crate) fn mongo_settings(
    m: &crate::config::MongoConfig,
) -> enrollstream_mongodb::MongoSettings {
    enrollstream_mongodb::MongoSettings {
        server_selection_timeout: Duration::from_millis(m.server_selection_timeout_ms),
        operation_timeout: Duration::from_millis(m.operation_timeout_ms),
        ..Default::default()
    }
}

/// The embedded adapters serve one process: a second one on the same directory is refused
/// (but for one shadow rebuild beside it).
fn lock_data_dir(config: &Config, which: DataDirLock) -> anyhow::Result<File> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let name = match which {
        DataDirLock::Exclusive => "LOCK",
        DataDirLock::Rebuild => "REBUILD.LOCK",
    };
    let lock_path = config.data_dir.join(name);
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        if which == DataDirLock::Rebuild {
            return anyhow::anyhow!(
                "another rebuild runs on data dir {}",
                config.data_dir.display()
            );
        }
        anyhow::anyhow!(
            "data dir {} is in use by another enrollstream process; the embedded adapters serve one \
             process, so to run roles in separate processes use Kafka and MongoDB",
            config.data_dir.display()
        )
    })?;
    Ok(lock)
}

/// Every topic the system publishes to or reads from, dead-letter topics included.
fn topic_specs(config: &Config) -> anyhow::Result<Vec<TopicSpec>> {
    let mut names = config.topics.all();
    for t in config.routing.topics() {
        for name in [t.clone(), config.topics.dlq(&t)] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let events = event_topics(config);
    let retention = config.event_topic_retention()?;
    Ok(names
        .into_iter()
        .map(|name| TopicSpec {
            retention: events.contains(&name).then_some(retention),
            name,
            partitions: config.partitions,
            replication: config.replication,
        })
        .collect())
}

pub(crate) fn event_topics(config: &Config) -> Vec<String> {
    vec![
        config.topics.enrollment_events.clone(),
        config.topics.quote_events.clone(),
    ]
}

fn notification_topics(config: &Config) -> Vec<String> {
    vec![
        config.topics.enrollment_notifications.clone(),
        config.topics.quote_notifications.clone(),
    ]
}

pub async fn serve(config: Config, roles: &[Role]) -> anyhow::Result<()> {
    let metrics = crate::telemetry::init_metrics()?;
    let adapters = open_adapters(&config).await?;
    let Adapters { store, bus, .. } = &adapters;
    bus.ensure_topics(&topic_specs(&config)?)
        .await
        .context("cannot provision topics")?;

    let shutdown = CancellationToken::new();
    let health = HealthRegistry::default();
    let mut tasks = Roles::new(health.clone());
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
                limits: Arc::new(config.limits.clone()),
                fence: Some(ProjectorFence::new(
                    store.clone(),
                    Arc::new(SystemClock),
                    FENCE_TTL,
                )),
            },
            settings,
            health: health.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.spawn("projector", consumer.run());
    }
    if roles.contains(&Role::Relay) {
        let relay = Relay {
            store: store.clone(),
            bus: bus.clone(),
            health: health.clone(),
            shutdown: shutdown.clone(),
            batch_size: config.relay.batch_size,
            idle_wait: Duration::from_secs(1),
            max_message_bytes: config.relay.max_message_bytes,
            dlq_suffix: config.topics.dlq_suffix.clone(),
        };
        tasks.spawn("relay", relay.run());
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
        let consumer = reminders::ReminderConsumer::new(
            reminder_db.clone(),
            &config.reminders,
            clock.clone(),
            Some(reminders::gate::ProjectorGate {
                store: store.clone(),
                clock: clock.clone(),
                bus: bus.clone(),
                patience: Duration::from_secs(5),
            }),
        );
        tasks.spawn(
            "reminders:consumer",
            reminders::run_consumer(
                bus.clone(),
                consumer,
                config.topics.clone(),
                health.clone(),
                shutdown.clone(),
            ),
        );
        let scheduler = reminders::Scheduler::new(
            reminder_db.clone(),
            mailer,
            composer,
            bus.publisher(),
            &config.topics,
            clock,
            config.reminders.clone(),
        );
        tasks.spawn(
            "reminders:scheduler",
            reminders::run_scheduler(scheduler, health.clone(), shutdown.clone()),
        );
    }
    let delivery_log = crate::delivery_log::open(&config, &adapters, roles, &shutdown).await?;
    if roles.contains(&Role::Deliveries) || roles.contains(&Role::Leads) {
        let journal = delivery_log.journal.clone();
        spawn_deliveries(&config, roles, bus, journal, &health, &shutdown, &mut tasks)?;
    }
    tasks.spawn(
        "backlog",
        backlog_sampler(&config, roles, &adapters, reminder_store.clone(), &shutdown).run(),
    );
    // Every process listens: without the API role it serves only the probes and metrics.
    {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let auth = authenticator(&config, &adapters, roles.contains(&Role::Api)).await?;
        let state = ApiState {
            auth,
            store: store.clone(),
            bus: bus.clone(),
            clock: Arc::new(SystemClock),
            health: health.clone(),
            metrics: Arc::new(move || metrics.render()),
            config: Arc::new(config.api.clone()),
            reminders: reminder_store.clone(),
            deliveries: delivery_log.log.clone(),
            dead_letters: match roles.contains(&Role::Api) {
                true => Some(Arc::new(crate::dlq::service(&config, &adapters).await?)),
                false => None,
            },
        };
        let app = if roles.contains(&Role::Api) {
            router(state)
        } else {
            ops_router(state)
        };
        let stop = shutdown.clone();
        let header_read_timeout = config.api.limits.header_read_timeout;
        tasks.spawn("http", async move {
            enrollstream_api::server::serve(listener, app, header_read_timeout, async move {
                stop.cancelled().await
            })
            .await;
        });
        // A line on stdout, for people and for tests that start the binary on port 0.
        println!("enrollstream listening on http://{addr}");
        tracing::info!(%addr, "API listening");
    }

    let down = tokio::select! {
        _ = wait_for_signal(&shutdown) => None,
        down = tasks.first_down() => Some(down),
    };
    if let Some((role, how)) = &down {
        tasks.down(role, how);
        tracing::error!(%role, %how, "a role is down: stopping the others and exiting non-zero, so that the process is restarted whole");
    } else {
        tracing::info!("shutting down: finishing in-flight work");
    }
    shutdown.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(30), tasks.drain()).await;
    if drained.is_err() {
        tracing::warn!(
            "some roles did not stop within 30 s; exiting anyway (uncommitted work is redelivered)"
        );
    }
    match down {
        Some((role, how)) => Err(anyhow::anyhow!("role {role} stopped: {how}")),
        None => Ok(()),
    }
}

/// Lag of the groups this process runs, every dead-letter depth, and the outbox where the
/// relay runs.
fn backlog_sampler(
    config: &Config,
    roles: &[Role],
    adapters: &Adapters,
    reminders: Option<Arc<dyn enrollstream_ports::reminders::ReminderStore>>,
    shutdown: &CancellationToken,
) -> BacklogSampler {
    let events = event_topics(config);
    let notifications = notification_topics(config);
    let mut groups = Vec::new();
    if roles.contains(&Role::Projector) {
        groups.push((projector::GROUP.to_string(), events.clone()));
    }
    if roles.contains(&Role::Reminders) {
        let topics = vec![config.topics.enrollment_events.clone()];
        groups.push((enrollstream_runners::reminders::GROUP.to_string(), topics));
    }
    let mut dlq_topics: Vec<String> = events
        .iter()
        .chain(&notifications)
        .map(|t| config.topics.dlq(t))
        .collect();
    if roles.contains(&Role::Deliveries) {
        let d = &config.deliveries;
        let targets = [
            d.logic_apps.as_ref().map(|s| (LOGIC_APPS, &s.delivery)),
            d.salesforce.as_ref().map(|s| (SALESFORCE, &s.delivery)),
        ];
        for (name, delivery) in targets.into_iter().flatten() {
            let mut delivery = delivery.clone();
            delivery.dlq_suffix = config.topics.dlq_suffix.clone();
            groups.push((delivery.group_for(name), notifications.clone()));
            dlq_topics.extend(notifications.iter().map(|t| delivery.dlq_topic(t, name)));
        }
    }
    BacklogSampler {
        bus: adapters.bus.clone(),
        store: roles.contains(&Role::Relay).then(|| adapters.store.clone()),
        reminders: reminders.filter(|_| roles.contains(&Role::Reminders)),
        clock: Arc::new(SystemClock),
        groups,
        dlq_topics,
        every: config.telemetry.sample_every,
        shutdown: shutdown.clone(),
    }
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
