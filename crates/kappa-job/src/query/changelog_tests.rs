//! Planning change streams (a `debezium-json` source): filters and projections carry the
//! change column, an aggregate without a window retracts deleted rows, sinks that can delete
//! receive them; what cannot follow deletes is refused with the reason.

use crate::plan::{CHANGE_COLUMN, JobPlan, Overrides, WindowAssigner, plan_job};

const EXAMPLE: &str = include_str!("../../../../examples/debezium-orders.toml");

fn plan(text: &str) -> JobPlan {
    plan_job("job.toml", text, &Overrides::default()).unwrap()
}

fn errors(text: &str) -> Vec<String> {
    plan_job("job.toml", text, &Overrides::default())
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The example with its queries replaced by `sql` into `customer_totals`.
fn with_totals(sql: &str) -> String {
    let head = EXAMPLE.split("[[queries]]").next().unwrap();
    let head = head.replace("[sinks.orders_copy]", "[sinks.unused]");
    format!(
        "{head}[[queries]]\nsql = \"INSERT INTO unused SELECT * FROM orders\"\n\n[[queries]]\nsql = \"\"\"\nINSERT INTO customer_totals\n{sql}\n\"\"\"\n"
    )
}

#[test]
fn the_example_keeps_a_copy_and_retracting_totals() {
    let p = plan(EXAMPLE);
    assert!(p.sources[0].changelog());
    assert_eq!(p.sinks.len(), 2);
    assert!(
        p.sinks.iter().all(|s| s.changes),
        "both sinks apply deletes"
    );
    // What a sink receives is its columns; the change column travels after them.
    let copy = p.sinks.iter().find(|s| s.name == "orders_copy").unwrap();
    let names: Vec<&str> = copy
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["order_id", "customer", "amount", "status"]);
    let [w] = p.windows.as_slice() else {
        panic!("one aggregate: {:?}", p.windows);
    };
    assert_eq!(w.assigner, WindowAssigner::Global { ttl_ms: 0 });
    // Its input: the source's columns and the Kafka timestamp, then the change column.
    assert_eq!(w.retract, Some(5));
    let (last, rows) = w.aggregates.last().unwrap();
    assert_eq!(last, "_kappa_rows");
    assert!(rows.function.is_count() && rows.argument.is_none());
    let out = &w.output_schema;
    assert_eq!(out.field(out.fields().len() - 1).name(), CHANGE_COLUMN);
    // Every stage between carries the change column last.
    for stage in &p.stages {
        let f = stage.schema.fields();
        assert_eq!(f[f.len() - 1].name(), CHANGE_COLUMN, "{}", stage.uid);
    }
    let totals = p
        .sinks
        .iter()
        .find(|s| s.name == "customer_totals")
        .unwrap();
    let names: Vec<&str> = totals
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names,
        ["customer", "orders", "total"],
        "the row count is dropped"
    );
    assert!(
        p.graph()
            .to_string()
            .contains("deletes of a change stream applied")
    );
}

#[test]
fn what_cannot_follow_deletes_is_refused_with_the_reason() {
    let refused = [
        (
            "SELECT customer, max(amount) AS top FROM orders GROUP BY customer",
            "count, sum and avg can; max cannot yet",
        ),
        (
            "SELECT customer, count(DISTINCT status) AS s FROM orders GROUP BY customer",
            "count_distinct cannot yet",
        ),
        (
            "SELECT customer, window_start AS order_id, count(*) AS total FROM TUMBLE(orders, logged_at, INTERVAL '1' HOUR) GROUP BY customer, window_start, window_end",
            "a window over a change stream",
        ),
        (
            "SELECT a.customer, count(*) AS orders, sum(b.amount) AS total FROM orders a JOIN orders b ON a.order_id = b.order_id GROUP BY a.customer",
            "a join over a change stream",
        ),
    ];
    for (sql, why) in refused {
        let e = errors(&with_totals(sql));
        assert!(e.iter().any(|e| e.contains(why)), "{sql}: {e:?}");
    }
    // Sinks that only append, and a kafka sink without a key, cannot delete.
    let file = EXAMPLE.replace(
        "connector = \"postgres\"\nurl = \"postgres://kappa@127.0.0.1:5432/shop\"\ntable = \"orders_copy\"\nkey = \"{order_id}\"",
        "connector = \"file\"\npath = \"/tmp/orders\"",
    );
    assert_ne!(file, EXAMPLE);
    let e = errors(&file);
    assert!(
        e.iter()
            .any(|e| e.contains("`orders_copy` receives a change stream")
                && e.contains("only appends")),
        "{e:?}"
    );
    let kafka = EXAMPLE.replace(
        "connector = \"postgres\"\nurl = \"postgres://kappa@127.0.0.1:5432/shop\"\ntable = \"orders_copy\"\nkey = \"{order_id}\"",
        "connector = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"copy\"",
    );
    let e = errors(&kafka);
    assert!(e.iter().any(|e| e.contains("tombstone")), "{e:?}");
    // With a key, a kafka sink deletes with tombstones.
    let keyed = kafka.replace("topic = \"copy\"", "topic = \"copy\"\nkey = \"{order_id}\"");
    assert!(plan(&keyed).sinks.iter().all(|s| s.changes));
    // The table form has no changes; a sink does not write debezium-json.
    let table_form = "name = \"t\"\n[source]\nconnector = \"kafka\"\nbootstrap_servers = \"b:9092\"\ntopic = \"t\"\nformat = \"debezium-json\"\nschema = { id = \"int64\" }\n[sink]\nconnector = \"stdout\"\n";
    let e = errors(table_form);
    assert!(
        e.iter()
            .any(|e| e.contains("source.format") && e.contains("[[queries]]")),
        "{e:?}"
    );
    let sink_format = keyed.replace(
        "topic = \"copy\"",
        "topic = \"copy\"\nformat = \"debezium-json\"",
    );
    let e = errors(&sink_format);
    assert!(e.iter().any(|e| e.contains("a source format")), "{e:?}");
}

#[test]
fn a_filtered_projection_of_changes_is_still_a_change_stream() {
    let p = plan(&with_totals(
        "SELECT customer, count(*) AS orders, sum(amount * 2) AS total FROM (SELECT customer, amount, logged_at FROM orders WHERE amount > 10) GROUP BY customer",
    ));
    let w = &p.windows[0];
    // The aggregate's input is the projection of three columns, then the change column.
    assert_eq!(w.retract, Some(3));
    // Updating results of a change stream are not filtered or aggregated again yet.
    let e = errors(&with_totals(
        "SELECT customer, orders, total FROM (SELECT customer, count(*) AS orders, sum(amount) AS total FROM orders GROUP BY customer) WHERE orders > 1",
    ));
    assert!(
        e.iter().any(|e| e.contains("filtering an updating result")),
        "{e:?}"
    );
}
