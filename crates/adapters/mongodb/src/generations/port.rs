//! `Generations` on `MongoStore` (see the parent module).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_ports::{
    CommitPosition, Generations, ShadowBuild, Store, StoreError, SwitchError,
};

use super::build::{self, Refusal};
use crate::MongoStore;

#[async_trait]
impl Generations for MongoStore {
    async fn active_generation(&self) -> Result<u64, StoreError> {
        Ok(self.gens.pointer().await?.generation)
    }

    async fn open_shadow(&self, fresh: bool) -> Result<ShadowBuild, StoreError> {
        build::open_shadow(&self.gens, fresh).await
    }

    fn shadow(&self) -> Arc<dyn Store> {
        Arc::new(self.build_view())
    }

    async fn record_shadow_progress(
        &self,
        build_id: &str,
        positions: &[CommitPosition],
    ) -> Result<(), StoreError> {
        build::record_progress(&self.gens, build_id, positions).await
    }

    async fn missing_from_shadow(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        build::missing(&self.gens, limit).await
    }

    async fn switch_to_shadow(
        &self,
        build_id: &str,
        owner: &str,
        held_past: DateTime<Utc>,
    ) -> Result<u64, SwitchError> {
        match build::switch(&self.gens, build_id, owner, held_past).await? {
            Ok(generation) => Ok(generation),
            Err(Refusal::Missing(sources)) => Err(SwitchError::Missing(sources)),
            Err(Refusal::NotPaused) => Err(SwitchError::NotPaused),
        }
    }

    async fn drop_retired(&self) -> Result<(), StoreError> {
        build::drop_retired(&self.gens).await
    }
}
