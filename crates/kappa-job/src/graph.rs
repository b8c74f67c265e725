//! The physical graph of a plan, the single description of what runs: vertices (chains of
//! operators run in one subtask, each with a stable uid), their parallelism, and the edges
//! between them with their partitioning. Operators are chained into one vertex where the
//! edge between them is forward and the parallelism equal (Flink's operator chaining), so
//! stateless steps never cross a channel. Shown by `kappactl validate` and the REST API;
//! the jobmanager deploys it and the taskmanager wires its subtasks from it.

use std::fmt;

use arrow::datatypes::SchemaRef;

use serde::{Deserialize, Serialize};

use crate::keygroup::key_group_range;
use crate::plan::{JobPlan, Output, SinkKind, SourceKind, WindowAssigner};

/// What an operator of a chain is, by index into the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "index", rename_all = "snake_case")]
pub enum OperatorKind {
    /// Reads [`JobPlan::sources`]`[i]`, tracks its watermark.
    Source(usize),
    /// Applies the steps of [`JobPlan::stages`]`[i]` (stateless).
    Steps(usize),
    /// Keyed windows of [`JobPlan::windows`]`[i]`; output port 0 is the result, port 1 the
    /// late events.
    Window(usize),
    /// Writes to [`JobPlan::sinks`]`[i]`.
    Sink(usize),
    /// Joins two streams by [`JobPlan::joins`]`[i]`.
    Join(usize),
    /// Keyed ranking of [`JobPlan::rankings`]`[i]` (Top-N per window, deduplication).
    Rank(usize),
}

impl OperatorKind {
    /// Whether it keeps keyed state in checkpoints.
    pub fn is_keyed(self) -> bool {
        matches!(self, Self::Window(_) | Self::Join(_) | Self::Rank(_))
    }
}

/// The output port of a window's late events (port 0 carries its result).
pub const LATE_PORT: usize = 1;

/// Where one output port of an operator sends its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "to", content = "index", rename_all = "snake_case")]
pub enum Route {
    /// To the operator at this position of the same chain (no serialisation).
    Chained(usize),
    /// Over this edge of the graph, to another vertex.
    Edge(u32),
}

/// One operator of a vertex's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainedOperator {
    /// Stable id: its state and offsets are saved under it.
    pub uid: String,
    pub kind: OperatorKind,
    /// Routes per output port.
    pub outputs: Vec<Vec<Route>>,
}

/// One vertex: operators chained in the same subtask, without serialisation between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Vertex {
    pub id: u32,
    pub name: String,
    /// What each operator of the chain does, in chain order.
    pub operators: Vec<String>,
    /// The chain, in topological order: the first operator takes the vertex's inputs.
    pub chain: Vec<ChainedOperator>,
    pub parallelism: u32,
    /// Key-group ranges per subtask (inclusive), for keyed vertices.
    pub key_groups: Option<Vec<(u32, u32)>>,
    /// The edges into this vertex, in input order (input i of the first operator).
    pub inputs: Vec<u32>,
}

/// How records of an edge are distributed over the downstream subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// Upstream subtask i sends to downstream subtask i (equal parallelism).
    Forward,
    /// By the key group of the downstream operator's key.
    Hash,
    /// Round-robin over the downstream subtasks.
    Rebalance,
    /// Every record to every downstream subtask.
    Broadcast,
}

/// How records travel from one vertex to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Edge {
    pub id: u32,
    pub from: u32,
    pub to: u32,
    pub partitioning: Partitioning,
    /// `hash(item_id)` for a keyed exchange, `forward` for one-to-one.
    pub ship_strategy: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhysicalGraph {
    pub vertices: Vec<Vertex>,
    pub edges: Vec<Edge>,
}

impl PhysicalGraph {
    pub fn vertex(&self, id: u32) -> Option<&Vertex> {
        self.vertices.iter().find(|v| v.id == id)
    }

    pub fn edge(&self, id: u32) -> Option<&Edge> {
        self.edges.iter().find(|e| e.id == id)
    }

    /// Channels of each input edge of `vertex`: one per upstream subtask, one for forward.
    /// Returns (edge, first channel index, channels) in input order.
    pub fn input_channels(&self, vertex: &Vertex) -> Vec<(u32, u32, u32)> {
        let mut base = 0;
        let mut out = Vec::with_capacity(vertex.inputs.len());
        for id in &vertex.inputs {
            let n = match self.edge(*id) {
                Some(e) if e.partitioning == Partitioning::Forward => 1,
                Some(e) => self.vertex(e.from).map_or(0, |v| v.parallelism),
                None => 0,
            };
            out.push((*id, base, n));
            base += n;
        }
        out
    }

    /// The input channel at the downstream subtask that upstream subtask `upstream` of edge
    /// `edge` sends on; None when there is no such stream.
    pub fn channel(&self, edge: u32, upstream: u32) -> Option<u32> {
        let e = self.edge(edge)?;
        let to = self.vertex(e.to)?;
        let (_, base, n) = self
            .input_channels(to)
            .into_iter()
            .find(|(id, _, _)| *id == edge)?;
        let offset = match e.partitioning {
            Partitioning::Forward => 0,
            _ => upstream,
        };
        (offset < n).then_some(base + offset)
    }

    /// Every (uid, kind) of the graph's operators.
    pub fn operators(&self) -> impl Iterator<Item = &ChainedOperator> {
        self.vertices.iter().flat_map(|v| v.chain.iter())
    }
}

/// A window assigner as `kappactl validate` shows it.
fn describe_assigner(assigner: WindowAssigner) -> String {
    match assigner {
        WindowAssigner::Tumbling { size_ms } => format!("tumbling {}", ms(size_ms)),
        WindowAssigner::Sliding { size_ms, slide_ms } => {
            format!("sliding {} every {}", ms(size_ms), ms(slide_ms))
        }
        WindowAssigner::Session { gap_ms } => format!("session gap {}", ms(gap_ms)),
        WindowAssigner::Global { ttl_ms: 0 } => "updating (every key kept)".to_string(),
        WindowAssigner::Carried { .. } => "the windows of its rows".to_string(),
        WindowAssigner::Global { ttl_ms } => {
            format!(
                "updating (a key idle {} of event time is forgotten)",
                ms(ttl_ms)
            )
        }
    }
}

fn ms(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// An operator of the logical graph, before chaining.
struct Node {
    uid: String,
    name: String,
    kind: OperatorKind,
    description: String,
}

/// An edge of the logical graph: output `port` of `from` to `to`.
struct LogicalEdge {
    from: usize,
    port: usize,
    to: usize,
    partitioning: Partitioning,
}

impl JobPlan {
    fn describe_source(&self, i: usize) -> String {
        let s = &self.sources[i];
        let mut d = match &s.kind {
            SourceKind::Kafka(k) => {
                let mut d = format!(
                    "Source: kafka topic `{}` ({} {})",
                    k.topic, s.start, s.format
                );
                if let Some(h) = &k.history {
                    d.push_str(&format!(", history from `{h}`"));
                }
                d
            }
            SourceKind::File { path } => format!("Source: file `{}` (json lines)", path.display()),
            SourceKind::Nexmark(n) => n.describe(),
        };
        if self.sources.len() > 1 {
            d = format!("{d} as `{}`", s.name);
        }
        if let Some(et) = &s.event_time {
            d.push_str(&format!(
                "; watermarks: `{}` - {}{}",
                et.column,
                humantime::format_duration(et.max_out_of_orderness),
                et.idle_timeout
                    .map(|d| format!(", idle after {}", humantime::format_duration(d)))
                    .unwrap_or_default()
            ));
        }
        d
    }

    fn describe_window(&self, i: usize) -> String {
        let w = &self.windows[i];
        let kind = describe_assigner(w.assigner);
        let aggs: Vec<_> = w
            .aggregates
            .iter()
            .map(|(n, c)| {
                // An argument keeps the text of the whole call, as written.
                let call = c
                    .argument
                    .as_ref()
                    .map_or_else(|| format!("{}(*)", c.function.name()), |a| a.text.clone());
                format!("{call} AS {n}")
            })
            .collect();
        let what = match w.assigner {
            WindowAssigner::Global { .. } => "Aggregate",
            _ => "Window",
        };
        let mut d = format!(
            "{what}: {kind} by {}: {}",
            self.window_keys(i).join(", "),
            aggs.join(", ")
        );
        if w.allowed_lateness_ms > 0 {
            d.push_str(&format!(", allowed lateness {}", ms(w.allowed_lateness_ms)));
        }
        if let Some(s) = w.late_output.and_then(|s| self.sinks.get(s)) {
            d.push_str(&format!(", late events to `{}`", s.name));
        }
        d
    }

    fn window_keys(&self, i: usize) -> Vec<&str> {
        self.windows[i]
            .keys
            .iter()
            .map(|k| k.text.as_str())
            .collect()
    }

    fn describe_sink(&self, i: usize) -> String {
        let s = &self.sinks[i];
        let key = |what: &str| {
            s.key
                .as_ref()
                .map(|k| format!(" {what} `{}`", k.text))
                .unwrap_or_default()
        };
        let d = match &s.kind {
            SinkKind::Kafka { topic, .. } => format!("Sink: kafka topic `{topic}`{}", key("key")),
            SinkKind::File { path } => {
                format!(
                    "Sink: files `{}/part-<job>-<subtask>…jsonl`",
                    path.display()
                )
            }
            SinkKind::Iceberg(i) => {
                let partitions: Vec<String> = i
                    .partition_by
                    .iter()
                    .flatten()
                    .map(|p| format!("{}({})", p.transform.iceberg(), p.column))
                    .collect();
                format!(
                    "Sink: iceberg table `{}` (catalog `{}`){}",
                    i.table_name(),
                    i.catalog,
                    match partitions.is_empty() {
                        true => String::new(),
                        false => format!(", partitioned by {}", partitions.join(", ")),
                    }
                )
            }
            SinkKind::Parquet(p) => {
                let dirs = p
                    .partition_by
                    .as_ref()
                    .map(|t| format!("{}/", t.text))
                    .unwrap_or_default();
                format!(
                    "Sink: parquet files `{}/{dirs}part-<job>-<subtask>…parquet`",
                    p.location.trim_end_matches('/')
                )
            }
            SinkKind::Stdout => "Sink: stdout".to_string(),
            SinkKind::Blackhole => "Sink: blackhole (discards its rows)".to_string(),
            SinkKind::Postgres { table, .. } => {
                format!("Sink: postgres upsert into `{table}`{}", key("by id"))
            }
            SinkKind::Redis(r) => {
                let command = match r.command {
                    crate::spec::RedisCommand::Set => "SET",
                    crate::spec::RedisCommand::Hset => "HSET",
                };
                format!("Sink: redis {command}{}", key("by key"))
            }
            SinkKind::Elasticsearch(es) => {
                format!(
                    "Sink: elasticsearch index `{}`{}",
                    es.index.text,
                    key("by _id")
                )
            }
        };
        let d = match s.changes {
            true => format!("{d}, deletes of a change stream applied"),
            false => d,
        };
        match self.sinks.len() {
            1 => d,
            _ => format!("{d} as `{}`", s.name),
        }
    }

    /// The logical graph: every operator of the plan after its inputs, each plan edge hashed
    /// into a keyed operator and forward otherwise.
    fn logical(&self) -> (Vec<Node>, Vec<LogicalEdge>) {
        let order = self.operators_in_order();
        let nodes: Vec<Node> = order.iter().map(|op| self.node(*op)).collect();
        let position = |op: OperatorKind| order.iter().position(|o| *o == op);
        let edges = self
            .edges
            .iter()
            .filter_map(|e| {
                Some(LogicalEdge {
                    from: position(e.from.op)?,
                    port: e.from.port,
                    to: position(e.to)?,
                    partitioning: match e.to.is_keyed() {
                        true => Partitioning::Hash,
                        false => Partitioning::Forward,
                    },
                })
            })
            .collect();
        (nodes, edges)
    }

    fn node(&self, op: OperatorKind) -> Node {
        let (uid, name, description) = match op {
            OperatorKind::Source(i) => {
                let s = &self.sources[i];
                (s.uid.clone(), s.name.clone(), self.describe_source(i))
            }
            OperatorKind::Steps(i) => {
                let s = &self.stages[i];
                (s.uid.clone(), "steps".to_string(), s.describe())
            }
            OperatorKind::Window(i) => {
                let w = &self.windows[i];
                (w.uid.clone(), w.uid.clone(), self.describe_window(i))
            }
            OperatorKind::Sink(i) => {
                let s = &self.sinks[i];
                (s.uid.clone(), s.name.clone(), self.describe_sink(i))
            }
            OperatorKind::Join(i) => {
                let j = &self.joins[i];
                (j.uid.clone(), j.uid.clone(), j.describe(describe_assigner))
            }
            OperatorKind::Rank(i) => {
                let r = &self.rankings[i];
                (r.uid.clone(), r.uid.clone(), r.describe())
            }
        };
        Node {
            uid,
            name,
            kind: op,
            description,
        }
    }

    /// The schema of the records edge `edge` of `graph` (this plan's graph) carries: what the
    /// operator routing to it emits on that port.
    pub fn edge_schema(&self, graph: &PhysicalGraph, edge: u32) -> Option<SchemaRef> {
        let from = graph.vertex(graph.edge(edge)?.from)?;
        let (op, port) = from.chain.iter().find_map(|op| {
            let port = op
                .outputs
                .iter()
                .position(|routes| routes.contains(&Route::Edge(edge)))?;
            Some((op, port))
        })?;
        self.schema(Output { op: op.kind, port })
    }

    /// The operators and vertices this plan runs as.
    pub fn graph(&self) -> PhysicalGraph {
        let (nodes, logical) = self.logical();
        let p = self.parallelism;
        let mut vertices: Vec<Vertex> = Vec::new();
        let mut edges: Vec<Edge> = Vec::new();
        // (vertex, position in its chain) of each node.
        let mut placed: Vec<(usize, usize)> = Vec::with_capacity(nodes.len());
        for (n, node) in nodes.iter().enumerate() {
            let incoming: Vec<&LogicalEdge> = logical.iter().filter(|e| e.to == n).collect();
            // Every operator runs at the job's parallelism, so a lone forward input chains.
            let chain_into = match incoming.as_slice() {
                [e] if e.partitioning == Partitioning::Forward => Some(e),
                _ => None,
            };
            let op = ChainedOperator {
                uid: node.uid.clone(),
                kind: node.kind,
                outputs: vec![
                    Vec::new();
                    if node.kind.is_keyed() {
                        LATE_PORT + 1
                    } else {
                        1
                    }
                ],
            };
            if let Some(e) = chain_into {
                let (v, pos) = placed[e.from];
                let vertex = &mut vertices[v];
                let me = vertex.chain.len();
                vertex.chain[pos].outputs[e.port].push(Route::Chained(me));
                vertex.chain.push(op);
                vertex.operators.push(node.description.clone());
                placed.push((v, me));
                continue;
            }
            let id = vertices.len() as u32;
            let key_groups = node.kind.is_keyed().then(|| {
                (0..p)
                    .map(|i| {
                        let r = key_group_range(i, self.max_parallelism, p);
                        (*r.start(), *r.end())
                    })
                    .collect()
            });
            let mut inputs = Vec::new();
            for (input, e) in incoming.iter().enumerate() {
                let (v, pos) = placed[e.from];
                let edge = edges.len() as u32;
                let keys = self.partition_keys(node.kind, input);
                let ship_strategy = match (e.partitioning, keys) {
                    (Partitioning::Hash, Some(keys)) => format!(
                        "hash({})",
                        keys.iter()
                            .map(|k| k.text.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    (other, _) => serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                };
                edges.push(Edge {
                    id: edge,
                    from: vertices[v].id,
                    to: id,
                    partitioning: e.partitioning,
                    ship_strategy,
                });
                vertices[v].chain[pos].outputs[e.port].push(Route::Edge(edge));
                inputs.push(edge);
            }
            vertices.push(Vertex {
                id,
                name: node.name.clone(),
                operators: vec![node.description.clone()],
                chain: vec![op],
                parallelism: p,
                key_groups,
                inputs,
            });
            placed.push((vertices.len() - 1, 0));
        }
        PhysicalGraph { vertices, edges }
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
