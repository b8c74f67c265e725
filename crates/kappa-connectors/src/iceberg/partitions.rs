//! Splitting rows by the table's partition spec: each row's partition value (every partition
//! field's transform — iceberg-rust's own — of its column's value), the rows of each value
//! together, and the directory under `data/` their files go to (`field=value/…`, Iceberg's
//! human form of each value, percent-encoded as Java's writers do). An unpartitioned table has
//! one group: all the rows.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{Date32Type, Int32Type, Int64Type, SchemaRef, TimestampMicrosecondType};
use iceberg::spec::{Datum, Literal, PartitionSpecRef, Struct, StructType, Transform};
use iceberg::table::Table;
use iceberg::transform::{BoxedTransformFunction, create_transform_function};
use kappa_job::plan::iceberg::IcebergType;
use kappa_job::plan::iceberg::partition::{IcebergPartition, PartitionTransform};
use kappa_runtime::TaskError;

use super::table::failed;

/// Iceberg's transform of a planned partition field.
pub(super) fn transform(p: &IcebergPartition) -> Transform {
    match p.transform {
        PartitionTransform::Identity => Transform::Identity,
        PartitionTransform::Year => Transform::Year,
        PartitionTransform::Month => Transform::Month,
        PartitionTransform::Day => Transform::Day,
        PartitionTransform::Hour => Transform::Hour,
        PartitionTransform::Bucket(n) => Transform::Bucket(n),
        PartitionTransform::Truncate(w) => Transform::Truncate(w),
    }
}

/// One partition field: the column of the rows it reads, that column's type, its transform.
struct Field {
    column: usize,
    source: IcebergType,
    function: BoxedTransformFunction,
}

/// The rows of one partition.
pub(super) struct Part {
    /// The directory under `data/` (empty: unpartitioned).
    pub dir: String,
    pub value: Struct,
    pub rows: RecordBatch,
}

/// Computes the partitions of rows as the table's default spec says.
pub(super) struct Partitioner {
    spec: PartitionSpecRef,
    partition_type: StructType,
    fields: Vec<Field>,
}

impl Partitioner {
    /// The partitioner of `table`'s default spec for rows of `file_schema` typed `columns`.
    pub fn new(
        table: &Table,
        name: &str,
        file_schema: &SchemaRef,
        columns: &[IcebergType],
    ) -> Result<Self, TaskError> {
        let metadata = table.metadata();
        let spec = metadata.default_partition_spec().clone();
        let schema = metadata.current_schema();
        let partition_type = spec
            .partition_type(schema)
            .map_err(|e| failed(&format!("the partition spec of `{name}`"), &e))?;
        let mut fields = Vec::with_capacity(spec.fields().len());
        for f in spec.fields() {
            let written = schema
                .field_by_id(f.source_id)
                .and_then(|s| file_schema.index_of(&s.name).ok().map(|i| (i, &s.name)));
            let Some((column, source_name)) = written else {
                return Err(TaskError::Data(format!(
                    "iceberg table `{name}` is partitioned by field `{}`, whose column the job does not write",
                    f.name
                )));
            };
            let source = columns[column];
            if matches!(
                source,
                IcebergType::Float | IcebergType::Double | IcebergType::Decimal { .. }
            ) {
                return Err(TaskError::Data(format!(
                    "iceberg table `{name}` is partitioned by `{source_name}`, a {source:?} column: Kappa writes partitions of integer, string, binary, boolean, date and timestamp columns only"
                )));
            }
            let function = create_transform_function(&f.transform)
                .map_err(|e| failed(&format!("partition field `{}` of `{name}`", f.name), &e))?;
            fields.push(Field {
                column,
                source,
                function,
            });
        }
        Ok(Self {
            spec,
            partition_type,
            fields,
        })
    }

    pub fn spec_id(&self) -> i32 {
        self.spec.spec_id()
    }

    /// The partition value of row `row` of `rows`.
    fn value(&self, rows: &RecordBatch, row: usize) -> Result<Struct, TaskError> {
        self.fields
            .iter()
            .map(|f| {
                let Some(datum) = datum(rows.column(f.column).as_ref(), row, f.source) else {
                    return Ok(None);
                };
                let value = f
                    .function
                    .transform_literal(&datum)
                    .map_err(|e| failed(&format!("partitioning the value {datum}"), &e))?;
                Ok(value.map(Literal::from))
            })
            .collect::<Result<Vec<_>, TaskError>>()
            .map(|values| values.into_iter().collect())
    }

    /// The directory of partition `value`: `field=value/…`.
    fn dir(&self, value: &Struct) -> String {
        self.spec
            .fields()
            .iter()
            .zip(self.partition_type.fields())
            .zip(value.iter())
            .map(|((f, t), v)| {
                let text = f.transform.to_human_string(&t.field_type, v);
                let encoded: String =
                    url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
                format!("{}={encoded}", f.name)
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// `rows` split by partition, in the order of their directories.
    pub fn split(&self, rows: &RecordBatch) -> Result<Vec<Part>, TaskError> {
        if self.fields.is_empty() {
            return Ok(vec![Part {
                dir: String::new(),
                value: Struct::empty(),
                rows: rows.clone(),
            }]);
        }
        let mut groups: BTreeMap<String, (Struct, Vec<u32>)> = BTreeMap::new();
        // Each partition value's directory, rendered once per batch rather than per row.
        let mut dirs: HashMap<Struct, String> = HashMap::new();
        for row in 0..rows.num_rows() {
            let value = self.value(rows, row)?;
            let dir = match dirs.get(&value) {
                Some(dir) => dir.clone(),
                None => {
                    let dir = self.dir(&value);
                    dirs.insert(value.clone(), dir.clone());
                    dir
                }
            };
            let index = u32::try_from(row)
                .map_err(|_| TaskError::Data("a batch of more than 4 billion rows".into()))?;
            groups
                .entry(dir)
                .or_insert_with(|| (value, Vec::new()))
                .1
                .push(index);
        }
        groups
            .into_iter()
            .map(|(dir, (value, indices))| {
                let rows = take_record_batch(rows, &UInt32Array::from(indices))
                    .map_err(|e| TaskError::Data(format!("the rows of partition {dir}: {e}")))?;
                Ok(Part { dir, value, rows })
            })
            .collect()
    }
}

/// The value of row `row` of `array` (a column as the data files hold it) as Iceberg's datum;
/// None when it is null (or of a type no partition reads).
fn datum(array: &dyn Array, row: usize, t: IcebergType) -> Option<Datum> {
    if array.is_null(row) {
        return None;
    }
    Some(match t {
        IcebergType::Boolean => Datum::bool(array.as_boolean_opt()?.value(row)),
        IcebergType::Int => Datum::int(array.as_primitive_opt::<Int32Type>()?.value(row)),
        IcebergType::Long => Datum::long(array.as_primitive_opt::<Int64Type>()?.value(row)),
        IcebergType::Date => Datum::date(array.as_primitive_opt::<Date32Type>()?.value(row)),
        IcebergType::Timestamp => Datum::timestamp_micros(
            array
                .as_primitive_opt::<TimestampMicrosecondType>()?
                .value(row),
        ),
        IcebergType::TimestampTz => Datum::timestamptz_micros(
            array
                .as_primitive_opt::<TimestampMicrosecondType>()?
                .value(row),
        ),
        IcebergType::String => Datum::string(array.as_string_opt::<i32>()?.value(row)),
        IcebergType::Binary => {
            Datum::binary(array.as_binary_opt::<i32>()?.value(row).iter().copied())
        }
        IcebergType::Float | IcebergType::Double | IcebergType::Decimal { .. } => return None,
    })
}
