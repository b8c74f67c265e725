//! What each subtask of an attempt is deployed with — its source splits (from the start
//! positions a restored checkpoint leaves), the keyed state and the uncommitted sink output it
//! restores, by operator uid — built from the physical graph. Pure: the driver sends what this
//! builds.

use std::collections::BTreeMap;

use kappa_connectors::kafka::StartOffset;
use kappa_connectors::splits::{SourceAssignment, SourceStarts};
use kappa_job::JobPlan;
use kappa_job::graph::{OperatorKind, Vertex};
use kappa_job::plan::SourceKind;
use kappa_proto::v1::partition_start::Start;
use kappa_proto::v1::source_splits::Splits;
use kappa_proto::v1::{
    FileList, KafkaPartitions, NexmarkSplits, PartitionStart, RestoreState, SinkCommit,
    SourceSplits, TaskDeployment,
};

use kappa_state::{file_to_proto, nexmark_to_proto};

use crate::checkpoint::{CheckpointMetadata, SourceOffsets};
use crate::job::RestoreSource;

/// The one conversion of a source assignment to its message.
pub fn splits_to_proto(a: &SourceAssignment) -> SourceSplits {
    match a {
        SourceAssignment::Kafka(parts) => SourceSplits {
            splits: Some(Splits::Kafka(KafkaPartitions {
                partitions: parts
                    .iter()
                    .map(|p| PartitionStart {
                        partition: p.partition,
                        start: Some(match p.offset {
                            StartOffset::Beginning => Start::Beginning(true),
                            StartOffset::Offset(o) => Start::Offset(o),
                        }),
                    })
                    .collect(),
            })),
        },
        SourceAssignment::Files(files) => SourceSplits {
            splits: Some(Splits::Files(FileList {
                files: files.iter().map(file_to_proto).collect(),
            })),
        },
        SourceAssignment::Nexmark(splits) => SourceSplits {
            splits: Some(Splits::Nexmark(NexmarkSplits {
                splits: splits.iter().map(nexmark_to_proto).collect(),
            })),
        },
    }
}

/// Takes where a restored checkpoint (`own_checkpoint`: of this job, not a savepoint it
/// started from) left each source into the start positions of the next attempt, by source
/// uid. A bounded nexmark source of this job with no split in its own checkpoint had ended
/// everywhere (ended subtasks take no part in checkpoints): it reads nothing again.
pub fn restore_starts(
    pinned: &mut BTreeMap<String, SourceStarts>,
    plan: &JobPlan,
    meta: &CheckpointMetadata,
    own_checkpoint: bool,
) {
    for s in &meta.sources {
        pinned
            .entry(s.uid.clone())
            .or_default()
            .restore(s.positions());
    }
    for s in plan.sources.iter().filter(|_| own_checkpoint) {
        let recorded = |m: &SourceOffsets| m.uid == s.uid && !m.nexmark.is_empty();
        if matches!(s.kind, SourceKind::Nexmark(_)) && !meta.sources.iter().any(recorded) {
            pinned.entry(s.uid.clone()).or_default().nexmark_ended = true;
        }
    }
}

/// The source at the head of `vertex`'s chain, if its chain starts with one.
pub fn head_source(vertex: &Vertex) -> Option<usize> {
    match vertex.chain.first()?.kind {
        OperatorKind::Source(s) => Some(s),
        _ => None,
    }
}

/// The snapshots of a checkpoint that hold key groups of subtask `subtask` (of `p`) of the
/// keyed operator `uid`.
fn restore_states(
    source: Option<&RestoreSource>,
    uid: &str,
    subtask: u32,
    max_parallelism: u32,
    p: u32,
) -> Vec<RestoreState> {
    let Some(RestoreSource { location, meta }) = source else {
        return Vec::new();
    };
    let mine = kappa_job::keygroup::key_group_range(subtask, max_parallelism, p);
    meta.operators
        .iter()
        .filter(|w| w.uid == uid)
        .filter(|w| w.key_groups.0 <= *mine.end() && *mine.start() <= w.key_groups.1)
        .map(|w| RestoreState {
            operator_uid: w.uid.clone(),
            handle: Some((&w.state).into()),
            key_group_start: w.key_groups.0,
            key_group_end: w.key_groups.1,
            location: location.text.clone(),
        })
        .collect()
}

/// The output of sink `uid` a checkpoint holds that its subtask `subtask` (of `p`) commits
/// before it starts: that of the earlier subtasks with the same index modulo `p`.
fn sink_commits(
    source: Option<&RestoreSource>,
    uid: &str,
    subtask: u32,
    p: u32,
) -> Vec<SinkCommit> {
    let Some(RestoreSource { location, meta }) = source else {
        return Vec::new();
    };
    meta.sink_commits
        .iter()
        .filter(|c| c.uid == uid && c.subtask % p == subtask)
        .map(|c| SinkCommit {
            checkpoint_id: c.checkpoint_id,
            writer: c.writer.clone(),
            object: c.object.clone(),
            bytes: c.bytes,
            location: location.text.clone(),
            operator_uid: c.uid.clone(),
        })
        .collect()
}

/// What subtask `i` of `vertex` is deployed with: its splits, the state and sink output it
/// restores.
pub fn task_deployment(
    vertex: &Vertex,
    i: u32,
    assignments: &BTreeMap<u32, Vec<SourceAssignment>>,
    latest: Option<&RestoreSource>,
    max_parallelism: u32,
) -> TaskDeployment {
    let mut t = TaskDeployment {
        vertex: vertex.id,
        subtask: i,
        splits: assignments
            .get(&vertex.id)
            .and_then(|a| a.get(i as usize))
            .map(splits_to_proto),
        restore: Vec::new(),
        sink_commits: Vec::new(),
    };
    for op in &vertex.chain {
        match op.kind {
            k if k.is_keyed() => t.restore.extend(restore_states(
                latest,
                &op.uid,
                i,
                max_parallelism,
                vertex.parallelism,
            )),
            OperatorKind::Sink(_) => {
                t.sink_commits
                    .extend(sink_commits(latest, &op.uid, i, vertex.parallelism))
            }
            _ => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_job::{Overrides, plan_job};

    const MULTI: &str = include_str!("../../../examples/web-and-app-clicks.toml");

    #[test]
    fn each_subtask_restores_the_state_and_output_of_its_own_operators() {
        let plan = plan_job("job.toml", MULTI, &Overrides::default()).unwrap();
        let graph = plan.graph();
        let dir = tempfile::tempdir().unwrap();
        // A checkpoint taken at parallelism 4 (key groups in quarters), restored at 2.
        let meta = serde_json::json!({
            "version": 2, "job_id": "j", "checkpoint_id": 9, "attempt": 1,
            "completed_at_ms": 0, "parallelism": 4, "max_parallelism": 128,
            "sources": [{"uid": "sources.web", "offsets": [{"partition": 0, "next_offset": 5}]}],
            "operators": (0..4).map(|i| serde_json::json!({
                "uid": "hourly", "subtask": i, "key_groups": [32 * i, 32 * i + 31],
                "state": {"files": [{"name": "1.sst", "object": format!("s/{i}.sst"), "size": 1}]}
            })).chain(std::iter::once(serde_json::json!({
                "uid": "daily-max", "subtask": 0, "key_groups": [0, 127], "state": {"files": []}
            }))).collect::<Vec<_>>(),
            "sink_commits": (0..4).map(|i| serde_json::json!({
                "uid": "sinks.late", "subtask": i, "checkpoint_id": 9, "writer": format!("w{i}"),
                "object": format!("o{i}"), "bytes": 1
            })).collect::<Vec<_>>()
        });
        let latest = RestoreSource {
            location: kappa_state::Location::parse(dir.path().to_str().unwrap()).unwrap(),
            meta: serde_json::from_value(meta).unwrap(),
        };
        let hourly = graph.vertices.iter().find(|v| v.name == "hourly").unwrap();
        let t = task_deployment(hourly, 1, &BTreeMap::new(), Some(&latest), 128);
        let restored: Vec<(String, u32, u32)> = t
            .restore
            .iter()
            .map(|r| (r.operator_uid.clone(), r.key_group_start, r.key_group_end))
            .collect();
        assert_eq!(
            restored,
            [
                ("hourly".to_string(), 64, 95),
                ("hourly".to_string(), 96, 127)
            ],
            "subtask 1 of 2 owns key groups 64-127: the two snapshots holding them, of its own uid"
        );
        let writers: Vec<&str> = t.sink_commits.iter().map(|c| c.writer.as_str()).collect();
        assert_eq!(
            writers,
            ["w1", "w3"],
            "old sink subtasks j with j mod 2 = 1"
        );
        assert!(
            t.sink_commits
                .iter()
                .all(|c| c.operator_uid == "sinks.late")
        );
        assert!(t.splits.is_none(), "not a source");
        let web = graph.vertices.iter().find(|v| v.name == "web").unwrap();
        let t = task_deployment(web, 0, &BTreeMap::new(), Some(&latest), 128);
        assert!(t.restore.is_empty() && t.sink_commits.is_empty());
    }

    const NEXMARK: &str = r#"name = "n"
[sources.bid]
connector = "nexmark"
table = "bid"
events = 1000
[sink]
connector = "stdout"
"#;

    fn metadata(sources: serde_json::Value) -> CheckpointMetadata {
        serde_json::from_value(serde_json::json!({
            "version": 2, "job_id": "j", "checkpoint_id": 3, "attempt": 1,
            "completed_at_ms": 0, "parallelism": 2, "max_parallelism": 4, "sources": sources
        }))
        .unwrap()
    }

    #[test]
    fn a_nexmark_source_resumes_its_checkpointed_splits_or_had_ended() {
        let plan = plan_job("job.toml", NEXMARK, &Overrides::default()).unwrap();
        let split = |split, next_event| serde_json::json!({"split": split, "splits": 4, "next_event": next_event});
        let with_splits = metadata(serde_json::json!([
            {"uid": "sources.bid", "offsets": [], "nexmark": [split(1, 9), split(3, 11)]}
        ]));
        let mut pinned = BTreeMap::new();
        restore_starts(&mut pinned, &plan, &with_splits, true);
        let bid = &pinned["sources.bid"];
        let at: Vec<(u32, u64)> = bid
            .nexmark
            .iter()
            .map(|p| (p.split, p.next_event))
            .collect();
        assert_eq!((at, bid.nexmark_ended), (vec![(1, 9), (3, 11)], false));
        // Its subtasks had all ended before the next checkpoint: nothing to read again.
        for ended in [
            metadata(serde_json::json!([])),
            metadata(serde_json::json!([{"uid": "sources.bid", "offsets": []}])),
        ] {
            let mut again = pinned.clone();
            restore_starts(&mut again, &plan, &ended, true);
            assert!(again["sources.bid"].nexmark_ended);
        }
        // A savepoint of another job without the source: it starts anew.
        let mut fresh = BTreeMap::new();
        restore_starts(&mut fresh, &plan, &metadata(serde_json::json!([])), false);
        assert!(!fresh.contains_key("sources.bid"));
    }
}
