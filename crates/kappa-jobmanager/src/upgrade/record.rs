//! An upgrade's record, as the store keeps it and the REST API shows it: its phase, the jobs
//! and savepoints of its run, its history.

use serde::{Deserialize, Serialize};

use super::plan::ShadowSink;

/// Where an upgrade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Creating the shadow sinks and submitting v2 into them.
    Starting,
    /// v2 recomputes history into the shadows beside v1.
    Shadowing,
    /// v2 has caught up with v1: the diff is ready; waiting for the cut-over.
    CaughtUp,
    /// v1 is being stopped with a savepoint.
    StoppingV1,
    /// v1 stopped: v2 reaches v1's last watermark.
    AligningV2,
    /// v2 is being stopped with a savepoint.
    StoppingV2,
    /// The live sinks take the shadows' content.
    Swapping,
    /// v2 starts from its savepoint into the live sinks.
    StartingLive,
    Done,
    /// The shadow job is cancelled, v1 restarted if it was stopped, the shadows dropped.
    Aborting,
    Aborted,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Aborted)
    }

    /// Whether an abort still leaves the live sinks as v1 wrote them.
    pub(super) fn abortable(self) -> bool {
        !matches!(
            self,
            Self::Swapping | Self::StartingLive | Self::Done | Self::Aborting | Self::Aborted
        )
    }

    /// Whether the cut-over stopped v1 (an abort restarts it).
    pub(super) fn v1_stopped(self) -> bool {
        matches!(self, Self::StoppingV1 | Self::AligningV2 | Self::StoppingV2)
    }
}

/// An upgrade, or an audit (v1 against its own logic, never cut over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Upgrade,
    Audit,
}

/// One line of an upgrade's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryLine {
    pub at_ms: i64,
    pub phase: Phase,
    pub note: String,
}

/// Everything an upgrade knows; its record in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpgradeRecord {
    pub id: String,
    pub kind: Kind,
    pub phase: Phase,
    /// The running job being replaced (v1).
    pub v1_job: String,
    pub shadows: Vec<ShadowSink>,
    /// Whether the cut-over deletes what only v1 wrote (false when v2 could not recompute
    /// all of v1's history: the topic no longer holds it).
    pub delete_vanished: bool,
    /// Cut over as soon as v2 caught up.
    pub auto_cutover: bool,
    /// Nothing v1 computes changed and its state fits v2: no shadows, no replay; the cut-over
    /// stops v1 with a savepoint and starts v2 from it.
    #[serde(default)]
    pub from_savepoint: bool,
    /// With `from_savepoint`, v2's file (no shadow job keeps it): its name, its text with
    /// literal secrets redacted, and those sealed with the jobmanagers' key.
    #[serde(default)]
    pub v2_file: Option<StoredFile>,
    /// v2 writing into the shadows.
    pub shadow_job: Option<String>,
    /// v2 writing into the live sinks, after the cut-over.
    pub live_job: Option<String>,
    /// v1 restarted by an abort after the cut-over had stopped it.
    pub v1_restarted_as: Option<String>,
    pub v1_savepoint: Option<String>,
    /// The savepoint v2 continues from into the live sinks (v1's with `from_savepoint`).
    pub v2_savepoint: Option<String>,
    /// v1's watermark when it stopped: v2 passes it before it stops.
    pub v1_watermark: Option<i64>,
    pub started_at_ms: i64,
    pub caught_up_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// Why it was aborted.
    pub reason: Option<String>,
    /// The latest failed step and why (it is tried again, or the upgrade aborts).
    pub error: Option<String>,
    pub history: Vec<HistoryLine>,
}

/// A job file kept in a record as a job's is: redacted, its literal secrets sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredFile {
    pub name: String,
    pub shown: String,
    pub sealed: Option<String>,
}

impl UpgradeRecord {
    /// A new upgrade of job `v1_job` into `shadows`, starting at `started_at_ms`.
    pub fn new(
        id: String,
        kind: Kind,
        v1_job: String,
        shadows: Vec<ShadowSink>,
        started_at_ms: i64,
    ) -> Self {
        Self {
            id,
            kind,
            phase: Phase::Starting,
            v1_job,
            shadows,
            delete_vanished: true,
            auto_cutover: false,
            from_savepoint: false,
            v2_file: None,
            shadow_job: None,
            live_job: None,
            v1_restarted_as: None,
            v1_savepoint: None,
            v2_savepoint: None,
            v1_watermark: None,
            started_at_ms,
            caught_up_at_ms: None,
            ended_at_ms: None,
            reason: None,
            error: None,
            history: Vec::new(),
        }
    }
}

pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Starting => "STARTING",
        Phase::Shadowing => "SHADOWING",
        Phase::CaughtUp => "CAUGHT_UP",
        Phase::StoppingV1 => "STOPPING_V1",
        Phase::AligningV2 => "ALIGNING_V2",
        Phase::StoppingV2 => "STOPPING_V2",
        Phase::Swapping => "SWAPPING",
        Phase::StartingLive => "STARTING_LIVE",
        Phase::Done => "DONE",
        Phase::Aborting => "ABORTING",
        Phase::Aborted => "ABORTED",
    }
}
