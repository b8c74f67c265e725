//! Kafka connections in job files: allow-listed `properties`, the `security` table's
//! combinations, every refusal located at its line and field, and no secret in any message.

use crate::kafka::{ClientCertificate, KafkaConnection, SaslAuth, TlsSettings};
use crate::plan::{Overrides, SinkKind, SourceKind, plan_job};
use crate::secret::Secret;
use crate::spec::{SaslMechanism, SecurityProtocol};
use crate::{SpecError, SpecErrors};

const REFERENCE: &str = include_str!("../../../../../examples/hourly-item-clicks.toml");

/// The reference job with `extra` added to its `[source]` table.
fn with_source(extra: &str) -> String {
    REFERENCE.replace("[source.schema]", &format!("{extra}\n\n[source.schema]"))
}

fn plan(text: &str) -> Result<KafkaConnection, SpecErrors> {
    let plan = plan_job("job.toml", text, &Overrides::default())?;
    match &plan.sources[0].kind {
        SourceKind::Kafka(k) => Ok(k.connection.clone()),
        other => panic!("a kafka source, got {other:?}"),
    }
}

fn errors(text: &str) -> Vec<SpecError> {
    match plan(text) {
        Ok(c) => panic!("planned: {c:?}"),
        Err(e) => e.0,
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

/// (field, line) of each error, and that its message says `says`.
fn located(errs: &[SpecError]) -> Vec<(String, Option<usize>)> {
    errs.iter().map(|e| (e.field.clone(), e.line)).collect()
}

#[test]
fn allowed_properties_reach_the_plan_in_any_toml_type() {
    let c = plan(&with_source(
        "[source.properties]\n\"client.id\" = \"clicks\"\n\"linger.ms\" = 20\n\"socket.keepalive.enable\" = true",
    ))
    .expect("plans");
    let got: Vec<(&str, &str)> = c
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("client.id", "clicks"),
            ("linger.ms", "20"),
            ("socket.keepalive.enable", "true")
        ]
    );
    assert_eq!(c.security.protocol, SecurityProtocol::Plaintext);
    assert_eq!((c.security.sasl, c.security.tls), (None, None));
}

#[test]
fn dangerous_properties_are_refused_at_their_line_naming_the_key() {
    let text = with_source(
        "properties = { \"client.id\" = \"ok\" }\n",
    )
    .replace(
        "key = \"{item_id}-{window_end}\"",
        "key = \"{item_id}-{window_end}\"\n[sink.properties]\n\"linger.ms\" = \"10\"\n\"plugin.library.paths\" = \"/tmp/evil.so\"\n\"sasl.kerberos.kinit.cmd\" = \"curl evil | sh\"\n\"security.protocol\" = \"SASL_SSL\"",
    );
    let errs = errors(&text);
    assert_eq!(
        located(&errs),
        [
            (
                "sink.properties.\"plugin.library.paths\"".to_string(),
                Some(line_of(&text, "plugin.library.paths"))
            ),
            (
                "sink.properties.\"sasl.kerberos.kinit.cmd\"".to_string(),
                Some(line_of(&text, "kinit"))
            ),
            (
                "sink.properties.\"security.protocol\"".to_string(),
                Some(line_of(&text, "\"security.protocol\""))
            ),
        ],
        "{errs:?}"
    );
    assert!(
        errs[0].message.contains("loads shared libraries"),
        "{}",
        errs[0]
    );
    assert!(errs[1].message.contains("a command"), "{}", errs[1]);
    assert!(errs[2].message.contains("`security` table"), "{}", errs[2]);
    // The column is the value's: what was written there is not repeated.
    assert_eq!(errs[0].column, Some(26), "{}", errs[0]);
    for e in &errs {
        let shown = e.to_string();
        assert!(!shown.contains("evil"), "{shown}");
    }
}

#[test]
fn sasl_ssl_with_scram_and_a_client_certificate_plans() {
    let c = plan(&with_source(
        r#"[source.security]
protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-256"
username = "kappa"
password = "s3cret"
ca_location = "/etc/kappa/ca.pem"
certificate_location = "/etc/kappa/client.pem"
key_location = "/etc/kappa/client.key"
"#,
    ))
    .expect("plans");
    assert_eq!(c.security.protocol, SecurityProtocol::SaslSsl);
    assert_eq!(
        c.security.sasl,
        Some(SaslAuth::Password {
            mechanism: SaslMechanism::ScramSha256,
            username: "kappa".into(),
            password: Secret::new("s3cret"),
        })
    );
    assert_eq!(
        c.security.tls,
        Some(TlsSettings {
            ca_location: Some("/etc/kappa/ca.pem".into()),
            client_certificate: Some(ClientCertificate {
                certificate_location: "/etc/kappa/client.pem".into(),
                key_location: "/etc/kappa/client.key".into(),
                key_password: None,
            }),
            endpoint_identification: true,
        })
    );
}

#[test]
fn settings_of_another_protocol_or_mechanism_are_refused_where_written() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        // SASL settings without SASL.
        (
            "protocol = \"SSL\"\nusername = \"u\"\npassword = \"s3cret-value\"",
            &[
                ("source.security.username", "username ="),
                ("source.security.password", "password ="),
            ],
        ),
        // TLS settings without TLS.
        (
            "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"s3cret-value\"\nca_location = \"/ca.pem\"",
            &[("source.security.ca_location", "ca_location =")],
        ),
        // A SASL protocol without its mechanism: reported at the protocol.
        (
            "protocol = \"SASL_SSL\"",
            &[("source.security.sasl_mechanism", "protocol =")],
        ),
        // Credentials missing.
        (
            "protocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nusername = \" \"",
            &[
                ("source.security.username", "username ="),
                ("source.security.password", "protocol ="),
            ],
        ),
        // OAUTHBEARER takes client credentials, from an http(s) endpoint.
        (
            "protocol = \"SASL_SSL\"\nsasl_mechanism = \"OAUTHBEARER\"\npassword = \"s3cret-value\"\noauth_token_endpoint_url = \"file:///etc/passwd\"\noauth_client_id = \"c\"",
            &[
                ("source.security.password", "password ="),
                (
                    "source.security.oauth_token_endpoint_url",
                    "oauth_token_endpoint_url",
                ),
                ("source.security.oauth_client_secret", "protocol ="),
            ],
        ),
        // PLAIN takes a password, not client credentials.
        (
            "protocol = \"SASL_SSL\"\nsasl_mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"s3cret-value\"\noauth_client_secret = \"s3cret-value\"",
            &[("source.security.oauth_client_secret", "oauth_client_secret")],
        ),
        // A certificate needs its key; files are absolute paths.
        (
            "protocol = \"SSL\"\ncertificate_location = \"/client.pem\"\nca_location = \"certs/ca.pem\"",
            &[
                ("source.security.ca_location", "ca_location"),
                ("source.security.key_location", "certificate_location"),
            ],
        ),
        (
            "protocol = \"SSL\"\nkey_password = \"s3cret-value\"",
            &[("source.security.key_password", "key_password")],
        ),
        // Values Kafka does not know, and fields the table does not have.
        (
            "protocol = \"SASL_SSL\"\nsasl_mechanism = \"GSSAPI\"",
            &[("source.security.sasl_mechanism", "sasl_mechanism")],
        ),
        (
            "protocol = \"TLS\"",
            &[("source.security.protocol", "protocol")],
        ),
        (
            "protocol = \"SSL\"\n\"ssl.ca.location\" = \"/ca.pem\"",
            &[("source.security.ssl.ca.location", "ssl.ca.location")],
        ),
    ];
    for (table, expected) in cases {
        let text = with_source(&format!("[source.security]\n{table}"));
        let errs = errors(&text);
        let want: Vec<(String, Option<usize>)> = expected
            .iter()
            .map(|(field, at)| (field.to_string(), Some(line_of(&text, at))))
            .collect();
        assert_eq!(located(&errs), want, "{table}\n{errs:#?}");
        for e in &errs {
            let shown = e.to_string();
            assert!(!shown.contains("s3cret-value"), "{shown}");
        }
    }
}

#[test]
fn file_connectors_refuse_kafka_settings() {
    let text = REFERENCE.replace(
        "connector = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"hourly-clicks\"",
        "connector = \"file\"\npath = \"out\"\nsecurity = { protocol = \"SSL\" }\nproperties = { \"linger.ms\" = \"5\" }",
    );
    let errs = plan_job("job.toml", &text, &Overrides::default())
        .expect_err("refused")
        .0;
    let got: Vec<(&str, Option<usize>)> = errs
        .iter()
        .filter(|e| e.field != "sink.key")
        .map(|e| (e.field.as_str(), e.line))
        .collect();
    assert_eq!(
        got,
        [
            ("sink.security", Some(line_of(&text, "security ="))),
            ("sink.properties", Some(line_of(&text, "properties ="))),
        ],
        "{errs:?}"
    );
}

#[test]
fn sinks_have_their_own_security_table() {
    let text = REFERENCE.replace(
        "key = \"{item_id}-{window_end}\"",
        "key = \"{item_id}-{window_end}\"\n\n[sink.security]\nprotocol = \"SSL\"\nendpoint_identification = false",
    );
    let plan = plan_job("job.toml", &text, &Overrides::default()).expect("plans");
    let SinkKind::Kafka { connection, .. } = &plan.sinks[0].kind else {
        panic!("a kafka sink")
    };
    assert_eq!(connection.security.protocol, SecurityProtocol::Ssl);
    assert_eq!(
        connection
            .security
            .tls
            .as_ref()
            .map(|t| t.endpoint_identification),
        Some(false)
    );
    let SourceKind::Kafka(source) = &plan.sources[0].kind else {
        panic!("a kafka source")
    };
    assert_eq!(
        source.connection.security.protocol,
        SecurityProtocol::Plaintext
    );
}
