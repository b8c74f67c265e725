//! Watermarks: per source split (max event time − out-of-orderness, idle splits left out
//! after `idle_timeout`), and the minimum over the inputs of a multi-input subtask.

use std::time::{Duration, Instant};

/// What a source subtask or an input currently says about event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkStatus {
    Active(i64),
    /// Nothing active: do not hold back downstream watermarks.
    Idle,
}

#[derive(Debug, Clone)]
struct Split {
    max_event_time: Option<i64>,
    last_active: Instant,
    finished: bool,
}

/// Tracks the watermark of the splits (Kafka partitions, files) one source subtask reads.
#[derive(Debug, Clone)]
pub struct SplitWatermarks {
    splits: Vec<Split>,
    out_of_orderness_ms: i64,
    idle_timeout: Option<Duration>,
    /// Last watermark emitted: watermarks never go back.
    emitted: Option<i64>,
}

impl SplitWatermarks {
    pub fn new(
        splits: usize,
        out_of_orderness: Duration,
        idle_timeout: Option<Duration>,
        now: Instant,
    ) -> Self {
        Self {
            splits: vec![
                Split {
                    max_event_time: None,
                    last_active: now,
                    finished: false
                };
                splits
            ],
            // Saturating: a cast would wrap a huge duration into a negative one, putting the
            // watermark ahead of the events.
            out_of_orderness_ms: i64::try_from(out_of_orderness.as_millis()).unwrap_or(i64::MAX),
            idle_timeout,
            emitted: None,
        }
    }

    /// Number of splits tracked.
    pub fn len(&self) -> usize {
        self.splits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.splits.is_empty()
    }

    /// Adds a split found after start (e.g. a new Kafka partition).
    pub fn add_split(&mut self, now: Instant) {
        self.splits.push(Split {
            max_event_time: None,
            last_active: now,
            finished: false,
        });
    }

    /// Records the largest event time seen in a batch read from `split`.
    pub fn observe(&mut self, split: usize, max_event_time: i64, now: Instant) {
        if let Some(s) = self.splits.get_mut(split) {
            s.max_event_time = Some(
                s.max_event_time
                    .map_or(max_event_time, |m| m.max(max_event_time)),
            );
            s.last_active = now;
        }
    }

    /// A split that will never produce again (end of file).
    pub fn finish(&mut self, split: usize) {
        if let Some(s) = self.splits.get_mut(split) {
            s.finished = true;
        }
    }

    /// The current status; an active split that has seen nothing yet holds the watermark back.
    pub fn status(&self, now: Instant) -> WatermarkStatus {
        let active = self.splits.iter().filter(|s| {
            !s.finished
                && self
                    .idle_timeout
                    .is_none_or(|t| now.duration_since(s.last_active) < t)
        });
        let mut min: Option<Option<i64>> = None;
        for s in active {
            let wm = s
                .max_event_time
                .map(|m| m.saturating_sub(self.out_of_orderness_ms));
            min = Some(match (min, wm) {
                (None, w) => w,
                (Some(Some(a)), Some(b)) => Some(a.min(b)),
                _ => None,
            });
        }
        match min {
            None => WatermarkStatus::Idle,
            Some(None) => WatermarkStatus::Active(self.emitted.unwrap_or(i64::MIN)),
            Some(Some(w)) => WatermarkStatus::Active(w.max(self.emitted.unwrap_or(i64::MIN))),
        }
    }

    /// Splits that read nothing for `after` while others read, and still hold the watermark
    /// back (no idle timeout lets them go): windows cannot fire past them and state grows.
    pub fn stalled(&self, now: Instant, after: Duration) -> usize {
        // Counted without allocating: this runs at every poll of a source.
        let (mut stalled, mut reading) = (0, 0);
        for s in &self.splits {
            let silent_for = now.duration_since(s.last_active);
            let holding = !s.finished && self.idle_timeout.is_none_or(|t| silent_for < t);
            match (holding, silent_for >= after) {
                (true, true) => stalled += 1,
                (true, false) => reading += 1,
                (false, _) => {}
            }
        }
        if reading == 0 { 0 } else { stalled }
    }

    /// The watermark to emit now, if it advanced since the last one emitted.
    pub fn advance(&mut self, now: Instant) -> Option<i64> {
        match self.status(now) {
            WatermarkStatus::Active(w) if w != i64::MIN && self.emitted.is_none_or(|e| w > e) => {
                self.emitted = Some(w);
                Some(w)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Active(Option<i64>),
    Idle(Option<i64>),
    Ended,
}

/// The watermark of a subtask with several inputs: the minimum over its active inputs.
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    inputs: Vec<Input>,
    current: Option<i64>,
}

impl InputWatermarks {
    pub fn new(inputs: u32) -> Self {
        Self {
            inputs: vec![Input::Active(None); inputs as usize],
            current: None,
        }
    }

    fn last(i: Input) -> Option<i64> {
        match i {
            Input::Active(w) | Input::Idle(w) => w,
            Input::Ended => Some(i64::MAX),
        }
    }

    /// A watermark from `input`; returns the subtask's new watermark if it advanced.
    pub fn on_watermark(&mut self, input: u32, wm: i64) -> Option<i64> {
        let slot = &mut self.inputs[input as usize];
        let prev = Self::last(*slot);
        *slot = Input::Active(Some(prev.map_or(wm, |p| p.max(wm))));
        self.recompute()
    }

    pub fn on_idle(&mut self, input: u32) -> Option<i64> {
        let slot = &mut self.inputs[input as usize];
        if let Input::Active(w) = *slot {
            *slot = Input::Idle(w);
        }
        self.recompute()
    }

    pub fn on_end(&mut self, input: u32) -> Option<i64> {
        self.inputs[input as usize] = Input::Ended;
        self.recompute()
    }

    /// Every input is idle or ended, and not all ended: downstream should not wait for this.
    pub fn all_idle(&self) -> bool {
        !self.all_ended()
            && self
                .inputs
                .iter()
                .all(|i| matches!(i, Input::Idle(_) | Input::Ended))
    }

    /// Every input sent `End`.
    pub fn all_ended(&self) -> bool {
        self.inputs.iter().all(|i| *i == Input::Ended)
    }

    fn recompute(&mut self) -> Option<i64> {
        let mut min: Option<i64> = None;
        let mut any_active = false;
        for i in &self.inputs {
            match *i {
                Input::Active(None) => return None,
                Input::Active(Some(w)) => {
                    any_active = true;
                    min = Some(min.map_or(w, |m| m.min(w)));
                }
                Input::Idle(_) => {}
                Input::Ended => {}
            }
        }
        if !any_active {
            // Only ended inputs (watermark +inf) or idle ones: ended-only releases everything.
            min = self
                .inputs
                .iter()
                .all(|i| *i == Input::Ended)
                .then_some(i64::MAX);
        }
        match min {
            Some(m) if self.current.is_none_or(|c| m > c) => {
                self.current = Some(m);
                Some(m)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_watermark_is_min_minus_out_of_orderness() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(2, Duration::from_millis(10), None, t0);
        w.observe(0, 1000, t0);
        assert_eq!(w.advance(t0), None, "split 1 has seen nothing yet");
        w.observe(1, 500, t0);
        assert_eq!(w.advance(t0), Some(490));
        w.observe(1, 400, t0);
        assert_eq!(w.advance(t0), None, "never goes back");
        w.finish(1);
        assert_eq!(w.advance(t0), Some(990));
    }

    #[test]
    fn watermarks_near_the_ends_of_time_saturate_never_wrap() {
        let t0 = Instant::now();
        // Near i64::MIN: saturates to "no watermark yet", does not wrap to a huge one.
        let mut w = SplitWatermarks::new(1, Duration::from_millis(10), None, t0);
        w.observe(0, i64::MIN + 5, t0);
        assert_eq!(w.status(t0), WatermarkStatus::Active(i64::MIN));
        assert_eq!(w.advance(t0), None);
        w.observe(0, i64::MAX, t0);
        assert_eq!(w.advance(t0), Some(i64::MAX - 10));
        // An out-of-orderness beyond i64 milliseconds holds the watermark back, not ahead.
        let mut w = SplitWatermarks::new(1, Duration::MAX, None, t0);
        w.observe(0, 100, t0);
        assert_eq!(w.advance(t0), Some(100 - i64::MAX));
    }

    #[test]
    fn idle_split_stops_holding_back() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(2, Duration::ZERO, Some(Duration::from_secs(30)), t0);
        w.observe(0, 1000, t0);
        assert_eq!(w.advance(t0 + Duration::from_secs(10)), None);
        let later = t0 + Duration::from_secs(31);
        w.observe(0, 2000, later);
        assert_eq!(w.advance(later), Some(2000));
        assert_eq!(
            w.status(later + Duration::from_secs(31)),
            WatermarkStatus::Idle
        );
    }

    #[test]
    fn inputs_take_the_minimum_of_active_ones() {
        let mut w = InputWatermarks::new(2);
        assert_eq!(w.on_watermark(0, 100), None);
        assert_eq!(w.on_watermark(1, 50), Some(50));
        assert_eq!(w.on_watermark(1, 200), Some(100));
        assert_eq!(w.on_idle(0), Some(200));
        assert_eq!(
            w.on_watermark(0, 150),
            None,
            "rejoining below the current one does not go back"
        );
        assert_eq!(w.on_end(0), None);
        assert_eq!(w.on_end(1), Some(i64::MAX));
        assert!(w.all_ended());
    }

    #[test]
    fn a_silent_split_without_an_idle_timeout_is_reported_stalled() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut w = SplitWatermarks::new(2, Duration::ZERO, None, t0);
        w.observe(0, 1_000, t0 + minute);
        assert_eq!(
            w.stalled(t0 + minute, minute),
            1,
            "split 1 silent for a minute"
        );
        assert_eq!(w.stalled(t0 + minute / 2, minute), 0, "not yet");
        w.observe(1, 900, t0 + minute);
        assert_eq!(w.stalled(t0 + minute, minute), 0, "it read again");
        // With an idle timeout a silent split stops holding back: nothing is stalled.
        let mut idle = SplitWatermarks::new(2, Duration::ZERO, Some(minute / 2), t0);
        idle.observe(0, 1_000, t0 + minute);
        assert_eq!(idle.stalled(t0 + minute, minute), 0);
        // A finished split is not stalled.
        let mut done = SplitWatermarks::new(2, Duration::ZERO, None, t0);
        done.finish(1);
        assert_eq!(done.stalled(t0 + minute, minute), 0);
    }
}
