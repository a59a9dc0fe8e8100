//! Values at instants: regular ones (`query --interpolate …`) or listed ones (`query --at …`),
//! the pure core, over a stream of points. The exact definitions are in the module docs of
//! [`crate::query`]; [`value_at`] is also how raw reads' interpolated boundaries are read.

use diode_common::record::{Quality, Severity, Value};
use diode_replica::Point;

use super::lookahead::Lookahead;

/// How a value between two points is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Method {
    /// A straight line between the points around the instant (floats and integers; booleans and
    /// strings take the previous value).
    #[default]
    Linear,
    /// The last point at or before the instant.
    Previous,
}

impl Method {
    /// Reads `linear` or `previous`; the error names the text and the choices.
    pub fn parse(text: &str) -> Result<Method, String> {
        match text {
            "linear" => Ok(Method::Linear),
            "previous" => Ok(Method::Previous),
            _ => Err(format!("{text:?} is not an interpolation method; use linear or previous")),
        }
    }
}

/// How `--at` reads a series at each instant (OPC UA ReadAtTime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AtMode {
    /// The point at the instant, else the straight line between the points around it (floats and
    /// integers; booleans and strings take the previous value), as `--interpolate` with `linear`
    /// reads; no value before the first point or after the last.
    #[default]
    Interpolated,
    /// The last point at or before the instant, still held after the series' last point (the
    /// value a display of "now" shows); no value before the first point.
    Previous,
}

impl AtMode {
    /// Reads `interpolated` or `previous`; the error names the text and the choices.
    pub fn parse(text: &str) -> Result<AtMode, String> {
        match text {
            "interpolated" => Ok(AtMode::Interpolated),
            "previous" => Ok(AtMode::Previous),
            _ => Err(format!("{text:?} is not an at mode; use interpolated or previous")),
        }
    }

    /// The name a query uses for it.
    pub fn name(self) -> &'static str {
        match self {
            AtMode::Interpolated => "interpolated",
            AtMode::Previous => "previous",
        }
    }
}

/// Number of instants `from_ns, from_ns + step_ns, …` up to `to_ns`.
pub fn instant_count(from_ns: i64, to_ns: i64, step_ns: i64) -> u64 {
    if to_ns < from_ns {
        return 0;
    }
    u64::try_from((i128::from(to_ns) - i128::from(from_ns)) / i128::from(step_ns) + 1).unwrap_or(u64::MAX)
}

/// The value at one instant; `None` before the first point and after the last.
#[derive(Debug, Clone, PartialEq)]
pub struct InterpolatedRow {
    /// The instant, in ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// The value there and the quality it takes from the points it came from.
    pub value: Option<(Value, Quality)>,
}

fn severity_rank(quality: Quality) -> u8 {
    match quality.severity() {
        Severity::Good => 0,
        Severity::Uncertain => 1,
        Severity::Bad => 2,
    }
}

/// The worse of two qualities (bad over uncertain over good); `a` on a tie.
pub fn worse(a: Quality, b: Quality) -> Quality {
    if severity_rank(b) > severity_rank(a) { b } else { a }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::F64(x) => Some(*x),
        Value::I64(x) => Some(*x as f64),
        Value::Bool(_) | Value::String(_) => None,
    }
}

/// The value at `at_ns` strictly between `before` and `after`.
fn between(method: Method, before: &Point, after: &Point, at_ns: i64) -> (Value, Quality) {
    if method == Method::Linear
        && let (Some(a), Some(b)) = (number(&before.value), number(&after.value))
    {
        let span = (i128::from(after.timestamp_ns) - i128::from(before.timestamp_ns)) as f64;
        let offset = (i128::from(at_ns) - i128::from(before.timestamp_ns)) as f64;
        return (Value::F64(a + (b - a) * (offset / span)), worse(before.quality, after.quality));
    }
    (before.value.clone(), before.quality)
}

/// The value at `at_ns` read from `before` (the last selected point at or before it) and `after`
/// (the first selected point after it): `before`'s own when it is exactly at the instant, else
/// between the two as `method` says; `None` before the first point and after the last.
pub fn value_at(method: Method, before: Option<&Point>, after: Option<&Point>, at_ns: i64) -> Option<(Value, Quality)> {
    match (before, after) {
        (Some(before), _) if before.timestamp_ns == at_ns => Some((before.value.clone(), before.quality)),
        (Some(before), Some(after)) => Some(between(method, before, after, at_ns)),
        // After the last point (no extrapolation) or before the first.
        _ => None,
    }
}

/// The instants an [`Interpolated`] reads at, ascending.
#[derive(Debug, Clone)]
pub enum Instants {
    /// `next_ns, next_ns + step_ns, …` up to `to_ns`.
    Steps {
        /// The next instant, `None` when done.
        next_ns: Option<i64>,
        /// Spacing, in ns.
        step_ns: i64,
        /// The last instant allowed, inclusive.
        to_ns: i64,
    },
    /// Listed instants, ascending and without repeats.
    Listed(std::vec::IntoIter<i64>),
}

impl Iterator for Instants {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        match self {
            Instants::Steps { next_ns, step_ns, to_ns } => {
                let at_ns = (*next_ns)?;
                *next_ns = at_ns.checked_add(*step_ns).filter(|&next| next <= *to_ns);
                Some(at_ns)
            }
            Instants::Listed(instants) => instants.next(),
        }
    }
}

/// Values at each of some ascending instants.
pub struct Interpolated<I: Iterator> {
    method: Method,
    good_only: bool,
    instants: Instants,
    /// After the last point, the last value still holds (`--at-mode previous`).
    hold_last: bool,
    points: Lookahead<I>,
    /// The last selected point at or before the instant being computed.
    previous: Option<Point>,
}

impl<E, I: Iterator<Item = Result<Point, E>>> Interpolated<I> {
    /// Values at `from_ns + k·step_ns` for every such instant up to `to_ns`. `carry_in` is the
    /// last point before `from_ns` (a good one under `good_only`); `points` runs ascending from
    /// `from_ns` and should not stop at `to_ns` (the engine reads one point past).
    pub fn new(
        method: Method,
        good_only: bool,
        from_ns: i64,
        to_ns: i64,
        step_ns: i64,
        carry_in: Option<Point>,
        points: I,
    ) -> Self {
        assert!(step_ns > 0, "interpolation step must be positive");
        let instants = Instants::Steps { next_ns: (from_ns <= to_ns).then_some(from_ns), step_ns, to_ns };
        Interpolated {
            method,
            good_only,
            instants,
            hold_last: false,
            points: Lookahead::new(points),
            previous: carry_in.filter(|point| !good_only || point.quality.is_good()),
        }
    }

    /// Values at `instants` (ascending), read as `mode` says. `carry_in` is the last point before
    /// the first instant (a good one under `good_only`); `points` runs ascending from the first
    /// instant on, past the last.
    pub fn at_instants(mode: AtMode, good_only: bool, instants: Instants, carry_in: Option<Point>, points: I) -> Self {
        let method = match mode {
            AtMode::Interpolated => Method::Linear,
            AtMode::Previous => Method::Previous,
        };
        Interpolated {
            method,
            good_only,
            instants,
            hold_last: mode == AtMode::Previous,
            points: Lookahead::new(points),
            previous: carry_in.filter(|point| !good_only || point.quality.is_good()),
        }
    }

    fn at(&mut self, at_ns: i64) -> Result<InterpolatedRow, E> {
        // Move every point up to the instant into `previous`, and skip unselected points beyond it,
        // so that the peeked point (if any) is the first selected one after the instant.
        let good_only = self.good_only;
        while let Some(point) = self.points.peek()? {
            let selected = !good_only || point.quality.is_good();
            if point.timestamp_ns > at_ns && selected {
                break;
            }
            let point = self.points.take()?.expect("peeked");
            if selected {
                self.previous = Some(point);
            }
        }
        let value = match (&self.previous, self.points.peek()?) {
            (Some(last), None) if self.hold_last => Some((last.value.clone(), last.quality)),
            (before, after) => value_at(self.method, before.as_ref(), after, at_ns),
        };
        Ok(InterpolatedRow { timestamp_ns: at_ns, value })
    }
}

impl<E, I: Iterator<Item = Result<Point, E>>> Iterator for Interpolated<I> {
    type Item = Result<InterpolatedRow, E>;

    fn next(&mut self) -> Option<Self::Item> {
        let at_ns = self.instants.next()?;
        let row = self.at(at_ns);
        if row.is_err() {
            self.instants = Instants::Listed(Vec::new().into_iter());
        }
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::core::points_for_tests::{S, p};
    use std::convert::Infallible;

    fn run(
        method: Method,
        good_only: bool,
        from: i64,
        to: i64,
        step: i64,
        carry_in: Option<Point>,
        points: &[Point],
    ) -> Vec<(i64, Option<f64>)> {
        let stream = points.iter().cloned().map(Ok::<_, Infallible>);
        Interpolated::new(method, good_only, from, to, step, carry_in, stream)
            .map(|row| {
                let row = row.unwrap();
                (row.timestamp_ns, row.value.and_then(|(v, _)| v.as_f64()))
            })
            .collect()
    }

    /// Points at 10 s = 1 and 20 s = 3; instants every 5 s from 5 s to 25 s.
    fn two_points() -> Vec<Point> {
        vec![p(10 * S, 1.0), p(20 * S, 3.0)]
    }

    #[test]
    fn linear_is_exact_at_points_on_the_line_between_and_absent_outside() {
        let rows = run(Method::Linear, false, 5 * S, 25 * S, 5 * S, None, &two_points());
        assert_eq!(
            rows,
            vec![(5 * S, None), (10 * S, Some(1.0)), (15 * S, Some(2.0)), (20 * S, Some(3.0)), (25 * S, None)]
        );
    }

    #[test]
    fn previous_holds_the_last_value_up_to_the_last_point_only() {
        let rows = run(Method::Previous, false, 5 * S, 25 * S, 5 * S, None, &two_points());
        assert_eq!(
            rows,
            vec![(5 * S, None), (10 * S, Some(1.0)), (15 * S, Some(1.0)), (20 * S, Some(3.0)), (25 * S, None)]
        );
    }

    #[test]
    fn the_carry_in_before_the_range_gives_the_first_instant_a_value() {
        // Range starts at 12 s: the point at 10 s is the carry-in.
        let points = two_points();
        let linear = run(Method::Linear, false, 12 * S, 18 * S, 3 * S, Some(points[0].clone()), &points[1..]);
        assert_eq!(linear.len(), 3);
        for ((at, value), expected) in linear.iter().zip([1.4, 2.0, 2.6]) {
            assert!((value.unwrap() - expected).abs() < 1e-12, "{at}: {value:?}");
        }
        let previous = run(Method::Previous, false, 12 * S, 18 * S, 3 * S, Some(points[0].clone()), &points[1..]);
        assert_eq!(previous.iter().map(|r| r.1).collect::<Vec<_>>(), vec![Some(1.0); 3]);
    }

    #[test]
    fn good_only_looks_through_non_good_points_to_good_neighbours() {
        let points = [
            p(0, 0.0),
            Point { timestamp_ns: 5 * S, value: Value::F64(100.0), quality: Quality::BAD },
            p(10 * S, 10.0),
        ];
        assert_eq!(
            run(Method::Linear, false, 5 * S, 5 * S, S, Some(points[0].clone()), &points[1..]),
            vec![(5 * S, Some(100.0))]
        );
        assert_eq!(
            run(Method::Linear, true, 5 * S, 5 * S, S, Some(points[0].clone()), &points[1..]),
            vec![(5 * S, Some(5.0))]
        );
        assert_eq!(
            run(Method::Previous, true, 6 * S, 6 * S, S, Some(points[0].clone()), &points[1..]),
            vec![(6 * S, Some(0.0))]
        );
    }

    #[test]
    fn linear_quality_is_the_worse_of_the_two_neighbours_and_strings_step() {
        let uncertain = Point { timestamp_ns: 10 * S, value: Value::F64(2.0), quality: Quality::UNCERTAIN };
        let rows: Vec<_> = Interpolated::new(
            Method::Linear,
            false,
            5 * S,
            5 * S,
            S,
            Some(p(0, 0.0)),
            [Ok::<_, Infallible>(uncertain)].into_iter(),
        )
        .map(Result::unwrap)
        .collect();
        assert_eq!(rows[0].value, Some((Value::F64(1.0), Quality::UNCERTAIN)));
        let text = |t: i64, s: &str| Point { timestamp_ns: t, value: Value::String(s.into()), quality: Quality::GOOD };
        let rows: Vec<_> = Interpolated::new(
            Method::Linear,
            false,
            5 * S,
            5 * S,
            S,
            Some(text(0, "open")),
            [Ok::<_, Infallible>(text(10 * S, "shut"))].into_iter(),
        )
        .map(Result::unwrap)
        .collect();
        assert_eq!(rows[0].value, Some((Value::String("open".into()), Quality::GOOD)));
    }

    #[test]
    fn integers_interpolate_as_floats() {
        let int = |t: i64, v: i64| Point { timestamp_ns: t, value: Value::I64(v), quality: Quality::GOOD };
        let rows: Vec<_> = Interpolated::new(
            Method::Linear,
            false,
            S,
            S,
            S,
            Some(int(0, 1)),
            [Ok::<_, Infallible>(int(4 * S, 2))].into_iter(),
        )
        .map(Result::unwrap)
        .collect();
        assert_eq!(rows[0].value, Some((Value::F64(1.25), Quality::GOOD)));
    }

    #[test]
    fn at_listed_instants_previous_holds_the_last_value_and_interpolated_does_not() {
        // Points 1 at 10 s and 3 at 20 s; instants 5, 15, 20 and 30 s. Interpolated: nothing
        // before the first point, 2 on the line, 3 at the point, nothing past the last point.
        // Previous: nothing before, 1, 3, and 3 still held at 30 s.
        let read = |mode: AtMode| -> Vec<Option<f64>> {
            let instants = Instants::Listed(vec![5 * S, 15 * S, 20 * S, 30 * S].into_iter());
            let stream = two_points().into_iter().map(Ok::<_, Infallible>);
            Interpolated::at_instants(mode, false, instants, None, stream)
                .map(|row| row.unwrap().value.and_then(|(value, _)| value.as_f64()))
                .collect()
        };
        assert_eq!(read(AtMode::Interpolated), vec![None, Some(2.0), Some(3.0), None]);
        assert_eq!(read(AtMode::Previous), vec![None, Some(1.0), Some(3.0), Some(3.0)]);
        assert_eq!(AtMode::parse("previous"), Ok(AtMode::Previous));
        assert!(AtMode::parse("nearest").unwrap_err().contains("interpolated or previous"));
    }

    #[test]
    fn instants_are_counted_inclusively() {
        assert_eq!(instant_count(0, 10, 5), 3);
        assert_eq!(instant_count(0, 9, 5), 2);
        assert_eq!(instant_count(1, 0, 5), 0);
    }
}
