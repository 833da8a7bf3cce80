//! The delivery log's wiring: beside the read model, in the same engine (on MongoDB through the
//! store's client, collection `deliveries`; on SQLite in `deliveries.db` of the data
//! directory). Opened where the deliveries role journals to it or the API lists it.

use anyhow::Context;
use enrollstream_ports::{Clock, DeliveryLog, SystemClock};
use enrollstream_runners::deliveries;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::adapters::Adapters;
use crate::cli::Role;
use crate::config::Config;

/// The log, and the journal the delivery runners write it through.
pub(crate) struct Opened {
    pub log: Option<Arc<dyn DeliveryLog>>,
    pub journal: Option<deliveries::Journal>,
}

pub(crate) async fn open(
    config: &Config,
    adapters: &Adapters,
    roles: &[Role],
    shutdown: &CancellationToken,
) -> anyhow::Result<Opened> {
    let journals = roles.contains(&Role::Deliveries);
    if !journals && !roles.contains(&Role::Api) {
        return Ok(Opened {
            log: None,
            journal: None,
        });
    }
    let log: Arc<dyn DeliveryLog> = match &adapters.mongodb {
        Some(store) => Arc::new(
            store
                .delivery_log()
                .await
                .context("cannot open the delivery log in MongoDB")?,
        ),
        None => Arc::new(
            enrollstream_sqlite::deliveries::SqliteDeliveryLog::open(&config.data_dir)
                .with_context(|| {
                    format!(
                        "cannot open the delivery log in {}",
                        config.data_dir.display()
                    )
                })?,
        ),
    };
    let journal = journals.then(|| {
        // Neither the drain nor the purge is a role: nothing waits for them at shutdown, and
        // a delivery log that fails never stops the process.
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        tokio::spawn(deliveries::run_purge(log.clone(), clock, shutdown.clone()));
        deliveries::Journal::start(log.clone(), deliveries::JOURNAL_CAPACITY)
    });
    Ok(Opened {
        log: Some(log),
        journal,
    })
}
