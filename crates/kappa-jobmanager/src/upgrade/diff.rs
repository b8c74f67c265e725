//! What an upgrade changes in a sink: its live rows (v1's) against the shadow's (v2's), row by
//! row key (a sink key names a key and its window, e.g. `{item_id}-{window_end}`). Rows are
//! equal, changed, only in v1 or only in v2; the largest changes come first: rows on one
//! side only, then changed rows by how far their numbers moved. Pure: the caller reads the
//! rows.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// How many changes a report lists.
pub const LARGEST: usize = 20;

/// One row that differs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RowChange {
    pub sink: String,
    pub key: String,
    /// v1's row (None: only v2 wrote it).
    #[schema(value_type = Option<Object>)]
    pub old: Option<Value>,
    /// v2's row (None: only v1 wrote it).
    #[schema(value_type = Option<Object>)]
    pub new: Option<Value>,
    /// How far its numbers moved: the sum of the absolute differences of the numeric fields
    /// both rows have (none for a row on one side only).
    pub magnitude: Option<f64>,
}

/// The comparison of one sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SinkDiff {
    pub sink: String,
    pub equal: u64,
    pub changed: u64,
    pub only_v1: u64,
    pub only_v2: u64,
    /// The largest changes, largest first.
    pub largest: Vec<RowChange>,
}

impl SinkDiff {
    pub fn differences(&self) -> u64 {
        self.changed + self.only_v1 + self.only_v2
    }
}

/// Compares the rows v1 and v2 wrote to sink `sink`; `each` gets every difference in key
/// order (for the full listing).
pub fn diff(
    sink: &str,
    v1: &BTreeMap<String, Value>,
    v2: &BTreeMap<String, Value>,
    mut each: impl FnMut(&RowChange),
) -> SinkDiff {
    let mut out = SinkDiff {
        sink: sink.to_string(),
        ..SinkDiff::default()
    };
    let mut keys: Vec<&String> = v1.keys().chain(v2.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let (old, new) = (v1.get(key), v2.get(key));
        match (old, new) {
            (Some(a), Some(b)) if a == b => {
                out.equal += 1;
                continue;
            }
            (Some(_), Some(_)) => out.changed += 1,
            (Some(_), None) => out.only_v1 += 1,
            _ => out.only_v2 += 1,
        }
        let change = RowChange {
            sink: sink.to_string(),
            key: key.clone(),
            old: old.cloned(),
            new: new.cloned(),
            magnitude: old.zip(new).map(|(a, b)| magnitude(a, b)),
        };
        each(&change);
        keep_largest(&mut out.largest, change);
    }
    out
}

/// Inserts `change` among the [`LARGEST`] largest, largest first (ties by key): a row on one
/// side only is larger than any change of a row.
fn keep_largest(largest: &mut Vec<RowChange>, change: RowChange) {
    let size = |c: &RowChange| c.magnitude.unwrap_or(f64::INFINITY);
    let at = largest.partition_point(|c| size(c) >= size(&change));
    if at < LARGEST {
        largest.insert(at, change);
        largest.truncate(LARGEST);
    }
}

/// The sum over the numeric fields both rows have of how far they moved.
fn magnitude(old: &Value, new: &Value) -> f64 {
    let numbers = |v: &Value| -> BTreeMap<String, f64> {
        match v {
            Value::Object(m) => m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect(),
            v => v.as_f64().map(|n| (String::new(), n)).into_iter().collect(),
        }
    };
    let (a, b) = (numbers(old), numbers(new));
    a.iter()
        .filter_map(|(f, x)| Some((x - b.get(f)?).abs()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(r: &[(&str, i64)]) -> BTreeMap<String, Value> {
        r.iter()
            .map(|(k, n)| (k.to_string(), json!({ "item_id": k, "clicks": n })))
            .collect()
    }

    #[test]
    fn rows_are_equal_changed_or_on_one_side_and_the_largest_come_first() {
        let v1 = rows(&[("a", 5), ("b", 7), ("c", 1), ("d", 9)]);
        let v2 = rows(&[("a", 5), ("b", 2), ("c", 4), ("e", 3)]);
        let mut listed = Vec::new();
        let d = diff("pg", &v1, &v2, |c| listed.push(c.key.clone()));
        assert_eq!(
            (d.equal, d.changed, d.only_v1, d.only_v2),
            (1, 2, 1, 1),
            "{d:?}"
        );
        assert_eq!(d.differences(), 4);
        assert_eq!(listed, ["b", "c", "d", "e"]);
        let order: Vec<(&str, Option<f64>)> = d
            .largest
            .iter()
            .map(|c| (c.key.as_str(), c.magnitude))
            .collect();
        assert_eq!(
            order,
            [("d", None), ("e", None), ("b", Some(5.0)), ("c", Some(3.0))]
        );
        assert_eq!(d.largest[1].old, None);
        assert_eq!(d.largest[0].new, None);
    }

    #[test]
    fn only_the_largest_twenty_are_kept() {
        let keys: Vec<String> = (0..50).map(|i| format!("k{i:02}")).collect();
        let v1: BTreeMap<String, Value> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), json!({ "n": i })))
            .collect();
        let v2: BTreeMap<String, Value> = keys
            .iter()
            .map(|k| (k.clone(), json!({ "n": 0 })))
            .collect();
        let d = diff("kafka", &v1, &v2, |_| {});
        assert_eq!((d.changed, d.equal), (49, 1));
        assert_eq!(d.largest.len(), LARGEST);
        assert_eq!(d.largest[0].key, "k49");
        assert_eq!(d.largest[LARGEST - 1].key, "k30");
    }
}
