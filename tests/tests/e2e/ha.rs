//! High availability on a real etcd: two jobmanagers with `--ha etcd`, two taskmanagers that
//! know both. kill -9 of the leader while the reference job runs: the standby takes over and
//! resumes the job from its latest checkpoint, with exact per-window counts. etcd stopped for a
//! while: the leader steps down, and when etcd returns the job resumes and stays exact. Wrong
//! HA settings are refused at start with a clear error. Without HA, a restarted jobmanager
//! resumes its jobs from the records it keeps under the checkpoint root.

use std::time::{Duration, Instant};

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::etcd::Etcd;
use kappa_integration_tests::reference::{
    Click, first_half_produced, hourly_counts, latest_per_key, rest_and_closing,
};
use kappa_integration_tests::{bin, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// Produces the rest of the data and the closing records; the sink must then hold exactly the
/// reference counts.
fn finish_and_check(broker: &Broker, rest: &[Click], data: &[Click]) {
    broker
        .produce("clicks", &rest_and_closing(rest, data, 4))
        .expect("produce rest");
    let expected = hourly_counts(data, |u| u > 50);
    let out = broker
        .read_results("out", &expected, Duration::from_secs(120))
        .expect("read");
    assert_eq!(
        latest_per_key(&out).expect("records"),
        expected,
        "exact per-window counts"
    );
}

/// Whether the jobmanager at `url` leads (a standby redirects or answers 503).
fn leads(url: &str) -> bool {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    client
        .get(format!("{url}/api/v1/overview"))
        .send()
        .is_ok_and(|r| r.status().is_success())
}

/// The state of `id` as the cluster answers at `url` (following a standby's redirect).
fn state(url: &str, id: &str) -> String {
    reqwest::blocking::get(format!("{url}/api/v1/jobs/{id}"))
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|v| v["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Waits until a checkpoint of `id` covers `n` records of the source.
fn wait_checkpoint_covering(url: &str, id: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: serde_json::Value =
            reqwest::blocking::get(format!("{url}/api/v1/jobs/{id}/checkpoints"))
                .ok()
                .and_then(|r| r.json().ok())
                .unwrap_or_default();
        let covered = kappa_integration_tests::checkpoint_covers(&list, n);
        if covered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers {n} records: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two taskmanagers of 2 slots each, given the jobmanagers' gRPC URLs.
fn taskmanagers(jobmanagers: &str) -> Vec<Process> {
    (0..2)
        .map(|_| {
            let args = [
                "taskmanager",
                "--jobmanager",
                jobmanagers,
                "--port",
                "0",
                "--slots",
                "2",
            ];
            Process::spawn(&args).expect("taskmanager")
        })
        .collect()
}

struct HaCluster {
    jobmanagers: Vec<Cluster>,
    _taskmanagers: Vec<Process>,
    _dir: tempfile::TempDir,
}

fn ha_cluster(etcd: &Etcd) -> HaCluster {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let jobmanagers: Vec<Cluster> = (0..2)
        .map(|_| {
            Cluster::jobmanager(&[
                "--ha",
                "etcd",
                "--etcd-endpoints",
                &etcd.endpoint,
                "--checkpoint-dir",
                root.to_str().expect("utf-8"),
                "--heartbeat-timeout",
                "3s",
            ])
            .expect("jobmanager")
        })
        .collect();
    let rpcs = format!("{},{}", jobmanagers[0].rpc, jobmanagers[1].rpc);
    let taskmanagers = taskmanagers(&rpcs);
    HaCluster {
        jobmanagers,
        _taskmanagers: taskmanagers,
        _dir: dir,
    }
}

fn submit(url: &str, job: &str) -> String {
    let resp: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/jobs"))
        .json(&serde_json::json!({ "job": job }))
        .send()
        .expect("submit")
        .json()
        .expect("json");
    resp["id"]
        .as_str()
        .unwrap_or_else(|| panic!("submitted: {resp}"))
        .to_string()
}

fn wait_running(ha: &HaCluster, url: &str, id: &str, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    while state(url, id) != "RUNNING" {
        if t0.elapsed() > timeout {
            let logs: Vec<String> = ha.jobmanagers.iter().map(|j| j.log_text()).collect();
            panic!(
                "job {id} not RUNNING at {url}: {}\njobmanager logs:\n{}",
                state(url, id),
                logs.join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    t0.elapsed()
}

#[test]
fn a_standby_takes_over_when_the_leader_is_killed_and_results_stay_exact() {
    let etcd = Etcd::start().expect("etcd");
    let broker = Broker::start().expect("broker");
    let (data, half) = first_half_produced(&broker, 16_000, 71).expect("data");
    let (first, rest) = data.split_at(half);
    let mut ha = ha_cluster(&etcd);
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2)
        + "\n[checkpoints]\ninterval = \"300ms\"\n";
    // Either jobmanager takes the job: a standby redirects to the leader.
    let id = submit(&ha.jobmanagers[1].url, &job);
    wait_running(
        &ha,
        &ha.jobmanagers[0].url.clone(),
        &id,
        Duration::from_secs(60),
    );
    wait_checkpoint_covering(&ha.jobmanagers[0].url, &id, first.len() as i64);

    let leader = (0..2)
        .find(|&i| leads(&ha.jobmanagers[i].url))
        .expect("a leader");
    let standby = 1 - leader;
    assert!(!leads(&ha.jobmanagers[standby].url), "one leader at a time");
    let readyz =
        reqwest::blocking::get(format!("{}/readyz", ha.jobmanagers[standby].url)).expect("readyz");
    assert_eq!(
        readyz.status().as_u16(),
        503,
        "a standby is not ready for traffic"
    );
    let killed = Instant::now();
    ha.jobmanagers[leader].kill();
    let survivor = ha.jobmanagers[standby].url.clone();
    wait_running(&ha, &survivor, &id, Duration::from_secs(60));
    eprintln!(
        "ha: kill -9 of the leader -> job RUNNING on the new leader in {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    assert!(leads(&survivor), "the standby leads");
    let ready = |url: &str| {
        reqwest::blocking::get(format!("{url}/readyz")).map_or(0, |r| r.status().as_u16())
    };
    assert_eq!(ready(&survivor), 200, "the leader is ready");
    let detail: serde_json::Value = reqwest::blocking::get(format!("{survivor}/api/v1/jobs/{id}"))
        .expect("detail")
        .json()
        .expect("json");
    let restored = detail["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .map(|a| a["restored_from"].clone())
        .unwrap_or_default();
    assert!(
        restored.as_u64().is_some(),
        "resumed from a checkpoint: {detail}"
    );

    finish_and_check(&broker, rest, &data);
}

#[test]
fn the_leader_steps_down_while_etcd_is_away_and_work_resumes_when_it_returns() {
    let mut etcd = Etcd::start().expect("etcd");
    let broker = Broker::start().expect("broker");
    let (data, half) = first_half_produced(&broker, 12_000, 73).expect("data");
    let (first, rest) = data.split_at(half);
    let ha = ha_cluster(&etcd);
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2)
        + "\n[checkpoints]\ninterval = \"300ms\"\n";
    let url0 = ha.jobmanagers[0].url.clone();
    let id = submit(&url0, &job);
    wait_running(&ha, &url0, &id, Duration::from_secs(60));
    wait_checkpoint_covering(&url0, &id, first.len() as i64);

    etcd.stop();
    // Without etcd no jobmanager may lead: both step down within the lease's lifetime.
    let deadline = Instant::now() + Duration::from_secs(15);
    while ha.jobmanagers.iter().any(|j| leads(&j.url)) {
        assert!(
            Instant::now() < deadline,
            "a jobmanager still leads without etcd"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The outage lasts a while longer with nobody leading (a duration, not a wait).
    std::thread::sleep(Duration::from_secs(2));
    etcd.resume().expect("etcd again");
    let t = wait_running(&ha, &url0, &id, Duration::from_secs(90));
    eprintln!(
        "ha: etcd back -> job RUNNING again in {:.1} s",
        t.as_secs_f64()
    );

    finish_and_check(&broker, rest, &data);
}

#[test]
fn wrong_ha_settings_are_refused_at_start() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin("kappa"))
            .args(args)
            .output()
            .expect("run kappa");
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let port = kappa_integration_tests::free_port().to_string();
    let rpc = kappa_integration_tests::free_port().to_string();
    let dead = format!("http://127.0.0.1:{}", kappa_integration_tests::free_port());
    let base = [
        "jobmanager",
        "--port",
        &port,
        "--rpc-port",
        &rpc,
        "--insecure",
    ];
    let err = run(&[
        &base[..],
        &[
            "--ha",
            "etcd",
            "--etcd-endpoints",
            &dead,
            "--checkpoint-dir",
            "/tmp/kappa-ha-test",
        ],
    ]
    .concat());
    assert!(err.contains("cannot reach etcd at"), "{err}");
    let err = run(&[&base[..], &["--ha", "etcd"]].concat());
    assert!(err.contains("--ha etcd needs --etcd-endpoints"), "{err}");
    let err = run(&[&base[..], &["--etcd-endpoints", &dead]].concat());
    assert!(err.contains("add --ha etcd"), "{err}");
    let etcd = Etcd::start().expect("etcd");
    let err = run(&[
        &base[..],
        &["--ha", "etcd", "--etcd-endpoints", &etcd.endpoint],
    ]
    .concat());
    assert!(err.contains("HA needs --checkpoint-dir"), "{err}");
}

#[test]
fn without_ha_a_restarted_jobmanager_resumes_its_jobs_from_their_checkpoints() {
    let broker = Broker::start().expect("broker");
    let (data, half) = first_half_produced(&broker, 12_000, 79).expect("data");
    let (first, rest) = data.split_at(half);
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let (port, rpc) = (
        kappa_integration_tests::free_port().to_string(),
        kappa_integration_tests::free_port().to_string(),
    );
    let args = [
        "jobmanager",
        "--port",
        &port,
        "--rpc-port",
        &rpc,
        "--checkpoint-dir",
        root.to_str().expect("utf-8"),
        "--heartbeat-timeout",
        "3s",
    ];
    let url = format!("http://127.0.0.1:{port}");
    let ready = |url: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !leads(url) {
            assert!(Instant::now() < deadline, "the jobmanager did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut jm = Process::spawn(&args).expect("jobmanager");
    ready(&url);
    let jm_rpc = format!("http://127.0.0.1:{rpc}");
    let _tms = taskmanagers(&jm_rpc);
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2)
        + "\n[checkpoints]\ninterval = \"300ms\"\n";
    let id = submit(&url, &job);
    let running = |timeout: Duration| {
        let t0 = Instant::now();
        while state(&url, &id) != "RUNNING" {
            assert!(
                t0.elapsed() < timeout,
                "job {id} not RUNNING: {}",
                state(&url, &id)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    running(Duration::from_secs(60));
    wait_checkpoint_covering(&url, &id, first.len() as i64);

    jm.kill();
    let restarted = Process::spawn(&args).expect("jobmanager again");
    ready(&url);
    running(Duration::from_secs(60));
    let detail: serde_json::Value = reqwest::blocking::get(format!("{url}/api/v1/jobs/{id}"))
        .expect("detail")
        .json()
        .expect("json");
    let last = detail["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["restored_from"].as_u64().is_some(),
        "resumed from a checkpoint: {detail}\n{}",
        restarted.log_text()
    );

    finish_and_check(&broker, rest, &data);
}
