//! The retry schedule of bulk requests: exponential delays from `first`, doubled up to
//! `max`, for at most `deadline` in all; past it the request fails with its last error.

use std::time::{Duration, Instant};

use super::error::EsError;

/// How patiently a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    /// The longest time from the first attempt to the start of the last one.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 100 ms, 200 ms, … up to 10 s between attempts, for two minutes.
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max: Duration::from_secs(10),
            deadline: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry `n` (0: the first retry).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The schedule of one request, starting now.
    pub fn start(self) -> Backoff {
        Backoff {
            policy: self,
            started: Instant::now(),
            retries: 0,
        }
    }
}

/// Where one request is in its schedule.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    started: Instant,
    retries: u32,
}

impl Backoff {
    /// The delay before the next attempt after `elapsed` since the first one, or None when
    /// it would start past the deadline.
    fn next_delay(&mut self, elapsed: Duration) -> Option<Duration> {
        let delay = self.policy.delay(self.retries);
        if elapsed + delay > self.policy.deadline {
            return None;
        }
        self.retries += 1;
        Some(delay)
    }

    /// Sleeps before the next attempt after `last` failed; past the deadline, gives up.
    pub fn wait(&mut self, last: EsError) -> Result<(), EsError> {
        let elapsed = self.started.elapsed();
        match self.next_delay(elapsed) {
            Some(delay) => {
                tracing::warn!(error = %last, retry_in_ms = delay.as_millis() as u64, "elasticsearch sink retries");
                std::thread::sleep(delay);
                Ok(())
            }
            None => Err(EsError::GaveUp {
                attempts: self.retries + 1,
                elapsed,
                last: Box::new(last),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy::default();
        let ms: Vec<u128> = (0..10).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(10), "no overflow");
    }

    #[test]
    fn gives_up_when_the_next_attempt_would_pass_the_deadline() {
        let mut b = RetryPolicy::default().start();
        let mut at = Duration::ZERO;
        let mut delays = Vec::new();
        while let Some(d) = b.next_delay(at) {
            delays.push(d);
            at += d;
        }
        // 100+…+6400 = 12.7 s, then 10 s steps: the last retry starts at 112.7 s ≤ 120 s.
        assert_eq!(delays.len(), 7 + 10, "{delays:?}");
        assert!(
            at <= Duration::from_secs(120)
                && at + Duration::from_secs(10) > Duration::from_secs(120)
        );
    }

    #[test]
    fn giving_up_keeps_the_last_error() {
        let policy = RetryPolicy {
            first: Duration::from_millis(1),
            max: Duration::from_millis(1),
            deadline: Duration::ZERO,
        };
        let e = policy
            .start()
            .wait(EsError::Throttled { count: 3 })
            .unwrap_err();
        assert!(
            matches!(&e, EsError::GaveUp { attempts: 1, last, .. } if matches!(**last, EsError::Throttled { count: 3 })),
            "{e:?}"
        );
        assert!(e.restart_may_help());
    }
}
