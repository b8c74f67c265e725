//! The sink side of `kappactl upgrade` against a private PostgreSQL server and a real broker
//! (Tansu). PostgreSQL: the shadow table is created like the live one in its schema; the swap
//! makes the live table equal the shadow with exact counts, rewrites no unchanged row, keeps
//! v1's rows in the backup, shows v2 through a view on the live table, runs once, keeps
//! live-only rows unless told to delete them, and a reader polling during a swap of 20 000 rows
//! sees all of v1 or all of v2, never a mix. Kafka: the shadow topic gets the live topic's
//! partitions; the diff keeps the latest committed value per key; the corrections land in one
//! transaction (a failed one shows nothing) at the partitions the sink's own producer picks
//! for their keys, with the commit markers; topics are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kappa_connectors::kafka::sink::TopicProducer;
use kappa_connectors::upgrade::UpgradeSinkError;
use kappa_connectors::upgrade::kafka::{
    Correction, Latest, committed_markers, create_shadow_topic, delete_topic, latest_per_key,
    write_corrections,
};
use kappa_connectors::upgrade::postgres::{
    SwapCounts, SwapOutcome, create_shadow, drop_table, rows, swap,
};
use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::postgres::{DATABASE, PASSWORD, Postgres, USER};
use kappa_job::kafka::KafkaConnection;
use kappa_job::secret::Secret;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The tables of the tests: a text id, a value, a note with a default, an index.
fn create_table(pg: &Postgres, name: &str) {
    pg.execute(&format!(
        "CREATE TABLE {name} (id text PRIMARY KEY, item text NOT NULL, value bigint NOT NULL, \
         note text DEFAULT 'none'); CREATE INDEX ON {name} (item)"
    ))
    .expect("create table");
}

/// Inserts rows (id, value), each for item `item-<id>`.
fn insert(pg: &Postgres, table: &str, rows: &[(&str, i64)]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(id, v)| format!("('{id}', 'item-{id}', {v})"))
        .collect();
    pg.execute(&format!(
        "INSERT INTO {table} (id, item, value) VALUES {}",
        values.join(", ")
    ))
    .expect("insert");
}

/// id → value of a table.
fn values(pg: &Postgres, table: &str) -> BTreeMap<String, i64> {
    pg.rows(table)
        .expect("rows")
        .into_iter()
        .map(|(id, row)| (id, row["value"].as_i64().expect("a value")))
        .collect()
}

fn exists(pg: &Postgres, table: &str) -> bool {
    let row = pg
        .client()
        .expect("client")
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .expect("to_regclass");
    row.get(0)
}

/// The columns of a table (name, type, not null, default) and its primary key columns.
fn shape(pg: &Postgres, table: &str) -> (Vec<String>, Vec<String>) {
    let mut client = pg.client().expect("client");
    let columns = client
        .query(
            "SELECT attname::text || ' ' || format_type(atttypid, atttypmod) || \
             CASE WHEN attnotnull THEN ' not null' ELSE '' END || \
             coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&table],
        )
        .expect("columns")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let key = client
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
            &[&table],
        )
        .expect("primary key")
        .iter()
        .map(|r| r.get(0))
        .collect();
    (columns, key)
}

#[test]
fn a_shadow_table_is_created_like_the_live_one_in_its_schema() {
    let pg = Postgres::start().expect("postgres");
    pg.execute("CREATE SCHEMA analytics").expect("schema");
    create_table(&pg, "analytics.clicks");
    let (live, shadow) = ("analytics.clicks", "analytics.clicks__u1234abcd");
    create_shadow(&pg.url, None, live, shadow).expect("create shadow");
    // The password given apart from the url, as a sink's `password`; a second call changes
    // nothing.
    let without_password = format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", pg.port);
    let password = Secret::Literal(PASSWORD.into());
    create_shadow(&without_password, Some(&password), live, shadow).expect("again");
    assert!(
        exists(&pg, "analytics.clicks__u1234abcd"),
        "in the live table's schema"
    );
    assert!(!exists(&pg, "public.clicks__u1234abcd"));
    let (columns, key) = shape(&pg, shadow);
    assert_eq!(
        (&columns, &key),
        (&shape(&pg, live).0, &vec!["id".to_string()])
    );
    assert_eq!(
        columns,
        [
            "id text not null",
            "item text not null",
            "value bigint not null",
            "note text default 'none'::text"
        ]
    );
    insert(&pg, shadow, &[("a", 2)]);
    assert_eq!(
        rows(&pg.url, None, shadow).expect("rows"),
        BTreeMap::from([(
            "a".to_string(),
            json!({"item": "item-a", "value": 2, "note": "none"})
        )]),
        "rows of the diff: the other columns by id"
    );

    let missing = create_shadow(&pg.url, None, "analytics.nope", "analytics.nope__u1").unwrap_err();
    assert!(
        matches!(&missing, UpgradeSinkError::NoTable { table, .. } if table == "analytics.nope"),
        "{missing}"
    );
    assert!(!missing.retryable());
    let bad = create_shadow(&pg.url, None, live, "clicks; DROP TABLE x").unwrap_err();
    assert!(matches!(bad, UpgradeSinkError::BadName { .. }), "{bad}");
    assert!(!bad.retryable());
    let wrong = format!(
        "postgres://{USER}:wrong-pw-4711@127.0.0.1:{}/{DATABASE}",
        pg.port
    );
    let refused = create_shadow(&wrong, None, live, shadow).unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, UpgradeSinkError::Task { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "cannot connect to postgres at 127.0.0.1:{}/{DATABASE}",
            pg.port
        )),
        "{message}"
    );
    assert!(!message.contains("wrong-pw-4711"), "{message}");
}

/// The transaction id that last wrote the row `id` of `table`.
fn xmin(pg: &Postgres, table: &str, id: &str) -> String {
    let row = pg
        .client()
        .expect("client")
        .query_one(
            &format!("SELECT xmin::text FROM {table} WHERE id = $1"),
            &[&id],
        )
        .expect("xmin");
    row.get(0)
}

#[test]
fn a_swap_makes_the_live_table_equal_the_shadow_keeps_v1_in_the_backup_and_runs_once() {
    let pg = Postgres::start().expect("postgres");
    create_table(&pg, "clicks");
    pg.execute("CREATE VIEW clicks_tenfold AS SELECT id, value * 10 AS tenfold FROM clicks")
        .expect("view");
    insert(&pg, "clicks", &[("a", 1), ("b", 1), ("c", 1)]);
    let (live, shadow, backup) = ("clicks", "clicks__u1", "clicks__u1_backup");
    create_shadow(&pg.url, None, live, shadow).expect("create shadow");
    insert(&pg, shadow, &[("a", 1), ("b", 2), ("d", 2)]);
    let v1 = rows(&pg.url, None, live).expect("live rows");
    let v2 = rows(&pg.url, None, shadow).expect("shadow rows");
    let unchanged = xmin(&pg, live, "a");

    let outcome = swap(&pg.url, None, live, shadow, backup, true).expect("swap");
    assert_eq!(
        outcome,
        SwapOutcome::Swapped(SwapCounts {
            inserted: 1,
            updated: 1,
            deleted: 1
        })
    );
    assert_eq!(rows(&pg.url, None, live).expect("live rows"), v2);
    assert_eq!(rows(&pg.url, None, backup).expect("backup rows"), v1);
    assert_eq!(
        xmin(&pg, live, "a"),
        unchanged,
        "an unchanged row is not rewritten"
    );
    assert!(!exists(&pg, shadow), "the shadow is dropped");
    let tenfold: BTreeMap<String, i64> = pg
        .client()
        .expect("client")
        .query("SELECT id, tenfold FROM clicks_tenfold", &[])
        .expect("view")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        tenfold,
        BTreeMap::from([("a".into(), 10), ("b".into(), 20), ("d".into(), 20)]),
        "the view on the live table shows v2"
    );

    // A retry after a crash after the commit: nothing happens.
    let again = swap(&pg.url, None, live, shadow, backup, true).expect("swap again");
    assert_eq!(again, SwapOutcome::AlreadySwapped);
    assert_eq!(rows(&pg.url, None, live).expect("live rows"), v2);
    assert_eq!(rows(&pg.url, None, backup).expect("backup rows"), v1);

    // Without a shadow or backup there is nothing to swap; with both, the backup would be lost.
    let e = swap(&pg.url, None, live, "clicks__u2", "clicks__u2_backup", true).unwrap_err();
    assert!(matches!(e, UpgradeSinkError::NoShadowTable { .. }), "{e}");
    assert!(!e.retryable());
    create_shadow(&pg.url, None, live, "clicks__u3").expect("create shadow");
    let e = swap(&pg.url, None, live, "clicks__u3", backup, true).unwrap_err();
    assert!(matches!(e, UpgradeSinkError::BackupExists { .. }), "{e}");
    assert!(exists(&pg, "clicks__u3"), "a refused swap changes nothing");

    for table in [backup, backup, "clicks__u3"] {
        drop_table(&pg.url, None, table).expect("drop");
    }
    assert!(!exists(&pg, backup) && !exists(&pg, "clicks__u3"));
    assert_eq!(values(&pg, live).len(), 3, "the live table stays");
}

#[test]
fn without_delete_vanished_the_rows_only_the_live_table_has_stay() {
    let pg = Postgres::start().expect("postgres");
    create_table(&pg, "clicks");
    insert(&pg, "clicks", &[("a", 1), ("c", 1)]);
    create_shadow(&pg.url, None, "clicks", "clicks__u1").expect("create shadow");
    insert(&pg, "clicks__u1", &[("a", 2), ("e", 2)]);
    let outcome = swap(&pg.url, None, "clicks", "clicks__u1", "clicks__b", false).expect("swap");
    assert_eq!(
        outcome,
        SwapOutcome::Swapped(SwapCounts {
            inserted: 1,
            updated: 1,
            deleted: 0
        })
    );
    assert_eq!(
        values(&pg, "clicks"),
        BTreeMap::from([("a".into(), 2), ("c".into(), 1), ("e".into(), 2)])
    );
}

#[test]
fn a_reader_polling_during_a_swap_sees_all_of_v1_or_all_of_v2() {
    const ROWS: i64 = 20_000;
    let pg = Postgres::start().expect("postgres");
    create_table(&pg, "readings");
    create_shadow(&pg.url, None, "readings", "readings__u1").expect("create shadow");
    // v2 drops the first half of v1's ids, changes the second and adds as many: each of the
    // swap's deletes, updates and inserts alone would show a mix.
    let half = ROWS / 2;
    pg.execute(&format!(
        "INSERT INTO readings (id, item, value) SELECT 'r' || i, 'item', 1 FROM generate_series(1, {ROWS}) i; \
         INSERT INTO readings__u1 (id, item, value) SELECT 'r' || i, 'item', 2 FROM generate_series({half} + 1, {ROWS} + {half}) i"
    ))
    .expect("rows");
    let stop = Arc::new(AtomicBool::new(false));
    let (started, reading) = std::sync::mpsc::channel();
    let mut client = pg.client().expect("client");
    let reader = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut seen: Vec<(i64, i64)> = Vec::new();
            loop {
                // Once stopped, one more read: after the swap.
                let last = stop.load(Ordering::SeqCst);
                let row = client
                    .query_one(
                        "SELECT count(*) FILTER (WHERE value = 1), \
                         count(*) FILTER (WHERE value = 2) FROM readings",
                        &[],
                    )
                    .expect("read");
                seen.push((row.get(0), row.get(1)));
                if seen.len() == 1 {
                    let _ = started.send(());
                }
                if last {
                    return seen;
                }
            }
        }
    });
    reading.recv().expect("the reader started");
    let began = Instant::now();
    let outcome = swap(
        &pg.url,
        None,
        "readings",
        "readings__u1",
        "readings__b",
        true,
    );
    let took = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    let seen = reader.join().expect("reader");
    assert_eq!(
        outcome.expect("swap"),
        SwapOutcome::Swapped(SwapCounts {
            inserted: half as u64,
            updated: half as u64,
            deleted: half as u64
        })
    );
    eprintln!("{} reads, the swap took {took:?}", seen.len());
    let mixed: Vec<&(i64, i64)> = seen
        .iter()
        .filter(|&&s| s != (ROWS, 0) && s != (0, ROWS))
        .collect();
    assert!(
        mixed.is_empty(),
        "{} of {} reads saw neither all of v1 nor all of v2 (v1 rows, v2 rows), e.g. {:?}",
        mixed.len(),
        seen.len(),
        mixed.first()
    );
    assert_eq!(seen.first(), Some(&(ROWS, 0)), "v1 before the swap");
    assert_eq!(seen.last(), Some(&(0, ROWS)), "v2 after it");
}

/// One record read back.
struct Read {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// Every committed record of `topic` (partitions `0..partitions`), read to the end of each
/// partition, and where each partition ends (the offset after its last record or transaction
/// marker).
fn read_to_end(broker: &Broker, topic: &str, partitions: i32) -> (Vec<Read>, BTreeMap<i32, i64>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "upgrade-sinks-test")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let (mut out, mut at_end) = (Vec::new(), std::collections::BTreeSet::new());
    let deadline = Instant::now() + TIMEOUT;
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < deadline, "reading `{topic}` did not end");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().expect("a key").to_vec(),
                value: m.payload().map(<[u8]>::to_vec),
            }),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("test consumer: {e}"),
            None => {}
        }
    }
    let ends = consumer
        .position()
        .expect("positions")
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), o),
            other => panic!("partition {} ends at {other:?}", e.partition()),
        })
        .collect();
    (out, ends)
}

fn producer(broker: &Broker) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .expect("producer")
}

fn send(p: &BaseProducer, topic: &str, key: Option<&str>, value: Option<&str>) {
    let mut record = BaseRecord::<str, str>::to(topic);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    p.send(record).map_err(|(e, _)| e).expect("send");
}

fn partition_count(broker: &Broker, topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .expect("client");
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

/// An admin client of the test and a runtime to wait for its requests.
fn admin(broker: &Broker) -> (AdminClient<DefaultClientContext>, tokio::runtime::Runtime) {
    let admin = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (admin, runtime)
}

/// The `cleanup.policy` the broker describes for `topic`.
fn cleanup_policy(broker: &Broker, topic: &str) -> Option<String> {
    let (admin, runtime) = admin(broker);
    let described = runtime.block_on(admin.describe_configs(
        &[ResourceSpecifier::Topic(topic)],
        &AdminOptions::new().request_timeout(Some(TIMEOUT)),
    ));
    let resource = described.ok()?.into_iter().next()?.ok()?;
    resource.get("cleanup.policy")?.value.clone()
}

#[test]
fn a_shadow_topic_gets_the_live_topics_partitions_and_is_deleted() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("hourly", 3).expect("topic");
    let connection = KafkaConnection::plaintext(&broker.bootstrap);
    create_shadow_topic(&connection, "hourly", "hourly.u1", TIMEOUT).expect("shadow topic");
    create_shadow_topic(&connection, "hourly", "hourly.u1", TIMEOUT).expect("again");
    assert_eq!(partition_count(&broker, "hourly.u1"), 3);

    let e = create_shadow_topic(&connection, "missing", "missing.u1", TIMEOUT).unwrap_err();
    assert!(
        matches!(&e, UpgradeSinkError::NoTopic { topic, .. } if topic == "missing"),
        "{e}"
    );
    assert!(!e.retryable());
    assert_eq!(
        partition_count(&broker, "missing"),
        0,
        "looking the live topic up does not create it"
    );

    // A compacted live topic: so is its shadow.
    let (admin, runtime) = admin(&broker);
    let compacted =
        NewTopic::new("latest", 2, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    for created in runtime
        .block_on(admin.create_topics(&[compacted], &AdminOptions::new()))
        .expect("create topic")
    {
        created.expect("compacted topic");
    }
    assert_eq!(
        cleanup_policy(&broker, "latest").as_deref(),
        Some("compact")
    );
    create_shadow_topic(&connection, "latest", "latest.u1", TIMEOUT).expect("shadow topic");
    assert_eq!(
        cleanup_policy(&broker, "latest.u1").as_deref(),
        Some("compact")
    );
    assert_eq!(partition_count(&broker, "latest.u1"), 2);

    delete_topic(&connection, "hourly.u1", TIMEOUT).expect("delete");
    kappa_integration_tests::eventually("the shadow topic is gone", TIMEOUT, || {
        match partition_count(&broker, "hourly.u1") {
            0 => Ok(()),
            n => Err(format!("{n} partitions")),
        }
    })
    .expect("deleted");
    delete_topic(&connection, "hourly.u1", TIMEOUT).expect("a missing topic is no error");
    assert_eq!(
        partition_count(&broker, "hourly"),
        3,
        "the live topic stays"
    );
}

#[test]
fn the_diff_reads_the_latest_committed_value_of_each_key() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("hourly", 3).expect("topic");
    let p = producer(&broker);
    // Many fetches' worth: 100 keys written 30 times each, the last value kept.
    let mut expected = BTreeMap::new();
    for i in 0..3_000 {
        let (key, value) = (format!("item-{}", i % 100), format!("{i}"));
        send(&p, "hourly", Some(&key), Some(&value));
        expected.insert(key.into_bytes(), value.into_bytes());
    }
    send(&p, "hourly", Some("k1"), Some("a"));
    send(&p, "hourly", Some("k2"), Some("b"));
    send(&p, "hourly", Some("k1"), Some("c"));
    send(&p, "hourly", Some("k3"), Some("d"));
    send(&p, "hourly", Some("k2"), None);
    send(&p, "hourly", None, Some("keyless"));
    p.flush(TIMEOUT).expect("flush");
    // (Records of aborted transactions are not tested here: Tansu shows them to
    // read_committed consumers, see tests/chaos.rs.)

    let connection = KafkaConnection::plaintext(&broker.bootstrap);
    let latest = latest_values(latest_per_key(&connection, "hourly", TIMEOUT).expect("diff"));
    expected.insert(b"k1".to_vec(), b"c".to_vec());
    expected.insert(b"k3".to_vec(), b"d".to_vec());
    assert_eq!(
        latest, expected,
        "k2 removed by its tombstone, no keyless record"
    );
    broker.create_topic("empty", 2).expect("topic");
    let empty = latest_per_key(&connection, "empty", TIMEOUT).expect("empty topic");
    assert!(empty.is_empty());
    let e = latest_per_key(&connection, "missing", TIMEOUT).unwrap_err();
    assert!(matches!(e, UpgradeSinkError::NoTopic { .. }), "{e}");
}

/// The latest value per key, without partitions.
fn latest_values(latest: BTreeMap<Vec<u8>, Latest>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    latest.into_iter().map(|(k, l)| (k, l.value)).collect()
}

/// The committed offset of `group` for partition 0 of `topic`.
fn marker(broker: &Broker, group: &str, topic: &str) -> Offset {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    committed
        .find_partition(topic, 0)
        .map_or(Offset::Invalid, |e| e.offset())
}

#[test]
fn corrections_land_in_one_transaction_where_the_sink_writes_their_keys_with_the_markers() {
    const PARTITIONS: i32 = 3;
    let broker = Broker::start().expect("broker");
    broker.create_topic("hourly", PARTITIONS).expect("topic");
    broker.create_topic("reference", PARTITIONS).expect("topic");
    let connection = KafkaConnection::plaintext(&broker.bootstrap);
    // Where the sink's own producer puts each key, and v1's value of `gone`.
    let keys: Vec<String> = (0..30).map(|i| format!("item-{i}")).collect();
    let sink = TopicProducer::new(&connection, "reference").expect("sink producer");
    for k in keys.iter().map(String::as_str).chain(["gone"]) {
        sink.send(Some(k.as_bytes()), b"v1", None, None)
            .expect("send");
    }
    sink.flush().expect("flush");
    let v1 = TopicProducer::new(&connection, "hourly").expect("sink producer");
    v1.send(Some(b"gone"), b"v1", None, None).expect("send");
    v1.flush().expect("flush");
    let sink_partition: BTreeMap<Vec<u8>, i32> = read_to_end(&broker, "reference", PARTITIONS)
        .0
        .into_iter()
        .map(|r| (r.key, r.partition))
        .collect();
    assert!(
        sink_partition
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1,
        "the keys spread over the partitions"
    );
    let markers = [
        ("kappa-j-sink-0".to_string(), 5),
        ("kappa-j-sink-1".to_string(), 7),
    ];
    let correction = |key: &[u8], value: Option<Vec<u8>>| Correction {
        key: key.to_vec(),
        value,
        partition: None,
    };
    let mut records: Vec<Correction> = keys
        .iter()
        .map(|k| correction(k.as_bytes(), Some(format!("v2 of {k}").into_bytes())))
        .collect();

    // A record too large fails the transaction, which is aborted: no record, no marker. (It
    // fails before the others leave: Tansu would show the records of an aborted transaction.)
    records.insert(0, correction(b"huge", Some(vec![b'x'; 2_000_000])));
    let e = write_corrections(
        &connection,
        "hourly",
        "kappa-j-upgrade",
        &records,
        &markers,
        TIMEOUT,
    )
    .unwrap_err();
    assert!(!e.retryable(), "{e}");
    records.remove(0);
    assert_eq!(
        latest_values(latest_per_key(&connection, "hourly", TIMEOUT).expect("diff")),
        BTreeMap::from([(b"gone".to_vec(), b"v1".to_vec())]),
        "nothing of the failed transaction is visible"
    );
    assert_eq!(marker(&broker, "kappa-j-sink-0", "hourly"), Offset::Invalid);

    // The tombstone goes where v1's record of `gone` is, wherever the partitioner would put it.
    let gone =
        latest_per_key(&connection, "hourly", TIMEOUT).expect("diff")[&b"gone".to_vec()].partition;
    let elsewhere = (gone + 1) % PARTITIONS;
    records.push(Correction {
        partition: Some(gone),
        ..correction(b"gone", None)
    });
    records.push(Correction {
        partition: Some(elsewhere),
        ..correction(b"placed", Some(b"here".to_vec()))
    });
    write_corrections(
        &connection,
        "hourly",
        "kappa-j-upgrade",
        &records,
        &markers,
        TIMEOUT,
    )
    .expect("corrections");
    let (written, ends) = read_to_end(&broker, "hourly", PARTITIONS);
    assert_eq!(
        written.len(),
        keys.len() + 3,
        "v1's record and every correction"
    );
    // One transaction: in each partition the corrections have consecutive offsets followed by
    // one transaction marker (more transactions would leave markers between them).
    let mut corrections: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &written {
        let key = String::from_utf8_lossy(&r.key);
        let placed = match key.as_ref() {
            "placed" => Some(&elsewhere),
            _ => sink_partition.get(&r.key),
        };
        assert_eq!(Some(&r.partition), placed, "partition of {key}");
        if r.value.as_deref() != Some(b"v1") {
            corrections.entry(r.partition).or_default().push(r.offset);
        }
    }
    assert_eq!(corrections.len(), PARTITIONS as usize);
    for (partition, offsets) in &corrections {
        let first = offsets[0];
        let consecutive: Vec<i64> = (first..first + offsets.len() as i64).collect();
        assert_eq!(offsets, &consecutive, "partition {partition}");
        assert_eq!(
            ends.get(partition),
            Some(&(first + offsets.len() as i64 + 1)),
            "partition {partition} ends with one transaction marker after the corrections"
        );
    }
    let latest = latest_values(latest_per_key(&connection, "hourly", TIMEOUT).expect("diff"));
    let expected: BTreeMap<Vec<u8>, Vec<u8>> = records
        .iter()
        .filter_map(|c| Some((c.key.clone(), c.value.clone()?)))
        .collect();
    assert_eq!(
        latest, expected,
        "v2's values; the tombstone removed `gone`"
    );
    for (group, offset) in &markers {
        assert_eq!(
            marker(&broker, group, "hourly"),
            Offset::Offset(*offset),
            "{group}"
        );
    }
    // The markers read back as the cut-over reads a shadow's, a writer without one left out.
    let writers: Vec<String> = ["kappa-j-sink-0", "kappa-j-sink-1", "kappa-j-sink-2"]
        .map(String::from)
        .into();
    assert_eq!(
        committed_markers(&connection, "hourly", &writers).expect("markers"),
        markers.to_vec()
    );
}
