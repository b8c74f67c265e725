//! What flows on the edges between subtasks: record batches and in-band control elements
//! (watermarks, idleness, checkpoint barriers, end of stream), in order. Records and
//! watermarks carry when what caused them entered the engine (see [`crate::latency`]).

use arrow::array::RecordBatch;

use crate::latency::Origin;

/// One element on a channel.
#[derive(Debug, Clone)]
pub enum Element {
    Records(RecordBatch, Origin),
    /// No record with an event time at or below this (epoch ms) will follow, except late ones;
    /// the origin is that of the records whose reading advanced it.
    Watermark(i64, Origin),
    /// The upstream has no active input; leave it out of the watermark until it sends again.
    Idle,
    /// The upstream finished; it sends nothing more.
    End,
    /// Checkpoint barrier n: everything before it belongs to checkpoint n, everything after
    /// to later ones.
    Barrier(u64),
}
