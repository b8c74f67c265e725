//! The three Nexmark tables as Arrow: their schemas (as RisingWave's and Flink SQL's Nexmark
//! tables, times as timestamp milliseconds; defined in kappa-job, which plans sources with
//! them) and the builders events are appended to.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::config::NexmarkError;
use super::model::{Auction, Bid, Person, Table};

/// The schema of a table (defined where job files are planned, see
/// [`kappa_job::plan::nexmark::table_schema`]).
pub fn table_schema(table: Table) -> SchemaRef {
    kappa_job::plan::nexmark::table_schema(table.into())
}

/// Columns of the person table being filled.
#[derive(Default)]
pub(crate) struct PersonColumns {
    id: Int64Builder,
    name: StringBuilder,
    email_address: StringBuilder,
    credit_card: StringBuilder,
    city: StringBuilder,
    state: StringBuilder,
    date_time: TimestampMillisecondBuilder,
    extra: StringBuilder,
}

impl PersonColumns {
    pub(crate) fn push(&mut self, p: &Person) {
        self.id.append_value(p.id);
        self.name.append_value(&p.name);
        self.email_address.append_value(&p.email_address);
        self.credit_card.append_value(&p.credit_card);
        self.city.append_value(p.city);
        self.state.append_value(p.state);
        self.date_time.append_value(p.date_time);
        self.extra.append_value(p.extra);
    }

    pub(crate) fn finish(mut self) -> Result<RecordBatch, NexmarkError> {
        finish(
            Table::Person,
            vec![
                Arc::new(self.id.finish()),
                Arc::new(self.name.finish()),
                Arc::new(self.email_address.finish()),
                Arc::new(self.credit_card.finish()),
                Arc::new(self.city.finish()),
                Arc::new(self.state.finish()),
                Arc::new(self.date_time.finish()),
                Arc::new(self.extra.finish()),
            ],
        )
    }
}

/// Columns of the auction table being filled.
#[derive(Default)]
pub(crate) struct AuctionColumns {
    id: Int64Builder,
    item_name: StringBuilder,
    description: StringBuilder,
    initial_bid: Int64Builder,
    reserve: Int64Builder,
    date_time: TimestampMillisecondBuilder,
    expires: TimestampMillisecondBuilder,
    seller: Int64Builder,
    category: Int64Builder,
    extra: StringBuilder,
}

impl AuctionColumns {
    pub(crate) fn push(&mut self, a: &Auction) {
        self.id.append_value(a.id);
        self.item_name.append_value(&a.item_name);
        self.description.append_value(&a.description);
        self.initial_bid.append_value(a.initial_bid);
        self.reserve.append_value(a.reserve);
        self.date_time.append_value(a.date_time);
        self.expires.append_value(a.expires);
        self.seller.append_value(a.seller);
        self.category.append_value(a.category);
        self.extra.append_value(a.extra);
    }

    pub(crate) fn finish(mut self) -> Result<RecordBatch, NexmarkError> {
        finish(
            Table::Auction,
            vec![
                Arc::new(self.id.finish()),
                Arc::new(self.item_name.finish()),
                Arc::new(self.description.finish()),
                Arc::new(self.initial_bid.finish()),
                Arc::new(self.reserve.finish()),
                Arc::new(self.date_time.finish()),
                Arc::new(self.expires.finish()),
                Arc::new(self.seller.finish()),
                Arc::new(self.category.finish()),
                Arc::new(self.extra.finish()),
            ],
        )
    }
}

/// Columns of the bid table being filled.
#[derive(Default)]
pub(crate) struct BidColumns {
    auction: Int64Builder,
    bidder: Int64Builder,
    price: Int64Builder,
    channel: StringBuilder,
    url: StringBuilder,
    date_time: TimestampMillisecondBuilder,
    extra: StringBuilder,
}

impl BidColumns {
    pub(crate) fn push(&mut self, b: &Bid) {
        self.auction.append_value(b.auction);
        self.bidder.append_value(b.bidder);
        self.price.append_value(b.price);
        self.channel.append_value(&b.channel);
        self.url.append_value(b.url);
        self.date_time.append_value(b.date_time);
        self.extra.append_value(b.extra);
    }

    pub(crate) fn finish(mut self) -> Result<RecordBatch, NexmarkError> {
        finish(
            Table::Bid,
            vec![
                Arc::new(self.auction.finish()),
                Arc::new(self.bidder.finish()),
                Arc::new(self.price.finish()),
                Arc::new(self.channel.finish()),
                Arc::new(self.url.finish()),
                Arc::new(self.date_time.finish()),
                Arc::new(self.extra.finish()),
            ],
        )
    }
}

/// The columns match the schema by construction (same order, types, no nulls), so this
/// fails only if the two are edited apart.
fn finish(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch, NexmarkError> {
    RecordBatch::try_new(table_schema(table), columns)
        .map_err(|source| NexmarkError::Batch { table, source })
}
