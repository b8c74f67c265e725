//! End to end with every connection secured (issue 12): the reference job from the Tansu
//! broker on a cluster of a jobmanager and two taskmanagers (each on its own port) talking
//! mutual TLS (`kappa certs`), HA on an etcd with TLS, client certificates and a password, and
//! the hourly counts upserted into a PostgreSQL that takes TLS connections only, checked with
//! `sslmode=verify-full`: the table holds exactly the reference counts, and the sink's
//! sessions are TLS (`pg_stat_ssl`).

use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::cluster_certs::ClusterCerts;
use kappa_integration_tests::etcd::{Etcd, PASSWORD, USER};
use kappa_integration_tests::pki::Pki;
use kappa_integration_tests::postgres::{
    HOURLY_TABLE, PASSWORD as PG_PASSWORD, Postgres, hourly_rows, wait_rows, with_postgres_sink,
};
use kappa_integration_tests::reference::{START, clicks, hourly_counts, produce_closed};
use kappa_integration_tests::{eventually, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

#[test]
fn the_reference_job_is_exact_with_cluster_mtls_etcd_tls_and_auth_and_postgres_verify_full() {
    // Cluster identities, and a CA of the services (etcd, PostgreSQL).
    let certs = ClusterCerts::init(
        &["jobmanager/jm-0", "taskmanager/tm-a", "taskmanager/tm-b"],
        &[],
    )
    .expect("kappa certs init");
    let services = Pki::new("kappa test services CA").expect("CA");
    // The taskmanagers may let jobs read the CA (--allow-path), and nothing else of the PKI.
    let trusted = tempfile::tempdir().expect("tmp");
    let pg_ca = trusted.path().join("services-ca.pem");
    std::fs::copy(&services.ca, &pg_ca).expect("copy CA");
    let allow = [
        "--allow-path".to_string(),
        trusted.path().display().to_string(),
    ];

    let etcd = Etcd::start_secure(&services, 300).expect("etcd with TLS and auth");
    let etcd_client = services
        .issue("kappa-jm", &[])
        .expect("etcd client certificate");
    let pg_server = services
        .issue("pg-server", &["localhost", "127.0.0.1"])
        .expect("PostgreSQL server certificate");
    let pg = Postgres::start_tls(&pg_server).expect("PostgreSQL with TLS only");
    pg.execute(HOURLY_TABLE).expect("create table");
    let broker = Broker::start().expect("broker");
    let data = clicks(20_000, 41, START, 6, 200);
    produce_closed(&broker, "clicks", 2, &data).expect("produce");

    let dir = tempfile::tempdir().expect("tmp");
    let password_file = dir.path().join("etcd-password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    let mut jm = certs.flags("jobmanager/jm-0");
    jm.extend(allow.iter().cloned());
    jm.extend(
        [
            "--checkpoint-dir",
            &dir.path().join("checkpoints").display().to_string(),
            "--ha",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoint,
            "--etcd-ca",
            &services.ca.display().to_string(),
            "--etcd-cert",
            &etcd_client.cert.display().to_string(),
            "--etcd-key",
            &etcd_client.key.display().to_string(),
            "--etcd-user",
            USER,
            "--etcd-password-file",
            &password_file.display().to_string(),
        ]
        .map(String::from),
    );
    let jm: Vec<&str> = jm.iter().map(String::as_str).collect();
    let cluster = Cluster::jobmanager(&jm).expect("jobmanager");
    let taskmanagers: Vec<_> = ["tm-a", "tm-b"]
        .iter()
        .map(|tm| {
            let mut f = certs.flags(&format!("taskmanager/{tm}"));
            f.extend(allow.iter().cloned());
            let f: Vec<&str> = f.iter().map(String::as_str).collect();
            cluster.taskmanager_with(1, &f, &[]).expect("taskmanager")
        })
        .collect();

    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url,
        pg_ca.display()
    );
    let job = with_postgres_sink(
        &reference_job(&broker.bootstrap, "clicks", "-", FILTER, 2),
        &url,
        "hourly_clicks",
    );
    let id = cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit");
    let expected = hourly_counts(&data, |u| u > 50);
    let got = wait_rows(&pg, &expected, Duration::from_secs(180));
    cluster.assert_results(&id, &got, &expected);
    assert_eq!(
        cluster.hosting(&taskmanagers, &[&id]),
        [0, 1],
        "the job runs on both taskmanagers"
    );
    // Both sink subtasks hold a session, and every TCP session of the user is TLS.
    let sessions = eventually("the sink's sessions", Duration::from_secs(30), || match pg
        .tcp_sessions_by_tls()
    {
        Ok((tls, 0)) if tls >= 2 => Ok(tls),
        other => Err(format!("(TLS, plain) = {other:?}")),
    });
    assert!(sessions.is_ok(), "{sessions:?}");
    assert_eq!(hourly_rows(&pg), expected, "no row changed since");
    // The job's record in etcd keeps the job file with its PostgreSQL password redacted.
    let stored = etcd
        .etcdctl(&["get", "--prefix", "/kappa"])
        .expect("etcdctl get");
    assert!(stored.contains(&id), "the job's record is in etcd");
    assert!(
        stored.contains("***") && !stored.contains(PG_PASSWORD),
        "etcd holds the password in clear"
    );
}
