//! Rankings of a plan: `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` bounded by the filter
//! above it, as the SQL planner recognises it (`query/rank.rs`) — the top N rows of each
//! window, or the first row of each key (deduplication).

use arrow::datatypes::{FieldRef, SchemaRef};

use super::WindowAssigner;
use crate::sql::CompiledExpr;

/// What a ranking keeps of each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankKind {
    /// The first `limit` rows of each window (PARTITION BY window_start, window_end, …),
    /// emitted with their row numbers once the watermark reaches the window's end (column
    /// `end_index` of the rows held).
    TopN { limit: usize, end_index: usize },
    /// The earliest row of each key by its event time (column `time_index` of the input),
    /// emitted once the watermark passes it; a key is remembered forever, or with
    /// `ttl_ms > 0` until the watermark is `ttl_ms` past its row (then it may be emitted
    /// again).
    KeepFirst { time_index: usize, ttl_ms: i64 },
}

/// One ORDER BY term of a ranking.
#[derive(Debug, Clone)]
pub struct RankOrder {
    pub expr: CompiledExpr,
    pub descending: bool,
    pub nulls_first: bool,
}

/// A keyed ranking operator.
#[derive(Debug, Clone)]
pub struct RankPlan {
    /// Stable id of its state in savepoints.
    pub uid: String,
    pub kind: RankKind,
    /// PARTITION BY: the keys its input is hashed and grouped by (with `assign`, the keys
    /// besides the window, which the operator adds).
    pub partition: Vec<CompiledExpr>,
    /// A Top-N of a window table function's rows: the windows each input row falls into (by
    /// its event time, column `.1` of the input) are appended to it as window_start and
    /// window_end (a sliding window repeats it) before it is ranked. None: the rows held are
    /// the input's.
    pub assign: Option<(WindowAssigner, usize)>,
    /// ORDER BY; ties are broken by the remaining columns, in order, ascending.
    pub order: Vec<RankOrder>,
    /// The columns of its input.
    pub input_schema: SchemaRef,
    /// Its rows: the columns of the rows held (the input's, and with `assign` the window's)
    /// and the row number (UInt64).
    pub output_schema: SchemaRef,
}

impl RankPlan {
    /// The columns of the rows it holds: its output's, but the row number.
    pub fn row_fields(&self) -> &[FieldRef] {
        let fields = self.output_schema.fields();
        &fields[..fields.len().saturating_sub(1)]
    }

    /// What it does, for the physical graph's description.
    pub fn describe(&self) -> String {
        let keys: Vec<&str> = self.partition.iter().map(|k| k.text.as_str()).collect();
        let order: Vec<String> = self
            .order
            .iter()
            .map(|o| {
                let dir = if o.descending { "DESC" } else { "ASC" };
                format!("{} {dir}", o.expr.text)
            })
            .collect();
        let what = match self.kind {
            RankKind::TopN { limit, .. } if self.assign.is_some() => {
                format!("Top-{limit} per window (of the rows, windowed here)")
            }
            RankKind::TopN { limit, .. } => format!("Top-{limit} per window"),
            RankKind::KeepFirst { ttl_ms: 0, .. } => "Deduplicate: first row per key".into(),
            RankKind::KeepFirst { ttl_ms, .. } => format!(
                "Deduplicate: first row per key (a key is forgotten {} of event time after its row)",
                humantime::format_duration(std::time::Duration::from_millis(ttl_ms.max(0) as u64))
            ),
        };
        format!(
            "{what} by {} ordered by {}",
            keys.join(", "),
            order.join(", ")
        )
    }
}
