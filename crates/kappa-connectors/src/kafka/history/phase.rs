//! Where a partition of a source with a history archive is read from, decided from what the
//! archive holds of it and the topic's watermarks: pure, so that every ordering of archive,
//! retention and restored position is a unit test.
//!
//! The archive is read wherever it holds the offsets wanted — a replay of history from object
//! storage spares the brokers, and covers what retention removed — and the topic from the
//! offset after the archive's last. Offsets that neither holds are refused, never skipped: a
//! replay that silently starts later than asked would compute different results.

/// What the archive holds of one partition: its first and last offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub first: i64,
    pub last: i64,
}

/// The topic's watermarks of one partition: its first offset and the offset after its last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub low: i64,
    pub high: i64,
}

/// Where a partition's reading goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// From the archive: its records at or after `from` (none: all of them).
    Archive { from: Option<i64> },
    /// From the topic: at this offset, or (none) at its beginning.
    Topic(Option<i64>),
}

/// Offsets wanted that the archive and the topic cannot give together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gap {
    #[error(
        "offsets {from} to {until} of partition {partition} are in neither the archive nor the topic (the topic starts at offset {low}{archived}); reading on would skip them",
        until = .low - 1,
        archived = match .held {
            Some(h) => format!(", the archive holds offsets {} to {}", h.first, h.last),
            None => ", the archive holds none of this partition".to_string(),
        }
    )]
    Missing {
        partition: i32,
        from: i64,
        low: i64,
        held: Option<Held>,
    },
    #[error(
        "the archive holds offset {last} of partition {partition}, but the topic ends before offset {high}: is it the archive of another topic, or was the topic deleted and created again?",
        last = .held.last
    )]
    Beyond {
        partition: i32,
        held: Held,
        high: i64,
    },
}

/// Where partition `partition` starts when the next offset to read is `next` (none: the
/// beginning), the archive holds `held` of it and the topic has `topic`.
pub fn start(
    partition: i32,
    next: Option<i64>,
    held: Option<Held>,
    topic: Watermarks,
) -> Result<Phase, Gap> {
    if let Some(h) = held
        && h.last >= topic.high
    {
        return Err(Gap::Beyond {
            partition,
            held: h,
            high: topic.high,
        });
    }
    match (next, held) {
        // From the beginning: the archive when it reaches as far back as the topic.
        (None, Some(h)) if h.first <= topic.low => Ok(Phase::Archive { from: None }),
        (None, _) => Ok(Phase::Topic(None)),
        (Some(n), Some(h)) if h.first <= n && n <= h.last => Ok(Phase::Archive { from: Some(n) }),
        (Some(n), held) => switch(partition, n, held, topic).map(|n| Phase::Topic(Some(n))),
    }
}

/// Where partition `partition` goes on once the archive is read up to `next` (the offset
/// after the last archived record): that offset of the topic, if the topic still holds it.
pub fn switch(
    partition: i32,
    next: i64,
    held: Option<Held>,
    topic: Watermarks,
) -> Result<i64, Gap> {
    match next >= topic.low {
        true => Ok(next),
        false => Err(Gap::Missing {
            partition,
            from: next,
            low: topic.low,
            held,
        }),
    }
}

/// Where a start at a time begins: `resolved` is the topic's answer (its first offset at or
/// after the time; none: its beginning) and `low` its first offset. Only when that answer is
/// the topic's first record may the archive hold earlier records at or after the time:
/// `archived` (the archive's first offset at or after the time) is asked then, and wins when
/// it is before `low`.
pub fn by_time<E>(
    resolved: Option<i64>,
    low: i64,
    archived: impl FnOnce() -> Result<Option<i64>, E>,
) -> Result<Option<i64>, E> {
    if resolved.is_some_and(|o| o > low) {
        return Ok(resolved);
    }
    Ok(match archived()? {
        Some(a) if a < low => Some(a),
        _ => resolved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_by_time_asks_the_archive_only_at_the_topics_first_record() {
        let never = || -> Result<Option<i64>, ()> { panic!("the archive was asked") };
        // The time is inside what the topic holds.
        assert_eq!(by_time(Some(500), 0, never), Ok(Some(500)));
        assert_eq!(by_time(Some(1001), 1000, never), Ok(Some(1001)));
        let archive = |a: Option<i64>| move || -> Result<Option<i64>, ()> { Ok(a) };
        // At or before the topic's first record: the archive's earlier record wins.
        assert_eq!(by_time(Some(1000), 1000, archive(Some(400))), Ok(Some(400)));
        assert_eq!(by_time(None, 1000, archive(Some(400))), Ok(Some(400)));
        // The archive has nothing earlier (or nothing at all at or after the time).
        assert_eq!(
            by_time(Some(1000), 1000, archive(Some(1000))),
            Ok(Some(1000))
        );
        assert_eq!(by_time(Some(1000), 1000, archive(None)), Ok(Some(1000)));
        assert_eq!(by_time(None, 0, archive(None)), Ok(None));
        // Retention emptied the topic (low = high): the archive's record at or after it.
        assert_eq!(
            by_time(Some(2000), 2000, archive(Some(1500))),
            Ok(Some(1500))
        );
        // An archive that cannot be read is the start's error.
        assert_eq!(by_time(Some(7), 7, || Err("unreadable")), Err("unreadable"));
    }

    const P: i32 = 3;

    fn held(first: i64, last: i64) -> Option<Held> {
        Some(Held { first, last })
    }

    fn topic(low: i64, high: i64) -> Watermarks {
        Watermarks { low, high }
    }

    #[test]
    fn from_the_beginning_the_archive_is_read_where_it_reaches_as_far_back_as_the_topic() {
        // Retention removed offsets 0..500; the archive holds 0..799.
        let archive = start(P, None, held(0, 799), topic(500, 1000));
        assert_eq!(archive, Ok(Phase::Archive { from: None }));
        // Nothing removed: the archive still spares the brokers the replay of 0..799.
        assert_eq!(
            start(P, None, held(0, 799), topic(0, 1000)),
            Ok(Phase::Archive { from: None })
        );
        // An archive started after the topic's first offset: the topic reaches further back.
        assert_eq!(
            start(P, None, held(600, 799), topic(500, 1000)),
            Ok(Phase::Topic(None))
        );
        // A partition the archive does not hold.
        assert_eq!(
            start(P, None, None, topic(500, 1000)),
            Ok(Phase::Topic(None))
        );
    }

    #[test]
    fn a_restored_offset_is_read_from_the_archive_where_it_holds_it_else_from_the_topic() {
        assert_eq!(
            start(P, Some(700), held(0, 799), topic(500, 1000)),
            Ok(Phase::Archive { from: Some(700) })
        );
        assert_eq!(
            start(P, Some(900), held(0, 799), topic(500, 1000)),
            Ok(Phase::Topic(Some(900)))
        );
        assert_eq!(
            start(P, Some(300), held(0, 799), topic(500, 1000)),
            Ok(Phase::Archive { from: Some(300) })
        );
        // The archive ended before the restored offset (its last record's successor was a
        // transaction marker), and the topic holds what follows.
        assert_eq!(
            start(P, Some(480), held(0, 478), topic(479, 1000)),
            Ok(Phase::Topic(Some(480)))
        );
    }

    #[test]
    fn offsets_that_neither_holds_are_refused_with_both_ranges() {
        // Restored at 300 but the archive starts at 400 and the topic at 500.
        let gap = start(P, Some(300), held(400, 799), topic(500, 1000)).unwrap_err();
        assert_eq!(
            gap.to_string(),
            "offsets 300 to 499 of partition 3 are in neither the archive nor the topic (the topic starts at offset 500, the archive holds offsets 400 to 799); reading on would skip them"
        );
        // The archive ends at 399, the topic starts at 500: found where the archive ends.
        assert_eq!(
            start(P, Some(300), held(0, 399), topic(500, 1000)),
            Ok(Phase::Archive { from: Some(300) })
        );
        let gap = switch(P, 400, held(0, 399), topic(500, 1000)).unwrap_err();
        assert!(
            matches!(
                gap,
                Gap::Missing {
                    from: 400,
                    low: 500,
                    ..
                }
            ),
            "{gap:?}"
        );
        // Restored after the archive's end, still before the topic's first offset.
        let gap = start(P, Some(450), held(0, 399), topic(500, 1000)).unwrap_err();
        assert!(matches!(gap, Gap::Missing { from: 450, .. }), "{gap:?}");
        // A partition the archive does not hold, restored before the topic's first offset.
        let gap = start(P, Some(10), None, topic(500, 1000)).unwrap_err();
        assert!(
            gap.to_string().ends_with(
                "(the topic starts at offset 500, the archive holds none of this partition); reading on would skip them"
            ),
            "{gap}"
        );
    }

    #[test]
    fn an_archive_reaching_past_the_topics_end_is_refused() {
        let gap = start(P, None, held(0, 1500), topic(500, 1000)).unwrap_err();
        assert_eq!(
            gap,
            Gap::Beyond {
                partition: P,
                held: Held {
                    first: 0,
                    last: 1500
                },
                high: 1000
            }
        );
        assert!(gap.to_string().contains("another topic"), "{gap}");
    }

    #[test]
    fn the_switch_goes_to_the_topic_at_the_offset_after_the_archive() {
        assert_eq!(switch(P, 800, held(0, 799), topic(500, 1000)), Ok(800));
        // The archive job keeps up: the topic's first offset is far behind the archive's end.
        assert_eq!(switch(P, 800, held(0, 799), topic(0, 1000)), Ok(800));
    }
}
