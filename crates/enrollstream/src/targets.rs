//! The delivery roles' runners: one per configured target, and the lead integration.

use enrollstream_ports::{EventBus, HealthRegistry, SystemClock};
use enrollstream_runners::{deliveries, leads};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::cli::Role;
use crate::config::Config;
use crate::supervise::Roles;
use crate::topics::notification_topics;

/// One delivery runner per configured target; a target without configuration is simply not
/// delivered to (its notifications wait on the topic, so configuring it later catches up).
pub(crate) fn spawn_deliveries(
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
