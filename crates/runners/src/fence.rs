//! The fence between a rebuild of the read model and live projectors, on the store's leases.
//!
//! Every projector member holds a lease of its own (`read-model/projector/<member>`), renewed
//! before a batch once a third of it has passed; a rebuild holds `read-model/rebuild`. Each side
//! writes its own lease first and only then looks for the other's, so (every lease write and
//! read being one linearizable single-record operation) at least one of them sees the other:
//! a rebuild that finds a live projector lease gives up, a projector that finds a rebuild lease
//! applies nothing until it is gone. A projector that stops lets its lease expire (`ttl`), so a
//! rebuild can start at most `ttl` after the last projector stopped. Issue 18's shadow rebuild
//! can keep the same two names.

use chrono::{DateTime, Utc};
use enrollstream_ports::{Clock, Lease, Store};
use std::sync::Arc;
use std::time::Duration;

pub const REBUILD: &str = "read-model/rebuild";
pub const PROJECTORS: &str = "read-model/projector/";

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A projector member's side of the fence.
pub struct ProjectorFence {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    name: String,
    ttl: Duration,
    held_until: Option<DateTime<Utc>>,
}

impl ProjectorFence {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            store,
            clock,
            name: format!("{PROJECTORS}{}", enrollstream_domain::ids::new_id()),
            ttl,
            held_until: None,
        }
    }

    /// Before a batch: our lease is live, and no rebuild holds the read model. Err explains
    /// why the batch must wait.
    pub async fn enter(&mut self) -> Result<(), String> {
        let now = self.clock.now();
        let fresh = self
            .held_until
            .is_some_and(|until| now < until - chrono(self.ttl) * 2 / 3);
        if fresh {
            return Ok(());
        }
        let until = now + chrono(self.ttl);
        self.held_until = None;
        match self
            .store
            .take_lease(&self.name, &self.name, until, now)
            .await
        {
            Ok(None) => {}
            Ok(Some(holder)) => return Err(format!("projector lease held by {}", holder.owner)),
            Err(e) => return Err(format!("projector lease: {e}")),
        }
        let rebuilds = self
            .store
            .leases(REBUILD, now)
            .await
            .map_err(|e| format!("rebuild lease: {e}"))?;
        if let Some(r) = rebuilds.first() {
            return Err(format!(
                "the read model is being rebuilt ({}, lease until {}); projecting waits for it",
                r.owner, r.until
            ));
        }
        self.held_until = Some(until);
        Ok(())
    }
}

impl ProjectorFence {
    /// Stopping: a rebuild may start at once.
    pub async fn release(&mut self) {
        self.held_until = None;
        if let Err(e) = self.store.release_lease(&self.name, &self.name).await {
            tracing::warn!(error = %e, "could not release the projector lease; it expires by itself");
        }
    }
}

/// The rebuild's side: held for the whole rebuild, renewed as it goes.
pub struct RebuildFence {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    owner: String,
    ttl: Duration,
}

impl RebuildFence {
    /// Take the rebuild lease, then make sure no projector is live; refused (with who holds
    /// what) otherwise.
    pub async fn take(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Result<Self, String> {
        let owner = format!("rebuild-{}", enrollstream_domain::ids::new_id());
        let fence = Self {
            store,
            clock,
            owner,
            ttl,
        };
        fence.renew().await?;
        let now = fence.clock.now();
        let live: Vec<Lease> = match fence.store.leases(PROJECTORS, now).await {
            Ok(live) => live,
            Err(e) => {
                fence.release().await;
                return Err(format!("projector leases: {e}"));
            }
        };
        if let Some(p) = live.first() {
            fence.release().await;
            return Err(format!(
                "{} projector(s) are live ({} holds its lease until {}): stop the projector role first; a stopped projector's lease expires within {:?}",
                live.len(),
                p.owner,
                p.until,
                fence.ttl
            ));
        }
        Ok(fence)
    }

    pub async fn renew(&self) -> Result<(), String> {
        let now = self.clock.now();
        match self
            .store
            .take_lease(REBUILD, &self.owner, now + chrono(self.ttl), now)
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(holder)) => Err(format!(
                "another rebuild ({}) holds the read model until {}",
                holder.owner, holder.until
            )),
            Err(e) => Err(format!("rebuild lease: {e}")),
        }
    }

    pub async fn release(&self) {
        if let Err(e) = self.store.release_lease(REBUILD, &self.owner).await {
            tracing::warn!(error = %e, "could not release the rebuild lease; it expires by itself");
        }
    }
}
