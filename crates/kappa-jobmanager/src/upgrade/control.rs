//! Starting, following, cutting over and aborting upgrades and audits: what the REST API and
//! kappactl call.

use std::sync::Arc;

use serde::Serialize;

use super::diff::{RowChange, SinkDiff};
use super::driver::{DiffView, UpgradeHandle, compare};
use super::dry_run::UpgradeError;
use super::protocol::{Refused, Request};
use super::record::{Kind, Phase, StoredFile, UpgradeRecord, phase_name};
use crate::JobManager;
use crate::SubmitError;
use crate::job::now_ms;

/// How the shadow job is doing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowProgress {
    pub catching_up: bool,
    /// Records its sources have not read.
    pub lag: u64,
    pub read_per_second: f64,
    /// Until it has caught up, when it is catching up.
    pub eta_ms: Option<u64>,
}

/// An upgrade as the REST API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpgradeView {
    #[serde(flatten)]
    pub record: UpgradeRecord,
    pub progress: Option<ShadowProgress>,
    /// The latest comparison of the live sinks with the shadows (from when v2 caught up,
    /// or the latest asked for).
    pub diff: Option<DiffView>,
}

/// Why a request about an upgrade was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeRequestError {
    #[error("no upgrade {0}")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Comparing the sinks failed; `retryable`: a retry may help.
    #[error("comparing the sinks: {message}")]
    Diff { message: String, retryable: bool },
}

/// How an upgrade starts.
#[derive(Debug, Clone, Copy)]
pub struct StartOptions {
    pub kind: Kind,
    /// Cut over as soon as v2 caught up.
    pub auto_cutover: bool,
}

impl JobManager {
    /// Starts upgrading job `id` to the file `text` (an audit: to its own file): plans it,
    /// refuses what the plan refuses, and starts v2 into the shadows.
    pub async fn start_upgrade(
        &self,
        id: &str,
        file_name: &str,
        text: Option<&str>,
        options: StartOptions,
    ) -> Result<UpgradeView, UpgradeError> {
        let v1 = self
            .job(id)
            .ok_or_else(|| UpgradeError::NotFound(id.to_string()))?;
        let (file_name, text) = match text {
            Some(t) => (file_name.to_string(), t.to_string()),
            None => (v1.file_name.clone(), v1.text.deployed().to_string()),
        };
        // An audit of the same job again is another audit, with shadows of its own.
        let run_id = (options.kind == Kind::Audit)
            .then(|| format!("a{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let (run_id, plan) = self.planned(id, &file_name, &text, run_id).await?;
        let mut refusals = plan.refusals.clone();
        if options.kind == Kind::Upgrade && self.inner.config.checkpoint_dir.is_none() {
            refusals.push("the cluster has no checkpoint directory: a cut-over stops both versions with savepoints".into());
        }
        let active = self.inner.upgrades.read().values().any(|u| {
            let r = u.machine.lock();
            r.record.v1_job == id && !r.record.phase.is_terminal()
        });
        if active {
            refusals.push(format!("job {id} is being upgraded or audited already"));
        }
        if !refusals.is_empty() {
            return Err(UpgradeError::Refused(refusals));
        }
        // With nothing to recompute, v2 starts from a savepoint of v1: no shadows.
        let from_savepoint = plan.start.from_savepoint && options.kind == Kind::Upgrade;
        let shadows = match from_savepoint {
            true => Vec::new(),
            false => plan.shadows,
        };
        let mut record =
            UpgradeRecord::new(run_id, options.kind, id.to_string(), shadows, now_ms());
        record.delete_vanished = plan.history_complete;
        record.auto_cutover = options.auto_cutover;
        if from_savepoint {
            record.from_savepoint = true;
            let key = self.inner.config.secret_key.as_deref();
            let kept = crate::job_text::JobText::submitted(&record.id, &file_name, &text, key)
                .map_err(SubmitError::from)?;
            record.v2_file = Some(StoredFile {
                name: file_name.clone(),
                shown: kept.shown,
                sealed: kept.sealed,
            });
        }
        self.inner
            .store
            .put(&record)
            .await
            .map_err(UpgradeError::Store)?;
        tracing::info!(upgrade = %record.id, job = %id, kind = ?options.kind, "upgrade started");
        let handle = self.inner.spawn_upgrade(record, Some((file_name, text)));
        Ok(self.view(&handle))
    }

    /// Every upgrade this jobmanager knows, oldest first.
    pub fn upgrades(&self) -> Vec<UpgradeView> {
        let mut all: Vec<UpgradeView> = self
            .inner
            .upgrades
            .read()
            .values()
            .map(|h| self.view(h))
            .collect();
        all.sort_by_key(|u| u.record.started_at_ms);
        all
    }

    pub fn upgrade(&self, id: &str) -> Option<UpgradeView> {
        self.inner.upgrades.read().get(id).map(|h| self.view(h))
    }

    /// Cuts the upgrade over, or aborts it.
    pub fn upgrade_request(
        &self,
        id: &str,
        request: Request,
    ) -> Result<UpgradeView, UpgradeRequestError> {
        let handle = self.handle(id)?;
        let commands = handle.machine.lock().request(request)?;
        handle.send(commands);
        Ok(self.view(&handle))
    }

    /// Compares the live sinks with the shadows now: the summary per sink, and every row
    /// that differs.
    pub async fn upgrade_diff(
        &self,
        id: &str,
    ) -> Result<(Vec<SinkDiff>, Vec<RowChange>), UpgradeRequestError> {
        let handle = self.handle(id)?;
        let record = handle.record();
        if !matches!(
            record.phase,
            Phase::Shadowing | Phase::CaughtUp | Phase::StoppingV1 | Phase::AligningV2
        ) {
            return Err(UpgradeRequestError::Refused(Refused(format!(
                "the upgrade is {}: there are shadows to compare only while v2 runs beside v1",
                phase_name(record.phase)
            ))));
        }
        let mut rows = Vec::new();
        let sinks = compare(&self.inner, &record, |c| rows.push(c.clone()))
            .await
            .map_err(|e| UpgradeRequestError::Diff {
                message: e.message,
                retryable: e.retryable,
            })?;
        // The summary shown with the status follows the latest comparison.
        *handle.diff.lock() = Some(DiffView {
            computed_at_ms: now_ms(),
            sinks: sinks.clone(),
            error: None,
        });
        Ok((sinks, rows))
    }

    fn handle(&self, id: &str) -> Result<Arc<UpgradeHandle>, UpgradeRequestError> {
        self.inner
            .upgrades
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| UpgradeRequestError::NotFound(id.to_string()))
    }

    fn view(&self, handle: &UpgradeHandle) -> UpgradeView {
        let record = handle.record();
        let progress = record
            .shadow_job
            .as_deref()
            .and_then(|id| self.job(id))
            .filter(|j| !j.state().is_terminal())
            .and_then(|j| j.catch_up.lock().as_ref().map(|c| c.status()))
            .map(|s| ShadowProgress {
                catching_up: s.catching_up,
                lag: s.lag,
                read_per_second: s.read_per_second,
                eta_ms: s.eta_ms,
            });
        UpgradeView {
            record,
            progress,
            diff: handle.diff.lock().clone(),
        }
    }
}
