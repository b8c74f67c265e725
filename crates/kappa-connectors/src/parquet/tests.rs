//! The parquet sink against a real directory store: files appear under their partition
//! directories when their checkpoint completes and once across restarts, restored names of
//! other schemes are refused, row groups end by bytes and files roll by size — read back with
//! the parquet crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use kappa_job::confine::Refused;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

/// 2024-11-25T00:00:00Z.
const NOV_25: i64 = 1_732_492_800_000;
const DAY_MS: i64 = 86_400_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("window_start", DataType::Int64, false),
        Field::new("n", DataType::Int64, false),
    ]))
}

/// Rows `from..to`, row i in day i % days after Nov 25.
fn rows(from: i64, to: i64, days: i64) -> RecordBatch {
    let items: Vec<String> = (from..to).map(|i| format!("item_{i}")).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(items)),
            Arc::new(Int64Array::from(
                (from..to)
                    .map(|i| NOV_25 + (i % days) * DAY_MS)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from((from..to).collect::<Vec<_>>())),
        ],
    )
    .expect("a valid batch")
}

fn plan(dir: &Path, partition_by: Option<&str>) -> ParquetSinkPlan {
    ParquetSinkPlan {
        location: dir.display().to_string(),
        files: ParquetFiles {
            row_group_bytes: 128 << 20,
            file_bytes: 512 << 20,
            compression: ParquetCompression::Zstd,
        },
        partition_by: partition_by
            .map(|t| PathTemplate::parse(t, &schema()).expect("a valid template")),
    }
}

fn sink(plan: &ParquetSinkPlan, attempt: u32, exactly_once: bool) -> ParquetSink {
    ParquetSink::open(plan, schema(), ("j-0", attempt), exactly_once).expect("open")
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry"))
        {
            let path = entry.path();
            match path.is_dir() {
                true => walk(base, &path, out),
                false => out.push(
                    path.strip_prefix(base)
                        .expect("under base")
                        .display()
                        .to_string(),
                ),
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The files a reader of `**/*.parquet` skipping hidden names sees.
fn visible(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| f.ends_with(".parquet") && !f.split('/').any(|p| p.starts_with(['.', '_'])))
        .collect()
}

/// The `n` column of a parquet file, and its number of row groups.
fn read(path: PathBuf) -> (Vec<i64>, usize) {
    let file = std::fs::File::open(&path).expect("a committed file");
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
    let groups = builder.metadata().num_row_groups();
    let mut ns = Vec::new();
    for batch in builder.build().expect("reader") {
        let batch = batch.expect("a batch");
        let col = batch.column_by_name("n").expect("column n");
        let col = col.as_any().downcast_ref::<Int64Array>().expect("int64");
        ns.extend(col.values().iter().copied());
    }
    (ns, groups)
}

fn pending(n: u64, data: &[u8]) -> PendingCommit {
    PendingCommit {
        writer: "j-0".into(),
        checkpoint: n,
        data: data.to_vec(),
    }
}

#[test]
fn files_appear_in_their_partitions_when_their_checkpoint_completes_and_once_after_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path(), Some("dt={window_start:%Y-%m-%d}"));
    let mut s = sink(&plan, 1, true);
    s.write(&rows(0, 10, 2)).expect("write");
    let c1 = s.prepare(1).expect("prepare").expect("files");
    assert!(visible(dir.path()).is_empty(), "nothing before completion");
    s.commit(1).expect("commit");
    assert_eq!(
        visible(dir.path()),
        [
            "dt=2024-11-25/part-j-0-1-0.parquet",
            "dt=2024-11-26/part-j-0-1-1.parquet"
        ]
    );
    s.write(&rows(10, 13, 1)).expect("write");
    let c2 = s.prepare(2).expect("prepare").expect("files");
    s.write(&rows(13, 15, 1)).expect("write");
    s.prepare(3).expect("prepare").expect("files");
    // Crash: checkpoint 2 completed but its notification never arrived; 3 never completed.
    drop(s);
    let mut r = sink(&plan, 2, true);
    r.recover(vec![pending(1, &c1), pending(2, &c2)])
        .expect("recover");
    let committed = [
        "dt=2024-11-25/part-j-0-1-0.parquet",
        "dt=2024-11-25/part-j-0-2-0.parquet",
        "dt=2024-11-26/part-j-0-1-1.parquet",
    ];
    assert_eq!(visible(dir.path()), committed);
    assert_eq!(
        files(dir.path()),
        committed,
        "the staged file of checkpoint 3 is removed"
    );
    let day1 = read(dir.path().join(committed[0])).0;
    assert_eq!(day1, [0, 2, 4, 6, 8]);
    assert_eq!(read(dir.path().join(committed[1])).0, [10, 11, 12]);
    // Committing again (a second crash during recovery, a late notification) changes nothing.
    let mut again = sink(&plan, 3, true);
    again
        .recover(vec![pending(1, &c1), pending(2, &c2)])
        .expect("recover again");
    r.commit(2).expect("a late commit");
    assert_eq!(files(dir.path()), committed);
}

#[test]
fn a_staged_file_moved_before_a_crash_is_committed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path(), None);
    let mut s = sink(&plan, 1, true);
    s.write(&rows(0, 3, 1)).expect("write");
    let c1 = s.prepare(1).expect("prepare").expect("files");
    let listed: Vec<StagedFile> = serde_json::from_slice(&c1).expect("entry");
    let (staged, committed) = restored(&listed[0].staged, &listed[0].committed).expect("own");
    // The copy of an S3 rename happened, its delete did not.
    std::fs::copy(
        dir.path().join(staged.as_ref()),
        dir.path().join(committed.as_ref()),
    )
    .expect("copy");
    let mut r = sink(&plan, 2, true);
    r.recover(vec![pending(1, &c1)]).expect("recover");
    assert_eq!(files(dir.path()), ["part-j-0-1-0.parquet"]);
    // Neither the staged nor the final file: the output is gone, and that is an error.
    std::fs::remove_file(dir.path().join(committed.as_ref())).expect("remove");
    let e = sink(&plan, 3, true)
        .recover(vec![pending(1, &c1)])
        .unwrap_err();
    assert!(e.to_string().contains("is gone"), "{e}");
}

#[test]
fn a_restored_entry_naming_objects_of_other_schemes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let plan = plan(&lake, None);
    let mut s = sink(&plan, 1, true);
    s.write(&rows(0, 3, 1)).expect("write");
    let c1 = s.prepare(1).expect("prepare").expect("files");
    let real: Vec<StagedFile> = serde_json::from_slice(&c1).expect("entry");
    let victim = lake.join("dt=x/keep.parquet");
    std::fs::create_dir_all(victim.parent().expect("parent")).expect("dir");
    std::fs::write(&victim, "keep me").expect("victim");
    for (staged, committed) in [
        (real[0].staged.as_str(), "../outside/part-j-0-1-0.parquet"),
        (real[0].staged.as_str(), "dt=x/keep.parquet"),
        (real[0].staged.as_str(), "_staging/part-j-0-1-0.parquet"),
        ("dt=x/keep.parquet", "part-j-0-1-0.parquet"),
        ("_staging/../dt=x/keep.parquet", "part-j-0-1-0.parquet"),
    ] {
        let crafted = serde_json::to_vec(&[StagedFile {
            staged: staged.into(),
            committed: committed.into(),
        }])
        .expect("json");
        let e = sink(&plan, 2, true)
            .recover(vec![pending(1, &crafted)])
            .unwrap_err();
        assert!(
            matches!(e, TaskError::Refused(Refused::Path(_) | Refused::Name(_))),
            "{staged} → {committed}: {e}"
        );
    }
    assert_eq!(std::fs::read(&victim).expect("victim"), b"keep me");
    assert!(!dir.path().join("outside").exists());
    assert!(visible(&lake).contains(&"dt=x/keep.parquet".to_string()));
}

#[test]
fn row_groups_end_by_bytes_and_files_roll_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plan = plan(dir.path(), None);
    plan.files.row_group_bytes = 16 << 10;
    plan.files.compression = ParquetCompression::None;
    let mut s = sink(&plan, 1, true);
    for i in 0..20 {
        s.write(&rows(i * 1_000, (i + 1) * 1_000, 1))
            .expect("write");
    }
    s.prepare(1).expect("prepare");
    s.commit(1).expect("commit");
    assert_eq!(visible(dir.path()), ["part-j-0-1-0.parquet"]);
    let (ns, groups) = read(dir.path().join("part-j-0-1-0.parquet"));
    assert_eq!(ns, (0..20_000).collect::<Vec<_>>());
    assert!(groups > 5, "{groups} row groups of 16 KiB");

    // Files closed at 64 KiB, before the barrier: several files for one checkpoint.
    plan.files.file_bytes = 64 << 10;
    let mut s = sink(&plan, 2, true);
    for i in 20..40 {
        s.write(&rows(i * 1_000, (i + 1) * 1_000, 1))
            .expect("write");
    }
    s.prepare(2).expect("prepare");
    s.commit(2).expect("commit");
    let second: Vec<String> = visible(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("part-j-0-2-"))
        .collect();
    assert!(second.len() > 2, "{second:?}");
    let mut all: Vec<i64> = second
        .iter()
        .flat_map(|f| read(dir.path().join(f)).0)
        .collect();
    all.sort_unstable();
    assert_eq!(all, (20_000..40_000).collect::<Vec<_>>());
}

#[test]
fn at_least_once_files_are_visible_at_the_barrier_and_the_end_commits_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path(), Some("dt={window_start:%Y-%m-%d}"));
    let mut s = sink(&plan, 1, false);
    s.write(&rows(0, 2, 1)).expect("write");
    assert_eq!(s.prepare(1).expect("prepare"), None);
    assert_eq!(visible(dir.path()), ["dt=2024-11-25/part-j-0-a1-0.parquet"]);
    let mut e = sink(&plan, 1, true);
    e.write(&rows(5, 6, 1)).expect("write");
    e.flush().expect("the end");
    assert_eq!(
        visible(dir.path()),
        [
            "dt=2024-11-25/part-j-0-a1-0.parquet",
            "dt=2024-11-25/part-j-0-a1-end-0.parquet"
        ]
    );
}
