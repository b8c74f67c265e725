//! `kappa bench --rate N`: the reference job fed from Kafka at a steady N events/s while it
//! runs, event time following the wall clock sped up `--speed` times (so an hourly window
//! closes every 3600 / speed seconds), to measure event-to-sink latency: prints the rate
//! reached and the latency of the window rows written (p50, p99, max), with events per
//! CPU-second and the checkpoints as the other modes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{
    BenchArgs, TOPIC, bench_topic, kafka_job, report, report_checkpoints, running, start_cluster,
    submit, with_checkpoints,
};
use crate::generator::ClickGenerator;
/// How often the producer catches up with the rate.
const TICK: Duration = Duration::from_millis(5);

/// Produces `events` clicks at `rate` per second, round-robin over `partitions`, event time
/// starting just after the top of an hour and running `speed` times the wall clock; counts
/// what it sent in `sent`. Stops early when `stop` is set.
fn produce(
    bootstrap: &str,
    partitions: i32,
    events: u64,
    rate: u64,
    speed: u32,
    sent: &AtomicU64,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "2")
        .create()?;
    let mut clicks = ClickGenerator::new(11, 5_000);
    let hour = 3_600_000;
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let event_start = wall_ms / hour * hour + 10_000;
    let start = Instant::now();
    let mut i = 0;
    while i < events && !stop.load(Ordering::Relaxed) {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(events);
        let event_now = event_start + start.elapsed().as_millis() as i64 * i64::from(speed);
        while i < due {
            let e = clicks.event(event_now);
            let mut rec = BaseRecord::<(), str>::to(TOPIC)
                .partition((i % partitions as u64) as i32)
                .payload(e.as_str());
            while let Err((_, r)) = producer.send(rec) {
                producer.poll(Duration::from_millis(1));
                rec = r;
            }
            i += 1;
        }
        sent.store(i, Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        std::thread::sleep(TICK);
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// A thread running [`produce`]; stops when dropped.
pub(super) struct PacedProducer {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl PacedProducer {
    /// Starts producing `events` clicks at `rate` per second (see [`produce`]).
    pub(super) fn start(
        bootstrap: &str,
        partitions: i32,
        events: u64,
        rate: u64,
        speed: u32,
    ) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (sent, stop, bootstrap) =
                (Arc::clone(&sent), Arc::clone(&stop), bootstrap.to_string());
            std::thread::spawn(move || {
                produce(&bootstrap, partitions, events, rate, speed, &sent, &stop)
            })
        };
        Self {
            sent,
            stop,
            thread: Some(thread),
        }
    }

    /// Events handed to the Kafka client so far.
    pub(super) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops producing and waits for the thread; what it ended with.
    pub(super) fn stop(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the producer thread panicked"),
        }
    }
}

impl Drop for PacedProducer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

pub async fn run(args: &BenchArgs, rate: u64, speed: u32) -> anyhow::Result<()> {
    if rate == 0 || speed == 0 {
        bail!("--rate and --speed must be above 0");
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("results");
    let partitions = args.partitions.max(1);
    let (bootstrap, embedded) = bench_topic(args, TOPIC, partitions).await?;
    let job = with_checkpoints(args, kafka_job(&bootstrap, &out));
    let (jm, taskmanagers) = start_cluster(args, dir.path()).await?;
    let started = submit(&jm, &taskmanagers, "bench.toml", &job, args.parallelism).await?;
    let entry = Arc::clone(&started.job);
    running(&entry).await?;
    let mut producer = PacedProducer::start(&bootstrap, partitions, args.events, rate, speed);
    let produce_start = Instant::now();
    let mut produced_for = None;
    let mut last_report = Instant::now();
    // Until every event was produced, read and handed to the windows.
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let d = entry.detail();
        if d.summary.state.is_terminal() {
            break Err(anyhow::anyhow!(
                "bench job ended: {}",
                d.summary.error.unwrap_or_default()
            ));
        }
        let n = producer.sent();
        if n >= args.events && produced_for.is_none() {
            produced_for = Some(produce_start.elapsed());
        }
        let read = d.vertices.first().map_or(0, |v| v.records_in);
        let windowed = d.vertices.get(1).map_or(0, |v| v.records_in);
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            tracing::info!(sent = n, read, windowed, latency = ?d.latency, "bench progress");
        }
        if read >= args.events && windowed >= d.vertices.first().map_or(0, |v| v.records_out) {
            break Ok(());
        }
    };
    let (wall, cpu) = started.took(&taskmanagers);
    entry.request_cancel();
    let produced = producer.stop();
    while !entry.state().is_terminal() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(embedded);
    outcome?;
    produced?;
    let what = format!(
        "reference job, kafka source paced at {rate} events/s, event time {speed}× the wall clock, parallelism {}",
        args.parallelism
    );
    report(&what, args.events, wall, cpu);
    let secs = produced_for.unwrap_or(wall).as_secs_f64();
    println!(
        "  {:.0} events/s produced",
        args.events as f64 / secs.max(1e-9)
    );
    match entry.detail().latency {
        Some(l) => println!(
            "  latency of the {} window rows written: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (from the reading of the records that moved the watermark past a window's end to the sink)",
            l.rows, l.p50_ms, l.p99_ms, l.max_ms
        ),
        None => println!(
            "  no window fired: run longer (--events) or faster in event time (--speed) so an hour of event time passes"
        ),
    }
    if let Some(history) = entry.checkpoints.lock().as_ref().map(|c| c.history()) {
        report_checkpoints(&history);
    }
    taskmanagers.report_rss(args.state_memory.as_deref());
    Ok(())
}
