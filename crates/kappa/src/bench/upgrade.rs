//! `kappa bench upgrade`: what an upgrade costs. The reference job (v1, users above 50, into
//! a Kafka topic) reads `--events` clicks of history from `--bootstrap-servers`, then a steady
//! `--rate` while v2 (users above 70) recomputes that history into a shadow topic beside it
//! (`kappactl upgrade`). Prints the shadow run's replay speed (events/s and per CPU-second of
//! every process of the cluster, which v1 shares), how v1 kept up meanwhile (its input rate,
//! lag and event-to-sink latency), and the cut-over's duration step by step.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kappa_jobmanager::job::{JobDetail, JobEntry, now_ms};
use kappa_jobmanager::upgrade::control::{StartOptions, UpgradeView};
use kappa_jobmanager::upgrade::protocol::Request;
use kappa_jobmanager::upgrade::record::{Kind, Phase};

use super::paced::PacedProducer;
use super::{
    BenchArgs, ClusterOptions, TOPIC, cpu_time, create_named_topic, fill_topic, start_cluster_with,
    submit, with_backend,
};
use crate::demo::REFERENCE_JOB;
use crate::generator::ClickGenerator;

#[derive(clap::Args, Debug)]
pub struct UpgradeArgs {
    /// Events per second fed into Kafka while v2 recomputes history beside v1.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Slots of each taskmanager process (v1, v2 and the live v2 each take `--parallelism`).
    #[arg(long, default_value_t = 4)]
    pub slots: u32,
    /// How long each stage (v1 reading the history, the shadow run, the cut-over) may take.
    #[arg(long, default_value = "900s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// How often the jobs and the upgrade are looked at.
const POLL: Duration = Duration::from_millis(100);

/// The reference job reading [`TOPIC`] at `bootstrap` from the earliest offsets, keeping users
/// above `above`, writing its rows keyed by item and window to `sink` on the same cluster.
fn job(bootstrap: &str, sink: &str, above: u32) -> String {
    REFERENCE_JOB
        .replace("127.0.0.1:9092", bootstrap)
        .replace("topic = \"user-behavior\"", &format!("topic = \"{TOPIC}\""))
        .replace("topic = \"hourly-clicks\"", &format!("topic = \"{sink}\""))
        .replace(") > 50", &format!(") > {above}"))
}

pub async fn run(args: &BenchArgs, u: &UpgradeArgs) -> anyhow::Result<()> {
    if args.bootstrap_servers.is_none() {
        bail!(
            "kappa bench upgrade needs --bootstrap-servers (e.g. a Tansu broker, see BENCHMARKS.md): the shadow run replays the whole history, more than the embedded Kafka keeps"
        );
    }
    let mut clicks = ClickGenerator::new(7, 5_000).with_items(args.items);
    let (bootstrap, partitions, _) = fill_topic(args, &mut clicks).await?;
    let sink = format!("bench-hourly-{}", now_ms());
    create_named_topic(&bootstrap, &sink, partitions).await?;
    let dir = tempfile::tempdir()?;
    let options = ClusterOptions {
        taskmanagers: Some(args.taskmanagers.max(2)),
        slots: Some(u.slots),
        default_heartbeats: true,
        checkpoints: true,
        jobmanager_flags: Vec::new(),
    };
    let (jm, tms) = start_cluster_with(args, dir.path(), &options).await?;
    let v1_text = with_backend(args, job(&bootstrap, &sink, 50));
    let v1 = submit(&jm, &tms, "v1.toml", &v1_text, args.parallelism)
        .await?
        .job;
    println!(
        "kappa bench upgrade: the reference job (parallelism {}, {partitions} partitions of {}) over {} events of history at {bootstrap}, then fed {} events/s; {} taskmanager processes of {} slots",
        args.parallelism,
        TOPIC,
        args.events,
        u.rate,
        args.taskmanagers.max(2),
        u.slots
    );
    wait(u.timeout, "v1 to read the history", || {
        read(&v1.detail()) >= args.events
    })
    .await?;
    let mut producer = PacedProducer::start(&bootstrap, partitions, u64::MAX, u.rate, args.speed);
    // v1 live on the paced feed before the upgrade starts.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = Live::of(&v1);

    let v2_text = v1_text.replace(") > 50", ") > 70");
    let options = StartOptions {
        kind: Kind::Upgrade,
        auto_cutover: false,
    };
    let (t0, cpu0, fed0, v1_read0) = (
        Instant::now(),
        cpu_time() + tms.cpu_time(),
        producer.sent(),
        read(&v1.detail()),
    );
    let id = jm
        .start_upgrade(&v1.id, "v2.toml", Some(&v2_text), options)
        .await?
        .record
        .id;
    let caught_up = wait_for(u.timeout, || {
        jm.upgrade(&id)
            .filter(|view| view.record.phase == Phase::CaughtUp)
    })
    .await
    .context("v2 to catch up")?;
    let (took, cpu) = (t0.elapsed(), cpu_time() + tms.cpu_time() - cpu0);
    let shadow = caught_up
        .record
        .shadow_job
        .as_deref()
        .and_then(|s| jm.job(s))
        .context("the shadow job")?;
    let replayed = read(&shadow.detail());
    let fed = producer.sent() - fed0;
    let v1_rate = (read(&v1.detail()) - v1_read0) as f64 / took.as_secs_f64();
    let during = Live::of(&v1);
    println!(
        "shadow run: {replayed} events in {:.1} s: {:.0} events/s, {:.0} per CPU-second of the cluster ({:.1} CPU-s, which also ran v1 on {fed} live events)",
        took.as_secs_f64(),
        replayed as f64 / took.as_secs_f64(),
        replayed as f64 / cpu.as_secs_f64(),
        cpu.as_secs_f64()
    );
    println!(
        "v1 beside it: read {:.0} events/s before, {v1_rate:.0} events/s during (fed {} events/s); lag {} records before, {} at the end; latency p50 / p99 {} before, {} at the end (since v1 started)",
        before.rate, u.rate, before.lag, during.lag, before.latency, during.latency
    );

    let cutover_at = now_ms();
    jm.upgrade_request(&id, Request::Cutover { now_ms: cutover_at })?;
    let done = wait_for(u.timeout, || {
        jm.upgrade(&id).filter(|v| v.record.phase.is_terminal())
    })
    .await
    .context("the cut-over")?;
    producer.stop()?;
    if done.record.phase != Phase::Done {
        bail!(
            "the upgrade ended {:?}: {}",
            done.record.phase,
            done.record.reason.unwrap_or_default()
        );
    }
    print_cutover(&done, cutover_at);
    Ok(())
}

/// Source records a job read.
fn read(d: &JobDetail) -> u64 {
    d.vertices.first().map_or(0, |v| v.records_in)
}

/// How v1 does on the live feed.
struct Live {
    rate: f64,
    lag: String,
    latency: String,
}

impl Live {
    fn of(job: &JobEntry) -> Self {
        let d = job.detail();
        Self {
            rate: d.vertices.first().map_or(0.0, |v| v.records_in_per_second),
            lag: d
                .catch_up
                .as_ref()
                .map_or("?".into(), |c| c.lag.to_string()),
            latency: d.latency.as_ref().map_or("?".into(), |l| {
                format!("{:.1} / {:.1} ms", l.p50_ms, l.p99_ms)
            }),
        }
    }
}

/// The cut-over's steps, from the request to v2 running live.
fn print_cutover(done: &UpgradeView, requested_ms: i64) {
    let ended = done.record.ended_at_ms.unwrap_or(requested_ms);
    println!(
        "cut-over: {} ms from the request to v2 live",
        ended - requested_ms
    );
    let mut last = requested_ms;
    for h in done
        .record
        .history
        .iter()
        .filter(|h| h.at_ms >= requested_ms)
    {
        println!("  +{:>6} ms {:?}: {}", h.at_ms - last, h.phase, h.note);
        last = h.at_ms;
    }
}

async fn wait(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    wait_for(timeout, || done().then_some(()))
        .await
        .with_context(|| what.to_string())
}

/// Polls `f` until it gives a value, or fails after `timeout`.
async fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("not within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}
