//! `kappa bench changes`: examples/debezium-orders.toml over N Debezium change events of an
//! orders table (inserts, updates and deletes) in a Kafka topic (an embedded cluster, or
//! --bootstrap-servers), its two sinks replaced by blackholes: the copy of the table and the
//! per-customer totals that retract deleted rows. Prints events/s and events per CPU-second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use kappa_jobmanager::job::JobState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::Producer;

use super::{
    BenchArgs, MOCK_RECORDS_PER_PARTITION, bench_producer, bench_topic, report, report_checkpoints,
    send, start_cluster, submit, with_backend, with_checkpoints,
};

/// The example job, built into the binary.
const EXAMPLE: &str = include_str!("../../../../examples/debezium-orders.toml");

/// The topic the benchmark's change events are in.
const TOPIC: &str = "bench-orders";

/// An order: customer, amount, status.
type Order = (u32, i64, &'static str);

/// Writes `events` change events of a table of orders to [`TOPIC`] at `bootstrap`, every
/// change of an order in its partition; returns the rows they carry (an update carries two)
/// and how many of those are not cancelled (the rows the totals aggregate).
fn produce(bootstrap: &str, partitions: i32, events: u64) -> anyhow::Result<(u64, u64)> {
    let producer = bench_producer(bootstrap)?;
    // A fixed seed: every run reads the same history.
    let mut rng = StdRng::seed_from_u64(7);
    let mut table: BTreeMap<u64, Order> = BTreeMap::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut next = 0u64;
    let (mut rows, mut aggregated) = (0u64, 0u64);
    let statuses = ["new", "paid", "shipped", "cancelled"];
    let mut image = |id: u64, (customer, amount, status): Order| {
        rows += 1;
        aggregated += u64::from(status != "cancelled");
        format!(
            r#"{{"order_id":{id},"customer":"c{customer}","amount":{amount},"status":"{status}"}}"#
        )
    };
    for _ in 0..events {
        let pick = (!ids.is_empty()).then(|| rng.random_range(0..ids.len()));
        let new_order = |rng: &mut StdRng| -> Order {
            (
                rng.random_range(0..10_000),
                rng.random_range(1..500),
                statuses[rng.random_range(0..4)],
            )
        };
        let (id, event) = match (rng.random_range(0..10), pick) {
            (0..=2, Some(at)) => {
                let id = ids[at];
                let before = table[&id];
                let after = new_order(&mut rng);
                table.insert(id, after);
                let (b, a) = (image(id, before), image(id, after));
                (id, format!(r#"{{"before":{b},"after":{a},"op":"u"}}"#))
            }
            (3, Some(at)) => {
                let id = ids.swap_remove(at);
                let before = table.remove(&id).unwrap_or((0, 0, "new"));
                let b = image(id, before);
                (id, format!(r#"{{"before":{b},"after":null,"op":"d"}}"#))
            }
            _ => {
                let id = next;
                next += 1;
                let order = new_order(&mut rng);
                table.insert(id, order);
                ids.push(id);
                let a = image(id, order);
                (id, format!(r#"{{"before":null,"after":{a},"op":"c"}}"#))
            }
        };
        send(&producer, TOPIC, (id % partitions as u64) as i32, &event);
    }
    producer.flush(Duration::from_secs(60))?;
    Ok((rows, aggregated))
}

/// The example reading [`TOPIC`] at `bootstrap` into blackholes.
fn job(bootstrap: &str) -> String {
    let postgres = |table: &str, key: &str| {
        format!(
            "connector = \"postgres\"\nurl = \"postgres://kappa@127.0.0.1:5432/shop\"\ntable = \"{table}\"\nkey = \"{key}\""
        )
    };
    EXAMPLE
        .replace("127.0.0.1:9092", bootstrap)
        .replace(
            "topic = \"shop.public.orders\"",
            &format!("topic = \"{TOPIC}\""),
        )
        .replace(
            &postgres("orders_copy", "{order_id}"),
            "connector = \"blackhole\"",
        )
        .replace(
            &postgres("customer_totals", "{customer}"),
            "connector = \"blackhole\"",
        )
        .replace("[checkpoints]\ninterval = \"10s\"\n", "")
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // A change event is about four click events long: the embedded cluster keeps a quarter
    // as many per partition.
    let partitions = match args.bootstrap_servers {
        None => args
            .partitions
            .max(args.events.div_ceil(MOCK_RECORDS_PER_PARTITION / 4) as i32),
        Some(_) => args.partitions,
    };
    let (bootstrap, _embedded) = bench_topic(args, TOPIC, partitions).await?;
    let (rows, aggregated_rows) = produce(&bootstrap, partitions, args.events)?;
    let text = with_backend(args, with_checkpoints(args, job(&bootstrap)));
    if !text.contains("connector = \"blackhole\"") {
        bail!("the example's sinks were not replaced:\n{text}");
    }
    let dir = tempfile::tempdir()?;
    let (jm, taskmanagers) = start_cluster(args, dir.path()).await?;
    let started = submit(&jm, &taskmanagers, "bench.toml", &text, args.parallelism).await?;
    let job = &started.job;
    let mut last_report = Instant::now();
    // The source never finishes: stop once every row was read and aggregated.
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = job.detail();
        if d.summary.state == JobState::Failed {
            bail!("bench job failed: {}", d.summary.error.unwrap_or_default());
        }
        let read = d.vertices.first().map_or(0, |v| v.records_in);
        let aggregated = d.vertices.get(1).map_or(0, |v| v.records_in);
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            tracing::info!(read, aggregated, rows, "bench progress");
        }
        if read >= rows && aggregated >= aggregated_rows {
            job.request_cancel();
            break;
        }
    }
    let (wall, cpu) = started.took(&taskmanagers);
    while !job.state().is_terminal() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let what = format!(
        "debezium-orders ({rows} rows of change events), parallelism {}",
        args.parallelism
    );
    report(&what, args.events, wall, cpu);
    if let Some(history) = job.checkpoints.lock().as_ref().map(|c| c.history()) {
        report_checkpoints(&history);
    }
    Ok(())
}
