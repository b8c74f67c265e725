//! Planning elasticsearch sinks: what they take, and every problem located at its field.

use crate::elasticsearch::{Auth, DEFAULT_BULK_SIZE, ElasticsearchTarget, IndexPart};
use crate::plan::test_jobs::{REFERENCE, errors, with_sink as job};
use crate::plan::*;
use crate::secret::Secret;

fn es(extra: &str) -> String {
    job(&format!(
        "connector = \"elasticsearch\"\nurl = \"https://es1:9200, https://es2:9200/\"\nindex = \"hourly-{{window_start:%Y-%m}}\"\nkey = \"{{item_id}}-{{window_end}}\"\n{extra}"
    ))
}

fn target(text: &str) -> (ElasticsearchTarget, SinkPlan) {
    let plan = plan_job("job.toml", text, &Overrides::default()).unwrap();
    let sink = plan.sinks[0].clone();
    match &sink.kind {
        SinkKind::Elasticsearch(t) => (t.as_ref().clone(), sink),
        other => panic!("{other:?}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// The only error of `text`: its field, line and message.
fn only_error(text: &str) -> (String, Option<usize>, String) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    (e.field.clone(), e.line, e.message.clone())
}

#[test]
fn plans_nodes_index_key_and_defaults() {
    let (t, sink) = target(&es(""));
    assert_eq!(t.nodes, ["https://es1:9200", "https://es2:9200"]);
    assert_eq!(t.index.text, "hourly-{window_start:%Y-%m}");
    let window_start = sink.schema.index_of("window_start").unwrap();
    assert_eq!(
        t.index.parts[1],
        IndexPart::Time {
            column: window_start,
            format: "%Y-%m".into()
        }
    );
    assert_eq!(t.auth, Auth::None);
    assert_eq!(
        (t.bulk_size, t.ca_file, t.template),
        (DEFAULT_BULK_SIZE, None, None)
    );
    assert_eq!(sink.key.unwrap().text, "{item_id}-{window_end}");
    assert_eq!(sink.delivery, Delivery::AtLeastOnce);
    let plan = plan_job("job.toml", &es(""), &Overrides::default()).unwrap();
    let graph = plan.graph().to_string();
    assert!(
        graph.contains(
            "elasticsearch index `hourly-{window_start:%Y-%m}` by _id `{item_id}-{window_end}`"
        ),
        "{graph}"
    );
}

#[test]
fn plans_auth_tls_template_and_bulk_size() {
    let (t, _) = target(&es(
        "username = \"kappa\"\npassword = \"${env:ES_PASSWORD}\"\nca_file = \"/etc/es/ca.pem\"\nbulk_size = \"1MiB\"\nindex_template = \"kappa-hourly\"\nmapping = { properties = { click_count = { type = \"long\" } } }",
    ));
    assert_eq!(
        t.auth,
        Auth::Basic {
            username: "kappa".into(),
            password: Secret::Env("ES_PASSWORD".into())
        }
    );
    assert_eq!(t.ca_file.unwrap().to_str(), Some("/etc/es/ca.pem"));
    assert_eq!(t.bulk_size, 1 << 20);
    let template = t.template.unwrap();
    assert_eq!(template.name, "kappa-hourly");
    assert_eq!(template.patterns, ["hourly-*"]);
    let long = serde_json::json!({"properties": {"click_count": {"type": "long"}}});
    assert_eq!(template.mappings, long);
    // The same mapping as JSON text; an API key instead of a user.
    let (t, _) = target(&es(
        "api_key = \"${file:/run/es.key}\"\nindex_template = \"kappa-hourly\"\nmapping = '{\"properties\": {\"click_count\": {\"type\": \"long\"}}}'",
    ));
    assert_eq!(t.auth, Auth::ApiKey(Secret::File("/run/es.key".into())));
    assert_eq!(t.template.unwrap().mappings, long);
}

#[test]
fn needs_url_index_and_key() {
    let text = job("connector = \"elasticsearch\"");
    let errs = errors(&text);
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["sink.url", "sink.key", "sink.index"], "{errs:?}");
    assert!(
        errs.iter().all(|e| e.message.starts_with("missing")),
        "{errs:?}"
    );
    assert!(errs[1].message.contains("document `_id`"), "{}", errs[1]);
}

#[test]
fn bad_settings_are_located_at_their_field() {
    let cases: [(&str, &str, &str, &str); 14] = [
        (
            "url = \"es1:9200\"",
            "url = \"es1",
            "sink.url",
            "scheme `es1`",
        ),
        (
            "url = \"ftp://es1\"",
            "url = \"ftp",
            "sink.url",
            "use http or https",
        ),
        (
            "url = \"https://elastic:s3cret@es1:9200\"",
            "url = \"https://elastic",
            "sink.url",
            "credentials in the URL",
        ),
        (
            "url = \"http://es1:9200/?x=1\"",
            "url = \"http",
            "sink.url",
            "without `?",
        ),
        (
            "index = \"Hourly\"",
            "index = \"Hourly",
            "sink.index",
            "must be lowercase",
        ),
        (
            "index = \"h-{nope}\"",
            "index = \"h-{nope",
            "sink.index",
            "`index` names column `nope`",
        ),
        (
            "index = \"h-{item_id:%Y}\"",
            "index = \"h-{item_id",
            "sink.index",
            "a format applies to timestamps",
        ),
        (
            "ca_file = \"ca.pem\"",
            "ca_file",
            "sink.ca_file",
            "absolute path",
        ),
        (
            "password = \"pw\"",
            "password",
            "sink.password",
            "`password` needs `username`",
        ),
        (
            "username = \"u\"",
            "username",
            "sink.password",
            "missing: `username` needs its `password`",
        ),
        (
            "username = \"u\"\npassword = \"p\"\napi_key = \"k\"",
            "api_key",
            "sink.api_key",
            "not both",
        ),
        (
            "bulk_size = \"0B\"",
            "bulk_size",
            "sink.bulk_size",
            "must be between",
        ),
        (
            "index_template = \"t\"",
            "index_template",
            "sink.mapping",
            "missing: an index template needs the `mapping`",
        ),
        (
            "index_template = \"t\"\nmapping = '[1]'",
            "mapping",
            "sink.mapping",
            "must be an object",
        ),
    ];
    for (setting, line, field, says) in cases {
        let key = setting.split(' ').next().unwrap();
        let text = match key {
            "url" | "index" => es("").replace(
                es("")
                    .lines()
                    .find(|l| l.starts_with(&format!("{key} =")))
                    .unwrap(),
                setting,
            ),
            _ => es(setting),
        };
        let (f, at, message) = only_error(&text);
        assert_eq!(f, field, "{setting}: {message}");
        assert_eq!(at, Some(line_of(&text, line)), "{setting}");
        assert!(message.contains(says), "{setting}: {message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
    let text = es("ca_file = \"/ca.pem\"").replace("https://es2", "http://es2");
    let (f, _, message) = only_error(&text);
    assert_eq!(f, "sink.ca_file");
    assert!(message.contains("https nodes only"), "{message}");
    let (f, _, message) = only_error(&es("mapping = { properties = {} }"));
    assert_eq!(f, "sink.index_template");
    assert!(message.contains("name it in `index_template`"), "{message}");
    let (f, _, message) = only_error(&es("index_template = \"T\"\nmapping = {}"));
    assert_eq!(f, "sink.index_template");
    assert!(message.contains("lowercase"), "{message}");
    let (f, _, message) = only_error(&es("index_template = \"t\"\nmapping = '{nope'"));
    assert_eq!(f, "sink.mapping");
    assert!(message.starts_with("not JSON"), "{message}");
}

#[test]
fn refuses_exactly_once_as_needless() {
    let text = es("delivery = \"exactly-once\"");
    let (field, at, message) = only_error(&text);
    assert_eq!(
        (field.as_str(), at),
        ("sink.delivery", Some(line_of(&text, "delivery")))
    );
    assert!(
        message.contains("at-least-once already gives exactly-once results per id"),
        "{message}"
    );
}

#[test]
fn other_sinks_refuse_its_settings() {
    let text = REFERENCE.replace(
        "key = \"{item_id}-{window_end}\"",
        "key = \"{item_id}-{window_end}\"\nindex = \"i\"\nusername = \"u\"\napi_key = \"k\"\nca_file = \"/ca\"\nindex_template = \"t\"\nmapping = {}\nbulk_size = \"1MiB\"",
    );
    let errs = errors(&text);
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "sink.index",
            "sink.username",
            "sink.ca_file",
            "sink.index_template",
            "sink.api_key",
            "sink.mapping",
            "sink.bulk_size"
        ],
        "{errs:?}"
    );
    for e in &errs {
        assert!(e.message.contains("elasticsearch connector only"), "{e}");
        assert_eq!(
            e.line,
            Some(line_of(&text, e.field.trim_start_matches("sink."))),
            "{e}"
        );
    }
    // Its api_key is redacted like every secret.
    let shown = crate::secret::redact("job.toml", &es("api_key = \"k3y\"")).unwrap();
    assert!(
        !shown.text.contains("k3y") && shown.text.contains("api_key = \"***\""),
        "{}",
        shown.text
    );
}
