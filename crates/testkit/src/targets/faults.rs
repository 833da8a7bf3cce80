//! Faults a fake target injects into the requests that match a rule.

use std::time::Duration;
use tokio::sync::watch;

use super::fake::Recorded;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status without applying anything (500, 503, 401, 400, ...).
    Status {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// Drop the connection without a response, before applying.
    Reset,
    /// Apply, then drop the connection: the effect happened, the response is lost.
    ResetAfterApply,
    /// Apply, then answer only after this long (longer than the client's timeout makes a slow
    /// target whose work still happened).
    Delay(Duration),
    /// Apply, then answer only once the gate is opened.
    Hold(Gate),
}

impl Fault {
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status,
            retry_after: None,
            body: String::new(),
        }
    }

    /// 429 with `Retry-After: <seconds>`.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        Fault::Status {
            status: 429,
            retry_after: Some(retry_after_seconds.to_string()),
            body: "slow down".into(),
        }
    }

    pub fn with_body(status: u16, body: &str) -> Self {
        Fault::Status {
            status,
            retry_after: None,
            body: body.to_string(),
        }
    }
}

/// A rule: requests whose path and body contain the given texts get `fault`, `times` times
/// (forever when `None`), each with `probability` (always when `None`).
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub path_contains: Option<String>,
    pub body_contains: Option<String>,
    pub fault: Fault,
    pub times: Option<usize>,
    pub probability: Option<f64>,
}

impl FaultRule {
    /// The next `times` requests, whatever they are.
    pub fn next(times: usize, fault: Fault) -> Self {
        Self {
            path_contains: None,
            body_contains: None,
            fault,
            times: Some(times),
            probability: None,
        }
    }

    /// Every request, until the faults are cleared.
    pub fn always(fault: Fault) -> Self {
        Self {
            path_contains: None,
            body_contains: None,
            fault,
            times: None,
            probability: None,
        }
    }

    /// A random share of the requests (`probability` of each, 0 to 1), until the faults are
    /// cleared: a flaky target rather than a scripted one (the soak).
    pub fn randomly(probability: f64, fault: Fault) -> Self {
        Self {
            probability: Some(probability),
            ..Self::always(fault)
        }
    }

    /// Every request whose body mentions `text` (an entity id, a notification id).
    pub fn always_for(text: &str, fault: Fault) -> Self {
        Self {
            path_contains: None,
            body_contains: Some(text.to_string()),
            fault,
            times: None,
            probability: None,
        }
    }

    /// The next `times` requests whose body mentions `text`.
    pub fn next_for(text: &str, times: usize, fault: Fault) -> Self {
        Self {
            times: Some(times),
            ..Self::always_for(text, fault)
        }
    }

    /// Restrict the rule to paths containing `text`.
    pub fn on_path(mut self, text: &str) -> Self {
        self.path_contains = Some(text.to_string());
        self
    }

    pub(crate) fn matches(&self, request: &Recorded) -> bool {
        self.times != Some(0)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| request.path.contains(p))
            && self
                .body_contains
                .as_deref()
                .is_none_or(|b| request.body_text().contains(b))
            && self
                .probability
                .is_none_or(|p| rand::random_bool(p.clamp(0.0, 1.0)))
    }
}

/// A gate that held responses wait on.
#[derive(Clone, Debug)]
pub struct Gate(watch::Sender<bool>);

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        Self(watch::channel(false).0)
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }

    pub(crate) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}
