//! The PostgreSQL sink over TLS against a real PostgreSQL 15 that takes TCP connections over
//! TLS only (`hostssl`): `sslmode=verify-full` with the CA writes the exact hourly counts (and
//! the server logs the sessions as TLS); `verify-ca` accepts a certificate for another name;
//! a wrong CA or a host name the certificate does not name fails `verify-full` with the
//! reason, without restarts; `sslmode=disable` is refused by the server, the job fails saying
//! TLS is needed; a `verify-full` without `sslrootcert` is refused at submission, located.

use std::path::Path;
use std::time::Duration;

use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::pki::Pki;
use kappa_integration_tests::postgres::{
    DATABASE, HOURLY_TABLE, PASSWORD, Postgres, USER, hourly_rows, with_postgres_sink,
};
use kappa_integration_tests::reference::{START, clicks, file_job, hourly_counts};

/// The reference job over `input` into the postgres table `hourly_clicks` at `url`; a
/// connection failure the sink calls curable is retried once.
fn job(input: &Path, url: &str) -> String {
    with_postgres_sink(
        &file_job(input, Path::new("unused"), "at-least-once"),
        url,
        "hourly_clicks",
    ) + "\n[restart]\nstrategy = \"fixed-delay\"\ndelay = \"100ms\"\nmax_attempts = 1\n"
}

#[test]
fn verify_full_writes_exact_results_over_tls_and_wrong_ca_host_or_plaintext_fail_saying_why() {
    let pki = Pki::new("kappa test PostgreSQL CA").expect("CA");
    let server = pki
        .issue("pg-server", &["pg.kappa.test", "127.0.0.1"])
        .expect("server certificate");
    let other = Pki::new("another CA").expect("other CA");
    let pg = Postgres::start_tls(&server).expect("postgres with TLS");
    pg.execute(HOURLY_TABLE).expect("create table");
    let cluster = Cluster::start(4).expect("kappa local");
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("clicks.jsonl");
    let data = clicks(6_000, 17, START, 3, 60);
    let lines: Vec<String> = data.iter().map(|c| c.json()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write clicks");
    let expected = hourly_counts(&data, |_| true);
    let ca = pki.ca.display().to_string();
    let keywords = |host: &str, mode: &str, ca: &str| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={DATABASE} sslmode={mode} sslrootcert={ca}",
            pg.port
        )
    };

    // The legitimate use: verify-full against the CA, in the URL form.
    let url = format!("{}?sslmode=verify-full&sslrootcert={ca}", pg.url);
    let id = cluster.submit(&job(&input, &url), &[]).expect("submit");
    cluster
        .wait_state(&id, &["FINISHED"], Duration::from_secs(120))
        .expect("finished over verify-full");
    cluster.assert_results(&id, &hourly_rows(&pg), &expected);
    let (tls, plain) = tcp_sessions(&pg.log_text());
    assert!(
        tls > 0 && plain == 0,
        "{tls} TCP sessions over TLS, {plain} without:\n{}",
        pg.log_text()
    );

    // verify-ca checks the CA but not the name: a certificate for other names passes.
    pg.execute("TRUNCATE hourly_clicks").expect("truncate");
    let id = cluster
        .submit(&job(&input, &keywords("localhost", "verify-ca", &ca)), &[])
        .expect("submit");
    cluster
        .wait_state(&id, &["FINISHED"], Duration::from_secs(120))
        .expect("finished over verify-ca");
    cluster.assert_results(&id, &hourly_rows(&pg), &expected);

    // What must be refused, each without a restart and with the reason.
    let other_ca = other.ca.display().to_string();
    let cases = [
        (
            "a CA that did not sign the server's certificate",
            keywords("127.0.0.1", "verify-full", &other_ca),
            vec!["the TLS handshake was refused", "UnknownIssuer"],
        ),
        (
            "a host name the certificate does not name",
            keywords("localhost", "verify-full", &ca),
            vec![
                "the TLS handshake was refused",
                "certificate not valid for name \"localhost\"",
            ],
        ),
        (
            "no TLS against a server that takes only TLS",
            format!("{}?sslmode=disable", pg.url),
            vec![
                "the server takes only TLS connections here",
                "no pg_hba.conf entry",
                "no encryption",
            ],
        ),
    ];
    for (what, url, reasons) in cases {
        let id = cluster.submit(&job(&input, &url), &[]).expect("submit");
        let (detail, error) = cluster
            .failed_once(&id, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        eprintln!("{what}: {error}");
        assert!(
            error.contains("cannot connect to postgres at ")
                && error.contains(&format!(":{}/{DATABASE}: ", pg.port)),
            "{what}: {error}"
        );
        for r in reasons {
            assert!(error.contains(r), "{what}: `{r}` not in: {error}");
        }
        assert!(!detail.to_string().contains(PASSWORD), "{what}: {detail}");
    }

    // A verify-full without the CA is refused at submission, at the line of `url`.
    let text = job(&input, &format!("{}?sslmode=verify-full", pg.url));
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("url = "))
        .expect("a url line");
    let e = cluster
        .submit(&text, &[])
        .expect_err("verify-full without sslrootcert is refused")
        .to_string();
    assert!(
        e.contains(&format!("job.toml:{line}:"))
            && e.contains(
                "sink.url: sslmode=verify-full checks the server's certificate: set sslrootcert"
            ),
        "{e}"
    );
    assert!(!e.contains(PASSWORD), "{e}");
}

/// How many TCP sessions the server log (log_connections) shows authorized over TLS and how
/// many without: a session's lines share its process id (`[pid]`).
fn tcp_sessions(log: &str) -> (usize, usize) {
    let pid = |line: &str| {
        line.split_whitespace()
            .find(|w| w.starts_with('['))
            .map(str::to_string)
    };
    let tcp: std::collections::HashSet<String> = log
        .lines()
        .filter(|l| l.contains("connection received: host=127.0.0.1"))
        .filter_map(pid)
        .collect();
    let authorized: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection authorized:"))
        .filter(|l| pid(l).is_some_and(|p| tcp.contains(&p)))
        .collect();
    let tls = authorized
        .iter()
        .filter(|l| l.contains("SSL enabled"))
        .count();
    (tls, authorized.len() - tls)
}
