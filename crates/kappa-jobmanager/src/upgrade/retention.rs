//! Whether a replay can recompute all the history v1's sinks hold, or the topics' retention
//! deleted some of it: records v1 read from explicit offsets that are gone, and windows in a
//! sink older than what every partition of a topic still holds. Pure: the plan's shell
//! gathers the facts ([`super::history`]).

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::plan::TopicFacts;

/// How far back the windows of a live sink go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SinkHistory {
    pub sink: String,
    /// Its least `window_start` (ms since the epoch).
    pub oldest_window_start_ms: i64,
}

/// A time for a warning: UTC, to the second.
fn utc(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The warnings of a replay that cannot recompute everything: empty when it can.
pub fn warnings(topics: &[TopicFacts], windows: &[SinkHistory]) -> Vec<String> {
    let mut out = Vec::new();
    for t in topics {
        let gone: i64 = t
            .partitions
            .iter()
            .filter_map(|p| p.v1_started_at.map(|s| (p.first_offset() - s).max(0)))
            .sum();
        if gone > 0 {
            out.push(format!(
                "topic `{}` no longer holds {gone} records v1 read (its retention deleted them): the results they made keep v1's values after the cut-over",
                t.topic
            ));
        }
        // Only when the topic lost records: a first event later than the first window's
        // start is otherwise where the data began.
        let deleted = t.partitions.iter().any(|p| p.first_offset() > 0);
        let Some(from) = t.oldest_event_ms.filter(|_| deleted) else {
            continue;
        };
        for w in windows.iter().filter(|w| w.oldest_window_start_ms < from) {
            out.push(format!(
                "topic `{}` holds events from {} on (its retention deleted older records); sink `{}` has windows from {}: those before then keep v1's values after the cut-over, and the window {} falls in is recomputed from the records left",
                t.topic,
                utc(from),
                w.sink,
                utc(w.oldest_window_start_ms),
                utc(from),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::plan::PartitionFacts;
    use kappa_connectors::kafka::history::phase::Held;

    const DAY: i64 = 86_400_000;
    /// 2026-11-01T00:00:00Z.
    const NOV_1: i64 = 1_793_491_200_000;

    fn topic(low: i64, oldest_event_ms: Option<i64>) -> TopicFacts {
        TopicFacts {
            source: "source".into(),
            topic: "clicks".into(),
            partitions: vec![PartitionFacts {
                partition: 0,
                low,
                high: 1_000,
                v1_started_at: None,
                archived: None,
            }],
            oldest_event_ms,
        }
    }

    fn sink(oldest: i64) -> SinkHistory {
        SinkHistory {
            sink: "pg".into(),
            oldest_window_start_ms: oldest,
        }
    }

    #[test]
    fn windows_older_than_what_a_trimmed_topic_holds_are_a_warning() {
        let held = NOV_1 + 23 * DAY;
        let w = warnings(&[topic(500, Some(held))], &[sink(NOV_1), sink(held)]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("topic `clicks` holds events from 2026-11-24T00:00:00Z on")
                && w[0].contains("sink `pg` has windows from 2026-11-01T00:00:00Z"),
            "{}",
            w[0]
        );
        // Nothing deleted: the first window starts before the first event, as windows do.
        assert!(warnings(&[topic(0, Some(held))], &[sink(NOV_1)]).is_empty());
        // No event time known, or windows within what the topic holds.
        assert!(warnings(&[topic(500, None)], &[sink(NOV_1)]).is_empty());
        assert!(warnings(&[topic(500, Some(held))], &[sink(held + DAY)]).is_empty());
    }

    #[test]
    fn records_v1_read_from_explicit_offsets_and_since_deleted_are_a_warning() {
        let mut t = topic(300, None);
        t.partitions[0].v1_started_at = Some(100);
        let w = warnings(&[t], &[]);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("no longer holds 200 records v1 read"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn an_archive_reaching_back_to_what_v1_read_leaves_no_warning() {
        let held = NOV_1 + 23 * DAY;
        let archived = |first: i64| {
            let mut t = topic(300, Some(held));
            t.partitions[0].v1_started_at = Some(100);
            t.partitions[0].archived = Some(Held { first, last: 799 });
            t
        };
        // The archive holds offsets 0..799: nothing v1 read is lost, and the oldest event is
        // the archive's (no longer a trimmed topic).
        assert!(warnings(&[archived(0)], &[sink(NOV_1)]).is_empty());
        // An archive that begins after the topic's first offset is not read first.
        let w = warnings(&[archived(400)], &[]);
        assert!(
            w[0].contains("no longer holds 200 records v1 read"),
            "{w:?}"
        );
    }
}
