//! Kafka security end to end: the reference job over SASL_SSL (PLAIN) with a client
//! certificate gives the exact counts into an exactly-once sink, every client of the job (the
//! jobmanager's metadata lookups, readers, transactional writers, commit-marker groups)
//! passing TLS and SASL; a wrong CA, a wrong password and a missing
//! client certificate fail the job with the reason; SCRAM reaches Tansu's own SCRAM server;
//! `plugin.library.paths` is refused at submission.
//!
//! Tansu 0.6 serves neither TLS nor SASL PLAIN (see `kappa_integration_tests::kafka_tls`): the
//! TLS and PLAIN tests run through the harness's proxy in front of it; SCRAM runs against
//! Tansu itself (`--authentication`), which has no way to store a SCRAM user in memory or S3
//! storage, so the test shows the SCRAM exchange failing with the broker's answer.

use std::time::Duration;

use kappa_integration_tests::broker::{Broker, BrokerOptions};
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::kafka_tls::{self, KafkaProxy, ProxyOptions, TestCerts};
use kappa_integration_tests::reference::{
    START, clicks, hourly_counts, latest_per_key, produce_closed,
};
use kappa_integration_tests::{SINK_PARTITIONS, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const USER: &str = "kappa";
const PASSWORD: &str = "kappa-pw";

/// A broker reached through TLS that requires a client certificate, then SASL PLAIN.
struct SecureBroker {
    broker: Broker,
    _proxy: KafkaProxy,
    certs: TestCerts,
    dir: tempfile::TempDir,
}

fn secure_broker() -> SecureBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certificates");
    let listener = kafka_tls::bind().expect("proxy port");
    let port = listener.local_addr().expect("address").port();
    let path = |p: &std::path::Path| p.display().to_string();
    let client = [
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanism", "PLAIN".into()),
        ("sasl.username", USER.into()),
        ("sasl.password", PASSWORD.into()),
        ("ssl.ca.location", path(&certs.ca)),
        ("ssl.certificate.location", path(&certs.client_cert)),
        ("ssl.key.location", path(&certs.client_key)),
        ("ssl.key.password", TestCerts::KEY_PASSWORD.into()),
    ];
    let broker = Broker::start_with(BrokerOptions {
        advertised_port: Some(port),
        client: client.map(|(k, v)| (k.to_string(), v)).to_vec(),
        ..BrokerOptions::default()
    })
    .expect("broker");
    let proxy = KafkaProxy::start(
        listener,
        broker.listen_address(),
        ProxyOptions {
            tls: Some(certs.server_config(true).expect("TLS configuration")),
            sasl_plain: Some((USER.into(), PASSWORD.into())),
        },
    )
    .expect("proxy");
    SecureBroker {
        broker,
        _proxy: proxy,
        certs,
        dir,
    }
}

/// The `security` table of a job's source and sink.
fn security_table(
    certs: &TestCerts,
    ca: &std::path::Path,
    password: &str,
    client_cert: bool,
) -> String {
    let mut t = format!(
        "protocol = \"SASL_SSL\"\nsasl_mechanism = \"PLAIN\"\nusername = \"{USER}\"\npassword = \"{password}\"\nca_location = \"{}\"\n",
        ca.display()
    );
    if client_cert {
        t.push_str(&format!(
            "certificate_location = \"{}\"\nkey_location = \"{}\"\nkey_password = \"{}\"\n",
            certs.client_cert.display(),
            certs.client_key.display(),
            TestCerts::KEY_PASSWORD
        ));
    }
    t
}

/// The reference job with `security` on its source and sink, allow-listed tuning properties,
/// and `restart` (a table body) when given.
fn secure_job(bootstrap: &str, security: &str, restart: Option<&str>) -> String {
    let job = reference_job(bootstrap, "clicks", "hourly", FILTER, 2).replace(
        "[source.schema]",
        &format!(
            "properties = {{ \"client.id\" = \"kappa-secure-reader\", \"fetch.wait.max.ms\" = 100 }}\n\n[source.security]\n{security}\n[source.schema]"
        ),
    );
    let restart = restart.map_or_else(String::new, |r| format!("[restart]\n{r}\n\n"));
    let job = job.replace("[sink]", &format!("{restart}[sink]"));
    format!(
        "{job}\nproperties = {{ \"linger.ms\" = 20, \"client.id\" = \"kappa-secure-writer\" }}\n\n[sink.security]\n{security}"
    )
}

#[test]
fn reference_job_over_sasl_ssl_with_a_client_certificate_gives_exact_counts() {
    let secure = secure_broker();
    let broker = &secure.broker;
    let data = clicks(8_000, 41, START, 4, 100);
    produce_closed(broker, "clicks", 4, &data).expect("produce through TLS and SASL");
    broker
        .create_topic("hourly", SINK_PARTITIONS)
        .expect("sink topic");
    let expected = hourly_counts(&data, |u| u > 50);
    let checkpoints = secure.dir.path().join("checkpoints");
    // The SASL password is a reference to the process's environment (resolved where each
    // client is built); the key's password stays a literal, redacted wherever it is shown.
    let cluster = Cluster::local_with_env(
        4,
        &[
            "--checkpoint-dir",
            checkpoints.to_str().expect("utf-8 path"),
        ],
        &[("KAPPA_TEST_SASL_PASSWORD", PASSWORD.to_string())],
    )
    .expect("kappa local");
    let reference = "${env:KAPPA_TEST_SASL_PASSWORD}";
    let security = security_table(&secure.certs, &secure.certs.ca, reference, true);
    // Exactly-once: the transactional writers and their commit-marker groups connect too.
    let job = secure_job(&broker.bootstrap, &security, None)
        .replace("[sink]", "[sink]\ndelivery = \"exactly-once\"")
        + "\n[checkpoints]\ninterval = \"1s\"\n";
    let id = cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit");
    let records = broker
        .read_results("hourly", &expected, Duration::from_secs(120))
        .expect("read sink");
    let got = latest_per_key(&records).expect("sink records");
    cluster.assert_results(&id, &got, &expected);
    let detail = cluster.job(&id).expect("status");
    assert_eq!(detail["state"], "RUNNING", "{detail}");
    assert_eq!(detail["checkpoint_interval_ms"], 1000, "{detail}");
    assert_eq!(
        detail["attempts"].as_array().map_or(0, Vec::len),
        1,
        "no failed attempt: {detail}"
    );
    let spec: serde_json::Value = cluster
        .get(&format!("/api/v1/jobs/{id}/spec"))
        .expect("spec")
        .json()
        .expect("json");
    let shown = spec["job"].as_str().unwrap_or_default();
    assert!(shown.contains(reference), "the reference is kept: {shown}");
    assert!(
        !shown.contains(PASSWORD) && !shown.contains(TestCerts::KEY_PASSWORD),
        "no secret shown: {shown}"
    );
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
}

#[test]
fn a_wrong_ca_password_or_missing_client_certificate_fails_the_job_with_the_reason() {
    let secure = secure_broker();
    let broker = &secure.broker;
    broker.create_topic("clicks", 4).expect("source topic");
    broker
        .create_topic("hourly", SINK_PARTITIONS)
        .expect("sink topic");
    let cluster = Cluster::start(2).expect("kappa local");
    let certs = &secure.certs;
    let cases = [
        (
            "a broker certificate of another CA",
            security_table(certs, &certs.other_ca, PASSWORD, true),
            "certificate verify failed",
        ),
        (
            "a wrong password",
            security_table(certs, &certs.ca, "not-the-password", true),
            "Invalid username or password",
        ),
        (
            "no client certificate",
            security_table(certs, &certs.ca, PASSWORD, false),
            "certificate required",
        ),
    ];
    for (what, security, reason) in cases {
        let job = secure_job(&broker.bootstrap, &security, Some("strategy = \"none\""));
        let id = cluster.submit(&job, &[]).expect("submit");
        let (detail, error) = cluster
            .failed_once(&id, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            error.contains(&format!("cannot reach Kafka at {}", broker.bootstrap))
                && error.contains(reason),
            "{what}: {error}\n{detail}"
        );
        assert!(!error.contains("not-the-password"), "{what}: {error}");
    }
}

#[test]
fn scram_reaches_the_brokers_scram_server_and_an_unknown_user_fails_cleanly() {
    // Tansu's --authentication offers SCRAM-SHA-256/512 (not PLAIN) and keeps no SCRAM users
    // in memory storage: the exchange runs and the broker answers "unknown-user".
    let broker = Broker::start_with(BrokerOptions {
        extra_args: vec!["--authentication".into()],
        ..BrokerOptions::default()
    })
    .expect("broker");
    let cluster = Cluster::start(2).expect("kappa local");
    let security = "protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nusername = \"alice\"\npassword = \"alice-pw\"\n";
    let job = secure_job(&broker.bootstrap, security, Some("strategy = \"none\""));
    let id = cluster.submit(&job, &[]).expect("submit");
    let (detail, error) = cluster
        .failed_once(&id, Duration::from_secs(60))
        .expect("failed");
    assert!(
        error.contains("SASL SCRAM authentication failed") && error.contains("unknown-user"),
        "{error}\n{detail}"
    );
    assert!(!error.contains("alice-pw"), "{error}");
}

#[test]
fn plugin_library_paths_is_refused_at_submission_with_its_line() {
    let cluster = Cluster::start(1).expect("kappa local");
    let job = reference_job("127.0.0.1:9", "clicks", "hourly", FILTER, 1).replace(
        "[source.schema]",
        "properties = { \"client.id\" = \"fine\", \"plugin.library.paths\" = \"/tmp/libevil.so\" }\n\n[source.schema]",
    );
    let (line, text) = job
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("plugin.library.paths"))
        .expect("the line");
    // Located at the refused setting's value.
    let (line, column) = (
        line + 1,
        text.find("\"/tmp/libevil.so\"").expect("value") + 1,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("job.toml");
    std::fs::write(&path, &job).expect("job file");
    let out = cluster.kappactl(&["submit", path.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "job.toml:{line}:{column}: source.properties.\"plugin.library.paths\": it loads shared libraries"
        )),
        "{stderr}"
    );
    assert_eq!(
        cluster
            .get("/api/v1/jobs")
            .expect("jobs")
            .text()
            .expect("text"),
        "[]",
        "nothing was submitted"
    );
}
