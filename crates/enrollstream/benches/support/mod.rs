//! What the benches of the real binary share: starting it, reading its metrics, posting quotes
//! (closed loop) and offering them at a fixed rate (open loop) with read-your-writes reads, and
//! a process's CPU time and peak memory from /proc.

// Each bench uses a part of this module; what one leaves out is not dead in the other.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A number from the environment; a value that is not one is refused, not ignored.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
        })
        .unwrap_or(default)
}

/// The real binary, killed when dropped.
pub struct App {
    pub child: Child,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl App {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` on a free port with `dir` as its data directory, then `args` (roles, adapters). The
/// pipeline is measured, not the guard: auth off (a verified key costs a SHA-256 and a cache hit
/// per request), and no rate limit on the one caller.
pub fn start(dir: &Path, args: &[String]) -> App {
    let mut child = Command::new(env!("CARGO_BIN_EXE_enrollstream"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
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
            .unwrap_or_else(|| panic!("enrollstream {args:?} exited before listening"))
            .unwrap();
        if let Some(url) = line.strip_prefix("enrollstream listening on ") {
            break url.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    App {
        child,
        url,
        _dir: None,
    }
}

/// As [`start`], on a data directory of its own that goes with it.
pub fn start_fresh(args: &[String]) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut app = start(dir.path(), args);
    app._dir = Some(dir);
    app
}

/// The sum of a metric's series (all labels), from `/metrics`.
pub async fn metric(client: &reqwest::Client, url: &str, name: &str) -> f64 {
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

pub async fn projected(client: &reqwest::Client, url: &str) -> u64 {
    metric(client, url, "enrollstream_events_projected_total").await as u64
}

/// Outbox messages the relay has published (not yet necessarily marked).
pub async fn published(client: &reqwest::Client, url: &str) -> u64 {
    metric(client, url, "enrollstream_outbox_published_total").await as u64
}

/// From `/readyz`, which counts in the store; `None` when the count did not finish within its
/// check's bound. On a store whose count scans (FerretDB), poll it rarely.
pub async fn outbox_backlog(client: &reqwest::Client, url: &str) -> Option<u64> {
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

pub fn quote(i: u64) -> serde_json::Value {
    serde_json::json!({"customer_id": format!("C-{i}"), "product": "dental-basic", "amount_minor": 5000 + i, "currency": "USD"})
}

/// A quote event as the API publishes it: its CloudEvents binary-binding headers and JSON data.
pub fn quote_message() -> enrollstream_ports::OutboundMessage {
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
    let envelope = CloudEvent::new(
        &event,
        "/enrollstream/api",
        chrono::Utc::now(),
        Some(enrollstream_domain::envelope::new_traceparent()),
    );
    enrollstream_ports::codec::encode(&envelope)
}

/// A topic for raw rates, in the pipeline's layout (3 partitions).
pub async fn raw_topic(config: &enrollstream_kafka::KafkaConfig, topic: &str) {
    use enrollstream_ports::{EventBus, TopicSpec};
    let bus = enrollstream_kafka::KafkaBus::new(config.clone()).expect("kafka bus");
    bus.ensure_topics(&[TopicSpec {
        name: topic.into(),
        partitions: 3,
        replication: 1,
        retention: None,
    }])
    .await
    .unwrap_or_else(|e| panic!("topic {topic}: {e}"));
}

/// Posts quote `i`; the API must accept it.
async fn post_quote(client: &reqwest::Client, url: &str, i: u64) -> reqwest::Response {
    let r = client
        .post(format!("{url}/v1/quotes"))
        .json(&quote(i))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(r.status(), 202, "the API accepts quote {i}");
    r
}

/// Posts `n` quotes from `concurrency` clients; returns the time until the last 202.
pub async fn post_quotes(
    client: &reqwest::Client,
    url: &str,
    n: u64,
    concurrency: u64,
) -> Duration {
    let url = Arc::new(url.to_string());
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    post_quote(&client, &url, i).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    started.elapsed()
}

/// Reads that were asked again: the API answered 409 (not projected within its wait) or 503
/// (the request outlived the server's request timeout, as when the store is slow to answer).
pub static READS_AGAIN: AtomicU64 = AtomicU64::new(0);

/// Reads the quote back with `?after=EVENT`, again while the API answers 409 or 503 (see
/// [`READS_AGAIN`]), until `deadline`.
async fn read_projected(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    deadline: Instant,
) {
    let (id, event) = (
        body["quote_id"].as_str().expect("202 names the quote"),
        body["event_id"].as_str().expect("202 names the event"),
    );
    loop {
        let r = client
            .get(format!("{url}/v1/quotes/{id}?after={event}&wait_ms=10000"))
            .send()
            .await
            .expect("the API answers");
        match r.status().as_u16() {
            200 => return,
            409 | 503 if Instant::now() < deadline => {
                READS_AGAIN.fetch_add(1, Ordering::Relaxed);
            }
            status => panic!("reading quote {id} after {event}: {status}"),
        }
    }
}

/// One quote through to the read model before the clock starts: on Kafka the projector's group
/// join takes seconds, which is start-up, not latency.
pub async fn warm_up(client: &reqwest::Client, url: &str) {
    let r = post_quote(client, url, 0).await;
    let body: serde_json::Value = r.json().await.unwrap();
    read_projected(
        client,
        url,
        &body,
        Instant::now() + Duration::from_secs(120),
    )
    .await;
}

/// Per request: request→202, 202→in the read model, and when it was due.
pub type Sample = (Duration, Duration, Instant);

/// Offers `n` quotes at `rate` per second (open loop) and reads each back with `?after=`,
/// giving up at `deadline`. Latency counts from the scheduled send time, so waiting for a
/// connection counts (no coordinated omission). At most `connections` requests are in flight
/// (a post, then its read), so the client never exhausts file descriptors nor the server's
/// in-flight limit, and waiting reads that poll the store stay bounded.
pub async fn offer(
    client: &reqwest::Client,
    url: &str,
    rate: u64,
    n: u64,
    deadline: Instant,
    connections: usize,
) -> Vec<Sample> {
    let url = Arc::new(url.to_string());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let connections = Arc::new(tokio::sync::Semaphore::new(connections));
    let mut tasks = Vec::new();
    for i in 0..n {
        let sent = tick.tick().await.into_std();
        let (client, url, connections) = (client.clone(), url.clone(), connections.clone());
        tasks.push(tokio::spawn(async move {
            let _connection = connections.acquire_owned().await.unwrap();
            let r = post_quote(&client, &url, i).await;
            let body: serde_json::Value = r.json().await.unwrap();
            let accepted = Instant::now();
            read_projected(&client, &url, &body, deadline).await;
            (accepted - sent, accepted.elapsed(), sent)
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        samples.push(t.await.unwrap());
    }
    samples
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The percentiles of an open-loop run, in milliseconds.
pub struct Latencies {
    pub accept: Vec<Duration>,
    pub projected: Vec<Duration>,
    pub total: Vec<Duration>,
}

impl Latencies {
    pub fn of(samples: &[Sample]) -> Latencies {
        let mut l = Latencies {
            accept: samples.iter().map(|s| s.0).collect(),
            projected: samples.iter().map(|s| s.1).collect(),
            total: samples.iter().map(|s| s.0 + s.1).collect(),
        };
        l.accept.sort();
        l.projected.sort();
        l.total.sort();
        l
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces), from the
/// state (field 3) on; `None` when the process is gone.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    // The state is a letter; the rest are numbers.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// USER_HZ is 100 on Linux's every mainstream architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> f64 {
    let fields = stat_fields(pid).unwrap_or_else(|| panic!("/proc/{pid}/stat is gone"));
    (fields[11] + fields[12]) as f64 / TICKS_PER_SECOND
}

/// CPU seconds of a server that forks a process per connection (PostgreSQL): its own and its
/// children's (user + system), with those of children that have exited (which the kernel adds
/// to the parent's `cutime` and `cstime` once it reaped them).
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let with_reaped = |f: &[u64]| f[11] + f[12] + f[13] + f[14];
    let own = stat_fields(pid).unwrap_or_else(|| panic!("/proc/{pid}/stat is gone"));
    let mut ticks = with_reaped(&own);
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Some(child) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        // The parent's pid is field 4, the second after the state.
        if let Some(f) = stat_fields(child).filter(|f| f[1] == u64::from(pid)) {
            ticks += with_reaped(&f);
        }
    }
    ticks as f64 / TICKS_PER_SECOND
}

/// Peak resident set (VmHWM) in MiB, from /proc/PID/status.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("status has VmHWM");
    kib / 1024.0
}
