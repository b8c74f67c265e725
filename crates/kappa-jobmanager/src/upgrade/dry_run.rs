//! The shell of an upgrade's plan: reads the running job, plans the new file as a submission
//! would, asks Kafka for the retained offsets of the topics the new file reads, and finds the
//! replay rate this cluster measured (see [`super::plan`] for the decisions).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kappa_connectors::ConnectorError;
use kappa_connectors::kafka::StartOffset;
use kappa_connectors::kafka::admin::TopicAdmin;
use kappa_connectors::kafka::history::{ArchivedPartition, summarize};
use kappa_job::plan::SourceKind;
use kappa_runtime::error::with_causes;

use super::history;
use super::plan::{
    PartitionFacts, PlanInputs, SinkHistory, TopicFacts, UpgradePlan, plan, shadow_name, target,
};
use super::sinks::backup_dir;
use crate::JobManager;
use crate::deployment::head_source;
use crate::job::JobEntry;
use crate::submission::{SubmitError, plan_blocking};

/// Why there is no plan.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("no job {0}")]
    NotFound(String),
    /// The new file is invalid, or refused here.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// Kafka did not answer about a topic of the new file; a retry may help.
    #[error("reading the topics of the new job: {0}")]
    Kafka(#[source] ConnectorError),
    /// The blocking lookup of the topics stopped (the runtime is shutting down).
    #[error("looking up the topics of the new job stopped")]
    Lookup(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Changes(#[from] kappa_job::changes::ChangesError),
    /// The plan refuses the upgrade, for these reasons.
    #[error("the upgrade cannot be cut over: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// The upgrade could not be recorded; a retry may help.
    #[error("recording the upgrade")]
    Store(#[source] crate::store::StoreError),
}

/// The id an upgrade of job `v1` to the (redacted) file `v2` gets: the same for the same file,
/// so a dry run names the shadows the upgrade will write.
pub fn upgrade_id(v1: &str, v2: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{v1}\n{v2}").as_bytes());
    format!("u{:08x}", h >> 32)
}

impl JobManager {
    /// The plan of upgrading job `id` to the job file `text` (named `file_name`); nothing runs.
    pub async fn upgrade_plan(
        &self,
        id: &str,
        file_name: &str,
        text: &str,
    ) -> Result<UpgradePlan, UpgradeError> {
        Ok(self.planned(id, file_name, text, None).await?.1)
    }

    /// The id and plan of upgrading job `id` to `text`; the id is `run_id` when given (an
    /// audit's), else the one derived from the job and the file.
    pub(crate) async fn planned(
        &self,
        id: &str,
        file_name: &str,
        text: &str,
        run_id: Option<String>,
    ) -> Result<(String, UpgradePlan), UpgradeError> {
        let v1 = self
            .job(id)
            .ok_or_else(|| UpgradeError::NotFound(id.to_string()))?;
        let shown = kappa_job::secret::redact(file_name, text)
            .map_err(SubmitError::Invalid)?
            .text;
        let v2 = plan_blocking(file_name, text, &kappa_job::Overrides::default()).await?;
        self.confine(file_name, text, &v2)?;
        let changes = kappa_job::changes::changes(&v1.text.shown, &shown)?;
        let mut unknown = Vec::new();
        let topics = self.topic_facts(&v1, &v2, &mut unknown).await?;
        let oldest_windows = self.oldest_windows(&v1.plan, &mut unknown).await;
        let replay_rate = self.replay_rate(&v1);
        let upgrade_id = run_id.unwrap_or_else(|| upgrade_id(id, &shown));
        let state = v1.state();
        let unusable_dirs = self.unusable_dirs(&v1.plan, &upgrade_id);
        let inputs = PlanInputs {
            upgrade_id: &upgrade_id,
            v1: &v1.plan,
            v1_state: state.name(),
            v2: &v2,
            topics: &topics,
            replay_rate,
            unusable_dirs: &unusable_dirs,
            oldest_windows: &oldest_windows,
        };
        let mut planned = plan(&inputs, changes);
        planned.warnings.extend(unknown);
        Ok((upgrade_id, planned))
    }

    /// What the history archive of source `s` holds, by partition (none without `history`;
    /// an archive that cannot be read is a warning in `unknown`, and counts as none).
    async fn archive(
        &self,
        s: &kappa_job::plan::SourcePlan,
        unknown: &mut Vec<String>,
    ) -> Result<BTreeMap<i32, ArchivedPartition>, UpgradeError> {
        let SourceKind::Kafka(k) = &s.kind else {
            return Ok(BTreeMap::new());
        };
        let Some(location) = k.history.clone() else {
            return Ok(BTreeMap::new());
        };
        let (source, confinement) = (s.clone(), self.inner.config.confinement.clone());
        let read = tokio::task::spawn_blocking(move || {
            confinement
                .check_source(&source, &[])
                .map_err(|e| with_causes(&e))?;
            summarize(&location).map_err(|e| e.to_string())
        })
        .await?;
        Ok(read.unwrap_or_else(|e| {
            unknown.push(format!(
                "the history archive of source `{}` cannot be read, so the plan counts the topic only: {e}",
                s.name
            ));
            BTreeMap::new()
        }))
    }

    /// The retained offsets of every topic v2 reads, where v1 started in them, and the event
    /// time from which on each holds all its records (a warning in `unknown` where that could
    /// not be read).
    async fn topic_facts(
        &self,
        v1: &JobEntry,
        v2: &kappa_job::JobPlan,
        unknown: &mut Vec<String>,
    ) -> Result<Vec<TopicFacts>, UpgradeError> {
        let secrets = &self.inner.config.confinement.secrets;
        let timeout = self.inner.config.kafka_timeout;
        let mut out = Vec::new();
        for s in &v2.sources {
            let SourceKind::Kafka(k) = &s.kind else {
                continue;
            };
            let connection = secrets
                .resolve_kafka(&k.connection, &s.uid)
                .map_err(|e| UpgradeError::Kafka(ConnectorError::Secret(e)))?;
            let topic = k.topic.clone();
            let offsets = tokio::task::spawn_blocking(move || {
                let admin = TopicAdmin::new(&connection, timeout)?;
                admin
                    .partitions(&topic)?
                    .into_iter()
                    .map(|p| Ok((p, admin.watermarks(&topic, p)?)))
                    .collect::<Result<Vec<_>, ConnectorError>>()
            })
            .await?
            .map_err(UpgradeError::Kafka)?;
            let archive = self.archive(s, unknown).await?;
            // The first records a replay reads from the archive rather than the topic.
            let archived_first: BTreeMap<i32, Vec<u8>> = offsets
                .iter()
                .filter_map(|&(p, (low, _))| {
                    let a = archive.get(&p).filter(|a| a.held.first <= low)?;
                    Some((p, a.first_value.clone()?))
                })
                .collect();
            let oldest_event_ms = {
                let (source, confinement) = (s.clone(), self.inner.config.confinement.clone());
                let read = tokio::task::spawn_blocking(move || {
                    history::oldest_event(&source, &confinement, timeout, &archived_first)
                })
                .await?;
                read.unwrap_or_else(|e| {
                    unknown.push(format!(
                        "how far back topic `{}` goes is not known: {}",
                        k.topic,
                        with_causes(&e)
                    ));
                    None
                })
            };
            let reported = reported_high_watermarks(v1, &k.topic);
            let pinned = v1.pinned_starts.lock();
            let started = pinned.get(&s.uid);
            out.push(TopicFacts {
                source: s.name.clone(),
                topic: k.topic.clone(),
                partitions: offsets
                    .into_iter()
                    .map(|(partition, (low, high))| PartitionFacts {
                        partition,
                        low,
                        high: reported.get(&partition).map_or(high, |&h| h.max(high)),
                        v1_started_at: match started.and_then(|p| p.partitions.get(&partition)) {
                            Some(StartOffset::Offset(o)) => Some(*o),
                            _ => None,
                        },
                        archived: archive.get(&partition).map(|a| a.held),
                    })
                    .collect(),
                oldest_event_ms,
            });
        }
        Ok(out)
    }

    /// How far back the windows of each sink of `v1` go (a warning in `unknown` for a sink
    /// that could not be read).
    async fn oldest_windows(
        &self,
        v1: &kappa_job::JobPlan,
        unknown: &mut Vec<String>,
    ) -> Vec<SinkHistory> {
        let mut out = Vec::new();
        for sink in &v1.sinks {
            let (plan, confinement) = (sink.clone(), self.inner.config.confinement.clone());
            let timeout = self.inner.config.kafka_timeout;
            let read = tokio::task::spawn_blocking(move || {
                history::oldest_window(&plan, &confinement, timeout)
            })
            .await
            .map_err(|e| history::HistoryError::Sink(e.into()))
            .and_then(|r| r);
            match read {
                Ok(Some(ms)) => out.push(SinkHistory {
                    sink: sink.name.clone(),
                    oldest_window_start_ms: ms,
                }),
                Ok(None) => {}
                Err(e) => unknown.push(format!(
                    "how far back sink `{}` goes is not known: {}",
                    sink.name,
                    with_causes(&e)
                )),
            }
        }
        out
    }

    /// Why this jobmanager cannot cut over the directory of each file sink of `v1` that it
    /// cannot: it renames the directory and writes its shadow and backup beside it.
    fn unusable_dirs(&self, v1: &kappa_job::JobPlan, upgrade: &str) -> BTreeMap<String, String> {
        let paths = &self.inner.config.confinement.paths;
        let mut out = BTreeMap::new();
        for sink in &v1.sinks {
            let Some(("file", live)) = target(&sink.kind) else {
                continue;
            };
            let shadow = shadow_name("file", &live, upgrade);
            let backup = backup_dir(&live, upgrade);
            let why = if !Path::new(&live).is_absolute() {
                Some(format!(
                    "the directory `{live}` is relative: the jobmanager renames it at the cut-over, so give the sink an absolute path"
                ))
            } else if let Some(e) = [&shadow, &backup]
                .into_iter()
                .find_map(|p| paths.check_path(Path::new(p)).err())
            {
                Some(format!(
                    "the upgrade writes beside `{live}`, which is refused here: {e}"
                ))
            } else if !Path::new(&live).is_dir() {
                Some(format!(
                    "the jobmanager does not see the directory `{live}`: it renames it at the cut-over, so it must be on a file system the jobmanager shares with the taskmanagers"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                out.insert(live, why);
            }
        }
        out
    }

    /// The read rate of the latest catch-up on this cluster (v1's own first), and whose.
    fn replay_rate(&self, v1: &Arc<JobEntry>) -> Option<(f64, String)> {
        let measured = |j: &Arc<JobEntry>| {
            let e = j.catch_up.lock().as_ref()?.status().episode?;
            Some((e.ended_ms?, e.read_per_second?, e))
        };
        let (job, (_, rate, e)) = measured(v1).map(|m| (Arc::clone(v1), m)).or_else(|| {
            self.jobs()
                .into_iter()
                .filter_map(|j| Some((measured(&j)?, j)))
                .max_by_key(|((ended, _, _), _)| *ended)
                .map(|(m, j)| (j, m))
        })?;
        let secs = (e.ended_ms.unwrap_or(e.started_ms) - e.started_ms) as f64 / 1000.0;
        Some((
            rate,
            format!(
                "job {} `{}` read that fast while catching up for {secs:.0} s from {} records behind",
                job.id, job.plan.name, e.lag_at_start
            ),
        ))
    }
}

/// The high watermarks v1's sources of `topic` saw in their fetch responses, by partition.
/// Some brokers answer ListOffsets with a stale end; what the running job reads is exact.
fn reported_high_watermarks(v1: &JobEntry, topic: &str) -> BTreeMap<i32, i64> {
    let graph = v1.plan.graph();
    let status = v1.status.lock();
    let Some(run) = status.attempt.as_ref() else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (vertex, metrics) in graph.vertices.iter().zip(&run.metrics) {
        let reads_topic = head_source(vertex)
            .and_then(|s| v1.plan.sources.get(s))
            .is_some_and(|s| matches!(&s.kind, SourceKind::Kafka(k) if k.topic == topic));
        if !reads_topic {
            continue;
        }
        for p in metrics
            .subtasks
            .iter()
            .flat_map(|m| m.partitions.lock().clone())
        {
            if let Some(h) = p.high_watermark {
                let e = out.entry(p.partition).or_insert(h);
                *e = (*e).max(h);
            }
        }
    }
    out
}
