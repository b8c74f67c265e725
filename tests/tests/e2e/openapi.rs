//! The OpenAPI document against the running server: every route it describes is called on a
//! `kappa local` with a real job, an auth token and a checkpoint directory, and each answer's
//! status must be one the document lists, with a body valid against the listed JSON schema.
//! Unknown ids, a missing or wrong token and oversized bodies get the documented 4xx JSON.

use std::time::{Duration, Instant};

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{START, clicks, produce_closed};
use kappa_integration_tests::{SINK_PARTITIONS, reference_job};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

const TOKEN: &str = "openapi-test-token";
const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// `/a/{b}` as a JSON pointer segment in a URI fragment.
fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// Checks one answer against the document: the status is listed for the operation, and a
/// JSON body matches the schema given for that status.
fn check(doc: &Value, path: &str, method: &str, status: u16, body: &str) {
    let responses = &doc["paths"][path][method]["responses"];
    assert!(
        responses[status.to_string()].is_object(),
        "{} {path} answered {status}, which the document does not list ({}): {body}",
        method.to_uppercase(),
        responses
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    );
    let errors = schema_errors(doc, path, method, status, body);
    assert!(
        errors.is_empty(),
        "{} {path} ({status}) does not match its schema: {errors:?}\n{body}",
        method.to_uppercase()
    );
}

/// Where `body` departs from the JSON schema the document gives for this answer.
fn schema_errors(doc: &Value, path: &str, method: &str, status: u16, body: &str) -> Vec<String> {
    let listed = &doc["paths"][path][method]["responses"][status.to_string()];
    if !listed["content"]["application/json"]["schema"].is_object() {
        return Vec::new();
    }
    let instance: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path} ({status}) is not JSON ({e}): {body}"));
    // Validate against the schema in place, so its $refs resolve inside the document.
    let mut root = doc.clone();
    root["$ref"] = Value::String(format!(
        "#/paths/{}/{method}/responses/{status}/content/application~1json/schema",
        pointer_escape(path)
    ));
    let validator = jsonschema::validator_for(&root).expect("the document's schemas compile");
    validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(5)
        .collect()
}

struct Api {
    client: Client,
    url: String,
    doc: Value,
    /// (path, method) pairs called.
    called: Vec<(String, String)>,
}

impl Api {
    fn call(
        &mut self,
        method: &str,
        template: &str,
        concrete: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let url = format!("{}{concrete}", self.url);
        let req: RequestBuilder = match method {
            "get" => self.client.get(url),
            "post" => self.client.post(url),
            other => panic!("no method {other}"),
        };
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let resp = req.bearer_auth(TOKEN).send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        check(&self.doc, template, method, status, &text);
        self.called.push((template.to_string(), method.to_string()));
        (status, text)
    }
}

#[test]
fn every_documented_route_answers_as_described() {
    let broker = Broker::start().expect("broker");
    let data = clicks(4_000, 61, START, 3, 50);
    produce_closed(&broker, "clicks", 4, &data).expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let cluster = Cluster::local_with_env(
        4,
        &["--checkpoint-dir", root.to_str().expect("utf-8")],
        &[("KAPPA_AUTH_TOKEN", TOKEN.to_string())],
    )
    .expect("kappa local");
    let doc: Value = reqwest::blocking::get(format!("{}/api/v1/openapi.json", cluster.url))
        .expect("openapi.json")
        .json()
        .expect("json");
    // The check can fail: a body of the wrong shape is caught.
    assert!(!schema_errors(&doc, "/api/v1/jobs", "post", 201, r#"{"id": 5}"#).is_empty());
    assert!(!schema_errors(&doc, "/api/v1/jobs/{id}", "get", 200, r#"{"summary": {}}"#).is_empty());
    let mut api = Api {
        client: Client::new(),
        url: cluster.url.clone(),
        doc: doc.clone(),
        called: Vec::new(),
    };
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2)
        // Retained long enough for the second job below to restore the one it starts from.
        + "\n[checkpoints]\ninterval = \"300ms\"\nretained = 20\n";
    let submission = json!({ "job": job, "file_name": "ref.toml", "start": "earliest" });

    let (status, _) = api.call(
        "post",
        "/api/v1/jobs/validate",
        "/api/v1/jobs/validate",
        Some(submission.clone()),
    );
    assert_eq!(status, 200);
    let (status, _) = api.call(
        "post",
        "/api/v1/jobs/validate",
        "/api/v1/jobs/validate",
        Some(json!({"job": "name = 1"})),
    );
    assert_eq!(status, 400);
    let (status, text) = api.call(
        "post",
        "/api/v1/jobs",
        "/api/v1/jobs",
        Some(submission.clone()),
    );
    assert_eq!(status, 201, "{text}");
    let id = serde_json::from_str::<Value>(&text).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, _) = api.call(
        "post",
        "/api/v1/jobs",
        "/api/v1/jobs",
        Some(json!({"job": job, "start": "yesterday"})),
    );
    assert_eq!(status, 400);

    // Wait for a completed checkpoint, so the lists have entries to check.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = api.call(
            "get",
            "/api/v1/jobs/{id}/checkpoints",
            &format!("/api/v1/jobs/{id}/checkpoints"),
            None,
        );
        if text.contains("\"COMPLETED\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint completed: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for (template, concrete) in [
        ("/api/v1/overview", "/api/v1/overview".to_string()),
        ("/api/v1/jobs", "/api/v1/jobs".to_string()),
        ("/api/v1/jobs/{id}", format!("/api/v1/jobs/{id}")),
        ("/api/v1/jobs/{id}/spec", format!("/api/v1/jobs/{id}/spec")),
        (
            "/api/v1/jobs/{id}/series",
            format!("/api/v1/jobs/{id}/series"),
        ),
        ("/api/v1/taskmanagers", "/api/v1/taskmanagers".to_string()),
        ("/metrics", "/metrics".to_string()),
    ] {
        let (status, text) = api.call("get", template, &concrete, None);
        assert_eq!(status, 200, "{concrete}: {text}");
    }
    let tms: Value = serde_json::from_str(
        &api.call("get", "/api/v1/taskmanagers", "/api/v1/taskmanagers", None)
            .1,
    )
    .expect("json");
    let tm = tms[0]["id"].as_str().expect("a taskmanager").to_string();
    let (status, text) = api.call(
        "get",
        "/api/v1/taskmanagers/{id}",
        &format!("/api/v1/taskmanagers/{tm}"),
        None,
    );
    assert_eq!(status, 200);
    assert!(
        text.contains(&id),
        "the taskmanager runs the job's subtasks: {text}"
    );
    // Unknown ids: the documented 404.
    for template in [
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/spec",
        "/api/v1/jobs/{id}/checkpoints",
        "/api/v1/jobs/{id}/series",
        "/api/v1/taskmanagers/{id}",
    ] {
        let (status, _) = api.call(
            "get",
            template,
            &template.replace("{id}", "no-such-id"),
            None,
        );
        assert_eq!(status, 404, "{template}");
    }
    for template in [
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/jobs/{id}/savepoints",
        "/api/v1/jobs/{id}/stop",
    ] {
        let (status, _) = api.call(
            "post",
            template,
            &template.replace("{id}", "no-such-id"),
            None,
        );
        assert_eq!(status, 404, "{template}");
    }
    // The plan of an upgrade to the same file: nothing changed; of an unknown job: 404.
    let (status, text) = api.call(
        "post",
        "/api/v1/jobs/{id}/upgrade-plan",
        &format!("/api/v1/jobs/{id}/upgrade-plan"),
        Some(json!({ "job": job })),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    let (status, _) = api.call(
        "post",
        "/api/v1/jobs/{id}/upgrade-plan",
        "/api/v1/jobs/no-such-id/upgrade-plan",
        Some(json!({ "job": job })),
    );
    assert_eq!(status, 404);
    // An audit of the job: listed, shown, compared, never cut over, aborted; while it runs the
    // job cannot be upgraded (409).
    let (status, text) = api.call(
        "post",
        "/api/v1/jobs/{id}/audits",
        &format!("/api/v1/jobs/{id}/audits"),
        None,
    );
    assert_eq!(status, 201, "{text}");
    let audit: Value = serde_json::from_str(&text).expect("json");
    let audit = audit["id"].as_str().expect("audit id").to_string();
    let (status, text) = api.call(
        "post",
        "/api/v1/jobs/{id}/upgrades",
        &format!("/api/v1/jobs/{id}/upgrades"),
        Some(json!({ "job": job })),
    );
    assert_eq!(status, 409, "{text}");
    let (status, text) = api.call("get", "/api/v1/upgrades", "/api/v1/upgrades", None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&audit), "{text}");
    for (method, template, expected) in [
        ("get", "/api/v1/upgrades/{id}", &[200][..]),
        // Comparing before the shadow job runs is refused, after it answers the rows.
        ("get", "/api/v1/upgrades/{id}/diff", &[200, 409][..]),
        ("post", "/api/v1/upgrades/{id}/cutover", &[409][..]),
        ("post", "/api/v1/upgrades/{id}/abort", &[202][..]),
    ] {
        let concrete = template.replace("{id}", &audit);
        let (status, text) = api.call(method, template, &concrete, None);
        assert!(expected.contains(&status), "{template}: {status} {text}");
        let (status, _) = api.call(
            method,
            template,
            &template.replace("{id}", "no-such-id"),
            None,
        );
        assert_eq!(status, 404, "{template}");
    }
    for template in ["/api/v1/jobs/{id}/audits", "/api/v1/jobs/{id}/upgrades"] {
        let (status, _) = api.call(
            "post",
            template,
            &template.replace("{id}", "no-such-id"),
            Some(json!({ "job": job })),
        );
        assert_eq!(status, 404, "{template}");
    }
    // Savepoint, then a second job from the job's retained checkpoint, stopped with a savepoint.
    let (status, text) = api.call(
        "post",
        "/api/v1/jobs/{id}/savepoints",
        &format!("/api/v1/jobs/{id}/savepoints"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{text}");
    let checkpoints: Value = serde_json::from_str(
        &api.call(
            "get",
            "/api/v1/jobs/{id}/checkpoints",
            &format!("/api/v1/jobs/{id}/checkpoints"),
            None,
        )
        .1,
    )
    .expect("json");
    let retained = checkpoints
        .as_array()
        .and_then(|l| l.iter().find(|c| c["retained"] == true))
        .map(|c| c["id"].as_u64().expect("id"))
        .expect("a retained checkpoint");
    let from_checkpoint = json!({ "job": job, "start": format!("checkpoint:{id}:{retained}") });
    let (status, text) = api.call(
        "post",
        "/api/v1/jobs",
        "/api/v1/jobs",
        Some(from_checkpoint),
    );
    assert_eq!(status, 201, "{text}");
    let second = serde_json::from_str::<Value>(&text).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    cluster
        .wait_state(&second, &["RUNNING"], Duration::from_secs(60))
        .expect("the job from the checkpoint runs");
    let detail = cluster.job(&second).expect("job");
    assert_eq!(
        detail["attempts"][0]["restored_from"], retained,
        "started from the checkpoint: {detail}"
    );
    let (status, text) = api.call(
        "post",
        "/api/v1/jobs/{id}/stop",
        &format!("/api/v1/jobs/{second}/stop"),
        Some(json!({"drain": false})),
    );
    assert_eq!(status, 200, "{text}");
    let (status, _) = api.call(
        "post",
        "/api/v1/jobs/{id}/cancel",
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
    );
    assert_eq!(status, 202);
    cluster
        .wait_state(&id, &["CANCELED"], Duration::from_secs(30))
        .expect("cancelled");
    let (status, _) = api.call(
        "post",
        "/api/v1/jobs/{id}/cancel",
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
    );
    assert_eq!(status, 409, "cancelling an ended job is a conflict");
    let (status, _) = api.call(
        "post",
        "/api/v1/jobs/{id}/savepoints",
        &format!("/api/v1/jobs/{id}/savepoints"),
        None,
    );
    assert_eq!(status, 409, "a savepoint of an ended job is a conflict");

    // Every operation of the document was called.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                api.called.iter().any(|(p, m)| p == path && m == method),
                "{method} {path} is documented but the test did not call it"
            );
        }
    }

    // Without the token, or with a wrong one: 401 with a JSON error; the UI files are public.
    let client = Client::new();
    for path in ["/api/v1/overview", "/api/v1/jobs", "/metrics"] {
        let r = client
            .get(format!("{}{path}", cluster.url))
            .send()
            .expect("request");
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let v: Value = r.json().expect("a JSON error");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("token")),
            "{v}"
        );
        let r = client
            .get(format!("{}{path}", cluster.url))
            .bearer_auth("wrong")
            .send()
            .expect("request");
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    let page = client
        .get(format!("{}/", cluster.url))
        .send()
        .expect("request");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().unwrap_or_default().contains("/ui/app.js"));
    // An oversized upload: 413 with a JSON error, and the server goes on.
    let huge = json!({ "job": "#".repeat(5 << 20) });
    let r = client
        .post(format!("{}/api/v1/jobs", cluster.url))
        .bearer_auth(TOKEN)
        .json(&huge)
        .send()
        .expect("request");
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().expect("a JSON error");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("--max-request-bytes")),
        "{v}"
    );
    assert!(cluster.overview().is_ok(), "the server still answers");
    // Eight uploads just under the limit at once: each refused before planning, naming the
    // job-file limit, and the server answers on.
    let near = json!({ "job": "#".repeat((4 << 20) - 1024) });
    std::thread::scope(|s| {
        let sent: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    client
                        .post(format!("{}/api/v1/jobs", cluster.url))
                        .bearer_auth(TOKEN)
                        .json(&near)
                        .send()
                        .expect("request")
                })
            })
            .collect();
        for r in sent {
            let r = r.join().expect("an upload");
            assert_eq!(r.status().as_u16(), 400);
            let text = r.text().unwrap_or_default();
            assert!(text.contains("at most 1048576"), "{text}");
        }
    });
    assert!(cluster.overview().is_ok(), "the server still answers");
}
