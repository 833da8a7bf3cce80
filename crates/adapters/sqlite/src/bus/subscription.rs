//! One member of a consumer group: reads its partitions from its own connection, from
//! positions kept in memory, and wakes up when the writer commits to one of its topics or when
//! the group's assignment changes.

use super::group::{Lease, MemberId, TopicPartition};
use super::log::{self, unavailable};
use super::Shared;
use async_trait::async_trait;
use enrollstream_ports::{BusError, CommitPosition, InboundMessage, StartFrom, Subscription};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
struct Position {
    lease: Lease,
    next: i64,
}

pub(super) struct EmbeddedSubscription {
    shared: Arc<Shared>,
    group: String,
    client_id: String,
    start: StartFrom,
    member: MemberId,
    left: bool,
    /// Shared with the blocking reads, which may outlive a poll that was cancelled.
    reader: Arc<Mutex<Connection>>,
    generation: watch::Receiver<u64>,
    /// The assignment changed since `positions` was built. Cleared only once the new positions
    /// are in place, so a poll cancelled halfway through a sync does not lose the change.
    stale: bool,
    appended: Vec<watch::Receiver<u64>>,
    /// The partitions this member reads, as of its last look at the group assignment.
    positions: BTreeMap<TopicPartition, Position>,
    /// Where the next read starts its round over the partitions, so that none is starved.
    turn: usize,
}

pub(super) struct Member {
    pub(super) group: String,
    pub(super) client_id: String,
    pub(super) start: StartFrom,
    pub(super) member: MemberId,
    pub(super) generation: watch::Receiver<u64>,
    pub(super) appended: Vec<watch::Receiver<u64>>,
}

impl EmbeddedSubscription {
    pub(super) fn new(shared: Arc<Shared>, reader: Connection, member: Member) -> Self {
        Self {
            shared,
            group: member.group,
            client_id: member.client_id,
            start: member.start,
            member: member.member,
            left: false,
            reader: Arc::new(Mutex::new(reader)),
            generation: member.generation,
            // The first poll reads the assignment the member got when it joined.
            stale: true,
            appended: member.appended,
            positions: BTreeMap::new(),
            turn: 0,
        }
    }

    fn leave(&mut self) {
        if !self.left {
            self.left = true;
            self.shared.groups.leave(&self.group, self.member);
            tracing::debug!(group = %self.group, client_id = %self.client_id, "left the group");
        }
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BusError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            read(&conn)
        })
        .await
        .map_err(|e| BusError::Fatal(format!("bus read task failed: {e}")))?
        .map_err(|e| unavailable("bus log read failed", e))
    }

    /// Takes the group's current assignment: retained partitions keep their position, newly
    /// held ones start at the group's committed offset (or 0: none yet, or `Earliest`).
    async fn sync_assignment(&mut self) -> Result<(), BusError> {
        let held = self.shared.groups.assignment(&self.group, self.member);
        let mut positions = BTreeMap::new();
        let mut fresh = Vec::new();
        for (tp, lease) in held {
            match self.positions.get(&tp) {
                Some(position) if position.lease == lease => {
                    positions.insert(tp, *position);
                }
                _ => fresh.push((tp, lease)),
            }
        }
        let starts = match self.start {
            StartFrom::Earliest => vec![0; fresh.len()],
            StartFrom::Committed => {
                let group = self.group.clone();
                let partitions: Vec<TopicPartition> =
                    fresh.iter().map(|(tp, _)| tp.clone()).collect();
                self.with_reader(move |conn| {
                    partitions
                        .iter()
                        .map(|(topic, p)| Ok(log::committed(conn, &group, topic, *p)?.unwrap_or(0)))
                        .collect::<rusqlite::Result<Vec<i64>>>()
                })
                .await?
            }
        };
        for ((tp, lease), next) in fresh.into_iter().zip(starts) {
            positions.insert(tp, Position { lease, next });
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let assigned: Vec<String> = positions.keys().map(|(t, p)| format!("{t}/{p}")).collect();
            tracing::debug!(group = %self.group, client_id = %self.client_id, ?assigned, "assignment");
        }
        self.positions = positions;
        self.stale = false;
        Ok(())
    }

    /// Reads up to `max` messages, a fair share from each partition first (starting the round
    /// at a different partition each time), then what is left from partitions that had more.
    async fn fetch(&mut self, max: usize) -> Result<Vec<InboundMessage>, BusError> {
        if self.positions.is_empty() {
            return Ok(Vec::new());
        }
        let mut slots: Vec<(TopicPartition, i64)> = self
            .positions
            .iter()
            .map(|(tp, p)| (tp.clone(), p.next))
            .collect();
        let first = self.turn % slots.len();
        slots.rotate_left(first);
        self.turn = self.turn.wrapping_add(1);
        let quota = max.div_ceil(slots.len());
        let messages = self
            .with_reader(move |conn| {
                let mut out = Vec::new();
                let mut more = Vec::new();
                for ((topic, partition), from) in slots {
                    let take = quota.min(max - out.len());
                    if take == 0 {
                        break;
                    }
                    let got = log::read(conn, &topic, partition, from, take)?;
                    if got.len() == take {
                        let next = got.last().map_or(from, |m| m.offset + 1);
                        more.push(((topic, partition), next));
                    }
                    out.extend(got);
                }
                for ((topic, partition), from) in more {
                    let take = max - out.len();
                    if take == 0 {
                        break;
                    }
                    out.extend(log::read(conn, &topic, partition, from, take)?);
                }
                Ok(out)
            })
            .await?;
        for m in &messages {
            if let Some(position) = self.positions.get_mut(&(m.topic.clone(), m.partition)) {
                position.next = m.offset + 1;
            }
        }
        Ok(messages)
    }

    /// Waits until a topic got new messages, the assignment changed, or the deadline passed
    /// (then `false`).
    async fn wait_for_change(&mut self, deadline: Instant) -> bool {
        // Each wait answers whether it was the assignment that changed.
        type Wait<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
        let rebalanced = std::iter::once(true).chain(std::iter::repeat(false));
        let waits: Vec<Wait<'_>> = std::iter::once(&mut self.generation)
            .chain(self.appended.iter_mut())
            .zip(rebalanced)
            .map(|(rx, rebalanced)| {
                Box::pin(async move {
                    // A closed channel never signals again; leave it to the deadline.
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    rebalanced
                }) as Wait<'_>
            })
            .collect();
        let woken = tokio::time::timeout_at(deadline, futures::future::select_all(waits))
            .await
            .map(|(rebalanced, _, _)| rebalanced);
        // `changed` marked the new generation seen, so `poll` would not notice it any more.
        if woken == Ok(true) {
            self.stale = true;
        }
        woken.is_ok()
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn poll(
        &mut self,
        max: usize,
        max_wait: Duration,
    ) -> Result<Vec<InboundMessage>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + max_wait;
        loop {
            // Marked as seen before reading, so a commit landing after the read wakes the wait.
            for rx in &mut self.appended {
                rx.borrow_and_update();
            }
            if self.generation.has_changed().unwrap_or(false) {
                self.generation.borrow_and_update();
                self.stale = true;
            }
            if self.stale {
                self.sync_assignment().await?;
            }
            let messages = self.fetch(max).await?;
            if !messages.is_empty() || !self.wait_for_change(deadline).await {
                return Ok(messages);
            }
        }
    }

    /// Commits the positions of partitions this member holds. Positions of partitions it does
    /// not hold (lost in a rebalance, even if held again since under a new lease, or never
    /// assigned) are ignored and the call still succeeds: their new owner restarts from the
    /// committed offset, so whatever this member did with them is simply delivered again.
    async fn commit(&mut self, positions: &[CommitPosition]) -> Result<(), BusError> {
        let mut highest: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for p in positions {
            if p.next_offset < 0 {
                return Err(BusError::Fatal(format!(
                    "cannot commit a negative offset {} for {}/{}",
                    p.next_offset, p.topic, p.partition
                )));
            }
            let entry = highest
                .entry((p.topic.clone(), p.partition))
                .or_insert(p.next_offset);
            *entry = (*entry).max(p.next_offset);
        }
        let requested = highest.len();
        let candidates: Vec<(TopicPartition, Lease, i64)> = highest
            .into_iter()
            .filter_map(|(tp, next)| self.positions.get(&tp).map(|p| (tp, p.lease, next)))
            .collect();
        let held = self
            .shared
            .groups
            .retain_held(&self.group, self.member, candidates);
        if held.len() < requested {
            tracing::debug!(
                group = %self.group,
                client_id = %self.client_id,
                ignored = requested - held.len(),
                "ignored commits of partitions this member no longer holds"
            );
        }
        if held.is_empty() {
            return Ok(());
        }
        let positions = held
            .into_iter()
            .map(|((topic, partition), next_offset)| CommitPosition {
                topic,
                partition,
                next_offset,
            })
            .collect();
        self.shared
            .writer
            .commit(self.group.clone(), positions)
            .await
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.shared
            .groups
            .assignment(&self.group, self.member)
            .into_iter()
            .map(|(tp, _)| tp)
            .collect()
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        self.leave();
        Ok(())
    }
}

/// A dropped subscription is a crashed member: it leaves the group without committing, and
/// its partitions go to the other members at once.
impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        self.leave();
    }
}
