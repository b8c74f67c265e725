//! Planning SQL queries into operators: windows, stages, sinks, and located errors.

use crate::graph::OperatorKind;
use crate::plan::{Output, Overrides, WindowAssigner, plan_job};

const SQL: &str = include_str!("../../../../examples/hourly-item-clicks-sql.toml");
const TOML: &str = include_str!("../../../../examples/hourly-item-clicks.toml");

fn errors(text: &str) -> Vec<String> {
    plan_job("job.toml", text, &Overrides::default())
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_reference_job_in_sql_plans_like_the_table_form() {
    let sql = plan_job("job.toml", SQL, &Overrides::default()).unwrap();
    let toml = plan_job("job.toml", TOML, &Overrides::default()).unwrap();
    let (s, t) = (&sql.windows[0], &toml.windows[0]);
    assert_eq!(s.assigner, WindowAssigner::Tumbling { size_ms: 3_600_000 });
    assert_eq!(s.assigner, t.assigner);
    assert_eq!(s.time_index, t.time_index);
    assert_eq!(s.output_schema, t.output_schema);
    assert_eq!(sql.sinks[0].schema, toml.sinks[0].schema);
    assert_eq!(s.uid, "hourly_clicks.window");
    let g = sql.graph();
    let kinds: Vec<Vec<OperatorKind>> = g
        .vertices
        .iter()
        .map(|v| v.chain.iter().map(|o| o.kind).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            vec![OperatorKind::Source(0), OperatorKind::Steps(0)],
            vec![OperatorKind::Window(0), OperatorKind::Sink(0)],
        ],
        "{g}"
    );
    assert!(
        g.to_string()
            .contains("Filter: (CAST(split_part(clicks.user_id"),
        "{g}"
    );
}

#[test]
fn views_chain_windows_and_having_filters_after_the_aggregate() {
    let text = SQL.split("[[queries]]").next().unwrap().to_string()
        + r#"
[[queries]]
sql = """
CREATE VIEW hourly AS
SELECT item_id, window_start AS hour_start, window_end AS hour_end, count(*) AS clicks,
       sum(length(user_id)) AS chars
FROM TUMBLE(clicks, timestamp, INTERVAL '1' HOUR)
GROUP BY item_id, window_start, window_end
HAVING count(*) > 1
"""

[[queries]]
name = "daily"
sql = """
INSERT INTO hourly_clicks
SELECT window_start, window_end, item_id, max(clicks) AS click_count
FROM TUMBLE(hourly, hour_start, INTERVAL '1' DAY)
GROUP BY window_start, item_id, window_end
"""
"#;
    let plan = plan_job("job.toml", &text, &Overrides::default()).unwrap();
    assert_eq!(plan.windows.len(), 2);
    assert_eq!(plan.windows[0].uid, "hourly.window");
    assert_eq!(plan.windows[1].uid, "daily.window");
    assert_eq!(
        plan.windows[1].assigner,
        WindowAssigner::Tumbling {
            size_ms: 86_400_000
        }
    );
    // The second window reads the HAVING filter's stage after the first window.
    let into_second: Vec<Output> = plan.inputs(OperatorKind::Window(1)).collect();
    assert!(
        matches!(
            into_second.as_slice(),
            [Output {
                op: OperatorKind::Steps(_),
                port: 0
            }]
        ),
        "{into_second:?}"
    );
    let names: Vec<&str> = plan.sinks[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names,
        ["window_start", "window_end", "item_id", "click_count"],
        "the SELECT's order, whatever the GROUP BY's"
    );
    assert_eq!(
        plan.windows[1].time_index, 1,
        "hourly's hour_start is its second column"
    );
}

#[test]
fn errors_say_what_and_where() {
    let head = SQL.split("[[queries]]").next().unwrap().to_string();
    let q = |sql: &str| format!("{head}[[queries]]\nsql = \"\"\"\n{sql}\n\"\"\"\n");
    let line_of_sql = head.lines().count() + 3;
    // A parser error at line 2 of the SQL.
    let e = errors(&q(
        "INSERT INTO hourly_clicks\nSELECT item_id FROM clicks WHERE ) x",
    ));
    assert!(
        e[0].starts_with(&format!("job.toml:{}:", line_of_sql + 1)),
        "{e:?}"
    );
    assert!(e[0].contains("queries[0].sql"), "{e:?}");
    let window = |from: &str, group_by: &str| {
        format!(
            "INSERT INTO hourly_clicks SELECT item_id, count(*) AS c FROM {from} GROUP BY {group_by}"
        )
    };
    // (query, what one of its errors says)
    let cases = [
        (
            "INSERT INTO hourly_clicks SELECT nope FROM clicks".to_string(),
            vec!["nope", "item_id"],
        ),
        (
            "INSERT INTO hourly_clicks SELECT * FROM clickz".into(),
            vec!["clickz", "clicks"],
        ),
        (
            "INSERT INTO nowhere SELECT * FROM clicks".into(),
            vec!["no sink `nowhere`"],
        ),
        (
            "INSERT INTO hourly_clicks SELECT count(*) AS c FROM clicks".into(),
            vec!["one row forever"],
        ),
        (
            "INSERT INTO hourly_clicks SELECT * FROM clicks ORDER BY item_id".into(),
            vec!["ORDER BY"],
        ),
        (
            window(
                "TUMBLE(clicks, user_id, INTERVAL '1' HOUR)",
                "item_id, window_start, window_end",
            ),
            vec!["window on `timestamp`"],
        ),
        (
            window(
                "TUMBLE(clicks, timestamp, INTERVAL '1' MONTH)",
                "item_id, window_start, window_end",
            ),
            vec!["months"],
        ),
        (
            window("TUMBLE(clicks, timestamp, INTERVAL '1' HOUR)", "item_id"),
            vec!["GROUP BY window_start, window_end"],
        ),
        ("SELECT * FROM clicks".into(), vec!["INSERT INTO"]),
    ];
    for (sql, says) in cases {
        let e = errors(&q(&sql));
        assert!(
            e.iter().any(|e| says.iter().all(|s| e.contains(s))),
            "{sql}: {says:?} in {e:?}"
        );
    }
}

#[test]
fn hop_and_session_and_filtered_aggregates_plan() {
    let head = SQL.split("[[queries]]").next().unwrap().to_string();
    let text = head
        + r#"
[[queries]]
sql = """
INSERT INTO hourly_clicks
SELECT item_id, window_start, window_end,
       count(*) FILTER (WHERE user_id <> 'bot') AS click_count
FROM TABLE(HOP(clicks, DESCRIPTOR(timestamp), INTERVAL '5' MINUTE, INTERVAL '1' HOUR))
GROUP BY item_id, window_start, window_end;
INSERT INTO hourly_clicks
SELECT item_id, window_start, window_end, count(*) AS click_count
FROM SESSION(clicks, timestamp, INTERVAL '10' MINUTE)
GROUP BY item_id, window_start, window_end
"""
"#;
    let plan = plan_job("job.toml", &text, &Overrides::default()).unwrap();
    assert_eq!(
        plan.windows[0].assigner,
        WindowAssigner::Sliding {
            size_ms: 3_600_000,
            slide_ms: 300_000
        }
    );
    assert_eq!(
        plan.windows[1].assigner,
        WindowAssigner::Session { gap_ms: 600_000 }
    );
    assert!(
        plan.windows[0].aggregates[0].1.argument.is_some(),
        "FILTER counts a CASE"
    );
    assert_eq!(
        plan.inputs(OperatorKind::Sink(0)).count(),
        2,
        "both INSERTs feed the sink"
    );
    assert_ne!(plan.windows[0].uid, plan.windows[1].uid);
}

#[test]
fn an_aggregate_without_a_window_updates_keyed_sinks_and_is_refused_by_appending_ones() {
    let head = SQL.split("[[queries]]").next().unwrap().to_string();
    let head = head.replace("key = \"{item_id}-{window_end}\"", "key = \"{item_id}\"");
    let query = r#"
[[queries]]
state_ttl = "7d"
sql = """
INSERT INTO hourly_clicks
SELECT item_id, count(*) AS click_count, max(length(user_id)) AS longest
FROM clicks GROUP BY item_id
"""
"#;
    let plan = plan_job("job.toml", &(head.clone() + query), &Overrides::default()).unwrap();
    assert_eq!(
        plan.windows[0].assigner,
        WindowAssigner::Global {
            ttl_ms: 7 * 86_400_000
        }
    );
    assert_eq!(plan.windows[0].uid, "hourly_clicks.aggregate");
    let names: Vec<&str> = plan.sinks[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["item_id", "click_count", "longest"]);
    assert!(plan.graph().to_string().contains("Aggregate: updating"));

    let unkeyed = head.replace("key = \"{item_id}\"", "");
    assert_ne!(unkeyed, head);
    let e = errors(&(unkeyed + query));
    assert!(e.iter().any(|e| e.contains("set `key`")), "{e:?}");
    let e = errors(
        &(head.clone()
            + &query.replace("GROUP BY item_id", "GROUP BY item_id HAVING count(*) > 2")),
    );
    assert!(e[0].contains("filtering an updating result"), "{e:?}");
}

/// Two sources of clicks and a file sink, for joins.
const TWO: &str = r#"name = "joins"
parallelism = 2

[sources.web]
connector = "file"
path = "/tmp/web"
schema = { user_id = "string", item_id = "string", timestamp = "timestamp_ms" }
event_time = { column = "timestamp" }

[sources.app]
connector = "file"
path = "/tmp/app"
schema = { user_id = "string", item = "string", timestamp = "timestamp_ms" }
event_time = { column = "timestamp" }

[sinks.out]
connector = "file"
path = "/tmp/out"
"#;

fn with_query(sql: &str) -> String {
    format!("{TWO}\n[[queries]]\nsql = \"\"\"\n{sql}\n\"\"\"\n")
}

#[test]
fn joins_bounded_in_time_plan_and_unbounded_ones_are_refused() {
    use crate::plan::JoinKind;
    let window = plan_job(
        "job.toml",
        &with_query(
            "INSERT INTO out
SELECT w.item_id, w.window_start, w.window_end, w.user_id AS web_user, a.user_id AS app_user
FROM TUMBLE(web, timestamp, INTERVAL '1' MINUTE) w
JOIN TUMBLE(app, timestamp, INTERVAL '1' MINUTE) a
ON w.item_id = a.item AND w.window_start = a.window_start AND w.window_end = a.window_end
WHERE w.user_id <> a.user_id",
        ),
        &Overrides::default(),
    )
    .unwrap();
    let j = &window.joins[0];
    assert!(matches!(j.kind, JoinKind::Window { .. }), "{:?}", j.kind);
    assert_eq!(
        j.output_schema.fields().len(),
        10,
        "both sides with their windows"
    );
    assert_eq!(window.inputs(OperatorKind::Join(0)).count(), 2);
    let g = window.graph();
    assert!(g.to_string().contains("Window join"), "{g}");
    assert_eq!(
        g.edges
            .iter()
            .filter(|e| e.ship_strategy.starts_with("hash("))
            .count(),
        2,
        "{g}"
    );

    let interval = plan_job(
        "job.toml",
        &with_query(
            "INSERT INTO out
SELECT w.item_id, w.user_id, a.user_id AS app_user
FROM web w JOIN app a
ON w.item_id = a.item
AND w.timestamp BETWEEN a.timestamp - INTERVAL '10' MINUTE AND a.timestamp + INTERVAL '5' SECOND",
        ),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        interval.joins[0].kind,
        JoinKind::Interval {
            lower_ms: -600_000,
            upper_ms: 5_000
        }
    );

    let temporal = plan_job(
        "job.toml",
        &with_query(
            "INSERT INTO out
SELECT w.item_id, w.user_id, a.user_id AS app_user
FROM web w JOIN app FOR SYSTEM_TIME AS OF w.timestamp AS a ON w.item_id = a.item",
        ),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(temporal.joins[0].kind, JoinKind::Temporal);
    assert!(temporal.graph().to_string().contains("Temporal join"));
    let e = errors(&with_query(
        "INSERT INTO out SELECT w.item_id, a.user_id FROM web w JOIN app FOR SYSTEM_TIME AS OF w.user_id AS a ON w.item_id = a.item",
    ));
    assert!(e[0].contains("event time"), "{e:?}");
    let e = errors(&with_query(
        "INSERT INTO out SELECT w.item_id, a.user_id FROM web w JOIN app a ON w.item_id = a.item",
    ));
    assert!(e[0].contains("time is bounded"), "{e:?}");
    let e = errors(&with_query(
        "INSERT INTO out SELECT w.item_id, a.user_id FROM web w LEFT JOIN app a ON w.item_id = a.item AND w.timestamp = a.timestamp",
    ));
    assert!(e[0].contains("only inner joins"), "{e:?}");
}
