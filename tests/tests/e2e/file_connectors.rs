//! The file connectors across failures, on a jobmanager with a taskmanager: a file source
//! restored from a checkpoint goes on where the checkpoint left each file, so nothing before
//! it is counted twice; and a job whose source subtask on another taskmanager has no file
//! still finishes.

use std::time::Duration;

use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    self, START, checkpointed_file_job, clicks, failing_after_first_checkpoint, finish_restored,
    hourly_counts, json_lines, part_file_counts,
};

#[test]
fn a_file_source_restored_from_a_checkpoint_reads_each_line_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("input directory");
    let data = clicks(400_000, 61, START, 6, 200);
    for (i, part) in data.chunks(data.len() / 2).enumerate() {
        std::fs::write(input.join(format!("clicks-{i}.jsonl")), json_lines(part))
            .expect("input file");
    }
    let (cluster, _tm) = failing_after_first_checkpoint(dir.path());
    let output = dir.path().join("results");
    let job = checkpointed_file_job(&input, &output, r#"{ click_count = "count(*)" }"#);
    let id = finish_restored(&cluster, &job);
    let expected = hourly_counts(&data, |_| true);
    let (rows, counts) = part_file_counts(&output);
    cluster.assert_results(&id, &counts, &expected);
    assert_eq!(rows, expected.len(), "each window once");
}

#[test]
fn a_file_job_across_two_taskmanagers_finishes_when_a_source_subtask_has_no_file() {
    // One file for two source subtasks: the one without a file ends at once and sends the end
    // of its input to the other taskmanager's window; that end was lost when the sending
    // subtask ended first, and the job never finished. Several jobs, as it was a race.
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("clicks.jsonl");
    let data = clicks(5_000, 67, START, 3, 30);
    std::fs::write(&input, json_lines(&data)).expect("input file");
    let allowed = dir.path().to_str().expect("utf-8 path");
    let cluster = Cluster::jobmanager(&["--allow-path", allowed]).expect("jobmanager");
    let _tms: Vec<_> = cluster.taskmanagers(2, 1, &["--allow-path", allowed]);
    let expected = hourly_counts(&data, |_| true);
    for run in 0..3 {
        let output = dir.path().join(format!("results-{run}"));
        let id = cluster
            .submit(&reference::file_job(&input, &output, "at-least-once"), &[])
            .expect("submit");
        cluster
            .wait_state(&id, &["FINISHED"], Duration::from_secs(60))
            .expect("the job finishes");
        let (rows, counts) = part_file_counts(&output);
        cluster.assert_results(&id, &counts, &expected);
        assert_eq!(rows, expected.len(), "each window once");
    }
}
