//! Settings of the Kafka bus and the librdkafka properties they become.

use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// How the bus reaches Kafka and how its producer and consumers behave.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// `client.id` of the producer and admin client; consumers use their subscription's name.
    pub client_id: String,
    /// Partitions of topics this bus creates.
    pub partitions: i32,
    /// Replication factor of topics this bus creates.
    pub replication: i16,

    /// `security.protocol`: plaintext, ssl, sasl_plaintext, sasl_ssl.
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI, OAUTHBEARER.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    pub ssl_ca_location: Option<String>,
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    pub ssl_key_password: Option<String>,

    /// `linger.ms`: how long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// `batch.num.messages`: most messages in one produce batch.
    pub batch_num_messages: u32,
    /// `max.in.flight.requests.per.connection` (at most 5 with idempotence).
    pub max_in_flight: u32,
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    pub compression: String,
    /// `message.timeout.ms`: how long `publish` may wait for one acknowledgement before failing.
    pub message_timeout_ms: u32,
    /// `queue.buffering.max.kbytes`: bound of the producer's local queue.
    pub producer_queue_kbytes: u32,

    /// `session.timeout.ms`: after a crash, the crashed member's partitions move after this long.
    pub session_timeout_ms: u32,
    /// `heartbeat.interval.ms` (well below the session timeout).
    pub heartbeat_interval_ms: u32,
    /// `partition.assignment.strategy`. `cooperative-sticky` (the default) rebalances
    /// incrementally: when a member joins or leaves, only the partitions that must move are
    /// revoked, and every other member keeps consuming (and its delivery lanes keep running)
    /// through the rebalance. `range` or `roundrobin` are eager: every member stops and gives
    /// everything back at each rebalance. All members of a group must agree, and librdkafka
    /// refuses a list that mixes the two protocols, so a group moves from eager to cooperative
    /// in one cutover: stop every member, then start them all on the new strategy.
    pub assignment_strategy: String,
    /// `group.instance.id` prefix for static membership; unset (the default) means dynamic
    /// membership. Set it to a name that is stable across restarts and unique per process (a
    /// StatefulSet pod name): each consumer then joins as `INSTANCE-GROUP`, and a process that
    /// restarts within `session_timeout_ms` gets its partitions back with no rebalance of the
    /// others. The price: a static member does not leave its group when it stops, so its
    /// partitions wait `session_timeout_ms` for another owner (a scale-down or a crash costs
    /// that long). Two processes with the same instance fence each other.
    pub instance_id: Option<String>,
    /// `max.poll.interval.ms`: a member that does not poll for this long leaves its group.
    pub max_poll_interval_ms: u32,
    /// `queued.max.messages.kbytes`: bound of what a consumer prefetches.
    pub consumer_queue_kbytes: u32,
    /// `queued.min.messages`: prefetch target per partition, in messages.
    pub consumer_queue_messages: u32,
    /// `fetch.max.bytes`: most bytes of one fetch response.
    pub fetch_max_bytes: u32,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch that finds nothing new. Kafka
    /// answers as soon as a record arrives (`fetch.min.bytes` is 1), so this bounds idle
    /// fetches only, not latency: lower means more empty round trips, not faster delivery.
    /// librdkafka's default.
    pub fetch_wait_max_ms: u32,

    /// Timeout of metadata requests behind `check()` and of topic creation, in milliseconds.
    pub request_timeout_ms: u64,

    /// Any other librdkafka property, passed through as is (and applied last, so it wins).
    pub extra: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "enrollstream".into(),
            partitions: 3,
            replication: 1,
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            linger_ms: 5,
            batch_num_messages: 10_000,
            max_in_flight: 5,
            compression: "lz4".into(),
            message_timeout_ms: 30_000,
            producer_queue_kbytes: 65_536,
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 1_000,
            assignment_strategy: "cooperative-sticky".into(),
            instance_id: None,
            max_poll_interval_ms: 300_000,
            consumer_queue_kbytes: 8_192,
            consumer_queue_messages: 10_000,
            fetch_max_bytes: 8 * 1024 * 1024,
            fetch_wait_max_ms: 500,
            request_timeout_ms: 5_000,
            extra: BTreeMap::new(),
        }
    }
}

const REDACTED: &str = "<redacted>";

/// Property names in `extra` whose values must never reach a log.
fn is_secret(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    p.contains("password") || p.contains("secret") || p.contains("token") || p.ends_with(".pem")
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| REDACTED);
        let extra: BTreeMap<&str, &str> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { REDACTED } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &secret(&self.sasl_password))
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("ssl_key_password", &secret(&self.ssl_key_password))
            .field("linger_ms", &self.linger_ms)
            .field("batch_num_messages", &self.batch_num_messages)
            .field("max_in_flight", &self.max_in_flight)
            .field("compression", &self.compression)
            .field("message_timeout_ms", &self.message_timeout_ms)
            .field("producer_queue_kbytes", &self.producer_queue_kbytes)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("assignment_strategy", &self.assignment_strategy)
            .field("instance_id", &self.instance_id)
            .field("max_poll_interval_ms", &self.max_poll_interval_ms)
            .field("consumer_queue_kbytes", &self.consumer_queue_kbytes)
            .field("consumer_queue_messages", &self.consumer_queue_messages)
            .field("fetch_max_bytes", &self.fetch_max_bytes)
            .field("fetch_wait_max_ms", &self.fetch_wait_max_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("extra", &extra)
            .finish()
    }
}

/// The assignors librdkafka offers, and whether each is cooperative.
const ASSIGNORS: &[(&str, bool)] = &[
    ("range", false),
    ("roundrobin", false),
    ("cooperative-sticky", true),
];

impl KafkaConfig {
    /// Refuse at start what librdkafka would only refuse when the first consumer is created
    /// (an unknown assignor, eager mixed with cooperative), or what cannot work at all.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers must name at least one host:port".into());
        }
        let mut protocols = Vec::new();
        for name in self.assignment_strategy.split(',').map(str::trim) {
            match ASSIGNORS.iter().find(|(known, _)| *known == name) {
                Some((_, cooperative)) => protocols.push(*cooperative),
                None => {
                    return Err(format!(
                        "kafka.assignment_strategy: unknown assignor {name:?} (known: range, roundrobin, cooperative-sticky)"
                    ))
                }
            }
        }
        if protocols.contains(&true) && protocols.contains(&false) {
            return Err(format!(
                "kafka.assignment_strategy {:?} mixes cooperative and eager assignors, which librdkafka refuses; move a group in one cutover",
                self.assignment_strategy
            ));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms
        {
            return Err(
                "kafka.heartbeat_interval_ms must be above zero and below kafka.session_timeout_ms"
                    .into(),
            );
        }
        if let Some(instance) = &self.instance_id {
            if instance.trim().is_empty() {
                return Err("kafka.instance_id must not be empty when set".into());
            }
        }
        Ok(())
    }

    /// Connection and security properties shared by every client.
    fn common(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        let optional = [
            ("security.protocol", &self.security_protocol),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
            ("ssl.key.password", &self.ssl_key_password),
        ];
        for (property, value) in optional {
            if let Some(v) = value {
                c.set(property, v);
            }
        }
        c
    }

    fn with_extra(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.common(&self.client_id);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "max.in.flight.requests.per.connection",
                self.max_in_flight.to_string(),
            )
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.num.messages", self.batch_num_messages.to_string())
            .set("compression.type", &self.compression)
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set(
                "queue.buffering.max.kbytes",
                self.producer_queue_kbytes.to_string(),
            )
            // The Java client's partitioner: a key lands in the same partition whichever client
            // (Java, librdkafka, kcat) produced it, so per-entity order holds across producers.
            .set("partitioner", "murmur2_random");
        self.with_extra(c)
    }

    /// A consumer that reads offsets or watermarks of `group` and never joins it.
    pub(crate) fn consumer(&self, group: &str, client_id: &str) -> ClientConfig {
        let mut c = self.common(client_id);
        c.set("group.id", group)
            .set("partition.assignment.strategy", &self.assignment_strategy)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // We never produce transactionally, so there is nothing to hide and no reason to
            // depend on the broker's last stable offset.
            .set("isolation.level", "read_uncommitted")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                self.heartbeat_interval_ms.to_string(),
            )
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            )
            .set(
                "queued.max.messages.kbytes",
                self.consumer_queue_kbytes.to_string(),
            )
            .set(
                "queued.min.messages",
                self.consumer_queue_messages.to_string(),
            )
            .set("fetch.max.bytes", self.fetch_max_bytes.to_string())
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string());
        self.with_extra(c)
    }

    /// A member of `group` that subscribes: `consumer` plus its static identity, if any.
    pub(crate) fn member(&self, group: &str, client_id: &str) -> ClientConfig {
        let mut c = self.consumer(group, client_id);
        if let Some(instance) = &self.instance_id {
            c.set("group.instance.id", format!("{instance}-{group}"));
        }
        c
    }

    pub(crate) fn admin(&self) -> ClientConfig {
        let c = self.common(&format!("{}-admin", self.client_id));
        self.with_extra(c)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn assignment_strategies_are_checked_before_any_consumer_exists() {
        let with = |strategy: &str| KafkaConfig {
            assignment_strategy: strategy.into(),
            ..KafkaConfig::default()
        };
        assert_eq!(with("cooperative-sticky").validate(), Ok(()));
        assert_eq!(with("range,roundrobin").validate(), Ok(()));
        let unknown = with("sticky").validate().unwrap_err();
        assert!(unknown.contains("unknown assignor \"sticky\""), "{unknown}");
        let mixed = with("cooperative-sticky,range").validate().unwrap_err();
        assert!(mixed.contains("mixes cooperative and eager"), "{mixed}");
    }

    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let mut config = KafkaConfig {
            sasl_username: Some("svc-enrollstream".into()),
            sasl_password: Some("hunter2".into()),
            ssl_key_password: Some("k3y".into()),
            ..KafkaConfig::default()
        };
        config
            .extra
            .insert("sasl.oauthbearer.client.secret".into(), "s3cret".into());
        config
            .extra
            .insert("socket.keepalive.enable".into(), "true".into());
        let shown = format!("{config:?}");
        for secret in ["hunter2", "k3y", "s3cret"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("svc-enrollstream"));
        assert!(shown.contains("socket.keepalive.enable"));
    }

    #[test]
    fn extra_properties_pass_through_and_win() {
        let mut config = KafkaConfig::default();
        config.extra.insert("linger.ms".into(), "50".into());
        config
            .extra
            .insert("socket.nagle.disable".into(), "true".into());
        let producer = config.producer();
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("socket.nagle.disable"), Some("true"));
        assert_eq!(producer.get("acks"), Some("all"));
        let consumer = config.consumer("g", "member-1");
        assert_eq!(consumer.get("group.id"), Some("g"));
        assert_eq!(consumer.get("client.id"), Some("member-1"));
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("500"));
        assert_eq!(
            consumer.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(consumer.get("group.instance.id"), None);
    }

    #[test]
    fn static_membership_names_one_member_per_group() {
        let config = KafkaConfig {
            instance_id: Some("enrollstream-2".into()),
            ..KafkaConfig::default()
        };
        assert_eq!(
            config
                .member("delivery-salesforce", "member")
                .get("group.instance.id"),
            Some("enrollstream-2-delivery-salesforce")
        );
        // Tools that only read a group's offsets must not take a member's identity.
        assert_eq!(
            config
                .consumer("delivery-salesforce", "offsets")
                .get("group.instance.id"),
            None
        );
        assert_eq!(config.producer().get("group.instance.id"), None);
    }

    #[test]
    fn fetch_wait_is_a_consumer_setting() {
        let config = KafkaConfig {
            fetch_wait_max_ms: 100,
            ..KafkaConfig::default()
        };
        assert_eq!(
            config.consumer("g", "member-1").get("fetch.wait.max.ms"),
            Some("100")
        );
        // A consumer-only property on the producer draws a librdkafka warning at every start.
        assert_eq!(config.producer().get("fetch.wait.max.ms"), None);
    }

    #[test]
    fn deserializes_with_defaults() {
        let config: KafkaConfig = serde_json::from_str(
            r#"{"brokers":"b1:9092,b2:9092","security_protocol":"sasl_ssl","extra":{"a":"b"}}"#,
        )
        .expect("valid config");
        assert_eq!(config.brokers, "b1:9092,b2:9092");
        assert_eq!(config.partitions, 3);
        assert_eq!(config.replication, 1);
        assert_eq!(config.security_protocol.as_deref(), Some("sasl_ssl"));
        assert_eq!(config.extra.get("a").map(String::as_str), Some("b"));
    }
}
