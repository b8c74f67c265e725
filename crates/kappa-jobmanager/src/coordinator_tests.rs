//! The checkpoint coordinator walked through the orderings processes rarely produce: acks
//! after the attempt ended, declines, timeouts, a record that cannot be written after the
//! metadata was, retention, and `_metadata` of the previous format.

use std::collections::HashSet;
use std::time::Duration;

use kappa_job::plan::CheckpointPlan;
use kappa_proto::v1 as pb;

use crate::checkpoint::{CheckpointMetadata, CheckpointStatus, Checkpoints, OperatorLayout, Step};

const JOB: &str = "job-1";
const P: u32 = 2;
const MAX_P: u32 = 128;

fn plan(retained: u32, tolerable: Option<u32>, timeout: Duration) -> CheckpointPlan {
    CheckpointPlan {
        interval: Duration::from_secs(1),
        interval_during_catch_up: Duration::from_secs(60),
        timeout,
        min_pause: Duration::ZERO,
        retained,
        tolerable_failures: tolerable,
    }
}

fn coordinator(dir: &tempfile::TempDir, plan: CheckpointPlan) -> Checkpoints {
    let location = kappa_state::Location::parse(dir.path().to_str().unwrap()).unwrap();
    Checkpoints::new(
        location,
        plan,
        vec![OperatorLayout {
            uid: "hourly".into(),
            aggregates: vec!["n=count".into()],
        }],
    )
}

/// Subtasks of a source vertex (0) and a window vertex (1) with a sink.
fn expected() -> HashSet<(u32, u32)> {
    (0..P).flat_map(|i| [(0, i), (1, i)]).collect()
}

fn ack(n: u64, attempt: u32, vertex: u32, subtask: u32) -> pb::CheckpointAck {
    let mut a = pb::CheckpointAck {
        job_id: JOB.into(),
        attempt,
        checkpoint_id: n,
        vertex,
        subtask,
        ..Default::default()
    };
    match vertex {
        0 => a.sources.push(pb::SourceOffsets {
            uid: "sources.web".into(),
            offsets: vec![pb::PartitionOffset {
                partition: subtask as i32,
                next_offset: Some(100 * n as i64),
            }],
            files: vec![pb::FilePosition {
                path: format!("/in/{subtask}.jsonl"),
                offset: 1000 * n,
                line: 10 * n,
            }],
            // Subtask 0 reads split 1, subtask 1 split 0 (as after a rescale).
            nexmark: vec![pb::NexmarkPosition {
                split: 1 - subtask,
                splits: 2,
                next_event: 2 * n + u64::from(1 - subtask),
            }],
        }),
        _ => {
            a.operator_states.push(pb::OperatorState {
                uid: "hourly".into(),
                handle: Some(pb::StateHandle {
                    files: vec![pb::StoredFile {
                        name: "000001.sst".into(),
                        object: format!("{JOB}/shared/{attempt}-1-0-{subtask}/000001.sst"),
                        size: 10,
                        xxh3: None,
                    }],
                }),
                full_bytes: 10,
                incremental_bytes: 10,
            });
            a.sink_commits.push(pb::SinkCommit {
                checkpoint_id: n,
                writer: format!("w-{subtask}"),
                object: format!("{JOB}/shared/sink-{n}-{subtask}"),
                bytes: 3,
                location: String::new(),
                operator_uid: "sinks.out".into(),
            });
        }
    }
    a
}

/// Triggers the next checkpoint and acknowledges it from every subtask; the last step.
fn run_checkpoint(c: &mut Checkpoints, attempt: u32) -> (u64, Step) {
    let Step::Trigger(n) = c.tick(attempt, expected()) else {
        panic!("a checkpoint starts");
    };
    let mut last = Step::Nothing;
    for (v, s) in expected() {
        last = c.acknowledge(ack(n, attempt, v, s), P, MAX_P, JOB);
    }
    (n, last)
}

fn complete(c: &mut Checkpoints, attempt: u32) -> CheckpointMetadata {
    let (n, step) = run_checkpoint(c, attempt);
    let Step::Complete(meta) = step else {
        panic!("checkpoint {n} completes once every subtask acknowledged");
    };
    assert!(matches!(
        c.completed((*meta).clone(), Ok(format!("chk-{n}"))),
        Step::Nothing
    ));
    *meta
}

#[test]
fn a_complete_checkpoint_lists_offsets_state_and_output_by_operator_uid() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = coordinator(&dir, plan(2, None, Duration::from_secs(60)));
    let meta = complete(&mut c, 1);
    assert_eq!(meta.sources.len(), 1);
    assert_eq!(meta.sources[0].uid, "sources.web");
    let partitions: Vec<i32> = meta.sources[0]
        .offsets
        .iter()
        .map(|o| o.partition)
        .collect();
    assert_eq!(partitions, [0, 1], "sorted by partition");
    let files: Vec<(String, u64, u64)> = meta.sources[0]
        .files
        .iter()
        .map(|f| (f.path.display().to_string(), f.offset, f.line))
        .collect();
    let n = meta.checkpoint_id;
    assert_eq!(
        files,
        [
            ("/in/0.jsonl".to_string(), 1000 * n, 10 * n),
            ("/in/1.jsonl".to_string(), 1000 * n, 10 * n)
        ],
        "file positions by path"
    );
    let nexmark: Vec<(u32, u64)> = meta.sources[0]
        .nexmark
        .iter()
        .map(|p| (p.split, p.next_event))
        .collect();
    assert_eq!(
        nexmark,
        [(0, 2 * n), (1, 2 * n + 1)],
        "nexmark splits by index"
    );
    let text = serde_json::to_string(&meta).expect("metadata json");
    let back: CheckpointMetadata = serde_json::from_str(&text).expect("metadata read back");
    assert_eq!(back.sources[0].nexmark, meta.sources[0].nexmark);
    let ranges: Vec<(String, u32, (u32, u32))> = meta
        .operators
        .iter()
        .map(|o| (o.uid.clone(), o.subtask, o.key_groups))
        .collect();
    assert_eq!(
        ranges,
        [
            ("hourly".to_string(), 0, (0, 63)),
            ("hourly".to_string(), 1, (64, 127))
        ]
    );
    assert!(meta.sink_commits.iter().all(|s| s.uid == "sinks.out"));
    assert_eq!(meta.layouts[0].aggregates, ["n=count"]);
    assert_eq!(
        c.latest().map(|m| m.checkpoint_id),
        Some(meta.checkpoint_id)
    );
}

#[test]
fn acks_of_an_ended_attempt_or_an_aborted_checkpoint_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = coordinator(&dir, plan(2, None, Duration::from_secs(60)));
    let Step::Trigger(n) = c.tick(1, expected()) else {
        panic!("starts");
    };
    // The attempt is cancelled while the checkpoint is under way.
    c.abort_pending("the attempt ended");
    for (v, s) in expected() {
        assert!(matches!(
            c.acknowledge(ack(n, 1, v, s), P, MAX_P, JOB),
            Step::Nothing
        ));
    }
    assert!(c.latest().is_none());
    assert_eq!(c.history()[0].status, CheckpointStatus::Failed);
    // The next attempt's checkpoint: a late ack of the old attempt for the same id is ignored.
    let Step::Trigger(m) = c.tick(2, expected()) else {
        panic!("starts");
    };
    assert!(m > n, "ids are never reused");
    assert!(matches!(
        c.acknowledge(ack(m, 1, 0, 0), P, MAX_P, JOB),
        Step::Nothing
    ));
    assert_eq!(c.history()[0].acknowledged, 0);
    // And an ack from a subtask the checkpoint does not expect.
    assert!(matches!(
        c.acknowledge(ack(m, 2, 7, 0), P, MAX_P, JOB),
        Step::Nothing
    ));
    assert_eq!(c.history()[0].acknowledged, 0);
}

#[test]
fn declines_and_timeouts_fail_the_checkpoint_and_too_many_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = coordinator(&dir, plan(2, Some(1), Duration::from_secs(60)));
    let Step::Trigger(n) = c.tick(1, expected()) else {
        panic!("starts");
    };
    let mut declined = ack(n, 1, 1, 0);
    declined.decline = "the upload failed".into();
    assert!(matches!(
        c.acknowledge(declined, P, MAX_P, JOB),
        Step::Nothing
    ));
    assert_eq!(c.last_failure.as_ref().map(|f| f.0), Some(n));
    assert!(!c.in_progress());
    // A second failure in a row is one more than tolerated.
    let mut c2 = coordinator(&dir, plan(2, Some(1), Duration::ZERO));
    assert!(matches!(c2.tick(1, expected()), Step::Trigger(_)));
    std::thread::sleep(Duration::from_millis(2));
    assert!(matches!(c2.tick(1, expected()), Step::Nothing), "times out");
    assert!(matches!(c2.tick(1, expected()), Step::Trigger(_)));
    std::thread::sleep(Duration::from_millis(2));
    match c2.tick(1, expected()) {
        Step::FailJob(why) => assert!(why.contains("2 checkpoints failed in a row"), "{why}"),
        _ => panic!("the job fails after the second timeout"),
    }
}

#[test]
fn a_checkpoint_whose_record_cannot_be_written_is_taken_back_and_nothing_is_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = coordinator(&dir, plan(1, None, Duration::from_secs(60)));
    let first = complete(&mut c, 1);
    assert!(c.prune().is_empty(), "one retained");
    let second = complete(&mut c, 1);
    // The record that would point at the second cannot be written: sinks are not told, a
    // restart restores the first, so the first must stay.
    assert!(matches!(
        c.revoke(second.checkpoint_id, "etcd is away".into()),
        Step::Nothing
    ));
    assert_eq!(
        c.latest().map(|m| m.checkpoint_id),
        Some(first.checkpoint_id)
    );
    assert!(c.prune().is_empty(), "the first is still the latest");
    let h = c.history();
    assert_eq!(h[0].id, second.checkpoint_id);
    assert_eq!(h[0].status, CheckpointStatus::Failed);
    assert_eq!(h[0].failure.as_deref(), Some("etcd is away"));
    assert!(h[1].retained);
    // The next one completes and is recorded: the first goes, with the files only it used.
    let third = complete(&mut c, 1);
    let deleted: Vec<String> = c.prune().iter().map(|p| p.to_string()).collect();
    assert!(deleted.contains(&format!("{JOB}/chk-{}/_metadata", first.checkpoint_id)));
    assert!(
        deleted
            .iter()
            .any(|d| d.ends_with(&format!("sink-{}-0", first.checkpoint_id))),
        "{deleted:?}"
    );
    assert!(
        !deleted.iter().any(|d| d.ends_with("000001.sst")),
        "shared SSTs the latest still uses stay: {deleted:?}"
    );
    assert_eq!(
        c.latest().map(|m| m.checkpoint_id),
        Some(third.checkpoint_id)
    );
}

#[test]
fn metadata_of_the_previous_format_reads_as_one_source_and_one_window() {
    let dir = tempfile::tempdir().unwrap();
    let location = kappa_state::Location::parse(dir.path().to_str().unwrap()).unwrap();
    let legacy = serde_json::json!({
        "job_id": "x", "checkpoint_id": 7, "attempt": 1, "completed_at_ms": 0,
        "parallelism": 1, "max_parallelism": 128,
        "offsets": [{"partition": 0, "next_offset": 42}],
        "windows": [{"subtask": 0, "key_groups": [0, 127], "state": {"files": []}}],
        "aggregates": ["click_count=count"],
        "sink_commits": [{"subtask": 0, "checkpoint_id": 7, "writer": "w", "object": "o", "bytes": 1}]
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let meta = rt.block_on(async {
        use object_store::ObjectStoreExt;
        let path = location.child(&["_metadata"]);
        location
            .store
            .put(&path, legacy.to_string().into_bytes().into())
            .await
            .unwrap();
        crate::checkpoint::read_metadata(&location).await.unwrap()
    });
    assert_eq!(meta.version, 2);
    assert_eq!(meta.sources[0].uid, "source");
    assert_eq!(
        meta.offsets_of("source").next().and_then(|o| o.next_offset),
        Some(42)
    );
    assert_eq!(meta.operators[0].uid, "window", "the default window uid");
    assert_eq!(meta.layouts[0].aggregates, ["click_count=count"]);
    assert_eq!(meta.sink_commits[0].uid, "sink");
    let written = serde_json::to_value(&meta).unwrap();
    assert!(
        written.get("windows").is_none(),
        "only the new format is written"
    );
}

#[test]
fn while_the_job_catches_up_periodic_checkpoints_wait_for_the_longer_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = coordinator(&dir, plan(2, None, Duration::from_secs(60)));
    complete(&mut c, 1);
    // Live: the next tick starts the next checkpoint.
    complete(&mut c, 1);
    c.set_catching_up(true);
    assert!(
        matches!(c.tick(1, expected()), Step::Nothing),
        "a minute has not passed since the last one started"
    );
    // A savepoint does not wait.
    assert!(matches!(c.trigger_now(1, expected()), Step::Trigger(_)));
    c.abort_pending("the attempt ended");
    // Live again: ticks start checkpoints at once.
    c.set_catching_up(false);
    assert!(matches!(c.tick(1, expected()), Step::Trigger(_)));
}
