//! `kappa bench recovery`: how long the reference job takes to recover from a kill -9 of a
//! taskmanager process. The job reads Kafka fed at a steady `--rate` (as `kappa bench
//! --rate`, [`super::paced`]) on a jobmanager in this process with the defaults of a real
//! deployment (checkpoints every 10 s or `--checkpoint-interval`, heartbeats every 1 s with a
//! 10 s timeout, restarts with exponential backoff from 1 s) and at least two taskmanager
//! processes of `--slots` slots each. After `--warmup` and a checkpoint of the running attempt,
//! each round kills the taskmanager running subtask 0 of the source, starts it again at once
//! with the same id and flags (as Kubernetes restarts a StatefulSet's pod; not with
//! `--no-replacement`), and measures from the kill: when the jobmanager noticed (the job left
//! RUNNING), when the job was RUNNING again, when every source and window subtask of the new
//! attempt was processing, and when it had caught up (Kafka lag under one second of input and
//! the windows' watermark past the one at the kill), and how many records were read again.
//! The lag is the bench's own: what the producer sent to each partition minus the position the
//! source last reported there. Prints each round, the medians, and the taskmanagers' RSS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kappa_jobmanager::checkpoint::PartitionOffset;
use kappa_jobmanager::job::{JobDetail, JobEntry, JobState, now_ms};

use super::paced::PacedProducer;
use super::processes::TaskManagerProcesses;
use super::{
    BenchArgs, ClusterOptions, MOCK_RECORDS_PER_PARTITION, TOPIC, bench_topic, kafka_job, running,
    start_cluster_with, submit, with_backend,
};

#[derive(clap::Args, Debug)]
pub struct RecoveryArgs {
    /// Events per second fed into Kafka while the job runs.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// Kills, each followed by the recovery.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// Slots of each taskmanager (4: the default of `kappa taskmanager` and of the Helm chart).
    #[arg(long, default_value_t = 4)]
    pub slots: u32,
    /// How long the job runs before each kill (and until a checkpoint of its attempt completed);
    /// 15 s kills the first attempt halfway between its first two checkpoints (at 10 s and 20 s).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// A round that has not caught up this long after its kill ends the benchmark.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Start no replacement for a killed taskmanager: the job restarts on the others' slots.
    #[arg(long)]
    pub no_replacement: bool,
}

/// How often the job is looked at.
const POLL: Duration = Duration::from_millis(20);

/// The jobmanager's default checkpoint interval, used unless --checkpoint-interval is given.
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// The source vertex (with the filter chained) and the window vertex of the reference job.
const SOURCE: usize = 0;
const WINDOW: usize = 1;

/// The Kafka lag of the job by partition, as the bench sees it: records the producer sent to
/// the partition minus the position the source reported, taken when a report was new (a
/// position that changed), so an old heartbeat does not count as lag.
struct Lag {
    partitions: i32,
    /// Per partition: the last position seen and the lag when it was new.
    seen: std::collections::BTreeMap<i32, (i64, i64)>,
}

impl Lag {
    fn new(partitions: i32) -> Self {
        Self {
            partitions,
            seen: Default::default(),
        }
    }

    /// Records sent to `partition` of `sent` in all (the producer goes round-robin).
    fn sent_to(&self, partition: i32, sent: u64) -> i64 {
        let n = self.partitions.max(1) as u64;
        let extra = u64::from((partition as u64) < sent % n);
        (sent / n + extra) as i64
    }

    fn update(&mut self, d: &JobDetail, sent: u64) {
        let Some(source) = d.vertices.get(SOURCE) else {
            return;
        };
        for p in source.subtasks.iter().flat_map(|s| &s.partitions) {
            if self.seen.get(&p.partition).map(|s| s.0) != Some(p.position) {
                let lag = self.sent_to(p.partition, sent) - p.position;
                self.seen.insert(p.partition, (p.position, lag.max(0)));
            }
        }
    }

    /// The total, once every partition reported.
    fn total(&self) -> Option<i64> {
        (self.seen.len() == self.partitions as usize).then(|| self.seen.values().map(|s| s.1).sum())
    }
}

/// What one round measured: times since the kill.
#[derive(Default)]
struct Round {
    noticed: Option<Duration>,
    running: Option<Duration>,
    processing: Option<Duration>,
    caught_up: Option<Duration>,
    /// Records read again, at least and at most (see [`replayed`]).
    replayed: Option<(i64, i64)>,
}

/// The window vertex's watermark (the minimum over its subtasks).
fn window_watermark(d: &JobDetail) -> Option<i64> {
    d.vertices.get(WINDOW).and_then(|v| v.watermark)
}

/// The records a new attempt reads again, at least and at most: from the restored
/// checkpoint's `offsets` to the positions the failed attempt last reported (`last_old`; a
/// killed taskmanager's are up to a heartbeat old, so this is a lower bound), and to the head
/// of each partition at the kill (`sent` records then; the lag at the kill was not read yet).
fn replayed(last_old: &JobDetail, offsets: &[PartitionOffset], lag: &Lag, sent: u64) -> (i64, i64) {
    let reported: std::collections::BTreeMap<i32, i64> = last_old
        .vertices
        .get(SOURCE)
        .into_iter()
        .flat_map(|v| &v.subtasks)
        .flat_map(|s| &s.partitions)
        .map(|p| (p.partition, p.position))
        .collect();
    let (mut least, mut most) = (0, 0);
    for o in offsets {
        let from = o.next_offset.unwrap_or(0);
        let read = reported.get(&o.partition).copied().unwrap_or(from);
        least += (read - from).max(0);
        most += (lag.sent_to(o.partition, sent) - from).max(0);
    }
    (least, most)
}

/// An event time (ms since the epoch) to read.
fn event_time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                .to_string()
        }
        Err(_) => "none".into(),
    }
}

/// A count known to lie between two figures.
fn between(r: Option<(i64, i64)>) -> String {
    r.map_or_else(|| "?".into(), |(least, most)| format!("{least} to {most}"))
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The job and the feed a round watches.
struct Feed<'a> {
    entry: &'a JobEntry,
    producer: &'a PacedProducer,
    rate: u64,
    lag: Lag,
}

impl Feed<'_> {
    /// The job's detail, the lag updated from it; fails if the job ended.
    fn look(&mut self) -> anyhow::Result<JobDetail> {
        let d = self.entry.detail();
        if d.summary.state.is_terminal() {
            bail!(
                "the job ended ({}): {}",
                d.summary.state.name(),
                d.summary.error.unwrap_or_default()
            );
        }
        self.lag.update(&d, self.producer.sent());
        Ok(d)
    }

    /// Waits `warmup` from `since` and until a checkpoint of the running attempt completed.
    async fn warm_up(
        &mut self,
        since: Instant,
        warmup: Duration,
        timeout: Duration,
    ) -> anyhow::Result<JobDetail> {
        use kappa_jobmanager::checkpoint::CheckpointStatus;
        loop {
            tokio::time::sleep(POLL).await;
            let d = self.look()?;
            let attempt = d.attempts.last().map_or(0, |a| a.attempt);
            let checkpointed = self
                .entry
                .checkpoint_history()
                .iter()
                .any(|c| c.attempt == attempt && c.status == CheckpointStatus::Completed);
            if d.summary.state == JobState::Running && checkpointed && since.elapsed() >= warmup {
                return Ok(d);
            }
            if since.elapsed() > warmup + timeout {
                bail!(
                    "no checkpoint of attempt {attempt} completed within {:?}",
                    warmup + timeout
                );
            }
        }
    }
}

pub async fn run(args: &BenchArgs, r: &RecoveryArgs) -> anyhow::Result<()> {
    let taskmanagers = match args.taskmanagers {
        0 => 2,
        1 => bail!("kappa bench recovery kills a taskmanager: give --taskmanagers 2 or more"),
        n => n,
    };
    if r.rate == 0 || r.rounds == 0 || r.slots == 0 || args.speed == 0 {
        bail!("--rate, --rounds, --slots and --speed must be above 0");
    }
    if r.no_replacement && r.rounds >= taskmanagers {
        bail!(
            "with --no-replacement each round leaves one taskmanager fewer: give --rounds below --taskmanagers"
        );
    }
    let interval = match &args.checkpoint_interval {
        Some(i) => humantime::parse_duration(i)
            .with_context(|| format!("--checkpoint-interval {i}: a duration such as 10s"))?,
        None => DEFAULT_CHECKPOINT_INTERVAL,
    };
    let partitions = args.partitions.max(1);
    // A replay reads the input since the last checkpoint: the embedded cluster keeps about
    // MOCK_RECORDS_PER_PARTITION records per partition and drops older ones.
    let replay = r.rate.saturating_mul(interval.as_secs() + 20);
    if args.bootstrap_servers.is_none() && replay > MOCK_RECORDS_PER_PARTITION * partitions as u64 {
        bail!(
            "the embedded Kafka keeps about {} records per partition, fewer than a replay of {} s at {} events/s needs: give --bootstrap-servers (e.g. a Tansu broker, see BENCHMARKS.md) or a lower --rate",
            MOCK_RECORDS_PER_PARTITION,
            interval.as_secs() + 20,
            r.rate
        );
    }
    let dir = tempfile::tempdir()?;
    let (bootstrap, embedded) = bench_topic(args, TOPIC, partitions).await?;
    let job = with_backend(args, kafka_job(&bootstrap, &dir.path().join("results")));
    let options = ClusterOptions {
        taskmanagers: Some(taskmanagers),
        slots: Some(r.slots),
        default_heartbeats: true,
        checkpoints: true,
        jobmanager_flags: match &args.checkpoint_interval {
            Some(i) => vec!["--checkpoint-interval".into(), i.clone()],
            None => Vec::new(),
        },
    };
    let (jm, mut tms) = start_cluster_with(args, dir.path(), &options).await?;
    let started = submit(&jm, &tms, "bench.toml", &job, args.parallelism).await?;
    let entry = Arc::clone(&started.job);
    running(&entry).await?;
    let feeding = Instant::now();
    let mut producer = PacedProducer::start(&bootstrap, partitions, u64::MAX, r.rate, args.speed);
    // The interval the job got (the jobmanager's, which a KAPPA_ variable may set too).
    let interval_ms = entry.detail().checkpoint_interval_ms.unwrap_or(0);
    println!(
        "kappa bench recovery: the reference job (Kafka source, parallelism {}, {} partitions) fed {} events/s (event time {}× the wall clock) from {}; {taskmanagers} taskmanager processes of {} slots; jobmanager defaults: checkpoints every {} s{}, heartbeats every 1 s (timeout 10 s), restarts with exponential backoff from 1 s",
        args.parallelism,
        partitions,
        r.rate,
        args.speed,
        if embedded.is_some() {
            "the embedded Kafka".to_string()
        } else {
            bootstrap.clone()
        },
        r.slots,
        interval_ms as f64 / 1000.0,
        if args.checkpoint_interval.is_some() {
            " (--checkpoint-interval)"
        } else {
            ""
        },
    );
    println!(
        "after each kill -9: {}; the job restarts on whichever free slots the jobmanager has",
        if r.no_replacement {
            "no replacement"
        } else {
            "the taskmanager starts again at once with the same id and flags (as Kubernetes restarts a StatefulSet's pod)"
        }
    );
    let mut feed = Feed {
        entry: &entry,
        producer: &producer,
        rate: r.rate,
        lag: Lag::new(partitions),
    };
    let mut rounds = Vec::new();
    let mut since = Instant::now();
    let outcome: anyhow::Result<()> = async {
        for n in 1..=r.rounds {
            let round = kill_and_recover(&mut feed, &mut tms, r, since, n, started.t0).await?;
            let done = round.caught_up.is_some();
            since = Instant::now();
            rounds.push(round);
            if !done {
                bail!("round {n} did not catch up within {:?}", r.timeout);
            }
        }
        Ok(())
    }
    .await;
    let produced = producer.stop();
    entry.request_cancel();
    while !entry.state().is_terminal() {
        tokio::time::sleep(POLL).await;
    }
    drop(embedded);
    report_medians(&rounds);
    println!(
        "  {:.0} events/s produced over {:.0} s",
        producer.sent() as f64 / feeding.elapsed().as_secs_f64(),
        feeding.elapsed().as_secs_f64()
    );
    tms.report_rss(args.state_memory.as_deref());
    outcome?;
    produced?;
    Ok(())
}

/// One round: waits for the warm-up, kills the taskmanager of source subtask 0, follows the
/// job until it caught up (or `r.timeout`), and prints what it measured.
async fn kill_and_recover(
    feed: &mut Feed<'_>,
    tms: &mut TaskManagerProcesses,
    r: &RecoveryArgs,
    since: Instant,
    n: u32,
    t0: Instant,
) -> anyhow::Result<Round> {
    let before = feed.warm_up(since, r.warmup, r.timeout).await?;
    let victim = before
        .vertices
        .get(SOURCE)
        .and_then(|v| v.subtasks.first())
        .and_then(|s| s.taskmanager.clone())
        .context("source subtask 0 is placed nowhere")?;
    let attempts = before.attempts.len();
    let watermark = window_watermark(&before).unwrap_or(i64::MIN);
    let lag_before = feed.lag.total();
    let killed_ms = now_ms();
    let sent_at_kill = feed.producer.sent();
    let killed_at = Instant::now();
    let pid = tms.kill(&victim)?;
    let replacement = match r.no_replacement {
        true => String::new(),
        false => format!("; started again (pid {})", tms.restart(&victim)?),
    };
    println!(
        "round {n}: kill -9 of taskmanager {victim} (pid {pid}) {:.1} s after the submission{replacement}",
        (killed_at - t0).as_secs_f64()
    );
    println!(
        "  before: Kafka lag {} records, window watermark {}",
        lag_before.map_or_else(|| "?".into(), |l| l.to_string()),
        event_time(watermark)
    );
    let mut round = Round::default();
    let mut last_old = before;
    let mut why = None;
    let mut restart = None;
    let d = loop {
        tokio::time::sleep(POLL).await;
        let d = feed.look()?;
        let t = killed_at.elapsed();
        let new_attempt = d.attempts.len() > attempts;
        if round.noticed.is_none() && (d.summary.state != JobState::Running || new_attempt) {
            round.noticed = Some(t);
            // The reason of FAILING; the job's error may still be an earlier attempt's.
            why = d.reason.clone().or(d.summary.error.clone());
        }
        if d.summary.state == JobState::Restarting {
            // "restart N in DELAY after: …"
            restart = d
                .reason
                .as_deref()
                .and_then(|r| r.split(" after:").next())
                .map(str::to_string);
        }
        if !new_attempt {
            last_old = d;
            continue;
        }
        if round.running.is_none() {
            if d.summary.state != JobState::Running {
                continue;
            }
            round.running = Some(t);
            // A new attempt's lag starts from its own reports.
            feed.lag = Lag::new(feed.lag.partitions);
            feed.lag.update(&d, feed.producer.sent());
        }
        let working = d
            .vertices
            .iter()
            .take(WINDOW + 1)
            .all(|v| v.subtasks.iter().all(|s| s.records_in > 0));
        if round.processing.is_none() && working {
            round.processing = Some(t);
        }
        let past = window_watermark(&d).is_some_and(|w| w > watermark);
        if past && feed.lag.total().is_some_and(|l| l < feed.rate as i64) {
            round.caught_up = Some(t);
            break d;
        }
        if t > r.timeout {
            break d;
        }
    };
    let restored = d.attempts.last().and_then(|a| a.restored_from);
    let checkpoint = restored.and_then(|id| {
        feed.entry
            .checkpoint_history()
            .into_iter()
            .find(|c| c.id == id)
    });
    if let Some(c) = &checkpoint {
        round.replayed = Some(replayed(&last_old, &c.offsets, &feed.lag, sent_at_kill));
    }
    println!(
        "  {:>7}  the jobmanager noticed: the job left RUNNING ({})",
        secs(round.noticed),
        why.unwrap_or_default()
    );
    let placed: Vec<String> = d
        .vertices
        .get(SOURCE)
        .map(|v| {
            v.subtasks
                .iter()
                .filter_map(|s| s.taskmanager.clone())
                .collect()
        })
        .unwrap_or_default();
    println!(
        "  {:>7}  RUNNING again ({}): attempt {}, {}, source subtasks on {}",
        secs(round.running),
        restart.as_deref().unwrap_or("no restart delay seen"),
        d.attempts.last().map_or(0, |a| a.attempt),
        match &checkpoint {
            Some(c) => format!(
                "restored from chk-{} (triggered {:.1} s before the kill)",
                c.id,
                (killed_ms - c.trigger_ms) as f64 / 1000.0
            ),
            None => "no checkpoint restored".into(),
        },
        placed.join(", ")
    );
    println!(
        "  {:>7}  every source and window subtask processing (records in > 0)",
        secs(round.processing)
    );
    println!(
        "  {:>7}  caught up: Kafka lag {} records (under 1 s of input) and the window watermark past the one at the kill",
        secs(round.caught_up),
        feed.lag
            .total()
            .map_or_else(|| "?".into(), |l| l.to_string())
    );
    println!(
        "  records replayed: {} (from the restored checkpoint's offsets to the failed attempt's last reported positions, and to the head of the topic at the kill)",
        between(round.replayed)
    );
    Ok(round)
}

/// The median of what was measured.
fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> Option<T> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len().checked_sub(1)? / 2).copied()
}

/// Prints the median of each figure over the rounds.
fn report_medians(rounds: &[Round]) {
    if rounds.is_empty() {
        return;
    }
    let m = |f: fn(&Round) -> Option<Duration>| {
        let all: Vec<Duration> = rounds.iter().filter_map(f).collect();
        let each: Vec<String> = rounds.iter().map(|r| secs(f(r))).collect();
        format!("{} (rounds: {})", secs(median(all)), each.join(" / "))
    };
    println!(
        "recovery after kill -9, median over {} round(s):",
        rounds.len()
    );
    println!("  jobmanager noticed:  {}", m(|r| r.noticed));
    println!("  RUNNING again:       {}", m(|r| r.running));
    println!("  all processing:      {}", m(|r| r.processing));
    println!("  caught up:           {}", m(|r| r.caught_up));
    let least = median(
        rounds
            .iter()
            .filter_map(|r| r.replayed.map(|r| r.0))
            .collect(),
    );
    let most = median(
        rounds
            .iter()
            .filter_map(|r| r.replayed.map(|r| r.1))
            .collect(),
    );
    println!("  records replayed:    {}", between(least.zip(most)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_counts_per_partition() {
        let lag = Lag::new(4);
        let per: Vec<i64> = (0..4).map(|p| lag.sent_to(p, 10)).collect();
        assert_eq!(per, vec![3, 3, 2, 2]);
        assert_eq!(per.iter().sum::<i64>(), 10);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3, 1, 2]), Some(2));
        assert_eq!(median(vec![4, 1, 3, 2]), Some(2));
        assert_eq!(median::<u32>(Vec::new()), None);
    }
}
