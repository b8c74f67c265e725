//! Split assignment and restores at another parallelism: across a checkpoint and a restore
//! at any parallelism, every event number of a bounded sequence is emitted once.

use std::collections::BTreeSet;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use kappa_job::plan::nexmark::{NexmarkSourcePlan, NexmarkTable};
use kappa_runtime::io::{NexmarkPosition, SourceReader, SourceStatus, SplitBatch, SplitPosition};

use super::splits_to_read;
use crate::nexmark::reader::NexmarkReader;
use crate::nexmark::{NexmarkConfig, NexmarkGenerator, Table};
use crate::splits::{SourceAssignment, SourceStarts, round_robin};

const EVENTS: u64 = 20_000;

/// A bounded person source: a person's id tells its event number (the ids count persons, one
/// per 50 events), so emitted event numbers can be checked exactly.
fn plan(splits: u32) -> NexmarkSourcePlan {
    NexmarkSourcePlan {
        table: NexmarkTable::Person,
        events: Some(EVENTS),
        rate: None,
        max_rate: None,
        seed: 3,
        base_time_ms: None,
        hot_auction_ratio: None,
        hot_sellers_ratio: None,
        hot_bidders_ratio: None,
        num_in_flight_auctions: None,
        num_active_people: None,
        avg_person_bytes: Some(0),
        avg_auction_bytes: None,
        avg_bid_bytes: None,
        splits,
    }
}

/// The readers of `parallelism` subtasks over `splits`.
fn readers(
    p: &NexmarkSourcePlan,
    splits: &[NexmarkPosition],
    parallelism: u32,
) -> Vec<NexmarkReader> {
    round_robin(splits, parallelism)
        .iter()
        .map(|mine| NexmarkReader::new(p, mine).expect("reader"))
        .collect()
}

/// Polls every reader `polls` times (None: to the end); returns the person ids emitted and
/// whether each reader's event times never went back.
fn run(readers: &mut [NexmarkReader], polls: Option<usize>) -> Vec<i64> {
    let mut ids = Vec::new();
    for r in readers {
        let (mut out, mut fin) = (Vec::new(), Vec::new());
        let mut last_time = i64::MIN;
        let mut n = 0;
        while polls.is_none_or(|p| n < p) {
            n += 1;
            let status = r
                .poll(&mut out, &mut fin, std::time::Duration::ZERO)
                .expect("poll");
            for SplitBatch { split, batch } in out.drain(..) {
                assert_eq!(split, 0, "one watermark split per reader");
                let times = batch
                    .column(6)
                    .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
                for t in times.values() {
                    assert!(*t >= last_time, "event time went back");
                    last_time = *t;
                }
                ids.extend(
                    batch
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
            }
            if status == SourceStatus::Finished {
                break;
            }
        }
    }
    ids
}

fn positions(readers: &[NexmarkReader]) -> Vec<SplitPosition> {
    readers.iter().flat_map(|r| r.positions()).collect()
}

/// Reads at `from` for a few polls, checkpoints, restores at `to`, reads to the end: the
/// ids emitted before and after are every person id exactly once.
fn restore_is_exact(splits: u32, from: u32, to: u32, polls_before: usize) {
    let p = plan(splits);
    let first = splits_to_read(&p, &[]).expect("splits");
    assert_eq!(first.len(), splits as usize);
    let mut before = readers(&p, &first, from);
    let mut ids = run(&mut before, Some(polls_before));
    let mut starts = SourceStarts::default();
    starts.restore(positions(&before));
    // The job's max_parallelism may change too: the checkpoint's splits stay.
    let restored = splits_to_read(&plan(splits * 2), &starts.nexmark).expect("restored");
    assert!(restored.iter().all(|s| s.splits == splits));
    let mut after = readers(&p, &restored, to);
    ids.extend(run(&mut after, None));
    let persons = EVENTS.div_ceil(50) as i64;
    let expected: Vec<i64> = (1000..1000 + persons).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, expected,
        "{splits} splits, {from} → {to}: each person once"
    );
}

#[test]
fn a_restore_at_any_parallelism_emits_every_event_once() {
    // A poll generates up to 4096 rows: one poll reads part of a reader's persons.
    for (splits, from, to, polls) in [
        (8, 2, 3, 1),
        (8, 3, 2, 1),
        (8, 1, 8, 0),
        (8, 8, 1, 1),
        (6, 4, 5, 1),
        (5, 2, 7, 1),
    ] {
        restore_is_exact(splits, from, to, polls);
    }
}

#[test]
fn a_checkpoint_without_finished_splits_restores_the_others() {
    // Subtask 0 of 2 finished (its splits ended, so later checkpoints lack them).
    let p = plan(4);
    let first = splits_to_read(&p, &[]).expect("splits");
    let mut r = readers(&p, &first, 2);
    let mut ids = run(&mut r[..1], None);
    let mut starts = SourceStarts::default();
    starts.restore(r[1].positions());
    let restored = splits_to_read(&p, &starts.nexmark).expect("restored");
    assert_eq!(restored.iter().map(|s| s.split).collect::<Vec<_>>(), [1, 3]);
    ids.extend(run(&mut readers(&p, &restored, 3), None));
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!((ids.len(), unique.len()), (400, 400));
}

#[test]
fn first_splits_of_a_parallelism_dividing_them_are_strides() {
    // Subtask i of p reads splits i, i + p, …: event numbers ≡ i (mod p).
    let first = splits_to_read(&plan(8), &[]).expect("splits");
    let a = round_robin(&first, 4);
    let mine: Vec<u32> = a[1].iter().map(|s| s.split).collect();
    assert_eq!(mine, [1, 5]);
    assert_eq!(
        SourceAssignment::Nexmark(a[1].clone()).describe(),
        "nexmark splits 1, 5 of 8"
    );
}

#[test]
fn inconsistent_checkpoints_are_refused() {
    let p = plan(4);
    let at = |split, splits, next_event| NexmarkPosition {
        split,
        splits,
        next_event,
    };
    for bad in [
        vec![at(0, 4, 0), at(1, 8, 1)],
        vec![at(1, 4, 5), at(1, 4, 9)],
        vec![at(4, 4, 4)],
        vec![at(1, 4, 2)],
    ] {
        assert!(splits_to_read(&p, &bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_reader_matches_the_generator_event_by_event() {
    let p = plan(3);
    let g = NexmarkGenerator::new(NexmarkConfig::from_plan(&p)).expect("generator");
    let mine = vec![NexmarkPosition {
        split: 2,
        splits: 3,
        next_event: 2,
    }];
    let ids = run(&mut readers(&p, &mine, 1), None);
    let expected: Vec<i64> = (0..EVENTS)
        .filter(|n| n % 3 == 2 && Table::of_event(*n) == Table::Person)
        .map(|n| match g.event(n) {
            crate::nexmark::Event::Person(person) => person.id,
            _ => unreachable!("a person"),
        })
        .collect();
    assert_eq!(ids, expected);
}

#[test]
fn what_the_planner_accepts_the_generator_accepts() {
    let job = |knobs: &str| {
        format!(
            "name = \"n\"\n[source]\nconnector = \"nexmark\"\ntable = \"bid\"\n{knobs}\n\
             [sink]\nconnector = \"stdout\"\n"
        )
    };
    let edge = "events = 1\nrate = 1\nseed = 0\nhot_auction_ratio = 1\nhot_sellers_ratio = 1\n\
                hot_bidders_ratio = 1\nnum_in_flight_auctions = 1\nnum_active_people = 1\n\
                avg_person_bytes = 65536\navg_auction_bytes = 0\navg_bid_bytes = 65536";
    let o = kappa_job::Overrides::default();
    let plan = kappa_job::plan_job("job.toml", &job(edge), &o).expect("plans");
    let kappa_job::plan::SourceKind::Nexmark(n) = &plan.sources[0].kind else {
        panic!("a nexmark source")
    };
    NexmarkConfig::from_plan(n)
        .validate()
        .expect("the generator takes it");
    // One past the generator's limit is refused by the planner, with its location.
    let over = job(&format!(
        "avg_bid_bytes = {}",
        crate::nexmark::MAX_AVG_BYTES + 1
    ));
    let errs = kappa_job::plan_job("job.toml", &over, &o)
        .expect_err("refused")
        .0;
    assert_eq!(
        (errs[0].field.as_str(), errs[0].line),
        ("source.avg_bid_bytes", Some(5))
    );
}

#[test]
fn a_paced_reader_stays_within_its_share_of_max_rate() {
    // 2000 events/s for the source; this reader has 1 of its 2 splits: 1000 events/s.
    let p = NexmarkSourcePlan {
        events: None,
        max_rate: Some(2000),
        ..plan(2)
    };
    let mine = [NexmarkPosition {
        split: 0,
        splits: 2,
        next_event: 0,
    }];
    let started = std::time::Instant::now();
    let mut r = NexmarkReader::new(&p, &mine).expect("reader");
    let (mut out, mut fin) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        r.poll(&mut out, &mut fin, std::time::Duration::from_millis(100))
            .expect("poll");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let [SplitPosition::Nexmark(at)] = r.positions()[..] else {
        panic!("one split")
    };
    let events = at.next_event / 2;
    assert!(events >= 1, "it generates");
    assert!(
        events as f64 <= 1000.0 * elapsed + 1.0,
        "{events} events in {elapsed:.3} s"
    );
}
