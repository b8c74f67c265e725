//! History beyond the topic's retention: an archive job copies the topic's records with their
//! partitions, offsets, timestamps and keys into Parquet files on a real S3 server (SeaweedFS;
//! a raw Kafka source with its metadata columns into the parquet sink) while the first half of the clicks is in the topic.
//! The reference job with `history` set to the archive, started from the earliest offset,
//! reads the first half from the archive and the second half from the topic at the next
//! offset of each partition, and its hourly counts equal those of the whole stream: exactly,
//! every window once, the windows spanning the switch included. (Tansu 0.6 closes the
//! connection on DeleteRecords, so the broker cannot be made to forget the first half here;
//! the choice of archive or topic by the topic's first offset is unit-tested in
//! `kappa_connectors::kafka::history::phase`.)

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{START, clicks, hourly_counts, rest_and_closing, spread};
use kappa_integration_tests::s3::S3Server;
use kappa_integration_tests::{eventually, reference_job};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const PARTITIONS: i32 = 2;
/// Where the archive is, in the bucket `lake`.
const PREFIX: &str = "archive/clicks";

/// The archive job: every record of `clicks` with its Kafka fields into Parquet files, one
/// directory per partition, committed at each checkpoint.
fn archive_job(bootstrap: &str, archive: &str) -> String {
    format!(
        r#"name = "archive-clicks"
parallelism = 2

[source]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "clicks"
format = "raw"
start = "earliest"

[source.metadata]
partition = "partition"
offset = "offset"
timestamp = "timestamp"
key = "key"

[sink]
connector = "parquet"
path = "{archive}"
partition_by = "partition={{partition}}"

[checkpoints]
interval = "500ms"
"#
    )
}

/// Every committed archive file's rows (`*.parquet` outside `_` directories under the
/// prefix): partition → offsets, in file order.
fn archived(s3: &S3Server) -> Result<BTreeMap<i32, Vec<i64>>, String> {
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let objects = s3.objects(PREFIX).map_err(|e| e.to_string())?;
    for (name, bytes) in objects {
        let hidden = name.split('/').any(|part| part.starts_with(['_', '.']));
        if !name.ends_with(".parquet") || hidden {
            continue;
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| format!("{name}: {e}"))?;
        for batch in reader {
            let batch: RecordBatch = batch.map_err(|e| e.to_string())?;
            let column = |n: &str| batch.column_by_name(n).ok_or(format!("{name}: no {n}"));
            let partitions = column("partition")?.as_primitive::<Int32Type>().clone();
            let offsets = column("offset")?.as_primitive::<Int64Type>().clone();
            for (p, o) in partitions.values().iter().zip(offsets.values()) {
                out.entry(*p).or_default().push(*o);
            }
        }
    }
    Ok(out)
}

#[test]
fn the_archive_then_the_topic_replay_to_the_results_of_the_whole_stream() {
    let dir = tempfile::tempdir().expect("tmp");
    let s3 = S3Server::start("lake").expect("SeaweedFS");
    let archive = format!("s3://lake/{PREFIX}");
    let broker = Broker::start().expect("broker");
    let data = clicks(4_000, 71, START, 6, 40);
    let expected = hourly_counts(&data, |u| u > 50);
    let (first, rest) = data.split_at(data.len() / 2);
    broker.create_topic("clicks", PARTITIONS).expect("topic");
    broker
        .create_topic("out", kappa_integration_tests::SINK_PARTITIONS)
        .expect("topic");
    let first_records = spread(first, PARTITIONS);
    broker.produce("clicks", &first_records).expect("produce");
    // Offsets 0..n of each partition (Tansu's ListOffsets may lag right after a produce).
    let ends: Vec<(i64, i64)> = (0..PARTITIONS)
        .map(|p| {
            (
                0,
                first_records.iter().filter(|(q, _)| *q == p).count() as i64,
            )
        })
        .collect();

    let checkpoints = dir.path().join("checkpoints");
    let cluster = Cluster::local_with_env(
        4,
        &[
            "--checkpoint-dir",
            checkpoints.to_str().expect("utf-8"),
            "--allow-path",
            "s3://lake",
            "--allow-path",
            dir.path().to_str().expect("utf-8"),
        ],
        &s3.env(),
    )
    .expect("cluster");
    let archiving = cluster
        .submit(&archive_job(&broker.bootstrap, &archive), &[])
        .expect("submit the archive job");
    // The archive holds every offset of the first half, each once, in order per partition.
    eventually("the first half archived", Duration::from_secs(90), || {
        let got = archived(&s3)?;
        let complete = (0..PARTITIONS).all(|p| {
            let mut offsets = got.get(&p).cloned().unwrap_or_default();
            offsets.sort_unstable();
            offsets == (ends[p as usize].0..ends[p as usize].1).collect::<Vec<_>>()
        });
        match complete {
            true => Ok(()),
            false => Err(format!(
                "{:?} of {ends:?}",
                got.iter().map(|(p, o)| (p, o.len())).collect::<Vec<_>>()
            )),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_text()));
    cluster.kappactl(&["cancel", &archiving]);

    broker
        .produce("clicks", &rest_and_closing(rest, &data, PARTITIONS))
        .expect("produce the second half");

    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2).replacen(
        "topic = \"clicks\"",
        &format!("topic = \"clicks\"\nhistory = \"{archive}\""),
        1,
    );
    assert!(job.contains("history ="), "{job}");
    let id = cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit");
    let records = broker
        .read_results("out", &expected, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_text()));
    kappa_integration_tests::reference::assert_final_counts(&records, &expected);
    // Each window once: the hand-over from archive to topic neither repeated nor dropped one.
    assert_eq!(records.len(), expected.len(), "{records:?}");
    // Every partition was read from the archive, then from the topic at the offset after
    // the first half.
    let log = cluster.log_text();
    for (p, (_, end)) in ends.iter().enumerate() {
        let switched = format!("partition={p} offset=Some({end})");
        assert!(
            log.lines()
                .any(|l| l.contains("the partition's archive ends") && l.contains(&switched)),
            "no switch of partition {p} at {end}:\n{log}"
        );
    }
    let status = cluster.job(&id).expect("status");
    assert_eq!(status["state"], "RUNNING", "{status}");

    // An upgrade's plan counts what v2 would replay from the archive: offsets 0..999 of
    // both partitions.
    let v2 = dir.path().join("v2.toml");
    std::fs::write(&v2, job.replace("> 50", "> 70")).expect("write v2");
    let out = cluster.kappactl(&["upgrade", &id, v2.to_str().expect("utf-8"), "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archived: i64 = ends.iter().map(|(from, to)| to - from).sum();
    assert!(
        text.contains(&format!("{archived} of them from its history archive")),
        "{text}"
    );
}
