//! Planning rankings: Top-N per window and deduplication, and what is refused.

use crate::graph::{OperatorKind, Partitioning};
use crate::plan::{JobPlan, Overrides, RankKind, WindowAssigner, plan_job};

/// A job reading clicks, writing to a stdout sink, with `queries` appended.
fn job(queries: &str) -> String {
    format!(
        r#"
name = "ranks"
parallelism = 2

[sources.clicks]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "clicks"
format = "json"
schema = {{ user_id = "string", item_id = "string", timestamp = "timestamp_ms" }}
event_time = {{ column = "timestamp", max_out_of_orderness = "5s" }}

[sinks.out]
connector = "stdout"
format = "json"
{queries}"#
    )
}

const HOURLY: &str = r#"
[[queries]]
sql = """
CREATE VIEW hourly AS
SELECT item_id, window_start, window_end, count(*) AS clicks
FROM TUMBLE(clicks, timestamp, INTERVAL '1' HOUR)
GROUP BY item_id, window_start, window_end
"""
"#;

fn plan(queries: &str) -> JobPlan {
    plan_job("job.toml", &job(queries), &Overrides::default()).unwrap()
}

/// The columns the sink receives, with their types.
fn columns(p: &JobPlan) -> String {
    let fields = p.sinks[0].schema.fields().iter();
    let shown: Vec<String> = fields
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    shown.join(", ")
}

fn error(queries: &str) -> String {
    let e = plan_job("job.toml", &job(queries), &Overrides::default()).unwrap_err();
    e.0.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn insert(sql: &str) -> String {
    format!("{HOURLY}\n[[queries]]\nname = \"top\"\nsql = \"\"\"\nINSERT INTO out\n{sql}\n\"\"\"\n")
}

const TOP3: &str = "SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY clicks DESC) AS rownum
  FROM hourly) WHERE rownum <= 3";

#[test]
fn top_n_per_window_is_a_keyed_ranking_after_the_window() {
    let p = plan(&insert(TOP3));
    let [r] = p.rankings.as_slice() else {
        panic!("{:?}", p.rankings)
    };
    assert_eq!(
        r.kind,
        RankKind::TopN {
            limit: 3,
            end_index: 2
        }
    );
    assert_eq!(r.uid, "top.topn");
    let keys: Vec<&str> = r.partition.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, ["window_start", "window_end"]);
    assert!(r.order[0].descending && r.order[0].expr.name == "clicks");
    assert_eq!(
        columns(&p),
        "item_id Utf8, window_start Int64, window_end Int64, clicks Int64, rownum UInt64"
    );
    let g = p.graph();
    let rank = g
        .vertices
        .iter()
        .find(|v| v.chain[0].kind == OperatorKind::Rank(0))
        .expect("the ranking heads a vertex");
    assert!(rank.key_groups.is_some());
    let edge = g.edge(rank.inputs[0]).unwrap();
    assert_eq!(edge.partitioning, Partitioning::Hash);
    assert_eq!(
        edge.ship_strategy,
        "hash(hourly.window_start, hourly.window_end)"
    );
    let text = g.to_string();
    assert!(
        text.contains("Top-3 per window by hourly.window_start, hourly.window_end ordered by hourly.clicks DESC"),
        "{text}"
    );
}

#[test]
fn bounds_and_projections_over_the_ranking() {
    for (filter, limit) in [("rownum < 5", 4), ("rownum = 1", 1), ("10 >= rownum", 10)] {
        let sql = TOP3.replace("rownum <= 3", filter);
        let p = plan(&insert(&sql));
        assert_eq!(
            p.rankings[0].kind,
            RankKind::TopN {
                limit,
                end_index: 2
            },
            "{filter}"
        );
    }
    // Columns picked above the ranking, and more partition keys.
    let sql = TOP3
        .replace("SELECT * FROM (", "SELECT item_id, clicks, rownum FROM (")
        .replace(
            "window_start, window_end ORDER",
            "window_start, window_end, item_id ORDER",
        );
    let p = plan(&insert(&sql));
    assert_eq!(p.rankings[0].partition.len(), 3);
    assert_eq!(p.sinks[0].schema.fields().len(), 3);
}

#[test]
fn dedup_keeps_the_first_row_per_key_with_the_state_ttl() {
    let q = r#"
[[queries]]
state_ttl = "1h"
sql = """
INSERT INTO out
SELECT user_id, item_id, timestamp FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY timestamp ASC) AS rn FROM clicks
) WHERE rn = 1
"""
"#;
    let p = plan(q);
    assert_eq!(
        p.rankings[0].kind,
        RankKind::KeepFirst {
            time_index: 2,
            ttl_ms: 3_600_000
        }
    );
    assert_eq!(p.rankings[0].uid, "out.dedup");
    assert!(
        p.graph()
            .to_string()
            .contains("Deduplicate: first row per key")
    );
}

#[test]
fn what_a_stream_cannot_rank_is_refused_with_the_reason() {
    let over = |partition: &str, order: &str, filter: &str| {
        insert(&format!(
            "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {order}) AS rownum FROM hourly) WHERE {filter}"
        ))
    };
    let cases = [
        (
            insert(
                "SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY clicks) AS r FROM hourly",
            ),
            "an unbounded ranking keeps every row",
        ),
        (
            insert(
                "SELECT *, rank() OVER (PARTITION BY window_start ORDER BY clicks) AS r FROM hourly",
            ),
            "only ROW_NUMBER() is supported",
        ),
        (
            over("window_start, window_end", "clicks", "rownum > 3"),
            "rownum <= N",
        ),
        (
            over(
                "window_start, window_end",
                "clicks",
                "rownum <= 3 AND clicks > 1",
            ),
            "filter other columns in a query over this one",
        ),
        (
            over("window_start, window_end", "clicks", "rownum < 1"),
            "keeps no row",
        ),
        (
            over("window_start, window_end", "clicks", "rownum <= 100000"),
            "at most 10000",
        ),
        (
            over("item_id", "clicks", "rownum = 1"),
            "either a Top-N per window",
        ),
        (
            over("item_id", "window_start DESC", "rownum = 1"),
            "is an updating result",
        ),
        (
            over("item_id", "window_start", "rownum <= 2"),
            "deduplication keeps one row per key",
        ),
        (
            insert(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (ORDER BY window_start) AS rownum FROM hourly) WHERE rownum = 1",
            ),
            "deduplicate by keys",
        ),
        (
            insert(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY user_id) AS rownum FROM SESSION(clicks, timestamp, INTERVAL '1' MINUTE)) WHERE rownum <= 3",
            ),
            "aggregate the sessions first",
        ),
        (
            insert(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_end, item_id ORDER BY user_id) AS rownum FROM TUMBLE(clicks, timestamp, INTERVAL '1' HOUR)) WHERE rownum <= 3",
            ),
            "PARTITION BY window_start, window_end (and any keys)",
        ),
        (
            insert(
                "SELECT * FROM (SELECT item_id, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY clicks) AS rownum, clicks FROM hourly) WHERE rownum <= 3",
            ),
            "the row number last",
        ),
        (
            insert(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY clicks) + 1 AS rownum FROM hourly) WHERE rownum <= 3",
            ),
            "the row number last",
        ),
        (
            insert(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY clicks) AS a, ROW_NUMBER() OVER (ORDER BY clicks) AS b FROM hourly) WHERE a <= 3",
            ),
            "one ROW_NUMBER() OVER (…) per query",
        ),
    ];
    for (q, want) in cases {
        let e = error(&q);
        assert!(e.contains(want), "{want:?} not in {e}");
    }
}

#[test]
fn top_n_of_window_table_function_rows_assigns_the_windows_in_the_ranking() {
    let tvf = |partition: &str| {
        format!(
            "[[queries]]\nsql = \"\"\"\nINSERT INTO out\nSELECT * FROM (\n  SELECT *, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY timestamp DESC) AS rownum\n  FROM HOP(clicks, timestamp, INTERVAL '5' MINUTE, INTERVAL '10' MINUTE)\n) WHERE rownum <= 2\n\"\"\"\n"
        )
    };
    let p = plan(&tvf("window_start, window_end, item_id"));
    let r = &p.rankings[0];
    assert_eq!(
        r.kind,
        RankKind::TopN {
            limit: 2,
            end_index: 4
        }
    );
    assert_eq!(
        r.assign,
        Some((
            WindowAssigner::Sliding {
                size_ms: 600_000,
                slide_ms: 300_000
            },
            2
        ))
    );
    let keys: Vec<&str> = r.partition.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, ["item_id"], "the window is added in the ranking");
    assert_eq!(r.input_schema.fields().len(), 3);
    assert_eq!(
        columns(&p),
        "user_id Utf8, item_id Utf8, timestamp Timestamp(ms), window_start Int64, window_end Int64, rownum UInt64"
    );
    let text = p.graph().to_string();
    assert!(
        text.contains("Top-2 per window (of the rows, windowed here)"),
        "{text}"
    );
    // Only the window: every row to one key group.
    let p = plan(&tvf("window_start, window_end"));
    assert_eq!(p.rankings[0].partition.len(), 1);
    let text = p.graph().to_string();
    assert!(text.contains("--hash(0)-->"), "{text}");
}
