//! Exponential backoff with full jitter, read against the clock port so tests can move time.

use rand::Rng;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next delay: uniformly random in [0, min(max, initial * 2^attempt)] ("full jitter"),
    /// so that many instances recovering at once do not hammer a dependency in lock step.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32.checked_shl(self.attempt).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d[0] <= Duration::from_millis(100));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(2)));
        assert!(
            d[9] >= Duration::from_secs(1),
            "capped delay keeps at least half the cap"
        );
        b.reset();
        assert_eq!(b.attempts(), 0);
    }
}
