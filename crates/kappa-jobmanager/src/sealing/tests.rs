use super::*;
use crate::job_text::JobText;

const JOB: &str = r#"name = "sealed"

[source]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "clicks"
schema = { item_id = "string" }
security = { protocol = "SASL_PLAINTEXT", sasl_mechanism = "PLAIN", username = "u", password = "hunter2" }

[sink]
connector = "stdout"
"#;

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes(&[byte; 32]).expect("32 bytes")
}

#[test]
fn keys_are_read_raw_hex_or_base64() {
    let raw = key(7);
    let hex_text = format!("{}\n", "07".repeat(32));
    let hexed = SecretKey::from_bytes(hex_text.as_bytes()).expect("hex");
    let based = SecretKey::from_bytes(BASE64.encode([7u8; 32]).as_bytes()).expect("base64");
    assert_eq!(raw.fingerprint(), hexed.fingerprint());
    assert_eq!(raw.fingerprint(), based.fingerprint());
    assert_ne!(raw.fingerprint(), key(8).fingerprint());
    assert!(SecretKey::from_bytes(b"too short").is_none());
    assert!(!format!("{raw:?}").contains("0707"));
}

#[test]
fn sealed_secrets_come_back_with_the_key_only() {
    let k = key(1);
    let text = JobText::submitted("j1", "job.toml", JOB, Some(&k)).expect("seals");
    assert!(!text.shown.contains("hunter2") && text.shown.contains("\"***\""));
    let sealed = text.sealed.clone().expect("sealed");
    assert!(!sealed.contains("hunter2"));
    assert!(text.warning().is_none());
    let back =
        JobText::kept("j1", "job.toml", &text.shown, Some(&sealed), Some(&k)).expect("opens");
    assert_eq!(back.deployed(), JOB);
    // Another key, no key, another job, an altered file: each refused with its reason.
    let wrong = JobText::kept("j1", "job.toml", &text.shown, Some(&sealed), Some(&key(2)));
    assert!(
        matches!(wrong.as_ref().err(), Some(SealError::WrongKey { .. })),
        "{:?}",
        wrong.as_ref().err()
    );
    let none = JobText::kept("j1", "job.toml", &text.shown, Some(&sealed), None)
        .err()
        .expect("no key")
        .to_string();
    assert!(
        none.contains(&k.fingerprint()) && none.contains("--secret-key-file"),
        "{none}"
    );
    let moved = JobText::kept("j2", "job.toml", &text.shown, Some(&sealed), Some(&k));
    assert!(
        matches!(moved.as_ref().err(), Some(SealError::Tampered)),
        "{:?}",
        moved.as_ref().err()
    );
    let redirected = text.shown.replace("127.0.0.1:9092", "evil.example:9092");
    let altered = JobText::kept("j1", "job.toml", &redirected, Some(&sealed), Some(&k));
    assert!(
        matches!(altered.as_ref().err(), Some(SealError::Tampered)),
        "{:?}",
        altered.as_ref().err()
    );
    let garbage = JobText::kept("j1", "job.toml", &text.shown, Some("@@"), Some(&k));
    assert!(
        matches!(garbage.as_ref().err(), Some(SealError::Base64(_))),
        "{:?}",
        garbage.as_ref().err()
    );
}

#[test]
fn without_a_key_literals_are_not_kept_and_the_job_does_not_resume() {
    let text = JobText::submitted("j1", "job.toml", JOB, None).expect("redacts");
    assert!(text.sealed.is_none());
    assert_eq!(text.deployed(), JOB, "the running job has its secret");
    let warning = text.warning().expect("a warning");
    assert!(warning.contains("source.security.password"), "{warning}");
    let e = JobText::kept("j1", "job.toml", &text.shown, None, Some(&key(1)))
        .err()
        .expect("not kept")
        .to_string();
    assert!(
        e.starts_with("its literal secrets were not kept: give the jobmanagers --secret-key-file or reference secrets with ${env:…}/${file:…}"),
        "{e}"
    );
}

#[test]
fn records_of_earlier_releases_resume_and_are_redacted_from_then_on() {
    // An old record holds the file as submitted, without sealed secrets.
    let k = key(3);
    let text = JobText::kept("j1", "job.toml", JOB, None, Some(&k)).expect("resumes");
    assert_eq!(text.deployed(), JOB);
    assert!(!text.shown.contains("hunter2"));
    assert!(text.sealed.is_some());
    let listed = JobText::listed("job.toml", JOB, None);
    assert!(listed.is_listed_only() && !listed.shown.contains("hunter2"));
}
