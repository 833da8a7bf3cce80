//! The one-run comparison of issue 16, on one Apache Kafka broker and one FerretDB server from
//! the test bed, side by side:
//!
//! 1. the broker's raw rdkafka produce and consume rates of quote-shaped messages;
//! 2. the seeds' per-message design (seed 003) ported as the baseline: per message an awaited
//!    event-log insert, an awaited entity upsert and an awaited produce to `entity-updates`,
//!    consuming a pre-filled backlog of quote events;
//! 3. enrollstream's projector + relay (the real binary, `--role projector --role relay`, on the
//!    MongoDB store) on the same backlog.
//!
//! The backlog is filled once, by the real binary's API role (HTTP → Kafka), and both consumers
//! read it in groups of their own. Timers start at a consumer's first progress, so group joins
//! are not counted. Each row carries the CPU time spent in the phase by the broker's JVM, by
//! FerretDB and by the measured process (this bench itself for the baseline); peak RSS is
//! printed at the end.
//!
//! `cargo bench -p enrollstream --bench comparison` (env: BENCH_EVENTS, default 10,000;
//! BENCH_CONCURRENCY for the backlog's HTTP clients, default 32). docs/benchmarks.md records
//! the figures.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} is a number")))
        .unwrap_or(default)
}

/// The backlog's topic: where the API publishes quote events.
const QUOTE_EVENTS: &str = "quote-events";
/// The seed's reactor topic, written by the baseline.
const ENTITY_UPDATES: &str = "entity-updates";
/// Any phase taking longer has stalled; fail rather than hang.
const LIMIT: Duration = Duration::from_secs(900);

struct App {
    child: Child,
    url: String,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, brokers: &str, mongo: &str, roles: &[&str]) -> App {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enrollstream"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--kafka-brokers", brokers, "--mongodb-uri", mongo]);
    for role in roles {
        command.args(["--role", role]);
    }
    let mut child = command
        .env("RUST_LOG", "warn")
        .env("ENROLLSTREAM_API__AUTH", "off")
        .env("ENROLLSTREAM_API__LIMITS__RATE_PER_SECOND", "0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("enrollstream starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("enrollstream {roles:?} exited before listening"))
            .unwrap();
        if let Some(url) = line.strip_prefix("enrollstream listening on ") {
            break url.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    App { child, url }
}

/// The sum of a metric's series (all labels), from `/metrics`.
async fn metric(client: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `None` when the store did not count in time (`/readyz` bounds its checks; FerretDB's count
/// scans the event log).
async fn outbox_backlog(client: &reqwest::Client, url: &str) -> Option<u64> {
    let ready: serde_json::Value = client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .expect("/readyz answers")
        .json()
        .await
        .unwrap();
    ready["outbox_backlog"].as_u64()
}

fn quote(i: u64) -> serde_json::Value {
    serde_json::json!({"customer_id": format!("C-{i}"), "product": "dental-basic", "amount_minor": 5000 + i, "currency": "USD"})
}

/// Posts `n` quotes through the API role: the backlog both consumers then read.
async fn fill_backlog(client: &reqwest::Client, url: &str, n: u64, concurrency: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.to_string(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let r = client
                        .post(format!("{url}/v1/quotes"))
                        .json(&quote(i))
                        .send()
                        .await
                        .expect("the API answers");
                    assert_eq!(r.status(), 202, "the API accepts quote {i}");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux's every mainstream architecture.
    ticks as f64 / 100.0
}

/// Peak resident set (VmHWM) in MiB, from /proc/PID/status.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("status has VmHWM");
    kib / 1024.0
}

/// The CPU seconds of the broker, FerretDB and the measured process over one phase.
struct Cpu {
    pids: [u32; 3],
    at: [f64; 3],
}

impl Cpu {
    fn start(kafka: u32, mongo: u32, measured: u32) -> Cpu {
        let pids = [kafka, mongo, measured];
        Cpu {
            pids,
            at: pids.map(cpu_seconds),
        }
    }

    fn spent(&self) -> [f64; 3] {
        let now = self.pids.map(cpu_seconds);
        [0, 1, 2].map(|i| now[i] - self.at[i])
    }
}

struct Row {
    what: &'static str,
    rate: f64,
    cpu: Option<[f64; 3]>,
}

/// The seed's consumer: one message at a time, each write awaited before the next.
async fn baseline(brokers: &str, mongo: &str, n: u64, pids: (u32, u32)) -> Row {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "seed-baseline")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("baseline consumer");
    consumer.subscribe(&[QUOTE_EVENTS]).expect("subscribe");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("baseline producer");
    let db = mongodb::Client::with_uri_str(mongo)
        .await
        .expect("baseline mongo client")
        .database("seed_baseline");
    let (logs, entities) = (
        db.collection::<Document>("event_logs"),
        db.collection::<Document>("entities"),
    );
    let mut started = None;
    let mut cpu = None;
    let deadline = Instant::now() + LIMIT;
    for i in 0..n {
        let message = tokio::time::timeout_at(deadline.into(), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("the baseline stalled after {i} of {n} messages"))
            .expect("baseline receives");
        if started.is_none() {
            started = Some(Instant::now());
            cpu = Some(Cpu::start(pids.0, pids.1, std::process::id()));
        }
        let data: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or(b"{}")).expect("JSON event data");
        let entity_id = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let state = mongodb::bson::to_bson(&data).expect("bson");
        logs.insert_one(doc! {
            "eventId": uuid::Uuid::now_v7().to_string(),
            "eventType": "QuoteCreated",
            "eventData": state.clone(),
            "timestamp": mongodb::bson::DateTime::now(),
        })
        .await
        .expect("event log insert");
        entities
            .update_one(
                doc! { "entityId": &entity_id },
                doc! { "$set": { "state": state, "updatedAt": mongodb::bson::DateTime::now() } },
            )
            .upsert(true)
            .await
            .expect("entity upsert");
        let update = serde_json::json!({
            "type": "EntityUpdatedEvent",
            "data": { "entityId": entity_id, "state": data },
            "timestamp": chrono::Utc::now().to_rfc3339(),
        })
        .to_string();
        producer
            .send(
                FutureRecord::<(), _>::to(ENTITY_UPDATES).payload(&update),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("entity update produced");
    }
    let elapsed = started.expect("at least one message").elapsed();
    Row {
        what: "baseline: seed 003 per message",
        rate: n as f64 / elapsed.as_secs_f64(),
        cpu: cpu.map(|c| c.spent()),
    }
}

/// The real binary's projector and relay on the backlog: done when every event is projected
/// and the outbox is empty.
async fn ours(
    client: &reqwest::Client,
    dir: &std::path::Path,
    brokers: &str,
    mongo: &str,
    n: u64,
    pids: (u32, u32),
) -> (Row, f64) {
    let app = start(dir, brokers, mongo, &["projector", "relay"]);
    let pid = app.child.id();
    let projected = |url: String| async move {
        metric(client, &url, "enrollstream_events_projected_total").await as u64
    };
    let deadline = Instant::now() + LIMIT;
    while projected(app.url.clone()).await == 0 {
        assert!(Instant::now() < deadline, "the projector never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cpu = Cpu::start(pids.0, pids.1, pid);
    let started = Instant::now();
    let first = projected(app.url.clone()).await;
    loop {
        let done = projected(app.url.clone()).await;
        assert!(
            Instant::now() < deadline,
            "projector stalled at {done} of {n}"
        );
        if done >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Polled rarely: counting the backlog is a scan on FerretDB, which polling every few
    // milliseconds took from the store under measure.
    while outbox_backlog(client, &app.url).await != Some(0) {
        assert!(Instant::now() < deadline, "the relay stalled");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    let row = Row {
        what: "enrollstream projector + relay",
        rate: (n - first) as f64 / elapsed.as_secs_f64(),
        cpu: Some(cpu.spent()),
    };
    (row, peak_rss_mib(pid))
}

/// rdkafka alone on this broker, messages shaped like the backlog's (a quote event's size and
/// CloudEvents headers, as the API publishes them), on a topic of their own.
async fn raw_broker(brokers: &str, n: usize, pids: (u32, u32)) -> (Row, Row) {
    use enrollstream_ports::{EventBus, TopicSpec};
    let config = enrollstream_kafka::KafkaConfig {
        brokers: brokers.to_string(),
        ..Default::default()
    };
    let bus = enrollstream_kafka::KafkaBus::new(config.clone()).expect("kafka bus");
    let topic = "raw-comparison";
    bus.ensure_topics(&[TopicSpec {
        name: topic.into(),
        partitions: 3,
        replication: 1,
        retention: None,
    }])
    .await
    .expect("raw topic");
    let quote = quote_message();
    let cpu = Cpu::start(pids.0, pids.1, std::process::id());
    let produced = enrollstream_kafka::throughput::produce(
        &config,
        topic,
        n,
        quote.payload.len(),
        &quote.headers,
    )
    .await
    .expect("raw produce");
    let produce_cpu = cpu.spent();
    let cpu = Cpu::start(pids.0, pids.1, std::process::id());
    let consumed = tokio::task::spawn_blocking(move || {
        enrollstream_kafka::throughput::consume(&config, topic, n, LIMIT)
    })
    .await
    .unwrap()
    .expect("raw consume");
    (
        Row {
            what: "raw rdkafka produce",
            rate: produced.per_second(),
            cpu: Some(produce_cpu),
        },
        Row {
            what: "raw rdkafka consume",
            rate: consumed.per_second(),
            cpu: Some(cpu.spent()),
        },
    )
}

/// A quote event as the API publishes it: its CloudEvents binary-binding headers and JSON data.
fn quote_message() -> enrollstream_ports::OutboundMessage {
    use enrollstream_domain::{events::QuoteCreated, CloudEvent, DomainEvent, Money, QuoteEvent};
    let event = DomainEvent::Quote(QuoteEvent::Created(QuoteCreated {
        quote_id: enrollstream_domain::ids::new_id(),
        customer_id: "C-1".into(),
        product: "dental-basic".into(),
        premium: Money {
            amount_minor: 5000,
            currency: "USD".into(),
        },
    }));
    let envelope = CloudEvent::new(&event, "/enrollstream/api", chrono::Utc::now(), None);
    enrollstream_ports::codec::encode(&envelope)
}

fn main() {
    let n = env_or("BENCH_EVENTS", 10_000);
    let concurrency = env_or("BENCH_CONCURRENCY", 32);
    let kafka = enrollstream_testkit::testbed::Kafka::start_for_benchmark()
        .unwrap_or_else(|e| panic!("the Kafka broker did not start: {e:#}"));
    let mongo = enrollstream_testkit::testbed::Mongo::start()
        .unwrap_or_else(|e| panic!("FerretDB did not start: {e:#}"));
    let pids = (
        kafka.pid().expect("the broker runs"),
        mongo.pid().expect("FerretDB runs"),
    );
    let (brokers, uri) = (kafka.bootstrap(), mongo.uri());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        let (produce, consume) = raw_broker(&brokers, n as usize, pids).await;

        let dir = tempfile::tempdir().unwrap();
        let api = start(dir.path(), &brokers, &uri, &["api"]);
        let filled = Instant::now();
        fill_backlog(&client, &api.url, n, concurrency).await;
        drop(api);
        println!(
            "backlog: {n} quote events on {QUOTE_EVENTS} through the API role in {:.2} s",
            filled.elapsed().as_secs_f64()
        );

        let base = baseline(&brokers, &uri, n, pids).await;
        let (ours, ours_rss) = ours(&client, dir.path(), &brokers, &uri, n, pids).await;

        println!(
            "\nApache Kafka 4.1.1 (KRaft, one node) + FerretDB 1.24.2 (SQLite handler), {n} events"
        );
        println!(
            "{:<34} {:>10} {:>11} {:>12} {:>12}",
            "", "events/s", "Kafka CPU s", "FerretDB CPU", "process CPU"
        );
        for row in [&produce, &consume, &base, &ours] {
            let [k, m, p] = row.cpu.unwrap_or_default();
            println!(
                "{:<34} {:>10.0} {k:>11.2} {m:>12.2} {p:>12.2}",
                row.what, row.rate
            );
        }
        println!(
            "ratio ours / baseline: {:.1}x; ours / raw consume: {:.1} %",
            ours.rate / base.rate,
            100.0 * ours.rate / consume.rate
        );
        println!(
            "peak RSS: Kafka JVM {:.0} MiB, FerretDB {:.0} MiB, enrollstream projector+relay {ours_rss:.0} MiB, this bench (raw clients, baseline) {:.0} MiB",
            peak_rss_mib(pids.0),
            peak_rss_mib(pids.1),
            peak_rss_mib(std::process::id()),
        );
    });
}
