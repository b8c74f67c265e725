//! Any bytes as Kafka record values (split at newlines) for the reference job's schema, with
//! its event-time column: decoding keeps the good records and names the bad ones, never a
//! panic.
#![no_main]

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use kappa_connectors::json::JsonDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("amount", DataType::Int64, true),
    ]));
    let decoder = JsonDecoder::new(schema).with_event_time(Some(2));
    let records: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if let Ok((batch, bad)) = decoder.decode(&records) {
        assert_eq!(batch.num_rows() + bad.len(), records.len(), "every record accounted for");
    }
});
