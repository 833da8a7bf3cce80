//! Which engines serve the roles: the embedded ones (SQLite store and bus in the data directory,
//! under its lock) or MongoDB and Kafka, and the stores that live beside the read model.

use anyhow::Context;
use enrollstream_ports::{EventBus, Store};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;

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

/// Where reminder state lives: beside the read model, in the same engine (on MongoDB, through
/// the store's client).
pub(crate) async fn open_reminders(
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
        lookups: m.lookups,
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
