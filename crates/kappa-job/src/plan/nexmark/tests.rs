//! Planning nexmark sources: the plan of a valid source, and every refused option located.

use crate::error::SpecError;
use crate::plan::nexmark::{NexmarkSourcePlan, NexmarkTable, table_schema};
use crate::plan::{Overrides, SourceKind, plan_job};
use crate::start::StartPosition;

const JOB: &str = r#"name = "bids"
parallelism = 2
max_parallelism = 64

[sources.bid]
connector = "nexmark"
table = "bid"
events = 200000
rate = 10000
seed = 7
event_time = { column = "date_time", max_out_of_orderness = "0s" }

[window]
kind = "tumbling"
size = "10s"
key_by = ["auction"]

[window.aggregates]
bids = "count(*)"

[sinks.out]
connector = "file"
path = "/tmp/out"
"#;

fn plan_of(text: &str) -> NexmarkSourcePlan {
    let plan = plan_job("job.toml", text, &Overrides::default()).unwrap();
    assert_eq!(plan.sources[0].schema, table_schema(NexmarkTable::Bid));
    match &plan.sources[0].kind {
        SourceKind::Nexmark(n) => n.clone(),
        other => panic!("a nexmark source, got {other:?}"),
    }
}

fn errors(text: &str) -> Vec<SpecError> {
    plan_job("job.toml", text, &Overrides::default())
        .unwrap_err()
        .0
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// The job with `line` (`key = value`) replacing the source's line of that key, or added.
fn with(line: &str) -> String {
    let key = line.split(" = ").next().unwrap_or(line);
    match JOB.lines().find(|l| l.starts_with(&format!("{key} = "))) {
        Some(old) => JOB.replace(old, line),
        None => JOB.replace("seed = 7\n", &format!("seed = 7\n{line}\n")),
    }
}

#[test]
fn a_nexmark_source_plans_with_its_table_schema_and_the_jobs_splits() {
    let n = plan_of(JOB);
    assert_eq!(n.table, NexmarkTable::Bid);
    assert_eq!((n.events, n.rate, n.seed), (Some(200_000), Some(10_000), 7));
    assert_eq!(
        (n.max_rate, n.base_time_ms, n.avg_bid_bytes),
        (None, None, None)
    );
    assert_eq!(n.splits, 64, "the job's max_parallelism");
    let n = plan_of(&JOB.replace("max_parallelism = 64\n", ""));
    assert_eq!(n.splits, crate::keygroup::DEFAULT_MAX_PARALLELISM);
    let plan = plan_job("job.toml", JOB, &Overrides::default()).unwrap();
    assert_eq!(plan.sources[0].start, StartPosition::Earliest);
    assert!(
        plan.graph()
            .to_string()
            .contains("Source: nexmark `bid` (200000 events)"),
        "{}",
        plan.graph()
    );
}

#[test]
fn optional_knobs_plan_as_written() {
    let text = with(
        "max_rate = 5000\nbase_time = \"2020-01-01T00:00:00Z\"\nhot_auction_ratio = 3\n\
         num_active_people = 50\navg_bid_bytes = 0",
    );
    let n = plan_of(&text);
    assert_eq!(n.max_rate, Some(5000));
    assert_eq!(n.base_time_ms, Some(1_577_836_800_000));
    assert_eq!(n.hot_auction_ratio, Some(3));
    assert_eq!(n.num_active_people, Some(50));
    assert_eq!(n.avg_bid_bytes, Some(0));
    let n = plan_of(&with("max_rate = \"off\"\nbase_time = 1000"));
    assert_eq!((n.max_rate, n.base_time_ms), (None, Some(1000)));
    let n = plan_of(&JOB.replace("events = 200000\n", ""));
    assert_eq!(n.events, None, "unbounded");
}

#[test]
fn refused_options_are_located() {
    let cases: [(&str, &str, &str); 13] = [
        (
            "max_rate = 1.5",
            "sources.bid.max_rate",
            "an integer or a string",
        ),
        (
            "events = 0",
            "sources.bid.events",
            "must be at least 1, got 0",
        ),
        (
            "rate = -5",
            "sources.bid.rate",
            "must be at least 1, got -5",
        ),
        ("seed = -1", "sources.bid.seed", "must be at least 0"),
        (
            "max_rate = 0",
            "sources.bid.max_rate",
            "at least 1 event per second",
        ),
        (
            "max_rate = \"fast\"",
            "sources.bid.max_rate",
            "neither a number",
        ),
        (
            "base_time = \"yesterday\"",
            "sources.bid.base_time",
            "RFC 3339",
        ),
        (
            "hot_bidders_ratio = 0",
            "sources.bid.hot_bidders_ratio",
            "at least 1",
        ),
        (
            "num_in_flight_auctions = 4294967296",
            "sources.bid.num_in_flight_auctions",
            "above the maximum 4294967295",
        ),
        (
            "avg_auction_bytes = 70000",
            "sources.bid.avg_auction_bytes",
            "above the maximum 65536",
        ),
        (
            "schema = { a = \"string\" }",
            "sources.bid.schema",
            "fixed schema",
        ),
        ("format = \"json\"", "sources.bid.format", "no format"),
        ("topic = \"t\"", "sources.bid.topic", "does not apply"),
    ];
    for (line, field, says) in cases {
        let text = with(line);
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{line}: {errs:?}");
        assert_eq!(errs[0].field, field, "{line}");
        assert_eq!(errs[0].line, Some(line_of(&text, line)), "{line}");
        assert!(
            errs[0].message.contains(says),
            "{line}: {}",
            errs[0].message
        );
    }
}

#[test]
fn an_unknown_or_missing_table_lists_the_three() {
    let text = JOB.replace("table = \"bid\"", "table = \"bids\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(line_of(&text, "table = \"bids\"")));
    assert!(
        errs[0].message.contains("person, auction or bid"),
        "{}",
        errs[0]
    );
    let errs = errors(&JOB.replace("table = \"bid\"\n", ""));
    assert_eq!(errs[0].field, "sources.bid.table");
    assert!(errs[0].message.starts_with("missing"), "{}", errs[0]);
}

#[test]
fn a_start_other_than_earliest_is_refused() {
    let text = with("start = \"latest\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(line_of(&text, "start = ")));
    let o = Overrides {
        start: Some(StartPosition::Latest),
        ..Overrides::default()
    };
    assert!(plan_job("job.toml", JOB, &o).is_err());
}

#[test]
fn other_connectors_refuse_nexmark_options() {
    let text = r#"name = "x"
[source]
connector = "file"
path = "/tmp/in"
schema = { n = "int" }
table = "bid"
events = 5
[sink]
connector = "stdout"
"#;
    let errs = errors(text);
    let fields: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.line)).collect();
    assert_eq!(
        fields,
        [("source.table", Some(6)), ("source.events", Some(7))],
        "{errs:?}"
    );
    let text = "name = \"x\"\n[source]\nconnector = \"file\"\npath = \"/tmp/in\"\n[sink]\nconnector = \"stdout\"\n";
    let errs = errors(text);
    assert_eq!(errs[0].field, "source.schema");
    assert!(errs[0].message.starts_with("missing"), "{}", errs[0]);
}
