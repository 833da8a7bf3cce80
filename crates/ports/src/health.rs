//! What each running part says about itself, read by `/readyz`. A role that cannot reach its
//! store or bus marks itself not ready with the reason, and ready again once it recovers.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComponentHealth {
    pub ready: bool,
    pub detail: String,
    pub since: DateTime<Utc>,
}

#[derive(Clone, Default)]
pub struct HealthRegistry {
    inner: Arc<RwLock<BTreeMap<String, ComponentHealth>>>,
}

impl HealthRegistry {
    pub fn set(&self, component: &str, ready: bool, detail: impl Into<String>) {
        let detail = detail.into();
        let mut map = self.inner.write().expect("health lock");
        match map.get_mut(component) {
            Some(h) if h.ready == ready => h.detail = detail,
            _ => {
                map.insert(
                    component.to_string(),
                    ComponentHealth {
                        ready,
                        detail,
                        since: Utc::now(),
                    },
                );
            }
        }
    }

    pub fn ready(&self, component: &str) {
        self.set(component, true, "ok");
    }

    pub fn snapshot(&self) -> BTreeMap<String, ComponentHealth> {
        self.inner.read().expect("health lock").clone()
    }

    pub fn all_ready(&self) -> bool {
        self.inner
            .read()
            .expect("health lock")
            .values()
            .all(|h| h.ready)
    }
}
