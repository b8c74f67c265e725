//! The two task loops of a job: a source task (read, watermark, steps, keyed exchange or
//! chained sink) and a window task (align watermarks of its inputs, window, sink).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::max;
use crossbeam_channel::Receiver;
use kappa_job::plan::{EventTimePlan, StepPlan};

use crate::barrier::{Aligned, BarrierAligner};
use crate::channel::{Closed, Inputs, Outputs, SendError};
use crate::element::Element;
use crate::error::TaskError;
use crate::io::{Sink, SourceReader, SourceStatus, SplitBatch, SplitPosition};
use crate::keyed::KeyPartitioner;
use crate::metrics::SubtaskMetrics;
use crate::state::KeyedState;
use crate::steps;
use crate::watermark::{InputWatermarks, SplitWatermarks, WatermarkStatus};
use crate::window::{WindowOperator, event_times};

/// How a task ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    /// All input consumed and results written.
    Finished,
    /// The job was cancelled, or a downstream task stopped (its own error is the cause).
    Cancelled,
}

/// Why a loop stopped early.
enum Stop {
    Cancelled,
    Failed(TaskError),
}

impl From<Closed> for Stop {
    fn from(_: Closed) -> Self {
        Stop::Cancelled
    }
}

impl From<SendError> for Stop {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => Stop::Cancelled,
            SendError::Failed(e) => Stop::Failed(e),
        }
    }
}

impl From<TaskError> for Stop {
    fn from(e: TaskError) -> Self {
        Stop::Failed(e)
    }
}

fn outcome(r: Result<TaskEnd, Stop>) -> Result<TaskEnd, TaskError> {
    match r {
        Ok(end) => Ok(end),
        Err(Stop::Cancelled) => Ok(TaskEnd::Cancelled),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// Where a source task sends its records.
pub enum SourceOutput {
    /// Keyed exchange to the window subtasks.
    Keyed {
        partitioner: KeyPartitioner,
        outputs: Outputs,
    },
    /// No window: the sink is chained in the source task.
    Sink(Box<dyn Sink>),
}

impl SourceOutput {
    fn records(&mut self, batch: RecordBatch) -> Result<(), Stop> {
        match self {
            Self::Keyed {
                partitioner,
                outputs,
            } => {
                for (target, part) in partitioner.split(&batch)? {
                    outputs.send(target, Element::Records(part))?;
                }
            }
            Self::Sink(sink) => sink.write(&batch)?,
        }
        Ok(())
    }

    fn control(&mut self, e: &Element) -> Result<(), Stop> {
        match self {
            Self::Keyed { outputs, .. } => Ok(outputs.broadcast(e)?),
            Self::Sink(_) => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), Stop> {
        match self {
            Self::Keyed { outputs, .. } => {
                outputs.broadcast(&Element::Watermark(i64::MAX))?;
                Ok(outputs.broadcast(&Element::End)?)
            }
            Self::Sink(sink) => Ok(sink.flush()?),
        }
    }
}

/// Acknowledges a source subtask's part of a checkpoint: its positions, and the output of a
/// chained sink waiting to be committed.
pub trait SourceAck: Send {
    fn acknowledge(
        &mut self,
        n: u64,
        positions: Vec<SplitPosition>,
        sink: Option<Vec<u8>>,
    ) -> Result<(), TaskError>;
    /// The newest checkpoint completed since the last call, if any.
    fn completed(&mut self) -> Option<u64>;
}

/// A checkpoint a source subtask is asked to inject a barrier for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    pub checkpoint: u64,
    /// Stop with a drained pipeline: first a final watermark that fires every open window,
    /// then the barrier, then read nothing more (the job is stopped after this checkpoint).
    pub drain: bool,
}

/// How a source subtask takes part in checkpoints.
pub struct SourceCheckpoints {
    /// Checkpoints to inject barriers for, in order.
    pub triggers: Receiver<Trigger>,
    pub acks: Box<dyn SourceAck>,
}

/// Everything a source task needs.
pub struct SourceTask {
    pub reader: Box<dyn SourceReader>,
    pub event_time: Option<EventTimePlan>,
    pub steps: Vec<StepPlan>,
    pub output: SourceOutput,
    pub metrics: Arc<SubtaskMetrics>,
    pub cancel: Arc<AtomicBool>,
    /// Present when the job takes checkpoints.
    pub checkpoints: Option<SourceCheckpoints>,
    /// Drained for a stop: reads nothing more.
    pub drained: bool,
}

const POLL_TIMEOUT: Duration = Duration::from_millis(100);

impl SourceTask {
    /// For each triggered checkpoint: record the positions (everything read so far has been
    /// sent), acknowledge them, and send the barrier after those records.
    fn inject_barriers(&mut self) -> Result<(), Stop> {
        let Some(cp) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        while let Ok(Trigger {
            checkpoint: n,
            drain,
        }) = cp.triggers.try_recv()
        {
            if drain && !self.drained {
                self.drained = true;
                self.metrics.watermark.store(i64::MAX, Ordering::Relaxed);
                self.output.control(&Element::Watermark(i64::MAX))?;
            }
            let positions = self.reader.positions();
            match &mut self.output {
                SourceOutput::Sink(sink) => {
                    let pending = sink.prepare(n)?;
                    cp.acks.acknowledge(n, positions, pending)?;
                }
                output => {
                    cp.acks.acknowledge(n, positions, None)?;
                    output.control(&Element::Barrier(n))?;
                }
            }
        }
        self.commit_completed()
    }

    /// Commits a chained sink's output of the checkpoints completed meanwhile.
    fn commit_completed(&mut self) -> Result<(), Stop> {
        let Some(cp) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        if let (Some(n), SourceOutput::Sink(sink)) = (cp.acks.completed(), &mut self.output) {
            sink.commit(n)?;
        }
        Ok(())
    }

    /// Runs until the input ends, the job is cancelled, or an error.
    pub fn run(mut self) -> Result<TaskEnd, TaskError> {
        // A stop cancels right after its checkpoint completed: commit what it covers.
        let r = match self.run_loop() {
            Ok(TaskEnd::Cancelled) | Err(Stop::Cancelled) => {
                self.commit_completed().map(|()| TaskEnd::Cancelled)
            }
            r => r,
        };
        outcome(r)
    }

    fn run_loop(&mut self) -> Result<TaskEnd, Stop> {
        let mut watermarks = self.event_time.as_ref().map(|et| {
            SplitWatermarks::new(
                self.reader.splits(),
                et.max_out_of_orderness,
                et.idle_timeout,
                Instant::now(),
            )
        });
        let mut idle_sent = false;
        let mut buf: Vec<SplitBatch> = Vec::new();
        let mut finished: Vec<usize> = Vec::new();
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Ok(TaskEnd::Cancelled);
            }
            if self.drained {
                // Waits for the stop; takes part in checkpoints until then.
                std::thread::sleep(POLL_TIMEOUT);
                self.inject_barriers()?;
                continue;
            }
            let status = self.reader.poll(&mut buf, &mut finished, POLL_TIMEOUT)?;
            if let SourceOutput::Sink(sink) = &mut self.output {
                sink.check()?;
            }
            let now = Instant::now();
            if let Some(w) = watermarks.as_mut() {
                // Splits handed over while running (new Kafka partitions) join the watermark.
                while w.len() < self.reader.splits() {
                    w.add_split(now);
                }
            }
            for SplitBatch { split, batch } in buf.drain(..) {
                SubtaskMetrics::add(&self.metrics.records_in, batch.num_rows());
                if let (Some(w), Some(et)) = (watermarks.as_mut(), self.event_time.as_ref())
                    && let Some(m) = max(&event_times(batch.column(et.source_index))?)
                {
                    w.observe(split, m, now);
                }
                let out = steps::apply(&self.steps, batch)?;
                if out.num_rows() > 0 {
                    let rows = out.num_rows();
                    self.output.records(out)?;
                    SubtaskMetrics::add(&self.metrics.records_out, rows);
                }
            }
            if let Some(w) = watermarks.as_mut() {
                for s in finished.drain(..) {
                    w.finish(s);
                }
                if let Some(wm) = w.advance(now) {
                    idle_sent = false;
                    self.metrics.watermark.store(wm, Ordering::Relaxed);
                    self.output.control(&Element::Watermark(wm))?;
                } else if !idle_sent
                    && status == SourceStatus::Running
                    && w.status(now) == WatermarkStatus::Idle
                {
                    idle_sent = true;
                    self.output.control(&Element::Idle)?;
                }
            }
            self.inject_barriers()?;
            if status == SourceStatus::Finished {
                self.metrics.watermark.store(i64::MAX, Ordering::Relaxed);
                self.output.finish()?;
                return Ok(TaskEnd::Finished);
            }
        }
    }
}

/// What a stateful subtask does at a checkpoint, provided by its taskmanager.
pub trait SnapshotHook: Send {
    /// The keyed state the operator writes its changes into.
    fn state(&mut self) -> &mut dyn KeyedState;
    /// The operator's changes are in [`SnapshotHook::state`]: take the snapshot of checkpoint
    /// `n` and acknowledge it with the sink's output waiting to be committed (the upload may go
    /// on after this returns). `alignment` is how long the barriers took to align.
    fn snapshot(
        &mut self,
        n: u64,
        sink: Option<Vec<u8>>,
        alignment: Duration,
    ) -> Result<(), TaskError>;
    /// The newest checkpoint completed since the last call, if any.
    fn completed(&mut self) -> Option<u64>;
}

/// Everything a window task needs.
pub struct WindowTask {
    pub inputs: Inputs,
    pub window: WindowOperator,
    pub sink: Box<dyn Sink>,
    pub metrics: Arc<SubtaskMetrics>,
    /// Present when the job takes checkpoints.
    pub checkpoints: Option<Box<dyn SnapshotHook>>,
}

impl WindowTask {
    /// Runs until every input ended, the job is cancelled, or an error.
    pub fn run(mut self) -> Result<TaskEnd, TaskError> {
        // A stop cancels right after its checkpoint completed: commit what it covers.
        let r = match self.run_loop() {
            Ok(TaskEnd::Cancelled) | Err(Stop::Cancelled) => {
                self.commit_completed().map(|()| TaskEnd::Cancelled)
            }
            r => r,
        };
        outcome(r)
    }

    fn write(&mut self, out: Option<RecordBatch>) -> Result<(), Stop> {
        if let Some(b) = out {
            self.sink.write(&b)?;
            SubtaskMetrics::add(&self.metrics.records_out, b.num_rows());
        }
        Ok(())
    }

    /// Checkpoint n: the sink's output up to the barrier prepared, the window state into the
    /// state backend, then the snapshot taken and acknowledged.
    fn checkpoint(&mut self, n: u64, alignment: Duration) -> Result<(), Stop> {
        let pending = self.sink.prepare(n)?;
        if let Some(hook) = self.checkpoints.as_mut() {
            self.window.snapshot(hook.state()).map_err(|e| {
                TaskError::Io(format!("writing window state for checkpoint {n}: {e}"))
            })?;
            hook.snapshot(n, pending, alignment)?;
        }
        Ok(())
    }

    /// Commits the sink's output of the checkpoints completed meanwhile.
    fn commit_completed(&mut self) -> Result<(), Stop> {
        if let Some(n) = self.checkpoints.as_mut().and_then(|h| h.completed()) {
            self.sink.commit(n)?;
        }
        Ok(())
    }

    fn run_loop(&mut self) -> Result<TaskEnd, Stop> {
        let mut watermarks = InputWatermarks::new(self.inputs.upstreams);
        let mut aligner = BarrierAligner::new(self.inputs.upstreams);
        loop {
            self.commit_completed()?;
            let (from, element) = match aligner.next(&self.inputs)? {
                None => {
                    self.sink.check()?;
                    continue;
                }
                Some(Aligned::Checkpoint(n, alignment)) => {
                    self.checkpoint(n, alignment)?;
                    continue;
                }
                Some(Aligned::Element(from, element)) => (from, element),
            };
            let advanced = match element {
                Element::Records(batch) => {
                    SubtaskMetrics::add(&self.metrics.records_in, batch.num_rows());
                    let updates = self.window.process(&batch)?;
                    SubtaskMetrics::add(&self.metrics.late_dropped, self.window.take_late());
                    self.write(updates)?;
                    None
                }
                Element::Watermark(w) => watermarks.on_watermark(from, w),
                Element::Idle => watermarks.on_idle(from),
                Element::End => watermarks.on_end(from),
                // The aligner consumes barriers.
                Element::Barrier(_) => None,
            };
            if let Some(wm) = advanced {
                self.metrics.watermark.store(wm, Ordering::Relaxed);
                let fired = self.window.advance(wm)?;
                self.write(fired)?;
            }
            if watermarks.all_ended() {
                self.sink.flush()?;
                return Ok(TaskEnd::Finished);
            }
        }
    }
}
