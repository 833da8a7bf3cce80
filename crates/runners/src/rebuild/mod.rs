//! The rebuild without downtime: the read model's next generation is built beside the active
//! one, which keeps serving and taking the live projector's applies, then switched in
//! atomically (docs/operations.md, "Rebuilding without downtime").
//!
//! 1. Take `read-model/shadow` (one rebuild at a time) and open the build: a new one, or the
//!    one an interrupted rebuild left, with the offsets it had applied.
//! 2. Catch up, in rounds, to the live projector group's committed offsets, read again each
//!    round, until a round is short (or after `MAX_ROUNDS`). Every change is a replay: the build records no outbox
//!    message, so nothing is announced twice.
//! 3. Take the switch lease (live applies pause), ask which events the active generation holds
//!    that the build lacks, catch up to the last of them, and switch. The store refuses the
//!    switch unless the lease is still held and the build holds every event of the active
//!    generation, so a lease that expired under a stalled rebuild costs a retry, never an event.
//! 4. Drop the retired generation.

mod catch_up;

use chrono::{DateTime, Utc};
use enrollstream_domain::ids::new_id;
use enrollstream_domain::limits::Limits;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_ports::generations::parse_source;
use enrollstream_ports::{
    Clock, EventBus, Generations, ShadowBuild, Store, SwitchError, SWITCH_LEASE,
};
use std::sync::Arc;
use std::time::Duration;

use crate::projector::{self, Projector};
use catch_up::{Offsets, Reader};

/// Held by the rebuild for its whole run: one rebuild at a time.
pub const SHADOW_LEASE: &str = "read-model/shadow";

/// A catch-up round that applied at most this many offsets ends the chase: the pause that
/// follows lasts about as long as such a round.
const SHORT_ROUND: u64 = 200;
/// Catch-up rounds before the rebuild pauses live applies anyway: a rebuild slower than the
/// live traffic would chase it forever; the pause then lasts as long as the gap takes.
const MAX_ROUNDS: usize = 50;
/// Pause-and-switch attempts before giving up (each refused one was a live apply that slipped
/// past an expired lease, or a store error).
const SWITCH_ATTEMPTS: usize = 3;

/// What a rebuild tells whoever runs it.
pub trait RebuildReport: Send {
    fn started(&mut self, build: &ShadowBuild);
    /// Offsets done towards the current goal, of `total`.
    fn progress(&mut self, done: u64, total: u64);
    /// An event the build could not project, with the reason.
    fn not_projected(&mut self, source: &str, reason: &str);
    fn pausing(&mut self);
    /// Another owner holds the shadow lease until `until`: a killed rebuild's, or a live one.
    fn waiting(&mut self, owner: &str, until: DateTime<Utc>);
}

#[derive(Debug, PartialEq, Eq)]
pub struct Rebuilt {
    pub generation: u64,
    pub projected: usize,
    pub refused: usize,
}

pub struct ShadowRebuild {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub topics: Vec<String>,
    pub rules: Arc<RoutingRules>,
    pub limits: Arc<Limits>,
    pub clock: Arc<dyn Clock>,
    /// How long the shadow and switch leases last without renewal.
    pub lease_ttl: Duration,
    /// Drop a build in progress and start over.
    pub fresh: bool,
}

/// The rebuild's leases, renewed before every batch.
pub(crate) struct Leases<'a> {
    store: &'a dyn Store,
    clock: &'a dyn Clock,
    owner: String,
    ttl: chrono::Duration,
    pausing: std::sync::atomic::AtomicBool,
}

impl Leases<'_> {
    async fn take(&self, name: &str) -> Result<(), String> {
        let now = self.clock.now();
        match self
            .store
            .take_lease(name, &self.owner, now + self.ttl, now)
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(holder)) => Err(format!(
                "{name} is held by {} until {}: another rebuild runs",
                holder.owner, holder.until
            )),
            Err(e) => Err(format!("{name}: {e}")),
        }
    }

    /// The shadow lease, once free: a rebuild that was killed leaves it until it expires, and
    /// one that still runs renews it, so waiting past one lease period tells the two apart.
    async fn wait_for_shadow(&self, report: &mut dyn RebuildReport) -> Result<(), String> {
        let mut waited = false;
        loop {
            let now = self.clock.now();
            let until = now + self.ttl;
            let holder = self
                .store
                .take_lease(SHADOW_LEASE, &self.owner, until, now)
                .await
                .map_err(|e| format!("{SHADOW_LEASE}: {e}"))?;
            let Some(holder) = holder else {
                return Ok(());
            };
            if waited {
                return Err(format!(
                    "another rebuild ({}) runs: it renewed {SHADOW_LEASE} until {}",
                    holder.owner, holder.until
                ));
            }
            report.waiting(&holder.owner, holder.until);
            waited = true;
            let left = (holder.until - now).to_std().unwrap_or_default();
            tokio::time::sleep(
                left.min(self.ttl.to_std().unwrap_or(left)) + Duration::from_millis(100),
            )
            .await;
        }
    }

    pub(crate) async fn renew(&self) -> Result<(), String> {
        self.take(SHADOW_LEASE).await?;
        if self.pausing.load(std::sync::atomic::Ordering::Relaxed) {
            self.take(SWITCH_LEASE).await?;
        }
        Ok(())
    }

    async fn pause(&self) -> Result<(), String> {
        self.take(SWITCH_LEASE).await?;
        self.pausing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn release(&self, name: &str) {
        if let Err(e) = self.store.release_lease(name, &self.owner).await {
            tracing::warn!(error = %e, lease = name, "could not release a lease; it expires by itself");
        }
    }

    /// The switch must still find the lease held this far ahead (a margin for the store's
    /// write and a clock read apart).
    fn held_past(&self) -> DateTime<Utc> {
        self.clock.now() + self.ttl / 3
    }
}

impl ShadowRebuild {
    pub async fn run(&self, report: &mut dyn RebuildReport) -> Result<Rebuilt, String> {
        let generations = self.store.generations().ok_or_else(|| {
            format!(
                "the {} store keeps no generations of the read model yet: rebuild it in place (`rebuild --in-place`, with the projector stopped)",
                self.store.name()
            )
        })?;
        let leases = Leases {
            store: self.store.as_ref(),
            clock: self.clock.as_ref(),
            owner: format!("rebuild-{}", new_id()),
            ttl: chrono::Duration::from_std(self.lease_ttl).unwrap_or(chrono::Duration::MAX),
            pausing: false.into(),
        };
        leases.wait_for_shadow(report).await?;
        let rebuilt = self.build(generations, &leases, report).await;
        leases.release(SWITCH_LEASE).await;
        leases.release(SHADOW_LEASE).await;
        rebuilt
    }

    async fn build(
        &self,
        generations: &dyn Generations,
        leases: &Leases<'_>,
        report: &mut dyn RebuildReport,
    ) -> Result<Rebuilt, String> {
        // What an earlier rebuild killed between its switch and its drop left behind.
        generations
            .drop_retired()
            .await
            .map_err(|e| format!("cannot drop the retired generation: {e}"))?;
        let build = generations
            .open_shadow(self.fresh)
            .await
            .map_err(|e| format!("cannot open the build: {e}"))?;
        report.started(&build);
        let applied: Offsets = build
            .applied
            .iter()
            .map(|p| ((p.topic.clone(), p.partition), p.next_offset))
            .collect();
        let mut reader = Reader::new(
            self.bus.clone(),
            &build.build_id,
            self.topics.clone(),
            applied,
        );
        let mut projector = Projector {
            store: generations.shadow(),
            rules: self.rules.clone(),
            replay: None,
            limits: self.limits.clone(),
            fence: None,
            strikes: Default::default(),
        };
        let ids = (generations, build.build_id.as_str());
        let done = self
            .chase_then_switch(&mut reader, &mut projector, ids, leases, report)
            .await;
        let (projected, refused) = (reader.projected, reader.refused);
        reader.close().await;
        let generation = done?;
        if let Err(e) = generations.drop_retired().await {
            tracing::warn!(error = %e, "could not drop the retired generation; the next rebuild drops it");
        }
        Ok(Rebuilt {
            generation,
            projected,
            refused,
        })
    }

    async fn chase_then_switch(
        &self,
        reader: &mut Reader,
        projector: &mut Projector,
        build: (&dyn Generations, &str),
        leases: &Leases<'_>,
        report: &mut dyn RebuildReport,
    ) -> Result<u64, String> {
        let (generations, build_id) = build;
        for _ in 0..MAX_ROUNDS {
            let committed = self
                .bus
                .committed(projector::GROUP, &self.topics)
                .await
                .map_err(|e| format!("cannot read the projector's committed offsets: {e}"))?;
            let goal: Offsets = committed
                .into_iter()
                .map(|c| ((c.topic, c.partition), c.next_offset))
                .collect();
            let before: u64 = reader.applied.values().map(|o| (*o).max(0) as u64).sum();
            reader
                .catch_up(&goal, build, projector, leases, report)
                .await?;
            let after: u64 = reader.applied.values().map(|o| (*o).max(0) as u64).sum();
            if after - before <= SHORT_ROUND {
                break;
            }
        }
        report.pausing();
        leases.pause().await?;
        for _ in 0..SWITCH_ATTEMPTS {
            let missing = generations
                .missing_from_shadow(usize::MAX)
                .await
                .map_err(|e| format!("cannot compare the generations: {e}"))?;
            let goal = self.final_goal(reader, &missing)?;
            reader
                .catch_up(&goal, build, projector, leases, report)
                .await?;
            match generations
                .switch_to_shadow(build_id, &leases.owner, leases.held_past())
                .await
            {
                Ok(generation) => return Ok(generation),
                Err(SwitchError::Missing(sources)) => {
                    tracing::warn!(
                        missing = sources.len(),
                        "the active generation moved before the switch; catching up again"
                    );
                }
                Err(SwitchError::NotPaused) => {
                    tracing::warn!("the switch lease expired before the switch; pausing again");
                    leases.pause().await?;
                }
                Err(SwitchError::Store(e)) => return Err(format!("the switch failed: {e}")),
            }
        }
        Err(format!(
            "the read model kept moving: no switch after {SWITCH_ATTEMPTS} attempts; run the rebuild again (it resumes)"
        ))
    }

    /// Up to the last event the active generation holds and the build lacks; refused when the
    /// build already read past one (it could not project it) or one has no source.
    fn final_goal(&self, reader: &Reader, missing: &[String]) -> Result<Offsets, String> {
        let mut goal = Offsets::new();
        let mut refused = Vec::new();
        for source in missing {
            match parse_source(source) {
                Some((topic, partition, offset)) => {
                    let p = (topic, partition);
                    if reader.applied.get(&p).copied().unwrap_or(0) > offset {
                        refused.push(source.clone());
                    } else {
                        let g = goal.entry(p).or_insert(0);
                        *g = (*g).max(offset + 1);
                    }
                }
                None => refused.push(source.clone()),
            }
        }
        if refused.is_empty() {
            return Ok(goal);
        }
        refused.sort();
        let shown: Vec<&str> = refused.iter().take(20).map(String::as_str).collect();
        Err(format!(
            "not switching: the rebuild could not project {} event(s) the active read model holds ({}{}); the active generation stays, fix the cause and run `rebuild --fresh`",
            refused.len(),
            shown.join(", "),
            if refused.len() > shown.len() { ", …" } else { "" }
        ))
    }
}
