//! Tests of windows whose state spills to disk: the same results as in memory, whatever
//! is evicted and read back, across snapshots and rescaling.

use kappa_job::keygroup::{key_group_of, key_group_range};
use kappa_job::plan::WindowAssigner;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::WindowOperator;
use super::tests::{Results, batch, collect, operator_with, refs, row_bytes};
use crate::budget::StateBudget;
use crate::state::KeyedState;
use crate::state::testing::SharedState;

/// Rows of `keys` items over event times that go back by up to a second.
fn rows(seed: u64, n: usize, keys: usize) -> Vec<(String, i64, i64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let t = (i as i64) * 10 - rng.random_range(0..1_000);
            (
                format!("item_{}", rng.random_range(0..keys)),
                t.max(0),
                i as i64,
            )
        })
        .collect()
}

type Row = (String, i64, i64);

/// What a run gave and the most its budget held after a batch.
#[derive(Default)]
struct Run {
    got: Results,
    most: u64,
    /// The latest event time of all rows so far.
    latest: i64,
}

impl Run {
    /// Feeds the rows of `rows` that `mine` takes, in batches of what is left of each 100,
    /// the watermark after each 1.5 s behind the latest time of all rows so far (as one
    /// subtask of a job sees it).
    fn feed(
        &mut self,
        w: &mut WindowOperator,
        rows: &[Row],
        mine: &dyn Fn(&str) -> bool,
        budget: &StateBudget,
    ) {
        for chunk in rows.chunks(100) {
            let taken: Vec<Row> = chunk.iter().filter(|r| mine(&r.0)).cloned().collect();
            collect(&mut self.got, w.process(&batch(&refs(&taken))).unwrap());
            self.latest = chunk.iter().map(|r| r.1).fold(self.latest, i64::max);
            collect(&mut self.got, w.advance(self.latest - 1_500).unwrap());
            self.most = self.most.max(budget.held());
        }
    }
}

/// Runs all `rows` (see [`Run::feed`]) and the final watermark.
fn run(w: &mut WindowOperator, rows: &[Row], budget: &StateBudget) -> Run {
    let mut r = Run::default();
    r.feed(w, rows, &|_| true, budget);
    collect(&mut r.got, w.advance(i64::MAX).unwrap());
    r
}

const ASSIGNERS: [(WindowAssigner, i64); 5] = [
    (WindowAssigner::Tumbling { size_ms: 1_000 }, 0),
    (WindowAssigner::Tumbling { size_ms: 1_000 }, 700),
    (
        WindowAssigner::Sliding {
            size_ms: 2_000,
            slide_ms: 500,
        },
        0,
    ),
    (WindowAssigner::Global { ttl_ms: 0 }, 0),
    (WindowAssigner::Global { ttl_ms: 3_000 }, 0),
];

/// Fails with the first differences between `got` and `expected`.
fn same(got: &Results, expected: &Results, what: &str) {
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} rows, {} expected; expected but not got: {missing:?}; got but not expected: {extra:?}",
        got.len(),
        expected.len()
    );
}

/// What an operator without a limit gives for `rows`.
fn in_memory(assigner: WindowAssigner, lateness: i64, rows: &[(String, i64, i64)]) -> Results {
    let budget = StateBudget::new(None);
    let mut w = operator_with(assigner, lateness, budget.charge(), None);
    run(&mut w, rows, &budget).got
}

#[test]
fn spilled_windows_give_the_results_of_windows_in_memory() {
    let seed = rand::random::<u64>();
    println!("seed {seed}");
    let rows = rows(seed, 20_000, 2_000);
    for (assigner, lateness) in ASSIGNERS {
        let expected = in_memory(assigner, lateness, &rows);
        let limit = 40_000;
        let job = StateBudget::new(None);
        let cache = StateBudget::new(Some(limit));
        let mut w = operator_with(
            assigner,
            lateness,
            job.cache_charge(&cache),
            Some(Box::new(SharedState::default())),
        );
        let Run { got, most, .. } = run(&mut w, &rows, &cache);
        let stats = w.spill_stats().unwrap();
        same(
            &got,
            &expected,
            &format!("{assigner:?} lateness {lateness}"),
        );
        assert!(
            stats.evictions > 0 && stats.loads > 0 && stats.hits > 0,
            "{assigner:?}: {stats:?}"
        );
        assert!(
            most <= 2 * limit,
            "{assigner:?}: {most} bytes in memory with a limit of {limit}"
        );
        if assigner != (WindowAssigner::Global { ttl_ms: 0 }) {
            assert_eq!(w.groups_in_state(), 0, "{assigner:?}");
        }
    }
}

#[test]
fn without_spilling_the_same_limit_fails_the_window() {
    let rows = rows(7, 20_000, 2_000);
    let budget = StateBudget::new(Some(40_000));
    let mut w = operator_with(
        WindowAssigner::Tumbling { size_ms: 1_000 },
        0,
        budget.charge(),
        None,
    );
    let failed = rows
        .chunks(100)
        .map(|c| w.process(&batch(&refs(c))))
        .find_map(Result::err);
    assert!(
        failed.is_some_and(|e| e.to_string().contains("beyond its limit")),
        "a window in memory beyond its limit fails"
    );
}

#[test]
fn spilled_state_restores_at_another_parallelism_from_its_snapshot() {
    let seed = rand::random::<u64>();
    println!("seed {seed}");
    let rows = rows(seed, 10_000, 1_000);
    let (before, after) = rows.split_at(5_000);
    for (assigner, lateness) in ASSIGNERS {
        let expected = in_memory(assigner, lateness, &rows);
        // The first half spills into a store that is also its snapshot.
        let state = SharedState::default();
        let cache = StateBudget::new(Some(20_000));
        let mut first = operator_with(
            assigner,
            lateness,
            StateBudget::new(None).cache_charge(&cache),
            Some(Box::new(state.handle())),
        );
        let mut whole = Run::default();
        whole.feed(&mut first, before, &|_| true, &cache);
        first.snapshot(&mut state.handle()).unwrap();
        assert!(first.spill_stats().unwrap().evictions > 0, "{assigner:?}");
        drop(first);
        // Two subtasks take its key groups, each spilling into a store of its own.
        for subtask in 0..2 {
            let range = key_group_range(subtask, 128, 2);
            let cache = StateBudget::new(Some(10_000));
            let mut w = operator_with(
                assigner,
                lateness,
                StateBudget::new(None).cache_charge(&cache),
                Some(Box::new(SharedState::default())),
            );
            w.restore(&state, range.clone()).unwrap();
            let mut part = Run {
                latest: whole.latest,
                ..Run::default()
            };
            collect(&mut part.got, w.advance(whole.latest - 1_500).unwrap());
            let mine = |k: &str| range.contains(&key_group_of(&row_bytes(k), 128));
            part.feed(&mut w, after, &mine, &cache);
            collect(&mut part.got, w.advance(i64::MAX).unwrap());
            whole.got.extend(part.got);
        }
        let got = whole.got;
        // Updates of updating aggregates depend on how the input is batched: compare the
        // last row of each group.
        same(
            &finals(got),
            &finals(expected),
            &format!("{assigner:?} lateness {lateness}"),
        );
    }
}

/// The last row of each (item, window start): the one with the latest end.
fn finals(results: Results) -> Results {
    let mut last: std::collections::BTreeMap<(String, i64), (i64, (i64, i64))> =
        std::collections::BTreeMap::new();
    for ((item, start, end), v) in results {
        let e = last.entry((item, start)).or_insert((end, v));
        if end >= e.0 {
            *e = (end, v);
        }
    }
    last.into_iter()
        .map(|((item, start), (end, v))| ((item, start, end), v))
        .collect()
}

#[test]
fn a_corrupt_spilled_window_fails_the_window_naming_it() {
    let state = SharedState::default();
    let cache = StateBudget::new(Some(3_000));
    let mut w = operator_with(
        WindowAssigner::Tumbling { size_ms: 1_000 },
        0,
        StateBudget::new(None).cache_charge(&cache),
        Some(Box::new(state.handle())),
    );
    let keys: Vec<String> = (0..100).map(|i| format!("item_{i}")).collect();
    let first: Vec<_> = keys.iter().map(|k| (k.as_str(), 10, 1)).collect();
    w.process(&batch(&first)).unwrap();
    assert!(w.spill_stats().unwrap().evictions > 0);
    // Cut every spilled window (not the timers) short.
    let mut tamper = state.handle();
    let mut spilled = Vec::new();
    state
        .scan(0..=127, &mut |kg, k, v| {
            spilled.push((kg, k.to_vec(), v[..v.len() - 3].to_vec()));
            true
        })
        .unwrap();
    assert!(!spilled.is_empty());
    for (kg, k, v) in &spilled {
        tamper.put(*kg, k, v);
    }
    tamper.commit().unwrap();
    let e = keys
        .iter()
        .map(|k| w.process(&batch(&[(k.as_str(), 20, 1)])))
        .find_map(Result::err)
        .expect("an event of a spilled key reads its window back");
    let text = e.to_string();
    assert!(
        text.contains("window `window`: a spilled window of key group")
            && text.contains("cannot be read"),
        "{text}"
    );
    assert!(state.len() > spilled.len(), "timer entries are kept apart");
}

#[test]
fn held_updates_of_a_spilling_aggregate_go_out_once_memory_needs_them_and_stay_exact() {
    let seed = rand::random::<u64>();
    println!("seed {seed}");
    let rows = rows(seed, 20_000, 2_000);
    for assigner in [
        WindowAssigner::Global { ttl_ms: 0 },
        WindowAssigner::Global { ttl_ms: 3_000 },
    ] {
        let expected = in_memory(assigner, 0, &rows);
        let limit = 40_000;
        let cache = StateBudget::new(Some(limit));
        let mut w = operator_with(
            assigner,
            0,
            StateBudget::new(None).cache_charge(&cache),
            Some(Box::new(SharedState::default())),
        );
        w.hold_updates(true);
        let mut r = Run::default();
        // Catching up, flushed at a barrier every 40 batches.
        for part in rows.chunks(4_000) {
            r.feed(&mut w, part, &|_| true, &cache);
            collect(&mut r.got, w.flush().unwrap());
        }
        collect(&mut r.got, w.advance(i64::MAX).unwrap());
        same(
            &finals(r.got.clone()),
            &finals(expected.clone()),
            &format!("{assigner:?}"),
        );
        assert!(
            r.got.len() < expected.len(),
            "{assigner:?}: holding back emitted {} updates, live {}",
            r.got.len(),
            expected.len()
        );
        assert!(
            r.most <= 2 * limit,
            "{assigner:?}: {} bytes in memory with a limit of {limit}",
            r.most
        );
    }
}
