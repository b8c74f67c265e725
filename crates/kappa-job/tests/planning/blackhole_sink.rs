//! `connector = "blackhole"`: any delivery (nothing to commit), updating results too, no
//! options of other connectors.

use kappa_job::plan::SinkKind;
use kappa_job::{Overrides, plan_job};

fn job(sink: &str, sql: &str) -> String {
    format!(
        r#"name = "blackhole"

[sources.bid]
connector = "nexmark"
table = "bid"
event_time = {{ column = "date_time" }}

[sinks.out]
connector = "blackhole"
{sink}

[checkpoints]
enabled = false

[[queries]]
sql = "INSERT INTO out {sql}"
"#
    )
}

#[test]
fn a_blackhole_takes_any_delivery_and_updating_results() {
    for delivery in ["none", "at-least-once", "exactly-once"] {
        let text = job(
            &format!("delivery = \"{delivery}\""),
            "SELECT auction, count(*) AS bids FROM bid GROUP BY auction",
        );
        let plan = plan_job("job.toml", &text, &Overrides::default())
            .unwrap_or_else(|e| panic!("{delivery}: {e}"));
        assert!(matches!(plan.sinks[0].kind, SinkKind::Blackhole));
        assert!(plan.graph().to_string().contains("Sink: blackhole"));
    }
}

#[test]
fn a_blackhole_refuses_the_options_of_other_connectors() {
    for (option, connectors) in [
        (
            "key = \"{auction}\"",
            "kafka, postgres, redis, elasticsearch and file",
        ),
        ("path = \"out\"", "file, parquet and iceberg"),
        ("topic = \"t\"", "kafka"),
    ] {
        let e = plan_job(
            "job.toml",
            &job(option, "SELECT auction FROM bid"),
            &Overrides::default(),
        )
        .expect_err(option)
        .to_string();
        assert!(
            e.contains(&format!("applies to the {connectors} connector")),
            "{option}: {e}"
        );
    }
}
