//! Raw reads with bounding values (`query --boundary outside|interpolated`, OPC UA ReadRaw's
//! `returnBounds`, PI's boundary types): the points inside the range, plus a value at or beyond
//! each end. The exact definitions are in the module docs of [`crate::query`].

use diode_common::record::{Quality, Value};
use diode_replica::Point;

use super::interpolate::{Method, value_at};
use super::lookahead::Lookahead;

/// Which points a raw read returns around its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Boundary {
    /// Only the points inside the range.
    #[default]
    Inside,
    /// Also the last point before the start and the first after the end, unless a point lies
    /// exactly on that end.
    Outside,
    /// Also a value interpolated at each end, unless a point lies exactly on it.
    Interpolated,
}

impl Boundary {
    /// Reads `inside`, `outside` or `interpolated`; the error names the text and the choices.
    pub fn parse(text: &str) -> Result<Boundary, String> {
        match text {
            "inside" => Ok(Boundary::Inside),
            "outside" => Ok(Boundary::Outside),
            "interpolated" => Ok(Boundary::Interpolated),
            _ => Err(format!("{text:?} is not a boundary; use inside, outside or interpolated")),
        }
    }

    /// The name a query uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Boundary::Inside => "inside",
            Boundary::Outside => "outside",
            Boundary::Interpolated => "interpolated",
        }
    }
}

/// One row of a bounded read: a point, or (interpolated boundaries) a value computed at an end,
/// `None` where there is none to compute.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundedRow {
    /// The point's time or the end's, in ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// The value and its quality.
    pub value: Option<(Value, Quality)>,
}

impl From<Point> for BoundedRow {
    fn from(point: Point) -> BoundedRow {
        BoundedRow { timestamp_ns: point.timestamp_ns, value: Some((point.value, point.quality)) }
    }
}

/// Where a [`Bounded`] read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Inside,
    End,
    Done,
}

/// The rows of a raw read with `boundary` over `[from_ns, to_ns]`, in time order.
pub struct Bounded<I: Iterator> {
    boundary: Boundary,
    good_only: bool,
    from_ns: i64,
    to_ns: i64,
    stage: Stage,
    points: Lookahead<I>,
    /// The last selected point read (or, before any, the last one before the scan's start).
    previous: Option<Point>,
    /// Whether a start row was written at `from_ns` (so that `from == to` gives one end row).
    start_written_at_from: bool,
}

impl<E, I: Iterator<Item = Result<Point, E>>> Bounded<I> {
    /// `points` runs ascending from the scan's start (`from_ns`, or a later time when a page
    /// resumes inside the range) and should not stop at `to_ns` (the first selected point after it
    /// is read); `before` is the last selected point before the scan's start. With `with_start`
    /// false (a resumed page), the start row is left out.
    pub fn new(
        boundary: Boundary,
        good_only: bool,
        (from_ns, to_ns): (i64, i64),
        (before, with_start): (Option<Point>, bool),
        points: I,
    ) -> Self {
        Bounded {
            boundary,
            good_only,
            from_ns,
            to_ns,
            stage: if with_start { Stage::Start } else { Stage::Inside },
            points: Lookahead::new(points),
            previous: before.filter(|point| !good_only || point.quality.is_good()),
            start_written_at_from: false,
        }
    }

    /// The next selected point, without taking it (unselected ones are dropped).
    fn peek_selected(&mut self) -> Result<Option<&Point>, E> {
        while let Some(point) = self.points.peek()? {
            if !self.good_only || point.quality.is_good() {
                break;
            }
            self.points.take()?;
        }
        self.points.peek()
    }

    fn start_row(&mut self) -> Result<Option<BoundedRow>, E> {
        let from_ns = self.from_ns;
        let first = self.peek_selected()?.cloned();
        if first.as_ref().is_some_and(|point| point.timestamp_ns == from_ns) {
            return Ok(None);
        }
        Ok(match self.boundary {
            Boundary::Inside => None,
            Boundary::Outside => self.previous.clone().map(BoundedRow::from),
            Boundary::Interpolated => {
                self.start_written_at_from = true;
                let value = value_at(Method::Linear, self.previous.as_ref(), first.as_ref(), from_ns);
                Some(BoundedRow { timestamp_ns: from_ns, value })
            }
        })
    }

    fn end_row(&mut self) -> Result<Option<BoundedRow>, E> {
        let to_ns = self.to_ns;
        if self.previous.as_ref().is_some_and(|point| point.timestamp_ns == to_ns) {
            return Ok(None);
        }
        let after = self.peek_selected()?.cloned();
        Ok(match self.boundary {
            Boundary::Inside => None,
            Boundary::Outside => after.map(BoundedRow::from),
            Boundary::Interpolated if self.start_written_at_from && self.from_ns == to_ns => None,
            Boundary::Interpolated => {
                let value = value_at(Method::Linear, self.previous.as_ref(), after.as_ref(), to_ns);
                Some(BoundedRow { timestamp_ns: to_ns, value })
            }
        })
    }

    fn advance(&mut self) -> Result<Option<BoundedRow>, E> {
        loop {
            match self.stage {
                Stage::Start => {
                    self.stage = Stage::Inside;
                    if let Some(row) = self.start_row()? {
                        return Ok(Some(row));
                    }
                }
                Stage::Inside => {
                    let to_ns = self.to_ns;
                    if self.peek_selected()?.is_some_and(|point| point.timestamp_ns <= to_ns) {
                        let point = self.points.take()?.expect("peeked");
                        self.previous = Some(point.clone());
                        return Ok(Some(BoundedRow::from(point)));
                    }
                    self.stage = Stage::End;
                }
                Stage::End => {
                    self.stage = Stage::Done;
                    return self.end_row();
                }
                Stage::Done => return Ok(None),
            }
        }
    }
}

impl<E, I: Iterator<Item = Result<Point, E>>> Iterator for Bounded<I> {
    type Item = Result<BoundedRow, E>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(row) => row.map(Ok),
            Err(error) => {
                self.stage = Stage::Done;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::core::points_for_tests::{S, bad, p};
    use std::convert::Infallible;

    /// The read of `series` (ascending) over `[from, to]`, as a whole first page: `before` is
    /// taken from the points before `from`, the scan from the rest.
    fn read(boundary: Boundary, good_only: bool, from: i64, to: i64, series: &[Point]) -> Vec<(i64, Option<f64>)> {
        let before =
            series.iter().rev().find(|point| point.timestamp_ns < from && (!good_only || point.quality.is_good()));
        let scan = series.iter().filter(|point| point.timestamp_ns >= from).cloned().map(Ok::<_, Infallible>);
        Bounded::new(boundary, good_only, (from, to), (before.cloned(), true), scan)
            .map(|row| {
                let row = row.unwrap();
                (row.timestamp_ns, row.value.and_then(|(value, _)| value.as_f64()))
            })
            .collect()
    }

    /// 1 at 10 s, 3 at 20 s, 5 at 30 s, 7 at 40 s.
    fn four() -> Vec<Point> {
        vec![p(10 * S, 1.0), p(20 * S, 3.0), p(30 * S, 5.0), p(40 * S, 7.0)]
    }

    #[test]
    fn inside_is_the_points_of_the_range_only() {
        assert_eq!(
            read(Boundary::Inside, false, 15 * S, 35 * S, &four()),
            vec![(20 * S, Some(3.0)), (30 * S, Some(5.0))]
        );
    }

    #[test]
    fn outside_adds_the_points_around_the_range() {
        // [15 s, 35 s]: the last point before 15 s is at 10 s, the first after 35 s at 40 s.
        assert_eq!(
            read(Boundary::Outside, false, 15 * S, 35 * S, &four()),
            vec![(10 * S, Some(1.0)), (20 * S, Some(3.0)), (30 * S, Some(5.0)), (40 * S, Some(7.0))]
        );
        // A point exactly on an end is that end's bound: [20 s, 30 s] adds nothing.
        assert_eq!(
            read(Boundary::Outside, false, 20 * S, 30 * S, &four()),
            vec![(20 * S, Some(3.0)), (30 * S, Some(5.0))]
        );
        // Past the data: nothing after the end to add; an empty range between two points gives
        // both neighbours.
        assert_eq!(
            read(Boundary::Outside, false, 35 * S, 50 * S, &four()),
            vec![(30 * S, Some(5.0)), (40 * S, Some(7.0))]
        );
        assert_eq!(
            read(Boundary::Outside, false, 21 * S, 22 * S, &four()),
            vec![(20 * S, Some(3.0)), (30 * S, Some(5.0))]
        );
    }

    #[test]
    fn interpolated_adds_values_computed_at_both_ends() {
        // At 15 s on 1 → 3 over 10..20 s: 2. At 35 s on 5 → 7 over 30..40 s: 6.
        assert_eq!(
            read(Boundary::Interpolated, false, 15 * S, 35 * S, &four()),
            vec![(15 * S, Some(2.0)), (20 * S, Some(3.0)), (30 * S, Some(5.0)), (35 * S, Some(6.0))]
        );
        // A point on an end is that end's value, once.
        assert_eq!(
            read(Boundary::Interpolated, false, 20 * S, 30 * S, &four()),
            vec![(20 * S, Some(3.0)), (30 * S, Some(5.0))]
        );
        // Before the first point and after the last there is nothing to interpolate from: the
        // ends are listed without a value (no extrapolation).
        assert_eq!(
            read(Boundary::Interpolated, false, 5 * S, 45 * S, &four())[..],
            [
                (5 * S, None),
                (10 * S, Some(1.0)),
                (20 * S, Some(3.0)),
                (30 * S, Some(5.0)),
                (40 * S, Some(7.0)),
                (45 * S, None)
            ]
        );
        // A range of one instant between points gives one row.
        assert_eq!(read(Boundary::Interpolated, false, 25 * S, 25 * S, &four()), vec![(25 * S, Some(4.0))]);
    }

    #[test]
    fn a_bad_neighbour_makes_an_interpolated_end_bad_unless_good_only_skips_it() {
        // 0 at 0 s (good), 100 at 10 s (bad), 20 at 20 s (good); the range [5 s, 15 s].
        let series = [p(0, 0.0), bad(10 * S, 100.0), p(20 * S, 20.0)];
        let before = Some(series[0].clone());
        let scan = series[1..].iter().cloned().map(Ok::<_, Infallible>);
        let rows: Vec<BoundedRow> = Bounded::new(Boundary::Interpolated, false, (5 * S, 15 * S), (before, true), scan)
            .map(Result::unwrap)
            .collect();
        // At 5 s: 0 → 100 gives 50, bad (the worse of the two); at 15 s: 100 → 20 gives 60, bad.
        assert_eq!(
            rows,
            vec![
                BoundedRow { timestamp_ns: 5 * S, value: Some((Value::F64(50.0), Quality::BAD)) },
                BoundedRow { timestamp_ns: 10 * S, value: Some((Value::F64(100.0), Quality::BAD)) },
                BoundedRow { timestamp_ns: 15 * S, value: Some((Value::F64(60.0), Quality::BAD)) },
            ]
        );
        // Good only: the bad point is skipped and the ends are read on 0 → 20: 5 and 15, good.
        assert_eq!(
            read(Boundary::Interpolated, true, 5 * S, 15 * S, &series),
            vec![(5 * S, Some(5.0)), (15 * S, Some(15.0))]
        );
        // Outside, good only: the bounds are the nearest good points.
        assert_eq!(read(Boundary::Outside, true, 5 * S, 15 * S, &series), vec![(0, Some(0.0)), (20 * S, Some(20.0))]);
    }

    #[test]
    fn a_resumed_page_leaves_out_the_start_row() {
        // Resuming [15 s, 35 s] at 30 s: the scan starts at 30 s, the point before it is 3 at 20 s.
        let series = four();
        let scan = series[2..].iter().cloned().map(Ok::<_, Infallible>);
        let rows: Vec<i64> =
            Bounded::new(Boundary::Interpolated, false, (15 * S, 35 * S), (Some(series[1].clone()), false), scan)
                .map(|row| row.unwrap().timestamp_ns)
                .collect();
        assert_eq!(rows, vec![30 * S, 35 * S]);
    }
}
