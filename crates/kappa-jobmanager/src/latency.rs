//! A job's event-to-sink latency: the histograms its sink subtasks send with their heartbeats
//! (see `kappa_runtime::latency` for what is measured), merged, and the figures shown of them.

use kappa_runtime::latency::LatencyHistogram;
use kappa_runtime::metrics::VertexMetrics;
use serde::{Deserialize, Serialize};

/// Quantiles of the latency of the rows a job's sinks wrote: from when what produced a row
/// entered the engine (its records read by a source, or for a window's row the records that
/// moved the watermark past the window's end) to when the sink took it. Within 1 %.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LatencyView {
    /// Rows the figures cover.
    pub rows: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyView {
    /// The figures of `h`; none when it counted no row.
    pub fn of(h: &LatencyHistogram) -> Option<Self> {
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Self {
            rows: h.rows(),
            p50_ms: ms(h.quantile(0.5)?),
            p99_ms: ms(h.quantile(0.99)?),
            max_ms: ms(h.max()?),
        })
    }
}

/// The latency histograms of every subtask of an attempt added up (only sinks count rows).
pub fn merged(vertices: &[VertexMetrics]) -> LatencyHistogram {
    let mut all = LatencyHistogram::new();
    for s in vertices.iter().flat_map(|v| &v.subtasks) {
        all.add(&s.latency.lock());
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_s_latency_is_that_of_all_its_sink_subtasks() {
        let v = vec![
            VertexMetrics::new(0, "source", 2),
            VertexMetrics::new(1, "window", 2),
        ];
        assert_eq!(LatencyView::of(&merged(&v)), None, "no rows yet");
        v[1].subtasks[0].latency.lock().record(4_000, 99);
        v[1].subtasks[1].latency.lock().record(30_000, 1);
        let l = LatencyView::of(&merged(&v)).unwrap();
        assert_eq!(l.rows, 100);
        assert!((l.p50_ms - 4.0).abs() < 0.05, "{l:?}");
        assert!(
            (l.p99_ms - 4.0).abs() < 0.05,
            "99 of 100 rows took 4 ms: {l:?}"
        );
        assert!((l.max_ms - 30.0).abs() < 0.3, "{l:?}");
    }
}
