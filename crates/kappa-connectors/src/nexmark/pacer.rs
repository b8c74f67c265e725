//! Wall-clock pacing of a generating source: a token bucket of events per second, so a
//! reader asks how many events it may generate now and how long to wait for more, instead
//! of spinning.

use std::time::{Duration, Instant};

/// Events a reader may generate: `per_second` accrue every second, at most one second's
/// worth kept (a reader held back, e.g. by backpressure, catches up by at most that).
#[derive(Debug, Clone)]
pub struct Pacer {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    /// Starts empty at `now`: the first events come after their time.
    pub fn new(per_second: f64, now: Instant) -> Self {
        Pacer {
            per_second: per_second.max(f64::MIN_POSITIVE),
            tokens: 0.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second.max(1.0));
        self.last = now;
    }

    /// Whole events that may be generated at `now`.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens.floor() as u64
    }

    /// How long from `now` until `events` may be generated (at most one second's worth is
    /// ever available: a larger number waits for that).
    pub fn wait_for(&mut self, events: u64, now: Instant) -> Duration {
        self.refill(now);
        let wanted = (events as f64).min(self.per_second.max(1.0));
        let missing = wanted - self.tokens;
        match missing > 0.0 {
            true => Duration::from_secs_f64(missing / self.per_second),
            false => Duration::ZERO,
        }
    }

    /// `events` were generated.
    pub fn take(&mut self, events: u64) {
        self.tokens = (self.tokens - events as f64).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_accrue_at_the_rate_up_to_one_second() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000.0, t0);
        assert_eq!(p.available(t0), 0);
        assert_eq!(p.wait_for(100, t0), Duration::from_millis(100));
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(p.available(t1), 250);
        p.take(200);
        assert_eq!(p.available(t1), 50);
        assert_eq!(p.wait_for(50, t1), Duration::ZERO);
        // Held back for a minute: one second's worth, not sixty.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(p.available(t2), 1000);
        assert_eq!(
            p.wait_for(5000, t2),
            Duration::ZERO,
            "capped at what can accrue"
        );
    }

    #[test]
    fn a_rate_below_one_per_second_still_reaches_one_event() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0.5, t0);
        assert_eq!(p.wait_for(1, t0), Duration::from_secs(2));
        assert_eq!(p.available(t0 + Duration::from_secs(2)), 1);
    }
}
