//! Reading the event topics into the build, up to a goal per partition: each batch is
//! projected into the next generation, its applied offsets recorded in the store (where a
//! resumed rebuild starts), then committed in the build's own consumer group (where its reads
//! start). Messages read past the goal wait in memory for a later goal, or are dropped and
//! read again after a reopen when there are too many of them.

use enrollstream_ports::{
    CommitPosition, EventBus, Generations, InboundMessage, StartFrom, Subscription,
    SubscriptionSpec,
};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{Leases, RebuildReport};
use crate::backoff::Backoff;
use crate::consumer::{BatchHandler, Outcome};
use crate::projector::Projector;

pub(super) type Partition = (String, i32);
pub(super) type Offsets = HashMap<Partition, i64>;

const BATCH: usize = 500;
const POLL_WAIT: Duration = Duration::from_millis(500);
/// Empty polls in a row, with partitions assigned, after which nothing below the goal is left
/// to read (on Kafka a transaction marker may take a partition's last offset before the goal).
/// Taking a goal as reached too early is safe: the switch refuses while the active generation
/// holds an event the build lacks.
const EMPTY_POLLS: u32 = 4;
/// Messages read past the goal kept in memory; beyond that they are dropped and read again.
const HOLD_MAX: usize = 20_000;

pub(super) struct Reader {
    bus: std::sync::Arc<dyn EventBus>,
    spec: SubscriptionSpec,
    sub: Option<Box<dyn Subscription>>,
    /// Per partition, the next offset after what the build applied.
    pub applied: Offsets,
    held: HashMap<Partition, VecDeque<InboundMessage>>,
    pub refused: usize,
    pub projected: usize,
}

impl Reader {
    pub(super) fn new(
        bus: std::sync::Arc<dyn EventBus>,
        build_id: &str,
        topics: Vec<String>,
        applied: Offsets,
    ) -> Self {
        let group = format!("read-model-rebuild-{build_id}");
        Self {
            bus,
            spec: SubscriptionSpec {
                client_id: group.clone(),
                group,
                topics,
                start: StartFrom::Committed,
            },
            sub: None,
            applied,
            held: HashMap::new(),
            refused: 0,
            projected: 0,
        }
    }

    fn applied_at(&self, p: &Partition) -> i64 {
        self.applied.get(p).copied().unwrap_or(0)
    }

    fn reached(&self, goal: &Offsets) -> bool {
        goal.iter().all(|(p, g)| self.applied_at(p) >= *g)
    }

    /// How far towards `goal` the build is, in offsets.
    pub(super) fn done_towards(&self, goal: &Offsets) -> u64 {
        goal.iter()
            .map(|(p, g)| self.applied_at(p).clamp(0, (*g).max(0)) as u64)
            .sum()
    }

    async fn subscription(&mut self) -> Result<&mut Box<dyn Subscription>, String> {
        if self.sub.is_none() {
            let sub = self
                .bus
                .subscribe(self.spec.clone())
                .await
                .map_err(|e| format!("cannot read the event topics: {e}"))?;
            self.sub = Some(sub);
        }
        Ok(self.sub.as_mut().expect("just opened"))
    }

    /// Held messages now below the goal, in offset order per partition.
    fn take_held(&mut self, goal: &Offsets) -> Vec<InboundMessage> {
        let mut out = Vec::new();
        for (p, queue) in &mut self.held {
            let limit = goal.get(p).copied().unwrap_or(0);
            while queue.front().is_some_and(|m| m.offset < limit) && out.len() < BATCH {
                out.extend(queue.pop_front());
            }
        }
        out
    }

    /// Sort polled messages: below what was applied (read again after a resume) they are
    /// skipped, below the goal they are projected, past it they wait.
    fn sort(&mut self, polled: Vec<InboundMessage>, goal: &Offsets) -> Vec<InboundMessage> {
        let mut now = Vec::new();
        for m in polled {
            let p = (m.topic.clone(), m.partition);
            if m.offset < self.applied_at(&p) {
                continue;
            }
            let queue = self.held.entry(p.clone()).or_default();
            if queue.is_empty() && m.offset < goal.get(&p).copied().unwrap_or(0) {
                now.push(m);
            } else {
                queue.push_back(m);
            }
        }
        now
    }

    async fn rewind_if_crowded(&mut self) -> Result<(), String> {
        let held: usize = self.held.values().map(VecDeque::len).sum();
        if held > HOLD_MAX {
            // Reopened, the group starts again from what was committed: what was applied.
            self.held.clear();
            if let Some(sub) = self.sub.take() {
                let _ = sub.close().await;
            }
        }
        Ok(())
    }

    /// Project everything up to `goal` into the build.
    pub(super) async fn catch_up(
        &mut self,
        goal: &Offsets,
        build: (&dyn Generations, &str),
        projector: &mut Projector,
        leases: &Leases<'_>,
        report: &mut dyn RebuildReport,
    ) -> Result<(), String> {
        let (generations, build_id) = build;
        let mut empty = 0;
        let total: u64 = goal.values().map(|g| (*g).max(0) as u64).sum();
        while !self.reached(goal) {
            leases.renew().await?;
            let mut batch = self.take_held(goal);
            if batch.is_empty() {
                self.rewind_if_crowded().await?;
                let sub = self.subscription().await?;
                let polled = sub
                    .poll(BATCH, POLL_WAIT)
                    .await
                    .map_err(|e| format!("reading the event topics: {e}"))?;
                let assigned = !sub.assignment().is_empty();
                if polled.is_empty() && assigned {
                    empty += 1;
                    if empty >= EMPTY_POLLS {
                        tracing::info!(?goal, applied = ?self.applied, "nothing left to read below the goal");
                        for (p, g) in goal {
                            let at = self.applied.entry(p.clone()).or_insert(0);
                            *at = (*at).max(*g);
                        }
                    }
                    continue;
                }
                empty = 0;
                batch = self.sort(polled, goal);
            }
            if batch.is_empty() {
                continue;
            }
            self.project(&batch, projector, report).await?;
            let positions = next_positions(&batch);
            generations
                .record_shadow_progress(build_id, &positions)
                .await
                .map_err(|e| format!("recording the rebuild's progress: {e}"))?;
            for p in &positions {
                let at = self
                    .applied
                    .entry((p.topic.clone(), p.partition))
                    .or_insert(0);
                *at = (*at).max(p.next_offset);
            }
            if let Err(e) = self.subscription().await?.commit(&positions).await {
                // The store's record is the one that counts; a lost commit is a longer re-read.
                tracing::warn!(error = %e, "could not commit the rebuild's read position");
            }
            report.progress(self.done_towards(goal), total);
        }
        report.progress(self.done_towards(goal), total);
        Ok(())
    }

    async fn project(
        &mut self,
        batch: &[InboundMessage],
        projector: &mut Projector,
        report: &mut dyn RebuildReport,
    ) -> Result<(), String> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let outcomes = loop {
            match projector.handle(batch).await {
                Ok(outcomes) => break outcomes,
                Err(why) if backoff.attempts() < 20 => {
                    tracing::warn!(error = %why.0, "the rebuild retries a batch");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(why) => {
                    return Err(format!("the rebuild could not project a batch: {}", why.0))
                }
            }
        };
        for (m, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Outcome::Done => self.projected += 1,
                Outcome::DeadLetter(why) => {
                    self.refused += 1;
                    report.not_projected(
                        &format!("{}/{}/{}", m.topic, m.partition, m.offset),
                        &format!("{}: {}", why.reason, why.error),
                    );
                }
            }
        }
        Ok(())
    }

    pub(super) async fn close(mut self) {
        if let Some(sub) = self.sub.take() {
            let _ = sub.close().await;
        }
    }
}

fn next_positions(batch: &[InboundMessage]) -> Vec<CommitPosition> {
    let mut next: HashMap<Partition, i64> = HashMap::new();
    for m in batch {
        let at = next.entry((m.topic.clone(), m.partition)).or_insert(0);
        *at = (*at).max(m.offset + 1);
    }
    next.into_iter()
        .map(|((topic, partition), next_offset)| CommitPosition {
            topic,
            partition,
            next_offset,
        })
        .collect()
}
