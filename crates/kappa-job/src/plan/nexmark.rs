//! Planning `connector = "nexmark"`: the built-in generator of the Nexmark benchmark's
//! persons, auctions and bids. Its options are checked here with their locations; the
//! schema is the table's fixed one ([`table_schema`]); its number of splits is the job's
//! `max_parallelism` (see "Nexmark source" in docs/architecture.md). The generator itself
//! lives in kappa-connectors, which turns a [`NexmarkSourcePlan`] into its configuration.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::UNIX_EPOCH;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use toml::Spanned;

use super::{MAX_KEY_GROUPS, Overrides, Planner, SourceKind, SourcePlan, span};
use crate::keygroup::DEFAULT_MAX_PARALLELISM;
use crate::spec::{IntOrText, JobSpec, OnError, SourceConnector, SourceSpec};
use crate::start::StartPosition;

/// Largest accepted `avg_*_bytes`: the generator pads `extra` from one shared 1 MiB text.
pub const MAX_AVG_BYTES: u32 = 64 * 1024;

/// The three tables of Nexmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NexmarkTable {
    Person,
    Auction,
    Bid,
}

impl NexmarkTable {
    pub const ALL: [NexmarkTable; 3] = [Self::Person, Self::Auction, Self::Bid];

    pub fn name(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Auction => "auction",
            Self::Bid => "bid",
        }
    }
}

impl fmt::Display for NexmarkTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, data_type)| Field::new(*name, data_type.clone(), false))
        .collect();
    Arc::new(Schema::new(fields))
}

const TIME: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

/// The schema of a table (as RisingWave's and Flink SQL's Nexmark tables, times as timestamp
/// milliseconds): `person(id, name, email_address, credit_card, city, state, date_time,
/// extra)`, `auction(id, item_name, description, initial_bid, reserve, date_time, expires,
/// seller, category, extra)`, `bid(auction, bidder, price, channel, url, date_time, extra)`.
pub fn table_schema(table: NexmarkTable) -> SchemaRef {
    static SCHEMAS: OnceLock<[SchemaRef; 3]> = OnceLock::new();
    let [person, auction, bid] = SCHEMAS.get_or_init(|| {
        use DataType::{Int64 as I, Utf8 as S};
        [
            schema(&[
                ("id", I),
                ("name", S),
                ("email_address", S),
                ("credit_card", S),
                ("city", S),
                ("state", S),
                ("date_time", TIME),
                ("extra", S),
            ]),
            schema(&[
                ("id", I),
                ("item_name", S),
                ("description", S),
                ("initial_bid", I),
                ("reserve", I),
                ("date_time", TIME),
                ("expires", TIME),
                ("seller", I),
                ("category", I),
                ("extra", S),
            ]),
            schema(&[
                ("auction", I),
                ("bidder", I),
                ("price", I),
                ("channel", S),
                ("url", S),
                ("date_time", TIME),
                ("extra", S),
            ]),
        ]
    });
    Arc::clone(match table {
        NexmarkTable::Person => person,
        NexmarkTable::Auction => auction,
        NexmarkTable::Bid => bid,
    })
}

/// A Nexmark source as the job file gives it; an omitted generator option (None) takes the
/// Nexmark suite's default when kappa-connectors builds the generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexmarkSourcePlan {
    pub table: NexmarkTable,
    /// Bounded: event numbers `0..events` (of all tables); None: unbounded.
    pub events: Option<u64>,
    /// Events per second of event time.
    pub rate: Option<u64>,
    /// Wall-clock pacing of the whole source, in events per second; None: as fast as it can.
    pub max_rate: Option<u64>,
    pub seed: u64,
    /// Event time of event 0 in epoch milliseconds.
    pub base_time_ms: Option<i64>,
    pub hot_auction_ratio: Option<u32>,
    pub hot_sellers_ratio: Option<u32>,
    pub hot_bidders_ratio: Option<u32>,
    pub num_in_flight_auctions: Option<u32>,
    pub num_active_people: Option<u32>,
    pub avg_person_bytes: Option<u32>,
    pub avg_auction_bytes: Option<u32>,
    pub avg_bid_bytes: Option<u32>,
    /// The number of splits a first attempt reads (the job's `max_parallelism`); a restore
    /// keeps the number of the checkpoint it restores.
    pub splits: u32,
}

impl NexmarkSourcePlan {
    /// What the job graph shows.
    pub fn describe(&self) -> String {
        let events = self
            .events
            .map_or_else(|| "unbounded".to_string(), |e| format!("{e} events"));
        let pace = self
            .max_rate
            .map_or_else(String::new, |r| format!(", paced at {r} events/s"));
        format!("Source: nexmark `{}` ({events}{pace})", self.table)
    }
}

/// The Nexmark options of a source spec with their locations, in the order of the reference.
fn nexmark_fields(s: &SourceSpec) -> [(&'static str, Option<Range<usize>>); 14] {
    fn at<T>(v: &Option<Spanned<T>>) -> Option<Range<usize>> {
        v.as_ref().map(Spanned::span)
    }
    [
        ("table", at(&s.table)),
        ("events", at(&s.events)),
        ("rate", at(&s.rate)),
        ("max_rate", at(&s.max_rate)),
        ("seed", at(&s.seed)),
        ("base_time", at(&s.base_time)),
        ("hot_auction_ratio", at(&s.hot_auction_ratio)),
        ("hot_sellers_ratio", at(&s.hot_sellers_ratio)),
        ("hot_bidders_ratio", at(&s.hot_bidders_ratio)),
        ("num_in_flight_auctions", at(&s.num_in_flight_auctions)),
        ("num_active_people", at(&s.num_active_people)),
        ("avg_person_bytes", at(&s.avg_person_bytes)),
        ("avg_auction_bytes", at(&s.avg_auction_bytes)),
        ("avg_bid_bytes", at(&s.avg_bid_bytes)),
    ]
}

/// Sets the number of splits of a nexmark source: the job's `max_parallelism`, so that the
/// job can be rescaled up to it (an invalid one is reported where the job is planned).
pub(super) fn fix_splits(plan: &mut SourcePlan, spec: &JobSpec) {
    if let SourceKind::Nexmark(n) = &mut plan.kind {
        n.splits = spec
            .max_parallelism
            .as_ref()
            .map(|m| *m.get_ref())
            .filter(|m| (1..=MAX_KEY_GROUPS).contains(m))
            .unwrap_or(DEFAULT_MAX_PARALLELISM);
    }
}

impl Planner<'_> {
    /// Refuses the nexmark options on a source of another connector.
    pub(super) fn forbid_nexmark_settings(&mut self, s: &SourceSpec, prefix: &str) {
        if s.connector == SourceConnector::Nexmark {
            return;
        }
        for (name, at) in nexmark_fields(s) {
            if at.is_some() {
                let why = format!("`{name}` applies to the nexmark connector only");
                self.err(at, &format!("{prefix}.{name}"), why);
            }
        }
    }

    /// A `connector = "nexmark"` source: its options, and the other connectors' refused.
    pub(super) fn nexmark_source(
        &mut self,
        s: &SourceSpec,
        prefix: &str,
        overrides: &Overrides,
    ) -> SourcePlan {
        self.refuse_foreign(s, prefix, overrides);
        let table = self.nexmark_table(s, prefix);
        let field = |name: &str| format!("{prefix}.{name}");
        let max = u64::from(u32::MAX);
        let small = |p: &mut Self, v: &Option<Spanned<i64>>, name: &str, min: u64, max: u64| {
            p.number(v, &field(name), min, max)
                .and_then(|n| u32::try_from(n).ok())
        };
        let plan = NexmarkSourcePlan {
            table,
            events: self.number(&s.events, &field("events"), 1, i64::MAX as u64),
            rate: self.number(&s.rate, &field("rate"), 1, i64::MAX as u64),
            max_rate: self.max_rate(s, &field("max_rate")),
            seed: self
                .number(&s.seed, &field("seed"), 0, i64::MAX as u64)
                .unwrap_or(0),
            base_time_ms: self.base_time(s, &field("base_time")),
            hot_auction_ratio: small(self, &s.hot_auction_ratio, "hot_auction_ratio", 1, max),
            hot_sellers_ratio: small(self, &s.hot_sellers_ratio, "hot_sellers_ratio", 1, max),
            hot_bidders_ratio: small(self, &s.hot_bidders_ratio, "hot_bidders_ratio", 1, max),
            num_in_flight_auctions: small(
                self,
                &s.num_in_flight_auctions,
                "num_in_flight_auctions",
                1,
                max,
            ),
            num_active_people: small(self, &s.num_active_people, "num_active_people", 1, max),
            avg_person_bytes: small(
                self,
                &s.avg_person_bytes,
                "avg_person_bytes",
                0,
                MAX_AVG_BYTES.into(),
            ),
            avg_auction_bytes: small(
                self,
                &s.avg_auction_bytes,
                "avg_auction_bytes",
                0,
                MAX_AVG_BYTES.into(),
            ),
            avg_bid_bytes: small(
                self,
                &s.avg_bid_bytes,
                "avg_bid_bytes",
                0,
                MAX_AVG_BYTES.into(),
            ),
            splits: DEFAULT_MAX_PARALLELISM,
        };
        SourcePlan {
            name: "source".into(),
            uid: "source".into(),
            kind: SourceKind::Nexmark(plan),
            format: super::formats::RecordFormat::Json,
            schema: table_schema(table),
            start: StartPosition::Earliest,
            on_error: OnError::Fail,
            event_time: None,
        }
    }

    /// Refuses what other connectors take: the generator has a fixed schema, no format, no
    /// bad records, and always starts at event 0.
    fn refuse_foreign(&mut self, s: &SourceSpec, prefix: &str, overrides: &Overrides) {
        let fixed =
            "a nexmark source has its table's fixed schema (see the README's nexmark connector)";
        self.forbid(&s.schema, &format!("{prefix}.schema"), fixed);
        self.forbid(
            &s.format,
            &format!("{prefix}.format"),
            "a nexmark source generates columns, it decodes no format",
        );
        let no_format = "a nexmark source decodes no format";
        self.forbid(&s.avro_schema, &format!("{prefix}.avro_schema"), no_format);
        self.forbid(
            &s.schema_registry,
            &format!("{prefix}.schema_registry"),
            no_format,
        );
        for (name, at) in [
            (
                "bootstrap_servers",
                s.bootstrap_servers.as_ref().and_then(span),
            ),
            ("topic", s.topic.as_ref().and_then(span)),
            ("path", s.path.as_ref().and_then(span)),
            (
                "dead_letter_topic",
                s.dead_letter_topic.as_ref().and_then(span),
            ),
        ] {
            if at.is_some() {
                let why = format!("`{name}` does not apply to the nexmark connector");
                self.err(at, &format!("{prefix}.{name}"), why);
            }
        }
        self.forbid_kafka_settings(s.security.as_ref(), s.properties.as_ref(), prefix);
        self.forbid_kafka_source_options(s, prefix);
        if s.on_error != OnError::Fail {
            self.err(
                None,
                &format!("{prefix}.on_error"),
                "a nexmark source generates no bad records: remove on_error",
            );
        }
        let start = match (&overrides.start, &s.start) {
            (Some(p), _) => Ok(*p),
            (None, Some(text)) => text.get_ref().parse().map_err(|e| format!("{e}")),
            (None, None) => Ok(StartPosition::Earliest),
        };
        let at = s.start.as_ref().and_then(span);
        match start {
            Ok(StartPosition::Earliest) => {}
            Ok(other) => self.err(
                at,
                &format!("{prefix}.start"),
                format!(
                    "a nexmark source generates from event 0; start `{other}` applies to kafka only"
                ),
            ),
            Err(e) => self.err(at, &format!("{prefix}.start"), e),
        }
    }

    fn nexmark_table(&mut self, s: &SourceSpec, prefix: &str) -> NexmarkTable {
        let names = "person, auction or bid";
        let Some(t) = &s.table else {
            let why =
                format!("missing: the nexmark connector needs the table it generates: {names}");
            self.err(None, &format!("{prefix}.table"), why);
            return NexmarkTable::Bid;
        };
        let text = t.get_ref().trim();
        match NexmarkTable::ALL.into_iter().find(|n| n.name() == text) {
            Some(table) => table,
            None => {
                let why = format!("unknown nexmark table `{text}`: use {names}");
                self.err(span(t), &format!("{prefix}.table"), why);
                NexmarkTable::Bid
            }
        }
    }

    /// An optional integer in `min..=max`; None when omitted or refused (the error recorded).
    fn number(&mut self, v: &Option<Spanned<i64>>, field: &str, min: u64, max: u64) -> Option<u64> {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(n) if n > max => {
                self.err(span(v), field, format!("{n} is above the maximum {max}"));
                None
            }
            _ => {
                self.err(span(v), field, format!("must be at least {min}, got {n}"));
                None
            }
        }
    }

    /// `max_rate`: events per second of the whole source, or "off" (no pacing).
    fn max_rate(&mut self, s: &SourceSpec, field: &str) -> Option<u64> {
        let v = s.max_rate.as_ref()?;
        match v.get_ref() {
            IntOrText::Int(n) if *n >= 1 => u64::try_from(*n).ok(),
            IntOrText::Text(t) if t.trim() == "off" => None,
            IntOrText::Int(n) => {
                let why = format!("must be at least 1 event per second, got {n} (or \"off\")");
                self.err(span(v), field, why);
                None
            }
            IntOrText::Text(t) => {
                let why = format!("`{t}` is neither a number of events per second nor \"off\"");
                self.err(span(v), field, why);
                None
            }
        }
    }

    /// `base_time`: epoch milliseconds, or RFC 3339 text in UTC.
    fn base_time(&mut self, s: &SourceSpec, field: &str) -> Option<i64> {
        let v = s.base_time.as_ref()?;
        match v.get_ref() {
            IntOrText::Int(ms) => Some(*ms),
            IntOrText::Text(t) => {
                let ms = humantime::parse_rfc3339_weak(t.trim())
                    .map_err(|e| e.to_string())
                    .and_then(|at| at.duration_since(UNIX_EPOCH).map_err(|e| e.to_string()))
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                match ms {
                    Ok(ms) => Some(ms),
                    Err(e) => {
                        let why = format!(
                            "`{t}` is not an RFC 3339 time in UTC (e.g. \"2015-07-15T00:00:00Z\") nor epoch milliseconds: {e}"
                        );
                        self.err(span(v), field, why);
                        None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
