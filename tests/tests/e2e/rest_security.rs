//! The REST API against the attacks a browser or a network makes possible (issue 12 item 2):
//! a jobmanager on a routable address refuses to start without a token; with one, and with
//! `--tls-cert/--tls-key`, kappactl works over HTTPS trusting the cluster CA and fails with the
//! reason without it; a page of another site can neither submit (text/plain form, Origin of
//! another site) nor reach a loopback jobmanager through a rebound DNS name; the legitimate
//! client submits and lists as before.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::cluster_certs::ClusterCerts;
use kappa_integration_tests::{bin, eventually, free_port};

const JOB: &str = include_str!("../../../examples/hourly-item-clicks.toml");

fn kappactl(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin("kappactl"))
        .args(args)
        .env("KAPPA_JOBMANAGER", url)
        .env_remove("KAPPA_AUTH_TOKEN")
        .env_remove("KAPPA_CA_CERT")
        .output()
        .expect("running kappactl")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_routable_jobmanager_needs_a_token_and_serves_https_to_clients_that_trust_its_ca() {
    let certs = ClusterCerts::init(&["jobmanager/jm"], &[]).expect("kappa certs init");
    let (ca, (cert, key)) = (certs.ca(), certs.pair("jobmanager/jm"));
    let port = free_port().to_string();
    let rpc = free_port().to_string();
    let base = [
        "jobmanager",
        "--address",
        "0.0.0.0",
        "--port",
        &port,
        "--rpc-port",
        &rpc,
    ];

    // No token on 0.0.0.0: the jobmanager refuses to start and says how to give one.
    let mut open = Process::spawn(&base).expect("spawn");
    let status = eventually(
        "the jobmanager without a token exits",
        Duration::from_secs(30),
        || open.exited().ok_or_else(|| "still running".to_string()),
    )
    .expect("exited");
    assert!(!status.success(), "{status:?}");
    let log = open.log_text();
    assert!(
        log.contains("not a loopback address") && log.contains("--auth-token-file"),
        "{log}"
    );

    // With a token from a file and a certificate: HTTPS.
    let token = "t0ken-from-a-file";
    let token_file = certs.dir().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let mut args = base.to_vec();
    let (token_path, cert_path, key_path) = (
        token_file.display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    args.extend([
        "--auth-token-file",
        &token_path,
        "--tls-cert",
        &cert_path,
        "--tls-key",
        &key_path,
    ]);
    let jm = Process::spawn(&args).expect("spawn");
    let url = format!("https://127.0.0.1:{port}");
    let pem = std::fs::read(&ca).expect("ca");
    let trusting = reqwest::blocking::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("pem"))
        .build()
        .expect("client");
    eventually(
        "the jobmanager answers over HTTPS",
        Duration::from_secs(30),
        || {
            trusting
                .get(format!("{url}/readyz"))
                .send()
                .map_err(|e| format!("{e:#}; log: {}", jm.log_text()))
                .and_then(|r| {
                    r.status()
                        .is_success()
                        .then_some(())
                        .ok_or_else(|| r.status().to_string())
                })
        },
    )
    .expect("ready");

    let ca_path = ca.display().to_string();
    let listed = kappactl(
        &url,
        &["--ca-cert", &ca_path, "--token", token, "list", "--json"],
    );
    assert!(listed.status.success(), "{}", text(&listed));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
    let validated = kappactl(
        &url,
        &[
            "--ca-cert",
            &ca_path,
            "--token",
            token,
            "validate",
            &write_job(certs.dir()),
        ],
    );
    assert!(validated.status.success(), "{}", text(&validated));

    // The health check needs no token.
    let ping = kappactl(&url, &["--ca-cert", &ca_path, "ping"]);
    assert!(ping.status.success(), "{}", text(&ping));
    assert_eq!(String::from_utf8_lossy(&ping.stdout).trim(), "leader");
    // Without the CA the server is not trusted; with a wrong token it refuses.
    let untrusted = kappactl(&url, &["--token", token, "list"]);
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted).contains("certificate"),
        "{}",
        text(&untrusted)
    );
    let wrong = kappactl(&url, &["--ca-cert", &ca_path, "--token", "guess", "list"]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("the bearer token is wrong"),
        "{}",
        text(&wrong)
    );
    // Plain HTTP on the HTTPS port gets no answer of the API.
    let plain = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/jobs"))
        .bearer_auth(token)
        .send();
    assert!(
        plain.is_err() || !plain.as_ref().is_ok_and(|r| r.status().is_success()),
        "{plain:?}"
    );
}

fn write_job(dir: &Path) -> String {
    let path = dir.join("job.toml");
    std::fs::write(&path, JOB).expect("job file");
    path.display().to_string()
}

#[test]
fn pages_of_other_sites_cannot_submit_or_read_and_kappactl_still_can() {
    let cluster = Cluster::start(1).expect("kappa local");
    let client = reqwest::blocking::Client::new();
    let port = cluster.url.rsplit(':').next().expect("port").to_string();

    // A form of another site posts the job file as text/plain: refused by origin, and by type.
    let form = client
        .post(format!("{}/api/v1/jobs", cluster.url))
        .header("content-type", "text/plain")
        .header("origin", "http://attacker.example")
        .header("sec-fetch-site", "cross-site")
        .body(JOB)
        .send()
        .expect("request");
    assert_eq!(form.status().as_u16(), 403);
    let body = form.text().unwrap_or_default();
    assert!(body.contains("cross-site"), "{body}");
    let typed = client
        .post(format!("{}/api/v1/jobs", cluster.url))
        .header("content-type", "text/plain")
        .body(JOB)
        .send()
        .expect("request");
    assert_eq!(typed.status().as_u16(), 415);
    // A cancel needs no body: only the origin check stops it.
    let cancel = client
        .post(format!("{}/api/v1/jobs/any/cancel", cluster.url))
        .header("origin", "http://attacker.example")
        .send()
        .expect("request");
    assert_eq!(cancel.status().as_u16(), 403);

    // DNS rebinding: attacker.example now resolves to 127.0.0.1; the Host header says so.
    let rebound = client
        .get(format!("{}/api/v1/jobs", cluster.url))
        .header("host", format!("attacker.example:{port}"))
        .send()
        .expect("request");
    assert_eq!(rebound.status().as_u16(), 403);
    assert!(
        rebound
            .text()
            .unwrap_or_default()
            .contains("attacker.example"),
        "the answer names the refused host"
    );

    // Nothing was submitted; the legitimate client submits and lists.
    let listed = cluster.kappactl(&["list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
    let dir = tempfile::tempdir().expect("tmp");
    let validated = cluster.kappactl(&["validate", &write_job(dir.path())]);
    assert!(validated.status.success(), "{}", text(&validated));
    let page = client
        .get(format!("{}/", cluster.url))
        .send()
        .expect("the UI");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}
