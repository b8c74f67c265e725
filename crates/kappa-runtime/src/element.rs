//! What flows on the edges between subtasks: record batches and in-band control elements
//! (watermarks, idleness, checkpoint barriers, end of stream), in order.

use arrow::array::RecordBatch;

/// One element on a channel.
#[derive(Debug, Clone)]
pub enum Element {
    Records(RecordBatch),
    /// No record with an event time at or below this (epoch ms) will follow, except late ones.
    Watermark(i64),
    /// The upstream has no active input; leave it out of the watermark until it sends again.
    Idle,
    /// The upstream finished; it sends nothing more.
    End,
    /// Checkpoint barrier n: everything before it belongs to checkpoint n, everything after
    /// to later ones.
    Barrier(u64),
}
