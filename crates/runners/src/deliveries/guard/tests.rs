//! The guard on a manual clock: circuit, pause and hold, without waiting.

use super::*;
use enrollstream_ports::ManualClock;

fn guard(clock: &ManualClock) -> Arc<Guard> {
    Arc::new(Guard::new(
        "t",
        "delivery:t",
        Arc::new(clock.clone()),
        BreakerSettings {
            failure_threshold: 2,
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(30),
        },
        Duration::from_secs(60),
        HealthRegistry::default(),
    ))
}

fn start() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// Admission if one is granted without waiting.
fn now_or_never(g: &Arc<Guard>) -> Option<Admission> {
    futures::FutureExt::now_or_never(g.admit())
}

#[tokio::test]
async fn circuit_opens_probes_and_closes() {
    let clock = ManualClock::new(start());
    let g = guard(&clock);
    assert!(now_or_never(&g).unwrap().failed(false, None));
    assert!(now_or_never(&g).unwrap().failed(false, None));
    // Open: nobody gets through.
    assert!(now_or_never(&g).is_none());
    clock.advance(chrono::Duration::seconds(10));
    let probe = now_or_never(&g).unwrap();
    assert_eq!(probe.role(), Role::CircuitProbe);
    // One probe at a time.
    assert!(now_or_never(&g).is_none());
    assert!(!probe.failed(false, None), "a failed probe does not count");
    // Open again, twice as long.
    clock.advance(chrono::Duration::seconds(10));
    assert!(now_or_never(&g).is_none());
    clock.advance(chrono::Duration::seconds(10));
    let probe = now_or_never(&g).unwrap();
    // A probe that goes away frees the slot.
    drop(probe);
    let probe = now_or_never(&g).unwrap();
    probe.answered();
    assert_eq!(now_or_never(&g).unwrap().role(), Role::Normal);
}

#[tokio::test]
async fn unauthorized_pauses_until_a_probe_succeeds() {
    let clock = ManualClock::new(start());
    let health = HealthRegistry::default();
    let g = Arc::new(Guard::new(
        "t",
        "delivery:t",
        Arc::new(clock.clone()),
        BreakerSettings::default(),
        Duration::from_secs(60),
        health.clone(),
    ));
    now_or_never(&g).unwrap().unauthorized("HTTP 401".into());
    assert!(g.is_paused());
    assert!(!health.all_ready());
    assert!(health.snapshot()["delivery:t"].detail.contains("HTTP 401"));
    assert!(now_or_never(&g).is_none());
    clock.advance(chrono::Duration::seconds(60));
    let probe = now_or_never(&g).unwrap();
    assert_eq!(probe.role(), Role::PauseProbe);
    assert!(now_or_never(&g).is_none());
    probe.unauthorized("HTTP 401 again".into());
    assert!(now_or_never(&g).is_none());
    clock.advance(chrono::Duration::seconds(60));
    now_or_never(&g).unwrap().answered();
    assert!(!g.is_paused());
    assert!(health.all_ready());
    assert_eq!(now_or_never(&g).unwrap().role(), Role::Normal);
}

#[tokio::test]
async fn retry_after_holds_everyone_and_429_spares_the_circuit() {
    let clock = ManualClock::new(start());
    let g = guard(&clock);
    for _ in 0..3 {
        assert!(now_or_never(&g)
            .unwrap()
            .failed(true, Some(Duration::from_secs(5))));
        assert!(now_or_never(&g).is_none());
        clock.advance(chrono::Duration::seconds(5));
    }
    assert_eq!(now_or_never(&g).unwrap().role(), Role::Normal);
}

#[tokio::test]
async fn the_state_follows_retries_the_circuit_and_the_pause() {
    use super::state::TargetState;
    let clock = ManualClock::new(start());
    let g = guard(&clock);
    let state = |g: &Arc<Guard>| TargetState::of(&g.lock().view());
    assert_eq!(state(&g), TargetState::Healthy);
    assert!(now_or_never(&g).unwrap().failed(false, None));
    let mark = g.retrying();
    assert_eq!(state(&g), TargetState::Retrying);
    assert!(now_or_never(&g).unwrap().failed(false, None));
    assert_eq!(state(&g), TargetState::CircuitOpen);
    clock.advance(chrono::Duration::seconds(10));
    let probe = now_or_never(&g).unwrap();
    assert_eq!(state(&g), TargetState::CircuitOpen, "half-open");
    probe.answered();
    assert_eq!(
        state(&g),
        TargetState::Retrying,
        "closed, one message still waiting"
    );
    drop(mark);
    assert_eq!(state(&g), TargetState::Healthy);
    now_or_never(&g).unwrap().unauthorized("HTTP 401".into());
    assert_eq!(state(&g), TargetState::Paused);
}
