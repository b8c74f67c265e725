//! The join operator against pairs computed by hand: window and interval joins, late rows,
//! snapshot and restore split by key group, and state that does not fit.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use kappa_job::keygroup::key_group_range;
use kappa_job::plan::{JoinKind, JoinPlan, WindowAssigner};
use kappa_job::sql::compile_named;

use super::JoinOperator;
use crate::budget::StateBudget;
use crate::metrics::SubtaskMetrics;
use crate::operator::{Operator, Output};
use crate::state::KeyedState;
use crate::state::testing::MapState;

fn side() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn join(kind: JoinKind) -> JoinOperator {
    let s = side();
    let mut out: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
    let window = matches!(kind, JoinKind::Window { .. });
    let window_fields = [
        Field::new("window_start", DataType::Int64, false),
        Field::new("window_end", DataType::Int64, false),
    ];
    if window {
        out.extend(window_fields.clone());
    }
    out.extend(s.fields().iter().map(|f| f.as_ref().clone()));
    if window {
        out.extend(window_fields);
    }
    let plan = JoinPlan {
        uid: "join".into(),
        kind,
        left_keys: vec![compile_named("k", &s).unwrap()],
        right_keys: vec![compile_named("k", &s).unwrap()],
        left_time: 1,
        right_time: 1,
        left_schema: Arc::clone(&s),
        right_schema: Arc::clone(&s),
        left_inputs: 1,
        output_schema: Arc::new(Schema::new(out)),
    };
    JoinOperator::new(
        &plan,
        128,
        StateBudget::new(None).charge(),
        Arc::new(SubtaskMetrics::default()),
    )
    .unwrap()
}

fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        side(),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// (key, left v, right v, window start) → how many times emitted.
type Pairs = BTreeMap<(String, i64, i64, i64), usize>;

fn collect(into: &mut Pairs, out: &mut Output, windowed: bool) {
    for (port, b) in out.take() {
        assert_eq!(port, 0);
        let k = b.column(0).as_string::<i32>();
        let int = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
        let (lv, rv) = match windowed {
            true => (int(2), int(7)),
            false => (int(2), int(5)),
        };
        let start = windowed.then(|| int(3));
        for r in 0..b.num_rows() {
            let w = start.as_ref().map_or(0, |s| s.value(r));
            *into
                .entry((k.value(r).to_string(), lv.value(r), rv.value(r), w))
                .or_default() += 1;
        }
    }
}

fn feed(
    j: &mut JoinOperator,
    into: &mut Pairs,
    input: usize,
    rows: &[(&str, i64, i64)],
    windowed: bool,
) {
    let mut out = Output::default();
    j.process_batch(input, batch(rows), &mut out).unwrap();
    collect(into, &mut out, windowed);
}

fn watermark(j: &mut JoinOperator, into: &mut Pairs, wm: i64, windowed: bool) {
    let mut out = Output::default();
    j.process_watermark(wm, &mut out).unwrap();
    collect(into, &mut out, windowed);
}

#[test]
fn a_window_join_pairs_the_rows_of_a_key_and_window_when_it_closes() {
    let mut j = join(JoinKind::Window {
        assigner: WindowAssigner::Tumbling { size_ms: 10 },
    });
    let mut got = Pairs::new();
    feed(
        &mut j,
        &mut got,
        0,
        &[("a", 1, 1), ("a", 5, 2), ("b", 3, 3), ("a", 12, 4)],
        true,
    );
    feed(
        &mut j,
        &mut got,
        1,
        &[("a", 9, 10), ("b", 15, 11), ("c", 2, 12)],
        true,
    );
    assert!(got.is_empty(), "nothing before the window closes");
    watermark(&mut j, &mut got, 10, true);
    let expected: Pairs = [(("a".into(), 1, 10, 0), 1), (("a".into(), 2, 10, 0), 1)].into();
    assert_eq!(got, expected);
    // A row of a closed window is late; the open one still pairs.
    feed(&mut j, &mut got, 1, &[("a", 4, 20), ("a", 19, 21)], true);
    watermark(&mut j, &mut got, 20, true);
    assert_eq!(got[&("a".into(), 4, 21, 10)], 1);
    assert_eq!(got.len(), 3, "b's rows are in different windows: {got:?}");
    assert_eq!(j.rows_in_state(), 0);
}

#[test]
fn an_interval_join_pairs_rows_within_bounds_once_and_forgets_them() {
    // left time - right time in [-5, 3]
    let kind = JoinKind::Interval {
        lower_ms: -5,
        upper_ms: 3,
    };
    let mut j = join(kind);
    let mut got = Pairs::new();
    feed(&mut j, &mut got, 0, &[("a", 10, 1), ("a", 20, 2)], false);
    feed(
        &mut j,
        &mut got,
        1,
        &[("a", 8, 10), ("a", 14, 11), ("a", 30, 12), ("b", 10, 13)],
        false,
    );
    // 10-8=2 ✓, 10-14=-4 ✓, 20-14=6 ✗, 20-30 ✗, 10-30 ✗
    let expected: Pairs = [(("a".into(), 1, 10, 0), 1), (("a".into(), 1, 11, 0), 1)].into();
    assert_eq!(got, expected);
    watermark(&mut j, &mut got, 16, false);
    // left 10 expires at 15 (10 + 5), right 8 at 11, 10 at 13: gone; left 20 (until 25), right 14
    // (until 17) and 30 stay.
    assert_eq!(j.rows_in_state(), 3);
    feed(&mut j, &mut got, 0, &[("a", 27, 3)], false);
    assert_eq!(got.get(&("a".into(), 3, 12, 0)), Some(&1), "27 - 30 = -3");
    // At or behind the watermark: late.
    feed(&mut j, &mut got, 0, &[("a", 15, 4)], false);
    assert!(!got.keys().any(|k| k.1 == 4));
}

#[test]
fn restored_joins_split_by_key_group_give_the_pairs_of_an_uninterrupted_run() {
    let left: Vec<(String, i64, i64)> = (0..120)
        .map(|i| (format!("k{}", i % 13), i * 3, i))
        .collect();
    let right: Vec<(String, i64, i64)> = (0..120)
        .map(|i| (format!("k{}", i % 7), i * 3 + 1, 1000 + i))
        .collect();
    for (kind, windowed) in [
        (
            JoinKind::Window {
                assigner: WindowAssigner::Sliding {
                    size_ms: 40,
                    slide_ms: 20,
                },
            },
            true,
        ),
        (
            JoinKind::Interval {
                lower_ms: -20,
                upper_ms: 10,
            },
            false,
        ),
        (JoinKind::Temporal, false),
    ] {
        let mut whole = join(kind);
        let mut expected = Pairs::new();
        feed(&mut whole, &mut expected, 0, &refs(&left), windowed);
        feed(&mut whole, &mut expected, 1, &refs(&right), windowed);
        watermark(&mut whole, &mut expected, i64::MAX, windowed);
        assert!(expected.len() > 50, "{kind:?}: {}", expected.len());

        let mut first = join(kind);
        let mut got = Pairs::new();
        feed(&mut first, &mut got, 0, &refs(&left[..60]), windowed);
        feed(&mut first, &mut got, 1, &refs(&right[..60]), windowed);
        let mut state = MapState::default();
        first.save(&mut state).unwrap();
        watermark(&mut first, &mut got, 100, windowed);
        first.save(&mut state).unwrap();
        for subtask in 0..2 {
            let range = key_group_range(subtask, 128, 2);
            let mut restored = join(kind);
            restored.load(&state, range.clone()).unwrap();
            restored.advance(100);
            let mine = |rows: &[(String, i64, i64)]| -> Vec<(String, i64, i64)> {
                rows.iter()
                    .filter(|(k, _, _)| {
                        let keys = restored_key_group(k);
                        range.contains(&keys)
                    })
                    .cloned()
                    .collect()
            };
            feed(
                &mut restored,
                &mut got,
                0,
                &refs(&mine(&left[60..])),
                windowed,
            );
            feed(
                &mut restored,
                &mut got,
                1,
                &refs(&mine(&right[60..])),
                windowed,
            );
            watermark(&mut restored, &mut got, i64::MAX, windowed);
        }
        assert_eq!(got, expected, "{kind:?}");
    }
}

fn refs(r: &[(String, i64, i64)]) -> Vec<(&str, i64, i64)> {
    r.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect()
}

/// The key group of a string key, as the join encodes it.
fn restored_key_group(k: &str) -> u32 {
    let s = side();
    let enc = crate::keyed::KeyEncoder::new(&[compile_named("k", &s).unwrap()]).unwrap();
    let rows = enc.rows(&batch(&[(k, 0, 0)])).unwrap();
    kappa_job::keygroup::key_group_of(rows.row(0).as_ref(), 128)
}

#[test]
fn state_of_another_layout_is_an_error_not_a_panic() {
    let mut j = join(JoinKind::Interval {
        lower_ms: 0,
        upper_ms: 1,
    });
    let mut got = Pairs::new();
    feed(&mut j, &mut got, 0, &[("a", 1, 1)], false);
    let mut state = MapState::default();
    j.save(&mut state).unwrap();
    let ((kg, key), value) = state
        .committed
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let truncated =
        [0, 1, value.len() / 2, value.len() - 1].map(|cut| (key.clone(), value[..cut].to_vec()));
    let another_layout = (vec![7, 1, 2], value.clone());
    for (k, v) in truncated.into_iter().chain([another_layout]) {
        let mut bad = MapState::default();
        bad.put(kg, &k, &v);
        bad.commit().unwrap();
        let kind = JoinKind::Interval {
            lower_ms: 0,
            upper_ms: 1,
        };
        assert!(
            join(kind).load(&bad, 0..=127).is_err(),
            "{k:?}: {} bytes",
            v.len()
        );
    }
}

#[test]
fn a_temporal_join_pairs_each_left_row_with_the_version_of_its_time() {
    let mut j = join(JoinKind::Temporal);
    let mut got = Pairs::new();
    // Versions of a at 0 (v 100), 10 (v 110), 20 (v 120); b at 5.
    feed(
        &mut j,
        &mut got,
        1,
        &[("a", 10, 110), ("a", 0, 100), ("b", 5, 200)],
        false,
    );
    feed(
        &mut j,
        &mut got,
        0,
        &[
            ("a", 3, 1),
            ("a", 10, 2),
            ("a", 25, 3),
            ("b", 4, 4),
            ("c", 6, 5),
        ],
        false,
    );
    assert!(got.is_empty(), "left rows wait for the watermark");
    watermark(&mut j, &mut got, 11, false);
    let expected: Pairs = [(("a".into(), 1, 100, 0), 1), (("a".into(), 2, 110, 0), 1)].into();
    assert_eq!(got, expected, "b at 4 has no version yet; c none at all");
    // A version at 20 arrives before the watermark passes the row at 25.
    feed(&mut j, &mut got, 1, &[("a", 20, 120)], false);
    // Behind the watermark: late.
    feed(&mut j, &mut got, 0, &[("a", 9, 6)], false);
    watermark(&mut j, &mut got, 30, false);
    assert_eq!(got.get(&("a".into(), 3, 120, 0)), Some(&1));
    assert!(
        !got.keys().any(|k| k.1 == 6 || k.1 == 4 || k.1 == 5),
        "{got:?}"
    );
    // Only the latest version before the watermark of each key stays.
    assert_eq!(j.rows_in_state(), 2, "a at 20 and b at 5");
}
