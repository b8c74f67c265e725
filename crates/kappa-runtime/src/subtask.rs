//! The one task loop: a subtask runs an operator chain whose head is either a source (polled)
//! or fed by input channels from any number of upstream subtasks over any number of edges.
//! It merges the inputs, keeps the watermark at the minimum over its non-idle inputs, aligns
//! checkpoint barriers over all of them, and forwards records, watermarks, idleness, barriers
//! and the end of input through the chain and over its outgoing edges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::barrier::{Aligned, BarrierAligner};
use crate::chain::Chain;
use crate::channel::{Closed, Inputs, SendError};
use crate::element::Element;
use crate::error::TaskError;
use crate::latency::Origin;
use crate::metrics::SubtaskMetrics;
use crate::operator::{OperatorSnapshot, Polled, Progress};
use crate::state::KeyedState;
use crate::watermark::InputWatermarks;

/// How a subtask ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    /// All input consumed and results written.
    Finished,
    /// The job was cancelled, or a downstream subtask stopped (its own error is the cause).
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

/// A checkpoint a source subtask is asked to inject a barrier for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    pub checkpoint: u64,
    /// Stop with a drained pipeline: first a final watermark that fires every open window,
    /// then the barrier, then read nothing more (the job is stopped after this checkpoint).
    pub drain: bool,
}

/// What a subtask does at a checkpoint beyond its operators, provided by its taskmanager.
pub trait CheckpointHook: Send {
    /// The keyed state operator `op` of the chain writes its snapshot into, if it keeps any.
    fn state(&mut self, op: usize) -> Option<&mut dyn KeyedState>;
    /// The operators' parts of checkpoint `n` (in chain order) are taken: persist and
    /// acknowledge them (the upload may go on after this returns). `alignment` is how long
    /// the barriers took to align.
    fn acknowledge(
        &mut self,
        n: u64,
        parts: Vec<OperatorSnapshot>,
        alignment: Duration,
    ) -> Result<(), TaskError>;
    /// The newest checkpoint completed since the last call, if any.
    fn completed(&mut self) -> Option<u64>;
}

/// Where the head of the chain gets its records.
pub enum Head {
    /// The first operator is a source; checkpoints are triggered here.
    Source { triggers: Option<Receiver<Trigger>> },
    /// Input channels; `inputs[c]` is the input (edge) of channel `c` for the first operator.
    Channels {
        channels: Inputs,
        inputs: Vec<usize>,
    },
}

/// Everything a subtask needs.
pub struct Subtask {
    pub head: Head,
    pub chain: Chain,
    pub metrics: Arc<SubtaskMetrics>,
    pub cancel: Arc<AtomicBool>,
    /// Whether the job is catching up with its sources (set by the jobmanager).
    pub catching_up: Arc<AtomicBool>,
    /// Present when the job takes checkpoints.
    pub checkpoints: Option<Box<dyn CheckpointHook>>,
}

const POLL_TIMEOUT: Duration = Duration::from_millis(100);

impl Subtask {
    /// Runs until the input ends, the job is cancelled, or an error.
    pub fn run(self) -> Result<TaskEnd, TaskError> {
        let Subtask {
            head,
            chain,
            metrics,
            cancel,
            catching_up,
            checkpoints,
        } = self;
        let mut runner = Runner {
            chain,
            metrics,
            cancel,
            catching_up: (catching_up, false),
            checkpoints,
        };
        let r = match head {
            Head::Source { triggers } => runner.run_source(triggers.as_ref()),
            Head::Channels { channels, inputs } => runner.run_channels(&channels, &inputs),
        };
        // A stop cancels right after its checkpoint completed: commit what it covers.
        let r = match r {
            Err(Stop::Cancelled) => runner.commit_completed().map(|()| TaskEnd::Cancelled),
            r => r,
        };
        match r {
            Ok(end) => Ok(end),
            Err(Stop::Cancelled) => Ok(TaskEnd::Cancelled),
            Err(Stop::Failed(e)) => Err(e),
        }
    }
}

/// A subtask while it runs: its chain and what the loops share.
struct Runner {
    chain: Chain,
    metrics: Arc<SubtaskMetrics>,
    cancel: Arc<AtomicBool>,
    /// The job's catching-up flag, and what the operators were last told.
    catching_up: (Arc<AtomicBool>, bool),
    checkpoints: Option<Box<dyn CheckpointHook>>,
}

impl Runner {
    /// Tells the operators when the job started or stopped catching up.
    fn follow_mode(&mut self) -> Result<(), Stop> {
        let (flag, told) = &mut self.catching_up;
        let now = flag.load(Ordering::Relaxed);
        if now != *told {
            *told = now;
            self.chain.catching_up(now)?;
        }
        Ok(())
    }

    /// Tells the operators of the checkpoints completed meanwhile.
    fn commit_completed(&mut self) -> Result<(), Stop> {
        if let Some(n) = self.checkpoints.as_mut().and_then(|h| h.completed()) {
            // Tests fail a subtask here, once its checkpoint is durable (FAILPOINTS).
            fail::fail_point!("subtask-checkpoint-completed", |_| Err(Stop::Failed(
                TaskError::Io(format!("failpoint: failing after checkpoint {n} completed"))
            )));
            self.chain.notify_checkpoint_complete(n)?;
        }
        Ok(())
    }

    /// Checkpoint n: every operator's part taken and acknowledged, then the barrier goes on.
    fn checkpoint(&mut self, n: u64, alignment: Duration) -> Result<(), Stop> {
        if let Some(hook) = self.checkpoints.as_mut() {
            self.chain.flush()?;
            let parts = self.chain.snapshot(n, hook.as_mut())?;
            hook.acknowledge(n, parts, alignment)?;
        }
        Ok(self.chain.broadcast(&Element::Barrier(n))?)
    }

    /// The watermark advanced; what it fires counts its latency from the current origin.
    fn watermark(&mut self, wm: i64) -> Result<(), Stop> {
        self.metrics.watermark.store(wm, Ordering::Relaxed);
        Ok(self.chain.push_watermark(0, wm)?)
    }

    /// The input ended: the final watermark (its origin: now), every operator finishes, the
    /// end goes on.
    fn end(&mut self) -> Result<TaskEnd, Stop> {
        self.metrics.set_origin(Origin::now());
        self.watermark(i64::MAX)?;
        self.chain.finish()?;
        self.chain.broadcast(&Element::End)?;
        Ok(TaskEnd::Finished)
    }

    fn run_source(&mut self, triggers: Option<&Receiver<Trigger>>) -> Result<TaskEnd, Stop> {
        let mut drained = false;
        let mut idle_sent = false;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Stop::Cancelled);
            }
            self.commit_completed()?;
            self.follow_mode()?;
            let polled = if drained {
                // Waits for the stop; takes part in checkpoints until then.
                std::thread::sleep(POLL_TIMEOUT);
                Polled::default()
            } else {
                let p = self.chain.poll(POLL_TIMEOUT)?;
                self.chain.check()?;
                p
            };
            match polled.progress {
                Some(Progress::Watermark(wm)) => {
                    idle_sent = false;
                    self.watermark(wm)?;
                }
                Some(Progress::Idle) if !idle_sent => {
                    idle_sent = true;
                    self.chain.broadcast(&Element::Idle)?;
                }
                _ => {}
            }
            while let Some(t) = triggers.and_then(|t| t.try_recv().ok()) {
                if t.drain && !drained {
                    drained = true;
                    self.metrics.set_origin(Origin::now());
                    self.watermark(i64::MAX)?;
                }
                self.checkpoint(t.checkpoint, Duration::ZERO)?;
            }
            if polled.finished {
                return self.end();
            }
        }
    }

    fn run_channels(&mut self, channels: &Inputs, inputs: &[usize]) -> Result<TaskEnd, Stop> {
        let mut watermarks = InputWatermarks::new(channels.upstreams);
        let mut aligner = BarrierAligner::new(channels.upstreams);
        let mut idle_sent = false;
        loop {
            self.commit_completed()?;
            self.follow_mode()?;
            let (from, element) = match aligner.next(channels)? {
                None => {
                    self.chain.check()?;
                    continue;
                }
                Some(Aligned::Checkpoint(n, alignment)) => {
                    self.checkpoint(n, alignment)?;
                    continue;
                }
                Some(Aligned::Element(from, element)) => (from, element),
            };
            // A watermark advanced by another input's idleness or end fires now: its
            // origin is the moment this subtask learnt it.
            let advanced = match element {
                Element::Records(batch, origin) => {
                    SubtaskMetrics::add(&self.metrics.records_in, batch.num_rows());
                    let input = inputs.get(from as usize).copied().unwrap_or(0);
                    self.metrics.set_origin(origin);
                    self.chain.push_batch(0, input, batch)?;
                    None
                }
                Element::Watermark(w, origin) => {
                    self.metrics.set_origin(origin);
                    watermarks.on_watermark(from, w)
                }
                Element::Idle => {
                    self.metrics.set_origin(Origin::now());
                    watermarks.on_idle(from)
                }
                Element::End => {
                    self.metrics.set_origin(Origin::now());
                    watermarks.on_end(from)
                }
                // The aligner consumes barriers.
                Element::Barrier(_) => None,
            };
            if watermarks.all_ended() {
                return self.end();
            }
            if let Some(wm) = advanced {
                idle_sent = false;
                self.watermark(wm)?;
            } else if !idle_sent && watermarks.all_idle() {
                idle_sent = true;
                self.chain.broadcast(&Element::Idle)?;
            }
        }
    }
}
