//! What the upgrade machine ([`super::machine`]) takes in (observations of the jobs, step
//! outcomes, a jobmanager taking over, users' requests) and gives out (steps for the shell to
//! carry out, records to persist, diffs to compute).

/// Which job a step is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    V1,
    Shadow,
}

/// What the shell carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    CreateShadows,
    SubmitShadow,
    /// A savepoint, then cancel. Of a job that already ended: the savepoint it left in the
    /// upgrade's directory.
    Stop(Which),
    Swap,
    /// v2 into the live sinks from its savepoint.
    SubmitLive {
        savepoint: String,
    },
    /// Cancels the shadow job if it runs (one of this upgrade that the record does not name
    /// yet included).
    CancelShadow,
    /// v1 from the savepoint the cut-over took.
    RestartV1 {
        savepoint: String,
    },
    DropShadows,
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Nothing,
    /// The job a submission started.
    Job(String),
    /// The savepoint a stop took.
    Savepoint(String),
    /// What the step did, for the history.
    Note(String),
}

/// Why a step failed; `retryable`: trying again later may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub message: String,
    pub retryable: bool,
}

/// A job as seen at one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobSeen {
    /// RUNNING, FAILED…
    pub state: String,
    pub terminal: bool,
    /// The lowest watermark of its vertices, when every vertex has one.
    pub watermark: Option<i64>,
    /// Whether it is catching up with its Kafka sources (None: not known yet).
    pub catching_up: Option<bool>,
    /// Records its Kafka sources have not read.
    pub lag: Option<u64>,
    /// Records its Kafka sources read per second lately.
    pub read_per_second: f64,
    /// Its latest completed checkpoint, when it takes checkpoints periodically (Some(0)
    /// before the first); None when it does not.
    pub checkpoint: Option<u64>,
}

/// The jobs at one tick (None: the jobmanager does not know the job).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub v1: Option<JobSeen>,
    pub shadow: Option<JobSeen>,
}

/// What arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The jobs now; `now_ms` also paces retries.
    Tick { seen: Seen, now_ms: i64 },
    StepDone {
        step: Step,
        outcome: Result<Output, StepError>,
        now_ms: i64,
    },
    /// A jobmanager took the upgrade over from its record.
    Resumed { now_ms: i64 },
}

/// What a user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Cutover { now_ms: i64 },
    Abort { why: String, now_ms: i64 },
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Step),
    /// Write the record (its phase or what it knows changed).
    Persist,
    /// Compare the live sinks with the shadows (v2 caught up).
    Diff,
}

/// A request the upgrade refuses in its phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// How long a failed step waits before it is tried again.
pub const RETRY_AFTER_MS: i64 = 5_000;
