//! Generations of the read model: a rebuild writes the next generation beside the active one,
//! which keeps serving and taking the live projector's applies, then switches the store's
//! pointer to it in one atomic operation (docs/operations.md, "Rebuilding without downtime").
//!
//! Only the event log and the entity states are generational; the outbox, idempotency keys,
//! leases and parked messages are shared, and the next generation never records an outbox
//! message (everything it holds was announced by the generation before it, or is a replay).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

use crate::bus::CommitPosition;
use crate::store::{Store, StoreError};

/// The lease a rebuild holds while it switches: live applies to the active generation refuse to
/// write while it lasts (`StoreError::Unavailable`), so the active generation stops moving and
/// the rebuild can catch up to it exactly. An expired one pauses nothing.
pub const SWITCH_LEASE: &str = "read-model/switch";

/// The generation a rebuild is writing, as the store recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowBuild {
    /// The generation being built (the active one + 1).
    pub generation: u64,
    /// Names this build (and the consumer group it reads in): a fresh build gets a new one.
    pub build_id: String,
    /// Per partition, the next offset after what the build has applied (recorded by
    /// `record_shadow_progress`); empty for a new build.
    pub applied: Vec<CommitPosition>,
}

/// Why a switch did not happen; nothing changed in either case.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The active generation holds events the next one does not (their sources, as
    /// "topic/partition/offset", at most a page of them): catch up, or, for events below what
    /// the build applied, it refused them.
    #[error("the active generation holds {} event(s) the rebuilt one does not", .0.len())]
    Missing(Vec<String>),
    /// The switch lease is not held by this owner past the time given.
    #[error("the switch lease is not held")]
    NotPaused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait Generations: Send + Sync {
    /// The active generation's number (1 for a store never rebuilt this way).
    async fn active_generation(&self) -> Result<u64, StoreError>;

    /// The build of the next generation: the one in progress, with what it applied (an
    /// interrupted rebuild resumes there), or a new, empty one. `fresh` drops a build in
    /// progress first.
    async fn open_shadow(&self, fresh: bool) -> Result<ShadowBuild, StoreError>;

    /// The generation being built, as a store: reads and applies go to it; its applies record
    /// no outbox message. Its calls fail while no build is open.
    fn shadow(&self) -> Arc<dyn Store>;

    /// Record what the build `build_id` applied: per partition, the next offset. A position
    /// never moves back.
    async fn record_shadow_progress(
        &self,
        build_id: &str,
        positions: &[CommitPosition],
    ) -> Result<(), StoreError>;

    /// The sources ("topic/partition/offset") of the events the active generation holds and
    /// the build does not, at most `limit` of them.
    async fn missing_from_shadow(&self, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Make the build `build_id` the active generation, in one atomic operation, if `owner`
    /// holds `SWITCH_LEASE` past `held_past` and the build holds every event of the active
    /// generation; the switch lease is released with it. Answers the new active generation.
    async fn switch_to_shadow(
        &self,
        build_id: &str,
        owner: &str,
        held_past: DateTime<Utc>,
    ) -> Result<u64, SwitchError>;

    /// Drop what is left of generations before the active one. Idempotent.
    async fn drop_retired(&self) -> Result<(), StoreError>;
}

/// Parse an event's source, "topic/partition/offset" (topic names cannot hold a '/').
pub fn parse_source(source: &str) -> Option<(String, i32, i64)> {
    let mut parts = source.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    Some((topic.to_string(), partition, offset))
}

#[cfg(test)]
mod tests {
    use super::parse_source;

    #[test]
    fn sources_parse_back() {
        assert_eq!(
            parse_source("enrollment-events/2/41"),
            Some(("enrollment-events".into(), 2, 41))
        );
        assert_eq!(parse_source("no-offset/2"), None);
        assert_eq!(parse_source("t/x/1"), None);
    }
}
