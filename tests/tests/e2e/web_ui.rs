//! The web UI in a real headless Chromium (WebDriver): a job submitted from the browser runs
//! against a real Kafka-protocol broker, shows its rates, watermark and checkpoints, and is
//! cancelled there; an invalid job.toml shows its problems by line; a cluster with a token asks
//! for it. Screenshots go to `target/<profile>/ui-screenshots/`.

use std::time::{Duration, Instant};

use kappa_integration_tests::browser::Browser;
use kappa_integration_tests::click_stream::LiveClicks;
use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::{free_port, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// How long a job may take to reach a state, or its metrics to show up.
const SLOW: Duration = Duration::from_secs(60);

/// One browser test at a time: each runs a broker, a cluster and Chromium, and the machines
/// that run these tests may have two cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `2026-11-25T16:45:15Z` or with milliseconds: what the UI shows for an event-time watermark.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && s.ends_with('Z')
}

/// A rate as the UI prints it (`1,234.5`).
fn rate(s: &str) -> Option<f64> {
    s.trim().replace(',', "").parse().ok()
}

#[test]
fn a_job_submitted_in_the_browser_runs_checkpoints_and_is_cancelled() {
    let _serial = serial();
    let live = LiveClicks::start().expect("a broker, clicks and kappa local");
    let cluster = &live.cluster;
    let job = live.reference_job(FILTER) + "\n[checkpoints]\ninterval = \"500ms\"\n";
    let b = Browser::start().expect("headless Chromium");

    // Overview: the embedded taskmanager and its slots.
    b.goto(&format!("{}/#/", cluster.url)).unwrap();
    b.wait_text("#tm-count", SLOW, |t| t == "1").unwrap();
    b.wait_text("#slots-total", SLOW, |t| t == "4").unwrap();
    b.wait_text("#checkpoint-dir", SLOW, |t| t.contains("checkpoints"))
        .unwrap();
    b.screenshot("overview").unwrap();

    // Taskmanagers: the one registered, with its slots.
    let tms: serde_json::Value = cluster.get("/api/v1/taskmanagers").unwrap().json().unwrap();
    let tm_id = tms[0]["id"].as_str().expect("a taskmanager").to_string();
    b.click("a[data-nav=taskmanagers]").unwrap();
    let row = b
        .wait_text("#tm-table", SLOW, |t| t.contains(&tm_id))
        .unwrap();
    assert!(row.contains('4'), "its 4 slots: {row}");
    b.screenshot("taskmanagers").unwrap();

    // Submit: type the job, validate it (the plan shows), submit it.
    b.click("#nav-submit").unwrap();
    b.type_into("#job-text", &job).unwrap();
    let typed = b
        .js("return document.getElementById('job-text').value;", vec![])
        .unwrap();
    assert_eq!(
        typed.as_str(),
        Some(job.as_str()),
        "the textarea holds the job"
    );
    b.click("#validate").unwrap();
    b.wait_text("#result", SLOW, |t| {
        t.contains("valid: hourly-item-clicks, parallelism 2")
    })
    .unwrap();
    let plan = b
        .wait_text("#plan", SLOW, |t| t.contains("vertex 1 `window`"))
        .unwrap();
    assert!(plan.contains("Source: kafka topic `clicks`"), "{plan}");
    b.screenshot("submit-validated").unwrap();
    b.click("#submit").unwrap();
    let id = b
        .wait_until("the job's page", SLOW, || {
            Ok(b.hash()?
                .strip_prefix("#/jobs/")
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(str::to_string))
        })
        .unwrap();
    assert_eq!(cluster.job(&id).unwrap()["name"], "hourly-item-clicks");

    // Running, with records flowing through every vertex and an event-time watermark.
    b.wait_text("#job-state", SLOW, |t| t == "RUNNING").unwrap();
    b.wait_until(
        "records/s > 0 and a watermark on every vertex",
        SLOW,
        || {
            let rates = b.texts("#graph [data-field=records_in_per_second]")?;
            let marks = b.texts("#graph [data-field=watermark]")?;
            let flowing =
                rates.len() == 2 && rates.iter().all(|r| rate(r).is_some_and(|r| r > 0.0));
            let watermarked = marks.len() == 2 && marks.iter().all(|w| is_timestamp(w));
            // The window's vertex tells its state; the source's has none.
            let state = b.texts("#graph [data-field=state]")?;
            let keyed =
                state.len() == 1 && state[0].contains(" keys · ") && state[0].contains("in memory");
            Ok((flowing && watermarked && keyed).then_some(()))
        },
    )
    .unwrap();
    let title = b.text("#job-title").unwrap().unwrap_or_default();
    assert_eq!(title, "hourly-item-clicks");
    b.screenshot("job-running").unwrap();

    // Its taskmanager's page lists the job's four subtasks; its link leads back to the job.
    b.click("table.subtasks a[href^='#/taskmanagers/']")
        .unwrap();
    b.wait_text("#tm-id", SLOW, |t| t == tm_id).unwrap();
    b.wait_until("the job's subtasks on the taskmanager page", SLOW, || {
        let rows = b.texts("#tm-tasks tr")?;
        let tasks = rows.iter().filter(|r| r.contains("hourly-item-clicks"));
        Ok((tasks.count() == 4).then_some(()))
    })
    .unwrap();
    b.screenshot("taskmanager").unwrap();
    b.click("#tm-tasks a").unwrap();
    b.wait_until("the job's page again", SLOW, || {
        Ok((b.hash()? == format!("#/jobs/{id}")).then_some(()))
    })
    .unwrap();
    b.wait_text("#job-state", SLOW, |t| t == "RUNNING").unwrap();

    // Its latency: none until an hourly window fires (unless the test runs across the top of
    // an hour).
    b.wait_text("#latency", SLOW, |t| {
        t.contains("no row written yet") || t.contains("p99")
    })
    .unwrap();

    // Metrics tab: a chart per series, drawn from the points the jobmanager took so far.
    b.click("#tab-metrics").unwrap();
    b.wait_until("the metrics tab", SLOW, || {
        Ok(b.hash()?.ends_with("/metrics").then_some(()))
    })
    .unwrap();
    let points = |series: &str| -> anyhow::Result<Vec<u64>> {
        let v = b.js(
            &format!(
                "return [...document.querySelectorAll('#charts .chart[data-series={series}] path.line')] \
                   .map(p => Number(p.dataset.points));"
            ),
            vec![],
        )?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default())
    };
    b.wait_until(
        "records/s of both vertices charted with 2 points or more",
        SLOW,
        || {
            let lines = points("records_in")?;
            Ok((lines.len() == 2 && lines.iter().all(|&n| n >= 2)).then_some(()))
        },
    )
    .unwrap();
    let segments = b
        .js(
            "return [...document.querySelectorAll('#charts .chart[data-series=records_in] path.line')] \
               .map(p => p.getAttribute('d'));",
            vec![],
        )
        .unwrap();
    assert!(
        segments.as_array().is_some_and(|a| a
            .iter()
            .all(|d| d.as_str().is_some_and(|d| d.contains('L')))),
        "each line joins its points: {segments}"
    );
    b.wait_until("checkpoint durations charted", SLOW, || {
        Ok(points("checkpoint_duration")?
            .first()
            .is_some_and(|&n| n >= 1)
            .then_some(()))
    })
    .unwrap();
    let latency = b
        .text("#charts .chart[data-series=latency]")
        .unwrap()
        .unwrap_or_default();
    assert!(
        latency.contains("No data yet") || !points("latency").unwrap().is_empty(),
        "{latency}"
    );
    let legend = b
        .text("#charts .chart[data-series=records_in] .legend")
        .unwrap()
        .unwrap_or_default();
    assert!(
        legend.contains("records/s"),
        "the latest value per line: {legend}"
    );
    b.screenshot("job-metrics").unwrap();

    // Checkpoints tab: a completed checkpoint.
    b.click("#tab-checkpoints").unwrap();
    b.wait_until("the checkpoints tab", SLOW, || {
        Ok(b.hash()?.ends_with("/checkpoints").then_some(()))
    })
    .unwrap();
    b.wait_until("a COMPLETED checkpoint", SLOW, || {
        let rows = b.texts("#checkpoints tr")?;
        Ok(rows.iter().any(|r| r.contains("COMPLETED")).then_some(()))
    })
    .unwrap();
    b.wait_text("#checkpoint-interval", SLOW, |t| t.contains("every 0.5 s"))
        .unwrap();
    b.screenshot("job-checkpoints").unwrap();

    // Cancel: confirm, and the job ends CANCELED.
    b.click("#cancel").unwrap();
    let asked = b.accept_alert().unwrap();
    assert_eq!(asked, "Cancel this job?");
    b.wait_text("#job-state", SLOW, |t| t == "CANCELED")
        .unwrap();
    let hidden = b.js("return document.getElementById('cancel').hidden;", vec![]);
    assert_eq!(hidden.unwrap(), true, "an ended job has no Cancel button");
    b.screenshot("job-canceled").unwrap();
    assert_eq!(cluster.job(&id).unwrap()["state"], "CANCELED");

    // Restore from its newest retained checkpoint: the submit page comes filled in, and the
    // new job resumes from that checkpoint.
    let chk = b
        .wait_until("a retained checkpoint to restore", SLOW, || {
            let v = b.js(
                "const e = document.querySelector('button[data-restore]'); \
                 return e ? e.dataset.restore : null;",
                vec![],
            )?;
            Ok(v.as_str().map(str::to_string))
        })
        .unwrap();
    b.click(&format!("button[data-restore='{chk}']")).unwrap();
    b.wait_until("the submit page", SLOW, || {
        Ok((b.hash()? == "#/submit").then_some(()))
    })
    .unwrap();
    let form = b
        .js(
            "return [document.getElementById('job-text').value, \
                     document.getElementById('start').value, \
                     document.getElementById('start-checkpoint').value, \
                     document.getElementById('start-checkpoint').hidden];",
            vec![],
        )
        .unwrap();
    assert_eq!(form[0].as_str(), Some(job.as_str()), "the job's own file");
    assert_eq!(form[1], "checkpoint");
    assert_eq!(
        form[2].as_str(),
        Some(format!("checkpoint:{id}:{chk}").as_str())
    );
    assert_eq!(form[3], false, "the checkpoint choice shows");
    b.screenshot("restore-from-checkpoint").unwrap();
    b.click("#submit").unwrap();
    let restored = b
        .wait_until("the restored job's page", SLOW, || {
            Ok(b.hash()?
                .strip_prefix("#/jobs/")
                .filter(|new| !new.is_empty() && *new != id && !new.contains('/'))
                .map(str::to_string))
        })
        .unwrap();
    b.wait_text("#job-state", SLOW, |t| t == "RUNNING").unwrap();
    b.click("#tab-exceptions").unwrap();
    b.wait_text("#attempts", SLOW, |t| t.contains(&format!("chk-{chk}")))
        .unwrap();
    b.screenshot("restored-job-attempts").unwrap();
    assert_eq!(
        cluster.job(&restored).unwrap()["attempts"][0]["restored_from"],
        chk.parse::<u64>().unwrap()
    );
}

#[test]
fn an_invalid_job_shows_its_problems_by_line() {
    let _serial = serial();
    let cluster = Cluster::local(2, &[]).expect("kappa local");
    let b = Browser::start().expect("headless Chromium");
    b.goto(&format!("{}/#/submit", cluster.url)).unwrap();

    // An unknown column in key_by and in an aggregate: two problems, each with its line.
    let base = reference_job("127.0.0.1:9", "clicks", "out", FILTER, 2);
    let bad = base
        .replace("key_by = [\"item_id\"]", "key_by = [\"no_such_column\"]")
        .replace("count(*)", "count(nope)");
    let line_of = |text: &str, needle: &str| {
        1 + text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` in the job"))
    };
    let (key_line, agg_line) = (
        line_of(&bad, "no_such_column"),
        line_of(&bad, "count(nope)"),
    );
    b.set_value("#job-text", &bad).unwrap();
    b.click("#validate").unwrap();
    let problems = b
        .wait_until("two problems", SLOW, || {
            let items = b.texts("#problem-list li")?;
            Ok((items.len() == 2).then_some(items))
        })
        .unwrap();
    assert!(
        problems[0].starts_with(&format!("line {key_line}, column "))
            && problems[0].contains("window.key_by[0]")
            && problems[0].contains("no_such_column"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with(&format!("line {agg_line}, column "))
            && problems[1].contains("nope"),
        "{problems:?}"
    );
    let summary = b.text("#problem-summary").unwrap().unwrap_or_default();
    assert!(summary.starts_with("2 problems in the job"), "{summary}");
    let marked = b.texts("#gutter .bad").unwrap();
    assert_eq!(
        marked,
        vec![key_line.to_string(), agg_line.to_string()],
        "the gutter marks the lines"
    );
    assert_eq!(
        b.js("return document.getElementById('plan').hidden;", vec![])
            .unwrap(),
        true,
        "no plan for an invalid job"
    );
    b.screenshot("invalid-job").unwrap();

    // Editing clears the marks; a bad duration is one problem at its line.
    let bad = base.replace("size = \"1h\"", "size = \"1 fortnight\"");
    let size_line = line_of(&bad, "1 fortnight");
    b.set_value("#job-text", &bad).unwrap();
    assert!(b.texts("#gutter .bad").unwrap().is_empty());
    b.click("#validate").unwrap();
    let problem = b
        .wait_until("the duration problem", SLOW, || {
            let items = b.texts("#problem-list li")?;
            Ok((items.len() == 1).then(|| items[0].clone()))
        })
        .unwrap();
    assert!(
        problem.starts_with(&format!("line {size_line}, column "))
            && problem.contains("window.size")
            && problem.contains("fortnight"),
        "{problem}"
    );
    assert_eq!(
        b.texts("#gutter .bad").unwrap(),
        vec![size_line.to_string()]
    );
    b.screenshot("invalid-duration").unwrap();

    // A file that is not UTF-8, chosen with the file input, is refused in the page.
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"name = \"caf\xe9\"\n").unwrap();
    b.type_into("#job-file", latin1.to_str().unwrap()).unwrap();
    let error = b
        .wait_text("#upload-error", SLOW, |t| !t.is_empty())
        .unwrap();
    assert!(
        error.contains("latin1.toml is not UTF-8"),
        "upload error: {error}"
    );
    b.screenshot("upload-not-utf8").unwrap();

    // A UTF-8 file loads into the editor.
    let good = dir.path().join("hourly.toml");
    std::fs::write(&good, &base).unwrap();
    b.type_into("#job-file", good.to_str().unwrap()).unwrap();
    b.wait_until("the uploaded job in the editor", SLOW, || {
        let v = b.js("return document.getElementById('job-text').value;", vec![])?;
        Ok((v.as_str() == Some(base.as_str())).then_some(()))
    })
    .unwrap();
    assert!(b.text("#upload-error").unwrap().is_none());
    b.click("#validate").unwrap();
    b.wait_text("#result", SLOW, |t| {
        t.starts_with("valid: hourly-item-clicks")
    })
    .unwrap();
}

/// `kappa local --auth-token`: the API wants `Authorization: Bearer <token>`; the UI's files do
/// not, and the page asks for the token.
#[test]
fn a_cluster_with_a_token_asks_for_it() {
    let _serial = serial();
    const TOKEN: &str = "s3cret-token";
    let (port, rpc) = (free_port(), free_port());
    let (p, r) = (port.to_string(), rpc.to_string());
    let mut kappa = Process::spawn(&[
        "local",
        "--port",
        &p,
        "--rpc-port",
        &r,
        "--slots",
        "2",
        "--auth-token",
        TOKEN,
    ])
    .expect("kappa local");
    let url = format!("http://127.0.0.1:{port}");
    // Ready when the API answers with the token (it refuses without).
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + SLOW;
    loop {
        let ok = client
            .get(format!("{url}/api/v1/overview"))
            .bearer_auth(TOKEN)
            .send()
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(
            kappa.exited().is_none(),
            "kappa exited: {}",
            kappa.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "kappa did not answer: {}",
            kappa.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = client
        .get(format!("{url}/api/v1/overview"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401, "the API wants the token");

    let b = Browser::start().expect("headless Chromium");
    b.goto(&format!("{url}/#/")).unwrap();
    let dialog_open = || -> anyhow::Result<Option<()>> {
        let open = b.js(
            "return document.getElementById('token-dialog').open;",
            vec![],
        )?;
        Ok((open == true).then_some(()))
    };
    b.wait_until("the token dialog", SLOW, dialog_open).unwrap();
    assert_eq!(b.text("#token-error").unwrap().as_deref(), Some(""));
    b.screenshot("token-asked").unwrap();

    // A wrong token: asked again, with the reason.
    b.type_into("#token-input", "wrong").unwrap();
    b.click("#token-submit").unwrap();
    b.wait_until("the dialog again, with the refusal", SLOW, || {
        let refused = b.text("#token-error")?.as_deref() == Some("That token was refused.");
        Ok(if refused { dialog_open()? } else { None })
    })
    .unwrap();
    b.screenshot("token-refused").unwrap();

    // The right token: the overview shows.
    b.clear("#token-input").unwrap();
    b.type_into("#token-input", TOKEN).unwrap();
    b.click("#token-submit").unwrap();
    b.wait_text("#tm-count", SLOW, |t| t == "1").unwrap();
    b.wait_text("#slots-total", SLOW, |t| t == "2").unwrap();
    assert_eq!(
        b.js(
            "return document.getElementById('token-dialog').open;",
            vec![]
        )
        .unwrap(),
        false
    );
    b.screenshot("token-accepted").unwrap();

    // The browser keeps it: after a reload nothing is asked.
    b.goto(&format!("{url}/#/taskmanagers")).unwrap();
    b.block_on(b.client().refresh()).unwrap();
    b.wait_text("#tm-table", SLOW, |t| t.contains("ms ago"))
        .unwrap();
    assert_eq!(
        b.js(
            "return document.getElementById('token-dialog').open;",
            vec![]
        )
        .unwrap(),
        false
    );
}
