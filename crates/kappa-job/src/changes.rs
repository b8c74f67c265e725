//! What changed between two versions of a job file, by part (sources, schema, logic, keys,
//! sinks, settings), for an upgrade's plan. The files are compared as TOML values: layout,
//! comments and the order of keys do not count.

use std::fmt;

use toml::Value;

/// The part of a job a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Where records come from (connector, topic, start, options), not their schema.
    Sources,
    /// The columns and types of a source.
    Schema,
    /// Event time, steps, windows and queries: what is computed.
    Logic,
    /// What windows group by and what sinks key their rows by.
    Keys,
    /// Where results go (connector, topic, table, path, options), not their key.
    Sinks,
    /// Name, parallelism, checkpoints, restarts, limits, state backend.
    Settings,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sources => "sources",
            Self::Schema => "schema",
            Self::Logic => "logic",
            Self::Keys => "keys",
            Self::Sinks => "sinks",
            Self::Settings => "settings",
        })
    }
}

/// One value that differs, at its dotted path (`sinks.pg.table`, `windows[0].key_by`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpecChange {
    pub part: Part,
    pub path: String,
    /// The old value as TOML (None: added).
    pub old: Option<String>,
    /// The new value as TOML (None: removed).
    pub new: Option<String>,
}

/// Why two files cannot be compared.
#[derive(Debug, thiserror::Error)]
#[error("the {which} job file is not TOML")]
pub struct ChangesError {
    which: &'static str,
    #[source]
    source: toml::de::Error,
}

/// The values that differ between `old` and `new`, in path order.
pub fn changes(old: &str, new: &str) -> Result<Vec<SpecChange>, ChangesError> {
    let parse = |text: &str, which| {
        text.parse::<toml::Table>()
            .map_err(|source| ChangesError { which, source })
    };
    let (old, new) = (parse(old, "old")?, parse(new, "new")?);
    let mut out = Vec::new();
    compare(
        "",
        Some(&Value::Table(old)),
        Some(&Value::Table(new)),
        &mut out,
    );
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Values longer than this are shown cut.
const SHOWN_CHARS: usize = 200;

fn shown(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

fn compare(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<SpecChange>) {
    let child = |key: &str| match path {
        "" => key.to_string(),
        p => format!("{p}.{key}"),
    };
    match (old, new) {
        (Some(Value::Table(a)), Some(Value::Table(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                compare(&child(k), a.get(k), b.get(k), out);
            }
        }
        // Arrays of tables (steps, windows, queries) element by element.
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if a.iter().chain(b).all(Value::is_table) =>
        {
            for i in 0..a.len().max(b.len()) {
                compare(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(SpecChange {
            part: part_of(path),
            path: path.to_string(),
            old: a.map(shown),
            new: b.map(shown),
        }),
    }
}

/// The part a dotted path belongs to.
fn part_of(path: &str) -> Part {
    let segments: Vec<&str> = path
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    match segments.as_slice() {
        ["source", "schema", ..] | ["sources", _, "schema", ..] => Part::Schema,
        ["source", ..] | ["sources", ..] => Part::Sources,
        ["sink", "key"] | ["sinks", _, "key"] => Part::Keys,
        ["sink", ..] | ["sinks", ..] => Part::Sinks,
        ["window", "key_by"] | ["windows", "key_by"] => Part::Keys,
        [
            "event_time" | "steps" | "window" | "windows" | "queries",
            ..,
        ] => Part::Logic,
        _ => Part::Settings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"
name = "hourly"
parallelism = 2

[source]
connector = "kafka"
topic = "clicks"
schema = { user_id = "string", item_id = "string" }

[[steps]]
filter = "user_id > 'u_5'"

[window]
kind = "tumbling"
size = "1h"
key_by = ["item_id"]
aggregates = { clicks = "count(*)" }

[sinks.pg]
connector = "postgres"
table = "counts"
key = "{item_id}-{window_end}"
"#;

    #[test]
    fn every_difference_is_found_in_its_part_and_layout_does_not_count() {
        let reordered = r#"
parallelism = 2
name = "hourly"
[sinks.pg]
key = "{item_id}-{window_end}"   # the same
table = "counts"
connector = "postgres"
[source]
schema = { item_id = "string", user_id = "string" }
topic = "clicks"
connector = "kafka"
[[steps]]
filter = "user_id > 'u_5'"
[window]
aggregates = { clicks = "count(*)" }
key_by = ["item_id"]
size = "1h"
kind = "tumbling"
"#;
        assert_eq!(changes(V1, reordered).unwrap(), []);

        let v2 = V1
            .replace("u_5", "u_7")
            .replace("size = \"1h\"", "size = \"1d\"")
            .replace(
                "key_by = [\"item_id\"]",
                "key_by = [\"item_id\", \"user_id\"]",
            )
            .replace(
                "item_id = \"string\" }",
                "item_id = \"string\", ts = \"timestamp_ms\" }",
            )
            .replace("table = \"counts\"", "table = \"counts\"\nbatch_size = 10")
            .replace("parallelism = 2", "parallelism = 4")
            .replace("topic = \"clicks\"", "topic = \"clicks-v2\"");
        let got: Vec<(Part, String, Option<String>, Option<String>)> = changes(V1, &v2)
            .unwrap()
            .into_iter()
            .map(|c| (c.part, c.path, c.old, c.new))
            .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            got,
            [
                (Part::Settings, s("parallelism").unwrap(), s("2"), s("4")),
                (
                    Part::Sinks,
                    s("sinks.pg.batch_size").unwrap(),
                    None,
                    s("10")
                ),
                (
                    Part::Schema,
                    s("source.schema.ts").unwrap(),
                    None,
                    s("\"timestamp_ms\"")
                ),
                (
                    Part::Sources,
                    s("source.topic").unwrap(),
                    s("\"clicks\""),
                    s("\"clicks-v2\"")
                ),
                (
                    Part::Logic,
                    s("steps[0].filter").unwrap(),
                    s("\"user_id > 'u_5'\""),
                    s("\"user_id > 'u_7'\"")
                ),
                (
                    Part::Keys,
                    s("window.key_by").unwrap(),
                    s("[\"item_id\"]"),
                    s("[\"item_id\", \"user_id\"]")
                ),
                (
                    Part::Logic,
                    s("window.size").unwrap(),
                    s("\"1h\""),
                    s("\"1d\"")
                ),
            ]
        );
    }

    #[test]
    fn windows_and_queries_compare_element_by_element_and_keys_of_sinks_are_keys() {
        let old = "[[windows]]\nkind = \"tumbling\"\nkey_by = [\"a\"]\n[sink]\nconnector = \"kafka\"\nkey = \"{a}\"\n";
        let new = "[[windows]]\nkind = \"tumbling\"\nkey_by = [\"b\"]\n[[windows]]\nkind = \"session\"\n[sink]\nconnector = \"kafka\"\nkey = \"{b}\"\n";
        let got: Vec<(Part, String)> = changes(old, new)
            .unwrap()
            .into_iter()
            .map(|c| (c.part, c.path))
            .collect();
        assert_eq!(
            got,
            [
                (Part::Keys, "sink.key".to_string()),
                (Part::Keys, "windows[0].key_by".to_string()),
                (Part::Logic, "windows[1]".to_string()),
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_toml_is_an_error_naming_which() {
        let e = changes(V1, "name = ").unwrap_err();
        assert_eq!(e.to_string(), "the new job file is not TOML");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(500);
        let c = changes("a = 1", &format!("a = \"{long}\"")).unwrap();
        assert!(c[0].new.as_ref().unwrap().ends_with('…'));
        assert_eq!(c[0].new.as_ref().unwrap().chars().count(), SHOWN_CHARS + 1);
    }
}
