//! Bulk bodies and responses, with responses shaped as the Elasticsearch documentation shows.

use serde_json::json;

use super::*;

fn doc(id: &str, index: &str, source: &str) -> Doc {
    Doc {
        index: index.into(),
        id: id.into(),
        source: Some(source.as_bytes().to_vec()),
    }
}

#[test]
fn the_body_is_an_index_action_and_the_source_per_document() {
    let docs = [
        doc(
            "item_1-3600000",
            "hourly-2024-01",
            r#"{"item_id":"item_1","click_count":3}"#,
        ),
        doc("say \"hi\"", "hourly-2024-02", r#"{"item_id":"x"}"#),
    ];
    let body = String::from_utf8(body(&docs)).unwrap();
    let lines: Vec<serde_json::Value> = body
        .split_terminator('\n')
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"index": {"_index": "hourly-2024-01", "_id": "item_1-3600000"}}),
            json!({"item_id": "item_1", "click_count": 3}),
            json!({"index": {"_index": "hourly-2024-02", "_id": "say \"hi\""}}),
            json!({"item_id": "x"}),
        ]
    );
    assert!(body.ends_with('\n'), "the API wants the last line ended");
}

/// One item of a response: `{"index": {…}}`.
fn item(id: &str, status: u16, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| format!(r#","error":{e}"#));
    format!(
        r#"{{"index":{{"_index":"hourly-2024-01","_id":"{id}","_version":1,"status":{status}{error}}}}}"#
    )
}

fn response(errors: bool, items: &[String]) -> String {
    format!(
        r#"{{"took":3,"errors":{errors},"items":[{}]}}"#,
        items.join(",")
    )
}

#[test]
fn no_errors_means_nothing_to_resend() {
    let docs = [doc("a", "i", "{}"), doc("b", "i", "{}")];
    let sent = &docs[..];
    let text = response(false, &[item("a", 201, None), item("b", 200, None)]);
    assert_eq!(
        outcome("n", &text, sent).unwrap(),
        Outcome { retry: vec![] }
    );
}

#[test]
fn items_refused_with_429_are_sent_again() {
    let docs = [
        doc("a", "i", "{}"),
        doc("b", "i", "{}"),
        doc("c", "i", "{}"),
    ];
    let sent = &docs[..];
    let rejected = r#"{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}"#;
    let text = response(
        true,
        &[
            item("a", 429, Some(rejected)),
            item("b", 201, None),
            item("c", 429, Some(rejected)),
        ],
    );
    assert_eq!(
        outcome("n", &text, sent).unwrap(),
        Outcome { retry: vec![0, 2] }
    );
}

#[test]
fn a_mapping_conflict_names_the_document_index_and_field() {
    let docs = [
        doc("a", "i", "{}"),
        doc("item_1-3600000", "hourly-2024-01", "{}"),
        doc("c", "i", "{}"),
    ];
    let sent = &docs[..];
    let conflict = r#"{"type":"mapper_parsing_exception","reason":"failed to parse field [click_count] of type [long] in document with id 'item_1-3600000'. Preview of field's value: 'many'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"many\""}}"#;
    let text = response(
        true,
        &[
            item("a", 429, None),
            item("item_1-3600000", 400, Some(conflict)),
            item("c", 400, Some(conflict)),
        ],
    );
    let e = outcome("n", &text, sent).unwrap_err();
    assert!(
        !e.restart_may_help(),
        "bad data: a restart fails the same way"
    );
    assert_eq!(
        e.to_string(),
        "elasticsearch refused document _id `item_1-3600000` in index `hourly-2024-01` (status 400): \
         mapper_parsing_exception: failed to parse field [click_count] of type [long] in document with id 'item_1-3600000'. \
         Preview of field's value: 'many'; caused by illegal_argument_exception: For input string: \"many\" \
         (and 1 more documents of the same bulk request)"
    );
    // A server error of one item may pass after a restart.
    let unavailable =
        r#"{"type":"unavailable_shards_exception","reason":"primary shard is not active"}"#;
    let text = response(
        true,
        &[
            item("a", 201, None),
            item("b", 503, Some(unavailable)),
            item("c", 201, None),
        ],
    );
    let e = outcome("n", &text, sent).unwrap_err();
    assert!(e.restart_may_help(), "{e}");
    assert!(
        e.to_string().contains("_id `b`") && e.to_string().contains("primary shard is not active"),
        "{e}"
    );
}

#[test]
fn answers_that_do_not_fit_the_request_are_errors() {
    let docs = [doc("a", "i", "{}"), doc("b", "i", "{}")];
    let sent = &docs[..];
    let e = outcome(
        "http://es1:9200",
        &response(true, &[item("a", 429, None)]),
        sent,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bulk request at http://es1:9200: 1 items answered for 2 sent"
    );
    let e = outcome("http://es1:9200", "<html>proxy error</html>", sent).unwrap_err();
    assert!(matches!(e, EsError::Malformed { .. }), "{e:?}");
    assert!(!e.transient());
}

#[test]
fn error_bodies_give_their_cause() {
    let body = r#"{"error":{"root_cause":[],"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"},"status":401}"#;
    assert_eq!(
        error_cause(body).unwrap().to_string(),
        "security_exception: missing authentication credentials for REST request [/_bulk]"
    );
    assert!(error_cause("Too Many Requests").is_none());
}

#[test]
fn a_delete_is_its_action_line_alone_and_a_missing_document_is_deleted() {
    let gone = Doc {
        index: "i".into(),
        id: "b".into(),
        source: None,
    };
    let docs = [doc("a", "i", r#"{"n":1}"#), gone.clone(), gone];
    let body = String::from_utf8(body(&docs)).unwrap();
    let lines: Vec<serde_json::Value> = body
        .split_terminator('\n')
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"index": {"_index": "i", "_id": "a"}}),
            json!({"n": 1}),
            json!({"delete": {"_index": "i", "_id": "b"}}),
            json!({"delete": {"_index": "i", "_id": "b"}}),
        ]
    );
    // The second delete finds nothing: done. A 404 of an index action is not.
    let answer = response(
        true,
        &[
            item("a", 201, None),
            item("b", 200, None),
            item("b", 404, None),
        ],
    );
    assert_eq!(
        outcome("n", &answer, &docs).unwrap().retry,
        Vec::<usize>::new()
    );
    let answer = response(
        true,
        &[
            item("a", 404, None),
            item("b", 200, None),
            item("b", 200, None),
        ],
    );
    assert!(outcome("n", &answer, &docs).is_err());
}
