//! The librdkafka build (TLS and SASL built in), the mapping of a job's `security` table onto
//! librdkafka settings, and an OAUTHBEARER client asking a token endpoint for its token.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use kappa_job::kafka::KafkaConnection;
use kappa_job::plan::{SinkKind, SourceKind};
use kappa_job::{Overrides, plan_job};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use super::{client_config, security_settings};

const REFERENCE: &str = include_str!("../../../../../examples/hourly-item-clicks.toml");

/// The reference job with `extra` added to its `[source]` table.
fn source_connection(extra: &str) -> KafkaConnection {
    let text = REFERENCE.replace("[source.schema]", &format!("{extra}\n\n[source.schema]"));
    let plan = plan_job("job.toml", &text, &Overrides::default()).expect("plans");
    match &plan.sources[0].kind {
        SourceKind::Kafka(k) => k.connection.clone(),
        other => panic!("a kafka source, got {other:?}"),
    }
}

fn settings(c: &KafkaConnection) -> Vec<(String, String)> {
    security_settings(&c.security)
        .expect("literal secrets")
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn librdkafka_is_built_with_tls_and_every_sasl_mechanism_kappa_offers() {
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .expect("builtin.features");
    let features: Vec<&str> = features.split(',').collect();
    for f in [
        "ssl",
        "sasl_plain",
        "sasl_scram",
        "sasl_oauthbearer",
        "oidc",
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    // builtin.features lists sasl_gssapi whatever the build; creating a client tells.
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", mechanism)
            .set("sasl.username", "u")
            .set("sasl.password", "p");
        if mechanism == "OAUTHBEARER" {
            c.set("sasl.oauthbearer.config", "principal=u");
        }
        let made: Result<BaseConsumer, _> = c.create();
        assert!(made.is_ok(), "{mechanism}: {:?}", made.err());
    }
    let gssapi: Result<BaseConsumer, _> = ClientConfig::new()
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "GSSAPI")
        .create();
    let refused = gssapi.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refused.contains("No provider for SASL mechanism GSSAPI"),
        "GSSAPI is left out of the build: {refused}"
    );
}

#[test]
fn without_a_security_table_clients_speak_plaintext() {
    let c = source_connection("");
    assert_eq!(settings(&c), pairs(&[("security.protocol", "PLAINTEXT")]));
}

#[test]
fn sasl_ssl_with_scram_and_a_client_certificate_maps_onto_librdkafka_settings() {
    let c = source_connection(
        r#"properties = { "client.id" = "clicks-reader", "fetch.max.bytes" = 1048576 }
[source.security]
protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
username = "kappa"
password = "s3cret"
ca_location = "/etc/kappa/ca.pem"
certificate_location = "/etc/kappa/client.pem"
key_location = "/etc/kappa/client.key"
key_password = "k3y"
"#,
    );
    assert_eq!(
        settings(&c),
        pairs(&[
            ("security.protocol", "SASL_SSL"),
            ("enable.ssl.certificate.verification", "true"),
            ("ssl.endpoint.identification.algorithm", "https"),
            ("ssl.ca.location", "/etc/kappa/ca.pem"),
            ("ssl.certificate.location", "/etc/kappa/client.pem"),
            ("ssl.key.location", "/etc/kappa/client.key"),
            ("ssl.key.password", "k3y"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "kappa"),
            ("sasl.password", "s3cret"),
        ])
    );
    let config = client_config(&c).expect("literal secrets");
    assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    assert_eq!(config.get("client.id"), Some("clicks-reader"));
    assert_eq!(config.get("fetch.max.bytes"), Some("1048576"));
    assert_eq!(config.get("sasl.password"), Some("s3cret"));
    // The plan's debug output (logged, shown in panics) does not show the secrets.
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("k3y"),
        "{shown}"
    );
}

#[test]
fn tls_without_hostname_verification_and_sinks_get_their_own_table() {
    let text = REFERENCE
        .replace("[source.schema]", "[source.security]\nprotocol = \"SSL\"\nendpoint_identification = false\n\n[source.schema]")
        .replace(
            "key = \"{item_id}-{window_end}\"",
            "key = \"{item_id}-{window_end}\"\nsecurity = { protocol = \"sasl_plaintext\", sasl_mechanism = \"PLAIN\", username = \"w\", password = \"pw\" }",
        );
    let plan = plan_job("job.toml", &text, &Overrides::default()).expect("plans");
    let SourceKind::Kafka(source) = &plan.sources[0].kind else {
        panic!("a kafka source")
    };
    assert_eq!(
        settings(&source.connection),
        pairs(&[
            ("security.protocol", "SSL"),
            ("enable.ssl.certificate.verification", "true"),
            ("ssl.endpoint.identification.algorithm", "none"),
        ])
    );
    let SinkKind::Kafka { connection, .. } = &plan.sinks[0].kind else {
        panic!("a kafka sink")
    };
    assert_eq!(
        settings(connection),
        pairs(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "w"),
            ("sasl.password", "pw"),
        ])
    );
}

/// One HTTP request to a token endpoint on a free port, answered with a token; the text of
/// the request comes back on the channel.
fn token_endpoint() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/oauth2/token",
        listener.local_addr().expect("address")
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then as many body bytes as Content-Length says.
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        // An unsigned JWT for subject `kappa`, valid until 2100.
        let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJrYXBwYSIsImV4cCI6NDEwMjQ0NDgwMH0.";
        let body =
            format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
    });
    (url, rx)
}

#[test]
fn an_oauthbearer_client_asks_the_token_endpoint_with_its_client_credentials() {
    let (url, requests) = token_endpoint();
    let c = source_connection(&format!(
        r#"[source.security]
protocol = "SASL_PLAINTEXT"
sasl_mechanism = "OAUTHBEARER"
oauth_token_endpoint_url = "{url}"
oauth_client_id = "kappa"
oauth_client_secret = "s3cret"
oauth_scope = "kafka.read"
"#
    ));
    let consumer: BaseConsumer = client_config(&c)
        .expect("literal secrets")
        .set("group.id", "g")
        .create()
        .expect("an OIDC client");
    let request = requests
        .recv_timeout(Duration::from_secs(20))
        .expect("the client asks the token endpoint for a token");
    drop(consumer);
    assert!(
        request.starts_with("POST /oauth2/token HTTP/1.1\r\n"),
        "{request}"
    );
    // HTTP basic authentication with kappa:s3cret.
    assert!(
        request.contains("Authorization: Basic a2FwcGE6czNjcmV0\r\n"),
        "{request}"
    );
    assert!(
        request.ends_with("grant_type=client_credentials&scope=kafka.read"),
        "{request}"
    );
}
