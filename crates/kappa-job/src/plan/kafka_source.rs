//! Planning a Kafka source's own options: `[source.metadata]`, the record fields it carries
//! as columns after the decoded ones (`offset_col = "offset"`), and `history`, the archive of
//! the topic read before the topic where the topic no longer holds the offsets wanted.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::{Planner, span};
use crate::confine::{Place, parse_location};
use crate::spec::SourceSpec;

/// A field of a Kafka record a source can carry as a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaMetadata {
    /// int32.
    Partition,
    /// int64.
    Offset,
    /// The record's timestamp (create or log-append time), in milliseconds. A record without
    /// one (the message format before Kafka 0.10) is a bad record.
    Timestamp,
    /// The record's key bytes; null if none.
    Key,
}

impl KafkaMetadata {
    const ALL: [(&'static str, KafkaMetadata); 4] = [
        ("partition", Self::Partition),
        ("offset", Self::Offset),
        ("timestamp", Self::Timestamp),
        ("key", Self::Key),
    ];

    /// The column of this field named `name`.
    pub fn field(self, name: &str) -> Field {
        let (data_type, nullable) = match self {
            Self::Partition => (DataType::Int32, false),
            Self::Offset => (DataType::Int64, false),
            Self::Timestamp => (DataType::Timestamp(TimeUnit::Millisecond, None), false),
            Self::Key => (DataType::Binary, true),
        };
        Field::new(name, data_type, nullable)
    }
}

impl std::str::FromStr for KafkaMetadata {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s.trim())
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                format!("unknown Kafka record field `{s}`: use partition, offset, timestamp or key")
            })
    }
}

impl Planner<'_> {
    /// The metadata fields of `s` and their columns, checked against the decoded columns
    /// `payload`.
    pub(super) fn kafka_metadata(
        &mut self,
        s: &SourceSpec,
        prefix: &str,
        payload: &Schema,
    ) -> (Vec<KafkaMetadata>, Vec<Field>) {
        let (mut fields, mut columns) = (Vec::new(), Vec::<Field>::new());
        let Some(metadata) = &s.metadata else {
            return (fields, columns);
        };
        for (name, value) in metadata.get_ref().iter() {
            let at = format!("{prefix}.metadata.{name}");
            let field = match value.get_ref().parse::<KafkaMetadata>() {
                Ok(f) => f,
                Err(e) => {
                    self.err(span(value), &at, e);
                    continue;
                }
            };
            if payload.column_with_name(name).is_some() {
                self.err(span(value), &at, format!("`{name}` is already a column of the record's schema: name the metadata column otherwise"));
            } else if fields.contains(&field) {
                self.err(
                    span(value),
                    &at,
                    format!("`{}` is already a column", value.get_ref().trim()),
                );
            } else {
                fields.push(field);
                columns.push(field.field(name));
            }
        }
        (fields, columns)
    }

    /// The archive location of `s` (`s3://bucket/prefix`, `file:///dir` or an absolute
    /// directory).
    pub(super) fn kafka_history(&mut self, s: &SourceSpec, prefix: &str) -> Option<String> {
        let text = s.history.as_ref()?;
        let location = text.get_ref().trim().to_string();
        let bad = match parse_location(&location) {
            _ if location.is_empty() => Some("must not be empty".to_string()),
            Err(why) => Some(why),
            Ok(Place::Dir(dir)) if !dir.is_absolute() => {
                Some("a directory must be absolute (or write s3://bucket/prefix)".into())
            }
            Ok(_) => None,
        };
        match bad {
            Some(why) => {
                self.err(span(text), &format!("{prefix}.history"), why);
                None
            }
            None => Some(location),
        }
    }

    /// Refuses the Kafka source's options on a source of another connector.
    pub(super) fn forbid_kafka_source_options(&mut self, s: &SourceSpec, prefix: &str) {
        self.forbid(
            &s.metadata,
            &format!("{prefix}.metadata"),
            "`metadata` applies to the kafka connector only",
        );
        self.forbid(
            &s.history,
            &format!("{prefix}.history"),
            "`history` applies to the kafka connector only",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::test_jobs::{REFERENCE, errors, line_of};
    use crate::plan::{Overrides, SourceKind, plan_job};

    /// The reference job with `metadata` as its `[source.metadata]` table and `source` added
    /// to its `[source]` table.
    fn job(metadata: &str, source: &str) -> String {
        let text = REFERENCE.replacen(
            "[event_time]",
            &format!("[source.metadata]\n{metadata}\n\n[event_time]"),
            1,
        );
        text.replacen(
            "topic = \"user-behavior\"",
            &format!("topic = \"user-behavior\"\n{source}"),
            1,
        )
    }

    #[test]
    fn metadata_columns_follow_the_decoded_ones_and_the_history_is_kept() {
        let text = job(
            "p = \"partition\"\no = \"offset\"\nts = \"timestamp\"\nk = \"key\"",
            "history = \"s3://archive/user-behavior\"",
        );
        let plan = plan_job("job.toml", &text, &Overrides::default()).unwrap();
        let source = &plan.sources[0];
        let SourceKind::Kafka(k) = &source.kind else {
            panic!("{:?}", source.kind)
        };
        assert_eq!(
            k.metadata,
            [
                KafkaMetadata::Partition,
                KafkaMetadata::Offset,
                KafkaMetadata::Timestamp,
                KafkaMetadata::Key
            ]
        );
        assert_eq!(k.history.as_deref(), Some("s3://archive/user-behavior"));
        let columns: Vec<(&str, &DataType)> = source
            .schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
        assert_eq!(
            columns,
            [
                ("user_id", &DataType::Utf8),
                ("item_id", &DataType::Utf8),
                ("timestamp", &ms),
                ("p", &DataType::Int32),
                ("o", &DataType::Int64),
                ("ts", &ms),
                ("k", &DataType::Binary),
            ]
        );
        assert_eq!(source.payload_schema().fields().len(), 3);
        assert_eq!(source.payload_event_time(), Some(2));

        // The record's timestamp as the event time: not a decoded column.
        let text =
            job("ts = \"timestamp\"", "").replace("column = \"timestamp\"", "column = \"ts\"");
        let plan = plan_job("job.toml", &text, &Overrides::default()).unwrap();
        let source = &plan.sources[0];
        assert_eq!(source.event_time.as_ref().map(|e| e.source_index), Some(3));
        assert_eq!(source.payload_event_time(), None);
    }

    #[test]
    fn bad_metadata_and_history_are_refused_where_they_are_written() {
        let text = job(
            "h = \"headers\"\nitem_id = \"offset\"\no = \"offset\"\no2 = \"offset\"",
            "history = \"archive/relative\"",
        );
        let line = |start: &str| line_of(&text, start);
        let found: Vec<(String, Option<usize>)> = errors(&text)
            .into_iter()
            .map(|e| (e.field, e.line))
            .collect();
        assert_eq!(
            found,
            [
                ("source.history".to_string(), line("history")),
                ("source.metadata.h".to_string(), line("h =")),
                (
                    "source.metadata.item_id".to_string(),
                    line("item_id = \"offset\"")
                ),
                ("source.metadata.o2".to_string(), line("o2 =")),
            ]
        );
        let messages: Vec<String> = errors(&text).into_iter().map(|e| e.message).collect();
        assert!(
            messages[1].contains("use partition, offset, timestamp or key"),
            "{messages:?}"
        );
        assert!(
            messages[2].contains("already a column of the record's schema"),
            "{messages:?}"
        );

        // Kafka's options on a file source.
        let file = REFERENCE
            .replacen(
                "connector = \"kafka\"",
                "connector = \"file\"\npath = \"/data/clicks\"",
                1,
            )
            .replacen("bootstrap_servers = \"127.0.0.1:9092\"\n", "", 1)
            .replacen("topic = \"user-behavior\"\n", "history = \"/archive\"\n", 1);
        let fields: Vec<String> = errors(&file).into_iter().map(|e| e.field).collect();
        assert!(fields.contains(&"source.history".to_string()), "{fields:?}");
    }
}
