//! Tests of the ranking operator against results computed by hand, and of its state.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};
use kappa_job::keygroup::{key_group_of, key_group_range};
use kappa_job::plan::{RankKind, RankOrder, RankPlan, WindowAssigner};
use kappa_job::sql::compile_named;

use super::RankOperator;
use crate::budget::StateBudget;
use crate::state::KeyedState;
use crate::state::testing::MapState;

/// (item, start, end, clicks) rows of a windowed count, or (user, item, time) clicks.
fn schema(top: bool) -> SchemaRef {
    let fields = match top {
        true => vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("window_start", DataType::Int64, false),
            Field::new("window_end", DataType::Int64, false),
            Field::new("clicks", DataType::Int64, true),
        ],
        false => vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("item_id", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
        ],
    };
    Arc::new(Schema::new(fields))
}

fn plan(kind: RankKind) -> RankPlan {
    let top = matches!(kind, RankKind::TopN { .. });
    let input = schema(top);
    let col = |c: &str| compile_named(c, &input).unwrap();
    let (partition, order) = match top {
        true => (
            vec![col("window_start"), col("window_end")],
            ("clicks", true),
        ),
        false => (vec![col("user_id")], ("ts", false)),
    };
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("rownum", DataType::UInt64, false));
    RankPlan {
        uid: "r".into(),
        kind,
        partition,
        assign: None,
        order: vec![RankOrder {
            expr: col(order.0),
            descending: order.1,
            nulls_first: true,
        }],
        input_schema: input,
        output_schema: Arc::new(Schema::new(fields)),
    }
}

const TOP2: RankKind = RankKind::TopN {
    limit: 2,
    end_index: 2,
};

fn operator(kind: RankKind) -> RankOperator {
    RankOperator::new(&plan(kind), 128, StateBudget::new(None).charge()).unwrap()
}

/// A batch of (item, window end, clicks) in windows of 10.
fn counts(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let columns = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as _,
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1 - 10))) as _,
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))) as _,
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))) as _,
    ];
    RecordBatch::try_new(schema(true), columns).unwrap()
}

/// A batch of (user, item, time) clicks.
fn clicks(rows: &[(&str, &str, i64)]) -> RecordBatch {
    let columns = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as _,
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))) as _,
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))) as _,
    ];
    RecordBatch::try_new(schema(false), columns).unwrap()
}

/// Emitted rows as (first column, second, third and last (the row number) as text).
fn rows(out: Option<RecordBatch>) -> Vec<String> {
    let Some(b) = out else {
        return Vec::new();
    };
    let n = b.num_columns();
    (0..b.num_rows())
        .map(|i| {
            let first = b.column(0).as_string::<i32>().value(i);
            let last = b.column(n - 1).as_primitive::<UInt64Type>().value(i);
            let other = match n {
                5 => b.column(3).as_primitive::<Int64Type>().value(i).to_string(),
                _ => b.column(1).as_string::<i32>().value(i).to_string(),
            };
            format!("{first} {other} #{last}")
        })
        .collect()
}

#[test]
fn the_top_rows_of_each_window_fire_at_its_end_with_ties_broken_by_the_other_columns() {
    let mut op = operator(TOP2);
    let out = op
        .process(&counts(&[("a", 10, 5), ("c", 10, 7), ("d", 20, 1)]))
        .unwrap();
    assert!(out.is_none());
    assert!(
        op.process(&counts(&[("b", 10, 7), ("e", 10, 1)]))
            .unwrap()
            .is_none()
    );
    assert!(op.advance(9).unwrap().is_none(), "the window ends at 10");
    assert_eq!(rows(op.advance(10).unwrap()), ["b 7 #1", "c 7 #2"]);
    assert_eq!(op.partitions_in_state(), 1, "the fired window is dropped");
    assert_eq!(rows(op.advance(25).unwrap()), ["d 1 #1"]);
    assert_eq!(op.partitions_in_state(), 0);
}

#[test]
fn a_batch_without_the_input_columns_is_an_error() {
    let mut op = operator(TOP2);
    let e = op.process(&clicks(&[("u1", "x", 5)])).unwrap_err();
    assert!(
        e.to_string()
            .contains("a batch of 3 columns where its input has 4"),
        "{e}"
    );
    let mut p = plan(TOP2);
    p.kind = RankKind::TopN {
        limit: 2,
        end_index: 9,
    };
    let e = RankOperator::new(&p, 128, StateBudget::new(None).charge())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("(9 of 4, None of 4)"), "{e}");
    let mut p = plan(TOP2);
    p.partition.clear();
    let e = RankOperator::new(&p, 128, StateBudget::new(None).charge())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("no PARTITION BY key"), "{e}");
}

#[test]
fn rows_of_a_window_the_watermark_passed_are_late() {
    let mut op = operator(TOP2);
    op.advance(10).unwrap();
    assert!(
        op.process(&counts(&[("a", 10, 5), ("b", 5, 1)]))
            .unwrap()
            .is_none()
    );
    assert_eq!(op.take_late(), 2);
    assert!(op.advance(i64::MAX).unwrap().is_none());
    assert_eq!(op.partitions_in_state(), 0);
}

/// Runs `batches` through an operator, snapshotting after `cut` of them, and again through
/// two operators restored (at parallelism 2) from that snapshot: both give the same rows.
fn restores_alike(kind: RankKind, batches: &[RecordBatch], cut: usize, first_watermark: i64) {
    let mut whole = operator(kind);
    let mut expected = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        expected.extend(rows(whole.process(b).unwrap()));
        if i + 1 == cut {
            expected.extend(rows(whole.advance(first_watermark).unwrap()));
        }
    }
    expected.extend(rows(whole.advance(i64::MAX).unwrap()));

    let mut first = operator(kind);
    let mut got = Vec::new();
    for b in &batches[..cut] {
        got.extend(rows(first.process(b).unwrap()));
    }
    let mut state = MapState::default();
    first.snapshot(&mut state).unwrap();
    got.extend(rows(first.advance(first_watermark).unwrap()));
    first.snapshot(&mut state).unwrap();
    let p = plan(kind);
    let keys = crate::keyed::KeyEncoder::new(&p.partition).unwrap();
    for subtask in 0..2 {
        let range = key_group_range(subtask, 128, 2);
        let mut restored = operator(kind);
        restored.restore(&state, range.clone()).unwrap();
        restored.advance(first_watermark).unwrap();
        for b in &batches[cut..] {
            let mine: Vec<u32> = (0..b.num_rows() as u32)
                .filter(|&i| {
                    let k = keys.rows(b).unwrap();
                    range.contains(&key_group_of(k.row(i as usize).as_ref(), 128))
                })
                .collect();
            let part = arrow::compute::take_record_batch(b, &arrow::array::UInt32Array::from(mine))
                .unwrap();
            got.extend(rows(restored.process(&part).unwrap()));
        }
        got.extend(rows(restored.advance(i64::MAX).unwrap()));
    }
    assert!(expected.len() >= 5, "{expected:?}");
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn a_snapshot_restored_at_another_parallelism_continues_alike() {
    let items = ["a", "b", "c", "d", "e", "f"];
    let batches: Vec<RecordBatch> = (0..8)
        .map(|b| {
            let rows: Vec<(&str, i64, i64)> = (0..30)
                .map(|i| {
                    (
                        items[(i + b) % 6],
                        10 * (1 + (i as i64 % 10)),
                        (i * 7 % 5) as i64,
                    )
                })
                .collect();
            counts(&rows)
        })
        .collect();
    restores_alike(TOP2, &batches, 4, 40);
    let users = ["u1", "u2", "u3", "u4", "u5"];
    let batches: Vec<RecordBatch> = (0..8)
        .map(|b| {
            let rows: Vec<(&str, &str, i64)> = (0..20)
                .map(|i| {
                    (
                        users[(i * 3 + b) % 5],
                        items[i % 6],
                        ((i * 13 + b * 7) % 50) as i64,
                    )
                })
                .collect();
            clicks(&rows)
        })
        .collect();
    let dedup = RankKind::KeepFirst {
        time_index: 2,
        ttl_ms: 0,
    };
    restores_alike(dedup, &batches, 4, 20);
}

#[test]
fn corrupt_state_fails_the_restore_with_what_did_not_fit() {
    let mut op = operator(TOP2);
    op.process(&counts(&[("a", 10, 5), ("b", 10, 3)])).unwrap();
    let mut state = MapState::default();
    op.snapshot(&mut state).unwrap();
    let ((kg, key), value) = state.committed.iter().next().unwrap();
    let (kg, key, value) = (*kg, key.clone(), value.clone());
    let mut bad_utf8 = value.clone();
    let at = bad_utf8.iter().position(|b| *b == b'a').unwrap();
    bad_utf8[at] = 0xff;
    let mut many = value.clone();
    many[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (value[..value.len() - 1].to_vec(), "ends after"),
        ([value.as_slice(), &[0]].concat(), "left over"),
        ([&[7u8][..], &value[1..]].concat(), "flags 7"),
        // Only a deduplication's keys are ever emitted.
        ([&[1u8][..], &value[1..]].concat(), "flags 1"),
        (many, "rows"),
        (bad_utf8, "not UTF-8"),
        (Vec::new(), "ends after 0 bytes"),
    ];
    for (bytes, want) in cases {
        let mut state = MapState::default();
        state.put(kg, &key, &bytes);
        state.commit().unwrap();
        let e = operator(TOP2).restore(&state, 0..=127).unwrap_err();
        assert!(e.0.contains(want), "{want:?} not in {e}");
        assert!(e.0.contains("ranking `r`"), "{e}");
    }
    // A deduplication's key holds one pending row, or none once emitted.
    let dedup = RankKind::KeepFirst {
        time_index: 2,
        ttl_ms: 0,
    };
    let saved = |flags: u8, count: u32| {
        let mut v = vec![flags];
        v.extend_from_slice(&5i64.to_le_bytes());
        v.extend_from_slice(&count.to_le_bytes());
        v
    };
    for (bytes, want) in [
        (saved(0, 0), "no rows and nothing emitted"),
        (saved(1, 1), "flags 1 with 1 rows"),
        (saved(0, 2), "flags 0 with 2 rows"),
    ] {
        let mut state = MapState::default();
        state.put(kg, &key, &bytes);
        state.commit().unwrap();
        let e = operator(dedup).restore(&state, 0..=127).unwrap_err();
        assert!(e.0.contains(want), "{want:?} not in {e}");
    }
    let mut state = MapState::default();
    state.put(kg, &key, &saved(1, 0));
    state.commit().unwrap();
    assert_eq!(operator(dedup).restore(&state, 0..=127).unwrap(), 1);
}

#[test]
fn dedup_keeps_the_earliest_row_of_each_key_across_out_of_order_input() {
    let mut op = operator(RankKind::KeepFirst {
        time_index: 2,
        ttl_ms: 0,
    });
    let b = clicks(&[
        ("u1", "x", 5),
        ("u1", "y", 3),
        ("u2", "z", 7),
        ("u1", "v", 3),
    ]);
    assert!(op.process(&b).unwrap().is_none());
    // At the same time, the smaller row (by the other columns) is first.
    assert_eq!(rows(op.advance(4).unwrap()), ["u1 v #1"]);
    assert!(op.process(&clicks(&[("u1", "w", 1)])).unwrap().is_none());
    assert_eq!(rows(op.advance(10).unwrap()), ["u2 z #1"]);
    // A key never seen, behind the watermark: nothing earlier can come, emitted at once.
    let late = op
        .process(&clicks(&[("u2", "q", 2), ("u3", "r", 1)]))
        .unwrap();
    assert_eq!(rows(late), ["u3 r #1"]);
    assert!(op.advance(i64::MAX).unwrap().is_none());
    assert_eq!(op.partitions_in_state(), 3, "emitted keys are remembered");
}

#[test]
fn dedup_forgets_a_key_the_state_ttl_after_its_row_and_emits_it_again() {
    let mut op = operator(RankKind::KeepFirst {
        time_index: 2,
        ttl_ms: 10,
    });
    op.process(&clicks(&[("u1", "x", 3), ("u2", "y", 6)]))
        .unwrap();
    assert_eq!(rows(op.advance(6).unwrap()), ["u1 x #1", "u2 y #1"]);
    assert_eq!(op.partitions_in_state(), 2);
    assert!(op.advance(13).unwrap().is_none());
    assert_eq!(op.partitions_in_state(), 1, "u1 is 10 behind the watermark");
    op.process(&clicks(&[("u1", "z", 20), ("u2", "w", 20)]))
        .unwrap();
    assert_eq!(rows(op.advance(20).unwrap()), ["u1 z #1"]);
}

#[test]
fn state_beyond_the_job_limit_fails_the_subtask_naming_the_ranking() {
    let budget = StateBudget::new(Some(400));
    let mut op = RankOperator::new(&plan(TOP2), 128, budget.charge()).unwrap();
    let rows: Vec<(&str, i64, i64)> = (1..20).map(|i| ("a", i * 10, i)).collect();
    let e = op.process(&counts(&rows)).unwrap_err();
    assert!(e.to_string().contains("ranking `r` holds"), "{e}");
}

#[test]
fn a_top_n_of_rows_assigns_their_windows_and_keeps_them_in_its_state() {
    // The rows of HOP(clicks, ts, 10, 20): (user, item, ts) ranked by item DESC per window.
    let input = schema(false);
    let mut p = plan(RankKind::TopN {
        limit: 1,
        end_index: 4,
    });
    let zero = compile_named("0 AS all_rows", &input).unwrap();
    p.partition = vec![zero];
    p.assign = Some((
        WindowAssigner::Sliding {
            size_ms: 20,
            slide_ms: 10,
        },
        2,
    ));
    p.order[0].expr = compile_named("item_id", &input).unwrap();
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    for c in ["window_start", "window_end"] {
        fields.push(Field::new(c, DataType::Int64, false));
    }
    fields.push(Field::new("rownum", DataType::UInt64, false));
    p.input_schema = input;
    p.output_schema = Arc::new(Schema::new(fields));
    let op = || RankOperator::new(&p, 128, StateBudget::new(None).charge()).unwrap();
    let ends = |b: Option<RecordBatch>| -> Vec<(String, i64)> {
        let Some(b) = b else { return Vec::new() };
        (0..b.num_rows())
            .map(|i| {
                let item = b.column(1).as_string::<i32>().value(i).to_string();
                (item, b.column(4).as_primitive::<Int64Type>().value(i))
            })
            .collect()
    };
    let mut first = op();
    first
        .process(&clicks(&[("u1", "a", 5), ("u2", "c", 12), ("u3", "b", 15)]))
        .unwrap();
    // [-10, 10) holds a; [0, 20) a, c, b: c first.
    assert_eq!(ends(first.advance(10).unwrap()), [("a".to_string(), 10)]);
    let mut state = MapState::default();
    first.snapshot(&mut state).unwrap();
    let mut restored = op();
    assert_eq!(
        restored.restore(&state, 0..=127).unwrap(),
        2,
        "[0, 20) and [10, 30)"
    );
    restored.advance(10).unwrap();
    let got = ends(restored.advance(i64::MAX).unwrap());
    assert_eq!(got, [("c".to_string(), 20), ("c".to_string(), 30)]);
    // A late row of a passed window is counted; it still counts in its open windows.
    let mut late = op();
    late.advance(20).unwrap();
    late.process(&clicks(&[("u4", "z", 15)])).unwrap();
    assert_eq!(late.take_late(), 1);
    assert_eq!(ends(late.advance(30).unwrap()), [("z".to_string(), 30)]);
}
