//! The Upgrades pages of the web UI in a real headless Chromium (WebDriver), against a real
//! Kafka-protocol broker: the reference job's page starts an audit; the audit's page follows it
//! to CAUGHT_UP with v1 and v2 side by side and a diff that finds every window equal (the
//! count of an independent reference), offers no cut-over, and its Abort ends it ABORTED, as the
//! Upgrades list then shows. Screenshots go to `target/<profile>/ui-screenshots/`.

use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::browser::Browser;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    START, clicks, hourly_counts, latest_per_key, produce_closed,
};
use kappa_integration_tests::{SINK_PARTITIONS, reference_job};
use serde_json::{Value, json};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// How long a job may take to write its windows, or an audit to reach a phase.
const SLOW: Duration = Duration::from_secs(180);

/// A count as the UI prints it (`1,234`).
fn count(s: &str) -> Option<u64> {
    s.trim().replace(',', "").parse().ok()
}

#[test]
fn an_audit_started_from_the_job_page_shows_its_diff_and_is_aborted() {
    let broker = Broker::start().expect("broker");
    broker
        .create_topic("hourly", SINK_PARTITIONS)
        .expect("topic");
    let data = clicks(3_000, 23, START, 3, 40);
    produce_closed(&broker, "clicks", 2, &data).expect("produce");
    let dir = tempfile::tempdir().expect("tmp");
    let checkpoints = dir.path().join("checkpoints");
    let cluster = Cluster::local(4, &["--checkpoint-dir", checkpoints.to_str().unwrap()])
        .expect("kappa local");
    let job = reference_job(&broker.bootstrap, "clicks", "hourly", FILTER, 1)
        + "\n[checkpoints]\ninterval = \"1s\"\n";
    let v1 = cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit v1");
    // v1 has written every window before the audit compares its sink.
    let windows = hourly_counts(&data, |u| u > 50);
    let records = broker.read_results("hourly", &windows, SLOW).expect("read");
    cluster.assert_results(&v1, &latest_per_key(&records).expect("records"), &windows);

    // The job's page starts the audit and goes to its page.
    let b = Browser::start().expect("headless Chromium");
    b.goto(&format!("{}/#/jobs/{v1}", cluster.url)).unwrap();
    b.wait_text("#job-state", SLOW, |t| t == "RUNNING").unwrap();
    b.click("#audit").unwrap();
    let audit = b
        .wait_until("the audit's page", SLOW, || {
            Ok(b.hash()?
                .strip_prefix("#/upgrades/")
                .filter(|id| !id.is_empty())
                .map(str::to_string))
        })
        .unwrap();
    b.wait_text("#upgrade-kind", SLOW, |t| t == "Audit")
        .unwrap();
    b.wait_text("#upgrade-id", SLOW, |t| t == audit).unwrap();

    // Caught up: the diff finds every window of v1 in v2 and nothing else.
    b.wait_text("#upgrade-phase", SLOW, |t| t == "CAUGHT_UP")
        .unwrap();
    let counts = b
        .wait_until("the diff's counts", SLOW, || {
            let cells = b.texts("table.diff-counts td")?;
            Ok((!cells.is_empty()).then_some(cells))
        })
        .unwrap();
    let counts: Vec<Option<u64>> = counts.iter().map(|c| count(c)).collect();
    let expected = [Some(windows.len() as u64), Some(0), Some(0), Some(0)];
    assert_eq!(counts, expected, "equal, changed, only in v1, only in v2");
    let summary = b.text("#diff-summary").unwrap().unwrap_or_default();
    assert!(summary.starts_with("No differences"), "{summary}");

    // v1 and v2 side by side: links to their pages and their states; the sink and its shadow.
    let u: Value = cluster
        .get(&format!("/api/v1/upgrades/{audit}"))
        .and_then(|r| Ok(r.json()?))
        .expect("the audit");
    let shadow_job = u["shadow_job"].as_str().expect("a shadow job").to_string();
    assert_ne!(shadow_job, v1);
    let link = |card: &str| {
        b.js(
            "const a = document.querySelector(arguments[0] + ' [data-job] a'); \
             return a && a.getAttribute('href');",
            vec![json!(card)],
        )
        .unwrap()
    };
    assert_eq!(link("#v1"), json!(format!("#/jobs/{v1}")));
    assert_eq!(link("#v2"), json!(format!("#/jobs/{shadow_job}")));
    b.wait_text("#v1 [data-field=state]", SLOW, |t| t == "RUNNING")
        .unwrap();
    b.wait_text("#v2 [data-field=state]", SLOW, |t| t == "RUNNING")
        .unwrap();
    let shadow = u["shadows"][0]["shadow"].as_str().unwrap_or_default();
    assert!(shadow.starts_with("hourly."), "the shadow topic: {u}");
    let sinks = b.text("#sinks").unwrap().unwrap_or_default();
    assert!(sinks.contains(&format!("hourly → {shadow}")), "{sinks}");
    b.wait_text("#shadow-progress", SLOW, |t| t.contains("records behind"))
        .unwrap();
    let hidden = |id: &str| {
        b.js(
            "return document.getElementById(arguments[0]).hidden;",
            vec![json!(id)],
        )
        .unwrap()
    };
    assert_eq!(hidden("cutover"), true, "an audit is never cut over");
    assert_eq!(hidden("abort"), false);
    b.screenshot("audit-caught-up").unwrap();

    // The download compares the sinks again, with the page's token header: nothing differs.
    b.click("#download-diff").unwrap();
    b.wait_text("#action-result", SLOW, |t| t.starts_with("saved"))
        .unwrap();
    assert_eq!(
        b.text("#action-result").unwrap().as_deref(),
        Some("saved 0 differing rows")
    );

    // Abort: confirmed, the audit ends ABORTED, its shadow run cancelled and v1 running.
    b.click("#abort").unwrap();
    let asked = b.accept_alert().unwrap();
    assert!(asked.starts_with("Abort?"), "{asked}");
    b.wait_text("#upgrade-phase", SLOW, |t| t == "ABORTED")
        .unwrap();
    b.wait_text("#v2 [data-field=state]", SLOW, |t| t == "CANCELED")
        .unwrap();
    b.wait_text("#v1 [data-field=state]", SLOW, |t| t == "RUNNING")
        .unwrap();
    let reason = b.text("#upgrade-reason").unwrap().unwrap_or_default();
    assert_eq!(reason, "aborted on request");
    let history = b.texts("#history li").unwrap();
    for phase in ["SHADOWING", "CAUGHT_UP", "ABORTED"] {
        assert!(
            history.iter().any(|h| h.contains(phase)),
            "{phase} in the history: {history:?}"
        );
    }
    assert_eq!(hidden("abort"), true, "an ended audit has no Abort button");
    b.screenshot("audit-aborted").unwrap();

    // The Upgrades list shows it ABORTED, with a link to its job.
    b.click("#nav-upgrades").unwrap();
    let row = format!("#upgrades-table tr[data-upgrade='{audit}']");
    b.wait_text(&format!("{row} [data-field=phase]"), SLOW, |t| {
        t == "ABORTED"
    })
    .unwrap();
    let text = b.text(&row).unwrap().unwrap_or_default();
    assert!(text.contains("audit"), "{text}");
    let job_link = b
        .js(
            "return document.querySelector(arguments[0] + ' a[href^=\"#/jobs/\"]').getAttribute('href');",
            vec![json!(row)],
        )
        .unwrap();
    assert_eq!(job_link, json!(format!("#/jobs/{v1}")));
    b.screenshot("upgrades-list").unwrap();
}
