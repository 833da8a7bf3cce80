//! Configuration: defaults, then a TOML file (`--config`), then `ENROLLSTREAM_*` environment
//! variables (nested keys joined by `__`, e.g. `ENROLLSTREAM_TOPICS__QUOTE_EVENTS`), then flags.

use enrollstream_api::auth::AuthConfig;
use enrollstream_api::ApiConfig;
use enrollstream_domain::limits::Limits;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_kafka::KafkaConfig;
use enrollstream_mail::MailConfig;
use enrollstream_ports::Retention;
use enrollstream_ports::TopicNames;
use enrollstream_runners::deliveries::DeliverySettings;
use enrollstream_runners::leads::LeadProducerSettings;
use enrollstream_runners::reminders::ReminderConfig;
use enrollstream_targets::{LeadManagementConfig, LogicAppsConfig, SalesforceConfig};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::strict::{explain, TOP_LEVEL_KEYS};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Where the embedded adapters keep their files.
    pub data_dir: PathBuf,
    pub topics: TopicNames,
    /// Partitions of the topics created at start-up (existing topics are left alone).
    pub partitions: i32,
    pub replication: i16,
    /// How long the event topics keep their events when enrollstream creates them: "forever"
    /// (the default: they are the source of truth the read model is rebuilt from) or a
    /// duration ("400d"). Other topics keep the broker's default.
    pub event_retention: String,
    pub routing: RoutingRules,
    /// Bounds on every event accepted (API and projector); see docs/events.md.
    pub limits: Limits,
    pub api: ApiConfig,
    /// API keys and JWTs (`[api] auth` turns authentication on or off).
    pub auth: AuthConfig,
    pub projector: ProjectorConfig,
    pub relay: RelayConfig,
    pub log: LogConfig,
    /// Metrics sampling (consumer lag, dead-letter depth, outbox age).
    pub telemetry: TelemetryConfig,
    /// Dead-letter redrive: the loop guard.
    pub dlq: DlqConfig,
    /// Broker signature reminders: interval, attempts, lease, tick.
    pub reminders: ReminderConfig,
    /// How reminder emails leave: a directory of .eml files (default) or SMTP. Not printed: it
    /// may hold the SMTP password.
    #[serde(skip_serializing)]
    pub mail: MailConfig,
    /// Downstream targets; a target without a section is not delivered to. Not printed: the
    /// sections hold credentials and signed URLs.
    #[serde(skip_serializing)]
    pub deliveries: DeliveriesConfig,
    /// Set to run on Kafka instead of the embedded bus. Not printed: it may hold credentials.
    #[serde(skip_serializing)]
    pub kafka: Option<KafkaConfig>,
    /// Set to keep state in MongoDB instead of SQLite. Not printed: the URI may hold credentials.
    #[serde(skip_serializing)]
    pub mongodb: Option<MongoConfig>,
}

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
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            uri: "mongodb://127.0.0.1:27017".into(),
            database: "enrollstream".into(),
            server_selection_timeout_ms: 2_000,
            operation_timeout_ms: 15_000,
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

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("./data"),
            topics: TopicNames::default(),
            partitions: 3,
            replication: 1,
            event_retention: "forever".into(),
            routing: RoutingRules::default(),
            limits: Limits::default(),
            api: ApiConfig::default(),
            auth: AuthConfig::default(),
            projector: ProjectorConfig::default(),
            relay: RelayConfig::default(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            dlq: DlqConfig::default(),
            reminders: ReminderConfig::default(),
            mail: MailConfig::default(),
            deliveries: DeliveriesConfig::default(),
            kafka: None,
            mongodb: None,
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

/// Values given as command-line flags; they win over the file and the environment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<MongoOverride>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KafkaOverride {
    pub brokers: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct MongoOverride {
    pub uri: String,
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            anyhow::ensure!(
                file.exists(),
                "config file {} does not exist",
                file.display()
            );
            figment = figment.merge(Toml::file(file));
        }
        // The prefix is shared with the CLI's own variables (ENROLLSTREAM_CONFIG, …) and with
        // tools around it (the test bed's ENROLLSTREAM_KAFKA_HOME, …): only variables naming one
        // of our top-level keys are configuration, and within those every key must be known.
        let env = Env::prefixed("ENROLLSTREAM_").split("__").filter(|key| {
            // Depending on figment's order the key may already be split at `__` into `.`.
            let top = key.as_str().split("__").next().unwrap_or_default();
            let top = top.split('.').next().unwrap_or_default();
            TOP_LEVEL_KEYS.iter().any(|k| top.eq_ignore_ascii_case(k))
        });
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let mut config: Config = figment.extract().map_err(explain)?;
        config.follow_topic_renames();
        config.validate()?;
        config.api.event_limits = config.limits.clone();
        Ok(config)
    }

    /// `event_retention` as the bus takes it.
    pub fn event_topic_retention(&self) -> anyhow::Result<Retention> {
        match self.event_retention.trim() {
            "forever" | "infinite" | "-1" => Ok(Retention::Forever),
            other => {
                let d = humantime_serde::re::humantime::parse_duration(other).map_err(|e| {
                    anyhow::anyhow!(
                        "event_retention {other:?} is neither \"forever\" nor a duration (\"400d\"): {e}"
                    )
                })?;
                anyhow::ensure!(
                    d >= std::time::Duration::from_secs(24 * 3600),
                    "event_retention must be \"forever\" or at least 1d: the event topics are the source of truth"
                );
                Ok(Retention::For(d))
            }
        }
    }

    /// Routing rules name their topics literally, and the default rules name the default
    /// topics. So that renaming a notification topic under `[topics]` renames it everywhere, a
    /// rule (or the entity-update feed) that names a default topic follows that topic's rename.
    /// An empty `entity_updates_topic` turns the feed off (TOML has no null).
    fn follow_topic_renames(&mut self) {
        let defaults = TopicNames::default();
        let renames = [
            (
                defaults.enrollment_notifications,
                &self.topics.enrollment_notifications,
            ),
            (
                defaults.quote_notifications,
                &self.topics.quote_notifications,
            ),
            (defaults.entity_updates, &self.topics.entity_updates),
        ];
        let renamed = |topic: &mut String| {
            if let Some((_, to)) = renames.iter().find(|(from, _)| from == topic) {
                topic.clone_from(to);
            }
        };
        for rule in &mut self.routing.rules {
            renamed(&mut rule.topic);
        }
        match &mut self.routing.entity_updates_topic {
            Some(topic) if topic.is_empty() => self.routing.entity_updates_topic = None,
            Some(topic) => renamed(topic),
            None => {}
        }
    }

    /// Every section's own bounds, then what ties sections together.
    fn validate(&self) -> anyhow::Result<()> {
        self.api.validate().map_err(anyhow::Error::msg)?;
        if let Some(jwt) = &self.auth.jwt {
            jwt.validate().map_err(anyhow::Error::msg)?;
        }
        anyhow::ensure!(
            (1..=10_000).contains(&self.partitions),
            "partitions must be between 1 and 10000"
        );
        anyhow::ensure!(self.replication > 0, "replication must be at least 1");
        anyhow::ensure!(
            (1..=10_000).contains(&self.projector.batch_size),
            "projector.batch_size must be between 1 and 10000"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&self.relay.batch_size),
            "relay.batch_size must be between 1 and 10000"
        );
        anyhow::ensure!(
            self.relay.max_message_bytes >= 1024,
            "relay.max_message_bytes must be at least 1024"
        );
        self.telemetry.validate()?;
        anyhow::ensure!(
            matches!(self.log.format.as_str(), "text" | "json"),
            "log.format must be \"text\" or \"json\", not {:?}",
            self.log.format
        );
        anyhow::ensure!(
            (1..=100).contains(&self.dlq.max_redrives),
            "dlq.max_redrives must be between 1 and 100"
        );
        anyhow::ensure!(
            !self.topics.dlq_suffix.is_empty(),
            "topics.dlq_suffix must not be empty: dead letters would land on the topic they came from"
        );
        self.event_topic_retention()?;
        self.api.validate().map_err(anyhow::Error::msg)?;
        self.limits.validate().map_err(anyhow::Error::msg)?;
        self.reminders.validate().map_err(anyhow::Error::msg)?;
        if let Some(kafka) = &self.kafka {
            kafka.validate().map_err(anyhow::Error::msg)?;
        }
        let d = &self.deliveries;
        for (name, delivery) in [
            ("logic_apps", d.logic_apps.as_ref().map(|s| &s.delivery)),
            ("salesforce", d.salesforce.as_ref().map(|s| &s.delivery)),
            (
                "lead_management",
                d.lead_management.as_ref().map(|s| &s.delivery),
            ),
        ] {
            if let Some(delivery) = delivery {
                delivery
                    .validate(&format!("deliveries.{name}.delivery"))
                    .map_err(anyhow::Error::msg)?;
            }
        }
        if let Some(leads) = &d.lead_management {
            leads
                .producer
                .validate("deliveries.lead_management.producer")
                .map_err(anyhow::Error::msg)?;
        }
        // A notification on a topic nobody reads would be published and never delivered: the
        // deliveries and the lead producer read the two notification topics only.
        let notification_topics = [
            &self.topics.enrollment_notifications,
            &self.topics.quote_notifications,
        ];
        for (i, rule) in self.routing.rules.iter().enumerate() {
            anyhow::ensure!(
                notification_topics.contains(&&rule.topic),
                "routing.rules[{i}] ({}) sends to topic {:?}, which no delivery reads: use topics.enrollment_notifications ({:?}) or topics.quote_notifications ({:?})",
                rule.event_types.join(", "),
                rule.topic,
                self.topics.enrollment_notifications,
                self.topics.quote_notifications,
            );
        }
        if let Some(topic) = &self.routing.entity_updates_topic {
            anyhow::ensure!(
                *topic == self.topics.entity_updates,
                "routing.entity_updates_topic {topic:?} is not topics.entity_updates ({:?}), so it would not be provisioned: set the topic under [topics], or \"\" to turn the feed off",
                self.topics.entity_updates,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's `Jail` closures must return its (large) error type; that is its API, not our choice.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use crate::strict::TOP_LEVEL_KEYS;

    #[test]
    fn file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "e.toml",
                r#"
                    listen = "127.0.0.1:9000"
                    partitions = 6
                    [topics]
                    quote_events = "q-from-file"
                "#,
            )?;
            jail.set_env("ENROLLSTREAM_PARTITIONS", "12");
            jail.set_env("ENROLLSTREAM_TOPICS__ENROLLMENT_EVENTS", "e-from-env");
            let flags = Overrides {
                listen: Some("127.0.0.1:9100".parse().unwrap()),
                ..Default::default()
            };
            let c = Config::load(Some(Path::new("e.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9100);
            assert_eq!(c.partitions, 12);
            assert_eq!(c.topics.quote_events, "q-from-file");
            assert_eq!(c.topics.enrollment_events, "e-from-env");
            assert_eq!(c.topics.quote_notifications, "quote-notifications");
            Ok(())
        });
    }

    #[test]
    fn routing_follows_renamed_notification_topics() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENROLLSTREAM_TOPICS__QUOTE_NOTIFICATIONS", "prod.quote-n");
            jail.set_env("ENROLLSTREAM_TOPICS__ENTITY_UPDATES", "prod.entities");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            let quote_rules: Vec<_> = c
                .routing
                .rules
                .iter()
                .filter(|r| r.event_types.iter().any(|t| t.contains(".quote.")))
                .collect();
            assert!(!quote_rules.is_empty());
            assert!(quote_rules.iter().all(|r| r.topic == "prod.quote-n"));
            assert!(c
                .routing
                .rules
                .iter()
                .any(|r| r.topic == "enrollment-notifications"));
            assert_eq!(
                c.routing.entity_updates_topic.as_deref(),
                Some("prod.entities")
            );
            Ok(())
        });
    }

    #[test]
    fn an_empty_entity_updates_topic_turns_the_feed_off() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENROLLSTREAM_ROUTING__ENTITY_UPDATES_TOPIC", "");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.routing.entity_updates_topic, None);
            Ok(())
        });
    }

    #[test]
    fn a_rule_to_a_topic_no_delivery_reads_is_refused_at_start() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "e.toml",
                r#"
                    [[routing.rules]]
                    event_types = ["com.enrollstream.quote.*"]
                    topic = "nowhere"
                    targets = ["salesforce"]
                "#,
            )?;
            let error = Config::load(Some(Path::new("e.toml")), &Overrides::default())
                .expect_err("refused");
            let message = error.to_string();
            assert!(message.contains("routing.rules[0]"), "{message}");
            assert!(message.contains("\"nowhere\""), "{message}");
            assert!(message.contains("quote-notifications"), "{message}");

            jail.create_file(
                "f.toml",
                "[routing]\nentity_updates_topic = \"elsewhere\"\n",
            )?;
            let error = Config::load(Some(Path::new("f.toml")), &Overrides::default())
                .expect_err("refused");
            assert!(error.to_string().contains("elsewhere"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn adapters_from_file_env_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "e.toml",
                "[mongodb]\nuri = \"mongodb://u:pw@db:27017\"\ndatabase = \"prod\"\n",
            )?;
            jail.set_env("ENROLLSTREAM_KAFKA__CLIENT_ID", "from-env");
            let flags = Overrides {
                kafka: Some(KafkaOverride {
                    brokers: "k1:9092,k2:9092".into(),
                }),
                ..Default::default()
            };
            let c = Config::load(Some(Path::new("e.toml")), &flags).map_err(|e| e.to_string())?;
            let kafka = c.kafka.expect("kafka configured");
            assert_eq!(kafka.brokers, "k1:9092,k2:9092");
            assert_eq!(kafka.client_id, "from-env");
            let mongo = c.mongodb.expect("mongodb configured");
            assert_eq!(mongo.database, "prod");
            assert!(
                !format!("{mongo:?}").contains("pw"),
                "the password is never printed"
            );
            Ok(())
        });
        let plain = Config::load(None, &Overrides::default()).unwrap();
        assert!(
            plain.kafka.is_none() && plain.mongodb.is_none(),
            "embedded by default"
        );
    }

    #[test]
    fn unknown_keys_and_sections_are_refused_with_their_path_and_a_guess() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[reminders]\nintervl_hours = 2\n")?;
            let error = Config::load(Some(Path::new("typo.toml")), &Overrides::default())
                .expect_err("refused");
            let message = format!("{error:#}");
            assert!(
                message.contains("unknown key `reminders.intervl_hours`"),
                "{message}"
            );
            assert!(
                message.contains("did you mean `reminders.interval_hours`?"),
                "{message}"
            );
            assert!(message.contains("typo.toml"), "{message}");

            jail.create_file("bogus.toml", "[bogus]\nx = 1\n")?;
            let error = Config::load(Some(Path::new("bogus.toml")), &Overrides::default())
                .expect_err("refused");
            assert!(
                format!("{error:#}").contains("unknown key `bogus`"),
                "{error:#}"
            );

            jail.create_file(
                "deep.toml",
                "[deliveries.salesforce.delivery]\nmax_in_flght = 3\n",
            )?;
            let error = Config::load(Some(Path::new("deep.toml")), &Overrides::default())
                .expect_err("refused");
            let message = format!("{error:#}");
            assert!(message.contains("max_in_flght"), "{message}");

            // Variables of the same prefix that name no key of ours are someone else's.
            jail.set_env("ENROLLSTREAM_KAFKA_HOME", "/opt/kafka");
            jail.set_env("ENROLLSTREAM_CONFIG", "elsewhere.toml");
            assert!(Config::load(None, &Overrides::default()).is_ok());
            jail.set_env("ENROLLSTREAM_REMINDERS__MAX_ATTEMTS", "3");
            let error = Config::load(None, &Overrides::default()).expect_err("refused");
            assert!(
                format!("{error:#}").contains("did you mean `reminders.max_attempts`?"),
                "{error:#}"
            );
            Ok(())
        });
    }

    #[test]
    fn every_section_is_validated() {
        figment::Jail::expect_with(|jail| {
            for (file, expected) in [
                ("[reminders]\nmax_attempts = 0\n", "reminders.max_attempts"),
                ("[reminders]\ninterval = \"0s\"\n", "reminders.interval"),
                ("[limits]\nmax_depth = 0\n", "limits.max_depth"),
                ("event_retention = \"1h\"\n", "event_retention"),
                ("[relay]\nbatch_size = 0\n", "relay.batch_size"),
            ] {
                jail.create_file("bad.toml", file)?;
                let error = Config::load(Some(Path::new("bad.toml")), &Overrides::default())
                    .expect_err(file);
                assert!(format!("{error:#}").contains(expected), "{file}: {error:#}");
            }
            jail.create_file(
                "ok.toml",
                "[reminders]\ninterval = \"2s\"\ntick = \"100ms\"\n",
            )?;
            let c = Config::load(Some(Path::new("ok.toml")), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.reminders.interval, std::time::Duration::from_secs(2));
            assert_eq!(c.event_topic_retention().unwrap(), Retention::Forever);
            Ok(())
        });
    }

    #[test]
    fn the_top_level_keys_are_the_config_s() {
        let printed = toml::Value::try_from(Config::default()).unwrap();
        for key in printed.as_table().unwrap().keys() {
            assert!(
                TOP_LEVEL_KEYS.contains(&key.as_str()),
                "{key} missing from TOP_LEVEL_KEYS"
            );
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(Config::load(
            Some(Path::new("/nonexistent/x.toml")),
            &Overrides::default()
        )
        .is_err());
    }
}
