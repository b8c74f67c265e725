//! Tests of the aggregates that keep values (count(DISTINCT x), approx_count_distinct(x),
//! first_value(x), last_value(x)) in the window operator, against results computed
//! independently: over tumbling, sliding and session windows, through snapshots restored at
//! another parallelism, from corrupt or truncated state, and against the state budget.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use kappa_job::keygroup::{key_group_of, key_group_range};
use kappa_job::plan::{WindowAssigner, WindowPlan, aggregate_type};
use kappa_job::sql::{compile_aggregate, compile_named};

use super::WindowOperator;
use crate::budget::{StateBudget, StateCharge};
use crate::state::testing::MapState;

const AGGREGATES: [(&str, &str); 8] = [
    ("n", "count(*)"),
    ("d", "count(DISTINCT s)"),
    ("dv", "count(DISTINCT v)"),
    ("a", "approx_count_distinct(s)"),
    ("f", "first_value(s)"),
    ("l", "last_value(s)"),
    ("fv", "first_value(v)"),
    ("total", "sum(v)"),
];

/// The operator tests' input (item_id, ts, v) and a string column s.
fn input_schema() -> SchemaRef {
    let mut fields = super::tests::input_schema().fields().to_vec();
    fields.push(Arc::new(Field::new("s", DataType::Utf8, true)));
    Arc::new(Schema::new(fields))
}

/// A window operator over [`input_schema`] keyed by item_id with `aggregates`.
fn operator(
    assigner: WindowAssigner,
    aggregates: &[(&str, &str)],
    charge: StateCharge,
) -> WindowOperator {
    let s = input_schema();
    let aggregates: Vec<_> = aggregates
        .iter()
        .map(|(name, text)| (name.to_string(), compile_aggregate(text, &s).unwrap()))
        .collect();
    let mut fields = vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("window_start", DataType::Int64, false),
        Field::new("window_end", DataType::Int64, false),
    ];
    for (name, call) in &aggregates {
        fields.push(Field::new(name, aggregate_type(call), true));
    }
    let plan = WindowPlan {
        uid: "window".into(),
        assigner,
        allowed_lateness_ms: 0,
        keys: vec![compile_named("item_id", &s).unwrap()],
        time_index: 1,
        aggregates,
        output_schema: Arc::new(Schema::new(fields)),
        late_output: None,
        retract: None,
    };
    WindowOperator::new(&plan, 128, charge, None).unwrap()
}

fn unlimited(assigner: WindowAssigner) -> WindowOperator {
    operator(assigner, &AGGREGATES, StateBudget::new(None).charge())
}

#[derive(Debug, Clone)]
struct Row {
    key: String,
    t: i64,
    v: Option<i64>,
    s: Option<String>,
}

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.key))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.t),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.v))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.s.as_deref()))),
        ],
    )
    .unwrap()
}

/// Rows out of time order, with equal times of a key (ties: the rows of a block of 60 come
/// in pairs of one time and key), repeated values and nulls.
fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            key: format!("k{}", ((i * 29) % 60 / 2 + i / 60) % 5),
            t: (((i * 29) % 60) / 2 * 2 + (i / 60) * 60) as i64 * 5,
            v: (i % 7 != 0).then_some((i as i64 * 13) % 17 - 8),
            s: (i % 9 != 0).then(|| format!("s{}", (i * 7) % 11)),
        })
        .collect()
}

/// One group's results: n, d, dv, a, f, l, fv, total.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    n: i64,
    d: i64,
    dv: i64,
    a: i64,
    f: Option<String>,
    l: Option<String>,
    fv: Option<i64>,
    total: Option<i64>,
}

type Results = BTreeMap<(String, i64, i64), Out>;

fn collect(into: &mut Results, out: Option<RecordBatch>) {
    let Some(b) = out else { return };
    let int = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
    let text = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>();
    let key = text("item_id");
    for r in 0..b.num_rows() {
        let opt = |name: &str| {
            let c = int(name);
            c.is_valid(r).then(|| c.value(r))
        };
        let txt = |name: &str| {
            let c = text(name);
            c.is_valid(r).then(|| c.value(r).to_string())
        };
        into.insert(
            (
                key.value(r).to_string(),
                int("window_start").value(r),
                int("window_end").value(r),
            ),
            Out {
                n: int("n").value(r),
                d: int("d").value(r),
                dv: int("dv").value(r),
                a: int("a").value(r),
                f: txt("f"),
                l: txt("l"),
                fv: opt("fv"),
                total: opt("total"),
            },
        );
    }
}

/// The windows of each row (by its index), computed without the operator.
fn windows_of(rows: &[Row], assigner: WindowAssigner) -> BTreeMap<(String, i64, i64), Vec<usize>> {
    let mut groups: BTreeMap<(String, i64, i64), Vec<usize>> = BTreeMap::new();
    match assigner {
        WindowAssigner::Tumbling { size_ms } => {
            for (i, r) in rows.iter().enumerate() {
                let start = r.t.div_euclid(size_ms) * size_ms;
                groups
                    .entry((r.key.clone(), start, start + size_ms))
                    .or_default()
                    .push(i);
            }
        }
        WindowAssigner::Sliding { size_ms, slide_ms } => {
            for (i, r) in rows.iter().enumerate() {
                let mut start = r.t.div_euclid(slide_ms) * slide_ms;
                while start > r.t - size_ms {
                    groups
                        .entry((r.key.clone(), start, start + size_ms))
                        .or_default()
                        .push(i);
                    start -= slide_ms;
                }
            }
        }
        WindowAssigner::Carried { .. } => {
            unimplemented!("the rows of these tests carry no windows")
        }
        // One group per key, ending at its latest event.
        WindowAssigner::Global { .. } => {
            let mut per_key: BTreeMap<&String, (i64, Vec<usize>)> = BTreeMap::new();
            for (i, r) in rows.iter().enumerate() {
                let e = per_key.entry(&r.key).or_insert((i64::MIN, Vec::new()));
                e.0 = e.0.max(r.t);
                e.1.push(i);
            }
            for (key, (end, mine)) in per_key {
                groups.insert((key.clone(), 0, end), mine);
            }
        }
        WindowAssigner::Session { gap_ms } => {
            let keys: BTreeSet<&String> = rows.iter().map(|r| &r.key).collect();
            for key in keys {
                let mut mine: Vec<usize> =
                    (0..rows.len()).filter(|&i| &rows[i].key == key).collect();
                mine.sort_by_key(|&i| rows[i].t);
                let mut session: Vec<usize> = Vec::new();
                let mut bounds = (0, 0);
                for i in mine {
                    let t = rows[i].t;
                    if !session.is_empty() && t > bounds.1 {
                        groups.insert(
                            (key.clone(), bounds.0, bounds.1),
                            std::mem::take(&mut session),
                        );
                    }
                    if session.is_empty() {
                        bounds = (t, t + gap_ms);
                    }
                    bounds.1 = bounds.1.max(t + gap_ms);
                    session.push(i);
                }
                groups.insert((key.clone(), bounds.0, bounds.1), session);
            }
        }
    }
    groups
}

/// The results of `rows` (in arrival order) by hand.
fn reference(rows: &[Row], assigner: WindowAssigner) -> Results {
    windows_of(rows, assigner)
        .into_iter()
        .map(|(window, members)| {
            let ss: BTreeSet<&String> =
                members.iter().filter_map(|&i| rows[i].s.as_ref()).collect();
            let vs: BTreeSet<i64> = members.iter().filter_map(|&i| rows[i].v).collect();
            // Ties of event time: the first (last) to arrive, i.e. the lowest (highest) index.
            let first = *members.iter().min_by_key(|&&i| (rows[i].t, i)).unwrap();
            let last = *members.iter().max_by_key(|&&i| (rows[i].t, i)).unwrap();
            let values: Vec<i64> = members.iter().filter_map(|&i| rows[i].v).collect();
            let out = Out {
                n: members.len() as i64,
                d: ss.len() as i64,
                dv: vs.len() as i64,
                a: ss.len() as i64,
                f: rows[first].s.clone(),
                l: rows[last].s.clone(),
                fv: rows[first].v,
                total: (!values.is_empty()).then(|| values.iter().sum()),
            };
            (window, out)
        })
        .collect()
}

/// Checks `got` against `expected`; approximate counts within 2% or 1.
fn assert_matches(got: &Results, expected: &Results, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: windows"
    );
    for (window, e) in expected {
        let g = &got[window];
        let slack = (e.a as f64 * 0.02).max(1.0);
        assert!(
            (g.a - e.a).abs() as f64 <= slack,
            "{what} {window:?}: {g:?} vs {e:?}"
        );
        assert_eq!(
            &Out {
                a: e.a,
                ..g.clone()
            },
            e,
            "{what} {window:?}"
        );
    }
}

fn assigners() -> [WindowAssigner; 3] {
    [
        WindowAssigner::Tumbling { size_ms: 100 },
        WindowAssigner::Sliding {
            size_ms: 100,
            slide_ms: 50,
        },
        WindowAssigner::Session { gap_ms: 20 },
    ]
}

/// The results of `rows`, in batches of 70, without a restore.
fn uninterrupted(rows: &[Row], assigner: WindowAssigner) -> Results {
    let mut w = unlimited(assigner);
    let mut got = Results::new();
    for chunk in rows.chunks(70) {
        collect(&mut got, w.process(&batch(chunk)).unwrap());
    }
    collect(&mut got, w.advance(i64::MAX).unwrap());
    got
}

#[test]
fn value_aggregates_match_a_computation_by_hand_in_every_kind_of_window() {
    let rows = rows(600);
    for assigner in assigners() {
        let got = uninterrupted(&rows, assigner);
        assert_matches(&got, &reference(&rows, assigner), &format!("{assigner:?}"));
    }
}

fn row(key: &str, t: i64, s: &str) -> Row {
    Row {
        key: key.into(),
        t,
        v: None,
        s: Some(s.into()),
    }
}

#[test]
fn joining_sessions_keep_the_earliest_and_latest_rows_and_the_union_of_values() {
    // [10, 15) and [0, 5), a tie at 10 (w arrives after u), then 5 bridges them; a snapshot
    // restored before the bridge must give the same.
    let before = [row("a", 10, "u"), row("a", 0, "v"), row("a", 10, "w")];
    let bridge = [row("a", 5, "u")];
    for restore in [false, true] {
        let session = WindowAssigner::Session { gap_ms: 5 };
        let mut w = unlimited(session);
        w.process(&batch(&before)).unwrap();
        assert_eq!(w.groups_in_state(), 2);
        if restore {
            let mut state = MapState::default();
            w.snapshot(&mut state).unwrap();
            w = unlimited(session);
            w.restore(&state, 0..=127).unwrap();
        }
        w.process(&batch(&bridge)).unwrap();
        assert_eq!(w.groups_in_state(), 1, "joined");
        let mut got = Results::new();
        collect(&mut got, w.advance(i64::MAX).unwrap());
        let out = &got[&("a".to_string(), 0, 15)];
        assert_eq!(
            (out.n, out.d, out.a, out.f.as_deref(), out.l.as_deref()),
            (4, 3, 3, Some("v"), Some("w")),
            "restored: {restore}"
        );
    }
}

/// The first `split` rows, a snapshot (after windows up to `watermark` fired), and the rest
/// on two operators restored at parallelism 2; with the state.
fn restored_run(rows: &[Row], split: usize, assigner: WindowAssigner) -> (Results, MapState) {
    let watermark = rows[split..].iter().map(|r| r.t).min().unwrap() - 1;
    let mut first = unlimited(assigner);
    let mut got = Results::new();
    let mut state = MapState::default();
    collect(&mut got, first.process(&batch(&rows[..split])).unwrap());
    first.snapshot(&mut state).unwrap();
    collect(&mut got, first.advance(watermark).unwrap());
    first.snapshot(&mut state).unwrap();
    for subtask in 0..2 {
        let range = key_group_range(subtask, 128, 2);
        let mut restored = unlimited(assigner);
        restored.restore(&state, range.clone()).unwrap();
        restored.advance(watermark).unwrap();
        let mine: Vec<Row> = rows[split..]
            .iter()
            .filter(|r| range.contains(&key_group_of(&super::tests::row_bytes(&r.key), 128)))
            .cloned()
            .collect();
        collect(&mut got, restored.process(&batch(&mine)).unwrap());
        collect(&mut got, restored.advance(i64::MAX).unwrap());
    }
    (got, state)
}

#[test]
fn a_restore_at_another_parallelism_gives_the_results_of_an_uninterrupted_run() {
    // Times rise by block of 60 rows: the rows after the split are not late for the watermark
    // there, and some tie with rows before it.
    let rows = rows(600);
    for assigner in assigners() {
        let expected = uninterrupted(&rows, assigner);
        let (got, _) = restored_run(&rows, 330, assigner);
        assert_eq!(got, expected, "{assigner:?}");
        assert_matches(&got, &reference(&rows, assigner), &format!("{assigner:?}"));
    }
}

/// `state` with the entry `at` replaced by `f` of it.
fn altered(state: &MapState, at: usize, f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) -> MapState {
    let mut out = MapState::default();
    out.committed = state.committed.clone();
    if let Some(((kg, k), v)) = state.committed.iter().nth(at) {
        out.committed.remove(&(*kg, k.clone()));
        let (mut k, mut v) = (k.clone(), v.clone());
        f(&mut k, &mut v);
        out.committed.insert((*kg, k), v);
    }
    out
}

#[test]
fn truncated_or_corrupt_state_is_an_error_never_a_panic() {
    let session = WindowAssigner::Session { gap_ms: 20 };
    let (_, state) = restored_run(&rows(120), 60, session);
    let entries = state.committed.len();
    assert!(entries > 0);
    for at in 0..entries {
        let len = state.committed.values().nth(at).unwrap().len();
        for cut in 0..len {
            let bad = altered(&state, at, |_, v| v.truncate(cut));
            let e = unlimited(session).restore(&bad, 0..=127).unwrap_err();
            assert!(e.to_string().contains("cannot be read"), "{e}");
        }
        let bad = altered(&state, at, |_, v| v.push(0));
        let e = unlimited(session).restore(&bad, 0..=127).unwrap_err();
        assert!(e.to_string().contains("left over"), "{e}");
        let bad = altered(&state, at, |k, _| k.truncate(3));
        assert!(unlimited(session).restore(&bad, 0..=127).is_err());
        // Every byte flipped: an error or a state that reads (a changed value), never a panic.
        for byte in 0..len {
            let bad = altered(&state, at, |_, v| v[byte] ^= 0xa5);
            let mut w = unlimited(session);
            if w.restore(&bad, 0..=127).is_ok() {
                let _ = w.advance(i64::MAX);
            }
        }
    }
}

#[test]
fn a_string_that_is_not_utf8_in_a_saved_first_value_is_an_error() {
    let session = WindowAssigner::Session { gap_ms: 5 };
    let mut w = operator(
        session,
        &[("f", "first_value(s)")],
        StateBudget::new(None).charge(),
    );
    w.process(&batch(&[row("a", 1, "ok")])).unwrap();
    let mut state = MapState::default();
    w.snapshot(&mut state).unwrap();
    let bad = altered(&state, 0, |_, v| {
        let n = v.len();
        v[n - 1] = 0xff;
    });
    let e = operator(
        session,
        &[("f", "first_value(s)")],
        StateBudget::new(None).charge(),
    )
    .restore(&bad, 0..=127)
    .unwrap_err();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
}

#[test]
fn a_state_saved_with_numeric_aggregates_only_reads_as_before() {
    // The layout of count(*) and sum(v) before values were kept: end, flags, then per
    // aggregate its count, integer and float slots.
    let mut value = 20_i64.to_le_bytes().to_vec();
    value.push(1);
    for (count, int) in [(3_i64, 0_i64), (2, 42)] {
        value.extend_from_slice(&count.to_le_bytes());
        value.extend_from_slice(&int.to_le_bytes());
        value.extend_from_slice(&0.0_f64.to_le_bytes());
    }
    let mut key = super::tests::row_bytes("a");
    let kg = key_group_of(&key, 128);
    key.extend_from_slice(&10_i64.to_be_bytes());
    let mut state = MapState::default();
    state.committed.insert((kg, key), value);
    let numeric = [("n", "count(*)"), ("total", "sum(v)")];
    let tumbling = WindowAssigner::Tumbling { size_ms: 10 };
    let mut w = operator(tumbling, &numeric, StateBudget::new(None).charge());
    assert_eq!(w.restore(&state, 0..=127).unwrap(), 1);
    let b = w.advance(i64::MAX).unwrap().unwrap();
    let int = |i: usize| b.column(i).as_primitive::<Int64Type>().value(0);
    assert_eq!((int(1), int(2), int(3), int(4)), (10, 20, 3, 42));
}

#[test]
fn distinct_sets_are_charged_as_they_grow_and_given_back_when_their_window_ends() {
    let tumbling = WindowAssigner::Tumbling { size_ms: 1000 };
    let distinct = [("d", "count(DISTINCT s)")];
    let many =
        |n: usize| -> Vec<Row> { (0..n).map(|i| row("a", 5, &format!("value {i}"))).collect() };
    // Unlimited: what one window holds grows with its set and is given back when it fires.
    let budget = StateBudget::new(None);
    let mut w = operator(tumbling, &distinct, budget.charge());
    w.process(&batch(&many(10))).unwrap();
    let small = budget.held();
    w.process(&batch(&many(1000))).unwrap();
    assert!(
        budget.held() > small + 1000 * 32,
        "{small} then {}",
        budget.held()
    );
    w.advance(i64::MAX).unwrap();
    assert_eq!(budget.held(), 0);

    // A limit that one window's set outgrows: a clear error, not memory without end.
    let budget = StateBudget::new(Some(64 * 1024));
    let mut w = operator(tumbling, &distinct, budget.charge());
    let e = w.process(&batch(&many(10_000))).unwrap_err();
    let text = e.to_string();
    assert!(!e.is_retriable(), "{text}");
    assert!(text.contains("beyond its limit of 64.0 KiB"), "{text}");
    assert!(
        text.contains("when the aggregates of its window [0, 1000) of key a grow"),
        "{text}"
    );
    assert!(budget.held() <= 64 * 1024);
    drop(w);
    assert_eq!(budget.held(), 0);
}
