//! Plot reads (`query --plot N`, like PI's PlotValues): at most five points per interval (the
//! first, the last, the smallest, the largest and the first bad one), so a trend of millions of
//! points draws the same from a few thousand. The exact definition is in the module docs of
//! [`crate::query`].

use diode_common::record::Severity;
use diode_replica::Point;

use super::lookahead::Lookahead;

/// The most intervals one plot read may ask for: more than any screen has pixels across.
pub const MAX_PLOT_INTERVALS: u64 = 10_000;

/// The most points one interval gives.
pub const POINTS_PER_INTERVAL: usize = 5;

/// Width of each of `intervals` intervals over `[from_ns, to_ns]`, in ns: the range's length
/// divided by the count, rounded up (at least 1 ns), so that the intervals cover the range. An
/// interval is at most `i64::MAX` ns (292 years): a longer range (the record limits span 362)
/// asked in fewer intervals than that allows gets the extra intervals it needs.
pub fn interval_width(from_ns: i64, to_ns: i64, intervals: u64) -> i64 {
    let length = i128::from(to_ns) - i128::from(from_ns) + 1;
    let intervals = i128::from(intervals.max(1));
    i64::try_from(((length + intervals - 1) / intervals).max(1)).unwrap_or(i64::MAX)
}

/// Start of the interval holding `timestamp_ns`, intervals of `width_ns` from `from_ns`.
pub fn interval_start(from_ns: i64, width_ns: i64, timestamp_ns: i64) -> i64 {
    let offset = i128::from(timestamp_ns) - i128::from(from_ns);
    let start = i128::from(from_ns) + offset.div_euclid(i128::from(width_ns)) * i128::from(width_ns);
    i64::try_from(start).unwrap_or(from_ns)
}

/// The points one interval keeps, by role.
#[derive(Default)]
struct Kept {
    first: Option<Point>,
    last: Option<Point>,
    min: Option<(f64, Point)>,
    max: Option<(f64, Point)>,
    exceptional: Option<Point>,
}

impl Kept {
    fn add(&mut self, point: Point) {
        if let Some(x) = point.value.as_f64() {
            // The earliest point wins a tie.
            if self.min.as_ref().is_none_or(|(min, _)| x < *min) {
                self.min = Some((x, point.clone()));
            }
            if self.max.as_ref().is_none_or(|(max, _)| x > *max) {
                self.max = Some((x, point.clone()));
            }
        }
        if self.exceptional.is_none() && point.quality.severity() == Severity::Bad {
            self.exceptional = Some(point.clone());
        }
        if self.first.is_none() {
            self.first = Some(point.clone());
        }
        self.last = Some(point);
    }

    /// The kept points in time order, each once.
    fn into_points(self) -> Vec<Point> {
        let mut points: Vec<Point> =
            [self.first, self.last, self.min.map(|m| m.1), self.max.map(|m| m.1), self.exceptional]
                .into_iter()
                .flatten()
                .collect();
        points.sort_by_key(|point| point.timestamp_ns);
        points.dedup_by_key(|point| point.timestamp_ns);
        points
    }
}

/// The plot points of a series over `[from_ns, to_ns]` in intervals of `width_ns` from `from_ns`,
/// in time order.
pub struct Plot<I: Iterator> {
    from_ns: i64,
    to_ns: i64,
    width_ns: i64,
    good_only: bool,
    points: Lookahead<I>,
    /// Points of the last interval computed, not handed out yet (reversed: next at the end).
    pending: Vec<Point>,
    failed: bool,
}

impl<E, I: Iterator<Item = Result<Point, E>>> Plot<I> {
    /// `points` are ascending, from the start of an interval (`from_ns`, or a later interval's
    /// start when a page resumes) to `to_ns` or beyond (later points are not read).
    pub fn new(from_ns: i64, to_ns: i64, width_ns: i64, good_only: bool, points: I) -> Self {
        assert!(width_ns > 0, "plot interval width must be positive");
        Plot { from_ns, to_ns, width_ns, good_only, points: Lookahead::new(points), pending: Vec::new(), failed: false }
    }

    /// The points kept from the next interval holding a selected point; empty at the end.
    fn next_interval(&mut self) -> Result<Vec<Point>, E> {
        let mut kept = Kept::default();
        let mut end_ns = None;
        while let Some(point) = self.points.peek()? {
            if point.timestamp_ns > self.to_ns || end_ns.is_some_and(|end| point.timestamp_ns >= end) {
                break;
            }
            let point = self.points.take()?.expect("peeked");
            if self.good_only && !point.quality.is_good() {
                continue;
            }
            if end_ns.is_none() {
                let start = interval_start(self.from_ns, self.width_ns, point.timestamp_ns);
                end_ns = Some(start.saturating_add(self.width_ns));
            }
            kept.add(point);
        }
        Ok(kept.into_points())
    }
}

impl<E, I: Iterator<Item = Result<Point, E>>> Iterator for Plot<I> {
    type Item = Result<Point, E>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.pending.is_empty() {
            match self.next_interval() {
                Ok(mut points) => {
                    points.reverse();
                    self.pending = points;
                }
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
        self.pending.pop().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::core::points_for_tests::{S, p};
    use diode_common::record::Quality;
    use std::convert::Infallible;

    fn plot(from: i64, to: i64, width: i64, good_only: bool, points: &[Point]) -> Vec<(i64, f64)> {
        let stream = points.iter().cloned().map(Ok::<_, Infallible>);
        Plot::new(from, to, width, good_only, stream)
            .map(|point| {
                let point = point.unwrap();
                (point.timestamp_ns, point.value.as_f64().unwrap())
            })
            .collect()
    }

    #[test]
    fn each_interval_keeps_first_last_min_max_and_the_first_bad_point_in_time_order() {
        // Interval [0, 10 s): 5 at 0 (first), 9 at 1 s (max), 2 at 2 s, 1 at 3 s (min), bad 4 at
        // 4 s (exceptional), bad 3 at 5 s, 6 at 6 s (last). Kept: 0, 1, 3, 4 and 6 s.
        // Interval [10, 20 s): 7 at 12 s alone is first, last, min and max: kept once.
        let bad = |t: i64, v: f64| Point { quality: Quality::BAD, ..p(t, v) };
        let points = [
            p(0, 5.0),
            p(S, 9.0),
            p(2 * S, 2.0),
            p(3 * S, 1.0),
            bad(4 * S, 4.0),
            bad(5 * S, 3.0),
            p(6 * S, 6.0),
            p(12 * S, 7.0),
        ];
        assert_eq!(
            plot(0, 19 * S, 10 * S, false, &points),
            vec![(0, 5.0), (S, 9.0), (3 * S, 1.0), (4 * S, 4.0), (6 * S, 6.0), (12 * S, 7.0)]
        );
        // Good only: the bad points are not read at all.
        assert_eq!(plot(0, 9 * S, 10 * S, true, &points), vec![(0, 5.0), (S, 9.0), (3 * S, 1.0), (6 * S, 6.0)]);
    }

    #[test]
    fn ties_keep_the_earliest_and_intervals_run_from_the_range_start() {
        // Intervals of 10 s from 5 s: [5, 15) holds 3 at 6 s, 3 at 8 s, 1 at 9 s, 3 at 14 s:
        // first 6 s, max 6 s (the earliest 3), min 9 s, last 14 s. [15, 25) holds 2 at 15 s.
        let points = [p(6 * S, 3.0), p(8 * S, 3.0), p(9 * S, 1.0), p(14 * S, 3.0), p(15 * S, 2.0), p(30 * S, 9.0)];
        assert_eq!(
            plot(5 * S, 24 * S, 10 * S, false, &points),
            vec![(6 * S, 3.0), (9 * S, 1.0), (14 * S, 3.0), (15 * S, 2.0)]
        );
    }

    #[test]
    fn widths_cover_the_range_and_starts_align_to_it() {
        // [0, 9] in 4 intervals: 10 ns / 4 rounded up is 3.
        assert_eq!(interval_width(0, 9, 4), 3);
        assert_eq!(interval_width(0, 0, 10), 1);
        assert_eq!(interval_start(5, 3, 12), 11);
        assert_eq!(interval_start(5, 3, 5), 5);
    }
}
