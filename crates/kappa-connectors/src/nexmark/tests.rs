//! Tests of the Nexmark generator: determinism, the reference model's proportions, ids,
//! times and hot shares, and the split/position scheme.

use arrow::array::AsArray;
use arrow::compute::concat_batches;
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::*;

const ALL: [Table; 3] = [Table::Person, Table::Auction, Table::Bid];

fn generator(config: NexmarkConfig) -> NexmarkGenerator {
    NexmarkGenerator::new(config).expect("valid config")
}

fn bounded(events: u64) -> NexmarkGenerator {
    generator(NexmarkConfig {
        events: Some(events),
        seed: 42,
        ..NexmarkConfig::default()
    })
}

/// Runs `split` from its first position to the end of a bounded sequence in `max_rows` calls.
fn read_split(g: &NexmarkGenerator, split: Split, max_rows: usize) -> [RecordBatch; 3] {
    let mut parts: [Vec<RecordBatch>; 3] = Default::default();
    let mut position = split.first_position();
    loop {
        let filled = g.fill(split, position, max_rows, &ALL).expect("fill");
        for (i, t) in ALL.into_iter().enumerate() {
            parts[i].push(filled.batch(t).expect("requested").clone());
        }
        position = filled.next_position;
        if filled.finished {
            break;
        }
    }
    ALL.map(|t| {
        let i = t as usize;
        concat_batches(&table_schema(t), &parts[i]).expect("concat")
    })
}

fn int64(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let array = batch.column_by_name(column).expect("column");
    match array.as_primitive_opt::<Int64Type>() {
        Some(a) => a.values().to_vec(),
        None => array
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .to_vec(),
    }
}

/// Every row as one string, sorted: compares tables as multisets.
fn sorted_rows(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default();
    let columns: Vec<ArrayFormatter> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
        .collect();
    let mut rows: Vec<String> = (0..batch.num_rows())
        .map(|r| {
            let cells: Vec<String> = columns.iter().map(|c| c.value(r).to_string()).collect();
            cells.join("|")
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn same_seed_gives_same_rows_and_a_range_in_two_halves_equals_it_at_once() {
    let g = generator(NexmarkConfig {
        seed: 7,
        ..NexmarkConfig::default()
    });
    let split = Split::new(0, 1).expect("split");
    let whole = g.fill(split, 0, 1000, &ALL).expect("fill");
    let again = generator(g.config().clone())
        .fill(split, 0, 1000, &ALL)
        .expect("fill");
    let first = g.fill(split, 0, 500, &ALL).expect("fill");
    assert_eq!(first.next_position, 500);
    let second = g.fill(split, 500, 500, &ALL).expect("fill");
    assert_eq!(second.next_position, whole.next_position);
    for t in ALL {
        let halves = [first.batch(t), second.batch(t)].map(|b| b.expect("requested").clone());
        let joined = concat_batches(&table_schema(t), &halves).expect("concat");
        assert_eq!(whole.batch(t), Some(&joined), "{t:?} in two halves");
        assert_eq!(whole.batch(t), again.batch(t), "{t:?} generated twice");
    }
    let other = generator(NexmarkConfig {
        seed: 8,
        ..NexmarkConfig::default()
    });
    let other = other.fill(split, 0, 1000, &ALL).expect("fill");
    assert_ne!(whole.bid, other.bid, "another seed, other bids");
}

#[test]
fn proportions_are_exactly_1_3_46_per_50_events() {
    let k = 200;
    let [person, auction, bid] = read_split(&bounded(50 * k), Split::new(0, 1).expect("s"), 999);
    assert_eq!(person.num_rows() as u64, k);
    assert_eq!(auction.num_rows() as u64, 3 * k);
    assert_eq!(bid.num_rows() as u64, 46 * k);
    // Any 50·k consecutive event numbers, not only those from 0.
    let mut counts = [0u64; 3];
    for n in 12_345..12_345 + 50 * k {
        counts[Table::of_event(n) as usize] += 1;
    }
    assert_eq!(counts, [k, 3 * k, 46 * k]);
}

#[test]
fn ids_follow_the_reference_model() {
    let g = bounded(20_000);
    let in_flight = i64::from(g.config().num_in_flight_auctions);
    let (mut persons, mut auctions) = (0i64, 0i64);
    let mut bids_ahead = 0;
    let mut bids = 0;
    for n in 0..20_000 {
        let last_person = FIRST_PERSON_ID + persons - 1;
        let last_auction = FIRST_AUCTION_ID + auctions - 1;
        // Sellers and bidders: a person that exists or one at most the lead ahead.
        let persons_in_reach = FIRST_PERSON_ID..=last_person + PERSON_ID_LEAD as i64;
        match g.event(n) {
            Event::Person(p) => {
                assert_eq!(
                    p.id,
                    FIRST_PERSON_ID + persons,
                    "person ids are consecutive"
                );
                persons += 1;
            }
            Event::Auction(a) => {
                assert_eq!(
                    a.id,
                    FIRST_AUCTION_ID + auctions,
                    "auction ids are consecutive"
                );
                auctions += 1;
                assert!(
                    persons_in_reach.contains(&a.seller),
                    "event {n}: seller {} out of reach of person {last_person}",
                    a.seller
                );
                assert!((FIRST_CATEGORY_ID..FIRST_CATEGORY_ID + 5).contains(&a.category));
                assert!(a.reserve > a.initial_bid && a.initial_bid >= 100);
                assert!(a.expires > a.date_time);
            }
            Event::Bid(b) => {
                bids += 1;
                let lead = AUCTION_ID_LEAD as i64;
                assert!(
                    b.auction >= (last_auction - in_flight).max(FIRST_AUCTION_ID)
                        && b.auction <= last_auction + lead,
                    "event {n}: bid for auction {} outside the in-flight window of {last_auction}",
                    b.auction
                );
                if b.auction > last_auction {
                    bids_ahead += 1;
                }
                assert!(persons_in_reach.contains(&b.bidder), "event {n}: bidder");
                assert!((100..=100_000_000).contains(&b.price));
            }
        }
    }
    // The reference's leads: cold bids (1/2) pick among 111 auctions, 10 of them ahead.
    let share = f64::from(bids_ahead) / f64::from(bids);
    assert!((0.03..0.06).contains(&share), "share of bids ahead {share}");
}

#[test]
fn event_times_are_non_decreasing_within_a_split_and_spaced_by_the_rate() {
    let g = generator(NexmarkConfig {
        rate: 3,
        base_time_ms: 1_000,
        ..NexmarkConfig::default()
    });
    let split = Split::new(1, 3).expect("split");
    let numbers: Vec<u64> = (0..3000).map(|i| 1 + 3 * i).collect();
    let filled = g.fill(split, 1, 2000, &[Table::Bid]).expect("fill");
    let expected: Vec<i64> = numbers
        .iter()
        .filter(|&&n| Table::of_event(n) == Table::Bid)
        .map(|&n| 1_000 + (n * 1000 / 3) as i64)
        .collect();
    let times = int64(filled.bid.as_ref().expect("bids"), "date_time");
    assert_eq!(times, expected[..2000]);
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    // Across tables too: the split's events in number order.
    let all: Vec<i64> = numbers.iter().map(|&n| time_of(&g.event(n))).collect();
    assert!(all.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(all[1999], 1_000 + 5998 * 1000 / 3);
}

fn time_of(event: &Event) -> i64 {
    match event {
        Event::Person(p) => p.date_time,
        Event::Auction(a) => a.date_time,
        Event::Bid(b) => b.date_time,
    }
}

#[test]
fn hot_auctions_bidders_and_sellers_get_their_share() {
    for ratio in [2, 4] {
        let g = generator(NexmarkConfig {
            events: Some(100_000),
            hot_auction_ratio: ratio,
            hot_bidders_ratio: ratio,
            hot_sellers_ratio: ratio,
            ..NexmarkConfig::default()
        });
        let (mut bids, mut hot_bids, mut hot_bidders) = (0.0, 0.0, 0.0);
        let (mut auctions, mut hot_sellers) = (0.0, 0.0);
        for n in 0..100_000 {
            let group = |last: u64| (last - 1) / HOT_GROUP * HOT_GROUP;
            let hot_person = FIRST_PERSON_ID + group(persons_up_to(n)) as i64;
            match g.event(n) {
                Event::Bid(b) => {
                    bids += 1.0;
                    let hot = FIRST_AUCTION_ID + group(auctions_up_to(n)) as i64;
                    hot_bids += f64::from(u8::from(b.auction == hot));
                    hot_bidders += f64::from(u8::from(b.bidder == hot_person + 1));
                }
                Event::Auction(a) => {
                    auctions += 1.0;
                    hot_sellers += f64::from(u8::from(a.seller == hot_person));
                }
                Event::Person(_) => {}
            }
        }
        // Hot with 1 - 1/ratio, plus the few cold draws that land on the hot one.
        let expected = 1.0 - 1.0 / f64::from(ratio);
        for (what, share, tolerance) in [
            ("auctions", hot_bids / bids, 0.015),
            ("bidders", hot_bidders / bids, 0.015),
            ("sellers", hot_sellers / auctions, 0.03),
        ] {
            assert!(
                (share - expected).abs() < tolerance,
                "ratio {ratio}: hot {what} share {share}, expected {expected}"
            );
        }
    }
}

#[test]
fn a_bounded_sequence_ends_exactly_at_n_across_splits() {
    let g = bounded(1003);
    let mut totals = [0usize; 3];
    for index in 0..4 {
        let split = Split::new(index, 4).expect("split");
        let tables = read_split(&g, split, 37);
        for t in ALL {
            totals[t as usize] += tables[t as usize].num_rows();
        }
        let last = (1003 - 1 - u64::from(index)) / 4 * 4 + u64::from(index);
        let after = g
            .fill(split, last + 4, 37, &ALL)
            .expect("fill past the end");
        assert!(after.finished && after.next_position == last + 4);
        assert_eq!(after.bid.expect("requested").num_rows(), 0);
    }
    let mut expected = [0usize; 3];
    for n in 0..1003 {
        expected[Table::of_event(n) as usize] += 1;
    }
    assert_eq!(totals, expected);
    assert_eq!(totals.iter().sum::<usize>(), 1003);
}

#[test]
fn the_splits_partition_the_sequence() {
    let g = bounded(5000);
    let whole = read_split(&g, Split::new(0, 1).expect("split"), 5000);
    let parts: Vec<[RecordBatch; 3]> = (0..3)
        .map(|i| read_split(&g, Split::new(i, 3).expect("split"), 101))
        .collect();
    for t in ALL {
        let i = t as usize;
        let batches: Vec<RecordBatch> = parts.iter().map(|p| p[i].clone()).collect();
        let union = concat_batches(&table_schema(t), &batches).expect("concat");
        assert_eq!(sorted_rows(&union), sorted_rows(&whole[i]), "{t:?}");
    }
    let mut ids = int64(
        &concat_batches(&table_schema(Table::Person), parts.iter().map(|p| &p[0])).expect("c"),
        "id",
    );
    ids.sort();
    assert_eq!(
        ids,
        (FIRST_PERSON_ID..FIRST_PERSON_ID + 100).collect::<Vec<_>>()
    );
}

#[test]
fn fill_stops_at_max_rows_and_returns_only_the_requested_tables() {
    let g = generator(NexmarkConfig::default());
    let split = Split::new(0, 1).expect("split");
    let filled = g.fill(split, 0, 100, &[Table::Bid]).expect("fill");
    assert!(filled.person.is_none() && filled.auction.is_none() && !filled.finished);
    assert_eq!(filled.bid.as_ref().map(RecordBatch::num_rows), Some(100));
    // 100 bids: events 4..50 (46) and 54..100 (46), then 104..112 (8); the next is 112.
    assert_eq!(filled.next_position, 112);
    // Split 1 of 50 never holds a person: the call returns after max_rows·50 event numbers.
    let none = g.fill(Split::new(1, 50).expect("split"), 1, 10, &[Table::Person]);
    let none = none.expect("fill");
    assert_eq!(none.person.map(|b| b.num_rows()), Some(0));
    assert_eq!(none.next_position, 1 + 10 * 50 * 50);
}

#[test]
fn records_average_their_configured_size() {
    let g = bounded(50_000);
    let (mut sizes, mut counts) = ([0usize; 3], [0usize; 3]);
    for n in 0..50_000 {
        let (table, size) = match g.event(n) {
            Event::Person(p) => (
                Table::Person,
                8 + p.name.len()
                    + p.email_address.len()
                    + p.credit_card.len()
                    + p.city.len()
                    + p.state.len()
                    + p.extra.len(),
            ),
            Event::Auction(a) => (
                Table::Auction,
                48 + a.item_name.len() + a.description.len() + a.extra.len(),
            ),
            Event::Bid(b) => (Table::Bid, 32 + b.extra.len()),
        };
        sizes[table as usize] += size;
        counts[table as usize] += 1;
    }
    for (t, wanted) in ALL.into_iter().zip([200.0, 500.0, 100.0]) {
        let average = sizes[t as usize] as f64 / counts[t as usize] as f64;
        assert!(
            (average / wanted - 1.0).abs() < 0.03,
            "{t:?}: average {average} bytes"
        );
    }
}

#[test]
fn invalid_configs_and_requests_are_refused() {
    let refused = |config: NexmarkConfig| NexmarkGenerator::new(config).expect_err("refused");
    let d = NexmarkConfig::default;
    for (config, field) in [
        (NexmarkConfig { rate: 0, ..d() }, "rate"),
        (
            NexmarkConfig {
                events: Some(0),
                ..d()
            },
            "events",
        ),
        (
            NexmarkConfig {
                hot_auction_ratio: 0,
                ..d()
            },
            "hot_auction_ratio",
        ),
        (
            NexmarkConfig {
                num_in_flight_auctions: 0,
                ..d()
            },
            "num_in_flight_auctions",
        ),
    ] {
        let error = refused(config);
        assert!(
            matches!(error, NexmarkError::NotPositive { field: f } if f == field),
            "{error}"
        );
    }
    let error = refused(NexmarkConfig {
        avg_bid_bytes: MAX_AVG_BYTES + 1,
        ..d()
    });
    assert!(matches!(
        error,
        NexmarkError::TooLarge {
            field: "avg_bid_bytes",
            ..
        }
    ));
    assert!(matches!(
        Split::new(3, 3),
        Err(NexmarkError::NoSuchSplit { index: 3, count: 3 })
    ));
    assert!(Split::new(0, 0).is_err());
    let g = generator(d());
    let split = Split::new(1, 3).expect("split");
    let wrong = g.fill(split, 3, 10, &ALL).expect_err("position of split 0");
    assert!(matches!(
        wrong,
        NexmarkError::PositionNotInSplit { position: 3, .. }
    ));
    assert!(matches!(
        g.fill(split, 1, 10, &[]),
        Err(NexmarkError::NoTable)
    ));
    assert!(matches!(
        g.fill(split, 1, 0, &ALL),
        Err(NexmarkError::NotPositive { field: "max_rows" })
    ));
}
