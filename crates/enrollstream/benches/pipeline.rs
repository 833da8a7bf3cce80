//! Benchmark of the embedded pipeline through the real binary: HTTP ingest → embedded bus →
//! projector → SQLite read model.
//!
//! 1. Throughput: N quotes posted by C concurrent clients; events/s until the last one is in the
//!    read model (read from the projector's counter at /metrics).
//! 2. Latency at a fixed offered rate (open loop, default 1,000 events/s), measured after 10 s of
//!    the same load: for every request, the time to the 202 (accept) and from the 202 until the
//!    event is in the read model (a read with `?after=EVENT_ID`, which the store answers as soon
//!    as the event is applied).
//!
//! The servers run with `[api] auth = "off"` and no rate limit: the figures are the pipeline's.
//!
//! `cargo bench -p enrollstream --bench pipeline` (env: BENCH_EVENTS, BENCH_CONCURRENCY,
//! BENCH_RATE, BENCH_SECONDS, BENCH_SERVE_ARGS for extra `serve` arguments,
//! BENCH_WARMUP_SECONDS for the unmeasured load before the latency phase, default 10,
//! BENCH_LATENCY_TRACE=FILE for every request's latencies). With
//! `BENCH_KAFKA=1` the same runs go through a fresh Apache Kafka broker (from the test bed)
//! with the SQLite store, after the broker's raw rdkafka produce and consume rates on the
//! same topic layout (bare messages, and messages shaped like a quote event with its CloudEvents
//! headers), so each figure reads as a ratio of the raw rate, and after each stage alone (the
//! API producing, the projector consuming a backlog, the relay producing the outbox) as a ratio
//! of the raw rate of what it does; the latency phase then offers 500 events/s unless
//! BENCH_RATE says otherwise. `BENCH_KAFKA=pipeline` runs only the pipeline on Kafka (no raw
//! rates, no stages), to compare builds. Results go to stdout; docs/benchmarks.md records
//! them.

mod support;

use std::time::{Duration, Instant};

use support::{
    env_or, metric, outbox_backlog, percentile, post_quotes, projected, quote_message, warm_up, App,
};

/// The binary's arguments: `roles` empty, every role; `BENCH_SERVE_ARGS` last, for diagnosis
/// (e.g. "--role api --role projector").
fn serve_args(kafka: Option<&str>, roles: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    for role in roles {
        args.extend(["--role".to_string(), role.to_string()]);
    }
    if let Some(brokers) = kafka {
        args.extend(["--kafka-brokers".to_string(), brokers.to_string()]);
    }
    if let Ok(extra) = std::env::var("BENCH_SERVE_ARGS") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    args
}

fn start(kafka: Option<&str>) -> App {
    support::start_fresh(&serve_args(kafka, &[]))
}

fn start_in(dir: &std::path::Path, kafka: Option<&str>, roles: &[&str]) -> App {
    support::start(dir, &serve_args(kafka, roles))
}

/// Offers `rate` quotes/s for `seconds` (open loop) and reads each back with `?after=`.
async fn offer(
    client: &reqwest::Client,
    url: &str,
    rate: u64,
    seconds: u64,
) -> Vec<support::Sample> {
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    support::offer(client, url, rate, rate * seconds, deadline, 256).await
}

async fn throughput(client: &reqwest::Client, kafka: Option<&str>) {
    let n = env_or("BENCH_EVENTS", 20_000);
    let concurrency = env_or("BENCH_CONCURRENCY", 64);
    let app = start(kafka);
    let started = Instant::now();
    let accepted_in = post_quotes(client, &app.url, n, concurrency).await;
    let url = app.url.clone();
    while projected(client, &url).await < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = started.elapsed();
    println!(
        "throughput: {n} events, {concurrency} clients: accepted {:.0} events/s, in the read model {:.0} events/s ({:.2} s)",
        n as f64 / accepted_in.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64()
    );
    if let Some(brokers) = kafka {
        // The relay may still be publishing the last notifications; count once the outbox is empty.
        while outbox_backlog(client, &url).await != Some(0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let config = enrollstream_kafka::KafkaConfig {
            brokers: brokers.to_string(),
            ..Default::default()
        };
        let per_topic = enrollstream_kafka::throughput::messages_on(&config, None)
            .expect("watermarks of the broker's topics");
        let produced: i64 = per_topic.iter().map(|(_, messages)| messages).sum();
        println!(
            "the broker holds {produced} messages, {:.2} per event: {per_topic:?}",
            produced as f64 / n as f64
        );
    }
}

async fn latency(client: &reqwest::Client, kafka: Option<&str>) {
    // Latency is only meaningful at a rate the pipeline sustains; on Kafka with the SQLite store
    // 500 events/s leaves room on this machine (docs/benchmarks.md).
    let rate = env_or("BENCH_RATE", if kafka.is_some() { 500 } else { 1_000 });
    let seconds = env_or("BENCH_SECONDS", 10);
    // The same load before the measured one, not counted: a fresh data directory first grows
    // its files (store.db's WAL grows to 128 MiB before SQLite reuses it), and appends that grow
    // a file stall fsyncs on this machine's disk far more than writes into a reused one. That is
    // start-up, as is the group join on Kafka; a service that has run for a while is past it.
    let warm_up_seconds = env_or("BENCH_WARMUP_SECONDS", 10);
    let app = start(kafka);
    warm_up(client, &app.url).await;
    if warm_up_seconds > 0 {
        offer(client, &app.url, rate, warm_up_seconds).await;
    }
    let samples = offer(client, &app.url, rate, seconds).await;
    let (mut accept, mut persisted, mut total) = (Vec::new(), Vec::new(), Vec::new());
    // One line per request (seconds since the first, request→202 ms, 202→read model ms), to see
    // whether slow requests come together (a stall) or spread out.
    let mut trace = String::from("sent_s accept_ms persisted_ms\n");
    let first = samples.first().map(|(_, _, sent)| *sent);
    for (a, p, sent) in samples {
        trace.push_str(&format!(
            "{:.4} {:.3} {:.3}\n",
            (sent - first.unwrap_or(sent)).as_secs_f64(),
            a.as_secs_f64() * 1e3,
            p.as_secs_f64() * 1e3
        ));
        accept.push(a);
        persisted.push(p);
        total.push(a + p);
    }
    if let Ok(path) = std::env::var("BENCH_LATENCY_TRACE") {
        std::fs::write(&path, trace).expect("BENCH_LATENCY_TRACE is writable");
    }
    accept.sort();
    persisted.sort();
    total.sort();
    println!(
        "latency at {rate} events/s for {seconds} s (after {warm_up_seconds} s of the same load): request→202 p50 {:.2} ms p99 {:.2} ms; 202→in read model p50 {:.2} ms p99 {:.2} ms; request→in read model p99 {:.2} ms",
        percentile(&accept, 0.5).as_secs_f64() * 1e3,
        percentile(&accept, 0.99).as_secs_f64() * 1e3,
        percentile(&persisted, 0.5).as_secs_f64() * 1e3,
        percentile(&persisted, 0.99).as_secs_f64() * 1e3,
        percentile(&total, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        let kafka = std::env::var("BENCH_KAFKA").unwrap_or_default();
        if kafka == "1" || kafka == "pipeline" {
            let broker = enrollstream_testkit::testbed::Kafka::start_for_benchmark()
                .expect("the Kafka broker starts (bash scripts/testbed/install.sh)");
            if kafka == "1" {
                let raw = enrollstream_testkit::testbed::Kafka::start_for_benchmark()
                    .expect("a second broker starts");
                let raw_rate = raw_rates(&raw.bootstrap()).await;
                drop(raw);
                stages(&client, raw_rate).await;
            }
            println!("pipeline on Kafka with the SQLite store:");
            throughput(&client, Some(&broker.bootstrap())).await;
            latency(&client, Some(&broker.bootstrap())).await;
        } else {
            println!("pipeline on the embedded bus and store:");
            disk_probe();
            throughput(&client, None).await;
            disk_probe();
            latency(&client, None).await;
            disk_probe();
        }
    });
}

/// The disk's fsync latency right now, where the binary keeps its data (the temp dir): the
/// pipeline's figures swing with the machine's disk (p99 10-50 ms for one binary within an
/// hour), so each run records the state it ran in. A 12 KiB rewrite + fsync, 1,000 per second
/// for 2 s, is about what the bus and the store each do at 1,000 events/s.
fn disk_probe() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("probe")).unwrap();
    let block = vec![7u8; 12 * 1024];
    let mut latencies = Vec::new();
    let started = Instant::now();
    for i in 0..2_000u64 {
        // Rewrites within 8 MiB, as a WAL that SQLite reuses: growth is another matter.
        file.write_all_at(&block, (i * 12 * 1024) % (8 << 20))
            .unwrap();
        let t = Instant::now();
        file.sync_all().unwrap();
        latencies.push(t.elapsed());
        let due = started + Duration::from_millis(i + 1);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    latencies.sort();
    println!(
        "disk probe (12 KiB rewrite + fsync, 1,000/s for 2 s): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// The broker's raw rates with rdkafka on the pipeline's topic layout (3 partitions): bare
/// 600-byte messages, then messages shaped like a quote event (its size and its CloudEvents
/// headers), each on a topic of its own.
/// Raw produce and consume rates (msgs/s) of quote-shaped CloudEvents, default batching.
async fn raw_rates(bootstrap: &str) -> (f64, f64) {
    let n = env_or("BENCH_EVENTS", 20_000) as usize;
    let config = enrollstream_kafka::KafkaConfig {
        brokers: bootstrap.to_string(),
        ..Default::default()
    };
    let quote = quote_message();
    let runs = [
        ("raw-bench-bare", 600, Vec::new()),
        ("raw-bench-cloudevents", quote.payload.len(), quote.headers),
    ];
    let mut cloudevents = (0.0, 0.0);
    for (topic, size, headers) in runs {
        support::raw_topic(&config, topic).await;
        let produced = enrollstream_kafka::throughput::produce(&config, topic, n, size, &headers)
            .await
            .expect("raw produce");
        let consumed = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || {
                enrollstream_kafka::throughput::consume(&config, topic, n, Duration::from_secs(300))
            })
            .await
            .unwrap()
            .expect("raw consume")
        };
        println!(
            "raw rdkafka on this broker, {n} messages of {size} B with {} headers, batches of {}: produce {:.0} msgs/s, consume {:.0} msgs/s",
            headers.len(),
            config.batch_num_messages,
            produced.per_second(),
            consumed.per_second()
        );
        if topic == "raw-bench-cloudevents" {
            cloudevents = (produced.per_second(), consumed.per_second());
        }
    }
    cloudevents
}

/// Each stage alone on a fresh broker and one data directory, so each is a ratio of the raw
/// rate of what it does: the API produces the events, the projector consumes them into the
/// store (from a backlog), the relay produces the outbox (two messages per quote). Timers start
/// at a stage's first progress, so group joins are not counted.
async fn stages(client: &reqwest::Client, raw: (f64, f64)) {
    let n = env_or("BENCH_EVENTS", 20_000);
    let concurrency = env_or("BENCH_CONCURRENCY", 64);
    let broker =
        enrollstream_testkit::testbed::Kafka::start_for_benchmark().expect("a third broker starts");
    let bootstrap = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();

    let api = start_in(dir.path(), Some(&bootstrap), &["api"]);
    let accepted = post_quotes(client, &api.url, n, concurrency).await;
    drop(api);
    let ingest = n as f64 / accepted.as_secs_f64();
    println!(
        "stage ingest (api alone, {concurrency} clients): {ingest:.0} events/s = {:.0} % of raw produce",
        100.0 * ingest / raw.0
    );

    let projector = start_in(dir.path(), Some(&bootstrap), &["projector"]);
    while projected(client, &projector.url).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Where the projector's time goes: handling (the store's reads and its durable write) and
    // committing, from its own metrics; the rest is fetching (overlapped with handling).
    let spent = |url: String| async move {
        (
            metric(client, &url, "enrollstream_consumer_batch_seconds_sum").await,
            metric(client, &url, "enrollstream_consumer_commit_seconds_sum").await,
        )
    };
    let started = Instant::now();
    let first = projected(client, &projector.url).await;
    let (handling, committing) = spent(projector.url.clone()).await;
    while projected(client, &projector.url).await < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (n - first) as f64 / elapsed;
    let (handled, committed) = spent(projector.url.clone()).await;
    drop(projector);
    println!(
        "stage projector (alone, on a backlog, into the SQLite store): {rate:.0} events/s = {:.0} % of raw consume; handling {:.0} % of the time, committing {:.0} %",
        100.0 * rate / raw.1,
        100.0 * (handled - handling) / elapsed,
        100.0 * (committed - committing) / elapsed,
    );

    let relay = start_in(dir.path(), Some(&bootstrap), &["relay"]);
    let all = outbox_backlog(client, &relay.url)
        .await
        .expect("readyz counts the outbox");
    while outbox_backlog(client, &relay.url).await == Some(all) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let left = outbox_backlog(client, &relay.url)
        .await
        .expect("readyz counts the outbox");
    while outbox_backlog(client, &relay.url).await != Some(0) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = left as f64 / started.elapsed().as_secs_f64();
    drop(relay);
    println!(
        "stage relay (alone, {all} outbox messages): {rate:.0} msgs/s = {:.0} % of raw produce",
        100.0 * rate / raw.0
    );
}
