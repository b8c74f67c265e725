//! Per-second rates of a running attempt (records in/out per second, share of time blocked by
//! backpressure), sampled from the monotonic counters of each subtask.

use std::time::Instant;

use kappa_runtime::metrics::{SubtaskMetrics, VertexMetrics};

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    records_in: u64,
    records_out: u64,
    backpressured_ns: u64,
}

/// Rates of one subtask over the last sampling interval.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SubtaskRates {
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
    /// Fraction of the interval spent waiting for downstream room, 0 to 1.
    pub backpressure_ratio: f64,
}

/// Keeps the previous sample of every subtask of every vertex.
#[derive(Debug, Default)]
pub struct RateTracker {
    last: Option<(Instant, Vec<Vec<Sample>>)>,
    rates: Vec<Vec<SubtaskRates>>,
}

fn read(m: &SubtaskMetrics) -> Sample {
    Sample {
        records_in: SubtaskMetrics::get(&m.records_in),
        records_out: SubtaskMetrics::get(&m.records_out),
        backpressured_ns: SubtaskMetrics::get(&m.backpressured_ns),
    }
}

impl RateTracker {
    /// Takes a new sample and updates the rates.
    pub fn sample(&mut self, vertices: &[VertexMetrics], now: Instant) {
        let samples: Vec<Vec<Sample>> = vertices
            .iter()
            .map(|v| v.subtasks.iter().map(|s| read(s)).collect())
            .collect();
        if let Some((then, prev)) = &self.last {
            let secs = now.duration_since(*then).as_secs_f64();
            if secs > 0.0 {
                self.rates = samples
                    .iter()
                    .zip(prev)
                    .map(|(cur, old)| {
                        cur.iter()
                            .zip(old)
                            .map(|(c, o)| SubtaskRates {
                                records_in_per_second: c.records_in.saturating_sub(o.records_in)
                                    as f64
                                    / secs,
                                records_out_per_second: c.records_out.saturating_sub(o.records_out)
                                    as f64
                                    / secs,
                                backpressure_ratio: (c
                                    .backpressured_ns
                                    .saturating_sub(o.backpressured_ns)
                                    as f64
                                    / 1e9
                                    / secs)
                                    .min(1.0),
                            })
                            .collect()
                    })
                    .collect();
            }
        }
        self.last = Some((now, samples));
    }

    /// The rates of a subtask (zero until two samples were taken).
    pub fn get(&self, vertex: usize, subtask: usize) -> SubtaskRates {
        self.rates
            .get(vertex)
            .and_then(|v| v.get(subtask))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_are_deltas_over_time() {
        let v = vec![VertexMetrics::new(0, "source", 1)];
        let mut t = RateTracker::default();
        let t0 = Instant::now();
        t.sample(&v, t0);
        SubtaskMetrics::add(&v[0].subtasks[0].records_in, 500);
        SubtaskMetrics::add(&v[0].subtasks[0].backpressured_ns, 250_000_000);
        t.sample(&v, t0 + Duration::from_millis(500));
        let r = t.get(0, 0);
        assert_eq!(r.records_in_per_second, 1000.0);
        assert_eq!(r.backpressure_ratio, 0.5);
    }
}
