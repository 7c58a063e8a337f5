//! The retry schedule every receiver shares: exponential backoff from
//! `initialBackoff` by `multiplier` up to `maxBackoff`, each wait spread by
//! ±`jitter`, and a receiver's `Retry-After` honoured (up to `maxBackoff`).

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sink::RetryConfig;

/// The waits of one delivery's retries.
#[derive(Debug)]
pub struct Backoff {
    config: RetryConfig,
    next: Duration,
}

impl Backoff {
    pub fn new(config: &RetryConfig) -> Self {
        Self {
            config: config.clone(),
            next: config.initial_backoff.0,
        }
    }

    /// The wait before the next attempt. `retry_after` is what the receiver
    /// asked for, if anything.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let max = self.config.max_backoff.0;
        let base = self.next;
        self.next = base.mul_f64(self.config.multiplier).min(max);
        if let Some(asked) = retry_after {
            return asked.min(max);
        }
        let spread = 1.0 + self.config.jitter * unit_random();
        base.mul_f64(spread.max(0.0)).min(max)
    }
}

/// A number in [-1, 1], different on every call (no cryptographic quality
/// needed: it only keeps retries of many receivers from synchronising).
fn unit_random() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    let bits = state.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    (bits >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::Duration as D;

    fn config(jitter: f64) -> RetryConfig {
        RetryConfig {
            max_retries: 3,
            initial_backoff: D::from_secs(1),
            max_backoff: D::from_secs(5),
            multiplier: 2.0,
            jitter,
        }
    }

    #[test]
    fn grows_to_the_cap_and_honours_retry_after() {
        let c = config(0.0);
        let mut b = Backoff::new(&c);
        let waits: Vec<u64> = (0..5).map(|_| b.next(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        let mut b = Backoff::new(&c);
        assert_eq!(b.next(Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(
            b.next(Some(Duration::from_secs(60))),
            Duration::from_secs(5),
            "capped at maxBackoff"
        );
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let c = config(0.1);
        let waits: Vec<Duration> = (0..200).map(|_| Backoff::new(&c).next(None)).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_millis(900) && *w <= Duration::from_millis(1100))
        );
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "jitter varies");
    }
}
