//! The Nexmark queries of examples/nexmark, end to end: their SQL (read from the example files)
//! runs over a bounded bid sequence at parallelism 2 on `kappa local`, several queries per job,
//! and each sink's rows must equal those computed here from the generator library's events in
//! plain Rust (independent of Kappa's SQL). Appending queries go to exactly-once file sinks;
//! the updating ones (q15–q17) upsert into keyed topics of a real broker, whose latest record
//! per key must be the reference's final row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kappa_connectors::nexmark::{
    Bid, DEFAULT_BASE_TIME_MS, Event, NexmarkConfig, NexmarkGenerator,
};
use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::example_sql;
use serde_json::{Value, json};

const EVENTS: u64 = 50_000;
const SEED: u64 = 7;
/// One event per second of event time: the 50 000 events span about 14 hours, from 18:00 of
/// the first day into the morning of the next (two days, every time of day of q14).
const RATE: u64 = 1;
const BASE_MS: i64 = DEFAULT_BASE_TIME_MS + 18 * 3_600_000;
const SESSION_GAP_MS: i64 = 10_000;
const HOT_CHANNELS: [&str; 4] = ["apple", "google", "facebook", "baidu"];

/// The bids of the sequence, from the generator library.
fn bids() -> Vec<Bid> {
    let g = NexmarkGenerator::new(NexmarkConfig {
        events: Some(EVENTS),
        seed: SEED,
        rate: RATE,
        base_time_ms: BASE_MS,
        ..NexmarkConfig::default()
    })
    .expect("generator");
    (0..EVENTS)
        .filter_map(|n| match g.event(n) {
            Event::Bid(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// A job reading the bid sequence with `sinks` (TOML tables) and the examples' `queries`.
fn job(name: &str, sinks: &str, queries: &[&str]) -> String {
    let mut job = format!(
        r#"name = "{name}"
parallelism = 2

[sources.bid]
connector = "nexmark"
table = "bid"
events = {EVENTS}
seed = {SEED}
rate = {RATE}
base_time = {BASE_MS}
event_time = {{ column = "date_time", max_out_of_orderness = "0s" }}

{sinks}
"#
    );
    for q in queries {
        job += &format!(
            "[[queries]]\nname = \"{q}\"\nsql = \"\"\"{}\"\"\"\n\n",
            example_sql(q)
        );
    }
    job
}

/// Submits `job` and waits until the bounded job has FINISHED; its id.
fn run_to_the_end(cluster: &Cluster, job: &str) -> String {
    let id = cluster.submit(job, &[]).expect("submit");
    cluster
        .wait_state(&id, &["FINISHED"], Duration::from_secs(300))
        .expect("the bounded job to finish");
    id
}

/// (year, month, day, hour, minute, second, millisecond) of epoch milliseconds (UTC).
fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    )
}

/// Epoch milliseconds of a `YYYY-MM-DD?HH:MM:SS[.fff][Z]` timestamp (UTC).
fn epoch_ms(text: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let fraction = text.get(19..)?.trim_end_matches('Z');
    let millis = match fraction.strip_prefix('.') {
        Some(f) => format!("{f:0<3}").get(..3)?.parse::<i64>().ok()?,
        None if fraction.is_empty() => 0,
        None => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 + ((hh * 60 + mm) * 60 + ss) * 1000 + millis)
}

fn day(ms: i64) -> String {
    let (y, m, d, ..) = civil(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

fn hour_minute(ms: i64) -> String {
    let (_, _, _, h, mi, ..) = civil(ms);
    format!("{h:02}:{mi:02}")
}

/// A row as canonical text: keys sorted, numbers as serde_json reads their shortest text (so
/// an f64 computed here compares exactly with one the sink printed), `date_time` as epoch ms.
fn canonical(row: &Value) -> String {
    let reread: Value = serde_json::from_str(&row.to_string()).expect("json");
    let mut sorted: BTreeMap<String, Value> = reread
        .as_object()
        .expect("a row is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(Value::String(t)) = sorted.get("date_time") {
        let ms = epoch_ms(t).unwrap_or_else(|| panic!("date_time `{t}` is not a timestamp"));
        sorted.insert("date_time".into(), json!(ms));
    }
    serde_json::to_string(&sorted).expect("json")
}

/// Rows as a multiset: canonical text → how many times.
fn multiset(rows: impl IntoIterator<Item = Value>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry(canonical(&r)).or_insert(0) += 1;
    }
    out
}

/// The rows of a file sink's committed part files.
fn file_rows(dir: &Path) -> Vec<Value> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).expect("sink directory") {
        let path = entry.expect("entry").path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("part file").lines() {
            rows.push(serde_json::from_str(line).expect("a json line"));
        }
    }
    rows
}

fn euros(price: i64) -> f64 {
    0.908 * price as f64
}

/// Flink's REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2), by hand.
fn channel_id(url: &str) -> Option<&str> {
    let at = url.match_indices("channel_id=").find_map(|(i, _)| {
        (i == 0 || url.as_bytes()[i - 1] == b'&').then_some(i + "channel_id=".len())
    })?;
    Some(url[at..].split('&').next().unwrap_or_default())
}

/// What each appending query must write, by query.
fn appending_reference(bids: &[Bid]) -> BTreeMap<&'static str, Vec<Value>> {
    let mut r: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    for b in bids {
        let t = b.date_time;
        r.entry("q0").or_default().push(json!({
            "auction": b.auction, "bidder": b.bidder, "price": b.price, "date_time": t,
            "extra": b.extra,
        }));
        r.entry("q1").or_default().push(json!({
            "auction": b.auction, "bidder": b.bidder, "price": euros(b.price), "date_time": t,
            "extra": b.extra,
        }));
        if b.auction % 123 == 0 {
            r.entry("q2")
                .or_default()
                .push(json!({"auction": b.auction, "price": b.price}));
        }
        r.entry("q10").or_default().push(json!({
            "auction": b.auction, "bidder": b.bidder, "price": b.price, "date_time": t,
            "extra": b.extra, "dt": day(t), "hm": hour_minute(t),
        }));
        let e = euros(b.price);
        if e > 1_000_000.0 && e < 50_000_000.0 {
            let hour = civil(t).3;
            let kind = match hour {
                8..=18 => "dayTime",
                h if h <= 6 || h >= 20 => "nightTime",
                _ => "otherTime",
            };
            r.entry("q14").or_default().push(json!({
                "auction": b.auction, "bidder": b.bidder, "price": e, "bid_time_type": kind,
                "date_time": t, "extra": b.extra,
                "c_counts": b.extra.chars().filter(|c| *c == 'c').count(),
            }));
        }
        let lower = b.channel.to_lowercase();
        let hot = HOT_CHANNELS.iter().position(|c| *c == lower);
        let id = match hot {
            Some(i) => Some(i.to_string()),
            None => channel_id(b.url).map(str::to_string),
        };
        if let Some(id) = id {
            r.entry("q21").or_default().push(json!({
                "auction": b.auction, "bidder": b.bidder, "price": b.price,
                "channel": b.channel, "channel_id": id,
            }));
        }
        let dirs: Vec<&str> = b.url.split('/').collect();
        let dir = |i: usize| dirs.get(i).copied().unwrap_or_default();
        r.entry("q22").or_default().push(json!({
            "auction": b.auction, "bidder": b.bidder, "price": b.price, "channel": b.channel,
            "dir1": dir(3), "dir2": dir(4), "dir3": dir(5),
        }));
    }
    // q11: sessions of each bidder, closed by 10 s without a bid (touching windows merge).
    let mut times: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in bids {
        times.entry(b.bidder).or_default().push(b.date_time);
    }
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let mut session: Option<(i64, i64, i64)> = None; // start, end, count
        for t in ts {
            session = match session {
                Some((s, e, n)) if t <= e => Some((s, e.max(t + SESSION_GAP_MS), n + 1)),
                other => {
                    if let Some((s, e, n)) = other {
                        r.entry("q11").or_default().push(
                            json!({"bidder": bidder, "bid_count": n, "starttime": s, "endtime": e}),
                        );
                    }
                    Some((t, t + SESSION_GAP_MS, 1))
                }
            };
        }
        if let Some((s, e, n)) = session {
            r.entry("q11")
                .or_default()
                .push(json!({"bidder": bidder, "bid_count": n, "starttime": s, "endtime": e}));
        }
    }
    r
}

#[test]
fn appending_nexmark_queries_give_the_reference_rows() {
    const QUERIES: [&str; 8] = ["q0", "q1", "q2", "q10", "q11", "q14", "q21", "q22"];
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().to_str().expect("utf-8 path");
    let chk = dir.path().join("checkpoints");
    let cluster = Cluster::local(
        2,
        &[
            "--allow-path",
            allowed,
            "--checkpoint-dir",
            chk.to_str().expect("utf-8 path"),
        ],
    )
    .expect("cluster");
    let mut sinks = String::new();
    for q in QUERIES {
        let out = dir.path().join(q);
        std::fs::create_dir(&out).expect("sink directory");
        sinks += &format!(
            "[sinks.{q}]\nconnector = \"file\"\npath = \"{}\"\ndelivery = \"exactly-once\"\n\n",
            out.display()
        );
    }
    let id = run_to_the_end(&cluster, &job("nexmark-appending", &sinks, &QUERIES));
    let bids = bids();
    let mut reference = appending_reference(&bids);
    for q in QUERIES {
        let expected = multiset(reference.remove(q).unwrap_or_default());
        assert!(!expected.is_empty(), "{q}: the reference has rows");
        let got = multiset(file_rows(&dir.path().join(q)));
        println!("{q}: {} distinct rows", got.len());
        cluster.assert_results(&id, &got, &expected);
    }
}

/// Per-group accumulation of q15–q17.
#[derive(Default)]
struct Stats {
    bids: [i64; 4],
    bidders: [BTreeSet<i64>; 4],
    auctions: [BTreeSet<i64>; 4],
    min: Option<i64>,
    max: Option<i64>,
    sum: i64,
    minute: String,
}

impl Stats {
    fn add(&mut self, b: &Bid) {
        let rank = match b.price {
            p if p < 10_000 => 1,
            p if p < 1_000_000 => 2,
            _ => 3,
        };
        for i in [0, rank] {
            self.bids[i] += 1;
            self.bidders[i].insert(b.bidder);
            self.auctions[i].insert(b.auction);
        }
        self.min = Some(self.min.map_or(b.price, |m| m.min(b.price)));
        self.max = Some(self.max.map_or(b.price, |m| m.max(b.price)));
        self.sum += b.price;
        self.minute = self.minute.clone().max(hour_minute(b.date_time));
    }

    /// The columns q15 and q16 share.
    fn ranks(&self, row: &mut serde_json::Map<String, Value>) {
        for (i, name) in ["total", "rank1", "rank2", "rank3"].iter().enumerate() {
            row.insert(format!("{name}_bids"), json!(self.bids[i]));
            row.insert(format!("{name}_bidders"), json!(self.bidders[i].len()));
            row.insert(format!("{name}_auctions"), json!(self.auctions[i].len()));
        }
    }
}

/// The final row of every key of the updating queries, by query: record key → row.
fn updating_reference(bids: &[Bid]) -> BTreeMap<&'static str, BTreeMap<String, String>> {
    let mut q15: BTreeMap<String, Stats> = BTreeMap::new();
    let mut q16: BTreeMap<(String, String), Stats> = BTreeMap::new();
    let mut q17: BTreeMap<(i64, String), Stats> = BTreeMap::new();
    for b in bids {
        let d = day(b.date_time);
        q15.entry(d.clone()).or_default().add(b);
        q16.entry((b.channel.clone(), d.clone()))
            .or_default()
            .add(b);
        q17.entry((b.auction, d)).or_default().add(b);
    }
    let mut out: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
    for (d, s) in q15 {
        let mut row = serde_json::Map::new();
        row.insert("day".into(), json!(d));
        s.ranks(&mut row);
        out.entry("q15")
            .or_default()
            .insert(d, canonical(&Value::Object(row)));
    }
    for ((channel, d), s) in q16 {
        let mut row = serde_json::Map::new();
        row.insert("channel".into(), json!(channel));
        row.insert("day".into(), json!(d));
        row.insert("minute".into(), json!(s.minute));
        s.ranks(&mut row);
        out.entry("q16")
            .or_default()
            .insert(format!("{channel}-{d}"), canonical(&Value::Object(row)));
    }
    for ((auction, d), s) in q17 {
        let row = json!({
            "auction": auction, "day": d,
            "total_bids": s.bids[0], "rank1_bids": s.bids[1], "rank2_bids": s.bids[2],
            "rank3_bids": s.bids[3], "min_price": s.min, "max_price": s.max,
            "avg_price": s.sum as f64 / s.bids[0] as f64, "sum_price": s.sum,
        });
        out.entry("q17")
            .or_default()
            .insert(format!("{auction}-{d}"), canonical(&row));
    }
    out
}

#[test]
fn updating_nexmark_queries_end_with_the_reference_rows() {
    const QUERIES: [&str; 3] = ["q15", "q16", "q17"];
    const KEYS: [&str; 3] = ["{day}", "{channel}-{day}", "{auction}-{day}"];
    let broker = Broker::start().expect("broker");
    let cluster = Cluster::start(2).expect("cluster");
    let mut sinks = String::new();
    for (q, key) in QUERIES.iter().zip(KEYS) {
        broker.create_topic(q, 2).expect("topic");
        sinks += &format!(
            "[sinks.{q}]\nconnector = \"kafka\"\nbootstrap_servers = \"{}\"\ntopic = \"{q}\"\nkey = \"{key}\"\n\n",
            broker.bootstrap
        );
    }
    let id = run_to_the_end(&cluster, &job("nexmark-updating", &sinks, &QUERIES));
    let reference = updating_reference(&bids());
    for q in QUERIES {
        let expected = reference.get(q).cloned().unwrap_or_default();
        assert!(!expected.is_empty(), "{q}: the reference has rows");
        let latest = |records: &[kappa_integration_tests::broker::Record]| {
            let mut m = BTreeMap::new();
            for r in records {
                let row: Value = serde_json::from_str(&r.value).expect("json record");
                m.insert(r.key.clone().unwrap_or_default(), canonical(&row));
            }
            m
        };
        let records = broker
            .read(q, 2, Duration::from_secs(60), |r| latest(r) == expected)
            .expect("read");
        let got = latest(&records);
        println!("{q}: {} keys from {} upserts", got.len(), records.len());
        cluster.assert_results(&id, &got, &expected);
    }
}
