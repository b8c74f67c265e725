//! The iceberg sink against a real SQLite catalog and a warehouse directory: snapshots per
//! checkpoint with the writer and checkpoint in their summaries, the data files' field ids,
//! microsecond timestamps and bounds, restores that commit a pending checkpoint once, and a
//! table whose column has another type refused by name.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use futures::TryStreamExt;
use iceberg::spec::{Datum, ManifestList};
use kappa_job::plan::iceberg::partition::{IcebergPartition, PartitionTransform};
use kappa_job::plan::iceberg::{CatalogDatabase, IcebergSinkPlan, IcebergType};
use kappa_job::plan::parquet::ParquetFiles;
use kappa_job::spec::ParquetCompression;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("clicks", DataType::Int64, false),
    ]))
}

fn plan(dir: &Path) -> IcebergSinkPlan {
    let db = dir.join("catalog.db").display().to_string();
    IcebergSinkPlan {
        url: format!("sqlite://{db}"),
        database: CatalogDatabase::Sqlite(db),
        password: None,
        catalog: "kappa".into(),
        warehouse: dir.join("warehouse").display().to_string(),
        namespace: vec!["analytics".into()],
        table: "hourly".into(),
        files: ParquetFiles {
            row_group_bytes: 128 << 20,
            file_bytes: 512 << 20,
            compression: ParquetCompression::Zstd,
        },
        columns: vec![
            IcebergType::String,
            IcebergType::Timestamp,
            IcebergType::Long,
        ],
        partition_by: None,
    }
}

/// Rows `from..to`: item `i{n % 3}`, window start n hours, n clicks.
fn rows(from: i64, to: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(
                (from..to)
                    .map(|n| format!("i{}", n % 3))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(
                (from..to).map(|n| n * 3_600_000).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from((from..to).collect::<Vec<_>>())),
        ],
    )
    .expect("a valid batch")
}

fn sink(plan: &IcebergSinkPlan, attempt: u32) -> IcebergSink {
    IcebergSink::open(plan, None, &schema(), ("j-0", attempt)).expect("open")
}

/// The table's snapshots as (writer, checkpoint), oldest first, and its data files' paths.
fn committed(sink: &IcebergSink) -> (Vec<(String, String)>, Vec<String>) {
    sink.runtime.block_on(async {
        let table = sink
            .catalog
            .load_table(sink.table.identifier())
            .await
            .expect("load");
        let mut snapshots: Vec<_> = table.metadata().snapshots().cloned().collect();
        snapshots.sort_by_key(|s| s.sequence_number());
        let summaries = snapshots
            .iter()
            .map(|s| {
                let p = &s.summary().additional_properties;
                (p[WRITER_PROPERTY].clone(), p[CHECKPOINT_PROPERTY].clone())
            })
            .collect();
        let files: Vec<String> = table
            .scan()
            .build()
            .expect("scan")
            .plan_files()
            .await
            .expect("plan")
            .map_ok(|t| t.data_file_path)
            .try_collect()
            .await
            .expect("files");
        (summaries, files)
    })
}

/// The clicks column of every data file, read with the parquet crate, sorted.
fn clicks_in(files: &[String]) -> Vec<i64> {
    let mut clicks = Vec::new();
    for f in files {
        let file = std::fs::File::open(f.trim_start_matches("file://")).expect("a data file");
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
        let fields = builder.schema().fields().clone();
        let ids: Vec<&str> = fields
            .iter()
            .map(|f| f.metadata()[PARQUET_FIELD_ID].as_str())
            .collect();
        assert_eq!(ids, ["1", "2", "3"], "{fields:?}");
        assert_eq!(
            fields[1].data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        for batch in builder.build().expect("reader") {
            let batch = batch.expect("a batch");
            let starts = batch
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("micros");
            let counts = batch
                .column(2)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("longs");
            for i in 0..batch.num_rows() {
                assert_eq!(starts.value(i), counts.value(i) * 3_600_000_000);
                clicks.push(counts.value(i));
            }
        }
    }
    clicks.sort_unstable();
    clicks
}

const PARQUET_FIELD_ID: &str = parquet::arrow::PARQUET_FIELD_ID_META_KEY;

#[test]
fn checkpoints_append_snapshots_and_restores_commit_a_pending_one_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path());
    let mut s = sink(&plan, 0);
    s.write(&rows(0, 10)).expect("write");
    s.write(&rows(10, 20)).expect("write");
    assert!(s.prepare(1).expect("prepare").is_some());
    // Nothing is visible before the checkpoint completes.
    assert_eq!(committed(&s), (vec![], vec![]));
    s.commit(1).expect("commit");
    let (snapshots, files) = committed(&s);
    assert_eq!(snapshots, [("j-0".to_string(), "1".to_string())]);
    assert_eq!(clicks_in(&files), (0..20).collect::<Vec<_>>());
    // The data file's bounds and counts, by field id.
    let table = &s.table;
    let manifest_bounds = s.runtime.block_on(async {
        let snapshot = table.metadata().current_snapshot().expect("a snapshot");
        let bytes = table
            .file_io()
            .new_input(snapshot.manifest_list())
            .expect("input")
            .read()
            .await
            .expect("manifest list");
        let list = ManifestList::parse_with_version(&bytes, table.metadata().format_version())
            .expect("a manifest list");
        let manifest = list.entries()[0]
            .load_manifest(table.file_io())
            .await
            .expect("manifest");
        let file = manifest.entries()[0].data_file().clone();
        (
            file.record_count(),
            file.lower_bounds().get(&3).cloned(),
            file.upper_bounds().get(&3).cloned(),
            file.null_value_counts().get(&3).copied(),
            file.lower_bounds().get(&1).cloned(),
        )
    });
    assert_eq!(
        manifest_bounds,
        (
            20,
            Some(Datum::long(0)),
            Some(Datum::long(19)),
            Some(0),
            Some(Datum::string("i0"))
        )
    );
    // Checkpoint 2 is prepared, then the writer dies before it completes.
    s.write(&rows(20, 25)).expect("write");
    let pending = s.prepare(2).expect("prepare").expect("files");
    drop(s);
    let restore = |attempt: u32, checkpoint: u64, data: &[u8]| {
        let mut s = sink(&plan, attempt);
        s.recover(vec![PendingCommit {
            writer: "j-0".into(),
            checkpoint,
            data: data.to_vec(),
        }])
        .expect("recover");
        s
    };
    let s = restore(1, 2, &pending);
    let (snapshots, files) = committed(&s);
    assert_eq!(
        snapshots,
        [
            ("j-0".to_string(), "1".to_string()),
            ("j-0".to_string(), "2".to_string())
        ]
    );
    assert_eq!(clicks_in(&files), (0..25).collect::<Vec<_>>());
    // The same checkpoint restored again (a second failure) is not appended twice.
    let s = restore(2, 2, &pending);
    assert_eq!(committed(&s).0.len(), 2);
    assert_eq!(clicks_in(&committed(&s).1).len(), 25);
    // A corrupt description is refused naming the writer.
    let mut s = sink(&plan, 3);
    let e = s
        .recover(vec![PendingCommit {
            writer: "j-0".into(),
            checkpoint: 3,
            data: b"[\"{\"".to_vec(),
        }])
        .expect_err("corrupt");
    assert!(e.to_string().contains("`j-0` are corrupt"), "{e}");
    // The end of the input appends what is left.
    s.write(&rows(25, 30)).expect("write");
    s.flush().expect("flush");
    let (snapshots, files) = committed(&s);
    assert_eq!(snapshots.len(), 3);
    assert_eq!(clicks_in(&files), (0..30).collect::<Vec<_>>());
}

#[test]
fn a_column_of_another_type_is_refused_and_a_new_column_is_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plan = plan(dir.path());
    drop(sink(&plan, 0));
    // The same table, now written with clicks as a string.
    plan.columns[2] = IcebergType::String;
    let strings_fields: Vec<arrow::datatypes::FieldRef> = vec![
        Arc::new(Field::new("item_id", DataType::Utf8, false)),
        Arc::new(Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        )),
        Arc::new(Field::new("clicks", DataType::Utf8, false)),
    ];
    let strings = Arc::new(Schema::new(strings_fields.clone()));
    let e = IcebergSink::open(&plan, None, &(strings as SchemaRef), ("j-0", 1))
        .err()
        .expect("refused");
    assert_eq!(
        e.to_string(),
        "iceberg table `analytics.hourly` has column `clicks` as long; the job writes it as string"
    );
    assert!(!e.is_retriable());
    // Refused before the table changes: a new column is not added by a job that is refused.
    let mut refused = plan.clone();
    refused.columns.push(IcebergType::Long);
    let mut fields = strings_fields.clone();
    fields.push(Arc::new(Field::new("views", DataType::Int64, false)));
    let e = IcebergSink::open(&refused, None, &Arc::new(Schema::new(fields)), ("j-0", 1))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("has column `clicks` as long"), "{e}");
    let mut original = plan.clone();
    original.columns[2] = IcebergType::Long;
    let s = sink(&original, 1);
    assert_eq!(
        s.table
            .metadata()
            .current_schema()
            .as_struct()
            .fields()
            .len(),
        3
    );
    drop(s);
    // A job with a column the table lacks adds it (optional); two writers opening at once
    // both succeed.
    plan.columns[2] = IcebergType::Long;
    plan.columns.push(IcebergType::Long);
    let mut fields = schema().fields().to_vec();
    fields.push(Arc::new(Field::new("views", DataType::Int64, false)));
    let wider: SchemaRef = Arc::new(Schema::new(fields));
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| IcebergSink::open(&plan, None, &wider, ("j-0", 2)).map(|_| ()));
        let b = scope.spawn(|| IcebergSink::open(&plan, None, &wider, ("j-1", 2)));
        (a.join().expect("a"), b.join().expect("b"))
    });
    a.expect("the first writer");
    let s = b.expect("the second writer");
    let current = s.table.metadata().current_schema();
    let views = current.field_by_name("views").expect("views added");
    assert_eq!(
        (views.id, views.required, views.field_type.to_string()),
        (4, false, "long".to_string())
    );
    assert_eq!(current.as_struct().fields().len(), 4);
}

#[test]
fn a_checkpoint_committed_by_two_attempts_at_once_is_appended_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path());
    // Each round: the attempt that prepared checkpoint n commits it while a restarted attempt
    // restores n; whichever is second finds it done (before committing, or after its commit
    // is refused for files added twice).
    for n in 1..=5u64 {
        let attempt = u32::try_from(2 * n).expect("small");
        let mut old = sink(&plan, attempt);
        let from = i64::try_from(n * 10).expect("small");
        old.write(&rows(from, from + 10)).expect("write");
        let pending = old.prepare(n).expect("prepare").expect("files");
        let mut restarted = sink(&plan, attempt + 1);
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| old.commit(n));
            let b = scope.spawn(|| {
                restarted.recover(vec![PendingCommit {
                    writer: "j-0".into(),
                    checkpoint: n,
                    data: pending.clone(),
                }])
            });
            (a.join().expect("commit"), b.join().expect("recover"))
        });
        a.expect("the commit");
        b.expect("the restore");
        let (snapshots, files) = committed(&restarted);
        assert_eq!(
            snapshots.len(),
            usize::try_from(n).expect("small"),
            "{snapshots:?}"
        );
        assert_eq!(
            clicks_in(&files),
            (10..from + 10).collect::<Vec<_>>(),
            "round {n}"
        );
    }
}

#[test]
fn a_partitioned_table_gets_a_file_per_partition_with_its_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plan = plan(dir.path());
    let partition = |column: &str, transform| IcebergPartition {
        column: column.into(),
        transform,
    };
    plan.partition_by = Some(vec![
        partition("window_start", PartitionTransform::Day),
        partition("item_id", PartitionTransform::Identity),
    ]);
    let mut s = sink(&plan, 0);
    // 30 hours: days 1970-01-01 and 1970-01-02, three items.
    s.write(&rows(0, 30)).expect("write");
    s.prepare(1).expect("prepare");
    s.commit(1).expect("commit");
    let (_, files) = committed(&s);
    let data = format!("{}/data/", s.location());
    let mut dirs: Vec<String> = files
        .iter()
        .map(|f| {
            let rel = f.split_once(&data).map_or(f.as_str(), |(_, r)| r);
            rel.rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default()
        })
        .collect();
    dirs.sort();
    let mut expected: Vec<String> = ["1970-01-01", "1970-01-02"]
        .iter()
        .flat_map(|day| (0..3).map(move |i| format!("window_start_day={day}/item_id=i{i}")))
        .collect();
    expected.sort();
    assert_eq!(dirs, expected);
    assert_eq!(clicks_in(&files), (0..30).collect::<Vec<_>>());
    // Each file holds the rows of its partition only.
    for f in &files {
        let day_of = |clicks: i64| {
            if clicks < 24 {
                "1970-01-01"
            } else {
                "1970-01-02"
            }
        };
        for c in clicks_in(std::slice::from_ref(f)) {
            assert!(
                f.contains(&format!(
                    "window_start_day={}/item_id=i{}/",
                    day_of(c),
                    c % 3
                )),
                "{c} in {f}"
            );
        }
    }
    // The same table with another partition_by is refused, saying both.
    plan.partition_by = Some(vec![partition("item_id", PartitionTransform::Bucket(4))]);
    let e = IcebergSink::open(&plan, None, &schema(), ("j-0", 1))
        .err()
        .expect("refused");
    assert_eq!(
        e.to_string(),
        "iceberg table `analytics.hourly` is partitioned by day(window_start), identity(item_id); the job's partition_by says bucket[4](item_id) (leave partition_by out to write the table's partitions)"
    );
    // Without partition_by, the table's partitions are written.
    plan.partition_by = None;
    let mut s = sink(&plan, 2);
    s.write(&rows(30, 33)).expect("write");
    s.flush().expect("flush");
    let (_, files) = committed(&s);
    assert!(
        files
            .iter()
            .any(|f| f.contains("/data/window_start_day=1970-01-02/item_id=i0/")),
        "{files:?}"
    );
    assert_eq!(clicks_in(&files), (0..33).collect::<Vec<_>>());
}

#[test]
fn snapshots_are_labelled_with_the_writer_name_pending_commits_carry() {
    // The taskmanager keeps a sink's pending commits under its `writer()`, and a restored
    // writer recognises its own commits by that name: opened as the taskmanager opens it, the
    // sink is named as the Kafka sinks' writers are (upgrades name writers that way too).
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path());
    let sink = kappa_job::plan::SinkPlan {
        name: "sink".into(),
        uid: "sink".into(),
        schema: schema(),
        kind: kappa_job::plan::SinkKind::Iceberg(plan),
        format: kappa_job::plan::formats::RecordFormat::Json,
        key: None,
        delivery: kappa_job::spec::Delivery::ExactlyOnce,
        changes: false,
    };
    let confinement = crate::confine::Confinement::any("a test");
    let opened = crate::open_sink(&confinement, &sink, "job1", 3, 1).expect("open");
    assert_eq!(opened.writer(), crate::sink_writer_id("job1", "sink", 1));
}
