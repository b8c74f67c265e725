//! `kappa bench nexmark --query qN`: runs a Nexmark query of examples/nexmark (built into the
//! binary) over N generated events on an embedded cluster, its sink replaced by a blackhole
//! (or, with `--sink`, Parquet files or an Iceberg table in a temporary directory), and prints
//! events/s and events per CPU-second, as the Nexmark suite reports Flink's.

use std::time::Duration;

use anyhow::{Context, bail};
use kappa_jobmanager::job::JobState;

use super::{BenchArgs, BenchSource, report, report_checkpoints, start_cluster, submit};

/// The job files of examples/nexmark, by query name.
pub const QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("../../../../examples/nexmark/q0.toml")),
    ("q1", include_str!("../../../../examples/nexmark/q1.toml")),
    ("q2", include_str!("../../../../examples/nexmark/q2.toml")),
    ("q10", include_str!("../../../../examples/nexmark/q10.toml")),
    ("q11", include_str!("../../../../examples/nexmark/q11.toml")),
    ("q14", include_str!("../../../../examples/nexmark/q14.toml")),
    ("q15", include_str!("../../../../examples/nexmark/q15.toml")),
    ("q16", include_str!("../../../../examples/nexmark/q16.toml")),
    ("q17", include_str!("../../../../examples/nexmark/q17.toml")),
    ("q21", include_str!("../../../../examples/nexmark/q21.toml")),
    ("q22", include_str!("../../../../examples/nexmark/q22.toml")),
    ("q5", include_str!("../../../../examples/nexmark/q5.toml")),
    ("q8", include_str!("../../../../examples/nexmark/q8.toml")),
];

/// Where a benchmarked query's rows go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchSink {
    Blackhole,
    Parquet,
    Iceberg,
}

#[derive(clap::Args, Debug)]
pub struct NexmarkArgs {
    /// The query: q0, q1, q2, q5, q8, q10, q11, q14, q15, q16, q17, q21 or q22 (examples/nexmark).
    #[arg(long)]
    pub query: String,
    /// Where its rows go: a blackhole, Parquet files, or an Iceberg table (a SQLite catalog),
    /// the last two in a temporary directory, committed at checkpoints (they need
    /// --checkpoint-interval).
    #[arg(long, value_enum, default_value_t = BenchSink::Blackhole)]
    pub sink: BenchSink,
}

/// The `[sinks.out]` table of `sink` writing under `dir` (the query `name`'s table).
fn sink_table(sink: BenchSink, dir: &std::path::Path, name: &str) -> toml::Table {
    let mut t = toml::Table::new();
    let mut set = |k: &str, v: String| t.insert(k.into(), toml::Value::String(v));
    match sink {
        BenchSink::Blackhole => {
            set("connector", "blackhole".into());
        }
        BenchSink::Parquet => {
            set("connector", "parquet".into());
            set("path", dir.join("parquet").display().to_string());
        }
        BenchSink::Iceberg => {
            set("connector", "iceberg".into());
            set(
                "url",
                format!("sqlite://{}", dir.join("catalog.db").display()),
            );
            set("path", dir.join("warehouse").display().to_string());
            set("table", format!("bench.{name}"));
        }
    }
    t
}

/// The job of a query for a benchmark: every nexmark source bounded at `events` event numbers
/// and unpaced, the sink `out` replaced by `sink`.
pub fn bench_job(text: &str, events: u64, sink: toml::Table) -> anyhow::Result<String> {
    let mut job: toml::Table = text.parse().context("the query's job file")?;
    let sources = job
        .get_mut("sources")
        .and_then(toml::Value::as_table_mut)
        .context("the job has no [sources]")?;
    for (_, source) in sources.iter_mut() {
        let Some(source) = source.as_table_mut() else {
            continue;
        };
        if source.get("connector").and_then(toml::Value::as_str) == Some("nexmark") {
            let events = i64::try_from(events).context("--events is too large")?;
            source.insert("events".into(), toml::Value::Integer(events));
            source.remove("max_rate");
        }
    }
    let sinks = job
        .get_mut("sinks")
        .and_then(toml::Value::as_table_mut)
        .context("the job has no [sinks]")?;
    if !sinks.contains_key("out") {
        bail!("the job has no sink `out`");
    }
    sinks.insert("out".into(), toml::Value::Table(sink));
    Ok(toml::to_string(&job)?)
}

pub async fn run(args: &BenchArgs, nexmark: &NexmarkArgs) -> anyhow::Result<()> {
    let Some((name, text)) = QUERIES.iter().find(|(q, _)| *q == nexmark.query) else {
        let names: Vec<&str> = QUERIES.iter().map(|(q, _)| *q).collect();
        bail!(
            "no Nexmark query `{}` in Kappa SQL: the queries are {} (examples/nexmark/README.md says why the others are missing)",
            nexmark.query,
            names.join(", ")
        );
    };
    if args.source != BenchSource::File || args.bootstrap_servers.is_some() {
        bail!(
            "--source and --bootstrap-servers choose the reference job's input: the Nexmark queries generate theirs"
        );
    }
    if nexmark.sink != BenchSink::Blackhole && args.checkpoint_interval.is_none() {
        bail!(
            "--sink parquet and iceberg commit their files at checkpoints: give --checkpoint-interval"
        );
    }
    // The cluster allows jobs this directory: the sink writes in it.
    let dir = tempfile::tempdir()?;
    let sink = sink_table(nexmark.sink, dir.path(), name);
    let mut job = bench_job(text, args.events, sink)?;
    if let Some(i) = &args.checkpoint_interval {
        job += &format!("\n[checkpoints]\ninterval = \"{i}\"\nretained = 2\n");
    }
    let (jm, taskmanagers) = start_cluster(args, dir.path()).await?;
    let file_name = format!("nexmark-{name}.toml");
    let started = submit(&jm, &taskmanagers, &file_name, &job, args.parallelism).await?;
    let detail = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = started.job.detail();
        match d.summary.state {
            JobState::Finished => break d,
            JobState::Failed => bail!("bench job failed: {}", d.summary.error.unwrap_or_default()),
            _ => {}
        }
    };
    let (wall, cpu) = started.took(&taskmanagers);
    // Rows into the sink: what the vertices ending in it emitted.
    let rows: u64 = detail
        .vertices
        .iter()
        .filter(|v| v.operators.last().is_some_and(|o| o.starts_with("Sink")))
        .map(|v| v.records_out)
        .sum();
    let what = format!("nexmark {name}, parallelism {}", args.parallelism);
    report(&what, args.events, wall, cpu);
    let sink = format!("{:?}", nexmark.sink).to_lowercase();
    println!("  {rows} rows into the {sink} sink");
    if let Some(history) = started.job.checkpoints.lock().as_ref().map(|c| c.history()) {
        report_checkpoints(&history);
    }
    taskmanagers.report_rss(args.state_memory.as_deref());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_job::plan::SinkKind;

    #[test]
    fn every_example_is_built_in_and_plans_as_a_bounded_job_into_a_blackhole() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/nexmark");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("examples/nexmark")
            .filter_map(|e| {
                let name = e.expect("entry").file_name().to_string_lossy().to_string();
                name.strip_suffix(".toml").map(str::to_string)
            })
            .collect();
        files.sort();
        let mut built_in: Vec<String> = QUERIES.iter().map(|(q, _)| q.to_string()).collect();
        built_in.sort();
        assert_eq!(
            built_in, files,
            "QUERIES lists every examples/nexmark/*.toml"
        );
        for (name, text) in QUERIES {
            let sink = sink_table(BenchSink::Blackhole, std::path::Path::new("/tmp"), name);
            let job = bench_job(text, 1234, sink).expect("rewritten");
            let plan = kappa_job::plan_job("bench.toml", &job, &kappa_job::Overrides::default())
                .unwrap_or_else(|e| panic!("{name}: {e}\n{job}"));
            assert!(
                matches!(plan.sinks[0].kind, SinkKind::Blackhole),
                "{name}: {job}"
            );
            for s in &plan.sources {
                let kappa_job::plan::SourceKind::Nexmark(n) = &s.kind else {
                    panic!("{name}: a nexmark source");
                };
                assert_eq!((n.events, n.max_rate), (Some(1234), None), "{name}");
            }
        }
    }
}
