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
    /// The record's timestamp (create or log-append time), in milliseconds; null if none.
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
            Self::Timestamp => (DataType::Timestamp(TimeUnit::Millisecond, None), true),
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
