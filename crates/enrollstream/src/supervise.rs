//! Roles under watch. Every role runs until shutdown; one that ends before it (it returned, or
//! it panicked) is a role down. The process then never stays half alive: the role is marked
//! not ready on `/readyz` (component `role:<name>`), the other roles are stopped gracefully,
//! and `serve` fails, so the process exits non-zero and its supervisor (systemd, Kubernetes)
//! restarts it whole. Restarting one role in place would keep a process whose state a bug has
//! already broken once; a fresh process re-reads everything from the committed offsets.

use enrollstream_ports::HealthRegistry;
use std::collections::HashMap;
use std::future::Future;
use tokio::task::{Id, JoinSet};

pub struct Roles {
    tasks: JoinSet<String>,
    names: HashMap<Id, String>,
    health: HealthRegistry,
}

impl Roles {
    pub fn new(health: HealthRegistry) -> Self {
        Self {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            health,
        }
    }

    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        role: impl Future<Output = ()> + Send + 'static,
    ) {
        let name = name.into();
        let named = name.clone();
        let failpoint = failpoint(&name);
        let handle = self.tasks.spawn(async move {
            if let Some(after) = failpoint {
                tokio::time::sleep(after).await;
                panic!("failpoint: role {named} panics, as asked by {FAILPOINT}");
            }
            role.await;
            named
        });
        self.names.insert(handle.id(), name);
    }

    /// The first role that stops, and how; pending forever while every role runs.
    pub async fn first_down(&mut self) -> (String, String) {
        match self.tasks.join_next_with_id().await {
            Some(Ok((id, name))) => {
                self.names.remove(&id);
                (name, "it returned before shutdown".into())
            }
            Some(Err(e)) => {
                let name = self.names.remove(&e.id()).unwrap_or_else(|| "?".into());
                let how = if e.is_panic() {
                    let panic = e.into_panic();
                    let text = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a panic".into());
                    format!("it panicked: {text}")
                } else {
                    "it was cancelled".into()
                };
                (name, how)
            }
            None => std::future::pending().await,
        }
    }

    /// Mark a role down on `/readyz`.
    pub fn down(&self, name: &str, how: &str) {
        self.health
            .set(&format!("role:{name}"), false, how.to_string());
    }

    /// Wait for every role to end.
    pub async fn drain(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Fault injection for the tests of this supervision: `ENROLLSTREAM_FAILPOINT_PANIC=<role>`
/// (optionally `<role>@<milliseconds>`) makes that role panic after start.
const FAILPOINT: &str = "ENROLLSTREAM_FAILPOINT_PANIC";

fn failpoint(role: &str) -> Option<std::time::Duration> {
    let value = std::env::var(FAILPOINT).ok()?;
    let (name, after) = value.split_once('@').unwrap_or((value.as_str(), "500"));
    (name == role).then(|| std::time::Duration::from_millis(after.parse().unwrap_or(500)))
}
