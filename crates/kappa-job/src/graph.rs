//! The physical graph of a plan: vertices (chains of operators run in one subtask), their
//! parallelism, and the edges between them; shown by `kappactl validate` and the REST API.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::keygroup::key_group_range;
use crate::plan::{JobPlan, SinkKind, SourceKind, StepPlan, WindowAssigner};

/// One vertex: operators chained in the same subtask, without serialisation between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Vertex {
    pub id: u32,
    pub name: String,
    pub operators: Vec<String>,
    pub parallelism: u32,
    /// Key-group ranges per subtask (inclusive), for keyed vertices.
    pub key_groups: Option<Vec<(u32, u32)>>,
}

/// How records travel from one vertex to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Edge {
    pub from: u32,
    pub to: u32,
    /// `hash(item_id)` for a keyed exchange, `forward` for one-to-one.
    pub ship_strategy: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhysicalGraph {
    pub vertices: Vec<Vertex>,
    pub edges: Vec<Edge>,
}

fn ms(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

impl JobPlan {
    /// The operators and vertices this plan runs as.
    pub fn graph(&self) -> PhysicalGraph {
        let mut source_ops = vec![match &self.source.kind {
            SourceKind::Kafka(k) => format!(
                "Source: kafka topic `{}` ({} json)",
                k.topic, self.source.start
            ),
            SourceKind::File { path } => format!("Source: file `{}` (json lines)", path.display()),
        }];
        if let Some(et) = &self.event_time {
            source_ops.push(format!(
                "Watermarks: `{}` - {}{}",
                et.column,
                humantime::format_duration(et.max_out_of_orderness),
                et.idle_timeout
                    .map(|d| format!(", idle after {}", humantime::format_duration(d)))
                    .unwrap_or_default()
            ));
        }
        for s in &self.steps {
            source_ops.push(match s {
                StepPlan::Filter(f) => format!("Filter: {}", f.text),
                StepPlan::Select { exprs, .. } => format!(
                    "Select: {}",
                    exprs
                        .iter()
                        .map(|e| e.text.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let sink_op = match &self.sink.kind {
            SinkKind::Kafka { topic, .. } => format!(
                "Sink: kafka topic `{topic}`{}",
                self.sink
                    .key
                    .as_ref()
                    .map(|k| format!(" key `{}`", k.text))
                    .unwrap_or_default()
            ),
            SinkKind::File { path } => {
                format!("Sink: files `{}/part-<subtask>.jsonl`", path.display())
            }
            SinkKind::Stdout => "Sink: stdout".to_string(),
            SinkKind::Postgres { table, .. } => format!(
                "Sink: postgres upsert into `{table}`{}",
                self.sink
                    .key
                    .as_ref()
                    .map(|k| format!(" by id `{}`", k.text))
                    .unwrap_or_default()
            ),
        };
        let p = self.parallelism;
        let Some(w) = &self.window else {
            source_ops.push(sink_op);
            return PhysicalGraph {
                vertices: vec![Vertex {
                    id: 0,
                    name: "source".into(),
                    operators: source_ops,
                    parallelism: p,
                    key_groups: None,
                }],
                edges: Vec::new(),
            };
        };
        let kind = match w.assigner {
            WindowAssigner::Tumbling { size_ms } => format!("tumbling {}", ms(size_ms)),
            WindowAssigner::Sliding { size_ms, slide_ms } => {
                format!("sliding {} every {}", ms(size_ms), ms(slide_ms))
            }
            WindowAssigner::Session { gap_ms } => format!("session gap {}", ms(gap_ms)),
        };
        let keys: Vec<_> = w.keys.iter().map(|k| k.text.as_str()).collect();
        let aggs: Vec<_> = w
            .aggregates
            .iter()
            .map(|(n, c)| {
                let arg = c
                    .argument
                    .as_ref()
                    .map_or("*".to_string(), |a| a.text.clone());
                format!("{}({arg}) AS {n}", c.function.name())
            })
            .collect();
        let mut window_op = format!("Window: {kind} by {}: {}", keys.join(", "), aggs.join(", "));
        if w.allowed_lateness_ms > 0 {
            window_op.push_str(&format!(", allowed lateness {}", ms(w.allowed_lateness_ms)));
        }
        let ranges = (0..p)
            .map(|i| {
                let r = key_group_range(i, self.max_parallelism, p);
                (*r.start(), *r.end())
            })
            .collect();
        PhysicalGraph {
            vertices: vec![
                Vertex {
                    id: 0,
                    name: "source".into(),
                    operators: source_ops,
                    parallelism: p,
                    key_groups: None,
                },
                Vertex {
                    id: 1,
                    name: "window".into(),
                    operators: vec![window_op, sink_op],
                    parallelism: p,
                    key_groups: Some(ranges),
                },
            ],
            edges: vec![Edge {
                from: 0,
                to: 1,
                ship_strategy: format!("hash({})", keys.join(", ")),
            }],
        }
    }
}

impl fmt::Display for PhysicalGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.vertices {
            writeln!(
                f,
                "vertex {} `{}` (parallelism {})",
                v.id, v.name, v.parallelism
            )?;
            for op in &v.operators {
                writeln!(f, "    {op}")?;
            }
            if let Some(kg) = &v.key_groups {
                let r: Vec<_> = kg
                    .iter()
                    .enumerate()
                    .map(|(i, (a, b))| format!("#{i}: {a}-{b}"))
                    .collect();
                writeln!(f, "    key groups {}", r.join(", "))?;
            }
            for e in self.edges.iter().filter(|e| e.from == v.id) {
                writeln!(f, "  --{}--> vertex {}", e.ship_strategy, e.to)?;
            }
        }
        Ok(())
    }
}
