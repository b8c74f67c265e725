//! Confined jobs (issue 12): on a cluster, file connectors read and write only under the
//! `--allow-path` roots — checked by the jobmanager at submission and again by every
//! taskmanager when it opens a connector —, savepoints go and are restored only under the
//! checkpoint root or a root, and a `_metadata` read back from storage is refused when a name in
//! it would leave its directory. `kappa local` without roots still runs a file job anywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::reference::{
    self, START, clicks, hourly_counts, json_lines, part_file_counts, spread,
};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};
use serde_json::{Value, json};

/// The reference job over JSON-lines files into an at-least-once file sink.
fn file_job(input: &Path, output: &Path) -> String {
    reference::file_job(input, output, "at-least-once")
}

/// Writes the clicks of `seed` into `dir/clicks.jsonl`; their hourly counts.
fn input(dir: &Path, seed: u64) -> std::collections::BTreeMap<(String, i64), i64> {
    std::fs::create_dir_all(dir).expect("input directory");
    let data = clicks(3_000, seed, START, 3, 40);
    std::fs::write(dir.join("clicks.jsonl"), json_lines(&data)).expect("input file");
    hourly_counts(&data, |_| true)
}

/// Submits `job`, from `start` when given; it must be refused: the refusal's text.
fn refused(cluster: &Cluster, job: &str, start: Option<String>) -> String {
    let args: Vec<String> = start
        .into_iter()
        .flat_map(|s| ["--start".into(), s])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match cluster.submit(job, &args) {
        Ok(id) => panic!("job {id} was taken"),
        Err(e) => e.to_string(),
    }
}

/// Submits `job`, which the jobmanager takes and a taskmanager refuses to run: the job's
/// error once it FAILED without a restart.
fn fails_once(cluster: &Cluster, job: &str) -> String {
    let id = cluster.submit(job, &[]).expect("the jobmanager takes it");
    let (_, error) = cluster
        .failed_once(&id, Duration::from_secs(60))
        .expect("failed without a restart");
    error
}

/// POSTs `body` to the cluster's REST API: the status and the JSON answer.
fn post(cluster: &Cluster, path: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}{path}", cluster.url))
        .json(body)
        .send()
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Every path under `dir` (recursively).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(tree(&path));
        }
        out.push(path);
    }
    out
}

fn job_count(cluster: &Cluster) -> usize {
    let out = cluster.kappactl(&["list", "--json"]);
    let jobs: Value = serde_json::from_slice(&out.stdout).expect("job list");
    jobs.as_array().map_or(0, Vec::len)
}

#[test]
fn a_file_source_outside_the_roots_is_refused_at_submission_and_one_inside_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    let expected = input(&root.join("in"), 71);
    let allowed = root.to_str().expect("utf-8");
    let cluster = Cluster::jobmanager(&["--allow-path", allowed]).expect("jobmanager");
    let _tm = cluster
        .taskmanager_with(2, &["--allow-path", allowed], &[])
        .expect("taskmanager");
    let output = root.join("results");

    // /etc/passwd, directly and through a symlink inside the root.
    let passwd = file_job(Path::new("/etc/passwd"), &output);
    let e = refused(&cluster, &passwd, None);
    assert!(
        e.contains("job.toml:6:")
            && e.contains("source.path")
            && e.contains("/etc/passwd")
            && e.contains("--allow-path"),
        "{e}"
    );
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).expect("symlink");
    let e = refused(&cluster, &file_job(&root.join("passwd"), &output), None);
    assert!(e.contains("resolved: `/etc/passwd`"), "{e}");
    // A sink outside, and the validation the web UI runs, are refused the same way.
    let sink_outside = file_job(&root.join("in"), Path::new("/tmp/kappa-out"));
    let e = refused(&cluster, &sink_outside, None);
    assert!(
        e.contains("sink.path") && e.contains("/tmp/kappa-out"),
        "{e}"
    );
    let (status, body) = post(&cluster, "/api/v1/jobs/validate", &json!({ "job": passwd }));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "source.path", "{body}");
    assert_eq!(job_count(&cluster), 0, "nothing started");
    assert!(!output.exists(), "nothing written");

    // Inside the root: exact results.
    let id = cluster
        .submit(&file_job(&root.join("in"), &output), &[])
        .expect("a job inside the root");
    cluster
        .wait_state(&id, &["FINISHED"], Duration::from_secs(60))
        .expect("finished");
    let (rows, counts) = part_file_counts(&output);
    cluster.assert_results(&id, &counts, &expected);
    assert_eq!(rows, expected.len(), "each window once");
}

#[test]
fn a_taskmanager_with_narrower_roots_refuses_the_job_and_it_fails_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    let narrow = root.join("narrow");
    input(&root.join("in"), 72);
    input(&narrow.join("in"), 73);
    let cluster =
        Cluster::jobmanager(&["--allow-path", root.to_str().expect("utf-8")]).expect("jobmanager");
    let narrow_text = narrow.to_str().expect("utf-8");
    let _tm = cluster
        .taskmanager_with(2, &["--allow-path", narrow_text], &[])
        .expect("taskmanager");

    // Its source is inside the jobmanager's roots but not the taskmanager's.
    let output = narrow.join("results");
    let error = fails_once(&cluster, &file_job(&root.join("in"), &output));
    let input_path = root.join("in").display().to_string();
    assert!(
        error.contains(&input_path) && error.contains("taskmanager") && error.contains(narrow_text),
        "the reason names the path and the taskmanager's roots: {error}"
    );
    // Its sink is outside the taskmanager's roots: nothing is created there.
    let outside = root.join("results");
    let error = fails_once(&cluster, &file_job(&narrow.join("in"), &outside));
    assert!(error.contains(&outside.display().to_string()), "{error}");
    assert!(
        !outside.exists(),
        "nothing written outside the taskmanager's roots"
    );
}

#[test]
fn a_taskmanager_without_roots_lets_jobs_use_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    input(&dir.path().join("in"), 74);
    let cluster = Cluster::jobmanager(&["--allow-path", dir.path().to_str().expect("utf-8")])
        .expect("jobmanager");
    let _tm = cluster.taskmanager(2).expect("taskmanager");
    let error = fails_once(
        &cluster,
        &file_job(&dir.path().join("in"), &dir.path().join("out")),
    );
    assert!(
        error.contains("lets jobs use no files") && error.contains("--allow-path"),
        "{error}"
    );
}

#[test]
fn kappa_local_without_roots_runs_a_file_job_anywhere_and_with_roots_keeps_to_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = input(&dir.path().join("in"), 75);
    let output = dir.path().join("out");
    let local = Cluster::local(2, &[]).expect("kappa local");
    let id = local
        .submit(&file_job(&dir.path().join("in"), &output), &[])
        .expect("submit");
    local
        .wait_state(&id, &["FINISHED"], Duration::from_secs(60))
        .expect("finished");
    let (rows, counts) = part_file_counts(&output);
    local.assert_results(&id, &counts, &expected);
    assert_eq!(rows, expected.len());
    drop(local);

    let root = dir.path().join("in");
    let confined = Cluster::local(2, &["--allow-path", root.to_str().expect("utf-8")])
        .expect("kappa local with a root");
    let e = refused(&confined, &file_job(&root, &output), None);
    assert!(
        e.contains("sink.path") && e.contains("kappa local") && e.contains("--allow-path"),
        "{e}"
    );
}

/// A jobmanager with a checkpoint root and the root `allowed`, a taskmanager with the same
/// root and its state in `state`, and the reference job running on a broker with data.
fn running_job(dir: &Path) -> (Broker, Cluster, Process, String) {
    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let data = clicks(2_000, 76, START, 3, 40);
    broker
        .produce("clicks", &spread(&data, 2))
        .expect("produce");
    let (chk, allowed, state) = (dir.join("chk"), dir.join("allowed"), dir.join("state"));
    std::fs::create_dir_all(&allowed).expect("allowed");
    let allowed = allowed.to_str().expect("utf-8");
    let cluster = Cluster::jobmanager(&[
        "--checkpoint-dir",
        chk.to_str().expect("utf-8"),
        "--checkpoint-interval",
        "300ms",
        "--allow-path",
        allowed,
    ])
    .expect("jobmanager");
    let tm = cluster
        .taskmanager_with(
            2,
            &[
                "--allow-path",
                allowed,
                "--state-dir",
                state.to_str().expect("utf-8"),
            ],
            &[],
        )
        .expect("taskmanager");
    let job = reference_job(&broker.bootstrap, "clicks", "out", "true", 1);
    let id = cluster.submit(&job, &[]).expect("submit");
    cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(60))
        .expect("running");
    eventually("the clicks to be read", Duration::from_secs(60), || {
        let read = cluster.job(&id).map_err(|e| e.to_string())?["vertices"][0]["records_in"]
            .as_u64()
            .unwrap_or(0);
        match read == data.len() as u64 {
            true => Ok(()),
            false => Err(format!("{read} read")),
        }
    })
    .expect("read");
    (broker, cluster, tm, id)
}

#[test]
fn savepoints_go_and_are_restored_only_under_the_checkpoint_root_or_a_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, cluster, _tm, id) = running_job(dir.path());
    let outside = dir.path().join("outside");
    let escape = format!("{}/../outside", dir.path().join("chk").display());
    for (route, target) in [
        ("savepoints", outside.display().to_string()),
        ("savepoints", escape.clone()),
        ("savepoints", "s3://some-bucket/savepoints".to_string()),
        ("stop", outside.display().to_string()),
    ] {
        let (status, body) = post(
            &cluster,
            &format!("/api/v1/jobs/{id}/{route}"),
            &json!({ "dir": target }),
        );
        assert_eq!(status, 400, "{route} into {target}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("savepoint directory") && error.contains("--allow-path"),
            "{error}"
        );
    }
    assert!(!outside.exists(), "a refused target is not even created");
    assert_eq!(
        cluster.job(&id).expect("job")["state"],
        "RUNNING",
        "the refused stop left it running"
    );

    // Under a root, and by default under the checkpoint root: taken.
    let inside = dir.path().join("allowed").join("savepoints");
    let (status, body) = post(
        &cluster,
        &format!("/api/v1/jobs/{id}/savepoints"),
        &json!({ "dir": inside }),
    );
    assert_eq!(status, 200, "{body}");
    let savepoint = PathBuf::from(body["path"].as_str().expect("path"));
    assert!(
        savepoint.starts_with(&inside) && savepoint.join("_metadata").exists(),
        "{body}"
    );
    let (status, body) = post(
        &cluster,
        &format!("/api/v1/jobs/{id}/savepoints"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{body}");

    // The same savepoint copied outside is not restored from; the one inside is.
    let copy = outside.join("sp");
    std::fs::create_dir_all(&copy).expect("copy");
    for f in tree(&savepoint).into_iter().filter(|p| p.is_file()) {
        let to = copy.join(f.strip_prefix(&savepoint).expect("inside"));
        std::fs::create_dir_all(to.parent().expect("parent")).expect("dirs");
        std::fs::copy(&f, &to).expect("copy");
    }
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
    cluster
        .wait_state(&id, &["CANCELED"], Duration::from_secs(30))
        .expect("cancelled");
    let job = reference_job(&broker.bootstrap, "clicks", "out", "true", 1);
    let e = refused(
        &cluster,
        &job,
        Some(format!("savepoint:{}", copy.display())),
    );
    assert!(
        e.contains("400") && e.contains(&copy.display().to_string()) && e.contains("--allow-path"),
        "{e}"
    );
    let resumed = cluster
        .submit(
            &job,
            &["--start", &format!("savepoint:{}", savepoint.display())],
        )
        .expect("restored from the savepoint under the root");
    // Its state is restored (the taskmanager checks the location too) before it checkpoints.
    eventually(
        "a checkpoint of the restored job",
        Duration::from_secs(60),
        || {
            let d = cluster.job(&resumed).map_err(|e| e.to_string())?;
            let history: Value = cluster
                .get(&format!("/api/v1/jobs/{resumed}/checkpoints"))
                .and_then(|r| Ok(r.json()?))
                .map_err(|e| e.to_string())?;
            let completed = history
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["status"] == "COMPLETED");
            let attempts = d["attempts"].as_array().map_or(0, Vec::len);
            match (d["state"].as_str(), attempts, completed) {
                (Some("RUNNING"), 1, true) => Ok(()),
                other => Err(format!("{other:?}: {d}")),
            }
        },
    )
    .expect("restored and checkpointing");
    let d = cluster.job(&resumed).expect("job");
    assert!(d["attempts"][0]["restored_from"].is_u64(), "{d}");
}

#[test]
fn a_crafted_metadata_is_refused_at_restore_and_nothing_is_written_outside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, cluster, _tm, id) = running_job(dir.path());
    let (status, body) = post(
        &cluster,
        &format!("/api/v1/jobs/{id}/savepoints"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{body}");
    let savepoint = PathBuf::from(body["path"].as_str().expect("path"));
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
    cluster
        .wait_state(&id, &["CANCELED"], Duration::from_secs(30))
        .expect("cancelled");
    let job = reference_job(&broker.bootstrap, "clicks", "out", "true", 1);
    let before = tree(dir.path());

    // A real savepoint whose first state file is renamed `../../x`.
    let path = savepoint.join("_metadata");
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("_metadata")).expect("json");
    let file = &mut meta["operators"][0]["state"]["files"][0]["name"];
    assert!(file.is_string(), "the savepoint holds window state: {meta}");
    *file = json!("../../x");
    std::fs::write(&path, meta.to_string()).expect("write");
    let e = refused(
        &cluster,
        &job,
        Some(format!("savepoint:{}", savepoint.display())),
    );
    assert!(
        e.contains(&path.display().to_string())
            && e.contains("\"../../x\"")
            && e.contains("not a plain file name"),
        "{e}"
    );

    // One written by hand into a directory of the checkpoint root, with an absolute name.
    let handmade = dir.path().join("chk").join("handmade");
    std::fs::create_dir_all(&handmade).expect("dir");
    *meta
        .pointer_mut("/operators/0/state/files/0/name")
        .expect("name") = json!("/tmp/kappa-x");
    std::fs::write(handmade.join("_metadata"), meta.to_string()).expect("write");
    let e = refused(
        &cluster,
        &job,
        Some(format!("savepoint:{}", handmade.display())),
    );
    assert!(
        e.contains("\"/tmp/kappa-x\"") && e.contains("not a plain file name"),
        "{e}"
    );

    // A retained checkpoint of the job whose `_metadata` was changed on disk.
    let history: Value = cluster
        .get(&format!("/api/v1/jobs/{id}/checkpoints"))
        .expect("checkpoints")
        .json()
        .expect("json");
    let retained = history
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["retained"] == true)
        .expect("a retained checkpoint");
    let n = retained["id"].as_u64().expect("id");
    let chk_meta = dir.path().join(format!("chk/{id}/chk-{n}/_metadata"));
    std::fs::write(&chk_meta, meta.to_string()).expect("write");
    let e = refused(&cluster, &job, Some(format!("checkpoint:{id}:{n}")));
    assert!(
        e.contains(&format!("chk-{n}/_metadata")) && e.contains("not a plain file name"),
        "{e}"
    );

    assert_eq!(job_count(&cluster), 1, "nothing started");
    let written: Vec<PathBuf> = tree(dir.path())
        .into_iter()
        .filter(|p| !before.contains(p) && !p.starts_with(&handmade))
        .collect();
    assert!(written.is_empty(), "nothing was written: {written:?}");
    assert!(!Path::new("/tmp/kappa-x").exists());
}

/// A job from `input` files upserting into PostgreSQL at `url` (never reached: refused first).
fn postgres_job(input: &Path, url: &str) -> String {
    format!(
        r#"name = "to-postgres"

[source]
connector = "file"
path = "{}"
schema = {{ user_id = "string", item_id = "string", timestamp = "timestamp_ms" }}

[sink]
connector = "postgres"
url = "{url}"
table = "clicks"
key = "{{item_id}}"
"#,
        input.display()
    )
}

#[test]
fn postgres_hosts_outside_the_list_are_refused_at_submission_and_on_the_taskmanager() {
    let dir = tempfile::tempdir().expect("tempdir");
    input(&dir.path().join("in"), 77);
    let allowed = dir.path().to_str().expect("utf-8");
    let cluster = Cluster::jobmanager(&[
        "--allow-path",
        allowed,
        "--allow-postgres-host",
        "127.0.0.1,db.internal",
    ])
    .expect("jobmanager");
    let _tm = cluster
        .taskmanager_with(
            2,
            &[
                "--allow-path",
                allowed,
                "--allow-postgres-host",
                "db.internal",
            ],
            &[],
        )
        .expect("taskmanager");
    let input = dir.path().join("in");
    let e = refused(
        &cluster,
        &postgres_job(
            &input,
            "postgres://kappa:s3cret@evil.example:5432/analytics",
        ),
        None,
    );
    assert!(
        e.contains("sink.url") && e.contains("evil.example") && e.contains("--allow-postgres-host"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "the password is not shown: {e}");
    // The jobmanager allows 127.0.0.1, the taskmanager does not.
    let error = fails_once(
        &cluster,
        &postgres_job(
            &input,
            "host=127.0.0.1 user=kappa password=s3cret dbname=analytics",
        ),
    );
    assert!(
        error.contains("127.0.0.1") && error.contains("taskmanager") && !error.contains("s3cret"),
        "{error}"
    );
}
