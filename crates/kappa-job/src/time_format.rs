//! `{column:<strftime>}` in templates (index names, partition directories): a time column — a
//! timestamp, or epoch milliseconds in an integer column — written in UTC with a strftime
//! format. A format is checked when the job is planned, by what it writes for a sample time
//! whose fields all differ (names, padding), so that the caller can check that text too.

use std::fmt::Write;

use arrow::datatypes::DataType;
use chrono::DateTime;
use chrono::format::{Item, StrftimeItems};

/// 2001-02-03T04:05:06.789Z.
const SAMPLE_TIME_MS: i64 = 981_173_106_789;

/// Whether a column of type `t` holds times a format applies to.
pub fn is_time(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Int64 | DataType::Int32
    )
}

/// What `format` writes for the sample time; None when it is no strftime format.
pub fn sample(format: &str) -> Option<String> {
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if format.is_empty() || items.iter().any(|i| matches!(i, Item::Error)) {
        return None;
    }
    let time = DateTime::from_timestamp_millis(SAMPLE_TIME_MS)?;
    let mut text = String::new();
    write!(text, "{}", time.format_with_items(items.iter())).ok()?;
    Some(text)
}

/// Checks `format` for column `name` of type `t`; what it writes for the sample time.
pub fn check(format: &str, name: &str, t: &DataType) -> Result<String, String> {
    if !is_time(t) {
        return Err(format!(
            "column `{name}` is {t}: a format applies to timestamps and epoch milliseconds (integers) only"
        ));
    }
    sample(format).ok_or_else(|| {
        format!("`{format}` of column `{name}` is not a strftime format (e.g. %Y-%m-%d)")
    })
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::TimeUnit;

    use super::*;

    #[test]
    fn a_format_is_checked_by_what_it_writes() {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        assert_eq!(check("%Y-%m-%d", "t", &ts).unwrap(), "2001-02-03");
        assert_eq!(
            check("%B %e", "t", &DataType::Int64).unwrap(),
            "February  3"
        );
        assert!(
            check("%Q", "t", &ts)
                .unwrap_err()
                .contains("not a strftime")
        );
        assert!(check("", "t", &ts).is_err());
        let e = check("%Y", "item", &DataType::Utf8).unwrap_err();
        assert!(e.contains("`item` is Utf8"), "{e}");
    }
}
