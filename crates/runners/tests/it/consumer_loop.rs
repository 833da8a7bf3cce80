//! The consumer loop on the embedded bus: batches are pipelined (the next one is fetched and the
//! last one committed while the handler works), yet every message is handled once, in order per
//! partition, and everything handled is committed before the loop waits or leaves.

use async_trait::async_trait;
use enrollstream_ports::{
    CommitPosition, EventBus, HealthRegistry, InboundMessage, OutboundMessage,
};
use enrollstream_runners::consumer::{
    BatchHandler, ConsumerLoop, ConsumerSettings, Outcome, Retry,
};
use enrollstream_sqlite::bus::EmbeddedBus;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "enrollment-events";
const GROUP: &str = "consumer-loop-test";
const PARTITIONS: i32 = 3;
/// Upper bound of every wait; reached only when something is broken.
const DEADLINE: Duration = Duration::from_secs(60);

/// (partition, offset) of each message, batch by batch, as the handler saw them.
type Batches = Arc<Mutex<Vec<Vec<(i32, i64)>>>>;

/// Records every batch; the first batch waits until the test lets it go.
struct Recorder {
    batches: Batches,
    first_batch_gate: Option<Arc<Semaphore>>,
    first_batch_started: Arc<Semaphore>,
}

#[async_trait]
impl BatchHandler for Recorder {
    async fn handle(&mut self, batch: &[InboundMessage]) -> Result<Vec<Outcome>, Retry> {
        if let Some(gate) = self.first_batch_gate.take() {
            self.first_batch_started.add_permits(1);
            gate.acquire().await.expect("gate open").forget();
        }
        self.batches
            .lock()
            .unwrap()
            .push(batch.iter().map(|m| (m.partition, m.offset)).collect());
        Ok(vec![Outcome::Done; batch.len()])
    }
}

struct Bed {
    _dir: tempfile::TempDir,
    bus: Arc<EmbeddedBus>,
    published: usize,
}

impl Bed {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = Arc::new(EmbeddedBus::open(dir.path(), PARTITIONS).expect("embedded bus"));
        Self {
            _dir: dir,
            bus,
            published: 0,
        }
    }

    async fn publish(&mut self, n: usize) {
        let messages = (self.published..self.published + n)
            .map(|i| OutboundMessage {
                key: format!("A-{}", i % 7),
                headers: Vec::new(),
                payload: i.to_string().into_bytes(),
            })
            .collect();
        self.bus
            .publisher()
            .publish(TOPIC, messages)
            .await
            .expect("publish");
        self.published += n;
    }

    /// Start the loop with batches of `batch_size`; the first batch is held at `gate` if given.
    fn start(&self, batch_size: usize, gate: Option<Arc<Semaphore>>) -> Running {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Semaphore::new(0));
        let mut settings = ConsumerSettings::new(GROUP, vec![TOPIC.to_string()]);
        settings.batch_size = batch_size;
        settings.poll_wait = Duration::from_millis(50);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            ConsumerLoop {
                bus: self.bus.clone(),
                handler: Recorder {
                    batches: batches.clone(),
                    first_batch_gate: gate,
                    first_batch_started: started.clone(),
                },
                settings,
                health: HealthRegistry::default(),
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        Running {
            batches,
            first_batch_started: started,
            shutdown,
            task,
        }
    }

    async fn committed(&self) -> BTreeMap<i32, i64> {
        self.bus
            .committed(GROUP, &[TOPIC.to_string()])
            .await
            .expect("committed")
            .into_iter()
            .map(
                |CommitPosition {
                     partition,
                     next_offset,
                     ..
                 }| (partition, next_offset),
            )
            .collect()
    }

    /// The next offset of each partition: what a consumer that handled everything commits.
    async fn ends(&self) -> BTreeMap<i32, i64> {
        let mut ends = BTreeMap::new();
        for (partition, offset) in self.handled_by_a_fresh_reader().await {
            let end = ends.entry(partition).or_insert(0);
            *end = (*end).max(offset + 1);
        }
        ends
    }

    async fn handled_by_a_fresh_reader(&self) -> Vec<(i32, i64)> {
        let mut spec = enrollstream_ports::SubscriptionSpec::new("end-reader", &[TOPIC]);
        spec.start = enrollstream_ports::StartFrom::Earliest;
        let mut sub = self.bus.subscribe(spec).await.expect("subscribe");
        let mut seen = Vec::new();
        let started = Instant::now();
        while seen.len() < self.published && started.elapsed() < DEADLINE {
            let batch = sub
                .poll(1_000, Duration::from_millis(50))
                .await
                .expect("poll");
            seen.extend(batch.iter().map(|m| (m.partition, m.offset)));
        }
        assert_eq!(
            seen.len(),
            self.published,
            "the bus holds what was published"
        );
        seen
    }
}

struct Running {
    batches: Batches,
    first_batch_started: Arc<Semaphore>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn handled(&self) -> Vec<(i32, i64)> {
        self.batches.lock().unwrap().concat()
    }

    async fn until_handled(&self, n: usize) {
        let started = Instant::now();
        while self.handled().len() < n {
            assert!(
                started.elapsed() < DEADLINE,
                "handled {} of {n} messages",
                self.handled().len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stop gracefully: returns once the loop has committed and left the group.
    async fn stop(self) -> Vec<(i32, i64)> {
        self.shutdown.cancel();
        self.task.await.expect("the loop ends cleanly");
        self.batches.lock().unwrap().concat()
    }
}

/// Every published offset exactly once, ascending within each partition.
fn assert_once_in_order(handled: &[(i32, i64)], published: usize) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for &(partition, offset) in handled {
        let previous = last.insert(partition, offset);
        assert!(
            previous.is_none_or(|p| p + 1 == offset),
            "partition {partition}: offset {offset} after {previous:?}"
        );
    }
    assert_eq!(handled.len(), published, "each message handled once");
}

#[tokio::test]
async fn messages_arriving_while_a_batch_is_handled_are_neither_skipped_nor_handled_twice() {
    let mut bed = Bed::new();
    bed.publish(150).await;
    let gate = Arc::new(Semaphore::new(0));
    let running = bed.start(100, Some(gate.clone()));
    // The first batch is held: what is left of the 150 is fetched ahead meanwhile, and what
    // arrives now is topped up into the next batch.
    running
        .first_batch_started
        .acquire()
        .await
        .expect("first batch")
        .forget();
    bed.publish(60).await;
    gate.add_permits(1);
    running.until_handled(210).await;
    let handled = running.stop().await;
    assert_once_in_order(&handled, 210);
    assert_eq!(bed.committed().await, bed.ends().await);
}

#[tokio::test]
async fn everything_handled_is_committed_before_the_loop_waits_for_more() {
    let mut bed = Bed::new();
    bed.publish(1_200).await;
    let running = bed.start(200, None);
    running.until_handled(1_200).await;
    // The loop is idle now, waiting for more; its last batch must not wait with it.
    let ends = bed.ends().await;
    let started = Instant::now();
    while bed.committed().await != ends {
        assert!(
            started.elapsed() < DEADLINE,
            "the last batch was never committed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let handled = running.stop().await;
    assert_once_in_order(&handled, 1_200);
}

#[tokio::test]
async fn a_graceful_stop_commits_the_last_batch_and_a_restart_handles_only_what_is_new() {
    let mut bed = Bed::new();
    bed.publish(300).await;
    let running = bed.start(100, None);
    running.until_handled(300).await;
    let handled = running.stop().await;
    assert_once_in_order(&handled, 300);
    let before = bed.ends().await;
    assert_eq!(bed.committed().await, before);

    bed.publish(30).await;
    let running = bed.start(100, None);
    running.until_handled(30).await;
    let handled = running.stop().await;
    assert_eq!(handled.len(), 30, "only the new messages: {handled:?}");
    for (partition, offset) in &handled {
        assert!(
            before.get(partition).is_none_or(|end| offset >= end),
            "partition {partition}: offset {offset} was handled before the restart"
        );
    }
    assert_eq!(bed.committed().await, bed.ends().await);
}
