//! Planning the parquet sink: its location (an `s3://bucket/prefix` URI, a `file://` URI or
//! an absolute directory), row-group and file sizes, the partition template checked against
//! the output columns, and its delivery (exactly-once by default; both guarantees close the
//! files at checkpoints, so checkpoints must be on). Every problem is located.

use arrow::datatypes::SchemaRef;
use toml::Spanned;

use super::{Planner, span};
use crate::confine::{Place, parse_location};
use crate::path_template::PathTemplate;
use crate::spec::{Delivery, HumanSize, ParquetCompression, SinkSpec};

/// Bytes of encoded data after which a row group ends, unless `row_group_size` says.
pub const DEFAULT_ROW_GROUP_BYTES: u64 = 128 << 20;

/// Bytes after which a file is closed before the next checkpoint, unless `file_size` says.
pub const DEFAULT_FILE_BYTES: u64 = 512 << 20;

/// How Parquet files are written (by the parquet and the iceberg sinks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetFiles {
    pub row_group_bytes: u64,
    pub file_bytes: u64,
    pub compression: ParquetCompression,
}

/// Where and how a parquet sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetSinkPlan {
    /// `s3://bucket/prefix`, `file:///dir` or `/dir`, as written.
    pub location: String,
    pub files: ParquetFiles,
    /// The directory of each row under the location; None: all files at the top.
    pub partition_by: Option<PathTemplate>,
}

impl Planner<'_> {
    /// Refuses the parquet settings on a sink of another connector (the iceberg sink takes
    /// them all).
    pub(super) fn forbid_parquet_settings(&mut self, s: &SinkSpec, prefix: &str) {
        let why =
            |field: &str| format!("`{field}` applies to the parquet and iceberg connectors only");
        self.forbid(
            &s.row_group_size,
            &format!("{prefix}.row_group_size"),
            &why("row_group_size"),
        );
        self.forbid(
            &s.file_size,
            &format!("{prefix}.file_size"),
            &why("file_size"),
        );
        self.forbid(
            &s.compression,
            &format!("{prefix}.compression"),
            &why("compression"),
        );
        self.forbid(
            &s.partition_by,
            &format!("{prefix}.partition_by"),
            &why("partition_by"),
        );
    }

    /// The required `path` of a sink writing to object storage: `s3://bucket/prefix`,
    /// `file:///dir` or an absolute directory (`missing` says why it is needed).
    pub(super) fn store_path(&mut self, s: &SinkSpec, prefix: &str, missing: &str) -> String {
        let location = self.required(&s.path, &format!("{prefix}.path"), missing);
        if let Some(p) = &s.path {
            let bad = match parse_location(location.as_str()) {
                Err(why) => Some(why),
                Ok(Place::Dir(dir)) if !dir.is_absolute() => {
                    Some("a directory must be absolute (or write s3://bucket/prefix)".into())
                }
                Ok(_) => None,
            };
            if let Some(why) = bad.filter(|_| !location.is_empty()) {
                self.err(span(p), &format!("{prefix}.path"), why);
            }
        }
        location
    }

    /// The file settings of a parquet or iceberg sink.
    pub(super) fn parquet_files(&mut self, s: &SinkSpec, prefix: &str) -> ParquetFiles {
        ParquetFiles {
            row_group_bytes: self.size(
                s.row_group_size.as_ref(),
                &format!("{prefix}.row_group_size"),
                DEFAULT_ROW_GROUP_BYTES,
            ),
            file_bytes: self.size(
                s.file_size.as_ref(),
                &format!("{prefix}.file_size"),
                DEFAULT_FILE_BYTES,
            ),
            compression: s
                .compression
                .as_ref()
                .map(|c| *c.get_ref())
                .unwrap_or_default(),
        }
    }

    /// The parquet sink of `s` at `prefix`, writing rows of `output` (known: not from SQL
    /// whose columns failed to plan).
    pub(super) fn parquet_sink(
        &mut self,
        s: &SinkSpec,
        prefix: &str,
        output: &SchemaRef,
        output_known: bool,
    ) -> ParquetSinkPlan {
        self.forbid(
            &s.key,
            &format!("{prefix}.key"),
            "the parquet sink appends rows: `key` applies to the kafka, postgres and file connectors only",
        );
        let location = self.store_path(
            s,
            prefix,
            "the parquet connector needs where to write: \"s3://bucket/prefix\", \"file:///dir\" or an absolute directory",
        );
        let files = self.parquet_files(s, prefix);
        let partition_by =
            s.partition_by.as_ref().filter(|_| output_known).and_then(
                |t| match PathTemplate::parse(t.get_ref(), output) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.err(span(t), &format!("{prefix}.partition_by"), e);
                        None
                    }
                },
            );
        ParquetSinkPlan {
            location,
            files,
            partition_by,
        }
    }

    /// A size setting: more than nothing, `default` when not given.
    fn size(&mut self, v: Option<&Spanned<HumanSize>>, field: &str, default: u64) -> u64 {
        match v {
            Some(s) if s.get_ref().0 == 0 => {
                self.err(span(s), field, "must be more than 0 bytes");
                default
            }
            Some(s) => s.get_ref().0,
            None => default,
        }
    }

    /// The parquet sink's delivery: exactly-once unless `delivery` says at-least-once; either
    /// closes its files at checkpoints.
    pub(super) fn parquet_delivery(
        &mut self,
        s: &SinkSpec,
        prefix: &str,
        checkpoints: bool,
    ) -> Delivery {
        let delivery = s
            .delivery
            .as_ref()
            .map_or(Delivery::ExactlyOnce, |d| *d.get_ref());
        let at = s.delivery.as_ref().and_then(span);
        let field = format!("{prefix}.delivery");
        if delivery == Delivery::None {
            self.err(
                at.clone(),
                &field,
                "a parquet file is readable once it is closed, at a checkpoint: use exactly-once (the default) or at-least-once",
            );
        }
        if !checkpoints {
            self.err(
                at,
                &field,
                "the parquet sink closes its files at checkpoints (and commits them when they complete, exactly-once): checkpoints are off ([checkpoints] enabled = false)",
            );
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::test_jobs::{REFERENCE, errors, line_of, located, with_sink};
    use crate::plan::*;
    use crate::spec::ParquetCompression;

    #[test]
    fn a_parquet_sink_plans_with_defaults_and_exactly_once() {
        let text = with_sink(
            "connector = \"parquet\"\npath = \"s3://lake/clicks\"\npartition_by = \"dt={window_start:%Y-%m-%d}\"\nrow_group_size = \"1MiB\"",
        );
        let plan = plan_job("job.toml", &text, &Overrides::default()).expect("plans");
        let SinkKind::Parquet(p) = &plan.sinks[0].kind else {
            panic!("{:?}", plan.sinks[0].kind);
        };
        assert_eq!(p.location, "s3://lake/clicks");
        assert_eq!(
            (p.files.row_group_bytes, p.files.file_bytes),
            (1 << 20, 512 << 20)
        );
        assert_eq!(p.files.compression, ParquetCompression::Zstd);
        assert_eq!(plan.sinks[0].delivery, Delivery::ExactlyOnce);
        let graph = plan.graph().to_string();
        assert!(
            graph.contains("parquet files `s3://lake/clicks/dt={window_start:%Y-%m-%d}/part-"),
            "{graph}"
        );
    }

    #[test]
    fn parquet_settings_are_checked_and_located() {
        let text = with_sink(
            "connector = \"parquet\"\npath = \"lake\"\npartition_by = \"{item_id}\"\nfile_size = \"0\"\nkey = \"{item_id}\"\ndelivery = \"none\"",
        );
        let found = errors(&text);
        let line = |start: &str| line_of(&text, start);
        assert_eq!(
            located(&found),
            [
                ("sink.key", line("key =")),
                ("sink.path", line("path =")),
                ("sink.file_size", line("file_size =")),
                ("sink.partition_by", line("partition_by =")),
                ("sink.delivery", line("delivery =")),
            ],
            "{found:?}"
        );
        assert!(found[1].message.contains("absolute"), "{found:?}");
        assert!(found[3].message.contains("literal text"), "{found:?}");
        // Parquet settings elsewhere, and a parquet sink without checkpoints.
        let text = REFERENCE.to_string() + "partition_by = \"dt={window_start}\"\n";
        assert_eq!(errors(&text)[0].field, "sink.partition_by");
        let text = with_sink("connector = \"parquet\"\npath = \"/lake\"")
            + "\n[checkpoints]\nenabled = false\n";
        let e = errors(&text);
        assert!(
            e[0].field == "sink.delivery" && e[0].message.contains("checkpoints"),
            "{e:?}"
        );
    }
}
