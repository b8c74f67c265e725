//! `kappa demo`: the reference job end to end with nothing to install — librdkafka's mock
//! Kafka cluster in-process, a click generator, `kappa local`, and a table of hourly counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use kappa_jobmanager::job::JobState;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::cluster::{LocalArgs, shutdown_signal, start_local};
use crate::generator::ClickGenerator;

/// The reference job of the article, as shipped in examples/.
pub const REFERENCE_JOB: &str = include_str!("../../../examples/hourly-item-clicks.toml");

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub local: LocalArgs,
    /// Click events generated per second.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// Event-time speed-up: 600 means one second of wall time is ten minutes of event time,
    /// so an hourly window closes every six seconds.
    #[arg(long, default_value_t = 600)]
    pub speed: u32,
    /// Stop after this many windows were shown (default: run until Ctrl-C).
    #[arg(long)]
    pub windows: Option<usize>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn utc(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', "")
}

/// Produces click events with an accelerated event-time clock until `stop`.
fn generate(bootstrap: String, rate: u32, speed: u32, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let mut clicks = ClickGenerator::new(42, 5_000);
    let hour = 3_600_000;
    // Start just after the top of an hour so the first window is a whole one.
    let event_start = now_ms() / hour * hour + 10_000;
    let wall_start = Instant::now();
    let per_tick = (rate / 20).max(1);
    while !stop.load(Ordering::Relaxed) {
        let event_now = event_start + wall_start.elapsed().as_millis() as i64 * i64::from(speed);
        for _ in 0..per_tick {
            let e = clicks.event(event_now);
            let mut rec = BaseRecord::<(), str>::to("user-behavior").payload(e.as_str());
            while let Err((err, r)) = producer.send(rec) {
                tracing::debug!(error = %err, "generator waits for the producer queue");
                producer.poll(Duration::from_millis(10));
                rec = r;
            }
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(50));
    }
    producer.flush(Duration::from_secs(5))?;
    Ok(())
}

/// Collects sink records per window and prints a window once no more arrive for it.
struct WindowTable {
    windows: BTreeMap<i64, (i64, HashMap<String, i64>)>,
    last_update: Instant,
    shown: usize,
}

impl WindowTable {
    fn add(&mut self, value: &serde_json::Value) {
        let (Some(item), Some(start), Some(end), Some(count)) = (
            value["item_id"].as_str(),
            value["window_start"].as_i64(),
            value["window_end"].as_i64(),
            value["click_count"].as_i64(),
        ) else {
            return;
        };
        let w = self
            .windows
            .entry(end)
            .or_insert_with(|| (start, HashMap::new()));
        w.1.insert(item.to_string(), count);
        self.last_update = Instant::now();
    }

    fn print_settled(&mut self, status: &str) {
        if self.last_update.elapsed() < Duration::from_millis(700) {
            return;
        }
        while let Some((end, (start, counts))) = self.windows.pop_first() {
            let total: i64 = counts.values().sum();
            let mut top: Vec<_> = counts.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let top: Vec<String> = top
                .iter()
                .take(3)
                .map(|(i, c)| format!("{i} ({c})"))
                .collect();
            let mut top = top.join(", ");
            top.truncate(44);
            println!(
                "│ {} → {} │ {:>5} │ {:>7} │ {:<44} │",
                utc(start),
                &utc(end)[11..],
                counts.len(),
                total,
                top
            );
            self.shown += 1;
        }
        if !status.is_empty() {
            println!("│ {status:<95} │");
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let cluster =
        MockCluster::new(1).context("starting the embedded Kafka (librdkafka mock cluster)")?;
    cluster.create_topic("user-behavior", 4, 1)?;
    cluster.create_topic("hourly-clicks", 2, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    println!(
        "Embedded Kafka at {bootstrap}: topics user-behavior (4 partitions) and hourly-clicks (2)"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let gen_stop = Arc::clone(&stop);
    let gen_bootstrap = bootstrap.clone();
    let (rate, speed) = (args.rate, args.speed);
    let generator = std::thread::spawn(move || generate(gen_bootstrap, rate, speed, gen_stop));
    println!(
        "Click generator: {rate} events/s, event time running {speed}× faster than the wall clock"
    );

    let cluster = start_local(&args.local).await?;
    let (jm, addr) = (cluster.jobmanager.clone(), cluster.rest);
    let job_text = REFERENCE_JOB.replace("127.0.0.1:9092", &bootstrap);
    let id = jm
        .submit(
            "hourly-item-clicks.toml",
            &job_text,
            &kappa_job::Overrides::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("Submitted the reference job (examples/hourly-item-clicks.toml), id {id}");
    println!("  web UI:   http://{addr}/#/jobs/{id}");
    println!(
        "  REST API: curl http://{addr}/api/v1/jobs/{id}     metrics: curl http://{addr}/metrics"
    );
    println!("  kappactl: KAPPA_JOBMANAGER=http://{addr} kappactl status {id}");
    println!("Hourly clicks per item (users above 50 only), as each window fires:");
    println!(
        "┌────────────────────────────────┬───────┬─────────┬──────────────────────────────────────────────┐"
    );
    println!(
        "│ window (UTC)                   │ items │  clicks │ top items                                    │"
    );
    println!(
        "├────────────────────────────────┼───────┼─────────┼──────────────────────────────────────────────┤"
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "kappa-demo-viewer")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("hourly-clicks", p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut table = WindowTable {
        windows: BTreeMap::new(),
        last_update: Instant::now(),
        shown: 0,
    };
    let ctrl_c = shutdown_signal();
    tokio::pin!(ctrl_c);
    let result = loop {
        tokio::select! {
            _ = &mut ctrl_c => break Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        while let Some(m) = consumer.poll(Duration::ZERO) {
            let m = m?;
            if let Some(v) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            {
                table.add(&v);
            }
        }
        let job = jm.job(&id).context("the demo job disappeared")?;
        let before = table.shown;
        let status = if table.windows.is_empty() {
            String::new()
        } else {
            status_line(&job.detail())
        };
        table.print_settled(&status);
        if job.state() == JobState::Failed {
            break Err(anyhow::anyhow!(
                "the job failed: {}",
                job.summary().error.unwrap_or_default()
            ));
        }
        if table.shown > before && args.windows.is_some_and(|n| table.shown >= n) {
            break Ok(());
        }
    };
    println!(
        "└────────────────────────────────┴───────┴─────────┴──────────────────────────────────────────────┘"
    );
    stop.store(true, Ordering::Relaxed);
    let generated = generator.join();
    if let Some(job) = jm.job(&id) {
        job.request_cancel();
        // Let the job's clients close before the embedded Kafka goes away.
        for _ in 0..100 {
            if job.state().is_terminal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(consumer);
    drop(cluster);
    match generated {
        Ok(r) => r?,
        Err(_) => bail!("the click generator panicked"),
    }
    result
}

fn status_line(d: &kappa_jobmanager::job::JobDetail) -> String {
    let src = d.vertices.first();
    let wm = d
        .vertices
        .last()
        .and_then(|v| v.watermark)
        .map_or("-".to_string(), utc);
    format!(
        "job {}: {} events read, {:.0}/s, watermark {}",
        d.summary.state.name(),
        src.map_or(0, |v| v.records_in),
        src.map_or(0.0, |v| v.records_in_per_second),
        wm
    )
}
