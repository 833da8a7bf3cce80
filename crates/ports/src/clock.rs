//! Time as a port: reminders, retries and leases read this clock, so tests move time forward
//! instead of sleeping.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `now() >= deadline` (or `max` of real time passed, so a waiter re-checks
    /// its work periodically). A manual clock resolves as soon as it is advanced past `deadline`.
    fn sleep_until(
        &self,
        deadline: DateTime<Utc>,
        max: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(
        &self,
        deadline: DateTime<Utc>,
        max: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let wait = (deadline - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(max);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to. Waiters wake on every `advance`/`set`.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    tick: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        let (tick, _) = watch::channel(start);
        Self {
            now: Arc::new(Mutex::new(start)),
            tick,
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now += by;
        self.tick.send_replace(*now);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().expect("clock lock") = to;
        self.tick.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock")
    }

    fn sleep_until(
        &self,
        deadline: DateTime<Utc>,
        max: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            let reached = async {
                loop {
                    if *rx.borrow_and_update() >= deadline {
                        return;
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(max, reached).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_on_advance() {
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        let c2 = clock.clone();
        let sleeper = tokio::spawn(async move {
            c2.sleep_until(
                start + chrono::Duration::hours(24),
                Duration::from_secs(3600),
            )
            .await;
            c2.now()
        });
        tokio::task::yield_now().await;
        clock.advance(chrono::Duration::hours(24));
        let woke_at = sleeper.await.unwrap();
        assert_eq!(woke_at, start + chrono::Duration::hours(24));
    }
}
