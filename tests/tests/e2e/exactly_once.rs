//! Exactly-once output against a real Kafka-protocol broker (Tansu): the transactional Kafka
//! sink commits each checkpoint's output once across crashes and fences zombies; a job with
//! `delivery = "exactly-once"` shows nothing before its checkpoint completes and then exactly
//! the reference, each window once, also after kill -9 of a taskmanager; the file sink's part
//! files appear by rename.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use kappa_connectors::kafka::transactional::{KafkaTarget, TransactionalKafkaSink};
use kappa_integration_tests::broker::Broker;
use kappa_job::kafka::KafkaConnection;
use kappa_job::template::KeyTemplate;
use kappa_runtime::io::{PendingCommit, Sink};

fn batch(keys: &[&str], n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(keys.to_vec())),
            Arc::new(Int64Array::from(vec![n; keys.len()])),
        ],
    )
    .expect("batch")
}

fn sink(broker: &Broker, writer: &str) -> TransactionalKafkaSink {
    let schema = batch(&[], 0).schema();
    let key = KeyTemplate::parse("{k}", &schema).expect("template");
    let target = KafkaTarget {
        connection: KafkaConnection::plaintext(&broker.bootstrap),
        topic: "eos".into(),
    };
    TransactionalKafkaSink::open(target, writer, Some(key), Some(0)).expect("open sink")
}

fn values(broker: &Broker, expect: usize) -> Vec<String> {
    let out = broker
        .read("eos", 1, Duration::from_secs(3), |r| r.len() >= expect)
        .expect("read");
    out.into_iter().map(|r| r.value).collect()
}

#[test]
fn a_transactional_sink_commits_each_checkpoint_once_across_crashes_and_fences_zombies() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("eos", 1).expect("topic");
    let mut first = sink(&broker, "w-0");
    first.write(&batch(&["a", "b"], 1)).expect("write");
    let c1 = first.prepare(1).expect("prepare").expect("output");
    assert!(
        values(&broker, 1).is_empty(),
        "nothing visible before the checkpoint completes"
    );
    first.commit(1).expect("commit 1");
    assert_eq!(values(&broker, 2).len(), 2);
    first.write(&batch(&["c"], 2)).expect("write");
    let c2 = first.prepare(2).expect("prepare").expect("output");
    first
        .write(&batch(&["d"], 3))
        .expect("write (never checkpointed)");
    // Crash: checkpoint 2 completed, its notification never arrived. The old writer lives on
    // as a zombie while the restarted one recovers from checkpoint 2.
    let pending = |n, data: &Vec<u8>| PendingCommit {
        writer: "w-0".into(),
        checkpoint: n,
        data: data.clone(),
    };
    let mut second = sink(&broker, "w-0");
    second
        .recover(vec![pending(1, &c1), pending(2, &c2)])
        .expect("recover");
    let mut seen = values(&broker, 3);
    seen.sort();
    assert_eq!(
        seen,
        [
            r#"{"k":"a","n":1}"#,
            r#"{"k":"b","n":1}"#,
            r#"{"k":"c","n":2}"#
        ],
        "checkpoint 1 is not committed again; 2 is committed once; the rest is dropped"
    );
    assert!(
        first.commit(2).is_err(),
        "the zombie is fenced: its commit fails"
    );
    // A second crash during recovery repeats nothing.
    let mut third = sink(&broker, "w-0");
    third
        .recover(vec![pending(1, &c1), pending(2, &c2)])
        .expect("recover again");
    third.write(&batch(&["e"], 4)).expect("write");
    let c3 = third.prepare(3).expect("prepare").expect("output");
    assert!(!c3.is_empty());
    third.commit(3).expect("commit 3");
    let seen = values(&broker, 4);
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[3], r#"{"k":"e","n":4}"#);
    // A job started from a savepoint holding checkpoint 3 of writer w-0 finds it committed:
    // it neither commits it again nor fences the job still running as w-0.
    let mut from_savepoint = sink(&broker, "w-1");
    from_savepoint
        .recover(vec![PendingCommit {
            writer: "w-0".into(),
            checkpoint: 3,
            data: c3,
        }])
        .expect("recover from a savepoint");
    third.write(&batch(&["f"], 5)).expect("write");
    third.prepare(4).expect("prepare");
    third.commit(4).expect("the running writer was not fenced");
    assert_eq!(values(&broker, 5).len(), 5);
}
