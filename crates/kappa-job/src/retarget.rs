//! A job file with some of its sinks pointed elsewhere: an upgrade runs the new version into
//! shadow tables, topics and directories, then into the live ones again. The file is edited
//! as TOML, so what else it says (secrets by reference included) stays as written.

use toml::{Table, Value};

/// Why a file could not be retargeted.
#[derive(Debug, thiserror::Error)]
pub enum RetargetError {
    #[error("the job file is not TOML")]
    Parse(#[source] toml::de::Error),
    #[error("the job file has no sink `{0}`")]
    NoSink(String),
    #[error("sink `{0}` has no `{1}` to point elsewhere")]
    NoTarget(String, String),
    #[error("writing the job file back as TOML")]
    Write(#[source] toml::ser::Error),
}

/// Where one sink writes instead: its `table`, `topic` or `path` (`field`) becomes `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retarget {
    /// The sink's name: `sink` for the single `[sink]` table, else its key in `[sinks]`.
    pub sink: String,
    pub field: &'static str,
    pub value: String,
}

/// `text` with each sink of `targets` writing where its target says.
pub fn retarget_sinks(text: &str, targets: &[Retarget]) -> Result<String, RetargetError> {
    let mut doc: Table = text.parse().map_err(RetargetError::Parse)?;
    for t in targets {
        let sink =
            sink_table(&mut doc, &t.sink).ok_or_else(|| RetargetError::NoSink(t.sink.clone()))?;
        let slot = sink
            .get_mut(t.field)
            .ok_or_else(|| RetargetError::NoTarget(t.sink.clone(), t.field.to_string()))?;
        *slot = Value::String(t.value.clone());
    }
    toml::to_string(&doc).map_err(RetargetError::Write)
}

/// The table of sink `name`: `[sinks.name]`, or the single `[sink]` named `sink`.
fn sink_table<'a>(doc: &'a mut Table, name: &str) -> Option<&'a mut Table> {
    if name == "sink" && matches!(doc.get("sink"), Some(Value::Table(_))) {
        return match doc.get_mut("sink") {
            Some(Value::Table(single)) => Some(single),
            _ => None,
        };
    }
    match doc.get_mut("sinks")?.get_mut(name)? {
        Value::Table(t) => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"name = "j"
[source]
connector = "kafka"
topic = "in"

[sinks.pg]
connector = "postgres"
url = "postgres://kappa:${env:PGPASSWORD}@db/k"
table = "public.hourly"

[sinks.out]
connector = "kafka"
topic = "hourly"
"#;

    fn to(sink: &str, field: &'static str, value: &str) -> Retarget {
        Retarget {
            sink: sink.into(),
            field,
            value: value.into(),
        }
    }

    #[test]
    fn named_sinks_write_elsewhere_and_the_rest_stays() {
        let out = retarget_sinks(
            JOB,
            &[
                to("pg", "table", "public.hourly__u1"),
                to("out", "topic", "hourly.u1"),
            ],
        )
        .unwrap();
        let doc: Table = out.parse().unwrap();
        assert_eq!(
            doc["sinks"]["pg"]["table"].as_str(),
            Some("public.hourly__u1")
        );
        assert_eq!(doc["sinks"]["out"]["topic"].as_str(), Some("hourly.u1"));
        assert_eq!(doc["source"]["topic"].as_str(), Some("in"));
        assert_eq!(
            doc["sinks"]["pg"]["url"].as_str(),
            Some("postgres://kappa:${env:PGPASSWORD}@db/k")
        );
        // And back.
        let back = retarget_sinks(
            &out,
            &[
                to("pg", "table", "public.hourly"),
                to("out", "topic", "hourly"),
            ],
        )
        .unwrap();
        assert_eq!(
            back.parse::<Table>().unwrap(),
            JOB.parse::<Table>().unwrap()
        );
    }

    #[test]
    fn the_single_sink_is_named_sink_and_unknown_sinks_are_errors() {
        let single = "[sink]\nconnector = \"file\"\npath = \"/out\"\n";
        let out = retarget_sinks(single, &[to("sink", "path", "/out.u1")]).unwrap();
        assert!(out.contains("path = \"/out.u1\""), "{out}");
        let missing = retarget_sinks(JOB, &[to("nope", "table", "x")]).unwrap_err();
        assert_eq!(missing.to_string(), "the job file has no sink `nope`");
        let field = retarget_sinks(JOB, &[to("out", "table", "x")]).unwrap_err();
        assert_eq!(
            field.to_string(),
            "sink `out` has no `table` to point elsewhere"
        );
    }
}
