//! A written Parquet file as an Iceberg data file: its path, row count and size, and per
//! column (by field id) its bytes, value and null counts and its lower and upper bounds, from
//! the footer the Parquet writer returns. Readers prune files by these bounds; a column whose
//! statistics are missing, or of a type whose bounds are not kept (binary, decimal), has none.

use std::collections::{HashMap, HashSet};

use arrow::datatypes::SchemaRef;
use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Struct};
use kappa_job::plan::iceberg::IcebergType;
use kappa_runtime::TaskError;
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::{Statistics, ValueStatistics};

/// The chunk's maximum (`upper`) or minimum.
fn end<T: Copy>(v: &ValueStatistics<T>, upper: bool) -> Option<T> {
    match upper {
        true => v.max_opt().copied(),
        false => v.min_opt().copied(),
    }
}

/// A column chunk's bound as the column's Iceberg value (None: not kept for this type).
fn bound(t: IcebergType, s: &Statistics, upper: bool) -> Option<Datum> {
    Some(match (t, s) {
        (IcebergType::Int, Statistics::Int32(v)) => Datum::int(end(v, upper)?),
        (IcebergType::Date, Statistics::Int32(v)) => Datum::date(end(v, upper)?),
        (IcebergType::Long, Statistics::Int64(v)) => Datum::long(end(v, upper)?),
        (IcebergType::Timestamp, Statistics::Int64(v)) => Datum::timestamp_micros(end(v, upper)?),
        (IcebergType::TimestampTz, Statistics::Int64(v)) => {
            Datum::timestamptz_micros(end(v, upper)?)
        }
        (IcebergType::Float, Statistics::Float(v)) => Datum::float(end(v, upper)?),
        (IcebergType::Double, Statistics::Double(v)) => Datum::double(end(v, upper)?),
        (IcebergType::Boolean, Statistics::Boolean(v)) => Datum::bool(end(v, upper)?),
        (IcebergType::String, Statistics::ByteArray(_)) => {
            let bytes = match upper {
                true => s.max_bytes_opt(),
                false => s.min_bytes_opt(),
            }?;
            Datum::string(std::str::from_utf8(bytes).ok()?)
        }
        _ => return None,
    })
}

/// Keeps the lower (or upper) of `current` and `new` in `bounds` under `id`.
fn widen(bounds: &mut HashMap<i32, Datum>, id: i32, new: Datum, upper: bool) {
    let replace = match bounds.get(&id) {
        None => true,
        Some(old) => match new.partial_cmp(old) {
            Some(std::cmp::Ordering::Less) => !upper,
            Some(std::cmp::Ordering::Greater) => upper,
            _ => false,
        },
    };
    if replace {
        bounds.insert(id, new);
    }
}

/// The data file at `path` (`size` bytes) whose footer is `meta`, written with `schema` (each
/// field carrying its id) and the Iceberg types `columns`, holding rows of partition `value`
/// of spec `spec_id`.
pub(super) fn describe(
    path: String,
    size: u64,
    meta: &ParquetMetaData,
    (schema, columns): (&SchemaRef, &[IcebergType]),
    (value, spec_id): (Struct, i32),
) -> Result<DataFile, TaskError> {
    let ids: Vec<i32> = schema
        .fields()
        .iter()
        .map(|f| {
            f.metadata()
                .get(PARQUET_FIELD_ID_META_KEY)
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| TaskError::Data(format!("column `{}` has no field id", f.name())))
        })
        .collect::<Result<_, _>>()?;
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    let mut values: HashMap<i32, u64> = HashMap::new();
    let mut nulls: HashMap<i32, u64> = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    // Columns some chunk of which has no statistics (no null count, no bounds) or values
    // without bounds.
    let mut unknown: HashSet<i32> = HashSet::new();
    let mut unbounded: HashSet<i32> = HashSet::new();
    let mut rows: u64 = 0;
    let mut offsets = Vec::new();
    for group in meta.row_groups() {
        rows += u64::try_from(group.num_rows()).unwrap_or(0);
        offsets.extend(group.file_offset());
        for ((chunk, id), t) in group.columns().iter().zip(&ids).zip(columns) {
            *sizes.entry(*id).or_default() += u64::try_from(chunk.compressed_size()).unwrap_or(0);
            *values.entry(*id).or_default() += u64::try_from(chunk.num_values()).unwrap_or(0);
            let Some(stats) = chunk.statistics() else {
                unknown.insert(*id);
                continue;
            };
            match stats.null_count_opt() {
                Some(n) => *nulls.entry(*id).or_default() += n,
                None => {
                    unknown.insert(*id);
                }
            }
            let all_null =
                stats.null_count_opt() == Some(u64::try_from(chunk.num_values()).unwrap_or(0));
            match (bound(*t, stats, false), bound(*t, stats, true)) {
                (Some(low), Some(high)) => {
                    widen(&mut lower, *id, low, false);
                    widen(&mut upper, *id, high, true);
                }
                // Nulls do not move bounds; a chunk with values but no bounds leaves the file
                // without them.
                _ if all_null => {}
                _ => {
                    unbounded.insert(*id);
                }
            }
        }
    }
    for id in &unknown {
        nulls.remove(id);
    }
    for id in unknown.union(&unbounded) {
        lower.remove(id);
        upper.remove(id);
    }
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(path.clone())
        .file_format(DataFileFormat::Parquet)
        .partition(value)
        .partition_spec_id(spec_id)
        .record_count(rows)
        .file_size_in_bytes(size)
        .column_sizes(sizes)
        .value_counts(values)
        .null_value_counts(nulls)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(offsets))
        .build()
        .map_err(|e| TaskError::Data(format!("describing iceberg data file {path}: {e}")))
}
