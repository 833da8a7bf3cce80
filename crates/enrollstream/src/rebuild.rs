//! `enrollstream rebuild`: the read model again from the event topics, without side effects.
//!
//! By default into the read model's next generation while the live one serves, then switched
//! in (`runners::rebuild`). `--in-place` is the older rebuild, for stores without generations:
//! events the projector group had already committed are replayed without their outbox messages
//! (they were published when first projected); anything after that is projected normally. It
//! refuses while the outbox holds unpublished messages (the reset would drop them) and while a
//! projector is live (the fence in the store: a live projector would write into the read model
//! being rebuilt). An event the rebuild cannot project is reported with its reason, and the
//! rebuild then fails with their count: a read model that silently misses events is not a
//! rebuilt one. (The live projector dead-lettered them already when it first met them.)

use enrollstream_domain::ids::new_id;
use enrollstream_ports::{ShadowBuild, StartFrom, SubscriptionSpec, SystemClock};
use enrollstream_runners::consumer::{BatchHandler, Outcome};
use enrollstream_runners::fence::RebuildFence;
use enrollstream_runners::projector::{self, Projector};
use enrollstream_runners::rebuild::{RebuildReport, ShadowRebuild};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::{open_adapters, open_adapters_locked, Adapters, DataDirLock};
use crate::app::FENCE_TTL;
use crate::config::Config;
use crate::rebuild_progress::Progress;
use crate::topics::event_topics;

/// Tells the operator on stderr: the bar or progress lines, and every event not projected.
struct Told {
    progress: Option<Progress>,
    /// The switch's short catch-up is not shown: the bar ends at the live projector's offsets.
    paused: bool,
}

impl RebuildReport for Told {
    fn started(&mut self, build: &ShadowBuild) {
        match build.applied.is_empty() {
            true => eprintln!(
                "rebuilding the read model into generation {} (build {})",
                build.generation, build.build_id
            ),
            false => eprintln!(
                "resuming the rebuild of generation {} (build {}) from {} offset(s) applied",
                build.generation,
                build.build_id,
                build
                    .applied
                    .iter()
                    .map(|p| p.next_offset.max(0))
                    .sum::<i64>()
            ),
        }
    }

    fn progress(&mut self, done: u64, total: u64) {
        if self.paused {
            return;
        }
        match &mut self.progress {
            Some(p) => p.set(done, total),
            None => self.progress = Some(Progress::start(done, total)),
        }
    }

    fn not_projected(&mut self, source: &str, reason: &str) {
        eprintln!("not projected: {source}: {reason}");
    }

    fn waiting(&mut self, owner: &str, until: chrono::DateTime<chrono::Utc>) {
        eprintln!("waiting for the rebuild lease of {owner} to expire (until {until}; a killed rebuild leaves it that long)");
    }

    fn pausing(&mut self) {
        self.paused = true;
        if let Some(p) = self.progress.take() {
            p.finish();
        }
        eprintln!("caught up; pausing live applies to switch");
    }
}

pub async fn shadow(config: Config, fresh: bool) -> anyhow::Result<()> {
    let adapters = open_adapters_locked(&config, DataDirLock::Rebuild).await?;
    let rebuild = ShadowRebuild {
        store: adapters.store.clone(),
        bus: adapters.bus.clone(),
        topics: event_topics(&config),
        rules: Arc::new(config.routing.clone()),
        limits: Arc::new(config.limits.clone()),
        clock: Arc::new(SystemClock),
        lease_ttl: FENCE_TTL,
        fresh,
    };
    let mut told = Told {
        progress: None,
        paused: false,
    };
    let rebuilt = rebuild.run(&mut told).await;
    if let Some(p) = told.progress.take() {
        p.finish();
    }
    let rebuilt = rebuilt.map_err(anyhow::Error::msg)?;
    if rebuilt.refused > 0 {
        eprintln!(
            "could not project {} of {} event(s) (listed above); the live read model did not hold them either",
            rebuilt.refused,
            rebuilt.refused + rebuilt.projected
        );
    }
    // SQLite drops the previous generation at once; MongoDB keeps it until its grace passed and
    // its outbox is drained (docs/operations.md), then its relay drops it.
    eprintln!(
        "rebuilt the read model from {} event(s); generation {} is active, the previous one is retired",
        rebuilt.projected, rebuilt.generation
    );
    Ok(())
}

pub async fn in_place(config: Config) -> anyhow::Result<()> {
    let adapters = open_adapters(&config).await?;
    let Adapters { store, .. } = &adapters;
    let fence = RebuildFence::take(store.clone(), Arc::new(SystemClock), FENCE_TTL)
        .await
        .map_err(|e| anyhow::anyhow!("cannot rebuild: {e}"))?;
    let rebuilt = run(&config, &adapters, &fence).await;
    fence.release().await;
    rebuilt
}

async fn run(config: &Config, adapters: &Adapters, fence: &RebuildFence) -> anyhow::Result<()> {
    let Adapters { store, bus, .. } = adapters;
    let backlog = store.outbox_backlog().await?;
    anyhow::ensure!(
        backlog == 0,
        "the outbox still holds {backlog} unpublished message(s); run the relay until it drains, then rebuild"
    );
    let topics = event_topics(config);
    let committed = bus.committed(projector::GROUP, &topics).await?;
    let replay_below: HashMap<(String, i32), i64> = committed
        .iter()
        .map(|c| ((c.topic.clone(), c.partition), c.next_offset))
        .collect();
    store.reset_read_model().await?;
    let group = format!("read-model-rebuild-{}", new_id());
    let mut sub = bus
        .subscribe(SubscriptionSpec {
            group: group.clone(),
            topics: topics.clone(),
            start: StartFrom::Earliest,
            client_id: group.clone(),
        })
        .await?;
    let mut projector = Projector {
        store: store.clone(),
        rules: Arc::new(config.routing.clone()),
        replay: Some(replay_below.clone()),
        limits: Arc::new(config.limits.clone()),
        fence: None,
        strikes: Default::default(),
    };
    let mut progress: HashMap<(String, i32), i64> = Default::default();
    let done = |progress: &HashMap<(String, i32), i64>| {
        replay_below
            .iter()
            .all(|(k, target)| progress.get(k).copied().unwrap_or(0) >= *target)
    };
    // Offsets past the goal are projected too (normally, side effects and all), but the goal is
    // what the bar measures.
    let reached = |progress: &HashMap<(String, i32), i64>| -> u64 {
        replay_below
            .iter()
            .map(|(k, target)| progress.get(k).copied().unwrap_or(0).clamp(0, *target) as u64)
            .sum()
    };
    let total = replay_below.values().map(|t| (*t).max(0) as u64).sum();
    let mut shown = Progress::start(0, total);
    let (mut applied, mut refused) = (0usize, 0usize);
    let deadline_quiet = Duration::from_secs(5);
    while !done(&progress) {
        fence.renew().await.map_err(anyhow::Error::msg)?;
        let batch = sub.poll(500, deadline_quiet).await?;
        if batch.is_empty() && !sub.assignment().is_empty() {
            anyhow::bail!("the event topics ended before the committed offsets of {}: {progress:?} < {replay_below:?}", projector::GROUP);
        }
        let outcomes = projector
            .handle(&batch)
            .await
            .map_err(|e| anyhow::anyhow!(e.0))?;
        for (m, outcome) in batch.iter().zip(&outcomes) {
            match outcome {
                Outcome::Done => applied += 1,
                Outcome::DeadLetter(why) => {
                    refused += 1;
                    eprintln!(
                        "not projected: {}/{}/{} ({}): {}",
                        m.topic, m.partition, m.offset, why.reason, why.error
                    );
                }
            }
            let e = progress.entry((m.topic.clone(), m.partition)).or_insert(0);
            *e = (*e).max(m.offset + 1);
        }
        shown.set(reached(&progress), total);
    }
    shown.set(reached(&progress), total);
    shown.finish();
    sub.close().await?;
    anyhow::ensure!(
        refused == 0,
        "the rebuild could not project {refused} of {} event(s) (listed above, each with its reason; the live projector dead-lettered them too when it first met them); the read model holds the other {applied}",
        applied + refused
    );
    eprintln!("rebuilt the read model from {applied} event(s); the projector continues from its committed offsets");
    Ok(())
}
