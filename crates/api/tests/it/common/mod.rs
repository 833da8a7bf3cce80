//! Test harness: the API on a real socket (127.0.0.1, random port) over a real SQLite store and
//! embedded bus in a temp dir. `project` plays the projector (the same pure step plus
//! `Store::apply`), so these tests need no runner.

use chrono::{DateTime, Utc};
use enrollstream_api::auth::{keys, AuthConfig, Scope};
use enrollstream_api::{router, ApiConfig, ApiState, Authenticator};
use enrollstream_domain::projection::project;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::CloudEvent;
use enrollstream_ports::{
    codec, ApiKeyRecord, Change, Clock, CredentialStore, EventBus, HealthRegistry, ManualClock,
    StartFrom, Store, StoredEvent, SubscriptionSpec, TopicNames, TopicSpec,
};
use enrollstream_sqlite::bus::EmbeddedBus;
use enrollstream_sqlite::credentials::SqliteCredentialStore;
use enrollstream_sqlite::store::SqliteStore;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub const QUOTES: &str = "quote-events";
pub const APPLICATIONS: &str = "enrollment-events";
pub const PROBLEM: &str = "application/problem+json";

pub struct App {
    pub base: String,
    /// Sends an admin key with every request.
    pub http: reqwest::Client,
    /// Sends no credential.
    pub anonymous: reqwest::Client,
    pub keys: Arc<SqliteCredentialStore>,
    pub store: Arc<SqliteStore>,
    pub bus: Arc<EmbeddedBus>,
    pub clock: ManualClock,
    pub health: HealthRegistry,
    _dir: tempfile::TempDir,
}

pub fn start_time() -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse().unwrap()
}

impl App {
    pub async fn spawn() -> Self {
        Self::spawn_with(ApiConfig::default(), Arc::new(String::new)).await
    }

    pub async fn spawn_with(
        config: ApiConfig,
        metrics: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Self {
        Self::spawn_with_auth(config, AuthConfig::default(), metrics).await
    }

    /// The API with authentication on, its keys in `credentials.db` of the temp dir, and an
    /// `admin` key that `http` sends with every request.
    pub async fn spawn_with_auth(
        config: ApiConfig,
        auth: AuthConfig,
        metrics: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = Arc::new(SqliteCredentialStore::open(dir.path()).expect("open credentials"));
        let admin_key = create_key(keys.as_ref(), "test-admin", &[Scope::Admin]).await;
        let store = Arc::new(SqliteStore::open(dir.path()).expect("open store"));
        let bus = Arc::new(EmbeddedBus::open(dir.path(), 3).expect("open bus"));
        let topics: Vec<TopicSpec> = TopicNames::default()
            .all()
            .into_iter()
            .map(|name| TopicSpec {
                name,
                partitions: 3,
                replication: 1,
                retention: None,
            })
            .collect();
        bus.ensure_topics(&topics).await.expect("topics");
        let clock = ManualClock::new(start_time());
        let health = HealthRegistry::default();
        let authenticator =
            Authenticator::new(config.auth, &auth, keys.clone(), Arc::new(clock.clone()))
                .await
                .expect("authenticator");
        let state = ApiState {
            auth: Arc::new(authenticator),
            store: store.clone(),
            bus: bus.clone(),
            clock: Arc::new(clock.clone()),
            health: health.clone(),
            metrics,
            config: Arc::new(config.clone()),
            reminders: None,
            dead_letters: None,
            deliveries: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let header_read_timeout = config.limits.header_read_timeout;
        tokio::spawn(async move {
            enrollstream_api::server::serve(
                listener,
                router(state),
                header_read_timeout,
                std::future::pending(),
            )
            .await;
        });
        Self {
            base: format!("http://{addr}"),
            http: client_with_key(&admin_key),
            anonymous: reqwest::Client::new(),
            keys,
            store,
            bus,
            clock,
            health,
            _dir: dir,
        }
    }

    /// A new key with `scopes`, as `enrollstream api-key create` makes one.
    pub async fn key(&self, name: &str, scopes: &[Scope]) -> String {
        create_key(self.keys.as_ref(), name, scopes).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    /// POST a command that must be accepted; returns its 202 body.
    pub async fn accepted(&self, path: &str, body: Value) -> Value {
        let res = self.post(path, body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, 202, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Every message on `topic` from the beginning, through a fresh consumer group.
    pub async fn published(&self, topic: &str) -> Vec<(String, CloudEvent)> {
        self.published_on(&[topic]).await
    }

    /// Every message on `topics` from the beginning, through a fresh consumer group. The
    /// messages are durable before the API answers, so one short empty poll marks the end.
    pub async fn published_on(&self, topics: &[&str]) -> Vec<(String, CloudEvent)> {
        let group = format!("inspect-{}", enrollstream_domain::ids::new_id());
        let mut spec = SubscriptionSpec::new(group, topics);
        spec.start = StartFrom::Earliest;
        let mut sub = self.bus.subscribe(spec).await.expect("subscribe");
        let mut out = Vec::new();
        loop {
            let batch = sub
                .poll(1000, Duration::from_millis(20))
                .await
                .expect("poll");
            if batch.is_empty() {
                break;
            }
            for m in batch {
                out.push((
                    m.key.clone().unwrap_or_default(),
                    codec::decode(&m).expect("decodable"),
                ));
            }
        }
        sub.close().await.expect("close");
        out
    }

    pub async fn count(&self, topic: &str) -> usize {
        self.published(topic).await.len()
    }

    /// Total messages on both event topics.
    pub async fn total(&self) -> usize {
        self.published_on(&[QUOTES, APPLICATIONS]).await.len()
    }

    /// Apply everything new on the event topics to the store, as the projector would (events
    /// that do not fit are skipped; the projector would dead-letter them). Returns how many
    /// were applied.
    pub async fn project(&self) -> usize {
        let mut spec = SubscriptionSpec::new("test-projector", &[QUOTES, APPLICATIONS]);
        spec.start = StartFrom::Committed;
        let mut sub = self.bus.subscribe(spec).await.expect("subscribe");
        let rules = RoutingRules::default();
        let mut applied = 0;
        loop {
            let batch = sub
                .poll(1000, Duration::from_millis(20))
                .await
                .expect("poll");
            if batch.is_empty() {
                break;
            }
            let mut positions = Vec::new();
            for m in &batch {
                let event = codec::decode(m).expect("decodable");
                let kind = event.entity_kind().expect("known kind");
                let current = self.store.entity(kind, event.entity_id()).await.unwrap();
                let step = project(
                    &event,
                    current.as_ref().map(|r| (r.version, &r.state)),
                    &rules,
                );
                if let Ok(p) = step {
                    let change = Change {
                        event: StoredEvent {
                            event_id: event.id.clone(),
                            entity_kind: kind,
                            entity_id: p.entity_id.clone(),
                            version: p.version,
                            event_type: event.ty.clone(),
                            occurred_at: event.time.unwrap(),
                            source: Some(format!("{}/{}/{}", m.topic, m.partition, m.offset)),
                            envelope: event,
                            recorded_at: self.clock.now(),
                        },
                        expected_version: current.map(|r| r.version).unwrap_or(0),
                        status: p.status,
                        state: p.state,
                        outbox: p.outbox,
                        replay: false,
                    };
                    self.store.apply(&[change]).await.unwrap();
                    applied += 1;
                }
                positions.push(m.next_position());
            }
            sub.commit(&positions).await.expect("commit");
        }
        sub.close().await.expect("close");
        applied
    }

    /// A started application in the read model.
    pub async fn application(&self) -> String {
        let body = self
            .accepted(
                "/v1/applications",
                serde_json::json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"}),
            )
            .await;
        self.project().await;
        body["application_id"].as_str().unwrap().to_string()
    }

    /// An application in the read model after `commands` (path suffix, body) were applied.
    pub async fn application_after(&self, commands: &[(&str, Value)]) -> String {
        let id = self.application().await;
        for (action, body) in commands {
            self.accepted(&format!("/v1/applications/{id}/{action}"), body.clone())
                .await;
            self.project().await;
        }
        id
    }

    /// A priced quote in the read model.
    pub async fn quote(&self) -> String {
        let body = self
            .accepted(
                "/v1/quotes",
                serde_json::json!({"customer_id":"C-1","product":"dental-basic","amount_minor":5000,"currency":"USD"}),
            )
            .await;
        self.project().await;
        body["quote_id"].as_str().unwrap().to_string()
    }
}

pub async fn create_key(store: &dyn CredentialStore, name: &str, scopes: &[Scope]) -> String {
    let key = keys::generate();
    let record = ApiKeyRecord {
        name: name.to_string(),
        hash: keys::hash(&key),
        scopes: scopes.iter().map(|s| s.as_str().to_string()).collect(),
        created_at: start_time(),
        last_used_at: None,
        revoked_at: None,
    };
    store.create_api_key(&record).await.expect("create key");
    key
}

/// A client that sends `key` as `Authorization: Bearer` with every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

pub fn broker_submission() -> Value {
    serde_json::json!({"submitted_by":"broker","broker":{"id":"B-7","name":"Acme Brokers","email":"agent@acme.test"}})
}

/// Assert a problem+json answer with `status`, and return its body.
pub async fn problem(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    assert_eq!(content_type, PROBLEM, "body: {text}");
    let body: Value = serde_json::from_str(&text).expect("problem is JSON");
    assert_eq!(body["status"], status);
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("https://enrollstream.dev/problems/"));
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The field names in a problem's `errors`.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}
