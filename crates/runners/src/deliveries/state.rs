//! A target's state as the operator sees it, in gauges written by the guard whenever its state
//! changes: no polling, and always the guard's own view. One state gauge per target and state
//! (1 for the current state, 0 for the others, so `== 1` selects it and every state has a
//! series from the start), beside the older circuit and paused gauges.

use std::sync::Mutex;

/// The circuit as its gauge shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitView {
    Closed,
    HalfOpen,
    Open,
}

/// What the guard knows about a target at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub circuit: CircuitView,
    pub paused: bool,
    /// Messages of this target waiting for another attempt after a transient failure.
    pub retrying: usize,
}

/// The one state a target is in; the worst condition wins (paused, then circuit, then retries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    Healthy,
    Retrying,
    Paused,
    CircuitOpen,
}

impl TargetState {
    pub const ALL: [TargetState; 4] = [
        TargetState::Healthy,
        TargetState::Retrying,
        TargetState::Paused,
        TargetState::CircuitOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Healthy => "healthy",
            TargetState::Retrying => "retrying",
            TargetState::Paused => "paused",
            TargetState::CircuitOpen => "circuit_open",
        }
    }

    pub fn of(view: &View) -> Self {
        if view.paused {
            TargetState::Paused
        } else if view.circuit != CircuitView::Closed {
            // Half-open counts as open: all but one probe are still held back.
            TargetState::CircuitOpen
        } else if view.retrying > 0 {
            TargetState::Retrying
        } else {
            TargetState::Healthy
        }
    }
}

/// The gauges of one target; each is written only when what it shows changes.
pub struct Gauges {
    target: String,
    shown: Mutex<Option<View>>,
}

impl Gauges {
    pub fn new(target: &str) -> Self {
        Self {
            target: target.to_string(),
            shown: Mutex::new(None),
        }
    }

    /// Show `view`. The caller holds the guard's lock, so views are shown in the order they
    /// happened.
    pub fn show(&self, view: View) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        let before = shown.replace(view);
        let target = &self.target;
        if before.map(|b| b.circuit) != Some(view.circuit) {
            let value = match view.circuit {
                CircuitView::Closed => 0.0,
                CircuitView::HalfOpen => 1.0,
                CircuitView::Open => 2.0,
            };
            metrics::gauge!("enrollstream_delivery_circuit_state", "target" => target.clone())
                .set(value);
        }
        if before.map(|b| b.paused) != Some(view.paused) {
            metrics::gauge!("enrollstream_delivery_paused", "target" => target.clone())
                .set(if view.paused { 1.0 } else { 0.0 });
        }
        let state = TargetState::of(&view);
        if before.map(|b| TargetState::of(&b)) != Some(state) {
            for s in TargetState::ALL {
                metrics::gauge!("enrollstream_delivery_target_state", "target" => target.clone(), "state" => s.as_str())
                    .set(if s == state { 1.0 } else { 0.0 });
            }
        }
    }
}

/// Descriptions of the delivery metrics an operator reads first (shown as `# HELP`).
pub fn describe() {
    metrics::describe_gauge!(
        "enrollstream_delivery_target_state",
        "1 for the state a delivery target is in (healthy, retrying, paused, circuit_open), 0 for the others, by target and state"
    );
    metrics::describe_histogram!(
        "enrollstream_delivery_latency_seconds",
        metrics::Unit::Seconds,
        "Time from an event's acceptance (its CloudEvent time) to its delivery to the target, by target"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(circuit: CircuitView, paused: bool, retrying: usize) -> View {
        View {
            circuit,
            paused,
            retrying,
        }
    }

    #[test]
    fn the_worst_condition_names_the_state() {
        use CircuitView::*;
        for (view, state) in [
            (view(Closed, false, 0), TargetState::Healthy),
            (view(Closed, false, 2), TargetState::Retrying),
            (view(HalfOpen, false, 2), TargetState::CircuitOpen),
            (view(Open, false, 0), TargetState::CircuitOpen),
            (view(Open, true, 1), TargetState::Paused),
        ] {
            assert_eq!(TargetState::of(&view), state, "{view:?}");
        }
    }
}
