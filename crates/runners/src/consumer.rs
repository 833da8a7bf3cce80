//! The consumer loop every bus-reading role runs on: poll a batch, let the handler make its
//! effects durable, send what it could not process to the dead-letter topic, and only then
//! commit. A crash anywhere in between means redelivery, which the handlers' fences turn into
//! no-ops; a bad message costs one DLQ write and never blocks its partition.

use async_trait::async_trait;
use enrollstream_domain::envelope::trace_id;
use enrollstream_ports::codec;
use enrollstream_ports::{
    BusError, CommitPosition, EventBus, HealthRegistry, InboundMessage, StartFrom, Subscription,
    SubscriptionSpec,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::dead_letter::{dead_letter_message, publish_dead_letters, DeadLetter};

/// How often a commit answered Fenced is tried again for the partitions still assigned.
const MAX_FENCED_RECOMMITS: u32 = 5;

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is durable (or it needed none).
    Done,
    /// It can never be processed as it is; park it in the DLQ with the reason.
    DeadLetter(DeadLetter),
}

/// A failure of the whole batch that may heal (store or bus away): the batch is retried as a
/// whole after a backoff, nothing is committed meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(pub String);

#[async_trait]
pub trait BatchHandler: Send {
    /// One outcome per message, in order. When this returns `Ok`, the effects of every `Done`
    /// message are durable. Must be idempotent: the same batch may come again after a crash.
    async fn handle(&mut self, batch: &[InboundMessage]) -> Result<Vec<Outcome>, Retry>;

    /// The loop is leaving the group: give up what the handler holds (a lease, say).
    async fn close(&mut self) {}
}

#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub group: String,
    pub topics: Vec<String>,
    pub start: StartFrom,
    pub batch_size: usize,
    pub poll_wait: Duration,
    pub dlq_suffix: String,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl ConsumerSettings {
    pub fn new(group: &str, topics: Vec<String>) -> Self {
        Self {
            group: group.to_string(),
            topics,
            start: StartFrom::Committed,
            batch_size: 500,
            poll_wait: Duration::from_millis(500),
            dlq_suffix: ".dlq".to_string(),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
        }
    }
}

pub struct ConsumerLoop<H> {
    pub bus: Arc<dyn EventBus>,
    pub handler: H,
    pub settings: ConsumerSettings,
    pub health: HealthRegistry,
    pub shutdown: CancellationToken,
}

/// What the loop's steps share; the handler is kept apart so that handling one batch and
/// committing or fetching others can run at the same time.
struct Steps {
    bus: Arc<dyn EventBus>,
    settings: ConsumerSettings,
    health: HealthRegistry,
    shutdown: CancellationToken,
    component: String,
    /// Which side failed last and has not succeeded since: readiness comes back only when
    /// neither has, so that a recovered bus does not hide a handler that still fails.
    bus_failing: AtomicBool,
    handler_failing: AtomicBool,
}

impl<H: BatchHandler> ConsumerLoop<H> {
    /// Runs until shutdown; returns after leaving the group cleanly.
    ///
    /// Batches are pipelined: while the handler makes batch N durable, the loop commits batch
    /// N-1 and fetches what the bus already holds for batch N+1, so the store's durable write
    /// and the bus's round trips overlap instead of adding up. Offsets are still committed only
    /// after the effects are durable, one batch later; before the loop waits for new messages
    /// or leaves, it commits everything it handled.
    pub async fn run(self) {
        let ConsumerLoop {
            bus,
            mut handler,
            settings,
            health,
            shutdown,
        } = self;
        let steps = Steps {
            component: format!("consumer:{}", settings.group),
            bus,
            settings,
            health,
            shutdown,
            bus_failing: AtomicBool::new(false),
            handler_failing: AtomicBool::new(false),
        };
        let mut backoff = Backoff::new(steps.settings.retry_initial, steps.settings.retry_max);
        let mut commit_backoff = backoff.clone();
        let Some(mut sub) = steps.subscribe(&mut backoff).await else {
            return;
        };
        steps.bus_failing.store(false, Ordering::Relaxed);
        steps.health.ready(&steps.component);
        let max = steps.settings.batch_size;
        // Fetched but not handled yet; handled but not committed yet.
        let mut ahead: Vec<InboundMessage> = Vec::new();
        let mut handled: Vec<CommitPosition> = Vec::new();
        while !steps.shutdown.is_cancelled() {
            let batch = if ahead.is_empty() {
                // Nothing is waiting: commit what was handled before waiting for more.
                let positions = std::mem::take(&mut handled);
                if !steps
                    .commit(sub.as_mut(), &positions, &mut commit_backoff)
                    .await
                {
                    break;
                }
                match steps.poll(sub.as_mut(), &mut backoff).await {
                    Some(batch) if batch.is_empty() => {
                        steps.caught_up(sub.as_ref());
                        continue;
                    }
                    Some(batch) => batch,
                    None => break,
                }
            } else {
                steps.top_up(sub.as_mut(), std::mem::take(&mut ahead)).await
            };
            steps.record_lag_seconds(&batch);
            let positions = std::mem::take(&mut handled);
            let (settled, (committed, fetched)) =
                tokio::join!(steps.settle(&mut handler, &batch, &mut backoff), async {
                    let committed = steps
                        .commit(sub.as_mut(), &positions, &mut commit_backoff)
                        .await;
                    let fetched = match committed {
                        true => sub.poll(max, Duration::ZERO).await.unwrap_or_default(),
                        false => Vec::new(),
                    };
                    (committed, fetched)
                });
            if !settled || !committed {
                break;
            }
            handled = commit_positions(&batch);
            ahead = fetched;
        }
        if !handled.is_empty() {
            if let Err(e) = sub.commit(&handled).await {
                tracing::warn!(group = %steps.settings.group, error = %e, "final commit failed; the next owner redoes the last batch");
            }
        }
        if let Err(e) = sub.close().await {
            tracing::warn!(group = %steps.settings.group, error = %e, "leaving the group failed");
        }
        handler.close().await;
    }
}

impl Steps {
    async fn subscribe(&self, backoff: &mut Backoff) -> Option<Box<dyn Subscription>> {
        loop {
            let spec = SubscriptionSpec {
                group: self.settings.group.clone(),
                topics: self.settings.topics.clone(),
                start: self.settings.start,
                client_id: self.settings.group.clone(),
            };
            match self.bus.subscribe(spec).await {
                Ok(sub) => return Some(sub),
                Err(e) => {
                    self.failing(&self.bus_failing, format!("subscribe failed: {e}"));
                    tracing::warn!(group = %self.settings.group, error = %e, "subscribe failed");
                    if !self.pause(backoff).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Wait for a batch (empty when none came in time). None on shutdown.
    async fn poll(
        &self,
        sub: &mut dyn Subscription,
        backoff: &mut Backoff,
    ) -> Option<Vec<InboundMessage>> {
        let polled = tokio::select! {
            _ = self.shutdown.cancelled() => return None,
            r = sub.poll(self.settings.batch_size, self.settings.poll_wait) => r,
        };
        match polled {
            Ok(batch) => {
                self.succeeded(&self.bus_failing);
                Some(batch)
            }
            Err(e) => {
                self.failing(&self.bus_failing, format!("poll failed: {e}"));
                tracing::warn!(group = %self.settings.group, error = %e, "poll failed");
                self.pause(backoff).await.then(Vec::new)
            }
        }
    }

    /// A batch fetched ahead, without what a rebalance took away meanwhile (the new owner
    /// starts from the last commit), and filled up with what has arrived since.
    async fn top_up(
        &self,
        sub: &mut dyn Subscription,
        mut batch: Vec<InboundMessage>,
    ) -> Vec<InboundMessage> {
        // An assignment is a few partitions: a scan costs less than a key copied per message.
        let assigned = sub.assignment();
        batch.retain(|m| {
            assigned
                .iter()
                .any(|(topic, partition)| *topic == m.topic && *partition == m.partition)
        });
        let room = self.settings.batch_size.saturating_sub(batch.len());
        if room > 0 {
            // A failure here shows again at the next waiting poll, which reports it.
            batch.extend(sub.poll(room, Duration::ZERO).await.unwrap_or_default());
        }
        batch
    }

    /// Handle a batch and dead-letter what it could not process, retrying until done. After
    /// this, every message's outcome is durable. False on shutdown.
    async fn settle<H: BatchHandler>(
        &self,
        handler: &mut H,
        batch: &[InboundMessage],
        backoff: &mut Backoff,
    ) -> bool {
        if batch.is_empty() {
            return true;
        }
        let group = &self.settings.group;
        let started = Instant::now();
        let outcomes = loop {
            match handler.handle(batch).await {
                Ok(outcomes) if outcomes.len() == batch.len() => break outcomes,
                Ok(outcomes) => {
                    // A handler bug must not lose messages: treat it as a failed batch.
                    tracing::error!(group = %group, expected = batch.len(), got = outcomes.len(), "handler returned the wrong number of outcomes");
                    self.failing(
                        &self.handler_failing,
                        "handler returned the wrong number of outcomes",
                    );
                }
                Err(e) => {
                    self.failing(&self.handler_failing, e.0.clone());
                    tracing::warn!(group = %group, error = %e, "batch failed, retrying");
                }
            }
            if !self.pause(backoff).await {
                return false;
            }
        };
        // Dead letters are written before the commit: if we crash in between, the message is
        // redelivered and dead-lettered again (same content, harmless), never lost.
        let mut dead: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for (message, outcome) in batch.iter().zip(&outcomes) {
            if let Outcome::DeadLetter(why) = outcome {
                let (event_id, entity_id, trace_id) = log_ids(message);
                tracing::warn!(group = %group, topic = %message.topic, partition = message.partition, offset = message.offset, event_id, entity_id, trace_id, reason = %why.reason, error = %why.error, "dead-lettering message");
                metrics::counter!("enrollstream_dead_letters_total", "group" => group.clone(), "reason" => why.reason.clone()).increment(1);
                dead.entry(format!("{}{}", message.topic, self.settings.dlq_suffix))
                    .or_default()
                    .push(dead_letter_message(message, group, why));
            }
        }
        let publisher = self.bus.publisher();
        for (topic, messages) in dead {
            loop {
                match publish_dead_letters(publisher.as_ref(), &topic, messages.clone()).await {
                    Ok(_) => break,
                    Err(e) => {
                        self.failing(
                            &self.handler_failing,
                            format!("dead-letter publish failed: {e}"),
                        );
                        if !self.pause(backoff).await {
                            return false;
                        }
                    }
                }
            }
        }
        backoff.reset();
        self.succeeded(&self.handler_failing);
        let done = outcomes.iter().filter(|o| **o == Outcome::Done).count() as u64;
        metrics::counter!("enrollstream_consumer_messages_total", "group" => group.clone(), "outcome" => "done").increment(done);
        metrics::counter!("enrollstream_consumer_messages_total", "group" => group.clone(), "outcome" => "dead_letter").increment(batch.len() as u64 - done);
        metrics::histogram!("enrollstream_consumer_batch_seconds", "group" => group.clone())
            .record(started.elapsed().as_secs_f64());
        true
    }

    /// Commit handled positions, retrying until done. False on shutdown.
    async fn commit(
        &self,
        sub: &mut dyn Subscription,
        positions: &[CommitPosition],
        backoff: &mut Backoff,
    ) -> bool {
        if positions.is_empty() {
            return true;
        }
        let group = &self.settings.group;
        let started = Instant::now();
        // What is left to commit after a fenced answer: the positions still ours.
        let mut kept: Option<Vec<CommitPosition>> = None;
        let mut fenced = 0;
        loop {
            match sub.commit(kept.as_deref().unwrap_or(positions)).await {
                Ok(()) => break,
                Err(BusError::Fenced(why)) => {
                    // A partition that moved is re-read by its new owner from the last commit,
                    // and our effects are fenced, so its redo is a no-op. But a rebalance in
                    // progress answers Fenced too, and under cooperative rebalancing the member
                    // usually keeps its partitions: dropping that commit would leave the last
                    // offset of a quiet partition uncommitted (lag 1 until its next message). So
                    // the positions of partitions still assigned are committed again, a few times.
                    let held: HashSet<(String, i32)> = sub.assignment().into_iter().collect();
                    let still: Vec<CommitPosition> = kept
                        .as_deref()
                        .unwrap_or(positions)
                        .iter()
                        .filter(|p| held.contains(&(p.topic.clone(), p.partition)))
                        .cloned()
                        .collect();
                    fenced += 1;
                    tracing::info!(group = %group, %why, still_assigned = still.len(), attempt = fenced, "commit fenced after a rebalance");
                    if still.is_empty() || fenced > MAX_FENCED_RECOMMITS {
                        break;
                    }
                    kept = Some(still);
                    if !self.pause(backoff).await {
                        return false;
                    }
                }
                Err(e) => {
                    self.failing(&self.bus_failing, format!("commit failed: {e}"));
                    if !self.pause(backoff).await {
                        return false;
                    }
                }
            }
        }
        backoff.reset();
        self.succeeded(&self.bus_failing);
        metrics::histogram!("enrollstream_consumer_commit_seconds", "group" => group.clone())
            .record(started.elapsed().as_secs_f64());
        true
    }

    /// How old the first message of each partition in the batch is. Against the wall clock, not
    /// an injected one: the broker stamps messages with its wall clock.
    fn record_lag_seconds(&self, batch: &[InboundMessage]) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut seen: Vec<(&str, i32)> = Vec::new();
        for m in batch {
            let Some(ts) = m.timestamp_ms else { continue };
            if seen.contains(&(m.topic.as_str(), m.partition)) {
                continue;
            }
            seen.push((m.topic.as_str(), m.partition));
            let age = (now_ms - ts).max(0) as f64 / 1000.0;
            metrics::gauge!("enrollstream_consumer_lag_seconds", "group" => self.settings.group.clone(), "topic" => m.topic.clone(), "partition" => m.partition.to_string())
                .set(age);
        }
    }

    /// A poll came back empty: nothing assigned is waiting.
    fn caught_up(&self, sub: &dyn Subscription) {
        for (topic, partition) in sub.assignment() {
            metrics::gauge!("enrollstream_consumer_lag_seconds", "group" => self.settings.group.clone(), "topic" => topic, "partition" => partition.to_string())
                .set(0.0);
        }
    }

    /// A step failed: not ready, with the reason.
    fn failing(&self, side: &AtomicBool, reason: impl Into<String>) {
        side.store(true, Ordering::Relaxed);
        self.health.set(&self.component, false, reason);
    }

    /// A step succeeded: ready again if its side had failed and the other side is not failing,
    /// so that an idle loop whose poll or commit failed for a moment does not stay not ready
    /// until its next batch.
    fn succeeded(&self, side: &AtomicBool) {
        if side.swap(false, Ordering::Relaxed)
            && !self.bus_failing.load(Ordering::Relaxed)
            && !self.handler_failing.load(Ordering::Relaxed)
        {
            self.health.ready(&self.component);
        }
    }

    /// Back off, unless shutting down. False on shutdown.
    async fn pause(&self, backoff: &mut Backoff) -> bool {
        let delay = backoff.next_delay();
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// The highest next offset per partition of a batch.
pub fn commit_positions(batch: &[InboundMessage]) -> Vec<CommitPosition> {
    let mut best: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = best
            .entry((m.topic.clone(), m.partition))
            .or_insert(m.offset + 1);
        *e = (*e).max(m.offset + 1);
    }
    best.into_iter()
        .map(|((topic, partition), next_offset)| CommitPosition {
            topic,
            partition,
            next_offset,
        })
        .collect()
}

/// A message's event id, entity id and trace id for a log line, as far as it has them; cut
/// short, since a message that is dead-lettered may hold anything.
fn log_ids(message: &InboundMessage) -> (Option<&str>, Option<&str>, Option<&str>) {
    fn short(s: &str) -> &str {
        let mut end = s.len().min(128);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    }
    (
        message.header("ce_id").map(short),
        message.key.as_deref().map(short),
        message.header(codec::TRACEPARENT).map(trace_id),
    )
}
