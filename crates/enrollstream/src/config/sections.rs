//! The sections of the configuration file besides those a crate of its own defines.

use enrollstream_runners::deliveries::DeliverySettings;
use enrollstream_runners::leads::LeadProducerSettings;
use enrollstream_targets::{LeadManagementConfig, LogicAppsConfig, SalesforceConfig};
use serde::{Deserialize, Serialize};

/// One section per downstream target (`[deliveries.logic_apps.target]`,
/// `[deliveries.logic_apps.delivery]`, …); see docs/integrations.md.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveriesConfig {
    pub logic_apps: Option<TargetSection<LogicAppsConfig>>,
    pub salesforce: Option<TargetSection<SalesforceConfig>>,
    pub lead_management: Option<LeadsSection>,
}

/// The target's own settings (endpoint, auth) and how its deliveries run (concurrency, retries,
/// breaker); nested because the target configs refuse unknown fields.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection<T> {
    pub target: T,
    #[serde(default)]
    pub delivery: DeliverySettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadsSection {
    #[serde(default)]
    pub producer: LeadProducerSettings,
    pub target: LeadManagementConfig,
    #[serde(default)]
    pub delivery: DeliverySettings,
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// `mongodb://…` or `mongodb+srv://…`; MongoDB 6.0+, standalone or replica set.
    pub uri: String,
    pub database: String,
    pub server_selection_timeout_ms: u64,
    pub operation_timeout_ms: u64,
    /// `batched` (MongoDB) or `point` (FerretDB on PostgreSQL): see `enrollstream_mongodb::Lookups`.
    pub lookups: enrollstream_mongodb::Lookups,
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            uri: "mongodb://127.0.0.1:27017".into(),
            database: "enrollstream".into(),
            server_selection_timeout_ms: 2_000,
            operation_timeout_ms: 15_000,
            lookups: enrollstream_mongodb::Lookups::Batched,
        }
    }
}

impl std::fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoConfig")
            .field("uri", &redact_uri(&self.uri))
            .field("database", &self.database)
            .field(
                "server_selection_timeout_ms",
                &self.server_selection_timeout_ms,
            )
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field("lookups", &self.lookups)
            .finish()
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &uri[scheme_end + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &uri[..scheme_end + 3], user, &uri[at..])
        }
        _ => uri.to_string(),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectorConfig {
    pub batch_size: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    pub batch_size: usize,
    /// Largest message the relay publishes (key, headers and payload); a larger one is parked
    /// instead of stopping every notification behind it. Keep it at or below the broker's
    /// limit (librdkafka's `message.max.bytes`, 1000000 by default).
    pub max_message_bytes: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DlqConfig {
    /// A message redriven this many times stays parked when it dead-letters again: a cause
    /// that was not fixed must not loop it (and its side effects) for ever.
    pub max_redrives: u32,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self { max_redrives: 3 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: String,
    /// A tracing filter, e.g. `info,enrollstream_runners=debug`; `RUST_LOG` wins when set.
    pub filter: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// How often the backlog gauges are sampled; each sample queries the bus and the store.
    #[serde(with = "humantime_serde")]
    pub sample_every: std::time::Duration,
    /// Where `serve` sends its spans (OTLP over HTTP, protobuf): the collector's traces URL, or
    /// its base URL (`http://collector:4318`, to which `/v1/traces` is added). Unset: no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// How long one export may take before it is given up (its spans are dropped).
    #[serde(with = "humantime_serde")]
    pub otlp_timeout: std::time::Duration,
    /// Spans held for export at most; beyond it new spans are dropped, never waited for.
    pub otlp_queue_size: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            sample_every: std::time::Duration::from_secs(5),
            otlp_endpoint: None,
            otlp_timeout: std::time::Duration::from_secs(5),
            otlp_queue_size: 2048,
        }
    }
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self { batch_size: 500 }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_message_bytes: 1_000_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            filter: "info".into(),
        }
    }
}
