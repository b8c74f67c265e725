//! `to_char(timestamp, 'format')` with the format parsed once per batch: DataFusion's
//! `to_char` hands the format to chrono for every value, which re-parses it each time (15 %
//! of Nexmark q15's CPU). Timestamps without a time zone and a constant, valid format take
//! this path; everything else goes to DataFusion's function, whose results this one equals.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::temporal_conversions::as_datetime;
use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{
    ArrowTimestampType, DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use chrono::format::{Item, StrftimeItems};
use datafusion_common::{Result, ScalarValue};
use datafusion_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// DataFusion's `to_char`, with the fast path in front.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ToChar {
    inner: Arc<ScalarUDF>,
}

impl ToChar {
    pub(crate) fn wrapping(inner: Arc<ScalarUDF>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { inner })
    }
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [
            ColumnarValue::Array(times),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(f))),
        ] = args.args.as_slice()
            && let Some(formatted) = fast(times, f)
        {
            return Ok(ColumnarValue::Array(formatted));
        }
        self.inner.invoke_with_args(args)
    }
}

/// The formatted timestamps, or None where DataFusion's function must answer (another type,
/// a time zone, an invalid format, a value chrono cannot represent).
fn fast(times: &ArrayRef, format: &str) -> Option<ArrayRef> {
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return None;
    }
    match times.data_type() {
        DataType::Timestamp(unit, None) => match unit {
            TimeUnit::Second => formatted::<TimestampSecondType>(times, &items),
            TimeUnit::Millisecond => formatted::<TimestampMillisecondType>(times, &items),
            TimeUnit::Microsecond => formatted::<TimestampMicrosecondType>(times, &items),
            TimeUnit::Nanosecond => formatted::<TimestampNanosecondType>(times, &items),
        },
        _ => None,
    }
}

fn formatted<T: ArrowTimestampType>(times: &ArrayRef, items: &[Item<'_>]) -> Option<ArrayRef> {
    let values = times.as_primitive_opt::<T>()?;
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    for v in values.iter() {
        match v {
            None => out.append_null(),
            Some(v) => {
                let time = as_datetime::<T>(v)?;
                write!(out, "{}", time.format_with_items(items.iter())).ok()?;
                out.append_value("");
            }
        }
    }
    Some(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::Field;
    use datafusion_common::config::ConfigOptions;

    fn call(f: &ScalarUDF, times: ArrayRef, format: &str) -> Result<ArrayRef> {
        let args = vec![
            ColumnarValue::Array(Arc::clone(&times)),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(format.into()))),
        ];
        let arg_fields = vec![
            Arc::new(Field::new("t", times.data_type().clone(), true)),
            Arc::new(Field::new("f", DataType::Utf8, true)),
        ];
        let out = f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: times.len(),
            return_field: Arc::new(Field::new("out", DataType::Utf8, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })?;
        out.into_array(times.len())
    }

    #[test]
    fn the_fast_path_formats_as_datafusion_does_and_leaves_the_rest_to_it() {
        let inner = datafusion_functions::datetime::to_char();
        let fast = ToChar::wrapping(Arc::clone(&inner));
        let times: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
            Some(0),
            None,
            Some(1_732_500_123_456),
            Some(-86_400_001),
            Some(4_102_444_800_000),
        ]));
        for format in [
            "%Y-%m-%d",
            "%Y-%m-%d %H:%M:%S%.3f",
            "day %j of %Y, %A %B",
            "%s %%",
            "no specifier",
        ] {
            let ours = call(&fast, Arc::clone(&times), format).unwrap();
            let theirs = call(&inner, Arc::clone(&times), format).unwrap();
            assert_eq!(
                ours.as_string::<i32>().iter().collect::<Vec<_>>(),
                theirs.as_string::<i32>().iter().collect::<Vec<_>>(),
                "{format}"
            );
        }
        assert!(fast_path_taken(&times, "%Y"), "a timestamp without a zone");
        assert!(
            !fast_path_taken(&times, "%Q"),
            "an invalid format goes to DataFusion"
        );
        let zoned: ArrayRef =
            Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("+02:00"));
        assert!(
            !fast_path_taken(&zoned, "%Y"),
            "a time zone goes to DataFusion"
        );
        // And DataFusion's answer for it stands.
        let shifted = call(&fast, zoned, "%H").unwrap();
        assert_eq!(shifted.as_string::<i32>().value(0), "02");
    }

    fn fast_path_taken(times: &ArrayRef, format: &str) -> bool {
        fast(times, format).is_some()
    }
}
