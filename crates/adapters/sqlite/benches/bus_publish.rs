//! Throughput of the embedded bus as the API uses it: many concurrent callers, one event per
//! `publish` call, each call waiting until its event is fsync'ed; then one group reading it all.
//!
//! `cargo bench -p enrollstream-sqlite --bench bus_publish [-- CALLERS EVENTS_PER_CALLER]`
//! (defaults 64 and 200). The data directory is a fresh temp dir on the default temp disk.

use enrollstream_ports::{EventBus, OutboundMessage, StartFrom, SubscriptionSpec, TopicSpec};
use enrollstream_sqlite::bus::EmbeddedBus;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "enrollment-events";

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let callers = numbers.first().copied().unwrap_or(64);
    let each = numbers.get(1).copied().unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(callers, each));
}

/// About the size of an application event in the CloudEvents binary binding.
fn event(key: &str, seq: usize) -> OutboundMessage {
    let h = |k: &str, v: String| (k.to_string(), v);
    OutboundMessage {
        key: key.to_string(),
        headers: vec![
            h("ce_specversion", "1.0".into()),
            h("ce_id", format!("{key}-{seq:08}")),
            h("ce_source", "/enrollstream/api".into()),
            h("ce_type", "com.enrollstream.application.submitted".into()),
            h("ce_subject", key.to_string()),
            h("ce_time", "2026-01-01T00:00:00Z".into()),
            h("content-type", "application/json".into()),
        ],
        payload: format!(
            r#"{{"application_id":"{key}","seq":{seq},"notes":"{}"}}"#,
            "x".repeat(700)
        )
        .into_bytes(),
    }
}

async fn run(callers: usize, each: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Arc::new(EmbeddedBus::open(dir.path(), 6).expect("open bus"));
    let topic = TopicSpec {
        name: TOPIC.into(),
        partitions: 6,
        replication: 1,
        retention: None,
    };
    bus.ensure_topics(&[topic]).await.expect("topic");

    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let publisher = bus.publisher();
        tasks.push(tokio::spawn(async move {
            let key = format!("application-{caller}");
            for seq in 0..each {
                publisher
                    .publish(TOPIC, vec![event(&key, seq)])
                    .await
                    .expect("publish");
            }
        }));
    }
    for task in tasks {
        task.await.expect("publishing task");
    }
    let total = callers * each;
    report(
        "publish",
        total,
        started.elapsed(),
        &format!("{callers} concurrent callers, 1 event per call"),
    );

    let mut spec = SubscriptionSpec::new("bench", &[TOPIC]);
    spec.start = StartFrom::Earliest;
    let mut sub = bus.subscribe(spec).await.expect("subscribe");
    let started = Instant::now();
    let mut read = 0;
    while read < total {
        let batch = sub.poll(500, Duration::from_secs(5)).await.expect("poll");
        assert!(
            !batch.is_empty(),
            "the log ended after {read} of {total} events"
        );
        read += batch.len();
    }
    report(
        "consume",
        read,
        started.elapsed(),
        "one member, polls of 500",
    );
}

fn report(what: &str, events: usize, took: Duration, how: &str) {
    let rate = events as f64 / took.as_secs_f64();
    println!(
        "{what}: {events} events in {:.2} s = {rate:.0} events/s ({how})",
        took.as_secs_f64()
    );
}
