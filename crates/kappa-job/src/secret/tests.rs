use std::path::PathBuf;

use super::*;
use crate::error::Locator;
use crate::parse::parse_job;
use crate::{Overrides, plan_job};

const JOB: &str = r#"name = "secrets"

[source]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "clicks"
schema = { item_id = "string" }
security = { protocol = "SASL_SSL", sasl_mechanism = "PLAIN", username = "u", password = "hunter2" }

[sinks.pg]
connector = "postgres"
url = "postgres://kappa:pg-s3cret@db:5432/analytics"   # a comment
table = "t"
key = "{item_id}"

[sinks.out]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "out"
[sinks.out.security]
protocol = "SASL_PLAINTEXT"
sasl_mechanism = "SCRAM-SHA-512"
username = "u"
password = """multi
line"""
"#;

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("present")
        + 1
}

#[test]
fn debug_output_hides_the_value() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
    assert_eq!(s.value("f").expect("a literal"), "hunter2");
    assert_eq!(format!("{:?}", Secret::Env("PW".into())), "${env:PW}");
}

#[test]
fn references_are_parsed_and_bad_ones_refused() {
    assert_eq!(
        Secret::parse("${env:KAFKA_PW}"),
        Ok(Secret::Env("KAFKA_PW".into()))
    );
    assert_eq!(
        Secret::parse("${file:/run/secrets/pw}"),
        Ok(Secret::File(PathBuf::from("/run/secrets/pw")))
    );
    assert_eq!(Secret::parse("***"), Ok(Secret::Redacted));
    assert_eq!(Secret::parse("p${x}"), Ok(Secret::new("p${x}")));
    assert_eq!(Secret::parse("${env:1X}"), Err(BadReference::EnvName));
    assert_eq!(Secret::parse("${env:}"), Err(BadReference::EnvName));
    assert_eq!(Secret::parse("${file:rel/pw}"), Err(BadReference::FilePath));
    assert_eq!(Secret::parse("${vault:x}"), Err(BadReference::Kind));
    assert_eq!(Secret::parse("${env:X"), Err(BadReference::Unclosed));
    // A bad reference in a job file is located, and its text is not echoed.
    let text = JOB.replace("password = \"hunter2\"", "password = \"${env:bad-name}\"");
    let e = plan_job("job.toml", &text, &Overrides::default())
        .unwrap_err()
        .0;
    assert_eq!(e[0].line, Some(line_of(&text, "bad-name")), "{e:?}");
    assert_eq!(e[0].field, "source.security.password", "{e:?}");
    assert!(!e[0].message.contains("bad-name"), "{e:?}");
}

#[test]
fn redaction_changes_only_the_secrets_and_keeps_every_line() {
    let r = redact("job.toml", JOB).expect("parses");
    let shown = &r.text;
    for secret in ["hunter2", "pg-s3cret", "multi"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert_eq!(shown.lines().count(), JOB.lines().count());
    assert!(
        shown.contains(r#"username = "u", password = "***" }"#),
        "{shown}"
    );
    assert!(
        shown.contains(r#"url = "postgres://kappa:***@db:5432/analytics"   # a comment"#),
        "{shown}"
    );
    // Every line without a secret is byte-identical, in place.
    for (a, b) in JOB.lines().zip(shown.lines()) {
        let secret = ["hunter2", "pg-s3cret", "multi", "line\"\"\""]
            .iter()
            .any(|s| a.contains(s));
        if !secret {
            assert_eq!(a, b);
        }
    }
    let fields: Vec<&str> = r.literals.iter().map(|l| l.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "source.security.password",
            "sinks.pg.url",
            "sinks.out.security.password"
        ]
    );
    assert!(!format!("{:?}", r.literals).contains("hunter2"));
    // The redacted text still parses and plans as a listed job, with what was redacted named.
    let listed = Overrides {
        allow_redacted_secrets: true,
        ..Overrides::default()
    };
    plan_job("job.toml", shown, &listed).expect("plans as listed");
    assert_eq!(
        redacted_fields("job.toml", shown).expect("parses"),
        [
            "sinks.out.security.password",
            "sinks.pg.url",
            "source.security.password"
        ]
    );
    assert_eq!(restore(shown, &r.literals).expect("fits"), JOB);
    // References are kept as written; a file without literals is unchanged.
    let referenced = JOB
        .replace("\"hunter2\"", "\"${env:KAFKA_PW}\"")
        .replace("kappa:pg-s3cret@", "kappa@")
        .replace("\"\"\"multi\nline\"\"\"", "\"${file:/run/pw}\"");
    let r = redact("job.toml", &referenced).expect("parses");
    assert_eq!(r.text, referenced);
    assert!(r.literals.is_empty());
}

#[test]
fn restoring_into_another_text_is_refused() {
    let r = redact("job.toml", JOB).expect("parses");
    let e = restore("name = \"x\"\n", &r.literals).unwrap_err();
    assert_eq!(e.index, 0);
}

#[test]
fn a_redacted_secret_is_refused_at_validation_where_it_stands() {
    let shown = redact("job.toml", JOB).expect("parses").text;
    let errors = plan_job("job.toml", &shown, &Overrides::default())
        .unwrap_err()
        .0;
    let found: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
    assert_eq!(
        found,
        [
            ("source.security.password", Some(8)),
            ("sinks.out.security.password", Some(24)),
            ("sinks.pg.url", Some(12)),
        ],
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.message.contains("redacted") && e.message.contains("${env:NAME}")),
        "{errors:?}"
    );
}

#[test]
fn a_postgres_password_is_given_once() {
    let text = JOB.replace(
        "table = \"t\"",
        "password = \"${env:PGPASSWORD}\"\ntable = \"t\"",
    );
    let e = plan_job("job.toml", &text, &Overrides::default())
        .unwrap_err()
        .0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].field, "sinks.pg.password");
    assert!(e[0].message.contains("give it once"), "{e:?}");
    let text = text.replace("kappa:pg-s3cret@", "kappa@");
    let plan = plan_job("job.toml", &text, &Overrides::default()).expect("plans");
    let pg = plan.sinks.iter().find(|s| s.uid == "sinks.pg").expect("pg");
    match &pg.kind {
        crate::plan::SinkKind::Postgres { password, .. } => {
            assert_eq!(password, &Some(Secret::Env("PGPASSWORD".into())))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn references_resolve_from_allowed_variables_and_files_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-a-file\n").expect("write");
    let root = dir.path().display().to_string();
    let sources = SecretSources::only(
        "taskmanager",
        Some(std::slice::from_ref(&root)),
        Some(&["KAPPA_TEST_SECRET_*".to_string()]),
    )
    .expect("root");
    let read = |s: &Secret| sources.resolve(s, "sink.password");
    let f = Secret::File(file.clone());
    assert_eq!(read(&f).expect("reads"), Secret::new("from-a-file"));
    // SAFETY (edition 2024): no other thread of this test binary reads this variable.
    unsafe { std::env::set_var("KAPPA_TEST_SECRET_PW", "from-the-env") };
    let env = Secret::Env("KAPPA_TEST_SECRET_PW".into());
    assert_eq!(read(&env).expect("reads"), Secret::new("from-the-env"));
    let message = |s: &Secret| read(s).unwrap_err().to_string();
    let missing = message(&Secret::Env("KAPPA_TEST_SECRET_NONE".into()));
    assert_eq!(
        missing,
        "sink.password: ${env:KAPPA_TEST_SECRET_NONE}: the environment variable is not set on this taskmanager"
    );
    let other = message(&Secret::Env("HOME".into()));
    assert!(
        other.contains("${env:HOME}") && other.contains("--allow-secret-env"),
        "{other}"
    );
    let absent = message(&Secret::File(dir.path().join("absent")));
    assert!(
        absent.contains("cannot be read on this taskmanager"),
        "{absent}"
    );
    let outside = message(&Secret::File(PathBuf::from("/etc/hostname")));
    assert!(
        outside.contains("${file:/etc/hostname}") && outside.contains("--allow-secret-path"),
        "{outside}"
    );
    // A symlink inside the root that leads out of it is outside.
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).expect("symlink");
    let linked = message(&Secret::File(dir.path().join("link")));
    assert!(linked.contains("--allow-secret-path"), "{linked}");
    std::fs::write(dir.path().join("empty"), "\n").expect("write");
    let empty = message(&Secret::File(dir.path().join("empty")));
    assert!(empty.ends_with("is empty on this taskmanager"), "{empty}");
    assert!(message(&Secret::Redacted).contains("redacted"));
    // A cluster process without lists reads no reference; a literal is always fine.
    let none = SecretSources::none("jobmanager");
    let e = none.resolve(&f, "f").unwrap_err().to_string();
    assert!(e.contains("no secrets from files under"), "{e}");
    assert_eq!(
        none.resolve(&Secret::new("x"), "f").expect("a literal"),
        Secret::new("x")
    );
}

#[test]
fn the_jobmanager_refuses_references_it_does_not_allow_where_they_stand() {
    let text = JOB.replace("\"hunter2\"", "\"${env:AWS_SECRET_ACCESS_KEY}\"");
    let spec = parse_job("job.toml", &text).expect("parses");
    let errors =
        SecretSources::none("jobmanager").check_spec(&spec, &Locator::new("job.toml", &text));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, Some(8));
    assert_eq!(
        errors[0].to_string(),
        "job.toml:8:90: source.security.password: ${env:AWS_SECRET_ACCESS_KEY}: this jobmanager lets jobs read no secrets from environment variables; start it with --allow-secret-env NAME (KAPPA_ALLOW_SECRET_ENV)"
    );
}
