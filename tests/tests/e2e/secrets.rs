//! Secrets end to end: the reference job writes into two PostgreSQL tables as two users, one
//! with its password written in the job file, one with `${env:…}` read by the taskmanager.
//! The results are exact; neither password appears in any REST answer, any log line (at
//! debug level) or any file under the checkpoint directory (job records, `_metadata`, state);
//! a jobmanager restarted with the same `--secret-key-file` resumes the job, one without it
//! fails it with the reason, and a job submitted without a key warns and cannot resume.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::postgres::{DATABASE, HOURLY_TABLE, Postgres};
use kappa_integration_tests::reference::{START, clicks, hourly_counts, produce_closed};
use kappa_integration_tests::{eventually, reference_job};

/// The password written in the job file.
const LITERAL: &str = "lit-Pw-6d1f0c93";
/// The password the taskmanager reads from its environment.
const FROM_ENV: &str = "env-Pw-b27e4a58";
const ENV_NAME: &str = "KAPPA_E2E_PG_PASSWORD";
const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

fn job(broker: &Broker, port: u16) -> String {
    let job = reference_job(&broker.bootstrap, "user-behavior", "-", FILTER, 2);
    let at = job.find("[sink]").expect("a [sink] table");
    let host = format!("127.0.0.1:{port}/{DATABASE}");
    format!(
        r#"{}[sinks.literal]
connector = "postgres"
url = "postgres://lit_user:{LITERAL}@{host}"
table = "hourly_clicks"
key = "{{item_id}}-{{window_end}}"

[sinks.env]
connector = "postgres"
url = "postgres://env_user@{host}"
password = "${{env:{ENV_NAME}}}"
table = "hourly_env"
key = "{{item_id}}-{{window_end}}"

[checkpoints]
interval = "300ms"
"#,
        &job[..at]
    )
}

/// (item_id, window_end) → click_count of a table's `_ms` view.
fn counts(pg: &Postgres, view: &str) -> BTreeMap<(String, i64), i64> {
    pg.rows(view)
        .unwrap_or_default()
        .into_values()
        .map(|r| {
            let item = r["item_id"].as_str().unwrap_or_default().to_string();
            let end = r["window_end"].as_i64().unwrap_or_default();
            ((item, end), r["click_count"].as_i64().unwrap_or_default())
        })
        .collect()
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Fails naming every place — REST answer, log, file — that holds a password.
fn assert_nowhere(cluster: &Cluster, id: &str, logs: &[(&str, String)], root: &Path) {
    let paths = [
        "/api/v1/jobs".to_string(),
        format!("/api/v1/jobs/{id}"),
        format!("/api/v1/jobs/{id}/spec"),
        format!("/api/v1/jobs/{id}/checkpoints"),
        "/metrics".to_string(),
    ];
    let answers: Vec<(String, String)> = paths
        .iter()
        .map(|p| (p.clone(), cluster.get(p).expect(p).text().expect("body")))
        .collect();
    for secret in [LITERAL, FROM_ENV] {
        for (path, body) in &answers {
            assert!(!body.contains(secret), "{secret} in {path}: {body}");
        }
        for (name, log) in logs {
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
            assert!(lines.is_empty(), "{secret} in the {name} log: {lines:?}");
        }
        let files = files_holding(root, secret);
        assert!(files.is_empty(), "{secret} in {files:?}");
    }
}

#[test]
fn passwords_appear_nowhere_and_a_restart_with_the_key_resumes_the_job() {
    let broker = Broker::start().expect("broker");
    let pg = Postgres::start().expect("postgres");
    pg.execute(&format!(
        "{HOURLY_TABLE};
         CREATE TABLE hourly_env (LIKE hourly_clicks INCLUDING ALL);
         CREATE VIEW hourly_env_ms AS SELECT id, item_id, window_start,
             (extract(epoch FROM window_end) * 1000)::bigint AS window_end, click_count FROM hourly_env;
         CREATE ROLE lit_user LOGIN PASSWORD '{LITERAL}';
         CREATE ROLE env_user LOGIN PASSWORD '{FROM_ENV}';
         GRANT ALL ON hourly_clicks TO lit_user;
         GRANT ALL ON hourly_env TO env_user;"
    ))
    .expect("tables and users");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let key = dir.path().join("secret.key");
    std::fs::write(&key, "5e".repeat(32)).expect("key");
    let (root_arg, key_arg) = (root.display().to_string(), key.display().to_string());
    let with_key = [
        "--checkpoint-dir",
        &root_arg,
        "--allow-secret-env",
        "KAPPA_E2E_*",
        "--secret-key-file",
        &key_arg,
    ];
    let debug = ("KAPPA_LOG", "debug".to_string());
    let mut cluster =
        Cluster::jobmanager_with_env(&with_key, std::slice::from_ref(&debug)).expect("jm");
    let tm = cluster
        .taskmanager_with(
            4,
            &["--allow-secret-env", "KAPPA_E2E_*"],
            &[debug, (ENV_NAME, FROM_ENV.to_string())],
        )
        .expect("taskmanager");
    let data = clicks(20_000, 61, START, 6, 200);
    produce_closed(&broker, "user-behavior", 4, &data).expect("produce");
    let expected = hourly_counts(&data, |u| u > 50);

    let text = job(&broker, pg.port);
    let id = cluster
        .submit(&text, &["--start", "earliest"])
        .expect("submit");
    for view in ["hourly_clicks_ms", "hourly_env_ms"] {
        let got = eventually(view, Duration::from_secs(120), || {
            let got = counts(&pg, view);
            match got == expected {
                true => Ok(got),
                false => Err(format!("{} of {} rows", got.len(), expected.len())),
            }
        });
        let got = got.unwrap_or_else(|e| panic!("{e}\nlog:\n{}", cluster.log_text()));
        cluster.assert_results(&id, &got, &expected);
    }
    // What is shown: the literal redacted in place, the reference as written.
    let spec: serde_json::Value = cluster
        .get(&format!("/api/v1/jobs/{id}/spec"))
        .and_then(|r| Ok(r.json()?))
        .expect("spec");
    let shown = spec["job"].as_str().expect("job text");
    assert!(
        shown.contains("url = \"postgres://lit_user:***@127.0.0.1"),
        "{shown}"
    );
    assert!(shown.contains(&format!("password = \"${{env:{ENV_NAME}}}\"")));
    assert_eq!(shown.lines().count(), text.lines().count());
    let record = std::fs::read_to_string(root.join("_jobs").join(format!("{id}.json")))
        .expect("the job record");
    assert!(record.contains("\"sealed_secrets\""), "{record}");
    let logs = [
        ("jobmanager", cluster.log_text()),
        ("taskmanager", tm.log_text()),
    ];
    assert!(
        logs[1].1.contains("DEBUG"),
        "the taskmanager logs at debug level"
    );
    assert_nowhere(&cluster, &id, &logs, &root);

    // A jobmanager restarted with the key resumes the job from its record.
    // (A jobmanager lists its own attempts; their numbers go on from the record's.)
    let last_attempt = |job: &serde_json::Value| {
        let attempts = job["attempts"].as_array();
        attempts.and_then(|a| a.last()?["attempt"].as_u64())
    };
    let before = last_attempt(&cluster.job(&id).expect("status")).expect("an attempt");
    cluster.restart_jobmanager(&with_key).expect("restart");
    eventually("the job resumed", Duration::from_secs(60), || {
        let job = cluster.job(&id).map_err(|e| e.to_string())?;
        let resumed = job["state"] == "RUNNING"
            && last_attempt(&job) > Some(before)
            && job["attempts"][0]["restored_from"].as_u64().is_some();
        resumed.then_some(()).ok_or_else(|| job.to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", cluster.log_text()));
    let logs = [
        ("jobmanager", cluster.log_text()),
        ("taskmanager", tm.log_text()),
    ];
    assert_nowhere(&cluster, &id, &logs, &root);

    // Without the key its secrets cannot come back: the job fails, saying why.
    let no_key = &with_key[..4];
    cluster
        .restart_jobmanager(no_key)
        .expect("restart without key");
    let job = cluster
        .wait_state(&id, &["FAILED"], Duration::from_secs(30))
        .expect("failed");
    let error = job["error"].to_string();
    assert!(
        error.contains("sealed with a --secret-key-file") && error.contains("has none"),
        "{job}"
    );

    // Submitted to a jobmanager without a key, the job runs but is warned about, and a
    // restart cannot resume it.
    let dir2 = tempfile::tempdir().expect("tmp");
    let path = dir2.path().join("job.toml");
    std::fs::write(&path, &text).expect("write");
    let out = cluster.kappactl(&[
        "submit",
        path.to_str().expect("path"),
        "--start",
        "earliest",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("sinks.literal.url"),
        "{stderr}"
    );
    let id2 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let running = cluster
        .wait_state(&id2, &["RUNNING"], Duration::from_secs(60))
        .expect("runs with its secret");
    // The job's page says so while it runs.
    assert!(
        running["warnings"]
            .to_string()
            .contains("are not kept in the job's record"),
        "{running}"
    );
    cluster.restart_jobmanager(no_key).expect("restart");
    let job = cluster
        .wait_state(&id2, &["FAILED"], Duration::from_secs(30))
        .expect("not resumed");
    assert!(
        job["error"]
            .to_string()
            .contains("its literal secrets were not kept: give the jobmanagers --secret-key-file"),
        "{job}"
    );
    let logs = [
        ("jobmanager", cluster.log_text()),
        ("taskmanager", tm.log_text()),
    ];
    assert_nowhere(&cluster, &id2, &logs, &root);
}
