//! Click events like the article's producer: `{"user_id":"user_17","item_id":"item_523",
//! "timestamp":…}` from 100 users and 1000 items, with a little out-of-orderness.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const USERS: u32 = 100;
pub const ITEMS: u32 = 1000;

/// Produces click events whose event time follows a clock the caller advances.
pub struct ClickGenerator {
    rng: StdRng,
    /// Largest amount an event's time may lag the clock, in ms.
    jitter_ms: i64,
    items: u32,
}

impl ClickGenerator {
    pub fn new(seed: u64, jitter_ms: i64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            jitter_ms,
            items: ITEMS,
        }
    }

    /// Clicks on `items` distinct items instead of [`ITEMS`].
    pub fn with_items(mut self, items: u32) -> Self {
        self.items = items.max(1);
        self
    }

    /// One event at (about) event time `now_ms`, as a JSON object.
    pub fn event(&mut self, now_ms: i64) -> String {
        let user = self.rng.random_range(1..=USERS);
        let item = self.rng.random_range(1..=self.items);
        let lag = if self.jitter_ms > 0 {
            self.rng.random_range(0..=self.jitter_ms)
        } else {
            0
        };
        format!(
            r#"{{"user_id":"user_{user}","item_id":"item_{item}","timestamp":{}}}"#,
            now_ms - lag
        )
    }
}
