//! Writing `{column:<strftime>}` template parts for every row of a batch: a time column —
//! epoch milliseconds in an integer column, or a timestamp of any unit — as UTC date-times,
//! formatted with the template's strftime format (checked when the job was planned, see
//! [`kappa_job::time_format`]).

use std::fmt::Write;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};

use crate::ConnectorError;

/// A time column of a batch and the format its values are written with.
pub struct TimeColumn<'a> {
    /// None: a null, or a value out of chrono's range.
    times: Vec<Option<DateTime<Utc>>>,
    items: Vec<Item<'a>>,
}

impl<'a> TimeColumn<'a> {
    /// The values of `col` to be written with `format`.
    pub fn new(col: &dyn Array, format: &'a str) -> Result<Self, ConnectorError> {
        let items: Vec<Item<'a>> = StrftimeItems::new(format).collect();
        if items.iter().any(|i| matches!(i, Item::Error)) {
            return Err(ConnectorError::Format(format!(
                "`{format}` is not a strftime format"
            )));
        }
        Ok(Self {
            times: times(col)?,
            items,
        })
    }

    /// Writes the time of `row` to `out`; false when it has none (a null, out of range).
    pub fn write(&self, row: usize, out: &mut String) -> bool {
        match self.times.get(row).copied().flatten() {
            Some(t) => write!(out, "{}", t.format_with_items(self.items.iter())).is_ok(),
            None => false,
        }
    }
}

/// The values of a time column as UTC date-times; None for a null or a value out of range.
fn times(col: &dyn Array) -> Result<Vec<Option<DateTime<Utc>>>, ConnectorError> {
    let from: fn(i64) -> Option<DateTime<Utc>> = match col.data_type() {
        DataType::Int64 | DataType::Int32 | DataType::Timestamp(TimeUnit::Millisecond, _) => {
            DateTime::from_timestamp_millis
        }
        DataType::Timestamp(TimeUnit::Second, _) => |v| DateTime::from_timestamp(v, 0),
        DataType::Timestamp(TimeUnit::Microsecond, _) => DateTime::from_timestamp_micros,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => |v| Some(DateTime::from_timestamp_nanos(v)),
        t => {
            return Err(ConnectorError::Format(format!(
                "a time format applies to times, not to {t}"
            )));
        }
    };
    // A timestamp's values are UTC instants in its unit, whatever its zone.
    let raw = cast(col, &DataType::Int64).map_err(|e| ConnectorError::Format(e.to_string()))?;
    Ok(raw
        .as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.and_then(from))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, TimestampSecondArray};

    use super::*;

    #[test]
    fn times_of_any_unit_are_written_in_utc_and_nulls_are_none() {
        let ms = Int64Array::from(vec![Some(981_173_106_789), None]);
        let t = TimeColumn::new(&ms, "%Y-%m-%dT%H:%M").expect("a format");
        let mut out = String::new();
        assert!(t.write(0, &mut out));
        assert_eq!(out, "2001-02-03T04:05");
        assert!(!t.write(1, &mut String::new()), "a null has no time");
        let zoned = TimestampSecondArray::from(vec![981_173_106]).with_timezone("+05:00");
        let t = TimeColumn::new(&zoned, "%H").expect("a format");
        let mut out = String::new();
        assert!(t.write(0, &mut out));
        assert_eq!(out, "04", "UTC, not the column's zone");
        let text: Arc<dyn Array> = Arc::new(arrow::array::StringArray::from(vec!["x"]));
        assert!(TimeColumn::new(text.as_ref(), "%Y").is_err());
    }
}
