//! The Nexmark event generator: persons, auctions and bids of the Nexmark benchmark, after
//! the reference generator (Apache Beam's, as kept by `github.com/nexmark/nexmark`). Every
//! event is a pure function of (seed, event number), so a parallel source reads split `i` of
//! `n` as event numbers `i, i + n, …` and restores from the next event number it checkpointed.
//! See "Nexmark generator" in docs/architecture.md.

pub mod assign;
mod batch;
mod config;
mod model;
mod pacer;
pub mod reader;
mod rng;
mod split_set;
#[cfg(test)]
mod tests;

use arrow::record_batch::RecordBatch;

pub use self::batch::table_schema;
use self::batch::{AuctionColumns, BidColumns, PersonColumns};
pub use self::config::{DEFAULT_BASE_TIME_MS, MAX_AVG_BYTES, NexmarkConfig, NexmarkError, Split};
pub use self::model::{
    AUCTION_ID_LEAD, AUCTION_PROPORTION, Auction, BID_PROPORTION, Bid, Event, FIRST_AUCTION_ID,
    FIRST_CATEGORY_ID, FIRST_PERSON_ID, HOT_GROUP, NUM_CATEGORIES, PERSON_ID_LEAD,
    PERSON_PROPORTION, PROPORTION_TOTAL, Person, Table, auctions_up_to, persons_up_to,
};
pub use self::pacer::Pacer;
pub use self::split_set::SplitSet;

/// What one `fill` produced: a batch for each requested table (possibly empty) and where
/// the split goes on.
#[derive(Debug)]
pub struct Filled {
    pub person: Option<RecordBatch>,
    pub auction: Option<RecordBatch>,
    pub bid: Option<RecordBatch>,
    /// The next event number of the split: the position to checkpoint and resume from (of a
    /// [`SplitSet`]: the smallest next event number of its splits).
    pub next_position: u64,
    /// A bounded sequence has no more events for this split.
    pub finished: bool,
    /// How many event numbers (of every table) it went past.
    pub events: u64,
}

impl Filled {
    pub fn batch(&self, table: Table) -> Option<&RecordBatch> {
        match table {
            Table::Person => self.person.as_ref(),
            Table::Auction => self.auction.as_ref(),
            Table::Bid => self.bid.as_ref(),
        }
    }
}

/// A validated configuration, ready to generate.
#[derive(Debug, Clone)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
}

impl NexmarkGenerator {
    pub fn new(config: NexmarkConfig) -> Result<Self, NexmarkError> {
        config.validate()?;
        Ok(NexmarkGenerator { config })
    }

    pub fn config(&self) -> &NexmarkConfig {
        &self.config
    }

    /// The event of number `n` (for bounded sequences, also past the end).
    pub fn event(&self, n: u64) -> Event {
        model::event(&self.config, n)
    }

    /// Generates the events of `split` from event number `position` into one batch per
    /// requested table: at most `max_rows` rows in all, looking at most at
    /// `max_rows · PROPORTION_TOTAL` event numbers (so a split that holds no event of the
    /// requested tables still returns). Events of other tables are skipped, not generated.
    pub fn fill(
        &self,
        split: Split,
        position: u64,
        max_rows: usize,
        tables: &[Table],
    ) -> Result<Filled, NexmarkError> {
        let mut set = SplitSet::new(&self.config, [(split, position)])?;
        let max_events = (max_rows as u64).saturating_mul(PROPORTION_TOTAL);
        self.fill_set(&mut set, max_rows, max_events, tables)
    }

    /// Generates the events of the splits of `set` in event-number order (so their event
    /// times never go back, whatever their positions): at most `max_rows` rows of the
    /// requested tables, looking at most at `max_events` event numbers; `set` moves on.
    pub fn fill_set(
        &self,
        set: &mut SplitSet,
        max_rows: usize,
        max_events: u64,
        tables: &[Table],
    ) -> Result<Filled, NexmarkError> {
        if tables.is_empty() {
            return Err(NexmarkError::NoTable);
        }
        if max_rows == 0 {
            return Err(NexmarkError::NotPositive { field: "max_rows" });
        }
        let wants = |t: Table| tables.contains(&t);
        let mut person = wants(Table::Person).then(PersonColumns::default);
        let mut auction = wants(Table::Auction).then(AuctionColumns::default);
        let mut bid = wants(Table::Bid).then(BidColumns::default);
        let mut rows = 0;
        let mut looked = 0;
        while rows < max_rows && looked < max_events {
            let Some(n) = set.peek() else {
                break;
            };
            if wants(Table::of_event(n)) {
                match (self.event(n), &mut person, &mut auction, &mut bid) {
                    (Event::Person(p), Some(columns), _, _) => columns.push(&p),
                    (Event::Auction(a), _, Some(columns), _) => columns.push(&a),
                    (Event::Bid(b), _, _, Some(columns)) => columns.push(&b),
                    _ => {}
                }
                rows += 1;
            }
            looked += 1;
            set.advance();
        }
        Ok(Filled {
            person: person.map(PersonColumns::finish).transpose()?,
            auction: auction.map(AuctionColumns::finish).transpose()?,
            bid: bid.map(BidColumns::finish).transpose()?,
            next_position: set.next_position(),
            finished: set.peek().is_none(),
            events: looked,
        })
    }
}
