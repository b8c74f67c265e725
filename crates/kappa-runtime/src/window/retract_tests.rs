//! An updating aggregate of a change stream against a computation by hand: random inserts,
//! updates and deletes of rows, fed in batches with a snapshot restored between, applied as
//! upserts and deletes by key to a table; the table must hold exactly the aggregates of the
//! rows still there, and keys without rows must be gone.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use kappa_job::plan::{WindowAssigner, WindowPlan, aggregate_type, change_field};
use kappa_job::sql::{compile_aggregate, compile_named};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::WindowOperator;
use crate::budget::StateBudget;
use crate::state::testing::MapState;

/// The change stream's records: key, time, value, then the change column.
fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        change_field(),
    ]))
}

/// count(*), count(v), sum(v), avg(v) by k, and the row count a change stream adds.
fn operator(aggregates: &[(&str, &str)]) -> Result<WindowOperator, crate::TaskError> {
    let s = input();
    let aggregates: Vec<_> = aggregates
        .iter()
        .map(|(name, text)| (name.to_string(), compile_aggregate(text, &s).unwrap()))
        .collect();
    let mut fields = vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("window_start", DataType::Int64, false),
        Field::new("window_end", DataType::Int64, false),
    ];
    for (name, call) in &aggregates {
        fields.push(Field::new(name, aggregate_type(call), true));
    }
    fields.push(change_field());
    let plan = WindowPlan {
        uid: "totals".into(),
        assigner: WindowAssigner::Global { ttl_ms: 0 },
        allowed_lateness_ms: 0,
        keys: vec![compile_named("k", &s).unwrap()],
        time_index: 1,
        aggregates,
        output_schema: Arc::new(Schema::new(fields)),
        late_output: None,
        retract: Some(3),
    };
    WindowOperator::new(&plan, 128, StateBudget::new(None).charge(), None)
}

const AGGREGATES: [(&str, &str); 5] = [
    ("n", "count(*)"),
    ("nv", "count(v)"),
    ("total", "sum(v)"),
    ("mean", "avg(v)"),
    ("_kappa_rows", "count(*)"),
];

/// A table's row: count(*), count(v), sum(v), avg(v).
type Totals = (i64, i64, Option<i64>, Option<f64>);

fn batch(changes: &[(String, Option<i64>, bool)], t: i64) -> RecordBatch {
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(StringArray::from_iter_values(changes.iter().map(|c| &c.0))),
            Arc::new(Int64Array::from(vec![t; changes.len()])),
            Arc::new(Int64Array::from_iter(changes.iter().map(|c| c.1))),
            Arc::new(BooleanArray::from_iter(changes.iter().map(|c| Some(c.2)))),
        ],
    )
    .unwrap()
}

/// Applies emitted rows to `table` as a sink does: a delete removes the key.
fn apply(table: &mut BTreeMap<String, Totals>, out: Option<RecordBatch>) {
    let Some(b) = out else { return };
    let keys = b.column(0).as_string::<i32>();
    let n = b.column(3).as_primitive::<Int64Type>();
    let nv = b.column(4).as_primitive::<Int64Type>();
    let total = b.column(5).as_primitive::<Int64Type>();
    let mean = b.column(6).as_primitive::<Float64Type>();
    let deleted = b.column(b.num_columns() - 1).as_boolean();
    for r in 0..b.num_rows() {
        let key = keys.value(r).to_string();
        if deleted.value(r) {
            table.remove(&key);
            continue;
        }
        let opt = |a: &Int64Array| (!a.is_null(r)).then(|| a.value(r));
        let mean = (!mean.is_null(r)).then(|| mean.value(r));
        table.insert(key, (n.value(r), nv.value(r), opt(total), mean));
    }
}

#[test]
fn retracted_aggregates_match_the_rows_left_through_a_restore() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    // The rows of the source table by id: (key, value).
    let mut rows: BTreeMap<u32, (String, Option<i64>)> = BTreeMap::new();
    let mut table = BTreeMap::new();
    let mut w = operator(&AGGREGATES).unwrap();
    let mut next_id = 0u32;
    for round in 0..40 {
        let mut changes = Vec::new();
        for _ in 0..rng.random_range(1..30) {
            let key = format!("k{}", rng.random_range(0..6));
            let value = rng.random_bool(0.8).then(|| rng.random_range(-50..50));
            let existing = rows
                .keys()
                .copied()
                .nth(rng.random_range(0..rows.len().max(1)));
            match (rng.random_range(0..3), existing) {
                // An update: the old row deleted, the new one inserted.
                (0, Some(id)) => {
                    let old = rows.insert(id, (key.clone(), value)).unwrap();
                    changes.push((old.0, old.1, true));
                    changes.push((key, value, false));
                }
                (1, Some(id)) => {
                    let old = rows.remove(&id).unwrap();
                    changes.push((old.0, old.1, true));
                }
                _ => {
                    rows.insert(next_id, (key.clone(), value));
                    next_id += 1;
                    changes.push((key, value, false));
                }
            }
        }
        apply(&mut table, w.process(&batch(&changes, round)).unwrap());
        if round == 20 {
            let mut state = MapState::default();
            w.snapshot(&mut state).unwrap();
            w = operator(&AGGREGATES).unwrap();
            w.restore(&state, 0..=127).unwrap();
        }
    }
    let mut expected: BTreeMap<String, Totals> = BTreeMap::new();
    for (key, value) in rows.values() {
        let e = expected.entry(key.clone()).or_insert((0, 0, None, None));
        e.0 += 1;
        if let Some(v) = value {
            e.1 += 1;
            e.2 = Some(e.2.unwrap_or(0) + v);
        }
    }
    for e in expected.values_mut() {
        e.3 = e.2.map(|s| s as f64 / e.1 as f64);
    }
    assert_eq!(table, expected, "seed {seed}");
    assert_eq!(
        w.groups_in_state(),
        expected.len(),
        "keys without rows are dropped"
    );
}

#[test]
fn a_key_whose_rows_are_all_deleted_is_a_delete_and_an_unknown_delete_changes_nothing() {
    let mut w = operator(&AGGREGATES).unwrap();
    let row = |k: &str, v: i64, delete: bool| (k.to_string(), Some(v), delete);
    let mut table = BTreeMap::new();
    apply(
        &mut table,
        w.process(&batch(&[row("a", 5, false), row("a", 7, false)], 1))
            .unwrap(),
    );
    assert_eq!(table["a"], (2, 2, Some(12), Some(6.0)));
    // A delete of a key never seen (its insert was before the job started) is ignored.
    assert!(
        w.process(&batch(&[row("z", 1, true)], 2))
            .unwrap()
            .is_none()
    );
    let out = w
        .process(&batch(&[row("a", 5, true), row("a", 7, true)], 3))
        .unwrap()
        .unwrap();
    assert_eq!(out.num_rows(), 1);
    let deleted = out.column(out.num_columns() - 1).as_boolean();
    assert!(deleted.value(0), "the key is deleted");
    assert_eq!(w.groups_in_state(), 0);
    // The key comes back with a new row.
    apply(&mut table, Some(out));
    apply(
        &mut table,
        w.process(&batch(&[row("a", 1, false)], 4)).unwrap(),
    );
    assert_eq!(table["a"], (1, 1, Some(1), Some(1.0)));
}

#[test]
fn aggregates_that_cannot_retract_are_refused() {
    let e = operator(&[("top", "max(v)"), ("_kappa_rows", "count(*)")])
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("`top` cannot undo a deleted row"),
        "{e}"
    );
    let e = operator(&[("n", "count(*)"), ("total", "sum(v)")])
        .err()
        .expect("refused");
    assert!(e.to_string().contains("does not count the rows"), "{e}");
}
