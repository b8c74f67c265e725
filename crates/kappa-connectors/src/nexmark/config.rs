//! The options of the Nexmark generator (the Nexmark suite's defaults), their validation, the
//! event time of an event number, and the split of the event sequence among parallel readers.

use arrow::error::ArrowError;
use kappa_job::plan::nexmark::NexmarkSourcePlan;

use super::model::Table;

/// Largest accepted `avg_*_bytes`: the `extra` padding is a slice of one shared 1 MiB text
/// (defined where job files are planned, which check it too).
pub use kappa_job::plan::nexmark::MAX_AVG_BYTES;

/// 2015-07-15T00:00:00Z, the base time of the Nexmark reference generator (Apache Beam).
pub const DEFAULT_BASE_TIME_MS: i64 = 1_436_918_400_000;

/// What the generator produces; every field has the Nexmark suite's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexmarkConfig {
    /// Bounded: event numbers `0..events`; `None`: unbounded.
    pub events: Option<u64>,
    /// Events per second of event time (`firstEventRate`): event `n` happens at
    /// `base_time_ms + n * 1000 / rate`.
    pub rate: u64,
    /// Seeds every event's random numbers together with its event number.
    pub seed: u64,
    /// Event time of event number 0, in milliseconds since the epoch.
    pub base_time_ms: i64,
    /// A bid is for the current hot auction with probability `1 - 1/hot_auction_ratio`.
    pub hot_auction_ratio: u32,
    /// An auction is by the current hot seller with probability `1 - 1/hot_sellers_ratio`.
    pub hot_sellers_ratio: u32,
    /// A bid is by the current hot bidder with probability `1 - 1/hot_bidders_ratio`.
    pub hot_bidders_ratio: u32,
    /// Average number of auctions open at once: sets auction lengths and which auctions a
    /// cold bid may name.
    pub num_in_flight_auctions: u32,
    /// How many of the latest persons a cold seller or bidder is drawn from.
    pub num_active_people: u32,
    /// Average size of a person, auction and bid, reached by padding `extra`.
    pub avg_person_bytes: u32,
    pub avg_auction_bytes: u32,
    pub avg_bid_bytes: u32,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            events: None,
            rate: 10_000,
            seed: 0,
            base_time_ms: DEFAULT_BASE_TIME_MS,
            hot_auction_ratio: 2,
            hot_sellers_ratio: 4,
            hot_bidders_ratio: 4,
            num_in_flight_auctions: 100,
            num_active_people: 1000,
            avg_person_bytes: 200,
            avg_auction_bytes: 500,
            avg_bid_bytes: 100,
        }
    }
}

/// Why a configuration, split or request of the Nexmark generator is refused.
#[derive(Debug, thiserror::Error)]
pub enum NexmarkError {
    #[error("nexmark: `{field}` must be at least 1")]
    NotPositive { field: &'static str },
    #[error("nexmark: `{field}` = {value} is above the maximum {MAX_AVG_BYTES}")]
    TooLarge { field: &'static str, value: u32 },
    #[error("nexmark: split {index} of {count} does not exist (count ≥ 1, index < count)")]
    NoSuchSplit { index: u32, count: u32 },
    #[error("nexmark: event {position} is not in split {index} of {count}")]
    PositionNotInSplit {
        position: u64,
        index: u32,
        count: u32,
    },
    #[error("nexmark: splits of {first} and of {other} splits cannot be read together")]
    MixedSplitCounts { first: u32, other: u32 },
    #[error("nexmark: split {index} of {count} is given twice")]
    DuplicateSplit { index: u32, count: u32 },
    #[error("nexmark: no table requested")]
    NoTable,
    #[error("nexmark: building a {table:?} batch")]
    Batch {
        table: Table,
        #[source]
        source: ArrowError,
    },
}

impl NexmarkConfig {
    /// The generator a planned nexmark source asks for: what the job file gives, the Nexmark
    /// suite's defaults for the rest.
    pub fn from_plan(p: &NexmarkSourcePlan) -> Self {
        let d = NexmarkConfig::default();
        NexmarkConfig {
            events: p.events,
            rate: p.rate.unwrap_or(d.rate),
            seed: p.seed,
            base_time_ms: p.base_time_ms.unwrap_or(d.base_time_ms),
            hot_auction_ratio: p.hot_auction_ratio.unwrap_or(d.hot_auction_ratio),
            hot_sellers_ratio: p.hot_sellers_ratio.unwrap_or(d.hot_sellers_ratio),
            hot_bidders_ratio: p.hot_bidders_ratio.unwrap_or(d.hot_bidders_ratio),
            num_in_flight_auctions: p.num_in_flight_auctions.unwrap_or(d.num_in_flight_auctions),
            num_active_people: p.num_active_people.unwrap_or(d.num_active_people),
            avg_person_bytes: p.avg_person_bytes.unwrap_or(d.avg_person_bytes),
            avg_auction_bytes: p.avg_auction_bytes.unwrap_or(d.avg_auction_bytes),
            avg_bid_bytes: p.avg_bid_bytes.unwrap_or(d.avg_bid_bytes),
        }
    }

    /// Checks every option; the generator only runs on a configuration that passed.
    pub fn validate(&self) -> Result<(), NexmarkError> {
        let positive: [(&'static str, u64); 7] = [
            ("events", self.events.unwrap_or(1)),
            ("rate", self.rate),
            ("hot_auction_ratio", self.hot_auction_ratio.into()),
            ("hot_sellers_ratio", self.hot_sellers_ratio.into()),
            ("hot_bidders_ratio", self.hot_bidders_ratio.into()),
            ("num_active_people", self.num_active_people.into()),
            ("num_in_flight_auctions", self.num_in_flight_auctions.into()),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(NexmarkError::NotPositive { field });
            }
        }
        for (field, value) in [
            ("avg_person_bytes", self.avg_person_bytes),
            ("avg_auction_bytes", self.avg_auction_bytes),
            ("avg_bid_bytes", self.avg_bid_bytes),
        ] {
            if value > MAX_AVG_BYTES {
                return Err(NexmarkError::TooLarge { field, value });
            }
        }
        Ok(())
    }

    /// Event time of event number `n`: `base_time_ms + n * 1000 / rate` (integer division,
    /// saturating far beyond any reachable event number).
    pub fn event_time_ms(&self, n: u64) -> i64 {
        let offset = u128::from(n) * 1000 / u128::from(self.rate.max(1));
        self.base_time_ms
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    /// Whether event number `n` is past the end of a bounded sequence.
    pub fn is_past_end(&self, n: u64) -> bool {
        self.events.is_some_and(|end| n >= end)
    }
}

/// Split `index` of `count` reads event numbers `index, index + count, index + 2·count, …`.
/// Striding (not contiguous ranges) works for unbounded sequences and keeps every split at
/// the same event time, so the minimum watermark over splits is not held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    index: u32,
    count: u32,
}

impl Split {
    pub fn new(index: u32, count: u32) -> Result<Self, NexmarkError> {
        if count == 0 || index >= count {
            return Err(NexmarkError::NoSuchSplit { index, count });
        }
        Ok(Split { index, count })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The position a split starts from: its first event number.
    pub fn first_position(&self) -> u64 {
        self.index.into()
    }

    /// Refuses a position (next event number) another split owns.
    pub(crate) fn check(&self, position: u64) -> Result<(), NexmarkError> {
        if position % u64::from(self.count) != u64::from(self.index) {
            return Err(NexmarkError::PositionNotInSplit {
                position,
                index: self.index,
                count: self.count,
            });
        }
        Ok(())
    }
}
