//! A change stream end to end: Debezium JSON change events of an `orders` table (inserts,
//! updates that change an order's customer, amount or status, deletes, snapshot reads,
//! tombstones, events in Kafka Connect's schema envelope, and bad events), read by
//! examples/debezium-orders.toml on a jobmanager and two taskmanagers with checkpoints every
//! second and one taskmanager killed with SIGKILL in the middle. PostgreSQL ends up holding
//! exactly the orders still there, and each customer's count and total of its orders not
//! cancelled; customers left without such orders are deleted. A keyed kafka sink added to the
//! job writes the orders with a tombstone per delete: the topic's latest value per key (as
//! log compaction keeps it) is exactly the orders still there. So are the keys of a redis sink
//! (Debian's redis-server) that SETs each order and DELs it when it is deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_integration_tests::broker::{Broker, Record};
use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::postgres::Postgres;
use kappa_integration_tests::recovery::{first_checkpoint, kill_a_taskmanager};
use kappa_integration_tests::redis::{self, Redis};
use kappa_integration_tests::{eventually, repo_root};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const TOPIC: &str = "shop.public.orders";
const PARTITIONS: i32 = 4;

/// An order as its table holds it.
#[derive(Debug, Clone, PartialEq)]
struct Order {
    customer: String,
    amount: i64,
    status: &'static str,
}

impl Order {
    fn row(&self, id: i64) -> Value {
        json!({"order_id": id, "customer": self.customer, "amount": self.amount, "status": self.status})
    }
}

/// A record to produce: (partition, value).
type Produced = (i32, Vec<u8>);

/// The change history of the table, as Debezium writes it to the topic: (partition, value),
/// every change of an order in its partition (Debezium keys by the primary key), and the
/// table it leaves.
fn history(seed: u64, changes: usize) -> (Vec<Produced>, BTreeMap<i64, Order>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut table: BTreeMap<i64, Order> = BTreeMap::new();
    let mut records = Vec::new();
    let mut next = 1i64;
    let order = |rng: &mut StdRng| Order {
        customer: format!("c{}", rng.random_range(0..12)),
        amount: rng.random_range(1..500),
        status: STATUSES[rng.random_range(0..4)],
    };
    let partition = |id: i64| (id % i64::from(PARTITIONS)) as i32;
    // A snapshot of the rows already there when the connector started.
    for _ in 0..50 {
        let o = order(&mut rng);
        let event = json!({"before": null, "after": o.row(next), "op": "r", "ts_ms": 1});
        records.push((partition(next), event.to_string().into_bytes()));
        table.insert(next, o);
        next += 1;
    }
    for i in 0..changes {
        let existing = match table.is_empty() {
            true => None,
            false => table.keys().copied().nth(rng.random_range(0..table.len())),
        };
        let (id, event) = match (rng.random_range(0..10), existing) {
            (0..=2, Some(id)) => {
                let before = table[&id].clone();
                let mut after = before.clone();
                match rng.random_range(0..3) {
                    0 => after.customer = format!("c{}", rng.random_range(0..12)),
                    1 => after.amount = rng.random_range(1..500),
                    _ => after.status = STATUSES[rng.random_range(0..4)],
                }
                let event = json!({"before": before.row(id), "after": after.row(id), "op": "u"});
                table.insert(id, after);
                (id, event)
            }
            (3..=4, Some(id)) => {
                let before = table.remove(&id).expect("existing");
                (
                    id,
                    json!({"before": before.row(id), "after": null, "op": "d"}),
                )
            }
            _ => {
                let o = order(&mut rng);
                let event = json!({"before": null, "after": o.row(next), "op": "c"});
                table.insert(next, o);
                next += 1;
                (next - 1, event)
            }
        };
        // Some events in the JsonConverter's envelope, as with schemas.enable=true.
        let event = match i % 7 {
            0 => {
                json!({"schema": {"type": "struct", "name": "shop.public.orders.Envelope"}, "payload": event})
            }
            _ => event,
        };
        let deleted = event.to_string().contains("\"op\":\"d\"");
        records.push((partition(id), event.to_string().into_bytes()));
        if deleted {
            // The tombstone Debezium writes after a delete, for log compaction.
            records.push((partition(id), Vec::new()));
        }
        if i % 500 == 250 {
            // A bad event (no op); the job skips it (on_error = "skip").
            records.push((partition(id), br#"{"after":{"order_id":1}}"#.to_vec()));
        }
    }
    (records, table)
}

/// Each customer's (orders, total) of its orders not cancelled.
fn totals(table: &BTreeMap<i64, Order>) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for o in table.values().filter(|o| o.status != "cancelled") {
        let t = out.entry(o.customer.clone()).or_default();
        t.0 += 1;
        t.1 += o.amount;
    }
    out
}

const STATUSES: [&str; 4] = ["new", "paid", "shipped", "cancelled"];

/// An order's id and order from a row written by the job (a JSON object).
fn order_of(row: &Value) -> Result<(i64, Order), String> {
    let status = STATUSES
        .into_iter()
        .find(|s| row["status"] == *s)
        .ok_or(format!("the status of {row}"))?;
    let order = Order {
        customer: row["customer"].as_str().unwrap_or_default().to_string(),
        amount: row["amount"].as_i64().unwrap_or(-1),
        status,
    };
    Ok((row["order_id"].as_i64().unwrap_or(-1), order))
}

/// The copy of the orders in PostgreSQL.
fn copy_of(pg: &Postgres) -> Result<BTreeMap<i64, Order>, String> {
    let rows = pg.rows("orders_copy").map_err(|e| e.to_string())?;
    rows.values().map(order_of).collect()
}

/// Each customer's (orders, total) in PostgreSQL.
fn totals_in(pg: &Postgres) -> Result<BTreeMap<String, (i64, i64)>, String> {
    let rows = pg.rows("customer_totals").map_err(|e| e.to_string())?;
    Ok(rows
        .values()
        .map(|r| {
            (
                r["customer"].as_str().unwrap_or_default().to_string(),
                (
                    r["orders"].as_i64().unwrap_or(-1),
                    r["total"].as_i64().unwrap_or(-1),
                ),
            )
        })
        .collect())
}

#[test]
fn a_debezium_change_stream_keeps_a_copy_and_totals_exact_across_a_taskmanager_kill() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let (records, table) = history(seed, 4_000);
    let expected_totals = totals(&table);
    assert!(
        expected_totals.len() > 3 && table.values().any(|o| o.status == "cancelled"),
        "seed {seed}: a history worth checking"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let pg = Postgres::start().expect("postgres");
    pg.execute(
        "CREATE TABLE orders_copy (id text PRIMARY KEY, order_id bigint, customer text, amount bigint, status text);
         CREATE TABLE customer_totals (id text PRIMARY KEY, customer text, orders bigint, total bigint);",
    )
    .expect("create tables");
    let broker = Broker::start().expect("broker");
    let redis = Redis::start().expect("redis");
    broker.create_topic(TOPIC, PARTITIONS).expect("topic");
    broker
        .create_topic("orders-log", PARTITIONS)
        .expect("topic");
    let (first, rest) = records.split_at(records.len() / 2);
    let produce = |r: &[Produced]| {
        let refs: Vec<(i32, &[u8])> = r.iter().map(|(p, v)| (*p, v.as_slice())).collect();
        broker.produce_bytes(TOPIC, &refs).expect("produce");
    };
    produce(first);

    let checkpoints = dir.path().join("checkpoints");
    let cluster = Cluster::jobmanager(&["--checkpoint-dir", checkpoints.to_str().expect("utf-8")])
        .expect("jobmanager");
    let mut tms: Vec<Process> = (0..2)
        .map(|_| cluster.taskmanager(2).expect("taskmanager"))
        .collect();
    let example = std::fs::read_to_string(repo_root().join("examples/debezium-orders.toml"))
        .expect("the example");
    let job = example
        .replace("127.0.0.1:9092", &broker.bootstrap)
        .replace("postgres://kappa@127.0.0.1:5432/shop", &pg.url)
        .replace("interval = \"10s\"", "interval = \"1s\"")
        + &format!(
            r#"
[restart]
strategy = "fixed-delay"
delay = "200ms"

[sinks.orders_log]
connector = "kafka"
bootstrap_servers = "{}"
topic = "orders-log"
key = "{{order_id}}"

[[queries]]
sql = "INSERT INTO orders_log SELECT order_id, customer, amount, status FROM orders"

[sinks.orders_cache]
connector = "redis"
url = "redis://:{}@127.0.0.1:{}/0"
key = "order:{{order_id}}"

[[queries]]
sql = "INSERT INTO orders_cache SELECT order_id, customer, amount, status FROM orders"
"#,
            broker.bootstrap,
            redis::PASSWORD,
            redis.port
        );
    assert!(
        job.contains(&pg.url) && job.contains("interval = \"1s\""),
        "{job}"
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    let logs = |tms: &[Process]| -> String {
        let tms: Vec<String> = tms.iter().map(Process::log_text).collect();
        format!("{}\n{}", cluster.log_text(), tms.join("\n"))
    };
    // Some changes are in PostgreSQL and a checkpoint is taken before the kill.
    first_checkpoint(&cluster, &id);
    eventually(
        "rows in the copy",
        Duration::from_secs(90),
        || match copy_of(&pg)?.len() {
            0 => Err("no rows".into()),
            _ => Ok(()),
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&tms)));
    kill_a_taskmanager(&cluster, &mut tms, &id);
    produce(rest);

    eventually(
        "the table's copy and totals",
        Duration::from_secs(180),
        || {
            let copy = copy_of(&pg)?;
            let got = totals_in(&pg)?;
            match (copy == table, got == expected_totals) {
                (true, true) => Ok(()),
                (c, t) => Err(format!(
                    "copy {} rows (want {}, equal: {c}), totals {} customers (want {}, equal: {t})",
                    copy.len(),
                    table.len(),
                    got.len(),
                    expected_totals.len()
                )),
            }
        },
    )
    .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", logs(&tms)));
    // The kafka sink's latest value per key, a tombstone deleting it, is the table.
    let latest = |records: &[Record]| -> Result<BTreeMap<i64, Order>, String> {
        let mut by_key: BTreeMap<String, &str> = BTreeMap::new();
        for r in records {
            let key = r.key.clone().ok_or("a record without a key")?;
            match r.value.is_empty() {
                true => by_key.remove(&key),
                false => by_key.insert(key, &r.value),
            };
        }
        by_key
            .values()
            .map(|v| order_of(&serde_json::from_str(v).map_err(|e| e.to_string())?))
            .collect()
    };
    let records = broker
        .read("orders-log", PARTITIONS, Duration::from_secs(60), |r| {
            latest(r).is_ok_and(|m| m == table)
        })
        .expect("read the log");
    assert_eq!(latest(&records), Ok(table.clone()), "seed {seed}");
    assert!(
        records.iter().any(|r| r.value.is_empty()),
        "tombstones for deleted orders"
    );
    // The redis sink's keys are the orders left (a deleted order's key DEL'd), each with its
    // row; the rows of a sample are read back with redis-cli.
    let keys = eventually("the redis keys", Duration::from_secs(60), || {
        let keys = redis.keys("order:*").map_err(|e| e.to_string())?;
        let want: Vec<String> = table.keys().map(|id| format!("order:{id}")).collect();
        let mut sorted = want.clone();
        sorted.sort();
        match keys == sorted {
            true => Ok(keys),
            false => Err(format!("{} keys, {} orders", keys.len(), want.len())),
        }
    })
    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    for key in keys.iter().step_by(keys.len() / 20 + 1) {
        let json = redis.cli(&["GET", key]).expect("GET");
        let row: Value = serde_json::from_str(json.trim()).expect("a JSON row");
        let (id, order) = order_of(&row).expect("an order");
        assert_eq!(Some(&order), table.get(&id), "{key}: seed {seed}");
    }
    // Deleted orders are gone from the copy, not only updated.
    let ids: Vec<String> = pg.rows("orders_copy").expect("rows").into_keys().collect();
    assert_eq!(ids.len(), table.len(), "seed {seed}");
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
}
