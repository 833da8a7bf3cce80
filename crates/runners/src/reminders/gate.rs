//! Reminders act only on what the projector accepted. The reminder consumer reads the raw
//! enrollment events (its own group, so a slow mail server never delays the read model), but a
//! raw event may be one the projector refuses: a submission of an application that was never
//! started, a second submission, one that lost a race. Acting on it would email whoever it
//! names. So before folding an event into a reminder, the consumer asks for the projector's
//! verdict, which is already durable and cheap to read:
//!
//! - accepted: the event's key is in the read model's event log (`Store::applied`);
//! - refused: the projector group has committed past the event's offset and the key is not in
//!   the log. The projector commits only after an event's effect (applied, or dead-lettered) is
//!   durable, and the committed offset is read *before* the log, so an event applied between
//!   the two reads is never mistaken for a refused one;
//! - undecided: neither yet; the consumer waits on the store's wake-up for a while, then
//!   retries the batch (the reminder group lags behind the projector, never ahead of it).
//!
//! While a rebuild holds the read model (its lease in the store) the log is being refilled, so
//! nothing is judged: the batch waits. This keeps the raw topic's ordering and consumer group
//! (no new topic, no dependency on routing rules that an operator may change), at the cost of
//! one `applied` read and one committed-offsets read per batch with reminder events.

use enrollstream_ports::{Clock, EventBus, Store};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::fence::REBUILD;
use crate::projector;

/// Where an event sits on the bus, and its read-model key.
pub struct Position {
    pub key: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Refused,
}

pub struct ProjectorGate {
    pub store: Arc<dyn Store>,
    /// The leases' clock.
    pub clock: Arc<dyn Clock>,
    pub bus: Arc<dyn EventBus>,
    /// How long one batch waits for undecided events before it is retried.
    pub patience: Duration,
}

impl ProjectorGate {
    /// The projector's verdict on each event, in order; Err while one is still undecided after
    /// `patience`, or while a rebuild runs.
    pub async fn verdicts(&self, events: &[Position]) -> Result<Vec<Verdict>, String> {
        let deadline = Instant::now() + self.patience;
        let topics: Vec<String> = events
            .iter()
            .map(|e| e.topic.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        loop {
            let committed: HashMap<(String, i32), i64> = self
                .bus
                .committed(projector::GROUP, &topics)
                .await
                .map_err(|e| format!("the projector's committed offsets: {e}"))?
                .into_iter()
                .map(|c| ((c.topic, c.partition), c.next_offset))
                .collect();
            self.not_rebuilding().await?;
            let keys: Vec<String> = events.iter().map(|e| e.key.clone()).collect();
            let applied = self
                .store
                .applied(&keys)
                .await
                .map_err(|e| format!("the read model: {e}"))?;
            self.not_rebuilding().await?;
            let mut undecided = None;
            let verdicts: Vec<Verdict> = events
                .iter()
                .map(|e| {
                    if applied.contains(&e.key) {
                        Verdict::Accepted
                    } else if committed
                        .get(&(e.topic.clone(), e.partition))
                        .is_some_and(|next| e.offset < *next)
                    {
                        Verdict::Refused
                    } else {
                        undecided.get_or_insert(e);
                        Verdict::Refused
                    }
                })
                .collect();
            let Some(waiting) = undecided else {
                return Ok(verdicts);
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "waiting for the projector to decide on event {} ({}/{}/{})",
                    waiting.key, waiting.topic, waiting.partition, waiting.offset
                ));
            }
            // Wakes when it is applied; a refusal shows as a commit, seen on the next round.
            let _ = self
                .store
                .wait_applied(&waiting.key, left.min(Duration::from_millis(500)))
                .await;
        }
    }

    async fn not_rebuilding(&self) -> Result<(), String> {
        let leases = self
            .store
            .leases(REBUILD, self.clock.now())
            .await
            .map_err(|e| format!("the rebuild lease: {e}"))?;
        match leases.first() {
            Some(r) => Err(format!(
                "the read model is being rebuilt ({}); reminders wait for it",
                r.owner
            )),
            None => Ok(()),
        }
    }
}
