//! The state of one target as every lane sees it, deciding who may call it now:
//!
//! - the circuit breaker: after `failure_threshold` consecutive transient failures the circuit
//!   opens and nobody calls; when the open period ends one probe goes through; its success
//!   closes the circuit, its failure opens it again for twice as long;
//! - the pause: the target refused our credentials (401/403). Nobody calls, except one probe
//!   every `pause_probe_interval` that tries a message again; `/readyz` says why. Nothing is
//!   dead-lettered meanwhile: the messages are fine, the configuration is not;
//! - the hold: the target said `Retry-After`; nobody calls before then.
//!
//! All timing reads the clock port, so tests move time instead of waiting. Every change is shown
//! in the target's gauges (`state`) under the same lock, so they never show an older state.

use chrono::{DateTime, Utc};
use enrollstream_ports::{Clock, HealthRegistry};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

use super::settings::BreakerSettings;
use super::state::{self, CircuitView, Gauges, View};

/// How long a waiter sleeps at most before it looks at the state again (a safety net: every
/// change also wakes it).
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Circuit {
    Closed { failures: u32 },
    Open { until: DateTime<Utc>, trips: u32 },
    HalfOpen { trips: u32, probing: bool },
}

#[derive(Debug)]
struct Pause {
    reason: String,
    next_probe: DateTime<Utc>,
    probing: bool,
}

#[derive(Debug)]
struct State {
    circuit: Circuit,
    pause: Option<Pause>,
    hold_until: Option<DateTime<Utc>>,
    /// Messages waiting for another attempt after a transient failure.
    retrying: usize,
}

impl State {
    fn view(&self) -> View {
        View {
            circuit: match self.circuit {
                Circuit::Closed { .. } => CircuitView::Closed,
                Circuit::HalfOpen { .. } => CircuitView::HalfOpen,
                Circuit::Open { .. } => CircuitView::Open,
            },
            paused: self.pause.is_some(),
            retrying: self.retrying,
        }
    }
}

/// Why a lane was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Normal,
    /// The one call allowed while the circuit is half-open.
    CircuitProbe,
    /// The one call allowed per probe interval while the target is paused.
    PauseProbe,
}

pub struct Guard {
    target: String,
    component: String,
    clock: Arc<dyn Clock>,
    breaker: BreakerSettings,
    probe_interval: Duration,
    health: HealthRegistry,
    state: Mutex<State>,
    gauges: Gauges,
    changed: watch::Sender<u64>,
}

impl Guard {
    pub fn new(
        target: &str,
        component: &str,
        clock: Arc<dyn Clock>,
        breaker: BreakerSettings,
        probe_interval: Duration,
        health: HealthRegistry,
    ) -> Self {
        let guard = Self {
            target: target.to_string(),
            component: component.to_string(),
            clock,
            breaker,
            probe_interval,
            health,
            state: Mutex::new(State {
                circuit: Circuit::Closed { failures: 0 },
                pause: None,
                hold_until: None,
                retrying: 0,
            }),
            gauges: Gauges::new(target),
            changed: watch::channel(0).0,
        };
        state::describe();
        guard.show(&guard.lock());
        guard
    }

    fn show(&self, st: &MutexGuard<'_, State>) {
        self.gauges.show(st.view());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Wakes on every change of the target's state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn is_paused(&self) -> bool {
        self.lock().pause.is_some()
    }

    /// Wait until this lane may call the target.
    pub async fn admit(self: &Arc<Self>) -> Admission {
        loop {
            // Subscribed before looking, so a change between the look and the wait is not missed.
            let mut changed = self.changed.subscribe();
            let now = self.clock.now();
            let wait_until = {
                let mut st = self.lock();
                match self.try_admit(&mut st, now) {
                    Ok(role) => {
                        self.show(&st);
                        drop(st);
                        return Admission {
                            guard: Arc::clone(self),
                            role,
                            resolved: false,
                        };
                    }
                    Err(until) => until,
                }
            };
            let deadline = wait_until.unwrap_or(now + chrono::Duration::seconds(1));
            tokio::select! {
                _ = changed.changed() => {}
                _ = self.clock.sleep_until(deadline, RECHECK) => {}
            }
        }
    }

    /// The role the caller gets now, or until when to wait (`None`: until something changes).
    fn try_admit(&self, st: &mut State, now: DateTime<Utc>) -> Result<Role, Option<DateTime<Utc>>> {
        if let Some(pause) = &mut st.pause {
            if pause.probing {
                return Err(None);
            }
            if now < pause.next_probe {
                return Err(Some(pause.next_probe));
            }
            pause.probing = true;
            return Ok(Role::PauseProbe);
        }
        if let Some(hold) = st.hold_until.filter(|h| *h > now) {
            return Err(Some(hold));
        }
        match st.circuit {
            Circuit::Closed { .. } => Ok(Role::Normal),
            Circuit::Open { until, .. } if now < until => Err(Some(until)),
            Circuit::Open { trips, .. }
            | Circuit::HalfOpen {
                trips,
                probing: false,
            } => {
                st.circuit = Circuit::HalfOpen {
                    trips,
                    probing: true,
                };
                Ok(Role::CircuitProbe)
            }
            Circuit::HalfOpen { probing: true, .. } => Err(None),
        }
    }

    fn open_for(&self, trips: u32) -> chrono::Duration {
        let factor = 1u32
            .checked_shl(trips.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let d = self
            .breaker
            .open_for
            .saturating_mul(factor)
            .min(self.breaker.max_open_for);
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
    }

    /// Mark one message as waiting for a retry until the mark is dropped (delivered, parked,
    /// or its lane went away).
    pub fn retrying(self: &Arc<Self>) -> RetryMark {
        self.count_retrying(true);
        RetryMark(Arc::clone(self))
    }

    fn count_retrying(&self, more: bool) {
        let mut st = self.lock();
        st.retrying = if more {
            st.retrying + 1
        } else {
            st.retrying.saturating_sub(1)
        };
        self.show(&st);
    }

    fn resolve(&self, role: Role, outcome: Resolution) -> bool {
        let now = self.clock.now();
        let mut st = self.lock();
        let before = st.circuit;
        let mut counts = true;
        let mut resumed = None;
        let mut paused = None;
        match outcome {
            Resolution::Answered => {
                st.circuit = Circuit::Closed { failures: 0 };
                if role == Role::PauseProbe {
                    resumed = st.pause.take().map(|p| p.reason);
                }
            }
            Resolution::Failed {
                rate_limited,
                retry_after,
            } => {
                if let Some(after) = retry_after {
                    let until = now + chrono::Duration::from_std(after).unwrap_or_default();
                    st.hold_until = Some(st.hold_until.map_or(until, |h| h.max(until)));
                }
                if role == Role::PauseProbe {
                    // Whether the credentials work again is still unknown: stay paused.
                    if let Some(p) = &mut st.pause {
                        p.probing = false;
                        p.next_probe = now + self.probe_interval_chrono();
                    }
                    counts = false;
                } else if !rate_limited {
                    // A 429 is flow control, honoured through the hold; not a sign of an outage.
                    match (st.circuit, role) {
                        (Circuit::Closed { failures }, _) => {
                            let failures = failures + 1;
                            st.circuit = if failures >= self.breaker.failure_threshold {
                                Circuit::Open {
                                    until: now + self.open_for(1),
                                    trips: 1,
                                }
                            } else {
                                Circuit::Closed { failures }
                            };
                        }
                        (Circuit::HalfOpen { trips, .. }, Role::CircuitProbe) => {
                            st.circuit = Circuit::Open {
                                until: now + self.open_for(trips + 1),
                                trips: trips + 1,
                            };
                            counts = false;
                        }
                        _ => {}
                    }
                }
            }
            Resolution::Unauthorized(reason) => {
                counts = false;
                match &mut st.pause {
                    Some(p) => {
                        p.reason = reason;
                        if role == Role::PauseProbe {
                            p.probing = false;
                            p.next_probe = now + self.probe_interval_chrono();
                        }
                    }
                    None => {
                        paused = Some(reason.clone());
                        st.pause = Some(Pause {
                            reason,
                            next_probe: now + self.probe_interval_chrono(),
                            probing: false,
                        });
                    }
                }
                if let Circuit::HalfOpen { trips, .. } = st.circuit {
                    if role == Role::CircuitProbe {
                        st.circuit = Circuit::HalfOpen {
                            trips,
                            probing: false,
                        };
                    }
                }
            }
        }
        let after = st.circuit;
        let pause_reason = st.pause.as_ref().map(|p| p.reason.clone());
        self.show(&st);
        drop(st);
        if before != after {
            match after {
                Circuit::Open { until, trips } => {
                    tracing::warn!(target_name = %self.target, %until, trips, "circuit opened")
                }
                Circuit::Closed { .. } if !matches!(before, Circuit::Closed { .. }) => {
                    tracing::info!(target_name = %self.target, "circuit closed")
                }
                _ => {}
            }
        }
        if let Some(reason) = paused {
            tracing::error!(target_name = %self.target, %reason, "credentials refused: target paused");
        }
        if let Some(reason) = &pause_reason {
            self.health
                .set(&self.component, false, format!("paused: {reason}"));
        }
        if let Some(reason) = resumed {
            tracing::info!(target_name = %self.target, previous = %reason, "credentials accepted again: target resumed");
            self.health.ready(&self.component);
        }
        self.notify();
        counts
    }

    fn probe_interval_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.probe_interval).unwrap_or(chrono::Duration::MAX)
    }

    /// A lane let through went away without a result (shut down, partition revoked): its probe
    /// slot opens for another lane.
    fn abandon(&self, role: Role) {
        let mut st = self.lock();
        match role {
            Role::CircuitProbe => {
                if let Circuit::HalfOpen { trips, .. } = st.circuit {
                    st.circuit = Circuit::HalfOpen {
                        trips,
                        probing: false,
                    };
                }
            }
            Role::PauseProbe => {
                if let Some(p) = &mut st.pause {
                    p.probing = false;
                }
            }
            Role::Normal => return,
        }
        self.show(&st);
        drop(st);
        self.notify();
    }
}

/// One message waiting for a retry; see [`Guard::retrying`].
pub struct RetryMark(Arc<Guard>);

impl Drop for RetryMark {
    fn drop(&mut self) {
        self.0.count_retrying(false);
    }
}

enum Resolution {
    /// The target answered (accepted, or rejected this message for what it is): it is up.
    Answered,
    Failed {
        rate_limited: bool,
        retry_after: Option<Duration>,
    },
    Unauthorized(String),
}

/// Permission to make one call; report how it went.
pub struct Admission {
    guard: Arc<Guard>,
    role: Role,
    resolved: bool,
}

impl Admission {
    pub fn role(&self) -> Role {
        self.role
    }

    /// The target answered: delivered, or rejected for good.
    pub fn answered(mut self) {
        self.resolved = true;
        self.guard.resolve(self.role, Resolution::Answered);
    }

    /// A transient failure. True if it counts toward the message's retry budget (probe
    /// failures do not: they measure the target, not the message).
    pub fn failed(mut self, rate_limited: bool, retry_after: Option<Duration>) -> bool {
        self.resolved = true;
        self.guard.resolve(
            self.role,
            Resolution::Failed {
                rate_limited,
                retry_after,
            },
        )
    }

    /// The target refused our credentials: pause it.
    pub fn unauthorized(mut self, reason: String) {
        self.resolved = true;
        self.guard
            .resolve(self.role, Resolution::Unauthorized(reason));
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.resolved {
            self.guard.abandon(self.role);
        }
    }
}

#[cfg(test)]
mod tests;
