//! `kappa bench`: runs the reference job over N generated click events from a file or from
//! Kafka, or with `nexmark --query qN` a Nexmark query (see [`nexmark`]), or with
//! `kafka-consume` only reads the events from Kafka (see [`consume`]), and prints events/s and
//! events per CPU-second of this process; with `--rate N` fed at N events/s from Kafka, with
//! its event-to-sink latency (see [`paced`]).

mod changes;
mod consume;
mod nexmark;
mod paced;
mod processes;
mod recovery;
mod rss;
mod upgrade;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use kappa_jobmanager::job::JobState;

use crate::cluster::{LocalArgs, start_local};
use processes::{TaskManagerProcesses, TaskManagerSpec};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

use crate::demo::REFERENCE_JOB;
use crate::generator::ClickGenerator;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchSource {
    File,
    Kafka,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchMode {
    /// A Nexmark query of examples/nexmark over generated events into a blackhole sink.
    Nexmark(nexmark::NexmarkArgs),
    /// Only reads the click events from Kafka, per message and in batches (the calibration
    /// of the Kafka path without the engine).
    KafkaConsume(consume::ConsumeArgs),
    /// The reference job fed from Kafka at a steady rate: kill -9 of a taskmanager process,
    /// then the times to RUNNING again and to caught up, and the records replayed.
    Recovery(recovery::RecoveryArgs),
    /// The reference job over Kafka history and a steady feed, upgraded to a changed filter:
    /// the shadow run's replay speed, the running job beside it, the cut-over's duration.
    Upgrade(upgrade::UpgradeArgs),
    /// examples/debezium-orders.toml over Debezium change events (inserts, updates, deletes)
    /// from Kafka, into blackholes: the change stream's decoding and retracting aggregate.
    Changes,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub mode: Option<BenchMode>,
    /// Number of click events (Nexmark: event numbers, of all three tables).
    #[arg(long, global = true, default_value_t = 2_000_000)]
    pub events: u64,
    #[arg(long, value_enum, default_value_t = BenchSource::File)]
    pub source: BenchSource,
    #[arg(long, global = true, default_value_t = 2)]
    pub parallelism: u32,
    /// Kafka to use with --source kafka (default: an embedded mock cluster in this process).
    #[arg(long, global = true)]
    pub bootstrap_servers: Option<String>,
    /// Partitions of the benchmark topic (the embedded cluster gets more for large runs).
    #[arg(long, global = true, default_value_t = 4)]
    pub partitions: i32,
    /// Run the subtasks in this many taskmanager processes (0: a taskmanager in this process).
    /// CPU time then counts this process and every taskmanager process.
    #[arg(long, global = true, default_value_t = 0)]
    pub taskmanagers: u32,
    /// Distinct items clicked (the window's keys).
    #[arg(long, global = true, default_value_t = crate::generator::ITEMS)]
    pub items: u32,
    /// Hours of event time the events spread over (about this many windows per item).
    #[arg(long, global = true, default_value_t = 48)]
    pub hours: u32,
    /// Take checkpoints at this interval (e.g. 1s) into a temporary directory, and report them.
    #[arg(long, global = true)]
    pub checkpoint_interval: Option<String>,
    /// The reference job's state backend (`rocksdb`, the default, or `heap`).
    #[arg(long, value_enum, default_value_t = BenchBackend::Rocksdb)]
    pub state_backend: BenchBackend,
    /// The taskmanagers' --state-memory (e.g. 64MiB): windows beyond it spill to disk.
    #[arg(long, global = true)]
    pub state_memory: Option<String>,
    /// With --taskmanagers: mutual TLS between the processes (certificates from
    /// `kappa certs init` in a temporary directory), to measure what it costs.
    #[arg(long)]
    pub cluster_tls: bool,
    /// Feed the reference job from Kafka at this many events per second while it runs (the
    /// embedded cluster, or --bootstrap-servers) and print its event-to-sink latency.
    #[arg(long)]
    pub rate: Option<u64>,
    /// With --rate: event time runs this many times faster than the wall clock (600: an
    /// hourly window closes every 6 s).
    #[arg(long, default_value_t = 600)]
    pub speed: u32,
}

/// How a benchmark's cluster differs from the one `kappa bench` starts by default.
#[derive(Default)]
struct ClusterOptions {
    /// Taskmanager processes (default: --taskmanagers).
    taskmanagers: Option<u32>,
    /// Slots of each taskmanager process (default: just enough for the parallelism).
    slots: Option<u32>,
    /// Heartbeats at the jobmanager's default interval instead of every 200 ms.
    default_heartbeats: bool,
    /// Checkpoints at the jobmanager's interval even without --checkpoint-interval.
    checkpoints: bool,
    /// More flags of the jobmanager.
    jobmanager_flags: Vec<String>,
}

/// A local cluster, or a jobmanager here with taskmanager processes, with `parallelism` slots;
/// jobs may use files under `dir` (checkpoints go to `dir/checkpoints`).
async fn start_cluster(
    args: &BenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<(kappa_jobmanager::JobManager, TaskManagerProcesses)> {
    start_cluster_with(args, dir, &ClusterOptions::default()).await
}

/// [`start_cluster`] with `options`.
async fn start_cluster_with(
    args: &BenchArgs,
    dir: &std::path::Path,
    options: &ClusterOptions,
) -> anyhow::Result<(kappa_jobmanager::JobManager, TaskManagerProcesses)> {
    let checkpoint_dir = dir.join("checkpoints");
    let p = args.parallelism.to_string();
    let mut argv = vec![
        "local".to_string(),
        "--port".into(),
        "0".into(),
        "--rpc-port".into(),
        "0".into(),
        "--slots".into(),
        p,
        "--allow-path".into(),
        dir.display().to_string(),
        "--state-dir".into(),
        dir.join("state-local").display().to_string(),
    ];
    if !options.default_heartbeats {
        argv.extend(["--heartbeat-interval".into(), "200ms".into()]);
    }
    argv.extend(options.jobmanager_flags.iter().cloned());
    if args.checkpoint_interval.is_some() || options.checkpoints {
        argv.push("--checkpoint-dir".into());
        argv.push(checkpoint_dir.display().to_string());
    }
    let state_memory: Vec<String> = match &args.state_memory {
        Some(m) => vec!["--state-memory".into(), m.clone()],
        None => Vec::new(),
    };
    argv.extend(state_memory.iter().cloned());
    let local = LocalArgs::parse_from(argv);
    let taskmanagers = options.taskmanagers.unwrap_or(args.taskmanagers);
    if args.cluster_tls && taskmanagers == 0 {
        bail!("--cluster-tls measures TLS between processes: give --taskmanagers too");
    }
    if taskmanagers == 0 {
        return Ok((
            start_local(&local).await?.jobmanager,
            TaskManagerProcesses::none()?,
        ));
    }
    let exe = std::env::current_exe()?;
    let mut config = local.jobmanager.config()?;
    // Each taskmanager's TLS flags, or --insecure.
    let mut tm_flags: Vec<Vec<String>> = vec![vec!["--insecure".into()]; taskmanagers as usize];
    if args.cluster_tls {
        let certs = checkpoint_dir.with_file_name("certs");
        let mut init = std::process::Command::new(&exe);
        init.args(["certs", "init", "--jobmanager", "bench", "--dir"])
            .arg(&certs);
        for i in 0..taskmanagers {
            init.arg("--taskmanager").arg(format!("bench-{i}"));
        }
        let made = init.stdout(std::process::Stdio::null()).status()?;
        if !made.success() {
            bail!("kappa certs init failed: {made}");
        }
        let files = |identity: &str| {
            let stem = identity.replace('/', "-");
            (
                certs.join(format!("{stem}.pem")),
                certs.join(format!("{stem}-key.pem")),
                certs.join("ca.pem"),
            )
        };
        let (cert, key, ca) = files("jobmanager/bench");
        config.cluster_tls = Some(kappa_proto::tls::ClusterTls::load(&cert, &key, &ca)?);
        for (i, flags) in tm_flags.iter_mut().enumerate() {
            let (cert, key, ca) = files(&format!("taskmanager/bench-{i}"));
            *flags = [
                ("--cluster-cert", cert),
                ("--cluster-key", key),
                ("--cluster-ca", ca),
            ]
            .into_iter()
            .flat_map(|(f, p)| [f.to_string(), p.display().to_string()])
            .collect();
        }
    }
    let started = kappa_jobmanager::JobManager::start(config).await?;
    let slots = options
        .slots
        .unwrap_or(args.parallelism.div_ceil(taskmanagers))
        .to_string();
    let allowed = dir.display().to_string();
    let specs = tm_flags
        .into_iter()
        .enumerate()
        .map(|(i, flags)| {
            let id = format!("bench-{i}");
            let state_dir = dir.join(format!("state-{id}")).display().to_string();
            let mut args: Vec<String> = [
                "taskmanager",
                "--jobmanager",
                &format!("http://{}", started.rpc),
                "--port",
                "0",
                "--slots",
                &slots,
                "--allow-path",
                &allowed,
                "--id",
                &id,
                "--state-dir",
                &state_dir,
            ]
            .map(String::from)
            .into();
            args.extend(flags);
            args.extend(state_memory.iter().cloned());
            TaskManagerSpec { id, args }
        })
        .collect();
    let tms = TaskManagerProcesses::start(specs)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.jobmanager.registry().views().len() < taskmanagers as usize {
        if Instant::now() > deadline {
            bail!("the taskmanagers did not register within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((started.jobmanager, tms))
}

/// A benchmark's job, submitted, and when: wall clock and CPU time of its processes.
struct Started {
    job: std::sync::Arc<kappa_jobmanager::job::JobEntry>,
    t0: Instant,
    cpu0: Duration,
}

impl Started {
    /// Wall-clock and CPU time (this process and `taskmanagers`) since the submission.
    fn took(&self, taskmanagers: &TaskManagerProcesses) -> (Duration, Duration) {
        let cpu = (cpu_time() + taskmanagers.cpu_time()).saturating_sub(self.cpu0);
        (self.t0.elapsed(), cpu)
    }
}

/// Submits `text` at `parallelism`, the clocks started just before.
async fn submit(
    jm: &kappa_jobmanager::JobManager,
    taskmanagers: &TaskManagerProcesses,
    file_name: &str,
    text: &str,
    parallelism: u32,
) -> anyhow::Result<Started> {
    let overrides = kappa_job::Overrides {
        parallelism: Some(parallelism),
        ..Default::default()
    };
    let cpu0 = cpu_time() + taskmanagers.cpu_time();
    let t0 = Instant::now();
    let id = jm
        .submit(file_name, text, &overrides)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let job = jm.job(&id).context("bench job vanished")?;
    Ok(Started { job, t0, cpu0 })
}

/// Waits until `job` runs; fails if it ended first.
async fn running(job: &kappa_jobmanager::job::JobEntry) -> anyhow::Result<()> {
    while job.state() != JobState::Running {
        if job.state().is_terminal() {
            bail!(
                "bench job ended: {}",
                job.detail().summary.error.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Records per partition the embedded cluster is given at most (it keeps about 5 MB).
const MOCK_RECORDS_PER_PARTITION: u64 = 40_000;

/// CPU time (user + system) this process used so far.
fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes into the struct it is given.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Event times spread evenly over `hours` hours, so about that many hourly windows per item.
fn event_time(i: u64, n: u64, hours: u32) -> i64 {
    1_732_500_000_000 + (i as i64) * (i64::from(hours.max(1)) * 3_600_000) / n.max(1) as i64
}

/// The topic Kafka benchmarks read.
const TOPIC: &str = "bench-clicks";

/// The embedded cluster of a benchmark without --bootstrap-servers.
type Embedded = MockCluster<'static, DefaultProducerContext>;

/// The topic `topic` with `partitions`: created anew at `args.bootstrap_servers`, or in an
/// embedded cluster, returned to be kept while the topic is read. Returns the bootstrap
/// servers.
async fn bench_topic(
    args: &BenchArgs,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<(String, Option<Embedded>)> {
    match &args.bootstrap_servers {
        Some(b) => {
            create_named_topic(b, topic, partitions).await?;
            Ok((b.clone(), None))
        }
        None => {
            let c = MockCluster::new(1)?;
            c.create_topic(topic, partitions, 1)?;
            Ok((c.bootstrap_servers(), Some(c)))
        }
    }
}

/// The reference job reading [`TOPIC`] at `bootstrap`, writing its rows into files in `out`.
fn kafka_job(bootstrap: &str, out: &std::path::Path) -> String {
    REFERENCE_JOB
        .replace(
            "127.0.0.1:9092\"\ntopic = \"user-behavior\"",
            &format!("{bootstrap}\"\ntopic = \"{TOPIC}\""),
        )
        .replace(
            "connector = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"hourly-clicks\"",
            &format!("connector = \"file\"\npath = {:?}", out.display().to_string()),
        )
        .replace("key = \"{item_id}-{window_end}\"\n", "")
}

/// Where the benchmark job keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    Rocksdb,
    Heap,
}

/// `job` (its first line the name) with the state backend of --state-backend.
fn with_backend(args: &BenchArgs, job: String) -> String {
    let backend = match args.state_backend {
        BenchBackend::Rocksdb => "rocksdb",
        BenchBackend::Heap => "heap",
    };
    match job.split_once('\n') {
        Some((name, rest)) => format!("{name}\nstate_backend = \"{backend}\"\n{rest}"),
        None => job,
    }
}

/// `job` with the checkpoints of --checkpoint-interval, if given.
fn with_checkpoints(args: &BenchArgs, job: String) -> String {
    match &args.checkpoint_interval {
        Some(i) => format!("{job}\n[checkpoints]\ninterval = \"{i}\"\nretained = 2\n"),
        None => job,
    }
}

/// Fills the topic [`TOPIC`] with `args.events` click events, round-robin over its partitions
/// (see [`bench_topic`]). Returns the bootstrap servers, the number of partitions and the
/// embedded cluster to keep while the topic is read.
async fn fill_topic(
    args: &BenchArgs,
    clicks: &mut ClickGenerator,
) -> anyhow::Result<(String, i32, Option<Embedded>)> {
    // The embedded cluster keeps about 5 MB per partition (librdkafka's mock retention):
    // spread larger runs over more partitions.
    let partitions = if args.bootstrap_servers.is_none() {
        args.partitions
            .max(args.events.div_ceil(MOCK_RECORDS_PER_PARTITION) as i32)
    } else {
        args.partitions
    };
    let (bootstrap, embedded) = bench_topic(args, TOPIC, partitions).await?;
    let producer = bench_producer(&bootstrap)?;
    for i in 0..args.events {
        let e = clicks.event(event_time(i, args.events, args.hours));
        send(&producer, TOPIC, (i % partitions as u64) as i32, &e);
    }
    producer.flush(Duration::from_secs(60))?;
    Ok((bootstrap, partitions, embedded))
}

/// A producer filling a benchmark's topic at `bootstrap`.
fn bench_producer(bootstrap: &str) -> anyhow::Result<BaseProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .create()?)
}

/// Queues `value` to `partition` of `topic`, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, topic: &str, partition: i32, value: &str) {
    let mut rec = BaseRecord::<(), str>::to(topic)
        .partition(partition)
        .payload(value);
    while let Err((_, r)) = producer.send(rec) {
        producer.poll(Duration::from_millis(5));
        rec = r;
    }
}

/// Creates topic `name` on an external cluster, emptied first if it exists.
async fn create_named_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // A topic left by an earlier run would add its events: delete it (absent is fine).
    let _ = admin.delete_topics(&[name], &opts).await;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for r in admin.create_topics(&[topic], &opts).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t} at {bootstrap}: {e}"))?;
    }
    Ok(())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match &args.mode {
        Some(BenchMode::Nexmark(n)) => return nexmark::run(&args, n).await,
        Some(BenchMode::KafkaConsume(c)) => return consume::run(&args, c).await,
        Some(BenchMode::Recovery(r)) => return recovery::run(&args, r).await,
        Some(BenchMode::Upgrade(u)) => return upgrade::run(&args, u).await,
        Some(BenchMode::Changes) => return changes::run(&args).await,
        None => {}
    }
    if let Some(rate) = args.rate {
        return paced::run(&args, rate, args.speed).await;
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("results");
    let mut clicks = ClickGenerator::new(7, 5_000).with_items(args.items);
    let mut _cluster = None;
    let job = match args.source {
        BenchSource::File => {
            let input = dir.path().join("clicks.jsonl");
            let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
            for i in 0..args.events {
                writeln!(
                    w,
                    "{}",
                    clicks.event(event_time(i, args.events, args.hours))
                )?;
            }
            w.flush()?;
            REFERENCE_JOB
                .replace("connector = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"user-behavior\"", &format!("connector = \"file\"\npath = {:?}", input.display().to_string()))
                .replace("connector = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"hourly-clicks\"", &format!("connector = \"file\"\npath = {:?}", out.display().to_string()))
                .replace("key = \"{item_id}-{window_end}\"\n", "")
                .replace("start = \"earliest\"", "")
        }
        BenchSource::Kafka => {
            let (bootstrap, _, cluster) = fill_topic(&args, &mut clicks).await?;
            _cluster = cluster;
            kafka_job(&bootstrap, &out)
        }
    };
    let job = with_backend(&args, with_checkpoints(&args, job));
    let (jm, taskmanagers) = start_cluster(&args, dir.path()).await?;
    let started = submit(&jm, &taskmanagers, "bench.toml", &job, args.parallelism).await?;
    let job = &started.job;
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = job.detail();
        match d.summary.state {
            JobState::Finished => break,
            JobState::Failed => bail!("bench job failed: {}", d.summary.error.unwrap_or_default()),
            _ => {}
        }
        // An unbounded Kafka source never finishes: stop once every event was read and exchanged.
        let read = d.vertices.first().map_or(0, |v| v.records_in);
        let sent = d.vertices.first().map_or(0, |v| v.records_out);
        let windowed = d.vertices.get(1).map_or(0, |v| v.records_in);
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            tracing::info!(read, sent, windowed, "bench progress");
        }
        if args.source == BenchSource::Kafka && read >= args.events && windowed >= sent {
            job.request_cancel();
            break;
        }
    }
    let (wall, cpu) = started.took(&taskmanagers);
    // Let the job's Kafka clients close before an embedded cluster goes away.
    while !job.state().is_terminal() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let source = match args.source {
        BenchSource::File => "file",
        BenchSource::Kafka => "kafka",
    };
    let what = format!(
        "reference job, {source} source, parallelism {}",
        args.parallelism
    );
    report(&what, args.events, wall, cpu);
    // The file sink writes a part file per subtask into the output directory.
    let results: usize = std::fs::read_dir(&out)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|f| {
                    std::fs::read_to_string(f.path())
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum()
        })
        .unwrap_or(0);
    println!("  {results} window results written");
    if let Some(history) = job.checkpoints.lock().as_ref().map(|c| c.history()) {
        report_checkpoints(&history);
    }
    report_catch_up(job);
    taskmanagers.report_rss(args.state_memory.as_deref());
    Ok(())
}

/// Prints when the job caught up with its Kafka sources, if it had to.
fn report_catch_up(job: &kappa_jobmanager::job::JobEntry) {
    let Some(status) = job.catch_up.lock().as_ref().map(|c| c.status()) else {
        return;
    };
    let since = |ms: i64| (ms - job.submitted_at_ms) as f64 / 1000.0;
    match status.episode {
        Some(e) => println!(
            "  catching up from {:.1} s after the submission ({} records behind) to {}",
            since(e.started_ms),
            e.lag_at_start,
            e.ended_ms
                .map_or("the end".into(), |t| format!("{:.1} s", since(t)))
        ),
        None => println!("  never catching up (never behind by more than its threshold)"),
    }
}

/// Prints what a run took and its figures: events/s and events per CPU-second.
fn report(what: &str, events: u64, wall: Duration, cpu: Duration) {
    let n = events as f64;
    println!(
        "{what}: {events} events in {:.2} s wall, {:.2} s CPU",
        wall.as_secs_f64(),
        cpu.as_secs_f64()
    );
    println!("  {:.0} events/s", n / wall.as_secs_f64());
    println!(
        "  {:.0} events per CPU-second",
        n / cpu.as_secs_f64().max(1e-9)
    );
}

/// Prints what the job's completed checkpoints took and stored.
fn report_checkpoints(history: &[kappa_jobmanager::checkpoint::CheckpointStats]) {
    use kappa_jobmanager::checkpoint::CheckpointStatus;
    let done: Vec<_> = history
        .iter()
        .filter(|c| c.status == CheckpointStatus::Completed)
        .collect();
    let failed = history
        .iter()
        .filter(|c| c.status == CheckpointStatus::Failed)
        .count();
    println!("  checkpoints: {} completed, {failed} failed", done.len());
    let mb = |b: u64| b as f64 / 1e6;
    for c in done.iter().rev() {
        let sync = c.subtasks.iter().map(|s| s.sync_ms).max().unwrap_or(0);
        let upload = c.subtasks.iter().map(|s| s.async_ms).max().unwrap_or(0);
        let align = c.subtasks.iter().map(|s| s.alignment_ms).max().unwrap_or(0);
        println!(
            "    chk-{}: {} ms (sync {sync} ms, upload {upload} ms, alignment {align} ms), full {:.1} MB, uploaded {:.1} MB",
            c.id,
            c.duration_ms.unwrap_or(0),
            mb(c.full_bytes),
            mb(c.incremental_bytes)
        );
    }
}
