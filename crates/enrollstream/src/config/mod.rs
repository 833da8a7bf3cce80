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
use enrollstream_runners::reminders::ReminderConfig;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::strict::{explain, TOP_LEVEL_KEYS};

mod sections;
pub use sections::*;
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
mod tests;
