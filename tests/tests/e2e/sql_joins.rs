//! Joins in SQL end to end on the built-in Nexmark source (q5 and q8 as examples/nexmark
//! writes them), on a jobmanager with two
//! taskmanagers, with a taskmanager killed with SIGKILL after a checkpoint: Nexmark q8 (persons
//! who opened auctions in the 10-second window they registered in — a join of two windowed
//! aggregates) and an interval join (bids within 10 s of their auction's creation), each
//! exactly equal to what the generator's events give, every row once; and a temporal join
//! (each bid with its bidder's person record as of the bid's time).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kappa_connectors::nexmark::{Event, NexmarkConfig, NexmarkGenerator};
use kappa_integration_tests::example_sql;
use kappa_integration_tests::recovery::{
    RECOVERY, cluster, first_checkpoint, kill_a_taskmanager, part_file_lines,
};

const EVENTS: u64 = 120_000;
const SEED: u64 = 5;
const WINDOW: i64 = 10_000;

fn events() -> impl Iterator<Item = Event> {
    let g = NexmarkGenerator::new(NexmarkConfig {
        events: Some(EVENTS),
        seed: SEED,
        ..NexmarkConfig::default()
    })
    .expect("generator");
    (0..EVENTS).map(move |n| g.event(n))
}

fn source(table: &str) -> String {
    format!(
        r#"
[sources.{table}]
connector = "nexmark"
table = "{table}"
events = {EVENTS}
seed = {SEED}
max_rate = 20000
event_time = {{ column = "date_time", max_out_of_orderness = "0s" }}
"#
    )
}

fn job(out: &Path) -> String {
    format!(
        r#"name = "nexmark-joins"
parallelism = 2
{person}{auction}{bid}
[sinks.q8]
connector = "file"
path = "{q8}"
delivery = "exactly-once"

[sinks.soon]
connector = "file"
path = "{soon}"
delivery = "exactly-once"

[sinks.named]
connector = "file"
path = "{named}"
delivery = "exactly-once"

[[queries]]
name = "named"
sql = """
INSERT INTO named
SELECT B.auction, B.price, P.name
FROM bid B JOIN person FOR SYSTEM_TIME AS OF B.date_time AS P ON B.bidder = P.id
"""

[sinks.q5]
connector = "file"
path = "{q5}"
delivery = "exactly-once"

[[queries]]
name = "q5"
sql = """
{q5_sql}"""

[[queries]]
name = "q8"
sql = """
{q8_sql}"""

[[queries]]
name = "soon"
sql = """
INSERT INTO soon
SELECT B.auction, B.bidder, B.price, A.seller
FROM bid B JOIN auction A
ON B.auction = A.id
AND B.date_time BETWEEN A.date_time AND A.date_time + INTERVAL '10' SECOND
"""

{RECOVERY}"#,
        person = source("person"),
        auction = source("auction"),
        bid = source("bid"),
        q8 = out.join("q8").display(),
        soon = out.join("soon").display(),
        named = out.join("named").display(),
        q8_sql = example_sql("q8"),
        q5_sql = example_sql("q5"),
        q5 = out.join("q5").display(),
    )
}

/// q8 from the events: (person, name, window start) of persons who opened an auction in the
/// window they registered in.
fn q8() -> BTreeSet<(i64, String, i64)> {
    let start = |t: i64| t - t.rem_euclid(WINDOW);
    let mut persons = BTreeSet::new();
    let mut sellers = BTreeSet::new();
    for e in events() {
        match e {
            Event::Person(p) => {
                persons.insert((p.id, p.name, start(p.date_time)));
            }
            Event::Auction(a) => {
                sellers.insert((a.seller, start(a.date_time)));
            }
            Event::Bid(_) => {}
        }
    }
    persons
        .into_iter()
        .filter(|(id, _, w)| sellers.contains(&(*id, *w)))
        .collect()
}

/// q5 from the events: in each 10 s window sliding by 2 s, the auctions with the most bids,
/// (auction, bids) → how many such rows.
fn q5() -> BTreeMap<(i64, i64), usize> {
    let mut counts: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for e in events() {
        if let Event::Bid(b) = e {
            let last = b.date_time - b.date_time.rem_euclid(2_000);
            for k in 0..5 {
                *counts.entry((last - k * 2_000, b.auction)).or_insert(0) += 1;
            }
        }
    }
    let mut max: BTreeMap<i64, i64> = BTreeMap::new();
    for ((w, _), n) in &counts {
        let m = max.entry(*w).or_insert(0);
        *m = (*m).max(*n);
    }
    let mut out = BTreeMap::new();
    for ((w, auction), n) in counts {
        if n >= max[&w] {
            *out.entry((auction, n)).or_insert(0) += 1;
        }
    }
    out
}

/// Bids within 10 s of their auction's creation: (auction, bidder, price, seller) → how many.
fn soon() -> BTreeMap<(i64, i64, i64, i64), usize> {
    let mut auctions = BTreeMap::new();
    let mut bids = Vec::new();
    for e in events() {
        match e {
            Event::Auction(a) => {
                auctions.insert(a.id, (a.date_time, a.seller));
            }
            Event::Bid(b) => bids.push(b),
            Event::Person(_) => {}
        }
    }
    let mut out = BTreeMap::new();
    for b in bids {
        if let Some((t, seller)) = auctions.get(&b.auction)
            && (0..=WINDOW).contains(&(b.date_time - t))
        {
            *out.entry((b.auction, b.bidder, b.price, *seller))
                .or_insert(0) += 1;
        }
    }
    out
}

/// Bids with the name their bidder had at the bid's time (persons registered by then):
/// (auction, price, name) → how many.
fn named() -> BTreeMap<(i64, i64, String), usize> {
    let mut persons = BTreeMap::new();
    let mut bids = Vec::new();
    for e in events() {
        match e {
            Event::Person(p) => {
                persons.insert(p.id, (p.date_time, p.name));
            }
            Event::Bid(b) => bids.push(b),
            Event::Auction(_) => {}
        }
    }
    let mut out = BTreeMap::new();
    for b in bids {
        if let Some((t, name)) = persons.get(&b.bidder)
            && *t <= b.date_time
        {
            *out.entry((b.auction, b.price, name.clone())).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn nexmark_q8_and_an_interval_join_are_exact_across_a_kill() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cluster, mut tms) = cluster(dir.path());
    let out = dir.path().join("out");
    let id = cluster.submit(&job(&out), &[]).expect("submit");
    first_checkpoint(&cluster, &id);
    kill_a_taskmanager(&cluster, &mut tms, &id);
    cluster
        .wait_state(&id, &["FINISHED"], Duration::from_secs(180))
        .expect("the bounded job to finish");

    let expected = q8();
    assert!(expected.len() > 100, "{} q8 rows", expected.len());
    let rows: Vec<(i64, String, i64)> = part_file_lines(&out.join("q8"))
        .iter()
        .map(|v| {
            (
                v["id"].as_i64().unwrap_or(-1),
                v["name"].as_str().unwrap_or_default().to_string(),
                v["starttime"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let got: BTreeMap<_, ()> = rows.iter().map(|r| (r.clone(), ())).collect();
    let want: BTreeMap<_, ()> = expected.iter().map(|r| (r.clone(), ())).collect();
    cluster.assert_results(&id, &got, &want);
    assert_eq!(rows.len(), expected.len(), "every q8 row once");

    let expected = soon();
    assert!(expected.len() > 1000, "{} joined bids", expected.len());
    let mut got: BTreeMap<(i64, i64, i64, i64), usize> = BTreeMap::new();
    for v in part_file_lines(&out.join("soon")) {
        let n = |c: &str| v[c].as_i64().unwrap_or(-1);
        *got.entry((n("auction"), n("bidder"), n("price"), n("seller")))
            .or_insert(0) += 1;
    }
    cluster.assert_results(&id, &got, &expected);

    let expected = q5();
    // A row per window (more on ties): 12 s of events in windows sliding by 2 s.
    let rows: usize = expected.values().sum();
    assert!(rows >= 5, "{rows} q5 rows: {expected:?}");
    let mut got: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for v in part_file_lines(&out.join("q5")) {
        let n = |c: &str| v[c].as_i64().unwrap_or(-1);
        *got.entry((n("auction"), n("num"))).or_insert(0) += 1;
    }
    cluster.assert_results(&id, &got, &expected);

    let expected = named();
    assert!(expected.len() > 1000, "{} named bids", expected.len());
    let mut got: BTreeMap<(i64, i64, String), usize> = BTreeMap::new();
    for v in part_file_lines(&out.join("named")) {
        let key = (
            v["auction"].as_i64().unwrap_or(-1),
            v["price"].as_i64().unwrap_or(-1),
            v["name"].as_str().unwrap_or_default().to_string(),
        );
        *got.entry(key).or_insert(0) += 1;
    }
    cluster.assert_results(&id, &got, &expected);
}
