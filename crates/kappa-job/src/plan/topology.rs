//! The shape of a plan's dataflow: which operator output feeds which operator. Both job forms
//! plan into it — the `[source] → [[steps]] → [window] → [sink]` tables and SQL queries — and
//! the physical graph is built from it alone.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{JobPlan, SourcePlan, StepPlan, WindowPlan};
use crate::graph::{LATE_PORT, OperatorKind};
use crate::sql::CompiledExpr;

/// One output port of an operator of the plan: port 0 is its result, [`LATE_PORT`] the late
/// events of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Output {
    pub op: OperatorKind,
    pub port: usize,
}

impl Output {
    /// The result (port 0) of `op`.
    pub fn result(op: OperatorKind) -> Self {
        Self { op, port: 0 }
    }
}

/// Records of `from` flow into `to`; the edges into one operator are its inputs, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanEdge {
    pub from: Output,
    pub to: OperatorKind,
}

/// Stateless steps (filters, projections) applied in order to every record of its input.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Unique among the plan's operators.
    pub uid: String,
    pub steps: Vec<StepPlan>,
    /// Schema of the records it emits.
    pub schema: SchemaRef,
}

impl StagePlan {
    /// What the stage does, for the physical graph's description.
    pub fn describe(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|s| match s {
                StepPlan::Filter(f) => format!("Filter: {}", f.text),
                StepPlan::Select { exprs, .. } => format!(
                    "Select: {}",
                    exprs
                        .iter()
                        .map(|e| e.text.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect();
        steps.join("; ")
    }
}

/// The schema of a window's late events: its input's columns and the window they missed.
pub fn late_schema(input: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("window_start", DataType::Int64, false));
    fields.push(Field::new("window_end", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// The dataflow of the table form: each source through its own copy of the steps, all of
/// them into the first window, each window into the next, the last one (or the steps, or the
/// sources) into every result sink, and each window's late events into the sink named for
/// them.
pub(super) fn pipeline(
    sources: &[SourcePlan],
    steps: Vec<StepPlan>,
    steps_schema: SchemaRef,
    windows: &[WindowPlan],
    sinks: &[SinkInput],
) -> (Vec<StagePlan>, Vec<PlanEdge>) {
    let mut stages = Vec::new();
    let mut edges = Vec::new();
    let mut tails: Vec<Output> = (0..sources.len())
        .map(|s| Output::result(OperatorKind::Source(s)))
        .collect();
    if !steps.is_empty() {
        let several = sources.len() > 1;
        for (s, tail) in sources.iter().zip(tails.iter_mut()) {
            stages.push(StagePlan {
                uid: match several {
                    true => format!("steps@{}", s.uid),
                    false => "steps".into(),
                },
                steps: steps.clone(),
                schema: Arc::clone(&steps_schema),
            });
            let stage = OperatorKind::Steps(stages.len() - 1);
            edges.push(PlanEdge {
                from: *tail,
                to: stage,
            });
            *tail = Output::result(stage);
        }
    }
    for w in 0..windows.len() {
        let window = OperatorKind::Window(w);
        edges.extend(tails.drain(..).map(|from| PlanEdge { from, to: window }));
        tails.push(Output::result(window));
    }
    for (k, input) in sinks.iter().enumerate() {
        let sink = OperatorKind::Sink(k);
        match *input {
            SinkInput::Result => {
                edges.extend(tails.iter().map(|from| PlanEdge {
                    from: *from,
                    to: sink,
                }));
            }
            SinkInput::Late { window } => edges.push(PlanEdge {
                from: Output {
                    op: OperatorKind::Window(window),
                    port: LATE_PORT,
                },
                to: sink,
            }),
        }
    }
    (stages, edges)
}

/// What a sink of the table form receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SinkInput {
    /// The job's result: the last window's rows, or the records after the steps.
    Result,
    /// The events window `window` (index in [`JobPlan::windows`]) dropped as late, with the
    /// window they missed.
    Late { window: usize },
}

impl JobPlan {
    /// The outputs feeding `op`, in input order.
    pub fn inputs(&self, op: OperatorKind) -> impl Iterator<Item = Output> + '_ {
        self.edges
            .iter()
            .filter(move |e| e.to == op)
            .map(|e| e.from)
    }

    /// The schema of the records `out` emits; None for an operator the plan does not have.
    pub fn schema(&self, out: Output) -> Option<SchemaRef> {
        match (out.op, out.port) {
            (OperatorKind::Source(s), 0) => self.sources.get(s).map(|s| Arc::clone(&s.schema)),
            (OperatorKind::Steps(i), 0) => self.stages.get(i).map(|s| Arc::clone(&s.schema)),
            (OperatorKind::Window(w), 0) => {
                self.windows.get(w).map(|w| Arc::clone(&w.output_schema))
            }
            (OperatorKind::Join(j), 0) => self.joins.get(j).map(|j| Arc::clone(&j.output_schema)),
            (OperatorKind::Rank(r), 0) => {
                self.rankings.get(r).map(|r| Arc::clone(&r.output_schema))
            }
            (OperatorKind::Window(w), LATE_PORT) => {
                let input = self.inputs(OperatorKind::Window(w)).next()?;
                Some(late_schema(self.schema(input)?.as_ref()))
            }
            _ => None,
        }
    }

    /// The key expressions records entering input `input` of keyed operator `op` are hashed
    /// by (None for an operator that is not keyed).
    pub fn partition_keys(&self, op: OperatorKind, input: usize) -> Option<&[CompiledExpr]> {
        match op {
            OperatorKind::Window(w) => self.windows.get(w).map(|w| w.keys.as_slice()),
            OperatorKind::Join(j) => self.joins.get(j).map(|j| j.keys(input)),
            OperatorKind::Rank(r) => self.rankings.get(r).map(|r| r.partition.as_slice()),
            _ => None,
        }
    }

    /// Every operator of the plan, sources first, each after all of its inputs.
    pub fn operators_in_order(&self) -> Vec<OperatorKind> {
        let mut all: Vec<OperatorKind> = (0..self.sources.len())
            .map(OperatorKind::Source)
            .chain((0..self.stages.len()).map(OperatorKind::Steps))
            .chain((0..self.windows.len()).map(OperatorKind::Window))
            .chain((0..self.joins.len()).map(OperatorKind::Join))
            .chain((0..self.rankings.len()).map(OperatorKind::Rank))
            .chain((0..self.sinks.len()).map(OperatorKind::Sink))
            .collect();
        let mut ordered = Vec::with_capacity(all.len());
        // Kahn's algorithm, keeping the declaration order among ready operators; a cycle
        // (which planning never builds) leaves its operators out.
        while let Some(i) = all.iter().position(|op| {
            self.inputs(*op)
                .all(|input| ordered.contains(&input.op) && input.op != *op)
        }) {
            ordered.push(all.remove(i));
        }
        ordered
    }
}
