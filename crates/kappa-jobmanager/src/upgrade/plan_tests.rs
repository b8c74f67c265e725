//! The upgrade plan against real job files: what changed, how v2 starts, its shadows, the
//! backlog and what refuses a cut-over.

use std::collections::BTreeMap;

use kappa_connectors::kafka::history::phase::Held;

use kappa_job::{JobPlan, Overrides, plan_job};

use super::plan::{PartitionFacts, PlanInputs, TopicFacts, UpgradePlan, plan};

const V1: &str = r#"name = "hourly-item-clicks"
parallelism = 2

[source]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "user-behavior"
schema = { user_id = "string", item_id = "string", timestamp = "timestamp_ms" }

[event_time]
column = "timestamp"
max_out_of_orderness = "10s"

[[steps]]
filter = "CAST(split_part(user_id, '_', 2) AS INT) > 50"

[window]
kind = "tumbling"
size = "1h"
key_by = ["item_id"]
aggregates = { clicks = "count(*)" }

[sinks.pg]
connector = "postgres"
url = "postgres://kappa@localhost/kappa"
table = "public.hourly_clicks"
key = "{item_id}-{window_end}"

[sinks.kafka]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "hourly-clicks"
key = "{item_id}-{window_end}"
"#;

fn planned(text: &str) -> JobPlan {
    plan_job("job.toml", text, &Overrides::default()).expect("a valid job")
}

fn topics(low: i64, v1_started_at: Option<i64>) -> Vec<TopicFacts> {
    vec![TopicFacts {
        source: "source".into(),
        topic: "user-behavior".into(),
        partitions: (0..4)
            .map(|partition| PartitionFacts {
                partition,
                low,
                high: 1_000,
                v1_started_at,
                archived: None,
            })
            .collect(),
        oldest_event_ms: None,
    }]
}

fn plan_of(v2: &str, state: &str, topics: &[TopicFacts]) -> UpgradePlan {
    let rate = Some((500.0, "a catch-up of job j1".into()));
    plan_between(V1, v2, state, topics, rate, &BTreeMap::new())
}

/// The plan of upgrading `v1` (in `state`) to `v2` with these facts.
fn plan_between(
    v1: &str,
    v2: &str,
    state: &str,
    topics: &[TopicFacts],
    replay_rate: Option<(f64, String)>,
    unusable_dirs: &BTreeMap<String, String>,
) -> UpgradePlan {
    let (p1, p2) = (planned(v1), planned(v2));
    let inputs = PlanInputs {
        upgrade_id: "upg7",
        v1: &p1,
        v1_state: state,
        v2: &p2,
        topics,
        replay_rate,
        unusable_dirs,
        oldest_windows: &[],
    };
    plan(&inputs, kappa_job::changes::changes(v1, v2).unwrap())
}

#[test]
fn a_changed_filter_replays_the_backlog_into_shadows_of_every_sink() {
    let v2 = V1.replace("> 50", "> 70");
    let p = plan_of(&v2, "RUNNING", &topics(0, None));
    assert_eq!(p.refusals, Vec::<String>::new());
    assert!(!p.start.from_savepoint);
    assert!(p.history_complete);
    assert!(
        p.start.why.contains("logic changed (steps[0].filter)"),
        "{}",
        p.start.why
    );
    assert_eq!(
        p.changes
            .iter()
            .map(|c| (c.part.as_str(), c.path.as_str()))
            .collect::<Vec<_>>(),
        [("logic", "steps[0].filter")]
    );
    let shadows: Vec<(&str, &str, &str)> = p
        .shadows
        .iter()
        .map(|s| (s.sink.as_str(), s.live.as_str(), s.shadow.as_str()))
        .collect();
    assert_eq!(
        shadows,
        [
            ("kafka", "hourly-clicks", "hourly-clicks.upg7"),
            ("pg", "public.hourly_clicks", "public.hourly_clicks__upg7"),
        ]
    );
    assert_eq!(p.backlog_events, 4_000);
    assert_eq!(p.expected_ms, Some(8_000), "4 000 events at 500/s");
    assert!(p.rate_basis.contains("a catch-up of job j1"));
}

#[test]
fn a_changed_setting_starts_from_a_savepoint_without_a_backlog() {
    let v2 = V1.replace("parallelism = 2", "parallelism = 3");
    let p = plan_of(&v2, "RUNNING", &topics(0, None));
    assert!(p.start.from_savepoint, "{}", p.start.why);
    assert!(p.backlog.is_empty() && p.expected_ms.is_none());
    assert!(p.refusals.is_empty());
    // Nothing changed at all: a warning, not a refusal.
    let same = plan_of(V1, "RUNNING", &topics(0, None));
    assert!(
        same.warnings
            .iter()
            .any(|w| w.starts_with("nothing changed"))
    );
}

#[test]
fn what_cannot_be_cut_over_is_refused_with_its_reason() {
    let refused = |v2: &str, state: &str| plan_of(v2, state, &topics(0, None)).refusals;
    assert_eq!(
        refused(V1, "FAILED"),
        ["the job is FAILED: only a running job can be upgraded"]
    );
    let moved = refused(
        &V1.replace("topic = \"hourly-clicks\"", "topic = \"daily\""),
        "RUNNING",
    );
    assert!(
        moved[0].contains("v1 writes kafka `hourly-clicks`, v2 kafka `daily`"),
        "{moved:?}"
    );
    let rekeyed = refused(
        &V1.replace(
            "table = \"public.hourly_clicks\"\nkey = \"{item_id}-{window_end}\"",
            "table = \"public.hourly_clicks\"\nkey = \"{item_id}\"",
        ),
        "RUNNING",
    );
    assert!(
        rekeyed[0].contains("keys its rows by `{item_id}` instead of `{item_id}-{window_end}`"),
        "{rekeyed:?}"
    );
    let columns = refused(
        &V1.replace(
            "aggregates = { clicks = \"count(*)\" }",
            "aggregates = { clicks = \"count(*)\", users = \"count(DISTINCT user_id)\" }",
        ),
        "RUNNING",
    );
    assert_eq!(columns.len(), 2, "both sinks: {columns:?}");
    assert!(columns[0].contains("users Int64"), "{columns:?}");
    let dropped = refused(V1.split("[sinks.kafka]").next().unwrap(), "RUNNING");
    assert_eq!(
        dropped,
        ["sink `kafka` of v1 is not in v2: what it holds would stay v1's"]
    );
    let added = refused(
        &(V1.to_string() + "\n[sinks.more]\nconnector = \"stdout\"\n"),
        "RUNNING",
    );
    assert!(
        added[0].starts_with("sink `more` is new in v2"),
        "{added:?}"
    );
}

#[test]
fn the_archive_of_a_trimmed_topic_counts_in_the_backlog_and_keeps_the_history_complete() {
    let v2 = V1.replace("> 50", "> 70");
    let mut facts = topics(300, Some(100));
    for p in &mut facts[0].partitions {
        p.archived = Some(Held {
            first: 0,
            last: 799,
        });
    }
    let p = plan_of(&v2, "RUNNING", &facts);
    assert_eq!(p.backlog_events, 4_000, "offsets 0..1000 of 4 partitions");
    assert_eq!(p.backlog[0].from_archive, 3_200);
    assert!(p.history_complete, "{:?}", p.warnings);
    assert_eq!(p.expected_ms, Some(8_000));
}

#[test]
fn records_deleted_since_v1_read_them_are_a_warning_and_long_names_a_refusal() {
    let v2 = V1.replace("> 50", "> 70");
    let p = plan_of(&v2, "RUNNING", &topics(300, Some(100)));
    assert_eq!(p.backlog_events, 2_800);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("no longer holds 800 records v1 read")),
        "{:?}",
        p.warnings
    );
    assert!(!p.history_complete, "the cut-over keeps what only v1 has");
    let long = "t".repeat(60);
    let v2 = V1
        .replace("> 50", "> 70")
        .replace("public.hourly_clicks", &format!("public.{long}"));
    let v1 = V1.replace("public.hourly_clicks", &format!("public.{long}"));
    let p = plan_between(&v1, &v2, "RUNNING", &[], None, &BTreeMap::new());
    assert!(
        p.refusals[0].contains("longer than 63 characters"),
        "{:?}",
        p.refusals
    );
    assert!(p.rate_basis.starts_with("no replay was measured"));
}

#[test]
fn a_file_sink_gets_a_shadow_directory_beside_it_unless_the_jobmanager_cannot_rename_it() {
    let with_files = |filter: &str| {
        V1.replace("> 50", filter)
            + "\n[sinks.files]\nconnector = \"file\"\npath = \"/data/hourly/\"\nkey = \"{item_id}-{window_end}\"\n"
    };
    let facts = topics(0, None);
    let of = |unusable: &BTreeMap<String, String>| {
        let (v1, v2) = (with_files("> 50"), with_files("> 70"));
        plan_between(&v1, &v2, "RUNNING", &facts, None, unusable)
    };
    let p = of(&BTreeMap::new());
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let files = p
        .shadows
        .iter()
        .find(|s| s.sink == "files")
        .expect("a shadow");
    assert_eq!(
        (files.live.as_str(), files.shadow.as_str()),
        ("/data/hourly", "/data/hourly.upg7")
    );
    let why = "the jobmanager does not see `/data/hourly`".to_string();
    let refused = of(&BTreeMap::from([("/data/hourly".to_string(), why.clone())]));
    assert_eq!(refused.refusals, [format!("sink `files`: {why}")]);
}

#[test]
fn a_sink_without_a_shadow_refuses_the_upgrade_for_v2_would_write_into_it() {
    let sinks = [
        (
            "cache",
            "redis",
            "connector = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nkey = \"{item_id}-{window_end}\"",
        ),
        (
            "es",
            "elasticsearch",
            "connector = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200\"\nindex = \"hourly\"\nkey = \"{item_id}-{window_end}\"",
        ),
        (
            "lake",
            "parquet files",
            "connector = \"parquet\"\npath = \"s3://lake/clicks\"",
        ),
    ];
    for (name, what, table) in sinks {
        let v1 = format!("{V1}\n[sinks.{name}]\n{table}\n");
        let v2 = v1.replace("> 50", "> 70");
        let p = plan_between(
            &v1,
            &v2,
            "RUNNING",
            &topics(0, None),
            None,
            &BTreeMap::new(),
        );
        assert_eq!(
            p.refusals,
            [format!(
                "sink `{name}` writes {what}, which an upgrade cannot cut over yet (PostgreSQL, Kafka and file sinks can): v2 would write into it beside v1"
            )]
        );
        let shadows: Vec<&str> = p.shadows.iter().map(|s| s.sink.as_str()).collect();
        assert_eq!(shadows, ["kafka", "pg"], "the other sinks still get theirs");
    }
}
