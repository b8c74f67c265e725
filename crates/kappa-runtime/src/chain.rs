//! A chain of operators run by one subtask: batches emitted on an operator's output port go
//! to the chained operators of that port (a direct call, no serialisation) and out over the
//! port's edges (partitioned); watermarks follow the same routes after each operator saw them.
//! What goes out over an edge carries the origin of what the subtask is processing (see
//! [`crate::latency`]).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use kappa_job::graph::Route;

use crate::channel::{Outputs, SendError};
use crate::element::Element;
use crate::error::TaskError;
use crate::keyed::KeyPartitioner;
use crate::latency::Origin;
use crate::metrics::SubtaskMetrics;
use crate::operator::{Operator, OperatorSnapshot, Output, Polled};
use crate::subtask::CheckpointHook;

/// How an edge distributes records over its downstream subtasks.
pub enum Partitioner {
    /// To the one downstream subtask of the same index (the only target of its `Outputs`).
    Forward,
    /// By key group.
    Hash(KeyPartitioner),
    /// Round-robin, starting at this subtask's index.
    Rebalance {
        next: usize,
    },
    Broadcast,
}

/// One outgoing edge of the subtask.
pub struct EdgeOutput {
    pub partitioner: Partitioner,
    pub outputs: Outputs,
}

impl EdgeOutput {
    fn records(&mut self, batch: RecordBatch, origin: Origin) -> Result<(), SendError> {
        match &mut self.partitioner {
            Partitioner::Forward => self.outputs.send(0, Element::Records(batch, origin)),
            Partitioner::Hash(p) => {
                for (target, part) in p.split(&batch).map_err(SendError::Failed)? {
                    self.outputs.send(target, Element::Records(part, origin))?;
                }
                Ok(())
            }
            Partitioner::Rebalance { next } => {
                let target = *next % self.outputs.len().max(1);
                *next = target + 1;
                self.outputs.send(target, Element::Records(batch, origin))
            }
            Partitioner::Broadcast => self.outputs.broadcast(&Element::Records(batch, origin)),
        }
    }
}

/// The operators of a subtask with their routes, and the subtask's outgoing edges.
pub struct Chain {
    ops: Vec<Box<dyn Operator>>,
    /// Per operator, per output port: where its batches go.
    routes: Vec<Vec<Vec<Route>>>,
    /// Outgoing edges, by edge id.
    edges: Vec<(u32, EdgeOutput)>,
    metrics: Arc<SubtaskMetrics>,
}

/// Why pushing through the chain stopped.
pub type ChainResult = Result<(), SendError>;

impl Chain {
    /// `routes[i][port]` lists where output `port` of `ops[i]` goes; chained targets come
    /// later in `ops` (topological order). Edge routes must name an edge of `edges`.
    pub fn new(
        ops: Vec<Box<dyn Operator>>,
        routes: Vec<Vec<Vec<Route>>>,
        edges: Vec<(u32, EdgeOutput)>,
        metrics: Arc<SubtaskMetrics>,
    ) -> Result<Self, TaskError> {
        if ops.is_empty() || routes.len() != ops.len() {
            return Err(TaskError::Data("an operator chain needs its routes".into()));
        }
        for (i, ports) in routes.iter().enumerate() {
            for r in ports.iter().flatten() {
                let ok = match r {
                    Route::Chained(j) => *j > i && *j < ops.len(),
                    Route::Edge(e) => edges.iter().any(|(id, _)| id == e),
                };
                if !ok {
                    return Err(TaskError::Data(format!(
                        "operator {i} of the chain routes to {r:?}, which is not downstream of it"
                    )));
                }
            }
        }
        Ok(Self {
            ops,
            routes,
            edges,
            metrics,
        })
    }

    fn edge(&mut self, id: u32) -> Result<&mut EdgeOutput, SendError> {
        self.edges
            .iter_mut()
            .find(|(e, _)| *e == id)
            .map(|(_, o)| o)
            .ok_or_else(|| SendError::Failed(TaskError::Data(format!("no edge {id}"))))
    }

    /// Hands what operator `op` emitted to its routes.
    fn route(&mut self, op: usize, out: &mut Output) -> ChainResult {
        for (port, batch) in out.take() {
            let targets = self.routes[op].get(port).map_or(0, Vec::len);
            for k in 0..targets {
                match self.routes[op][port][k] {
                    Route::Chained(j) => self.push_batch(j, 0, batch.clone())?,
                    Route::Edge(e) => {
                        SubtaskMetrics::add(&self.metrics.records_out, batch.num_rows());
                        let origin = self.metrics.origin();
                        self.edge(e)?.records(batch.clone(), origin)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Records for input `input` of operator `op`.
    pub fn push_batch(&mut self, op: usize, input: usize, batch: RecordBatch) -> ChainResult {
        let mut out = Output::default();
        self.ops[op]
            .process_batch(input, batch, &mut out)
            .map_err(SendError::Failed)?;
        self.route(op, &mut out)
    }

    /// The watermark reached operator `op`: it processes it, then every route gets it.
    pub fn push_watermark(&mut self, op: usize, watermark: i64) -> ChainResult {
        let mut out = Output::default();
        self.ops[op]
            .process_watermark(watermark, &mut out)
            .map_err(SendError::Failed)?;
        self.route(op, &mut out)?;
        self.drain(op)?;
        for port in 0..self.routes[op].len() {
            for k in 0..self.routes[op][port].len() {
                match self.routes[op][port][k] {
                    Route::Chained(j) => self.push_watermark(j, watermark)?,
                    Route::Edge(e) => {
                        let origin = self.metrics.origin();
                        self.edge(e)?
                            .outputs
                            .broadcast(&Element::Watermark(watermark, origin))?
                    }
                }
            }
        }
        Ok(())
    }

    /// Polls the source at the head of the chain and pushes what it read.
    pub fn poll(&mut self, timeout: Duration) -> Result<Polled, SendError> {
        let mut out = Output::default();
        let polled = self.ops[0]
            .poll(&mut out, timeout)
            .map_err(SendError::Failed)?;
        self.route(0, &mut out)?;
        Ok(polled)
    }

    /// Sends a control element (idleness, barrier, end) over every outgoing edge.
    pub fn broadcast(&mut self, element: &Element) -> ChainResult {
        for (_, e) in &mut self.edges {
            e.outputs.broadcast(element)?;
        }
        Ok(())
    }

    /// Every operator's part of checkpoint `n`, in chain order; keyed operators get their
    /// state from `state`.
    pub fn snapshot(
        &mut self,
        n: u64,
        hook: &mut dyn CheckpointHook,
    ) -> Result<Vec<OperatorSnapshot>, TaskError> {
        let mut parts = Vec::with_capacity(self.ops.len());
        for (i, op) in self.ops.iter_mut().enumerate() {
            parts.push(op.snapshot(n, hook.state(i))?);
        }
        Ok(parts)
    }

    /// Every operator finishes in chain order, so what one emits reaches the next before it
    /// finishes itself.
    pub fn finish(&mut self) -> ChainResult {
        self.each(|op, out| op.finish(out))
    }

    /// Every operator learns that the job started or stopped catching up, in chain order.
    pub fn catching_up(&mut self, on: bool) -> ChainResult {
        self.each(|op, out| op.catching_up(on, out))
    }

    /// Every operator emits what it held back, in chain order (a barrier follows).
    pub fn flush(&mut self) -> ChainResult {
        self.each(|op, out| op.flush(out))
    }

    /// Calls `f` on every operator in chain order, so what one emits reaches the next
    /// before `f` is called on it.
    fn each(
        &mut self,
        f: impl Fn(&mut dyn Operator, &mut Output) -> Result<(), TaskError>,
    ) -> ChainResult {
        for i in 0..self.ops.len() {
            let mut out = Output::default();
            f(self.ops[i].as_mut(), &mut out).map_err(SendError::Failed)?;
            self.route(i, &mut out)?;
            self.drain(i)?;
        }
        Ok(())
    }

    /// Hands on what operator `op` has left to emit, a part at a time.
    fn drain(&mut self, op: usize) -> ChainResult {
        loop {
            let mut out = Output::default();
            let more = self.ops[op]
                .more_output(&mut out)
                .map_err(SendError::Failed)?;
            self.route(op, &mut out)?;
            if !more {
                return Ok(());
            }
        }
    }

    pub fn notify_checkpoint_complete(&mut self, n: u64) -> Result<(), TaskError> {
        self.ops
            .iter_mut()
            .try_for_each(|op| op.notify_checkpoint_complete(n))
    }

    pub fn check(&mut self) -> Result<(), TaskError> {
        self.ops.iter_mut().try_for_each(|op| op.check())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use parking_lot::Mutex;

    type Log = Arc<Mutex<Vec<String>>>;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    /// Even numbers on port 0, odd ones on port 1.
    struct Split;

    impl Operator for Split {
        fn process_batch(
            &mut self,
            _: usize,
            b: RecordBatch,
            out: &mut Output,
        ) -> Result<(), TaskError> {
            let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let (even, odd): (Vec<i64>, Vec<i64>) = n.values().iter().partition(|v| *v % 2 == 0);
            out.emit(0, batch(&even));
            out.emit(1, batch(&odd));
            Ok(())
        }
    }

    /// Logs what reaches it.
    struct Record(&'static str, Log);

    impl Operator for Record {
        fn process_batch(
            &mut self,
            _: usize,
            b: RecordBatch,
            _: &mut Output,
        ) -> Result<(), TaskError> {
            let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            self.1
                .lock()
                .push(format!("{} {:?}", self.0, n.values().to_vec()));
            Ok(())
        }

        fn process_watermark(&mut self, w: i64, _: &mut Output) -> Result<(), TaskError> {
            self.1.lock().push(format!("{} w{w}", self.0));
            Ok(())
        }

        fn finish(&mut self, _: &mut Output) -> Result<(), TaskError> {
            self.1.lock().push(format!("{} end", self.0));
            Ok(())
        }
    }

    #[test]
    fn ports_fan_out_to_their_routes_and_watermarks_and_the_end_reach_every_operator() {
        let log = Log::default();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Split),
            Box::new(Record("a", Arc::clone(&log))),
            Box::new(Record("b", Arc::clone(&log))),
            Box::new(Record("late", Arc::clone(&log))),
        ];
        let routes = vec![
            vec![
                vec![Route::Chained(1), Route::Chained(2)],
                vec![Route::Chained(3)],
            ],
            vec![vec![]],
            vec![vec![]],
            vec![vec![]],
        ];
        let mut chain = Chain::new(ops, routes, Vec::new(), Arc::default()).unwrap();
        chain.push_batch(0, 0, batch(&[1, 2, 3, 4])).unwrap();
        chain.push_watermark(0, 7).unwrap();
        chain.finish().unwrap();
        assert_eq!(
            *log.lock(),
            [
                "a [2, 4]",
                "b [2, 4]",
                "late [1, 3]",
                "a w7",
                "b w7",
                "late w7",
                "a end",
                "b end",
                "late end"
            ]
        );
    }

    #[test]
    fn routes_must_go_downstream_and_to_known_edges() {
        let ops = || -> Vec<Box<dyn Operator>> { vec![Box::new(Split), Box::new(Split)] };
        let back = vec![vec![vec![]], vec![vec![Route::Chained(0)]]];
        assert!(Chain::new(ops(), back, Vec::new(), Arc::default()).is_err());
        let unknown_edge = vec![vec![vec![Route::Edge(3)]], vec![vec![]]];
        assert!(Chain::new(ops(), unknown_edge, Vec::new(), Arc::default()).is_err());
        assert!(Chain::new(Vec::new(), Vec::new(), Vec::new(), Arc::default()).is_err());
    }
}
