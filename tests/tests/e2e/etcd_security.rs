//! HA on an etcd that serves clients over TLS only, asks them for a certificate and has
//! authentication on (simple tokens that expire after 2 s unused): a jobmanager with the CA,
//! its certificate and a user whose password it reads from a file leads, keeps its job in
//! etcd while etcd restarts (which forgets every token: the jobmanager logs in again), and a
//! new jobmanager resumes the job from etcd. A wrong password, no CA, a wrong CA, no client
//! certificate and a plaintext client are refused at start, each naming the endpoint and why.

use std::path::Path;
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::etcd::{Etcd, PASSWORD, USER};
use kappa_integration_tests::pki::{Issued, Pki};
use kappa_integration_tests::{SINK_PARTITIONS, bin, eventually, free_port, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// The HA flags of a jobmanager on the secure etcd.
fn ha_flags(etcd: &Etcd, ca: &Path, client: Option<&Issued>, password_file: &Path) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--ha",
        "etcd",
        "--etcd-endpoints",
        &etcd.endpoint,
        "--etcd-ca",
        &ca.display().to_string(),
        "--etcd-user",
        USER,
        "--etcd-password-file",
        &password_file.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(c) = client {
        flags.extend([
            "--etcd-cert".into(),
            c.cert.display().to_string(),
            "--etcd-key".into(),
            c.key.display().to_string(),
        ]);
    }
    flags
}

/// Whether the jobmanager leads (`/readyz`).
fn leads(cluster: &Cluster) -> Result<(), String> {
    match cluster.get("/readyz") {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("readyz: {}", r.status())),
        Err(e) => Err(format!("{e:#}")),
    }
}

fn state(cluster: &Cluster, id: &str) -> Result<(), String> {
    let s = cluster.job(id).map_err(|e| format!("{e:#}"))?["state"].clone();
    match s == "RUNNING" {
        true => Ok(()),
        false => Err(format!("state {s}")),
    }
}

#[test]
fn a_jobmanager_with_tls_and_a_password_leads_and_keeps_its_jobs_across_etcd_restarts() {
    let pki = Pki::new("kappa test etcd CA").expect("CA");
    let mut etcd = Etcd::start_secure(&pki, 2).expect("secure etcd");
    let client = pki.issue("kappa-jm", &[]).expect("client certificate");
    let dir = tempfile::tempdir().expect("tmp");
    let password_file = dir.path().join("etcd-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    let root = dir.path().join("checkpoints").display().to_string();
    let mut flags = ha_flags(&etcd, &pki.ca, Some(&client), &password_file);
    flags.extend(["--checkpoint-dir".into(), root]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();

    let mut cluster = Cluster::jobmanager(&args).expect("jobmanager on the secure etcd");
    eventually("the jobmanager leads", Duration::from_secs(30), || {
        leads(&cluster)
    })
    .expect("leader");
    let _tm = cluster.taskmanager(3).expect("taskmanager");
    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2);
    let id = cluster.submit(&job, &[]).expect("submit");
    eventually("the job runs", Duration::from_secs(60), || {
        state(&cluster, &id)
    })
    .expect("running");
    let kept = etcd
        .etcdctl(&["get", "--prefix", "--keys-only", "/kappa/jobs/"])
        .expect("etcdctl get");
    assert!(kept.contains(&id), "the job record is in etcd: {kept}");

    // etcd restarts and forgets every auth token: the jobmanager logs in again and leads on,
    // and a new job's record is written (a transaction that needs a valid token).
    etcd.stop();
    etcd.resume().expect("etcd back");
    eventually(
        "the jobmanager leads again",
        Duration::from_secs(30),
        || leads(&cluster),
    )
    .expect("leader after etcd restarted");
    let second = cluster
        .submit(
            &reference_job(&broker.bootstrap, "clicks", "out", FILTER, 1),
            &[],
        )
        .expect("a job submitted after etcd restarted is recorded");
    eventually("the second record", Duration::from_secs(10), || {
        let keys = etcd
            .etcdctl(&["get", "--prefix", "--keys-only", "/kappa/jobs/"])
            .map_err(|e| format!("{e:#}"))?;
        keys.contains(&second).then_some(()).ok_or(keys)
    })
    .expect("record in etcd");

    // A new jobmanager resumes both jobs from etcd.
    cluster
        .restart_jobmanager(&args)
        .expect("jobmanager restarted");
    eventually("the new jobmanager leads", Duration::from_secs(30), || {
        leads(&cluster)
    })
    .expect("leader");
    for job in [&id, &second] {
        eventually("the job runs again", Duration::from_secs(60), || {
            state(&cluster, job)
        })
        .expect("resumed");
    }
    let log = cluster.log_text();
    assert!(
        !log.contains(PASSWORD),
        "the etcd password in the log:\n{log}"
    );
}

#[test]
fn wrong_etcd_credentials_or_tls_settings_are_refused_at_start_saying_why() {
    let pki = Pki::new("kappa test etcd CA").expect("CA");
    let other = Pki::new("another CA").expect("other CA");
    let etcd = Etcd::start_secure(&pki, 300).expect("secure etcd");
    let client = pki.issue("kappa-jm", &[]).expect("client certificate");
    let dir = tempfile::tempdir().expect("tmp");
    let (good_pw, bad_pw) = (dir.path().join("pw"), dir.path().join("bad-pw"));
    std::fs::write(&good_pw, PASSWORD).expect("password file");
    std::fs::write(&bad_pw, "not-the-password").expect("password file");
    let plaintext = etcd.endpoint.replace("https://", "http://");
    let replace = |flags: Vec<String>, from: &str, to: &str| -> Vec<String> {
        flags
            .into_iter()
            .map(|f| if f == from { to.to_string() } else { f })
            .collect()
    };
    let good = ha_flags(&etcd, &pki.ca, Some(&client), &good_pw);
    let without = |flags: Vec<String>, flag: &str| -> Vec<String> {
        let at = flags.iter().position(|f| f == flag).expect("flag");
        [&flags[..at], &flags[at + 2..]].concat()
    };
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "a wrong password",
            ha_flags(&etcd, &pki.ca, Some(&client), &bad_pw),
            vec![
                format!("etcd at {} refused user `{USER}`", etcd.endpoint),
                "authentication failed".into(),
            ],
        ),
        (
            "no CA for an https endpoint",
            without(good.clone(), "--etcd-ca"),
            vec![format!(
                "etcd endpoint {} is https: give --etcd-ca",
                etcd.endpoint
            )],
        ),
        (
            "a CA that did not sign etcd's certificate",
            replace(
                good.clone(),
                &pki.ca.display().to_string(),
                &other.ca.display().to_string(),
            ),
            vec![
                format!("cannot reach etcd at {}", etcd.endpoint),
                "UnknownIssuer".into(),
            ],
        ),
        (
            "no client certificate for an etcd that asks for one",
            ha_flags(&etcd, &pki.ca, None, &good_pw),
            vec![format!(
                "cannot reach etcd at {} (if etcd asks clients for certificates, give --etcd-cert and --etcd-key)",
                etcd.endpoint
            )],
        ),
        (
            "a plaintext client",
            replace(
                without(ha_flags(&etcd, &pki.ca, None, &good_pw), "--etcd-ca"),
                &etcd.endpoint,
                &plaintext,
            ),
            vec![format!("cannot reach etcd at {plaintext}")],
        ),
    ];
    for (what, flags, reasons) in cases {
        let (port, rpc) = (free_port().to_string(), free_port().to_string());
        let out = std::process::Command::new(bin("kappa"))
            .args([
                "jobmanager",
                "--port",
                &port,
                "--rpc-port",
                &rpc,
                "--insecure",
            ])
            .args([
                "--checkpoint-dir",
                &dir.path().join("chk").display().to_string(),
            ])
            .args(&flags)
            .output()
            .expect("run kappa");
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{what}: {err}");
        assert!(!out.status.success(), "{what}: the jobmanager started");
        for r in &reasons {
            assert!(err.contains(r.as_str()), "{what}: `{r}` not in:\n{err}");
        }
        assert!(
            !err.contains(PASSWORD) && !err.contains("not-the-password"),
            "{what}: {err}"
        );
    }
    // The same flags with the right password start a leader.
    let args: Vec<String> = [
        good,
        vec![
            "--checkpoint-dir".into(),
            dir.path().join("chk").display().to_string(),
        ],
    ]
    .concat();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::jobmanager(&args).expect("the right settings start");
    eventually("the jobmanager leads", Duration::from_secs(30), || {
        leads(&cluster)
    })
    .expect("leader");
}
