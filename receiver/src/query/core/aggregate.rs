//! Aggregates over fixed windows aligned to the Unix epoch, computed in one pass over a stream of
//! points: the pure core of `query --every … --agg …` (see the module docs of [`crate::query`]
//! for the exact definitions every test here works by hand).
//!
//! The points arrive as blocks of columns (the replica's buckets) and each window folds over a
//! run of a block's columns, so a float series costs a few instructions per point: no point is
//! built unless `first`/`last` asks for its value. The aggregates weighted by time fold the spans
//! each point governs ([`super::weighted`]).

use std::ops::Range;

use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::Value;
use diode_replica::Point;

pub use super::weighted::TwaMode;
use super::weighted::{Node, TimeWeighted, number_at};

/// One aggregate a query can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    /// Smallest number in the window.
    Min,
    /// Largest number in the window.
    Max,
    /// Mean of the numbers: each point weighs the same ([`Basis::Event`]) or as long as it held
    /// ([`Basis::Time`]).
    Mean,
    /// Sum of the numbers.
    Sum,
    /// Points in the window, of any kind.
    Count,
    /// The window's earliest point, as stored.
    First,
    /// The window's latest point, as stored.
    Last,
    /// Time-weighted average, see [`TwaMode`].
    Twa,
    /// Sample standard deviation (divides by n − 1; see [`Basis`] for the time-weighted one).
    Stddev,
    /// Population standard deviation (divides by n; see [`Basis`] for the time-weighted one).
    StddevPopulation,
    /// Largest minus smallest number.
    Range,
    /// Latest minus earliest number.
    Delta,
    /// Percentage of the time governed by a point that good points governed.
    PercentGood,
    /// Percentage of the time governed by a point that bad points governed.
    PercentBad,
    /// Seconds governed by good points.
    DurationGood,
    /// Seconds governed by bad points.
    DurationBad,
    /// Seconds a boolean held true, and false: two columns, `time_true` and `time_false`.
    TimeInState,
}

/// The kind of values an aggregate needs from a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Any value (`count`, `first`, `last`, the quality aggregates).
    Anything,
    /// Numbers: floats, integers and booleans as 0/1 (strings have none).
    Numbers,
    /// Booleans (`time_in_state`).
    Booleans,
}

/// Names in declaration order, so that `NAMES[aggregate as usize]` is the aggregate's (a static,
/// so that [`Aggregate::columns`] can hand out a slice of one).
static NAMES: [&str; 17] = [
    "min",
    "max",
    "mean",
    "sum",
    "count",
    "first",
    "last",
    "twa",
    "stddev",
    "stddev_population",
    "range",
    "delta",
    "percent_good",
    "percent_bad",
    "duration_good",
    "duration_bad",
    "time_in_state",
];

impl Aggregate {
    /// Every aggregate, in the order messages list them.
    pub const ALL: [Aggregate; 17] = [
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Mean,
        Aggregate::Sum,
        Aggregate::Count,
        Aggregate::First,
        Aggregate::Last,
        Aggregate::Twa,
        Aggregate::Stddev,
        Aggregate::StddevPopulation,
        Aggregate::Range,
        Aggregate::Delta,
        Aggregate::PercentGood,
        Aggregate::PercentBad,
        Aggregate::DurationGood,
        Aggregate::DurationBad,
        Aggregate::TimeInState,
    ];

    /// The name a query uses for it (`--agg`, HTTP `agg`).
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// The names of its columns: its name, except `time_in_state`'s two.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Aggregate::TimeInState => &["time_true", "time_false"],
            _ => std::slice::from_ref(&NAMES[self as usize]),
        }
    }

    /// What kind of values it needs.
    pub fn needs(self) -> Needs {
        match self {
            Aggregate::Count
            | Aggregate::First
            | Aggregate::Last
            | Aggregate::PercentGood
            | Aggregate::PercentBad
            | Aggregate::DurationGood
            | Aggregate::DurationBad => Needs::Anything,
            Aggregate::TimeInState => Needs::Booleans,
            _ => Needs::Numbers,
        }
    }

    /// Whether the aggregate needs numbers (strings have none).
    pub fn is_numeric(self) -> bool {
        self.needs() == Needs::Numbers
    }

    /// Whether it measures quality (and so cannot be combined with `good_only`).
    pub fn measures_quality(self) -> bool {
        matches!(
            self,
            Aggregate::PercentGood | Aggregate::PercentBad | Aggregate::DurationGood | Aggregate::DurationBad
        )
    }

    /// Whether [`Basis`] changes it.
    pub fn has_basis(self) -> bool {
        matches!(self, Aggregate::Mean | Aggregate::Stddev | Aggregate::StddevPopulation)
    }

    /// A comma-separated list such as `mean,max,twa`. The error completes "agg …".
    pub fn parse_list(text: &str) -> Result<Vec<Aggregate>, String> {
        let known = || Aggregate::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ");
        let mut list = Vec::new();
        for part in text.split(',').map(str::trim) {
            let aggregate =
                Aggregate::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(part)).ok_or_else(|| {
                    format!("{part:?} is not an aggregate; use one or more of {}, comma-separated", known())
                })?;
            if list.contains(&aggregate) {
                return Err(format!("{:?} lists {part} twice", text));
            }
            list.push(aggregate);
        }
        Ok(list)
    }
}

/// What `mean`, `stddev` and `stddev_population` weigh each value by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Basis {
    /// Each point weighs the same, however long its value held.
    #[default]
    Event,
    /// Each value weighs as long as it held in the window (stepped: until the next point).
    Time,
}

impl Basis {
    /// Reads `event` or `time`; the error names the text and the choices.
    pub fn parse(text: &str) -> Result<Basis, String> {
        match text {
            "event" => Ok(Basis::Event),
            "time" => Ok(Basis::Time),
            _ => Err(format!("{text:?} is not a basis; use event or time")),
        }
    }

    /// The name a query uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Basis::Event => "event",
            Basis::Time => "time",
        }
    }
}

/// Start of the window holding `timestamp_ns`: the largest multiple of `every_ns` since the Unix
/// epoch not after it (so negative times round down too). `every_ns` must be positive.
pub fn window_start(timestamp_ns: i64, every_ns: i64) -> i64 {
    debug_assert!(every_ns > 0);
    timestamp_ns.saturating_sub(timestamp_ns.rem_euclid(every_ns))
}

/// Number of windows from the one holding `from_ns` to the one holding `to_ns`, both included.
pub fn window_count(from_ns: i64, to_ns: i64, every_ns: i64) -> u64 {
    let span = i128::from(window_start(to_ns, every_ns)) - i128::from(window_start(from_ns, every_ns));
    u64::try_from(span / i128::from(every_ns) + 1).unwrap_or(0)
}

/// One aggregate's result for one window.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateValue {
    /// No data: an empty window, no numbers, or (stddev) fewer than two.
    Null,
    /// `count`.
    Count(u64),
    /// Every other aggregate of numbers (integers and booleans count as numbers).
    Number(f64),
    /// `first` and `last` give the value as stored (strings included).
    Value(Value),
}

/// The aggregates of one window `[start_ns, start_ns + every)`, in the order asked.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    /// The window's start, in ns since the Unix epoch.
    pub start_ns: i64,
    /// One value per column of the aggregates asked for ([`Aggregate::columns`]), in order.
    pub values: Vec<AggregateValue>,
}

/// What to compute.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSettings {
    /// The window length, in ns; windows start at multiples of it since the Unix epoch.
    pub every_ns: i64,
    /// The aggregates asked for, in order.
    pub aggregates: Vec<Aggregate>,
    /// How `twa` joins points.
    pub twa_mode: TwaMode,
    /// What `mean`, `stddev` and `stddev_population` weigh each value by.
    pub basis: Basis,
    /// Count only good-quality points; for the time-weighted aggregates, time governed by a
    /// non-good point is left out.
    pub good_only: bool,
}

impl WindowSettings {
    /// Whether `aggregate` was asked for.
    pub fn wants(&self, aggregate: Aggregate) -> bool {
        self.aggregates.contains(&aggregate)
    }

    /// Whether an aggregate asked for weighs values by time, so that it needs the point before
    /// the first window (the carry-in) and the point after the last.
    pub fn is_time_weighted(&self) -> bool {
        self.aggregates.iter().any(|&aggregate| {
            aggregate == Aggregate::Twa
                || aggregate == Aggregate::TimeInState
                || aggregate.measures_quality()
                || (aggregate.has_basis() && self.basis == Basis::Time)
        })
    }

    /// Whether the time `node` governs gives some aggregate asked for a value.
    fn carries(&self, node: &Node) -> bool {
        self.aggregates.iter().any(|&aggregate| match aggregate {
            Aggregate::Twa => node.value.is_some(),
            Aggregate::TimeInState => node.state.is_some(),
            _ if aggregate.measures_quality() => true,
            _ if aggregate.has_basis() && self.basis == Basis::Time => node.value.is_some(),
            _ => false,
        })
    }
}

/// Running statistics of one window's selected points.
#[derive(Default)]
struct Statistics {
    count: u64,
    numbers: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Shifted sums for the variance, `Σ(x − shift)` and `Σ(x − shift)²` with `shift` the first
    /// number (so also `delta`'s start): as stable as Welford's method for data far from zero,
    /// without a division per point.
    shift: f64,
    shifted_sum: f64,
    shifted_squares: f64,
    /// The latest number, `delta`'s end.
    latest: f64,
    first: Option<Value>,
    last: Option<Value>,
    /// Only the count, the sum and the latest number are asked for (no minimum, maximum, range,
    /// delta or standard deviation): runs of numbers then fold only those, and `min`, `max` and
    /// the shifted sums stay as the first number left them.
    sum_only: bool,
}

impl Statistics {
    fn add_number(&mut self, x: f64) {
        if self.numbers == 0 {
            (self.shift, self.min, self.max) = (x, x, x);
        }
        self.numbers += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.latest = x;
        let d = x - self.shift;
        self.shifted_sum += d;
        self.shifted_squares += d * d;
    }

    /// Folds in a run of numbers, all selected: [`add_number`](Self::add_number) for each, in
    /// order (so with the same results), with the sums held in registers across the run.
    fn add_numbers(&mut self, numbers: &[f64]) {
        let Some((&first, rest)) = numbers.split_first() else { return };
        self.add_number(first);
        if self.sum_only {
            // One chain of additions instead of five: a mean's fold.
            self.sum = rest.iter().fold(self.sum, |sum, &x| sum + x);
            self.numbers += rest.len() as u64;
            self.latest = numbers[numbers.len() - 1];
            return;
        }
        let shift = self.shift;
        let (mut sum, mut min, mut max) = (self.sum, self.min, self.max);
        let (mut shifted_sum, mut shifted_squares) = (self.shifted_sum, self.shifted_squares);
        for &x in rest {
            sum += x;
            min = min.min(x);
            max = max.max(x);
            let d = x - shift;
            shifted_sum += d;
            shifted_squares += d * d;
        }
        (self.sum, self.min, self.max) = (sum, min, max);
        (self.shifted_sum, self.shifted_squares) = (shifted_sum, shifted_squares);
        self.numbers += rest.len() as u64;
        self.latest = numbers[numbers.len() - 1];
    }

    /// Folds in `rows` of `block`, those `selected` says.
    fn add_rows(&mut self, block: &SeriesColumns, rows: Range<usize>, selected: impl Fn(usize) -> bool, all: bool) {
        match &block.values {
            Values::F64(values) if all => {
                self.count += rows.len() as u64;
                self.add_numbers(&values[rows.clone()]);
            }
            values => {
                for row in rows.clone().filter(|&row| selected(row)) {
                    self.count += 1;
                    if let Some(x) = number_at(values, row) {
                        self.add_number(x);
                    }
                }
            }
        }
    }

    /// `Σ(x − mean)²` over the numbers.
    fn squared_deviations(&self) -> f64 {
        let n = self.numbers as f64;
        (self.shifted_squares - self.shifted_sum * self.shifted_sum / n).max(0.0)
    }

    /// Pushes `aggregate`'s columns for the window onto `out`.
    fn push_results(
        &mut self,
        aggregate: Aggregate,
        (weighted, basis): (&TimeWeighted, Basis),
        out: &mut Vec<AggregateValue>,
    ) {
        let number = |present: bool, x: f64| if present { AggregateValue::Number(x) } else { AggregateValue::Null };
        let optional = |x: Option<f64>| x.map_or(AggregateValue::Null, AggregateValue::Number);
        let n = self.numbers as f64;
        let by_time = basis == Basis::Time;
        let value = match aggregate {
            Aggregate::Count => AggregateValue::Count(self.count),
            Aggregate::Min => number(self.numbers > 0, self.min),
            Aggregate::Max => number(self.numbers > 0, self.max),
            Aggregate::Sum => number(self.numbers > 0, self.sum),
            Aggregate::Range => number(self.numbers > 0, self.max - self.min),
            Aggregate::Delta => number(self.numbers > 0, self.latest - self.shift),
            Aggregate::Mean if by_time => optional(weighted.held_mean()),
            Aggregate::Mean => number(self.numbers > 0, self.sum / n),
            Aggregate::Stddev if by_time => optional(weighted.held_stddev_sample()),
            Aggregate::Stddev => number(self.numbers > 1, (self.squared_deviations() / (n - 1.0)).sqrt()),
            Aggregate::StddevPopulation if by_time => optional(weighted.held_stddev_population()),
            Aggregate::StddevPopulation => number(self.numbers > 0, (self.squared_deviations() / n).sqrt()),
            Aggregate::First => self.first.take().map_or(AggregateValue::Null, AggregateValue::Value),
            Aggregate::Last => self.last.take().map_or(AggregateValue::Null, AggregateValue::Value),
            Aggregate::Twa => optional(weighted.average()),
            Aggregate::PercentGood => optional(weighted.good_percent()),
            Aggregate::PercentBad => optional(weighted.bad_percent()),
            Aggregate::DurationGood => optional(weighted.good_seconds()),
            Aggregate::DurationBad => optional(weighted.bad_seconds()),
            Aggregate::TimeInState => {
                let (on, off) = weighted.state_seconds().unzip();
                out.push(optional(on));
                optional(off)
            }
        };
        out.push(value);
    }
}

/// The windows from the one holding `from_ns` to the one holding `to_ns`, each whole, one row per
/// window (empty ones too, unless [`skip_empty`](Self::skip_empty)). `blocks` are ascending
/// (within and across blocks) and start at or after the first window's start; for the
/// time-weighted aggregates ([`WindowSettings::is_time_weighted`]) they should run past the last
/// window (the engine stops one point after it).
pub struct Windows<I: Iterator> {
    settings: WindowSettings,
    blocks: I,
    /// The block being read and the next row of it to read.
    block: Option<SeriesColumns>,
    row: usize,
    /// `blocks` ended (or failed).
    exhausted: bool,
    next_start_ns: Option<i64>,
    last_start_ns: i64,
    /// The last point seen before the current window, as the time-weighted aggregates see it (the
    /// carry-in).
    previous: Option<Node>,
    keep_first: bool,
    keep_last: bool,
    /// No aggregate needs a window's minimum, maximum or spread (see `Statistics::sum_only`).
    sum_only: bool,
    time_weighted: bool,
    /// Leave out windows with no data, jumping over runs of them.
    skip_empty: bool,
}

impl<E, I: Iterator<Item = Result<SeriesColumns, E>>> Windows<I> {
    /// `carry_in` is the last point (of any quality) before the first window, if any; only the
    /// time-weighted aggregates use it.
    pub fn new(settings: WindowSettings, from_ns: i64, to_ns: i64, carry_in: Option<&Point>, blocks: I) -> Self {
        assert!(settings.every_ns > 0, "window length must be positive");
        let first_start_ns = window_start(from_ns, settings.every_ns);
        let last_start_ns = window_start(to_ns, settings.every_ns);
        let previous = carry_in.map(|point| Node::of_point(point, settings.good_only));
        Windows {
            keep_first: settings.wants(Aggregate::First),
            keep_last: settings.wants(Aggregate::Last),
            sum_only: !settings.aggregates.iter().any(|aggregate| {
                matches!(
                    aggregate,
                    Aggregate::Min
                        | Aggregate::Max
                        | Aggregate::Range
                        | Aggregate::Delta
                        | Aggregate::Stddev
                        | Aggregate::StddevPopulation
                )
            }),
            time_weighted: settings.is_time_weighted(),
            settings,
            blocks,
            block: None,
            row: 0,
            exhausted: false,
            next_start_ns: (from_ns <= to_ns).then_some(first_start_ns),
            last_start_ns,
            previous,
            skip_empty: false,
        }
    }
    /// Leaves out the windows with no data: no selected point, and no value from the time-weighted
    /// aggregates. Runs of windows without a point are jumped over, not computed one by one, so a
    /// long range over sparse data costs what its data costs.
    pub fn skip_empty(mut self) -> Self {
        self.skip_empty = true;
        self
    }

    /// Moves the next window past windows that cannot hold data: before the next point when no
    /// value is carried into them, and after the last point's window.
    fn skip_ahead(&mut self) -> Result<(), E> {
        let Some(start_ns) = self.next_start_ns else { return Ok(()) };
        let every_ns = self.settings.every_ns;
        // A time-weighted aggregate carries the last point into the windows after it, up to the
        // next point.
        let carried = self.time_weighted && self.previous.is_some_and(|node| self.settings.carries(&node));
        let next_point_ns =
            if self.fill()? { Some(self.block.as_ref().expect("filled").timestamps_ns[self.row]) } else { None };
        match next_point_ns {
            Some(timestamp_ns) if !carried => {
                let window_ns = window_start(timestamp_ns, every_ns);
                if window_ns > start_ns {
                    self.next_start_ns = (window_ns <= self.last_start_ns).then_some(window_ns);
                }
            }
            Some(_) => {}
            None => {
                // The last point governs to the end of its own window, and no further.
                let governs_here =
                    carried && self.previous.is_some_and(|node| window_start(node.timestamp_ns, every_ns) >= start_ns);
                if !governs_here {
                    self.next_start_ns = None;
                }
            }
        }
        Ok(())
    }

    /// Whether a row is left to read, fetching the next non-empty block when this one is done.
    fn fill(&mut self) -> Result<bool, E> {
        loop {
            if self.block.as_ref().is_some_and(|block| self.row < block.len()) {
                return Ok(true);
            }
            self.block = None;
            if self.exhausted {
                return Ok(false);
            }
            match self.blocks.next() {
                Some(Ok(block)) => (self.block, self.row) = (Some(block), 0),
                Some(Err(error)) => {
                    self.exhausted = true;
                    return Err(error);
                }
                None => self.exhausted = true,
            }
        }
    }

    /// The row of the window starting at `start_ns`, and whether it has no data.
    fn window(&mut self, start_ns: i64) -> Result<(WindowRow, bool), E> {
        let end_ns = start_ns.saturating_add(self.settings.every_ns);
        let good_only = self.settings.good_only;
        let mode = self.settings.twa_mode;
        let mut statistics = Statistics { sum_only: self.sum_only, ..Statistics::default() };
        let mut weighted = TimeWeighted::default();
        let mut cursor_ns = start_ns;
        while self.fill()? {
            let block = self.block.as_ref().expect("filled");
            let timestamps = &block.timestamps_ns[self.row..];
            let before = timestamps.partition_point(|&t| t < start_ns);
            if before > 0 {
                // Before the first window: only a carry-in.
                self.previous = Some(Node::at(block, self.row + before - 1, good_only));
                self.row += before;
                continue;
            }
            let inside = timestamps.partition_point(|&t| t < end_ns);
            if inside == 0 {
                break;
            }
            let rows = self.row..self.row + inside;
            if self.time_weighted {
                for row in rows.clone() {
                    let node = Node::at(block, row, good_only);
                    if let Some(governing) = self.previous {
                        weighted.add(mode, governing, Some(node), cursor_ns, node.timestamp_ns);
                    }
                    cursor_ns = node.timestamp_ns;
                    self.previous = Some(node);
                }
            }
            let selected = |row: usize| !good_only || block.qualities[row].is_good();
            statistics.add_rows(block, rows.clone(), selected, !good_only);
            if self.keep_first
                && statistics.first.is_none()
                && let Some(row) = rows.clone().find(|&row| selected(row))
            {
                statistics.first = Some(block.value(row));
            }
            if self.keep_last
                && let Some(row) = rows.clone().rev().find(|&row| selected(row))
            {
                statistics.last = Some(block.value(row));
            }
            self.row = rows.end;
            if self.row < block.len() {
                // The window ends inside this block.
                break;
            }
        }
        if self.time_weighted
            && let Some(governing) = self.previous
        {
            let next = if self.fill()? {
                Some(Node::at(self.block.as_ref().expect("filled"), self.row, good_only))
            } else {
                None
            };
            match next {
                Some(next) => weighted.add(mode, governing, Some(next), cursor_ns, end_ns),
                // The series' last point holds to the end of its own window; a window after the
                // end of the data has no average.
                None if governing.timestamp_ns >= start_ns => weighted.add(mode, governing, None, cursor_ns, end_ns),
                None => {}
            }
        }
        let mut values = Vec::with_capacity(self.settings.aggregates.len() + 1);
        for &aggregate in &self.settings.aggregates {
            statistics.push_results(aggregate, (&weighted, self.settings.basis), &mut values);
        }
        let no_value = values.iter().all(|value| matches!(value, AggregateValue::Null | AggregateValue::Count(_)));
        let empty = statistics.count == 0 && no_value;
        Ok((WindowRow { start_ns, values }, empty))
    }
}

impl<E, I: Iterator<Item = Result<SeriesColumns, E>>> Iterator for Windows<I> {
    type Item = Result<WindowRow, E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.skip_empty
                && let Err(error) = self.skip_ahead()
            {
                self.next_start_ns = None;
                return Some(Err(error));
            }
            let start_ns = self.next_start_ns?;
            self.next_start_ns =
                start_ns.checked_add(self.settings.every_ns).filter(|&next| next <= self.last_start_ns);
            match self.window(start_ns) {
                Ok((row, empty)) if !(empty && self.skip_empty) => return Some(Ok(row)),
                Ok(_) => {}
                Err(error) => {
                    self.next_start_ns = None;
                    return Some(Err(error));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::core::points_for_tests::{S, bad, p};
    use diode_common::record::{Quality, SeriesKey};
    use std::convert::Infallible;

    fn settings(every_ns: i64, aggregates: &[Aggregate]) -> WindowSettings {
        WindowSettings {
            every_ns,
            aggregates: aggregates.to_vec(),
            twa_mode: TwaMode::Step,
            basis: Basis::Event,
            good_only: false,
        }
    }

    /// `points` as blocks of `size` points.
    fn blocks(points: &[Point], size: usize) -> Vec<SeriesColumns> {
        let block = |points: &[Point]| {
            let mut block = SeriesColumns::new(SeriesKey::new("t"));
            for point in points {
                block.push(point.timestamp_ns, point.value.clone(), point.quality);
            }
            block
        };
        points.chunks(size).map(block).collect()
    }

    fn run_in_blocks(
        settings: WindowSettings,
        from_ns: i64,
        to_ns: i64,
        carry_in: Option<&Point>,
        points: &[Point],
        size: usize,
    ) -> Vec<WindowRow> {
        windows_in_blocks(settings, (from_ns, to_ns), carry_in, points, size, false)
    }

    fn windows_in_blocks(
        settings: WindowSettings,
        (from_ns, to_ns): (i64, i64),
        carry_in: Option<&Point>,
        points: &[Point],
        size: usize,
        skip_empty: bool,
    ) -> Vec<WindowRow> {
        let stream = blocks(points, size).into_iter().map(Ok::<_, Infallible>);
        let windows = Windows::new(settings, from_ns, to_ns, carry_in, stream);
        let windows = if skip_empty { windows.skip_empty() } else { windows };
        windows.map(|row| row.unwrap()).collect()
    }

    /// The rows [`Windows::skip_empty`] keeps, the same however the points are cut into blocks.
    fn run_skipping_empty(
        settings: WindowSettings,
        range: (i64, i64),
        carry_in: Option<Point>,
        points: &[Point],
    ) -> Vec<WindowRow> {
        let whole = windows_in_blocks(settings.clone(), range, carry_in.as_ref(), points, usize::MAX, true);
        for size in [1, 2, 3, 7] {
            let cut = windows_in_blocks(settings.clone(), range, carry_in.as_ref(), points, size, true);
            assert_eq!(
                cut.iter().map(|row| row.start_ns).collect::<Vec<_>>(),
                whole.iter().map(|row| row.start_ns).collect::<Vec<_>>(),
                "blocks of {size}"
            );
        }
        whole
    }

    /// The rows over `points` in one block, checked to be the same however the points are cut
    /// into blocks.
    fn run(
        settings: WindowSettings,
        from_ns: i64,
        to_ns: i64,
        carry_in: Option<Point>,
        points: &[Point],
    ) -> Vec<WindowRow> {
        let whole = run_in_blocks(settings.clone(), from_ns, to_ns, carry_in.as_ref(), points, usize::MAX);
        for size in [1, 2, 3, 7] {
            let cut = run_in_blocks(settings.clone(), from_ns, to_ns, carry_in.as_ref(), points, size);
            assert_eq!(cut.len(), whole.len(), "blocks of {size}");
            for (cut, whole) in cut.iter().zip(&whole) {
                assert_eq!(cut.start_ns, whole.start_ns);
                for (a, b) in cut.values.iter().zip(&whole.values) {
                    match (a, b) {
                        (AggregateValue::Number(a), AggregateValue::Number(b)) => {
                            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "blocks of {size}: {a} vs {b}")
                        }
                        _ => assert_eq!(a, b, "blocks of {size}"),
                    }
                }
            }
        }
        whole
    }

    fn numbers(rows: &[WindowRow]) -> Vec<(i64, Vec<Option<f64>>)> {
        rows.iter()
            .map(|row| {
                let values = row
                    .values
                    .iter()
                    .map(|value| match value {
                        AggregateValue::Null => None,
                        AggregateValue::Count(n) => Some(*n as f64),
                        AggregateValue::Number(x) => Some(*x),
                        AggregateValue::Value(v) => v.as_f64(),
                    })
                    .collect();
                (row.start_ns, values)
            })
            .collect()
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|a| (a - expected).abs() < 1e-9)
    }

    #[test]
    fn windows_align_to_multiples_of_the_length_since_the_epoch() {
        assert_eq!(window_start(125 * S, 60 * S), 120 * S);
        assert_eq!(window_start(120 * S, 60 * S), 120 * S);
        assert_eq!(window_start(-1, 60 * S), -60 * S);
        assert_eq!(window_count(125 * S, 125 * S, 60 * S), 1);
        assert_eq!(window_count(119 * S, 120 * S, 60 * S), 2);
        // A query from 00:01:05 to 00:03:10 in minutes reports the windows 00:01, 00:02 and 00:03.
        let rows = run(settings(60 * S, &[Aggregate::Count]), 65 * S, 190 * S, None, &[]);
        assert_eq!(rows.iter().map(|r| r.start_ns).collect::<Vec<_>>(), vec![60 * S, 120 * S, 180 * S]);
    }

    #[test]
    fn a_point_exactly_on_a_boundary_belongs_to_the_window_starting_there() {
        let points = [p(59 * S, 1.0), p(60 * S, 2.0), p(119 * S, 3.0), p(120 * S, 4.0)];
        let rows = run(settings(60 * S, &[Aggregate::Count, Aggregate::Sum]), 0, 179 * S, None, &points);
        assert_eq!(
            numbers(&rows),
            vec![
                (0, vec![Some(1.0), Some(1.0)]),
                (60 * S, vec![Some(2.0), Some(5.0)]),
                (120 * S, vec![Some(1.0), Some(4.0)])
            ]
        );
    }

    #[test]
    fn windows_are_whole_even_where_they_reach_past_the_range() {
        // from = 00:00:30 still takes the point at 00:00:10 of the window 00:00.
        let points = [p(10 * S, 1.0), p(40 * S, 3.0)];
        let rows = run(settings(60 * S, &[Aggregate::Mean]), 30 * S, 30 * S, None, &points);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(2.0)])]);
    }

    #[test]
    fn empty_windows_report_count_zero_and_null_for_the_rest() {
        let all = [
            Aggregate::Count,
            Aggregate::Min,
            Aggregate::Max,
            Aggregate::Mean,
            Aggregate::Sum,
            Aggregate::First,
            Aggregate::Last,
            Aggregate::Stddev,
        ];
        let rows = run(settings(10 * S, &all), 0, 29 * S, None, &[p(S, 5.0), p(25 * S, 7.0)]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].values[0], AggregateValue::Count(0));
        assert!(rows[1].values[1..].iter().all(|v| *v == AggregateValue::Null));
    }

    #[test]
    fn empty_windows_are_left_out_when_asked_and_runs_of_them_jumped_over() {
        let points = [p(S, 5.0), p(25 * S, 7.0), p(1_000_000 * S, 9.0)];
        // A million-second range of 10 s windows: three hold a point.
        let rows = run_skipping_empty(settings(10 * S, &[Aggregate::Count]), (0, 2_000_000 * S), None, &points);
        assert_eq!(
            numbers(&rows),
            vec![(0, vec![Some(1.0)]), (20 * S, vec![Some(1.0)]), (1_000_000 * S, vec![Some(1.0)])]
        );
        // A twa carries a value across the windows between points, so those stay; none after the
        // last point's window, nor before the first point.
        let rows = run_skipping_empty(
            settings(10 * S, &[Aggregate::Twa, Aggregate::Count]),
            (-100 * S, 100 * S),
            None,
            &[p(5 * S, 1.0), p(35 * S, 3.0)],
        );
        assert_eq!(
            numbers(&rows),
            vec![
                (0, vec![Some(1.0), Some(1.0)]),
                (10 * S, vec![Some(1.0), Some(0.0)]),
                (20 * S, vec![Some(1.0), Some(0.0)]),
                (30 * S, vec![Some(2.0), Some(1.0)])
            ]
        );
    }

    #[test]
    fn min_max_mean_sum_first_last_by_hand() {
        let points = [p(S, 4.0), p(2 * S, -1.0), p(3 * S, 6.0), p(4 * S, 3.0)];
        let aggregates =
            [Aggregate::Min, Aggregate::Max, Aggregate::Mean, Aggregate::Sum, Aggregate::First, Aggregate::Last];
        let rows = run(settings(10 * S, &aggregates), 0, 9 * S, None, &points);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(-1.0), Some(6.0), Some(3.0), Some(12.0), Some(4.0), Some(3.0)])]);
    }

    #[test]
    fn stddev_is_the_sample_standard_deviation() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32; sample variance 32/7.
        let values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let points: Vec<Point> = values.iter().enumerate().map(|(i, &v)| p(i as i64 * S, v)).collect();
        let rows = run(settings(10 * S, &[Aggregate::Stddev]), 0, 9 * S, None, &points);
        assert!(close(numbers(&rows)[0].1[0], (32.0f64 / 7.0).sqrt()));
        // Large offsets do not cost precision (shifted sums).
        let shifted: Vec<Point> = values.iter().enumerate().map(|(i, &v)| p(i as i64 * S, v + 1e9)).collect();
        let rows = run(settings(10 * S, &[Aggregate::Stddev]), 0, 9 * S, None, &shifted);
        assert!(close(numbers(&rows)[0].1[0], (32.0f64 / 7.0).sqrt()));
    }

    #[test]
    fn a_window_with_one_point_has_no_stddev_and_its_value_everywhere_else() {
        let all = [Aggregate::Count, Aggregate::Min, Aggregate::Mean, Aggregate::Stddev, Aggregate::Twa];
        let rows = run(settings(10 * S, &all), 0, 9 * S, None, &[p(4 * S, 8.0)]);
        // twa: no data before 4 s (left out), then 8 holds to the window end.
        assert_eq!(numbers(&rows), vec![(0, vec![Some(1.0), Some(8.0), Some(8.0), None, Some(8.0)])]);
    }

    #[test]
    fn a_series_with_one_point_has_no_twa_in_later_windows() {
        let rows = run(settings(10 * S, &[Aggregate::Twa, Aggregate::Count]), 0, 29 * S, None, &[p(4 * S, 8.0)]);
        assert_eq!(
            numbers(&rows),
            vec![(0, vec![Some(8.0), Some(1.0)]), (10 * S, vec![None, Some(0.0)]), (20 * S, vec![None, Some(0.0)])]
        );
    }

    #[test]
    fn bad_points_count_unless_good_only() {
        let points = [p(S, 10.0), bad(2 * S, 0.0), p(3 * S, 20.0)];
        let rows = run(settings(10 * S, &[Aggregate::Count, Aggregate::Mean, Aggregate::Min]), 0, 9 * S, None, &points);
        assert_eq!(numbers(&rows)[0].1, vec![Some(3.0), Some(10.0), Some(0.0)]);
        let good_only = WindowSettings {
            good_only: true,
            ..settings(10 * S, &[Aggregate::Count, Aggregate::Mean, Aggregate::Min])
        };
        let rows = run(good_only, 0, 9 * S, None, &points);
        assert_eq!(numbers(&rows)[0].1, vec![Some(2.0), Some(15.0), Some(10.0)]);
    }

    /// The hand-worked case for both modes. Window [60 s, 120 s); carry-in at 30 s = 10; points at
    /// 70 s = 20, 100 s = 40; next point after the window at 150 s = 10.
    fn irregular() -> (Point, Vec<Point>) {
        (p(30 * S, 10.0), vec![p(70 * S, 20.0), p(100 * S, 40.0), p(150 * S, 10.0)])
    }

    #[test]
    fn twa_step_carries_the_value_before_the_window_into_its_start() {
        // [60,70): 10 (carried in), [70,100): 20, [100,120): 40.
        // (10·10 + 20·30 + 40·20) / 60 = 1500 / 60 = 25.
        let (carry_in, points) = irregular();
        let rows = run(settings(60 * S, &[Aggregate::Twa, Aggregate::Mean]), 60 * S, 60 * S, Some(carry_in), &points);
        assert_eq!(rows.len(), 1);
        assert!(close(numbers(&rows)[0].1[0], 25.0), "{rows:?}");
        // The plain mean only sees the two points inside.
        assert!(close(numbers(&rows)[0].1[1], 30.0));
    }

    #[test]
    fn twa_linear_interpolates_to_both_window_edges() {
        // v(60) on 30→70 from 10 to 20: 17.5. v(120) on 100→150 from 40 to 10: 28.
        // [60,70): (17.5+20)/2·10 = 187.5; [70,100): (20+40)/2·30 = 900; [100,120): (40+28)/2·20 = 680.
        // (187.5 + 900 + 680) / 60 = 1767.5 / 60.
        let (carry_in, points) = irregular();
        let linear = WindowSettings { twa_mode: TwaMode::Linear, ..settings(60 * S, &[Aggregate::Twa]) };
        let rows = run(linear, 60 * S, 60 * S, Some(carry_in), &points);
        assert!(close(numbers(&rows)[0].1[0], 1767.5 / 60.0), "{rows:?}");
    }

    #[test]
    fn twa_of_an_empty_window_between_points_uses_the_neighbours() {
        // Points at 5 s = 0 and 25 s = 20; window [10, 20) holds none.
        let points = [p(5 * S, 0.0), p(25 * S, 20.0)];
        let step = run(settings(10 * S, &[Aggregate::Twa]), 10 * S, 10 * S, Some(points[0].clone()), &points[1..]);
        assert_eq!(numbers(&step)[0].1, vec![Some(0.0)]);
        // Linear: the line 0→20 over 5..25 s is 5..15 across the window; its mean is 10.
        let linear = WindowSettings { twa_mode: TwaMode::Linear, ..settings(10 * S, &[Aggregate::Twa]) };
        let rows = run(linear, 10 * S, 10 * S, Some(points[0].clone()), &points[1..]);
        assert!(close(numbers(&rows)[0].1[0], 10.0));
    }

    #[test]
    fn twa_leaves_out_time_governed_by_non_good_points_under_good_only() {
        // Window [0, 60): 10 at 0 s, bad 0 at 20 s, 40 at 40 s, next point at 60 s.
        let points = [p(0, 10.0), bad(20 * S, 0.0), p(40 * S, 40.0), p(60 * S, 40.0)];
        // All points: (10·20 + 0·20 + 40·20) / 60 = 1000 / 60.
        let rows = run(settings(60 * S, &[Aggregate::Twa]), 0, 0, None, &points);
        assert!(close(numbers(&rows)[0].1[0], 1000.0 / 60.0));
        // Good only: [20, 40) is left out: (10·20 + 40·20) / 40 = 25.
        let good_only = WindowSettings { good_only: true, ..settings(60 * S, &[Aggregate::Twa]) };
        let rows = run(good_only.clone(), 0, 0, None, &points);
        assert!(close(numbers(&rows)[0].1[0], 25.0));
        // Linear, good only: [0,20) ends at a left-out point, so 10 holds (TimeAverage2); [20,40)
        // is left out; [40,60) runs 40→40. (10·20 + 40·20) / 40 = 25.
        let linear = WindowSettings { twa_mode: TwaMode::Linear, ..good_only };
        let rows = run(linear, 0, 0, None, &points);
        assert!(close(numbers(&rows)[0].1[0], 25.0));
    }

    #[test]
    fn twa_before_the_first_point_leaves_that_time_out() {
        // No carry-in; first point at 30 s = 6 in [0, 60), next at 60 s: only [30, 60) counts.
        let rows = run(settings(60 * S, &[Aggregate::Twa]), 0, 0, None, &[p(30 * S, 6.0), p(60 * S, 100.0)]);
        assert!(close(numbers(&rows)[0].1[0], 6.0));
    }

    #[test]
    fn windows_before_negative_epoch_times_align_down() {
        let rows = run(settings(10 * S, &[Aggregate::Count]), -15 * S, -1, None, &[p(-12 * S, 1.0), p(-10 * S, 1.0)]);
        assert_eq!(numbers(&rows), vec![(-20 * S, vec![Some(1.0)]), (-10 * S, vec![Some(1.0)])]);
    }

    #[test]
    fn strings_count_and_come_first_and_last_but_have_no_numbers() {
        let text = |t: i64, s: &str| Point { timestamp_ns: t, value: Value::String(s.into()), quality: Quality::GOOD };
        let rows = run(
            settings(10 * S, &[Aggregate::Count, Aggregate::First, Aggregate::Last, Aggregate::Mean]),
            0,
            0,
            None,
            &[text(1, "open"), text(2, "closed")],
        );
        assert_eq!(
            rows[0].values,
            vec![
                AggregateValue::Count(2),
                AggregateValue::Value(Value::String("open".into())),
                AggregateValue::Value(Value::String("closed".into())),
                AggregateValue::Null
            ]
        );
    }

    /// An independent statement of the step twa: each point governs until the next point, or (the
    /// last point) until the end of its own window; integrate that over the window exactly.
    fn naive_step_twa(points: &[Point], start: i64, end: i64, every: i64) -> Option<f64> {
        let (mut area, mut covered) = (0.0, 0.0);
        for (index, point) in points.iter().enumerate() {
            let until =
                points.get(index + 1).map_or(window_start(point.timestamp_ns, every) + every, |next| next.timestamp_ns);
            let (a, b) = (point.timestamp_ns.max(start), until.min(end));
            if b > a {
                area += point.value.as_f64().unwrap() * (b - a) as f64;
                covered += (b - a) as f64;
            }
        }
        (covered > 0.0).then(|| area / covered)
    }

    proptest::proptest! {
        #[test]
        fn streaming_windows_agree_with_a_naive_recomputation(
            raw in proptest::collection::btree_map(0i64..2_000, -100i32..100, 0..60),
            every in 1i64..400,
            from in 0i64..2_000,
            length in 0i64..1_000,
        ) {
            let points: Vec<Point> = raw.iter().map(|(&t, &v)| p(t, f64::from(v))).collect();
            let to = from + length;
            let first_start = window_start(from, every);
            let carry_in = points.iter().rev().find(|point| point.timestamp_ns < first_start).cloned();
            let inside: Vec<Point> = points.iter().filter(|point| point.timestamp_ns >= first_start).cloned().collect();
            let aggregates = [Aggregate::Count, Aggregate::Sum, Aggregate::Min, Aggregate::Max, Aggregate::Twa];
            let rows = run(settings(every, &aggregates), from, to, carry_in.clone(), &inside);
            proptest::prop_assert_eq!(rows.len() as u64, window_count(from, to, every));
            // Skipping empty windows leaves out exactly those with no point and no twa.
            let kept = run_skipping_empty(settings(every, &aggregates), (from, to), carry_in, &inside);
            let non_empty: Vec<&WindowRow> = rows
                .iter()
                .filter(|row| row.values[0] != AggregateValue::Count(0) || row.values[4] != AggregateValue::Null)
                .collect();
            proptest::prop_assert_eq!(kept.iter().collect::<Vec<_>>(), non_empty);
            for row in rows {
                let end = row.start_ns + every;
                let window: Vec<f64> = points
                    .iter()
                    .filter(|point| (row.start_ns..end).contains(&point.timestamp_ns))
                    .map(|point| point.value.as_f64().unwrap())
                    .collect();
                proptest::prop_assert_eq!(&row.values[0], &AggregateValue::Count(window.len() as u64));
                if window.is_empty() {
                    proptest::prop_assert_eq!(&row.values[1], &AggregateValue::Null);
                } else {
                    proptest::prop_assert_eq!(&row.values[1], &AggregateValue::Number(window.iter().sum()));
                    proptest::prop_assert_eq!(&row.values[2], &AggregateValue::Number(window.iter().copied().fold(f64::INFINITY, f64::min)));
                    proptest::prop_assert_eq!(&row.values[3], &AggregateValue::Number(window.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
                }
                let expected = naive_step_twa(&points, row.start_ns, end, every);
                match (&row.values[4], expected) {
                    (AggregateValue::Null, None) => {}
                    (AggregateValue::Number(actual), Some(expected)) => proptest::prop_assert!((actual - expected).abs() < 1e-9),
                    (actual, expected) => proptest::prop_assert!(false, "twa {:?} but expected {:?}", actual, expected),
                }
            }
        }
    }

    fn with_basis(basis: Basis, every_ns: i64, aggregates: &[Aggregate]) -> WindowSettings {
        WindowSettings { basis, ..settings(every_ns, aggregates) }
    }

    fn quality_point(timestamp_ns: i64, value: f64, quality: Quality) -> Point {
        Point { timestamp_ns, value: Value::F64(value), quality }
    }

    fn boolean(timestamp_ns: i64, state: bool) -> Point {
        Point { timestamp_ns, value: Value::Bool(state), quality: Quality::GOOD }
    }

    #[test]
    fn range_delta_and_population_stddev_by_hand() {
        // 2, 4, 4, 4, 5, 5, 7, 9 at 0..7 s: range 9 − 2 = 7; delta 9 − 2 = 7 (last − first);
        // mean 5, squared deviations 32: population variance 32/8 = 4, stddev 2.
        let values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let points: Vec<Point> = values.iter().enumerate().map(|(i, &v)| p(i as i64 * S, v)).collect();
        let aggregates = [Aggregate::Range, Aggregate::Delta, Aggregate::StddevPopulation];
        let rows = run(settings(10 * S, &aggregates), 0, 9 * S, None, &points);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(7.0), Some(7.0), Some(2.0)])]);
        // Falling: 4, −1, 6, 3: range 6 − (−1) = 7, delta 3 − 4 = −1. One point: 0, 0, 0.
        let points = [p(S, 4.0), p(2 * S, -1.0), p(3 * S, 6.0), p(4 * S, 3.0)];
        let rows = run(settings(10 * S, &aggregates), 0, 9 * S, None, &points);
        assert_eq!(numbers(&rows)[0].1[..2], [Some(7.0), Some(-1.0)]);
        let rows = run(settings(10 * S, &aggregates), 0, 9 * S, None, &[p(S, 8.0)]);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(0.0), Some(0.0), Some(0.0)])]);
    }

    #[test]
    fn time_basis_weighs_each_value_by_how_long_it_held() {
        // Window [0, 60 s): 10 carried in from −10 s holds [0, 20); 40 at 20 s holds [20, 30);
        // 10 at 30 s holds [30, 60) (the next point is at 70 s).
        // Weights: 10 for 50 s, 40 for 10 s. Mean (10·50 + 40·10) / 60 = 900 / 60 = 15.
        // Σw·(x − 15)² = 50·25 + 10·625 = 7500: population variance 7500 / 60 = 125.
        // Sample (spans as reliability weights): Σw² = 20² + 10² + 30² = 1400 (s²), so the
        // divisor is 60 − 1400/60 = 110/3 s and the variance 7500 · 3 / 110 = 22500 / 110.
        let carry_in = p(-10 * S, 10.0);
        let points = [p(20 * S, 40.0), p(30 * S, 10.0), p(70 * S, 0.0)];
        let aggregates = [Aggregate::Mean, Aggregate::StddevPopulation, Aggregate::Stddev];
        let rows = run(with_basis(Basis::Time, 60 * S, &aggregates), 0, 0, Some(carry_in.clone()), &points);
        let values = &numbers(&rows)[0].1;
        assert!(close(values[0], 15.0), "{values:?}");
        assert!(close(values[1], 125f64.sqrt()), "{values:?}");
        assert!(close(values[2], (22_500.0f64 / 110.0).sqrt()), "{values:?}");
        // Event basis: the two points inside, 40 and 10: mean 25, population stddev 15, sample
        // stddev √450.
        let rows = run(with_basis(Basis::Event, 60 * S, &aggregates), 0, 0, Some(carry_in), &points);
        let values = &numbers(&rows)[0].1;
        assert!(close(values[0], 25.0) && close(values[1], 15.0) && close(values[2], 450f64.sqrt()), "{values:?}");
    }

    #[test]
    fn time_basis_over_equal_spans_is_the_event_basis() {
        // 2, 4, 4, 5 each held 10 s (next point at 40 s): mean 3.75, squared deviations
        // 3.0625 + 0.0625 + 0.0625 + 1.5625 = 4.75; sample variance 4.75 / 3, population 4.75 / 4.
        let points = [p(0, 2.0), p(10 * S, 4.0), p(20 * S, 4.0), p(30 * S, 5.0), p(40 * S, 0.0)];
        let aggregates = [Aggregate::Mean, Aggregate::Stddev, Aggregate::StddevPopulation];
        let rows = run(with_basis(Basis::Time, 40 * S, &aggregates), 0, 0, None, &points);
        let values = &numbers(&rows)[0].1;
        assert!(close(values[0], 3.75), "{values:?}");
        assert!(close(values[1], (4.75f64 / 3.0).sqrt()), "{values:?}");
        assert!(close(values[2], (4.75f64 / 4.0).sqrt()), "{values:?}");
        // A single value held all the window: no sample stddev, population stddev 0.
        let rows = run(with_basis(Basis::Time, 10 * S, &aggregates), 0, 0, None, &[p(0, 7.0), p(20 * S, 1.0)]);
        assert_eq!(numbers(&rows)[0].1, vec![Some(7.0), None, Some(0.0)]);
    }

    #[test]
    fn quality_durations_weigh_each_quality_by_the_time_it_governs() {
        // Window [0, 60 s): good 1 carried in from −5 s governs [0, 10); bad at 10 s [10, 25);
        // uncertain at 25 s [25, 40) (neither good nor bad); good at 40 s [40, 60).
        // Good 10 + 20 = 30 s of 60 (50 %); bad 15 s (25 %).
        let carry_in = p(-5 * S, 1.0);
        let points = [
            quality_point(10 * S, 2.0, Quality::BAD),
            quality_point(25 * S, 3.0, Quality::UNCERTAIN),
            p(40 * S, 4.0),
            p(70 * S, 5.0),
        ];
        let aggregates =
            [Aggregate::PercentGood, Aggregate::PercentBad, Aggregate::DurationGood, Aggregate::DurationBad];
        let rows = run(settings(60 * S, &aggregates), 0, 0, Some(carry_in), &points);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(50.0), Some(25.0), Some(30.0), Some(15.0)])]);
    }

    #[test]
    fn quality_durations_cover_only_time_some_point_governs() {
        // No carry-in: [0, 20 s) before the first point counts as neither good nor bad, and is
        // left out of the percentages' whole. 20 s good governs [20, 40); 40 s bad, the series'
        // last point, governs to the end of its window, [40, 60). Good 20 s, bad 20 s: 50 % each.
        // The next window, after the last point, has no data and is left out.
        let points = [p(20 * S, 1.0), quality_point(40 * S, 0.0, Quality::BAD)];
        let aggregates = [Aggregate::PercentGood, Aggregate::DurationGood, Aggregate::DurationBad];
        let rows = run_skipping_empty(settings(60 * S, &aggregates), (0, 119 * S), None, &points);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(50.0), Some(20.0), Some(20.0)])]);
        // A bad value carried across windows without points fills them: 100 % bad.
        let points = [quality_point(0, 0.0, Quality::BAD), p(150 * S, 1.0)];
        let rows = run_skipping_empty(settings(60 * S, &[Aggregate::PercentBad]), (0, 119 * S), None, &points);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(100.0)]), (60 * S, vec![Some(100.0)])]);
    }

    #[test]
    fn time_in_state_counts_seconds_true_and_false_and_count_counts_booleans() {
        // Window [0, 60 s): false carried in from −1 s holds [0, 15); true at 15 s [15, 50);
        // false at 50 s [50, 60) (next point at 75 s). True 35 s; false 15 + 10 = 25 s.
        // count: the two points inside; mean over 1 and 0: 0.5.
        let aggregates = [Aggregate::TimeInState, Aggregate::Count, Aggregate::Mean];
        let points = [boolean(15 * S, true), boolean(50 * S, false), boolean(75 * S, true)];
        let rows = run(settings(60 * S, &aggregates), 0, 0, Some(boolean(-S, false)), &points);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(35.0), Some(25.0), Some(2.0), Some(0.5)])]);
        assert_eq!(Aggregate::TimeInState.columns(), ["time_true", "time_false"], "one aggregate, two columns");
        // Numbers hold no state: no time in either.
        let rows = run(settings(60 * S, &[Aggregate::TimeInState]), 0, 0, None, &[p(S, 1.0)]);
        assert_eq!(numbers(&rows), vec![(0, vec![None, None])]);
    }

    #[test]
    fn good_only_leaves_non_good_time_out_of_the_time_basis_and_states() {
        // Good only: the bad true at 20 s governs [20, 40) which is left out. Window [0, 60):
        // true at 0 s [0, 20), bad [20, 40), false at 40 s [40, 60): true 20 s, false 20 s.
        let points =
            [boolean(0, true), Point { quality: Quality::BAD, ..boolean(20 * S, true) }, boolean(40 * S, false)];
        let good_only = WindowSettings { good_only: true, ..settings(60 * S, &[Aggregate::TimeInState]) };
        let rows = run(good_only, 0, 0, None, &points);
        assert_eq!(numbers(&rows), vec![(0, vec![Some(20.0), Some(20.0)])]);
    }

    proptest::proptest! {
        #[test]
        fn the_time_basis_mean_is_the_step_twa(
            raw in proptest::collection::btree_map(0i64..2_000, -100i32..100, 1..40),
            every in 1i64..400,
        ) {
            let points: Vec<Point> = raw.iter().map(|(&t, &v)| p(t, f64::from(v))).collect();
            let aggregates = [Aggregate::Twa, Aggregate::Mean];
            let rows = run(with_basis(Basis::Time, every, &aggregates), 0, 2_000, None, &points);
            for row in rows {
                match (&row.values[0], &row.values[1]) {
                    (AggregateValue::Number(twa), AggregateValue::Number(mean)) => {
                        proptest::prop_assert!((twa - mean).abs() <= 1e-9 * twa.abs().max(1.0), "{} vs {}", twa, mean)
                    }
                    (twa, mean) => proptest::prop_assert_eq!(twa, mean),
                }
            }
        }
    }

    #[test]
    fn aggregate_lists_parse_and_refuse_unknowns_and_repeats() {
        assert_eq!(
            Aggregate::parse_list("mean, MAX,twa").unwrap(),
            vec![Aggregate::Mean, Aggregate::Max, Aggregate::Twa]
        );
        assert!(Aggregate::parse_list("median").unwrap_err().contains("stddev"));
        assert!(Aggregate::parse_list("mean,mean").unwrap_err().contains("twice"));
        for aggregate in Aggregate::ALL {
            assert_eq!(Aggregate::parse_list(aggregate.name()).unwrap(), vec![aggregate]);
        }
        assert_eq!(Aggregate::StddevPopulation.name(), "stddev_population");
        assert_eq!(Aggregate::DurationBad.columns(), ["duration_bad"]);
    }
}
