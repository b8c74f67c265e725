//! Event-to-sink latency: when what a subtask processes entered the engine ([`Origin`]), and
//! the histogram a sink subtask keeps of how long its rows took ([`LatencyHistogram`]).
//!
//! Definition. A record enters the engine when its source subtask reads it (the poll that
//! returned its batch). A row a sink writes was produced either by records (a stateless
//! pipeline, or an aggregate that emits on every batch) — its latency runs from their entry —
//! or by a watermark (a window that fires) — its latency runs from the entry of the records
//! whose reading advanced that watermark past the window's end, so the window's own wait for
//! its end is not counted. It ends when the sink operator has handed the row to its connector
//! (a transactional sink makes it visible later, when the checkpoint completes). Time spent
//! in Kafka before the source reads is not part of it (that is the source's lag). Times are
//! taken by the wall clocks of the taskmanagers involved, so across machines clock skew adds
//! to or subtracts from it; a negative difference counts as zero.

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// When an element's content entered the engine: microseconds since the Unix epoch, by the
/// wall clock of the taskmanager whose source read it; 0 when unknown (e.g. from a peer of
/// an older release).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin(pub i64);

impl Origin {
    pub const UNKNOWN: Origin = Origin(0);

    pub fn now() -> Self {
        Origin(now_micros())
    }

    /// The time, if known.
    pub fn known(self) -> Option<i64> {
        (self.0 > 0).then_some(self.0)
    }
}

/// Microseconds since the Unix epoch by this process's wall clock.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The longest latency told apart: an hour. Longer ones are counted as an hour.
pub const MAX_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept: values are exact to within 1 %.
const SIGNIFICANT_DIGITS: u8 = 2;

/// Counts of rows by latency in microseconds, in HDR histogram buckets (log-linear, 1 %
/// wide), from 1 µs to [`MAX_MICROS`]: about 25 KiB once it counted a row, nothing before (most
/// subtasks are not sinks). Cumulative: a subtask's only grows; a jobmanager takes differences
/// of successive ones.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Option<Histogram<u64>>);

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.rows() == other.rows() && self.buckets().eq(other.buckets())
    }
}

fn empty_histogram() -> Histogram<u64> {
    // Constant bounds that the library accepts (low ≥ 1, high ≥ 2·low, digits ≤ 5).
    match Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds refused: {e:?}"),
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self(None)
    }

    /// Counts `rows` rows of latency `micros` (clamped to the range).
    pub fn record(&mut self, micros: u64, rows: u64) {
        if rows > 0 {
            self.0
                .get_or_insert_with(empty_histogram)
                .saturating_record_n(micros, rows);
        }
    }

    /// Counts `rows` rows that entered the engine at `origin` and leave now; nothing when the
    /// origin is unknown.
    pub fn record_since(&mut self, origin: Origin, rows: usize) {
        if let Some(t) = origin.known() {
            let micros = u64::try_from(now_micros() - t).unwrap_or(0);
            self.record(micros, rows as u64);
        }
    }

    /// The non-empty buckets as (a latency in the bucket, rows): what travels to the
    /// jobmanager; [`Self::from_buckets`] puts each back in the same bucket.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().flat_map(|h| {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
        })
    }

    /// A histogram of the given buckets, as [`Self::buckets`] gives them (values out of range
    /// are clamped, counts saturate: whatever a peer sends).
    pub fn from_buckets(buckets: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut h = Self::new();
        for (micros, rows) in buckets {
            h.record(micros, rows);
        }
        h
    }

    /// Adds another histogram's counts (e.g. of another subtask).
    pub fn add(&mut self, other: &Self) {
        for (micros, rows) in other.buckets() {
            self.record(micros, rows);
        }
    }

    /// What was counted after `earlier`, an older state of the same cumulative histogram;
    /// all of `self` when `earlier` is not part of it (the counts started over).
    pub fn since(&self, earlier: &Self) -> Self {
        let (Some(now), Some(before)) = (&self.0, &earlier.0) else {
            return self.clone();
        };
        let mut d = now.clone();
        match d.subtract(before) {
            Ok(()) => Self(Some(d)),
            Err(_) => self.clone(),
        }
    }

    /// Rows counted.
    pub fn rows(&self) -> u64 {
        self.0.as_ref().map_or(0, |h| h.len())
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    /// The latency `q` (0 to 1) of the rows are at most, in microseconds; none when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        self.counted().map(|h| h.value_at_quantile(q))
    }

    /// The largest latency counted (to within its bucket); none when empty.
    pub fn max(&self) -> Option<u64> {
        self.counted().map(|h| h.max())
    }

    /// Rows whose latency is at most `micros` (to within the bucket holding it).
    pub fn rows_at_most(&self, micros: u64) -> u64 {
        self.0.as_ref().map_or(0, |h| h.count_between(0, micros))
    }

    /// The histogram, when it counted a row.
    fn counted(&self) -> Option<&Histogram<u64>> {
        self.0.as_ref().filter(|h| !h.is_empty())
    }

    /// The sum of the latencies counted, in microseconds (each bucket at its middle).
    pub fn sum_micros(&self) -> f64 {
        self.0.as_ref().map_or(0.0, |h| h.mean() * h.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[(u64, u64)]) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for &(v, n) in values {
            h.record(v, n);
        }
        h
    }

    fn near(a: u64, b: u64) -> bool {
        a.abs_diff(b) as f64 <= b as f64 * 0.01
    }

    #[test]
    fn merging_adds_the_counts_of_every_subtask() {
        let a = of(&[(1_000, 90), (40_000, 10)]);
        let b = of(&[(2_000, 100)]);
        let mut merged = LatencyHistogram::new();
        merged.add(&a);
        merged.add(&b);
        assert_eq!(merged.rows(), 200);
        // 90 rows at 1 ms and 100 at 2 ms: the median is 2 ms, p99 the 40 ms of a.
        assert!(near(merged.quantile(0.5).unwrap(), 2_000), "{merged:?}");
        assert!(near(merged.quantile(0.99).unwrap(), 40_000));
        assert!(near(merged.max().unwrap(), 40_000));
        assert_eq!(merged.rows_at_most(1_500), 90);
        assert_eq!(merged.rows_at_most(3_000), 190);
        assert!((merged.sum_micros() - (90e3 + 200e3 + 400e3)).abs() < 0.01 * 690e3);
    }

    #[test]
    fn buckets_travel_and_come_back_into_the_same_buckets() {
        let h = of(&[(1, 1), (999, 3), (123_456, 7), (MAX_MICROS + 5, 2), (0, 4)]);
        let back = LatencyHistogram::from_buckets(h.buckets().collect::<Vec<_>>());
        assert_eq!(back, h);
        assert_eq!(back.rows(), 17);
        assert!(near(back.max().unwrap(), MAX_MICROS), "clamped to an hour");
    }

    #[test]
    fn differences_of_cumulative_histograms_are_the_rows_in_between() {
        let earlier = of(&[(1_000, 10)]);
        let later = of(&[(1_000, 15), (50_000, 5)]);
        let d = later.since(&earlier);
        assert_eq!(d.rows(), 10);
        assert!(near(d.quantile(0.5).unwrap(), 1_000));
        assert!(near(d.max().unwrap(), 50_000));
        // Counts that started over (a new attempt): everything counted now.
        let restarted = of(&[(2_000, 3)]);
        assert_eq!(restarted.since(&later), restarted);
        assert!(LatencyHistogram::new().quantile(0.5).is_none());
        assert!(LatencyHistogram::new().since(&later).is_empty());
    }

    #[test]
    fn rows_of_unknown_origin_are_not_counted_and_the_future_counts_as_zero() {
        let mut h = LatencyHistogram::new();
        h.record_since(Origin::UNKNOWN, 5);
        assert!(h.is_empty());
        h.record_since(Origin(now_micros() + 60_000_000), 2);
        assert_eq!(h.rows(), 2);
        assert_eq!(h.max(), Some(0));
        h.record_since(Origin(now_micros() - 20_000), 1);
        assert!(h.max().unwrap() >= 20_000 && h.max().unwrap() < 20_000_000);
    }
}
