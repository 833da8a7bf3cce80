//! The delivery loop of one target: polls its own consumer group, skips messages routed to
//! other targets by their headers alone, hands the rest to per-key lanes, and commits each
//! partition up to its oldest unfinished message. It polls only while fewer than
//! `max_in_flight` messages are unfinished and the target is not paused (backpressure).

use enrollstream_ports::{
    BusError, Clock, EventBus, HealthRegistry, InboundMessage, Subscription, SubscriptionSpec,
    TopicSpec,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use super::guard::Guard;
use super::journal::Journal;
use super::lanes::{LaneKey, Lanes};
use super::selection::Selection;
use super::settings::DeliverySettings;
use super::watermark::{TopicPartition, Tracked, Watermarks};
use super::worker::{self, Context, Finished};
use crate::backoff::Backoff;
use enrollstream_ports::target::Target;

/// Longest idle wait before the loop looks around again (a safety net; every event that
/// matters also wakes it).
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Deliver to `target` until `shutdown`; then stop the lanes, commit what finished and leave the
/// group. Unfinished messages are delivered again by the next member (at least once; the
/// target dedupes by the key derived from the message id).
pub async fn run(
    bus: Arc<dyn EventBus>,
    target: Arc<dyn Target>,
    settings: DeliverySettings,
    clock: Arc<dyn Clock>,
    health: HealthRegistry,
    shutdown: CancellationToken,
) {
    run_journaled(bus, target, settings, clock, health, shutdown, None).await
}

/// [`run`], recording each outcome in `journal` (never waiting on it).
pub async fn run_journaled(
    bus: Arc<dyn EventBus>,
    target: Arc<dyn Target>,
    settings: DeliverySettings,
    clock: Arc<dyn Clock>,
    health: HealthRegistry,
    shutdown: CancellationToken,
    journal: Option<Journal>,
) {
    let target_name = target.name().to_string();
    let group = settings.group_for(&target_name);
    let component = format!("delivery:{target_name}");
    let guard = Arc::new(Guard::new(
        &target_name,
        &component,
        clock.clone(),
        settings.breaker.clone(),
        settings.pause_probe_interval,
        health.clone(),
    ));
    let ctx = Arc::new(Context {
        target,
        target_name: target_name.clone(),
        group: group.clone(),
        guard,
        permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        publisher: bus.publisher(),
        clock,
        settings: settings.clone(),
        journal,
    });
    let mut setup = Setup {
        bus: bus.as_ref(),
        health: &health,
        component: &component,
        shutdown: &shutdown,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
    };
    if !setup.provision(&settings, &target_name).await {
        return;
    }
    let Some(mut sub) = setup.subscribe(&settings, &group).await else {
        return;
    };
    health.ready(&component);
    tracing::info!(target_name = %target_name, %group, topics = ?settings.topics, "delivering");
    let mut runner = Runner {
        selection: Selection::new(&settings, &target_name),
        ctx,
        health: health.clone(),
        component: component.clone(),
        lanes: Lanes::default(),
        watermarks: Watermarks::default(),
        tasks: JoinSet::new(),
        running: HashMap::new(),
        next_ticket: 0,
        last_commit: Instant::now(),
        bus_failed: false,
        stopping: false,
    };
    runner.run(sub.as_mut(), &shutdown).await;
    // Results already in are kept; the rest is abandoned uncommitted and delivered again by
    // the next member.
    runner.stopping = true;
    while let Some(joined) = runner.tasks.try_join_next() {
        runner.joined(joined);
    }
    runner.tasks.shutdown().await;
    runner.commit(sub.as_mut()).await;
    if let Err(e) = sub.close().await {
        tracing::warn!(%group, error = %e, "leaving the group failed");
    }
}

struct Setup<'a> {
    bus: &'a dyn EventBus,
    health: &'a HealthRegistry,
    component: &'a str,
    shutdown: &'a CancellationToken,
    backoff: Backoff,
}

impl Setup<'_> {
    /// The target's dead-letter topics exist before the first message can need them.
    async fn provision(&mut self, settings: &DeliverySettings, target: &str) -> bool {
        let specs: Vec<TopicSpec> = settings
            .dlq_topics(target)
            .into_iter()
            .map(|name| TopicSpec {
                name,
                partitions: settings.dlq_partitions,
                replication: settings.dlq_replication,
                retention: None,
            })
            .collect();
        loop {
            match self.bus.ensure_topics(&specs).await {
                Ok(()) => return true,
                Err(e) => {
                    self.unwell(format!("cannot create dead-letter topics: {e}"));
                    if !self.pause().await {
                        return false;
                    }
                }
            }
        }
    }

    async fn subscribe(
        &mut self,
        settings: &DeliverySettings,
        group: &str,
    ) -> Option<Box<dyn Subscription>> {
        loop {
            let spec = SubscriptionSpec {
                group: group.to_string(),
                topics: settings.topics.clone(),
                start: enrollstream_ports::StartFrom::Committed,
                client_id: group.to_string(),
            };
            match self.bus.subscribe(spec).await {
                Ok(sub) => return Some(sub),
                Err(e) => {
                    self.unwell(format!("subscribe failed: {e}"));
                    if !self.pause().await {
                        return None;
                    }
                }
            }
        }
    }

    fn unwell(&self, detail: String) {
        tracing::warn!(component = self.component, %detail, "delivery runner cannot start yet");
        self.health.set(self.component, false, detail);
    }

    async fn pause(&mut self) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.backoff.next_delay()) => true,
        }
    }
}

struct Runner {
    selection: Selection,
    ctx: Arc<Context>,
    health: HealthRegistry,
    component: String,
    lanes: Lanes,
    watermarks: Watermarks,
    tasks: JoinSet<Finished>,
    /// The message under way per busy lane: its ticket and how to stop it.
    running: HashMap<LaneKey, (u64, AbortHandle)>,
    next_ticket: u64,
    last_commit: Instant,
    bus_failed: bool,
    /// Shutting down: finished lanes start nothing new.
    stopping: bool,
}

impl Runner {
    async fn run(&mut self, sub: &mut dyn Subscription, shutdown: &CancellationToken) {
        let settings = self.ctx.settings.clone();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            while let Some(joined) = self.tasks.try_join_next() {
                self.joined(joined);
            }
            if self.last_commit.elapsed() >= settings.commit_interval {
                self.commit(sub).await;
            }
            if shutdown.is_cancelled() {
                return;
            }
            self.drop_revoked(sub.assignment());
            let room = settings
                .max_in_flight
                .saturating_sub(self.watermarks.unfinished());
            // While paused, nothing new is taken, except when no lane is left to probe (its
            // partition moved away): then a message is needed to try the credentials again.
            let paused = self.ctx.guard.is_paused() && !self.tasks.is_empty();
            if room == 0 || paused {
                self.idle(shutdown).await;
                continue;
            }
            // Not raced against anything: a poll is never abandoned halfway.
            match sub
                .poll(room.min(settings.poll_batch), settings.poll_wait)
                .await
            {
                Ok(batch) => {
                    self.recovered();
                    backoff.reset();
                    for message in batch {
                        self.accept(message);
                    }
                    self.record_in_flight();
                }
                Err(e) => {
                    self.unwell(format!("poll failed: {e}"));
                    tracing::warn!(component = %self.component, error = %e, "poll failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    /// Nothing may be polled: wait for a lane to finish, the target's state to change, a commit
    /// to fall due, or shutdown.
    async fn idle(&mut self, shutdown: &CancellationToken) {
        let mut changed = self.ctx.guard.subscribe();
        let commit_due = !self.watermarks.to_commit().is_empty();
        let commit_interval = self.ctx.settings.commit_interval;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            Some(joined) = self.tasks.join_next() => self.joined(joined),
            _ = changed.changed() => {}
            _ = tokio::time::sleep(commit_interval), if commit_due => {}
            _ = tokio::time::sleep(IDLE_RECHECK) => {}
        }
        self.record_in_flight();
    }

    fn accept(&mut self, message: InboundMessage) {
        let tp: TopicPartition = (message.topic.clone(), message.partition);
        if self.watermarks.track(&message) == Tracked::Rewound {
            tracing::info!(topic = %tp.0, partition = tp.1, offset = message.offset, "partition restarted from its committed offset; dropping stale work");
            self.reset_partition(&tp);
            self.watermarks.track(&message);
        }
        if !self.selection.selects(&message) {
            self.watermarks.finish(&tp, message.offset);
            metrics::counter!("enrollstream_deliveries_total", "target" => self.ctx.target_name.clone(), "outcome" => "skipped").increment(1);
            return;
        }
        if let Some(start) = self.lanes.offer(message) {
            self.spawn(start);
        }
    }

    fn spawn(&mut self, message: InboundMessage) {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let lane = LaneKey::of(&message);
        let abort = self
            .tasks
            .spawn(worker::deliver(self.ctx.clone(), message, ticket));
        self.running.insert(lane, (ticket, abort));
    }

    fn joined(&mut self, joined: Result<Finished, JoinError>) {
        match joined {
            Ok(done) => {
                if self.running.get(&done.lane).map(|(t, _)| *t) != Some(done.ticket) {
                    return; // Its partition was reset meanwhile; the result is stale.
                }
                self.running.remove(&done.lane);
                self.watermarks
                    .finish(&(done.lane.topic.clone(), done.lane.partition), done.offset);
                if self.stopping {
                    return;
                }
                if let Some(next) = self.lanes.next(&done.lane) {
                    self.spawn(next);
                }
            }
            Err(e) if e.is_cancelled() => {}
            // A lane panicked: a bug. Crash the runner rather than hold its message forever;
            // the message is uncommitted and comes again after the restart.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Stop the lanes of a partition and forget its messages: they will come again from the
    /// committed offset (to this member or to the partition's new owner).
    fn reset_partition(&mut self, tp: &TopicPartition) {
        self.running.retain(|lane, (_, abort)| {
            let hit = lane.topic == tp.0 && lane.partition == tp.1;
            if hit {
                abort.abort();
            }
            !hit
        });
        self.lanes.drop_partition(&tp.0, tp.1);
        self.watermarks.drop_partition(tp);
    }

    fn drop_revoked(&mut self, assignment: Vec<(String, i32)>) {
        let held: HashSet<TopicPartition> = assignment.into_iter().collect();
        for tp in self.watermarks.partitions() {
            if !held.contains(&tp) {
                tracing::info!(topic = %tp.0, partition = tp.1, "partition revoked; dropping its work");
                self.reset_partition(&tp);
            }
        }
    }

    async fn commit(&mut self, sub: &mut dyn Subscription) {
        self.last_commit = Instant::now();
        let positions = self.watermarks.to_commit();
        if positions.is_empty() {
            return;
        }
        match sub.commit(&positions).await {
            Ok(()) => {
                self.watermarks.committed(&positions);
                self.recovered();
            }
            Err(BusError::Fenced(why)) => {
                // Partitions that moved are dropped by `drop_revoked`, and their new owner
                // redelivers from the last commit. A rebalance in progress answers Fenced too,
                // and under cooperative rebalancing this member may keep the partition: its
                // positions stay uncommitted and go again at the next interval (marking them
                // committed left a quiet partition's last offset behind for good: lag 1).
                tracing::info!(component = %self.component, %why, "commit fenced after a rebalance; the partitions still held commit again");
            }
            Err(e) => {
                tracing::warn!(component = %self.component, error = %e, "commit failed; retrying");
                self.unwell(format!("commit failed: {e}"));
            }
        }
    }

    /// The bus failed us; `/readyz` says how.
    fn unwell(&mut self, detail: String) {
        self.bus_failed = true;
        self.health.set(&self.component, false, detail);
    }

    /// The bus works again; ready unless the target is paused (which says so itself).
    fn recovered(&mut self) {
        if self.bus_failed && !self.ctx.guard.is_paused() {
            self.health.ready(&self.component);
        }
        self.bus_failed = false;
    }

    fn record_in_flight(&self) {
        metrics::gauge!("enrollstream_deliveries_in_flight", "target" => self.ctx.target_name.clone())
            .set(self.watermarks.unfinished() as f64);
    }
}
