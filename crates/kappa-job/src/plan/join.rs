//! Joins of two streams, bounded in event time so their state is too: a window join (rows of
//! the same key in the same window of both sides, emitted when the window closes) and an
//! interval join (rows of the same key whose times differ within bounds, emitted as soon as
//! both are there).

use arrow::datatypes::SchemaRef;

use super::WindowAssigner;
use crate::sql::CompiledExpr;

/// How the times of two joined rows must relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Both rows in the same window of `assigner`.
    Window { assigner: WindowAssigner },
    /// Rows that carry their window (the results of windowed aggregates) joined on equal
    /// windows: the indexes of window_start and window_end in the left and right rows.
    WindowRows {
        left: (usize, usize),
        right: (usize, usize),
    },
    /// `lower_ms <= left time - right time <= upper_ms`.
    Interval { lower_ms: i64, upper_ms: i64 },
    /// Each left row with the right row of its key that was the latest at the left row's time
    /// (`FOR SYSTEM_TIME AS OF`): the right side is a table versioned by event time.
    Temporal,
}

/// An inner equi-join of two streams.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    /// Stable id of its state in savepoints.
    pub uid: String,
    pub kind: JoinKind,
    /// Keys of the left rows and of the right rows, pairwise of the same type.
    pub left_keys: Vec<CompiledExpr>,
    pub right_keys: Vec<CompiledExpr>,
    /// Index of the event-time column in the left and right rows.
    pub left_time: usize,
    pub right_time: usize,
    /// Columns of the rows arriving on each side.
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    /// Its first `left_inputs` inputs carry left rows, the others right rows.
    pub left_inputs: usize,
    /// The left columns (with window_start and window_end for a window join), then the right
    /// ones (likewise).
    pub output_schema: SchemaRef,
}

impl JoinPlan {
    /// The keys of the rows arriving on `input`.
    pub fn keys(&self, input: usize) -> &[CompiledExpr] {
        match input < self.left_inputs {
            true => &self.left_keys,
            false => &self.right_keys,
        }
    }

    /// What it does, for the physical graph.
    pub fn describe(&self, window: impl Fn(WindowAssigner) -> String) -> String {
        let keys = |k: &[CompiledExpr]| {
            k.iter()
                .map(|e| e.text.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let on = format!("({}) = ({})", keys(&self.left_keys), keys(&self.right_keys));
        match self.kind {
            JoinKind::Window { assigner } => format!("Window join: {} on {on}", window(assigner)),
            JoinKind::WindowRows { .. } => format!("Window join of windowed rows on {on}"),
            JoinKind::Temporal => format!("Temporal join (right versions as of left time) on {on}"),
            JoinKind::Interval { lower_ms, upper_ms } => format!(
                "Interval join on {on}, left time - right time in [{lower_ms}ms, {upper_ms}ms]"
            ),
        }
    }
}
