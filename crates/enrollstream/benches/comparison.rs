//! The one-run comparison of issue 16 on the test bed's Apache Kafka and FerretDB, side by side:
//!
//! 1. the broker's raw rdkafka produce and consume rates of quote-shaped messages;
//! 2. the store's raw bulk-write rate: the driver's unordered `insert_many` of the store's own
//!    event-log entries for new quotes (`enrollstream_mongodb::entry_document`), 500 per call;
//! 3. the seeds' per-message design (seed 003) ported as the baseline: per message an awaited
//!    event-log insert, an awaited entity upsert and an awaited produce to `entity-updates`,
//!    consuming a pre-filled backlog of quote events;
//! 4. enrollstream's projector + relay (the real binary, `--role projector --role relay`, on the
//!    MongoDB store) on the same backlog;
//! 5. the whole pipeline from HTTP: the real binary as three processes (`--role api`,
//!    `--role projector`, `--role relay`) on a fresh broker and a fresh FerretDB, offered
//!    quotes open loop at a fixed rate (default 500/s), each read back with `?after=`.
//!
//! The backlog of (3) and (4) is filled once, by the real binary's API role (HTTP → Kafka), and
//! both consumers read it in groups of their own. Their timers start at their first progress,
//! so group joins are not counted; (5) sends one quote through before its clock starts. Each row
//! carries the CPU time spent in it by the broker's JVM, by FerretDB and by each measured
//! process (this bench itself for the raw rows and the baseline), and the peak RSS of each.
//!
//! `cargo bench -p enrollstream --bench comparison` (env: BENCH_EVENTS, default 10,000, for
//! rows 1-4; BENCH_PIPELINE_EVENTS for row 5, default BENCH_EVENTS; BENCH_CONCURRENCY for the
//! backlog's HTTP clients, default 32; BENCH_RATE for row 5, default 500). docs/benchmarks.md records the figures.

mod support;

use std::time::{Duration, Instant};

use enrollstream_testkit::testbed::{Kafka, Mongo};
use mongodb::bson::{doc, Document};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use support::{cpu_seconds, ms, peak_rss_mib, App, Latencies};

/// The backlog's topic: where the API publishes quote events.
const QUOTE_EVENTS: &str = "quote-events";
/// The seed's reactor topic, written by the baseline.
const ENTITY_UPDATES: &str = "entity-updates";
/// Any phase taking longer has stalled; fail rather than hang.
const LIMIT: Duration = Duration::from_secs(1800);

/// The servers a row runs on, for their CPU time.
#[derive(Clone, Copy)]
struct Bed {
    kafka: u32,
    mongo: u32,
    /// FerretDB's PostgreSQL (the postmaster; its backends are counted with it), on that
    /// handler.
    postgres: Option<u32>,
}

impl Bed {
    /// A fresh broker and FerretDB from the test bed, stopped when dropped.
    fn start() -> (Kafka, Mongo, Bed) {
        let kafka = Kafka::start_for_benchmark()
            .unwrap_or_else(|e| panic!("the Kafka broker did not start: {e:#}"));
        let mongo = Mongo::start().unwrap_or_else(|e| panic!("FerretDB did not start: {e:#}"));
        let bed = Bed {
            kafka: kafka.pid().expect("the broker runs"),
            mongo: mongo.pid().expect("FerretDB runs"),
            postgres: mongo.postgres_pid(),
        };
        (kafka, mongo, bed)
    }
}

/// What a process spent in one row: CPU seconds from its start, peak RSS at its end.
struct Spent {
    what: &'static str,
    cpu: f64,
    /// One of the bed's servers, not a measured process.
    server: bool,
    rss_mib: Option<f64>,
}

/// CPU seconds of the bed's servers and the measured processes over one row.
struct Cpu {
    pids: Vec<(&'static str, u32)>,
    /// How many of `pids` are the bed's servers (they come first).
    servers: usize,
    at: Vec<f64>,
}

impl Cpu {
    fn start(bed: Bed, measured: &[(&'static str, u32)]) -> Cpu {
        let mut pids = vec![("Kafka", bed.kafka), ("FerretDB", bed.mongo)];
        pids.extend(bed.postgres.map(|pid| (POSTGRESQL, pid)));
        let servers = pids.len();
        pids.extend_from_slice(measured);
        let mut cpu = Cpu {
            pids,
            servers,
            at: Vec::new(),
        };
        cpu.at = (0..cpu.pids.len()).map(|i| cpu.seconds(i)).collect();
        cpu
    }

    fn seconds(&self, i: usize) -> f64 {
        match self.pids[i] {
            (POSTGRESQL, pid) => support::tree_cpu_seconds(pid),
            (_, pid) => cpu_seconds(pid),
        }
    }

    /// Peak RSS is read for the processes started for the row, not for the servers (whose
    /// peak spans the run; printed once at the end) nor for this bench.
    fn spent(&self) -> Vec<Spent> {
        let me = std::process::id();
        (0..self.pids.len())
            .map(|i| {
                let (what, pid) = self.pids[i];
                Spent {
                    what,
                    cpu: self.seconds(i) - self.at[i],
                    server: i < self.servers,
                    rss_mib: (i >= self.servers && pid != me).then(|| peak_rss_mib(pid)),
                }
            })
            .collect()
    }
}

const POSTGRESQL: &str = "PostgreSQL";

struct Row {
    what: &'static str,
    rate: f64,
    spent: Vec<Spent>,
}

/// rdkafka alone on this broker, messages shaped like the backlog's (a quote event's size and
/// CloudEvents headers, as the API publishes them), on a topic of their own.
async fn raw_broker(brokers: &str, n: usize, bed: Bed) -> (Row, Row) {
    let config = enrollstream_kafka::KafkaConfig {
        brokers: brokers.to_string(),
        ..Default::default()
    };
    let topic = "raw-comparison";
    support::raw_topic(&config, topic).await;
    let quote = support::quote_message();
    let me = [("bench", std::process::id())];
    let cpu = Cpu::start(bed, &me);
    let produced = enrollstream_kafka::throughput::produce(
        &config,
        topic,
        n,
        quote.payload.len(),
        &quote.headers,
    )
    .await
    .expect("raw produce");
    let produce = cpu.spent();
    let cpu = Cpu::start(bed, &me);
    let consumed = tokio::task::spawn_blocking(move || {
        enrollstream_kafka::throughput::consume(&config, topic, n, LIMIT)
    })
    .await
    .unwrap()
    .expect("raw consume");
    (
        Row {
            what: "1. raw rdkafka produce",
            rate: produced.per_second(),
            spent: produce,
        },
        Row {
            what: "1. raw rdkafka consume",
            rate: consumed.per_second(),
            spent: cpu.spent(),
        },
    )
}

/// The driver alone on this server: the store's own entries for `n` new quotes (event, state
/// and two outbox messages each), unordered `insert_many` of 500, majority and journaled as the
/// store writes, into an empty collection without indexes.
async fn raw_store(uri: &str, n: usize, bed: Bed) -> Row {
    use enrollstream_testkit::contract::store::fixtures::new_quote;
    let wc = mongodb::options::WriteConcern::builder()
        .w(mongodb::options::Acknowledgment::Majority)
        .journal(true)
        .build();
    let log = mongodb::Client::with_uri_str(uri)
        .await
        .expect("raw store client")
        .database("raw_store")
        .collection_with_options::<Document>(
            "event_log",
            mongodb::options::CollectionOptions::builder()
                .write_concern(wc)
                .build(),
        );
    let entries: Vec<Document> = (0..n)
        .map(|_| enrollstream_mongodb::entry_document(&new_quote()).expect("an entry"))
        .collect();
    let cpu = Cpu::start(bed, &[("bench", std::process::id())]);
    let started = Instant::now();
    for batch in entries.chunks(500) {
        log.insert_many(batch)
            .ordered(false)
            .await
            .expect("raw insert_many");
    }
    Row {
        what: "2. raw store insert_many (500)",
        rate: n as f64 / started.elapsed().as_secs_f64(),
        spent: cpu.spent(),
    }
}

/// The seed's consumer: one message at a time, each write awaited before the next.
async fn baseline(brokers: &str, mongo: &str, n: u64, bed: Bed) -> Row {
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
    let deadline = Instant::now() + LIMIT;
    for i in 0..n {
        let message = tokio::time::timeout_at(deadline.into(), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("the baseline stalled after {i} of {n} messages"))
            .expect("baseline receives");
        if started.is_none() {
            started = Some((
                Instant::now(),
                Cpu::start(bed, &[("bench", std::process::id())]),
            ));
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
    let (started, cpu) = started.expect("at least one message");
    Row {
        what: "3. baseline: seed 003 per message",
        rate: n as f64 / started.elapsed().as_secs_f64(),
        spent: cpu.spent(),
    }
}

fn args(brokers: &str, mongo: &str, roles: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--kafka-brokers", brokers, "--mongodb-uri", mongo]
        .map(String::from)
        .into();
    for role in roles {
        args.extend(["--role".to_string(), role.to_string()]);
    }
    args
}

/// Polls `done` until it holds, failing at `deadline` with `what`.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    every: Duration,
    deadline: Instant,
    mut done: impl FnMut() -> F,
) {
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {LIMIT:?}");
        tokio::time::sleep(every).await;
    }
}

/// The outbox's backlog counts in FerretDB (a scan), so it is polled once the last event is
/// projected, and then rarely.
async fn outbox_drained(client: &reqwest::Client, url: &str, deadline: Instant) {
    until(
        "the relay drains the outbox",
        Duration::from_millis(250),
        deadline,
        || async { support::outbox_backlog(client, url).await == Some(0) },
    )
    .await;
}

/// The real binary's projector and relay on the backlog: done when every event is projected
/// and the outbox is empty.
async fn ours(client: &reqwest::Client, brokers: &str, mongo: &str, n: u64, bed: Bed) -> Row {
    let app = support::start_fresh(&args(brokers, mongo, &["projector", "relay"]));
    let url = app.url.as_str();
    let deadline = Instant::now() + LIMIT;
    until(
        "the projector starts",
        Duration::from_millis(2),
        deadline,
        || async { support::projected(client, url).await > 0 },
    )
    .await;
    let cpu = Cpu::start(bed, &[("projector+relay", app.pid())]);
    let started = Instant::now();
    let first = support::projected(client, url).await;
    until(
        "the projector projects the backlog",
        Duration::from_millis(20),
        deadline,
        || async { support::projected(client, url).await >= n },
    )
    .await;
    outbox_drained(client, url, deadline).await;
    Row {
        what: "4. enrollstream projector + relay",
        rate: (n - first) as f64 / started.elapsed().as_secs_f64(),
        spent: cpu.spent(),
    }
}

/// The whole pipeline from HTTP, its roles in three processes on a fresh broker and store:
/// `n` quotes offered at `rate` per second, each read back with `?after=`. The row's rate is
/// from the first send until the last quote is in the read model; the outbox's drain is timed
/// apart.
async fn pipeline(client: &reqwest::Client, n: u64, rate: u64) -> (Row, Latencies, Duration) {
    let (kafka, mongo, bed) = Bed::start();
    let (brokers, uri) = (kafka.bootstrap(), mongo.uri());
    let role = |role| support::start_fresh(&args(&brokers, &uri, &[role]));
    let (projector, relay, api): (App, App, App) = (role("projector"), role("relay"), role("api"));
    support::warm_up(client, &api.url).await;
    let processes = [
        ("api", api.pid()),
        ("projector", projector.pid()),
        ("relay", relay.pid()),
    ];
    let cpu = Cpu::start(bed, &processes);
    let deadline = Instant::now() + LIMIT;
    // On MongoDB a read waiting with `?after=` polls the store (up to every 100 ms): at most
    // 32 requests in flight, so the reads do not take the store from the pipeline they measure.
    let samples = support::offer(client, &api.url, rate, n, deadline, 32).await;
    let first = samples.iter().map(|s| s.2).min().expect("samples");
    let last = samples
        .iter()
        .map(|(accept, projected, sent)| *sent + *accept + *projected)
        .max()
        .expect("samples");
    outbox_drained(client, &api.url, deadline).await;
    let drained = first.elapsed();
    let row = Row {
        what: "5. pipeline from HTTP (open loop)",
        rate: n as f64 / (last - first).as_secs_f64(),
        spent: cpu.spent(),
    };
    println!(
        "5. pipeline: peak RSS of its own Kafka JVM {:.0} MiB and FerretDB {:.0} MiB",
        peak_rss_mib(bed.kafka),
        peak_rss_mib(bed.mongo)
    );
    (row, Latencies::of(&samples), drained)
}

fn print_table(rows: &[&Row], baseline: f64, raw_store: f64) {
    println!(
        "{:<36} {:>9} {:>8} {:>9}  servers: CPU s; measured processes: CPU s (peak RSS)",
        "", "events/s", "/ base", "/ store"
    );
    for row in rows {
        let (servers, processes): (Vec<&Spent>, Vec<&Spent>) =
            row.spent.iter().partition(|s| s.server);
        let servers: Vec<String> = servers
            .iter()
            .map(|s| format!("{} {:.2}", s.what, s.cpu))
            .collect();
        let processes: Vec<String> = processes
            .iter()
            .map(|s| match s.rss_mib {
                Some(rss) => format!("{} {:.2} ({rss:.0} MiB)", s.what, s.cpu),
                None => format!("{} {:.2}", s.what, s.cpu),
            })
            .collect();
        println!(
            "{:<36} {:>9.1} {:>7.2}x {:>8.1}%  {}; {}",
            row.what,
            row.rate,
            row.rate / baseline,
            100.0 * row.rate / raw_store,
            servers.join(", "),
            processes.join(", ")
        );
    }
}

fn main() {
    let n = support::env_or("BENCH_EVENTS", 10_000);
    let concurrency = support::env_or("BENCH_CONCURRENCY", 32);
    let rate = support::env_or("BENCH_RATE", 500);
    let offered = support::env_or("BENCH_PIPELINE_EVENTS", n);
    let (kafka, mongo, bed) = Bed::start();
    let (brokers, uri) = (kafka.bootstrap(), mongo.uri());
    // Every process the bench starts reads the store the way that suits this server; set
    // before any thread runs.
    std::env::set_var("ENROLLSTREAM_MONGODB__LOOKUPS", mongo.lookups());
    let handler = mongo.handler();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        let (produce, consume) = raw_broker(&brokers, n as usize, bed).await;
        println!("1. raw broker: done");
        let store = raw_store(&uri, n as usize, bed).await;
        println!("2. raw store: done");

        let api = support::start_fresh(&args(&brokers, &uri, &["api"]));
        let filled = Instant::now();
        support::post_quotes(&client, &api.url, n, concurrency).await;
        drop(api);
        println!(
            "backlog: {n} quote events on {QUOTE_EVENTS} through the API role ({concurrency} clients) in {:.2} s",
            filled.elapsed().as_secs_f64()
        );

        let base = baseline(&brokers, &uri, n, bed).await;
        println!("3. baseline: done");
        let ours = ours(&client, &brokers, &uri, n, bed).await;
        println!("4. projector + relay: done");
        let (whole, latencies, drained) = pipeline(&client, offered, rate).await;
        println!("5. pipeline: done");

        println!(
            "\nApache Kafka 4.1.1 (KRaft, one node) + FerretDB 1.24.2 ({handler} handler, `lookups = \"{}\"`), {n} events in rows 1-4, {offered} in row 5",
            mongo.lookups()
        );
        print_table(
            &[&produce, &consume, &store, &base, &ours, &whole],
            base.rate,
            store.rate,
        );
        let (accept, projected, total) = (&latencies.accept, &latencies.projected, &latencies.total);
        let p = support::percentile;
        println!(
            "5. {offered} quotes offered at {rate} events/s: request→202 p50 {:.1} ms p99 {:.1} ms; 202→projected (accept→projected) p50 {:.1} ms p99 {:.1} ms; request→projected p99 {:.1} ms; outbox empty {:.2} s after the first send; {} reads asked again (409/503)",
            ms(p(accept, 0.5)),
            ms(p(accept, 0.99)),
            ms(p(projected, 0.5)),
            ms(p(projected, 0.99)),
            ms(p(total, 0.99)),
            drained.as_secs_f64(),
            support::READS_AGAIN.load(std::sync::atomic::Ordering::Relaxed),
        );
        println!(
            "peak RSS over the run: Kafka JVM {:.0} MiB, FerretDB {:.0} MiB, this bench (raw clients, baseline, HTTP clients) {:.0} MiB",
            peak_rss_mib(bed.kafka),
            peak_rss_mib(bed.mongo),
            peak_rss_mib(std::process::id()),
        );
    });
}
