//! Planning a connector's record format: json, string, raw or avro. `avro_schema` and
//! `schema_registry` are refused where they do not apply; string and raw take exactly one
//! column of their type (`value` when the source gives no schema); an inline Avro schema is
//! parsed and checked against the source's `schema` or the sink's output columns. Every
//! problem is located.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_avro::reader::ReaderBuilder;
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use toml::Spanned;

use super::{Planner, span};
use crate::secret::Secret;
use crate::spec::{Format, SchemaRegistrySpec, SinkConnector, SinkSpec, SourceSpec};

/// How a connector's records are encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordFormat {
    Json,
    /// The value as one Utf8 column.
    String,
    /// The value as one Binary column.
    Raw,
    Avro(AvroFormat),
    /// Debezium change events in JSON: the rows of `before` and `after` (a source only).
    DebeziumJson,
}

impl std::fmt::Display for RecordFormat {
    /// As a job file names it, with where Avro schemas come from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::String => "string",
            Self::Raw => "raw",
            Self::Avro(a) if a.registry.is_some() => "avro, schema registry",
            Self::Avro(_) => "avro",
            Self::DebeziumJson => "debezium-json",
        })
    }
}

/// `format = "avro"`.
#[derive(Debug, Clone, PartialEq)]
pub struct AvroFormat {
    /// The Avro schema (JSON text): the records' (a source without a registry), the one
    /// written and registered (a sink, derived from its columns when not given).
    pub schema: Option<String>,
    /// Records in the Confluent wire format, schemas from this registry.
    pub registry: Option<SchemaRegistry>,
}

/// A Confluent-compatible schema registry.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaRegistry {
    pub url: String,
    pub subject: String,
    pub username: Option<String>,
    /// A reference, usually: resolve it where the registry is called.
    pub password: Option<Secret>,
}

/// The column name of a string or raw source that gives no schema.
pub const VALUE_COLUMN: &str = "value";

/// The Arrow schema arrow-avro decodes records of Avro schema `json` into.
pub fn avro_arrow_schema(json: &str) -> Result<SchemaRef, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(Fingerprint::Id(0), AvroSchema::new(json.to_string()))
        .map_err(|e| format!("not a valid Avro schema: {e}"))?;
    let decoder = ReaderBuilder::new()
        .with_writer_schema_store(store)
        .build_decoder()
        .map_err(|e| format!("not a usable Avro schema: {e}"))?;
    Ok(decoder.schema())
}

/// The Avro schema arrow-avro writes for columns `schema`, as JSON text.
pub fn derived_avro_schema(schema: &Schema) -> Result<String, String> {
    let plain = Schema::new(schema.fields().clone());
    AvroSchema::try_from(&plain)
        .map(|s| s.json_string)
        .map_err(|e| format!("the columns have no Avro schema: {e}"))
}

/// Whether a value of Avro-decoded type `avro` can stand for a column of type `job`:
/// equal, or timestamps of one unit (Avro's UTC marker aside).
fn same_type(job: &DataType, avro: &DataType) -> bool {
    match (job, avro) {
        (DataType::Timestamp(a, _), DataType::Timestamp(b, _)) => a == b,
        _ => job == avro,
    }
}

/// For every column of `job`, the index of the field of `avro` that gives it; an error
/// naming the missing or mismatched ones.
pub fn avro_columns(job: &Schema, avro: &Schema) -> Result<Vec<usize>, String> {
    let mut indices = Vec::new();
    let mut problems = Vec::new();
    for f in job.fields() {
        match avro.index_of(f.name()) {
            Err(_) => problems.push(format!("`{}` is not a field of the Avro record", f.name())),
            Ok(i) => {
                let a = avro.field(i);
                if !same_type(f.data_type(), a.data_type()) {
                    problems.push(format!(
                        "`{}` is {} in the Avro schema, {} in the job",
                        f.name(),
                        a.data_type(),
                        f.data_type()
                    ));
                } else if a.is_nullable() && !f.is_nullable() {
                    problems.push(format!(
                        "`{}` may be null in the Avro schema: declare it as \"type?\"",
                        f.name()
                    ));
                }
                indices.push(i);
            }
        }
    }
    match problems.is_empty() {
        true => Ok(indices),
        false => Err(problems.join("; ")),
    }
}

impl Planner<'_> {
    /// The format of a source at `prefix` and the schema of its records; `kafka`: whether
    /// its connector is kafka (the only one that takes other formats than json).
    pub(super) fn source_format(
        &mut self,
        s: &SourceSpec,
        prefix: &str,
        kafka: bool,
    ) -> (RecordFormat, Schema) {
        let given = s.format.as_ref().map(|f| *f.get_ref()).unwrap_or_default();
        let at = s.format.as_ref().and_then(span);
        if !kafka && given != Format::Json {
            let why = "the file connector reads JSON lines only (format = \"json\")";
            self.err(at, &format!("{prefix}.format"), why);
        }
        let format = self.format(
            given,
            (&s.avro_schema, &s.schema_registry),
            prefix,
            FormatSide::Source,
        );
        let schema = match (&format, &s.schema) {
            (RecordFormat::String, None) => value_schema(DataType::Utf8),
            (RecordFormat::Raw, None) => value_schema(DataType::Binary),
            (
                RecordFormat::Avro(AvroFormat {
                    schema: Some(json), ..
                }),
                None,
            ) => avro_arrow_schema(json)
                .map(|s| Schema::new(s.fields().clone()))
                .unwrap_or_else(|_| Schema::empty()),
            _ => self.schema(s, prefix),
        };
        let field = format!("{prefix}.schema");
        let at = s.schema.as_ref().and_then(span);
        match &format {
            RecordFormat::String => self.one_column(&schema, DataType::Utf8, at, &field, "string"),
            RecordFormat::Raw => self.one_column(&schema, DataType::Binary, at, &field, "raw"),
            RecordFormat::Avro(AvroFormat {
                schema: Some(json), ..
            }) => {
                let checked =
                    avro_arrow_schema(json).map(|a| (a.fields().len(), avro_columns(&schema, &a)));
                if let Ok((n, Err(why))) = checked {
                    self.err(
                        at,
                        &field,
                        format!("does not match avro_schema ({n} fields): {why}"),
                    );
                }
            }
            RecordFormat::Avro(_) | RecordFormat::Json | RecordFormat::DebeziumJson => {}
        }
        (format, schema)
    }

    /// The format of a sink at `prefix` writing `output` (`output_known`: its columns are
    /// known here).
    pub(super) fn sink_format(
        &mut self,
        s: &SinkSpec,
        prefix: &str,
        output: &Schema,
        output_known: bool,
    ) -> RecordFormat {
        let given = s.format.as_ref().map(|f| *f.get_ref()).unwrap_or_default();
        let at = s.format.as_ref().and_then(span);
        let field = format!("{prefix}.format");
        if given != Format::Json && s.connector != SinkConnector::Kafka {
            let why = "only the kafka connector takes a format other than json";
            self.err(at.clone(), &field, why);
        }
        let mut format = self.format(
            given,
            (&s.avro_schema, &s.schema_registry),
            prefix,
            FormatSide::Sink,
        );
        if !output_known {
            return format;
        }
        match &mut format {
            RecordFormat::String => self.one_column(output, DataType::Utf8, at, &field, "string"),
            RecordFormat::Raw => self.one_column(output, DataType::Binary, at, &field, "raw"),
            RecordFormat::Avro(a) => match &a.schema {
                Some(json) => {
                    let checked = avro_arrow_schema(json).and_then(|avro| {
                        let names = |s: &Schema| -> Vec<String> {
                            s.fields().iter().map(|f| f.name().clone()).collect()
                        };
                        match names(&avro) == names(output) {
                            true => avro_columns(&avro, output),
                            false => Err(format!(
                                "its fields are {:?}, the sink's columns {:?} (same names, same order)",
                                names(&avro),
                                names(output)
                            )),
                        }
                    });
                    if let Err(why) = checked {
                        let at = s.avro_schema.as_ref().and_then(span);
                        self.err(at, &format!("{prefix}.avro_schema"), why);
                    }
                }
                None => match derived_avro_schema(output) {
                    Ok(json) => a.schema = Some(json),
                    Err(why) => self.err(at, &field, why),
                },
            },
            RecordFormat::Json => {}
            RecordFormat::DebeziumJson => {
                let why = "debezium-json is a source format (change events in); a sink writes its changes as upserts and deletes by its key: use format = \"json\"";
                self.err(at, &field, why);
            }
        }
        format
    }

    /// The format named, with the Avro settings it takes (and only then).
    fn format(
        &mut self,
        given: Format,
        (avro_schema, registry): (
            &Option<Spanned<String>>,
            &Option<Spanned<SchemaRegistrySpec>>,
        ),
        prefix: &str,
        side: FormatSide,
    ) -> RecordFormat {
        if given != Format::Avro {
            let why = "applies to format = \"avro\" only";
            self.forbid(avro_schema, &format!("{prefix}.avro_schema"), why);
            self.forbid(registry, &format!("{prefix}.schema_registry"), why);
        }
        match given {
            Format::Json => RecordFormat::Json,
            Format::String => RecordFormat::String,
            Format::Raw => RecordFormat::Raw,
            Format::DebeziumJson => RecordFormat::DebeziumJson,
            Format::Avro => {
                let schema = avro_schema.as_ref().map(|text| {
                    let json = text.get_ref().trim().to_string();
                    if let Err(why) = avro_arrow_schema(&json) {
                        self.err(span(text), &format!("{prefix}.avro_schema"), why);
                    }
                    json
                });
                let registry = registry.as_ref().map(|r| self.registry(r, prefix));
                if side == FormatSide::Source && schema.is_some() == registry.is_some() {
                    let why = "format = \"avro\" takes either `avro_schema` (bare Avro records) or `schema_registry` (the Confluent wire format)";
                    let at = avro_schema.as_ref().and_then(span);
                    self.err(at, &format!("{prefix}.avro_schema"), why);
                }
                RecordFormat::Avro(AvroFormat { schema, registry })
            }
        }
    }

    fn registry(&mut self, r: &Spanned<SchemaRegistrySpec>, prefix: &str) -> SchemaRegistry {
        let r = r.get_ref();
        let field = format!("{prefix}.schema_registry");
        let url = r.url.get_ref().trim().trim_end_matches('/').to_string();
        if let Err(e) = url::Url::parse(&url)
            .map_err(|e| e.to_string())
            .and_then(|u| match u.scheme() {
                "http" | "https" => Ok(()),
                other => Err(format!("scheme `{other}`: use http or https")),
            })
        {
            self.err(span(&r.url), &format!("{field}.url"), e);
        }
        let subject = r.subject.get_ref().trim().to_string();
        if subject.is_empty() {
            self.err(
                span(&r.subject),
                &format!("{field}.subject"),
                "must not be empty",
            );
        }
        if r.password.is_some() && r.username.is_none() {
            let at = r.password.as_ref().and_then(span);
            self.err(
                at,
                &format!("{field}.username"),
                "missing: a password goes with a username",
            );
        }
        SchemaRegistry {
            url,
            subject,
            username: r.username.as_ref().map(|u| u.get_ref().clone()),
            password: r.password.as_ref().map(|p| p.get_ref().clone()),
        }
    }

    fn one_column(
        &mut self,
        schema: &Schema,
        ty: DataType,
        at: Option<std::ops::Range<usize>>,
        field: &str,
        format: &str,
    ) {
        let fits =
            matches!(schema.fields().iter().collect::<Vec<_>>()[..], [f] if *f.data_type() == ty);
        if !fits {
            let columns: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect();
            let why = format!(
                "format = \"{format}\" takes exactly one column of type {ty}; found [{}]",
                columns.join(", ")
            );
            self.err(at, field, why);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormatSide {
    Source,
    Sink,
}

fn value_schema(ty: DataType) -> Schema {
    Schema::new(vec![Arc::new(Field::new(VALUE_COLUMN, ty, false))])
}

#[cfg(test)]
mod tests {
    use crate::error::SpecError;
    use crate::plan::formats::{AvroFormat, RecordFormat};
    use crate::plan::{Overrides, plan_job};

    fn job(source: &str, sink: &str) -> String {
        format!(
            r#"name = "formats"
[source]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "in"
{source}

[sink]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "out"
{sink}
"#
        )
    }

    fn errors(text: &str) -> Vec<SpecError> {
        plan_job("job.toml", text, &Overrides::default())
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.0)
    }

    fn line_of(text: &str, needle: &str) -> Option<usize> {
        text.lines().position(|l| l.contains(needle)).map(|l| l + 1)
    }

    const CLICK: &str = r#"avro_schema = '{"type":"record","name":"C","fields":[{"name":"user_id","type":"string"},{"name":"n","type":"long"}]}'"#;

    #[test]
    fn string_and_avro_sources_default_their_schema() {
        let plan = plan_job(
            "job.toml",
            &job("format = \"string\"", "format = \"string\""),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(plan.sources[0].schema.field(0).name(), "value");
        let plan = plan_job(
            "job.toml",
            &job(&format!("format = \"avro\"\n{CLICK}"), "format = \"avro\""),
            &Overrides::default(),
        )
        .unwrap();
        let names: Vec<&String> = plan.sources[0]
            .schema
            .fields()
            .iter()
            .map(|f| f.name())
            .collect();
        assert_eq!(names, ["user_id", "n"]);
        let RecordFormat::Avro(AvroFormat {
            schema: Some(derived),
            ..
        }) = &plan.sinks[0].format
        else {
            panic!("the sink's Avro schema is derived from its columns");
        };
        assert!(derived.contains("user_id"), "{derived}");
    }

    #[test]
    fn format_problems_are_located() {
        let cases = [
            (
                job("format = \"string\"\nschema = { n = \"int\" }", ""),
                "source.schema",
                "schema =",
                "exactly one column",
            ),
            (
                job("format = \"raw\"", "format = \"string\""),
                "sink.format",
                "format = \"string\"",
                "exactly one column of type Utf8",
            ),
            (
                job(
                    &format!("format = \"avro\"\n{CLICK}\nschema = {{ user_id = \"int\" }}"),
                    "",
                ),
                "source.schema",
                "schema = {",
                "`user_id` is Utf8 in the Avro schema",
            ),
            (
                job("format = \"avro\"\navro_schema = \"{nope\"", ""),
                "source.avro_schema",
                "avro_schema",
                "not a usable Avro schema",
            ),
            (
                job(&format!("schema = {{ v = \"string\" }}\n{CLICK}"), ""),
                "source.avro_schema",
                "avro_schema",
                "format = \"avro\" only",
            ),
            (
                job(
                    "format = \"avro\"\nschema = { v = \"string\" }\nschema_registry = { url = \"ftp://r\", subject = \"s\" }",
                    "",
                ),
                "source.schema_registry.url",
                "schema_registry",
                "use http or https",
            ),
        ];
        for (text, field, on, says) in cases {
            let errs = errors(&text);
            let e = errs
                .iter()
                .find(|e| e.field == field)
                .unwrap_or_else(|| panic!("no {field} in {errs:?}"));
            assert!(e.message.contains(says), "{e:?}");
            assert_eq!(e.line, line_of(&text, on), "{e:?}");
        }
    }
}
