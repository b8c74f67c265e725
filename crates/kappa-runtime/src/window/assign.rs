//! Which windows an event time falls into, in checked arithmetic: an event whose windows (or
//! their cleanup time, end + allowed lateness) do not fit in i64 milliseconds has none, and
//! the operator reports it instead of wrapping around or looping.

use std::fmt;

use kappa_job::plan::WindowAssigner;

/// The windows of one event: `count` windows of `size` ms whose starts step back by `slide`
/// ms from `last_start`. Every start, end and end + allowed lateness of them fits in i64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Windows {
    last_start: i64,
    size: i64,
    slide: i64,
    count: i64,
}

impl Windows {
    /// The windows of an event at `t`, or None when one of them, or its cleanup time (end +
    /// `lateness`), cannot be represented.
    pub(crate) fn of(assigner: WindowAssigner, lateness: i64, t: i64) -> Option<Self> {
        let w = match assigner {
            WindowAssigner::Tumbling { size_ms } => Self {
                last_start: t.checked_sub(t.checked_rem_euclid(size_ms)?)?,
                size: size_ms,
                slide: size_ms,
                count: 1,
            },
            WindowAssigner::Sliding { size_ms, slide_ms } => {
                let offset = t.checked_rem_euclid(slide_ms)?;
                // The starts s with t - size < s <= t, s a multiple of the slide.
                let count = if size_ms > offset {
                    (size_ms - offset - 1) / slide_ms + 1
                } else {
                    0
                };
                Self {
                    last_start: t.checked_sub(offset)?,
                    size: size_ms,
                    slide: slide_ms,
                    count,
                }
            }
            WindowAssigner::Session { gap_ms } => Self {
                last_start: t,
                size: gap_ms,
                slide: gap_ms,
                count: 1,
            },
            // Its window comes with the row (see `Windows::carried`).
            WindowAssigner::Carried { .. } => return None,
            // The key's one group, [0, t): its end follows the latest event.
            WindowAssigner::Global { .. } => Self {
                last_start: 0,
                size: t,
                slide: 1,
                count: 1,
            },
        };
        // The first start, and the last end with its cleanup time, bound all the others.
        if w.count > 0 {
            w.last_start
                .checked_sub((w.count - 1).checked_mul(w.slide)?)?;
        }
        w.last_start.checked_add(w.size)?.checked_add(lateness)?;
        Some(w)
    }

    /// The one window [start, end) a row of a windowed result carries, or None when it is
    /// empty or its cleanup time does not fit.
    pub(crate) fn carried(lateness: i64, start: i64, end: i64) -> Option<Self> {
        if end <= start {
            return None;
        }
        end.checked_add(lateness)?;
        Some(Self {
            last_start: start,
            size: end.checked_sub(start)?,
            slide: 1,
            count: 1,
        })
    }

    /// (start, end) of each window, latest first.
    pub(crate) fn iter(self) -> impl Iterator<Item = (i64, i64)> {
        // No overflow: `of` checked the first start and the last end.
        (0..self.count).map(move |k| {
            let start = self.last_start - k * self.slide;
            (start, start + self.size)
        })
    }

    /// The latest window: the one a late event is reported to have missed.
    pub(super) fn latest(self) -> (i64, i64) {
        (self.last_start, self.last_start + self.size)
    }
}

/// A window assigner as a job file reader knows it, for error messages.
pub(crate) struct Described(pub WindowAssigner);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            WindowAssigner::Tumbling { size_ms } => write!(f, "tumbling window (size {size_ms}ms)"),
            WindowAssigner::Sliding { size_ms, slide_ms } => {
                write!(f, "sliding window (size {size_ms}ms, slide {slide_ms}ms)")
            }
            WindowAssigner::Session { gap_ms } => write!(f, "session window (gap {gap_ms}ms)"),
            WindowAssigner::Global { .. } => write!(f, "updating aggregate"),
            WindowAssigner::Carried { .. } => write!(f, "the windows of its rows"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(assigner: WindowAssigner, lateness: i64, t: i64) -> Option<Vec<(i64, i64)>> {
        Windows::of(assigner, lateness, t).map(|w| w.iter().collect())
    }

    #[test]
    fn windows_at_the_ends_of_time_fit_or_are_refused() {
        let tumbling = WindowAssigner::Tumbling { size_ms: 10 };
        let sliding = WindowAssigner::Sliding {
            size_ms: 10,
            slide_ms: 5,
        };
        let session = WindowAssigner::Session { gap_ms: 5 };
        let cases = [
            // i64::MIN is 2 above a multiple of 10 (and of 5), i64::MAX 7 above one (2 above one of 5).
            (tumbling, 0, i64::MIN, None),
            (tumbling, 0, i64::MIN + 1, None),
            (
                tumbling,
                0,
                i64::MIN + 8,
                Some(vec![(i64::MIN + 8, i64::MIN + 18)]),
            ),
            (tumbling, 0, i64::MAX, None),
            (tumbling, 0, i64::MAX - 1, None),
            (
                tumbling,
                0,
                i64::MAX - 17,
                Some(vec![(i64::MAX - 17, i64::MAX - 7)]),
            ),
            (tumbling, 8, i64::MAX - 17, None),
            (tumbling, 0, 7, Some(vec![(0, 10)])),
            (tumbling, 0, -3, Some(vec![(-10, 0)])),
            (sliding, 0, i64::MIN, None),
            (sliding, 0, i64::MIN + 3, None),
            (sliding, 0, i64::MIN + 7, None),
            (
                sliding,
                0,
                i64::MIN + 8,
                Some(vec![
                    (i64::MIN + 8, i64::MIN + 18),
                    (i64::MIN + 3, i64::MIN + 13),
                ]),
            ),
            (sliding, 0, i64::MAX, None),
            (sliding, 0, i64::MAX - 1, None),
            (
                sliding,
                0,
                i64::MAX - 12,
                Some(vec![
                    (i64::MAX - 12, i64::MAX - 2),
                    (i64::MAX - 17, i64::MAX - 7),
                ]),
            ),
            (sliding, 0, 7, Some(vec![(5, 15), (0, 10)])),
            (session, 0, i64::MIN, Some(vec![(i64::MIN, i64::MIN + 5)])),
            (
                session,
                0,
                i64::MIN + 1,
                Some(vec![(i64::MIN + 1, i64::MIN + 6)]),
            ),
            (session, 0, i64::MAX, None),
            (session, 0, i64::MAX - 1, None),
            (
                session,
                0,
                i64::MAX - 5,
                Some(vec![(i64::MAX - 5, i64::MAX)]),
            ),
            (session, 1, i64::MAX - 5, None),
        ];
        for (assigner, lateness, t, expected) in cases {
            assert_eq!(
                all(assigner, lateness, t),
                expected,
                "{assigner:?}, lateness {lateness}, t {t}"
            );
        }
    }

    #[test]
    fn a_zero_size_is_refused_not_a_division_by_zero() {
        assert_eq!(all(WindowAssigner::Tumbling { size_ms: 0 }, 0, 5), None);
    }
}
