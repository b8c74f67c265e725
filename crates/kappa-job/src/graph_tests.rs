//! Planning jobs with several sources, windows and sinks into physical graphs.

use crate::graph::LATE_PORT;
use crate::graph::{OperatorKind, Partitioning, Route};
use crate::plan::{Output, Overrides, plan_job};

const REFERENCE: &str = include_str!("../../../examples/hourly-item-clicks.toml");
const MULTI: &str = include_str!("../../../examples/web-and-app-clicks.toml");

fn errors(text: &str) -> Vec<crate::SpecError> {
    plan_job("job.toml", text, &Overrides::default())
        .unwrap_err()
        .0
}

#[test]
fn the_reference_job_is_a_source_chain_and_a_keyed_window_chain() {
    let plan = plan_job("job.toml", REFERENCE, &Overrides::default()).unwrap();
    let g = plan.graph();
    assert_eq!(g.vertices.len(), 2);
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
        "stateless steps are chained into the source; the sink into the window"
    );
    let uids: Vec<&str> = g.operators().map(|o| o.uid.as_str()).collect();
    assert_eq!(uids, ["source", "steps", "window", "sink"]);
    assert_eq!(g.edges.len(), 1);
    assert_eq!(g.edges[0].partitioning, Partitioning::Hash);
    assert_eq!(g.vertices[1].inputs, [g.edges[0].id]);
    assert_eq!(g.vertices[0].chain[1].outputs, [vec![Route::Edge(0)]]);
    assert_eq!(g.vertices[1].key_groups.as_ref().map(Vec::len), Some(2));
    assert_eq!(g.input_channels(&g.vertices[1]), [(0, 0, 2)]);
}

#[test]
fn a_job_without_a_window_is_one_chain() {
    let text = REFERENCE.split("[window]").next().unwrap().to_string()
        + "[sink]\nconnector = \"stdout\"\n";
    let g = plan_job("job.toml", &text, &Overrides::default())
        .unwrap()
        .graph();
    assert_eq!(g.vertices.len(), 1);
    assert!(g.edges.is_empty());
    assert_eq!(g.vertices[0].chain.len(), 3);
}

#[test]
fn named_sources_are_unioned_into_the_first_window_and_every_sink_gets_its_input() {
    let plan = plan_job("job.toml", MULTI, &Overrides::default()).unwrap();
    let names: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app", "web"], "in name order");
    assert_eq!(plan.sources[1].uid, "sources.web");
    assert_eq!(plan.windows.len(), 2);
    assert_eq!(plan.windows[1].uid, "daily-max");
    let out: Vec<&str> = plan.sinks[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(out, ["item_id", "window_start", "window_end", "max_hourly"]);
    let inputs: Vec<(&str, Vec<Output>)> = plan
        .sinks
        .iter()
        .enumerate()
        .map(|(k, s)| {
            (
                s.name.as_str(),
                plan.inputs(OperatorKind::Sink(k)).collect(),
            )
        })
        .collect();
    let result = Output::result(OperatorKind::Window(1));
    let late = Output {
        op: OperatorKind::Window(0),
        port: LATE_PORT,
    };
    assert_eq!(
        inputs,
        [
            ("archive", vec![result]),
            ("late", vec![late]),
            ("results", vec![result])
        ]
    );
    assert_eq!(plan.schema(late), Some(plan.sinks[1].schema.clone()));
    assert_eq!(plan.windows[0].late_output, Some(1));
    let late: Vec<&str> = plan.sinks[1]
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        late,
        [
            "user_id",
            "item_id",
            "timestamp",
            "window_start",
            "window_end"
        ],
        "late events keep their fields and get the window they missed"
    );

    let g = plan.graph();
    // app, web, hourly (+ late sink), daily-max (+ result sinks)
    assert_eq!(g.vertices.len(), 4, "{g}");
    let hourly = &g.vertices[2];
    assert_eq!(hourly.chain[0].kind, OperatorKind::Window(0));
    assert_eq!(hourly.inputs.len(), 2, "both sources feed the first window");
    assert_eq!(
        g.input_channels(hourly),
        [(0, 0, 2), (1, 2, 2)],
        "one channel per upstream subtask of each input edge"
    );
    assert_eq!(
        g.channel(1, 1),
        Some(3),
        "web's subtask 1 on the second edge"
    );
    assert_eq!(g.channel(1, 2), None, "no third subtask");
    assert_eq!(hourly.chain[1].kind, OperatorKind::Sink(1));
    assert_eq!(
        hourly.chain[0].outputs,
        [vec![Route::Edge(2)], vec![Route::Chained(1)]],
        "results to the next window, late events to the chained late sink"
    );
    let daily = &g.vertices[3];
    let kinds: Vec<OperatorKind> = daily.chain.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [
            OperatorKind::Window(1),
            OperatorKind::Sink(0),
            OperatorKind::Sink(2)
        ]
    );
    assert_eq!(
        daily.chain[0].outputs[0],
        [Route::Chained(1), Route::Chained(2)],
        "fan-out to both result sinks"
    );
    assert!(g.edges.iter().all(|e| e.partitioning == Partitioning::Hash));
    assert!(
        daily.operators[0].ends_with("max(click_count) AS max_hourly"),
        "{}",
        daily.operators[0]
    );
    // What each edge carries: the union's records, then the hourly rows.
    assert_eq!(
        plan.edge_schema(&g, 0),
        Some(plan.sources[0].schema.clone())
    );
    assert_eq!(
        plan.edge_schema(&g, 2),
        Some(plan.windows[0].output_schema.clone())
    );
    assert_eq!(plan.edge_schema(&g, 9), None);
}

#[test]
fn sources_without_a_window_meet_in_a_sink_vertex() {
    let text = MULTI.split("[[windows]]").next().unwrap().to_string()
        + "[sinks.out]\nconnector = \"stdout\"\n";
    let g = plan_job("job.toml", &text, &Overrides::default())
        .unwrap()
        .graph();
    assert_eq!(g.vertices.len(), 3, "{g}");
    assert_eq!(g.vertices[2].chain[0].kind, OperatorKind::Sink(0));
    assert!(
        g.edges
            .iter()
            .all(|e| e.partitioning == Partitioning::Forward)
    );
    assert_eq!(g.input_channels(&g.vertices[2]), [(0, 0, 1), (1, 1, 1)]);
    assert_eq!(
        (g.channel(1, 0), g.channel(1, 1)),
        (Some(1), Some(1)),
        "a forward edge has one channel whatever the subtask"
    );
}

#[test]
fn mistakes_in_named_tables_are_located_by_their_path() {
    let text = MULTI.replacen(
        "schema = { user_id = \"string\", item_id = \"string\", timestamp = \"timestamp_ms\" }",
        "schema = { user_id = \"string\", item_id = \"int\", timestamp = \"timestamp_ms\" }",
        1,
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "sources.web.schema");
    assert!(errs[0].message.contains("same columns"), "{}", errs[0]);

    let text = MULTI.replace("late_output = \"late\"", "late_output = \"missing\"");
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.field == "windows[0].late_output"
            && e.message.contains("no sink `missing`")
            && e.message.contains("archive, late, results")),
        "{errs:?}"
    );

    let text = MULTI.replace("uid = \"daily-max\"\n", "");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "windows[1].uid");

    let text = MULTI.replace("uid = \"daily-max\"", "uid = \"hourly\"");
    assert!(
        errors(&text)
            .iter()
            .any(|e| e.field == "uid" && e.message.contains("`hourly`")),
    );

    let text = MULTI.replace("topic = \"clicks-app\"\n", "");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "sources.app.topic");

    let text = MULTI.replacen(
        "event_time = { column = \"timestamp\", max_out_of_orderness = \"10s\", idle_timeout = \"30s\" }\n",
        "",
        1,
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.field == "windows[0]" && e.message.contains("[sources.web]")),
        "{errs:?}"
    );

    let both = format!(
        "{}\n[source]\nconnector = \"file\"\npath = \"x\"\nschema = {{ a = \"int\" }}\n",
        MULTI
    );
    assert!(errors(&both).iter().any(|e| e.field == "sources"
        && e.message == "write either one [source] or named [sources.<name>] tables, not both"));
    let both = format!("{MULTI}\n[sink]\nconnector = \"stdout\"\n");
    assert!(errors(&both).iter().any(|e| e.field == "sinks"
        && e.message == "write either one [sink] or named [sinks.<name>] tables, not both"));
    let none = MULTI
        .split("[sinks.results]")
        .next()
        .unwrap()
        .replace("late_output = \"late\"\n", "");
    assert!(
        errors(&none).iter().any(|e| e.field == "sink"
            && e.message == "missing: a job writes to a [sink] (or named [sinks.<name>] tables)"),
        "{:?}",
        errors(&none)
    );

    assert_eq!(
        errs.len(),
        1,
        "no follow-on error for the later window: {errs:?}"
    );
    let all_late = MULTI.split("[sinks.results]").next().unwrap().to_string()
        + "[sinks.late]\nconnector = \"file\"\npath = \"late\"\n";
    assert!(
        errors(&all_late)
            .iter()
            .any(|e| e.field == "sinks" && e.message.contains("at least one")),
        "{:?}",
        errors(&all_late)
    );
}
