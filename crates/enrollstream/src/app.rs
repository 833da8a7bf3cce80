//! Wiring: picks the adapters, provisions topics, starts the roles, and shuts down gracefully.

use anyhow::Context;
use enrollstream_api::{ops_router, router, ApiState};
use enrollstream_domain::routing::{LOGIC_APPS, SALESFORCE};
use enrollstream_ports::{HealthRegistry, SystemClock};
use enrollstream_runners::backlog::BacklogSampler;
use enrollstream_runners::consumer::{ConsumerLoop, ConsumerSettings};
use enrollstream_runners::fence::ProjectorFence;
use enrollstream_runners::projector::{self, Projector};
use enrollstream_runners::relay::Relay;
use enrollstream_runners::reminders;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::adapters::{open_adapters, open_reminders, Adapters};
use crate::cli::Role;
use crate::config::Config;
use crate::keys::authenticator;
use crate::supervise::Roles;
use crate::targets::spawn_deliveries;
use crate::topics::{event_topics, notification_topics, topic_specs};

/// How long a projector's or a rebuild's lease lasts without renewal: a rebuild can start this
/// long after the last projector stopped.
pub(crate) const FENCE_TTL: Duration = Duration::from_secs(30);

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
                strikes: Default::default(),
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
