//! Tests of the window operator against results computed by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use kappa_job::plan::{WindowAssigner, WindowPlan};
use kappa_job::sql::{compile_aggregate, compile_named};

use super::WindowOperator;
use crate::budget::StateBudget;
use crate::state::testing::MapState;

pub(super) fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn operator(assigner: WindowAssigner, lateness: i64) -> WindowOperator {
    operator_charged(assigner, lateness, StateBudget::new(None).charge())
}

fn operator_charged(
    assigner: WindowAssigner,
    lateness: i64,
    charge: crate::budget::StateCharge,
) -> WindowOperator {
    operator_with(assigner, lateness, charge, None)
}

/// A window operator counting and summing `v` per item, spilling to `store` if given.
pub(super) fn operator_with(
    assigner: WindowAssigner,
    lateness: i64,
    charge: crate::budget::StateCharge,
    store: Option<Box<dyn crate::state::KeyedState>>,
) -> WindowOperator {
    let s = input_schema();
    let out = Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("window_start", DataType::Int64, false),
        Field::new("window_end", DataType::Int64, false),
        Field::new("n", DataType::Int64, false),
        Field::new("total", DataType::Int64, true),
    ]));
    let plan = WindowPlan {
        uid: "window".into(),
        assigner,
        allowed_lateness_ms: lateness,
        keys: vec![compile_named("item_id", &s).unwrap()],
        time_index: 1,
        aggregates: vec![
            ("n".into(), compile_aggregate("count(*)", &s).unwrap()),
            ("total".into(), compile_aggregate("sum(v)", &s).unwrap()),
        ],
        output_schema: out,
        late_output: None,
        retract: None,
    };
    WindowOperator::new(&plan, 128, charge, store).unwrap()
}

pub(super) fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let ts =
        arrow::array::TimestampMillisecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
    RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(ts),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// (item, start, end) → (count, sum)
pub(super) type Results = BTreeMap<(String, i64, i64), (i64, i64)>;

pub(super) fn collect(into: &mut Results, out: Option<RecordBatch>) {
    let Some(b) = out else { return };
    let item = b.column(0).as_string::<i32>();
    let col = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
    let (s, e, n, t) = (col(1), col(2), col(3), col(4));
    for r in 0..b.num_rows() {
        into.insert(
            (item.value(r).to_string(), s.value(r), e.value(r)),
            (n.value(r), t.value(r)),
        );
    }
}

#[test]
fn tumbling_fires_when_watermark_passes_end() {
    let mut w = operator(WindowAssigner::Tumbling { size_ms: 10 }, 0);
    let mut got = Results::new();
    collect(
        &mut got,
        w.process(&batch(&[
            ("a", 1, 1),
            ("a", 9, 2),
            ("b", 5, 3),
            ("a", 10, 4),
        ]))
        .unwrap(),
    );
    assert!(got.is_empty());
    collect(&mut got, w.advance(9).unwrap());
    assert!(got.is_empty(), "end 10 not reached by watermark 9");
    collect(&mut got, w.advance(10).unwrap());
    assert_eq!(got.len(), 2);
    assert_eq!(got[&("a".into(), 0, 10)], (2, 3));
    assert_eq!(got[&("b".into(), 0, 10)], (1, 3));
    // late record for a fired window: dropped and counted
    collect(&mut got, w.process(&batch(&[("a", 3, 100)])).unwrap());
    assert_eq!(w.take_late(), 1);
    collect(&mut got, w.advance(i64::MAX).unwrap());
    assert_eq!(got[&("a".into(), 10, 20)], (1, 4));
    assert_eq!(w.groups_in_state(), 0);
}

#[test]
fn sliding_assigns_each_record_to_size_over_slide_windows() {
    let mut w = operator(
        WindowAssigner::Sliding {
            size_ms: 10,
            slide_ms: 5,
        },
        0,
    );
    let mut got = Results::new();
    collect(&mut got, w.process(&batch(&[("a", 7, 1)])).unwrap());
    collect(&mut got, w.advance(i64::MAX).unwrap());
    let keys: Vec<_> = got.keys().map(|k| (k.1, k.2)).collect();
    assert_eq!(keys, vec![(0, 10), (5, 15)]);
}

#[test]
fn sessions_merge_when_a_record_bridges_them() {
    let mut w = operator(WindowAssigner::Session { gap_ms: 5 }, 0);
    let mut got = Results::new();
    collect(
        &mut got,
        w.process(&batch(&[("a", 0, 1), ("a", 10, 2), ("b", 1, 7)]))
            .unwrap(),
    );
    assert_eq!(w.groups_in_state(), 3);
    collect(&mut got, w.process(&batch(&[("a", 5, 4)])).unwrap());
    assert_eq!(w.groups_in_state(), 2, "a's two sessions joined");
    collect(&mut got, w.advance(i64::MAX).unwrap());
    assert_eq!(got[&("a".into(), 0, 15)], (3, 7));
    assert_eq!(got[&("b".into(), 1, 6)], (1, 7));
}

#[test]
fn a_joined_session_fires_at_its_new_end_only() {
    let mut w = operator(WindowAssigner::Session { gap_ms: 5 }, 0);
    let mut got = Results::new();
    collect(
        &mut got,
        w.process(&batch(&[("a", 0, 1), ("a", 10, 2)])).unwrap(),
    );
    // The bridge joins [0, 5) and [10, 15): the first session's old end is no longer its end.
    collect(&mut got, w.process(&batch(&[("a", 5, 4)])).unwrap());
    collect(&mut got, w.advance(6).unwrap());
    assert!(got.is_empty(), "fired at the old end: {got:?}");
    collect(&mut got, w.process(&batch(&[("a", 12, 8)])).unwrap());
    collect(&mut got, w.advance(i64::MAX).unwrap());
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [(("a".to_string(), 0, 17), (4, 15))],
        "one session, every record once"
    );
}

#[test]
fn allowed_lateness_updates_fired_windows_then_drops_state() {
    let mut w = operator(WindowAssigner::Tumbling { size_ms: 10 }, 5);
    let mut got = Results::new();
    collect(&mut got, w.process(&batch(&[("a", 1, 1)])).unwrap());
    collect(&mut got, w.advance(12).unwrap());
    assert_eq!(got[&("a".into(), 0, 10)], (1, 1));
    collect(&mut got, w.process(&batch(&[("a", 2, 10)])).unwrap());
    assert_eq!(
        got[&("a".into(), 0, 10)],
        (2, 11),
        "late but allowed: emitted again, updated"
    );
    collect(&mut got, w.advance(15).unwrap());
    assert_eq!(w.groups_in_state(), 0);
    collect(&mut got, w.process(&batch(&[("a", 3, 10)])).unwrap());
    assert_eq!(w.take_late(), 1);
}

/// The message a record at `t` of key `z` fails with.
fn out_of_range(t: i64, window: &str, lateness: i64) -> String {
    format!(
        "event time {t} (key z) is out of range for a {window} with allowed lateness {lateness}ms: its window would start or end (plus lateness) beyond the 64-bit millisecond range; filter such records out before the window"
    )
}

#[test]
fn event_times_at_the_ends_of_time_fail_the_subtask_naming_the_value() {
    let normal = [("a", 1, 1), ("a", 9, 2), ("b", 5, 3), ("a", 12, 4)];
    let tumbling = WindowAssigner::Tumbling { size_ms: 10 };
    let sliding = WindowAssigner::Sliding {
        size_ms: 10,
        slide_ms: 5,
    };
    let session = WindowAssigner::Session { gap_ms: 5 };
    // (assigner, its description, the results of `normal` by hand)
    let cases = [
        (
            tumbling,
            "tumbling window (size 10ms)",
            vec![
                (("a", 0, 10), (2, 3)),
                (("a", 10, 20), (1, 4)),
                (("b", 0, 10), (1, 3)),
            ],
        ),
        (
            sliding,
            "sliding window (size 10ms, slide 5ms)",
            vec![
                (("a", -5, 5), (1, 1)),
                (("a", 0, 10), (2, 3)),
                (("a", 5, 15), (2, 6)),
                (("a", 10, 20), (1, 4)),
                (("b", 0, 10), (1, 3)),
                (("b", 5, 15), (1, 3)),
            ],
        ),
        (
            session,
            "session window (gap 5ms)",
            vec![
                (("a", 1, 6), (1, 1)),
                (("a", 9, 17), (2, 6)),
                (("b", 5, 10), (1, 3)),
            ],
        ),
    ];
    for (assigner, window, by_hand) in cases {
        for t in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            let mut w = operator(assigner, 0);
            let mut got = Results::new();
            collect(&mut got, w.process(&batch(&normal)).unwrap());
            let mut expected: Results = by_hand
                .iter()
                .map(|((k, s, e), r)| ((k.to_string(), *s, *e), *r))
                .collect();
            match (assigner, w.process(&batch(&[("z", t, 100)]))) {
                // A session from i64::MIN fits: it is a window like any other.
                (WindowAssigner::Session { .. }, Ok(out)) if t < 0 => {
                    collect(&mut got, out);
                    expected.insert(("z".into(), t, t + 5), (1, 100));
                }
                (_, Err(crate::TaskError::Data(m))) => {
                    assert_eq!(m, out_of_range(t, window, 0), "{assigner:?} at {t}");
                }
                (_, other) => panic!("{assigner:?} at {t}: {other:?}"),
            }
            assert_eq!(w.take_late(), 0, "{assigner:?} at {t}: not counted as late");
            // The record is in no window; the others are exact.
            collect(&mut got, w.advance(i64::MAX).unwrap());
            assert_eq!(got, expected, "{assigner:?} at {t}");
        }
    }
}

#[test]
fn a_window_whose_cleanup_time_overflows_fails_the_subtask() {
    let t = i64::MAX - 17;
    let mut w = operator(WindowAssigner::Tumbling { size_ms: 10 }, 8);
    let e = w.process(&batch(&[("z", t, 1)])).map(|_| ());
    assert_eq!(
        e.map_err(|e| e.to_string()),
        Err(out_of_range(t, "tumbling window (size 10ms)", 8))
    );
    // With a shorter lateness the same window fits.
    let mut w = operator(WindowAssigner::Tumbling { size_ms: 10 }, 7);
    let mut got = Results::new();
    collect(&mut got, w.process(&batch(&[("z", t, 1)])).unwrap());
    collect(&mut got, w.advance(i64::MAX).unwrap());
    assert_eq!(got[&("z".into(), t, t + 10)], (1, 1));
}

#[test]
fn a_sum_beyond_i64_fails_the_subtask_naming_the_aggregate_key_and_window() {
    let mut w = operator(WindowAssigner::Tumbling { size_ms: 10 }, 0);
    let mut got = Results::new();
    // Sums that reach the ends of i64 without passing them are exact.
    let rows = [
        ("a", 1, i64::MAX),
        ("a", 2, -1),
        ("a", 3, 1),
        ("b", 4, i64::MIN),
        ("b", 5, 1),
    ];
    collect(&mut got, w.process(&batch(&rows)).unwrap());
    collect(&mut got, w.advance(10).unwrap());
    assert_eq!(got[&("a".into(), 0, 10)], (3, i64::MAX));
    assert_eq!(got[&("b".into(), 0, 10)], (2, i64::MIN + 1));
    collect(&mut got, w.process(&batch(&[("a", 11, i64::MAX)])).unwrap());
    let e = w.process(&batch(&[("a", 12, 1)])).map(|_| ());
    assert!(
        matches!(&e, Err(crate::TaskError::Data(m)) if m == "`total = sum(v)` overflows 64-bit integers in the window [10, 20) of key a"),
        "{e:?}"
    );
}

#[test]
fn sessions_whose_sums_overflow_when_they_join_fail_the_subtask() {
    let mut w = operator(WindowAssigner::Session { gap_ms: 5 }, 0);
    w.process(&batch(&[("a", 0, i64::MAX), ("a", 10, 1)]))
        .unwrap();
    let e = w.process(&batch(&[("a", 5, 0)])).map(|_| ());
    assert!(
        matches!(&e, Err(crate::TaskError::Data(m)) if m == "`total = sum(v)` overflows 64-bit integers in the window [0, 5) of key a"),
        "{e:?}"
    );
}

#[test]
fn snapshots_restore_the_same_windows_and_split_by_key_group() {
    use kappa_job::keygroup::key_group_range;
    let rows: Vec<(String, i64, i64)> = (0..200)
        .map(|i| (format!("item_{}", i % 37), i * 100, i))
        .collect();
    for assigner in [
        WindowAssigner::Tumbling { size_ms: 1000 },
        WindowAssigner::Session { gap_ms: 250 },
    ] {
        // The uninterrupted run.
        let mut whole = operator(assigner, 0);
        let mut expected = Results::new();
        collect(&mut expected, whole.process(&batch(&refs(&rows))).unwrap());
        collect(&mut expected, whole.advance(i64::MAX).unwrap());

        // Half, a snapshot (after some windows fired), the rest on restored operators.
        let mut first = operator(assigner, 0);
        let mut got = Results::new();
        let mut state = MapState::default();
        collect(
            &mut got,
            first.process(&batch(&refs(&rows[..100]))).unwrap(),
        );
        first.snapshot(&mut state).unwrap();
        collect(&mut got, first.advance(4_000).unwrap());
        first.snapshot(&mut state).unwrap();
        // Two operators of a job rescaled to parallelism 2 take the key groups of their range.
        for subtask in 0..2 {
            let mut restored = operator(assigner, 0);
            restored
                .restore(&state, key_group_range(subtask, 128, 2))
                .unwrap();
            restored.advance(4_000).unwrap();
            let mine: Vec<(String, i64, i64)> = rows[100..]
                .iter()
                .filter(|(k, _, _)| {
                    key_group_range(subtask, 128, 2)
                        .contains(&kappa_job::keygroup::key_group_of(&row_bytes(k), 128))
                })
                .cloned()
                .collect();
            collect(&mut got, restored.process(&batch(&refs(&mine))).unwrap());
            collect(&mut got, restored.advance(i64::MAX).unwrap());
        }
        assert_eq!(got, expected, "{assigner:?}");
    }
}

pub(super) fn refs(r: &[(String, i64, i64)]) -> Vec<(&str, i64, i64)> {
    r.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect()
}

/// The encoded key of an item id, as the window operator computes it.
pub(super) fn row_bytes(item: &str) -> Vec<u8> {
    let s = input_schema();
    let enc = crate::keyed::KeyEncoder::new(&[compile_named("item_id", &s).unwrap()]).unwrap();
    enc.rows(&batch(&[(item, 0, 0)]))
        .unwrap()
        .row(0)
        .as_ref()
        .to_vec()
}

type Log = std::sync::Arc<parking_lot::Mutex<Vec<String>>>;

/// A checkpoint hook over [`MapState`] (for the window, the chain's first operator) that
/// records the checkpoints it took; each completes at once.
struct RecordingHook {
    state: MapState,
    taken: std::sync::Arc<parking_lot::Mutex<Vec<(u64, usize)>>>,
    completed: Vec<u64>,
}

impl crate::subtask::CheckpointHook for RecordingHook {
    fn state(&mut self, op: usize) -> Option<&mut dyn crate::state::KeyedState> {
        (op == 0).then_some(&mut self.state as &mut dyn crate::state::KeyedState)
    }
    fn acknowledge(
        &mut self,
        n: u64,
        parts: Vec<crate::operator::OperatorSnapshot>,
        _: std::time::Duration,
    ) -> Result<(), crate::TaskError> {
        self.taken.lock().push((n, self.state.committed.len()));
        assert_eq!(parts.len(), 2, "one part per operator");
        assert_eq!(parts[1].sink.as_deref(), Some(&b"prepared"[..]));
        self.completed.push(n);
        Ok(())
    }
    fn completed(&mut self) -> Option<u64> {
        self.completed.pop()
    }
}

/// A transactional sink that logs what the task asks of it.
struct RecordingSink(Log);

impl crate::io::Sink for RecordingSink {
    fn write(&mut self, b: &RecordBatch) -> Result<(), crate::TaskError> {
        self.0.lock().push(format!("write {}", b.num_rows()));
        Ok(())
    }
    fn prepare(&mut self, n: u64) -> Result<Option<Vec<u8>>, crate::TaskError> {
        self.0.lock().push(format!("prepare {n}"));
        Ok(Some(b"prepared".to_vec()))
    }
    fn commit(&mut self, n: u64) -> Result<(), crate::TaskError> {
        self.0.lock().push(format!("commit {n}"));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), crate::TaskError> {
        self.0.lock().push("flush".into());
        Ok(())
    }
}

#[test]
fn a_window_subtask_snapshots_when_barriers_align() {
    use crate::chain::Chain;
    use crate::channel::Inputs;
    use crate::element::Element;
    use crate::latency::Origin;
    use crate::operators::{SinkOperator, WindowedAggregate};
    use crate::subtask::{Head, Subtask};
    use kappa_job::graph::Route;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let cancel = Arc::new(AtomicBool::new(false));
    let (inputs, tx) = Inputs::new(2, 64, Arc::clone(&cancel), Arc::default());
    let taken = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let hook = RecordingHook {
        state: MapState::default(),
        taken: Arc::clone(&taken),
        completed: Vec::new(),
    };
    let log = Log::default();
    let metrics: Arc<crate::metrics::SubtaskMetrics> = Arc::default();
    let chain = Chain::new(
        vec![
            Box::new(WindowedAggregate::new(
                operator(WindowAssigner::Tumbling { size_ms: 10 }, 0),
                Arc::clone(&metrics),
            )),
            Box::new(SinkOperator::new(
                Box::new(RecordingSink(Arc::clone(&log))),
                Arc::clone(&metrics),
            )),
        ],
        vec![vec![vec![Route::Chained(1)], vec![]], vec![vec![]]],
        Vec::new(),
        Arc::clone(&metrics),
    )
    .unwrap();
    let task = Subtask {
        head: Head::Channels {
            channels: inputs,
            inputs: vec![0, 0],
        },
        chain,
        metrics,
        cancel,
        catching_up: Arc::default(),
        checkpoints: Some(Box::new(hook)),
    };
    for (from, e) in [
        (
            0,
            Element::Records(batch(&[("a", 1, 1), ("b", 2, 1)]), Origin::UNKNOWN),
        ),
        (0, Element::Barrier(1)),
        // Held back until input 1's barrier: not part of checkpoint 1.
        (0, Element::Records(batch(&[("c", 3, 1)]), Origin::UNKNOWN)),
        (1, Element::Records(batch(&[("d", 4, 1)]), Origin::UNKNOWN)),
        (1, Element::Barrier(1)),
        (0, Element::End),
        (1, Element::End),
    ] {
        tx.send((from, e)).unwrap();
    }
    assert_eq!(task.run().unwrap(), crate::subtask::TaskEnd::Finished);
    assert_eq!(
        *taken.lock(),
        vec![(1, 3)],
        "checkpoint 1 holds a, b and d, not c"
    );
    let log = log.lock().clone();
    let at = |e: &str| log.iter().position(|l| l == e).unwrap_or(usize::MAX);
    assert!(at("prepare 1") < at("commit 1"), "{log:?}");
    assert!(at("commit 1") < at("flush"), "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("flush"), "{log:?}");
}

#[test]
fn every_group_is_charged_to_the_budget_and_given_back_when_it_ends() {
    for (assigner, lateness) in [
        (WindowAssigner::Tumbling { size_ms: 1000 }, 0),
        (WindowAssigner::Tumbling { size_ms: 1000 }, 500),
        (
            WindowAssigner::Sliding {
                size_ms: 1000,
                slide_ms: 250,
            },
            0,
        ),
        (WindowAssigner::Session { gap_ms: 300 }, 0),
    ] {
        let budget = StateBudget::new(None);
        let mut w = operator_charged(assigner, lateness, budget.charge());
        // Sessions of a key join and split; windows fire while others open.
        let rows: Vec<(String, i64, i64)> = (0..300)
            .map(|i| {
                (
                    format!("item_{}", i % 17),
                    (i * 97) % 5000 + (i / 100) * 5000,
                    i,
                )
            })
            .collect();
        for chunk in rows.chunks(50) {
            w.process(&batch(&refs(chunk))).unwrap();
            assert!(budget.held() > 0, "{assigner:?}");
            let watermark = chunk.iter().map(|r| r.1).min().unwrap() - 1000;
            w.advance(watermark).unwrap();
            assert_eq!(budget.held(), w.bytes_in_state(), "{assigner:?}");
        }
        w.advance(i64::MAX).unwrap();
        assert_eq!(w.groups_in_state(), 0, "{assigner:?}");
        assert_eq!(
            budget.held(),
            0,
            "{assigner:?}: every group gave its bytes back"
        );
    }
}

#[test]
fn a_window_beyond_the_job_state_limit_fails_the_subtask_naming_limit_and_window() {
    let budget = StateBudget::new(Some(10_000));
    let tumbling = WindowAssigner::Tumbling { size_ms: 1000 };
    // Another operator of the same job already holds part of the budget.
    let mut other = operator_charged(tumbling, 0, budget.charge());
    other.process(&batch(&[("x", 1, 1), ("y", 1, 1)])).unwrap();
    let other_bytes = budget.held();
    assert!(other_bytes > 0);

    let mut w = operator_charged(tumbling, 0, budget.charge());
    let rows: Vec<(String, i64, i64)> = (0..1000).map(|i| (format!("k{i}"), 5, 1)).collect();
    let e = w.process(&batch(&refs(&rows))).unwrap_err();
    assert!(!e.is_retriable(), "{e}");
    let text = e.to_string();
    assert!(text.contains("beyond its limit of 9.8 KiB"), "{text}");
    assert!(text.contains("window `window` holds"), "{text}");
    assert!(text.contains("[limits] state_memory"), "{text}");
    assert!(budget.held() <= 10_000, "{}", budget.held());
    assert!(w.groups_in_state() > 0 && w.groups_in_state() < 1000);

    // A restore that does not fit fails the same way, and dropping the operators frees all.
    let mut state = MapState::default();
    w.snapshot(&mut state).unwrap();
    drop(w);
    assert_eq!(budget.held(), other_bytes);
    let small = StateBudget::new(Some(1_000));
    let e = operator_charged(tumbling, 0, small.charge())
        .restore(&state, 0..=127)
        .unwrap_err();
    assert!(e.to_string().contains("beyond its limit"), "{e}");
    drop(other);
    assert_eq!(budget.held(), 0);
}

/// item → (count, sum), the latest row of each key an updating aggregate emitted.
fn collect_updates(into: &mut BTreeMap<String, (i64, i64)>, out: Option<RecordBatch>) -> usize {
    let mut got = Results::new();
    collect(&mut got, out);
    let n = got.len();
    for ((item, start, _), v) in got {
        assert_eq!(start, 0, "an updating aggregate's group starts at 0");
        into.insert(item, v);
    }
    n
}

#[test]
fn an_updating_aggregate_emits_each_changed_key_per_batch_whatever_the_watermark() {
    let mut w = operator(WindowAssigner::Global { ttl_ms: 0 }, 0);
    let mut got = BTreeMap::new();
    let n = collect_updates(
        &mut got,
        w.process(&batch(&[("a", 5, 1), ("b", 7, 2), ("a", 3, 3)]))
            .unwrap(),
    );
    assert_eq!(n, 2, "one upsert per changed key");
    assert_eq!(got["a"], (2, 4));
    assert_eq!(w.advance(1_000_000).unwrap().map(|b| b.num_rows()), None);
    // Far behind the watermark still counts: nothing expires without a TTL.
    let n = collect_updates(&mut got, w.process(&batch(&[("a", 1, 10)])).unwrap());
    assert_eq!((n, got["a"], got["b"]), (1, (3, 14), (1, 2)));
    assert_eq!(w.take_late(), 0);
    assert_eq!(w.groups_in_state(), 2);
}

#[test]
fn an_updating_aggregate_forgets_a_key_idle_for_its_ttl_and_restores_the_rest() {
    let mut w = operator(WindowAssigner::Global { ttl_ms: 100 }, 0);
    let mut got = BTreeMap::new();
    collect_updates(
        &mut got,
        w.process(&batch(&[("a", 10, 1), ("b", 150, 2)])).unwrap(),
    );
    w.advance(200).unwrap();
    assert_eq!(w.groups_in_state(), 1, "a (idle since 10) expired at 110");
    // An event of b within the TTL counts, one of a older than the TTL is late.
    collect_updates(
        &mut got,
        w.process(&batch(&[("b", 120, 5), ("a", 50, 7)])).unwrap(),
    );
    assert_eq!(got["b"], (2, 7));
    assert_eq!(w.take_late(), 1);
    // a comes back: it starts from nothing.
    collect_updates(&mut got, w.process(&batch(&[("a", 190, 3)])).unwrap());
    assert_eq!(got["a"], (1, 3));

    let mut state = MapState::default();
    w.snapshot(&mut state).unwrap();
    let mut restored = operator(WindowAssigner::Global { ttl_ms: 100 }, 0);
    restored.restore(&state, 0..=127).unwrap();
    restored.advance(200).unwrap();
    collect_updates(
        &mut got,
        restored.process(&batch(&[("b", 210, 1)])).unwrap(),
    );
    assert_eq!(got["b"], (3, 8), "restored state goes on");
    // b's latest event moved to 210: it lives until 310.
    restored.advance(290).unwrap();
    assert_eq!(
        restored.groups_in_state(),
        1,
        "a (latest 190) expired at 290"
    );
    restored.advance(310).unwrap();
    assert_eq!(restored.groups_in_state(), 0);
}

#[test]
fn an_updating_aggregate_holding_its_updates_back_emits_each_key_once_at_the_flush() {
    let mut w = operator(WindowAssigner::Global { ttl_ms: 0 }, 0);
    w.hold_updates(true);
    let mut got = BTreeMap::new();
    for b in [
        batch(&[("a", 5, 1), ("b", 7, 2)]),
        batch(&[("a", 9, 3)]),
        batch(&[("a", 11, 4), ("c", 12, 5)]),
    ] {
        assert_eq!(collect_updates(&mut got, w.process(&b).unwrap()), 0);
        assert_eq!(collect_updates(&mut got, w.advance(1_000).unwrap()), 0);
    }
    assert_eq!(
        collect_updates(&mut got, w.flush().unwrap()),
        3,
        "once per key"
    );
    assert_eq!((got["a"], got["b"], got["c"]), ((3, 8), (1, 2), (1, 5)));
    assert_eq!(
        w.flush().unwrap().map(|b| b.num_rows()),
        None,
        "nothing twice"
    );
    // Still holding after a flush; the end of the input lets everything out.
    w.process(&batch(&[("b", 20, 1)])).unwrap();
    assert_eq!(collect_updates(&mut got, w.advance(i64::MAX).unwrap()), 1);
    assert_eq!(got["b"], (2, 3));
    // Live again: each batch's updates go out with it.
    w.hold_updates(false);
    let n = collect_updates(&mut got, w.process(&batch(&[("c", 30, 1)])).unwrap());
    assert_eq!((n, got["c"]), (1, (2, 6)));
}

#[test]
fn a_held_update_goes_out_before_its_ttl_drops_the_group() {
    let mut w = operator(WindowAssigner::Global { ttl_ms: 100 }, 0);
    let mut got = BTreeMap::new();
    collect_updates(&mut got, w.process(&batch(&[("a", 10, 1)])).unwrap());
    w.hold_updates(true);
    w.process(&batch(&[("a", 20, 2), ("b", 150, 4)])).unwrap();
    // a (latest 20) expires at 120: its held update comes out first; b's stays held.
    let n = collect_updates(&mut got, w.advance(130).unwrap());
    assert_eq!((n, got["a"]), (1, (2, 3)));
    assert!(!got.contains_key("b"));
    assert_eq!(
        w.groups_in_state(),
        1,
        "a dropped after its update went out"
    );
    assert_eq!(collect_updates(&mut got, w.flush().unwrap()), 1);
    assert_eq!(got["b"], (1, 4));
}

#[test]
fn a_watermark_firing_many_windows_emits_them_a_part_at_a_time() {
    use super::operator::FIRE_CHUNK;
    let keys: Vec<String> = (0..FIRE_CHUNK * 2 + 100)
        .map(|i| format!("item_{i}"))
        .collect();
    let rows: Vec<_> = keys.iter().map(|k| (k.as_str(), 10, 1)).collect();
    for spilled in [false, true] {
        let cache = StateBudget::new(Some(200_000));
        let (charge, store) = match spilled {
            true => (
                StateBudget::new(None).cache_charge(&cache),
                Some(Box::new(crate::state::testing::SharedState::default())
                    as Box<dyn crate::state::KeyedState>),
            ),
            false => (StateBudget::new(None).charge(), None),
        };
        let mut w = operator_with(
            WindowAssigner::Tumbling { size_ms: 1_000 },
            0,
            charge,
            store,
        );
        w.process(&batch(&rows)).unwrap();
        assert!(w.set_watermark(5_000));
        assert!(!w.set_watermark(4_000), "never back");
        let mut parts = Vec::new();
        while let Some(b) = w.fire_next().unwrap() {
            parts.push(b.num_rows());
        }
        assert!(
            parts.len() >= 3 && parts.iter().all(|&n| n <= FIRE_CHUNK),
            "spilled {spilled}: {parts:?}"
        );
        assert_eq!(parts.iter().sum::<usize>(), keys.len(), "spilled {spilled}");
        assert_eq!(w.groups_in_state(), 0);
        assert_eq!(w.fire_next().unwrap().map(|b| b.num_rows()), None);
        if spilled {
            assert!(w.spill_stats().unwrap().evictions > 0);
        }
    }
}
