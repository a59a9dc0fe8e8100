//! Time-weighted sums over one window: each point *governs* the time from its timestamp to the
//! next point's, and the aggregates that weigh values by that time (`twa`, the `--basis time`
//! mean and standard deviations, the quality durations and `time_in_state`) fold those spans.
//! The exact definitions are in the module docs of [`crate::query`]; [`super::aggregate`] decides
//! which spans a window has.

use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::{Severity, Value};
use diode_replica::Point;

/// How a time-weighted average joins points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TwaMode {
    /// Each value holds until the next point (OPC UA SteppedInterpolation).
    #[default]
    Step,
    /// Straight lines between points (OPC UA SlopedInterpolation).
    Linear,
}

impl TwaMode {
    /// Reads `step` or `linear`; the error names the text and the choices.
    pub fn parse(text: &str) -> Result<TwaMode, String> {
        match text {
            "step" => Ok(TwaMode::Step),
            "linear" => Ok(TwaMode::Linear),
            _ => Err(format!("{text:?} is not a twa mode; use step or linear")),
        }
    }

    /// The name a query uses for it.
    pub fn name(self) -> &'static str {
        match self {
            TwaMode::Step => "step",
            TwaMode::Linear => "linear",
        }
    }
}

/// A point as the time-weighted aggregates see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    /// When it was recorded, in ns since the Unix epoch.
    pub(super) timestamp_ns: i64,
    /// Its number; `None` when the time it governs is left out of numeric aggregates (not good
    /// under `good_only`, or a string).
    pub(super) value: Option<f64>,
    /// Its boolean; `None` when the time it governs is left out of `time_in_state` (not good
    /// under `good_only`, or not a boolean).
    pub(super) state: Option<bool>,
    /// Its quality's severity, for the quality durations.
    pub(super) severity: Severity,
}

/// The number of row `row`, if it has one (booleans count as 0 and 1; strings have none).
pub(super) fn number_at(values: &Values, row: usize) -> Option<f64> {
    match values {
        Values::F64(values) => Some(values[row]),
        Values::I64(values) => Some(values[row] as f64),
        Values::Bool(values) => Some(f64::from(u8::from(values[row]))),
        Values::String(_) => None,
        Values::Mixed(values) => values[row].as_f64(),
    }
}

fn state_at(values: &Values, row: usize) -> Option<bool> {
    match values {
        Values::Bool(values) => Some(values[row]),
        Values::Mixed(values) => match values[row] {
            Value::Bool(state) => Some(state),
            _ => None,
        },
        _ => None,
    }
}

impl Node {
    /// Row `row` of `block`; under `good_only` a non-good row governs time that is left out.
    pub(super) fn at(block: &SeriesColumns, row: usize, good_only: bool) -> Node {
        let quality = block.qualities[row];
        let left_out = good_only && !quality.is_good();
        Node {
            timestamp_ns: block.timestamps_ns[row],
            value: if left_out { None } else { number_at(&block.values, row) },
            state: if left_out { None } else { state_at(&block.values, row) },
            severity: quality.severity(),
        }
    }

    /// `point`, as [`Node::at`] reads a row.
    pub(super) fn of_point(point: &Point, good_only: bool) -> Node {
        let left_out = good_only && !point.quality.is_good();
        let state = match point.value {
            Value::Bool(state) => Some(state),
            _ => None,
        };
        Node {
            timestamp_ns: point.timestamp_ns,
            value: if left_out { None } else { point.value.as_f64() },
            state: if left_out { None } else { state },
            severity: point.quality.severity(),
        }
    }
}

/// Nanoseconds from `earlier_ns` to `later_ns`, as a float (exact enough across any span).
pub(super) fn nanoseconds_between(earlier_ns: i64, later_ns: i64) -> f64 {
    match later_ns.checked_sub(earlier_ns) {
        Some(difference) => difference as f64,
        // Only across more than 292 years.
        None => (i128::from(later_ns) - i128::from(earlier_ns)) as f64,
    }
}

const NS_PER_SECOND: f64 = 1e9;

/// The sums of one window's governed spans; every duration in ns.
#[derive(Default)]
pub(super) struct TimeWeighted {
    /// `twa`: area under the signal (step or linear) and the time it covers.
    twa_area: f64,
    twa_ns: f64,
    /// Values held (step) weighted by time, shifted by the first one held (as the event-basis
    /// sums are): `Σw`, `Σw·(x − shift)`, `Σw·(x − shift)²`, `Σw²`.
    shift: Option<f64>,
    held_ns: f64,
    held_shifted: f64,
    held_shifted_squares: f64,
    held_squared_weights: f64,
    /// Time governed by any point, and by good and bad ones (uncertain is neither).
    covered_ns: f64,
    good_ns: f64,
    bad_ns: f64,
    /// Time governed by a boolean true, and by a false.
    true_ns: f64,
    false_ns: f64,
}

impl TimeWeighted {
    /// Adds `[from_ns, to_ns)`, governed by `governing` (at or before `from_ns`) and followed by
    /// `next` (at or after `to_ns`, if known). In linear mode the twa's line runs to `next`; when
    /// `next` is unknown or left out, `governing` holds (TimeAverage2: "a sub-interval that ends
    /// at a Bad value uses the Good starting value"). Every other sum holds `governing`'s value.
    pub(super) fn add(&mut self, mode: TwaMode, governing: Node, next: Option<Node>, from_ns: i64, to_ns: i64) {
        if to_ns <= from_ns {
            return;
        }
        let width = nanoseconds_between(from_ns, to_ns);
        self.covered_ns += width;
        match governing.severity {
            Severity::Good => self.good_ns += width,
            Severity::Bad => self.bad_ns += width,
            Severity::Uncertain => {}
        }
        match governing.state {
            Some(true) => self.true_ns += width,
            Some(false) => self.false_ns += width,
            None => {}
        }
        let Some(start_value) = governing.value else { return };
        let shift = *self.shift.get_or_insert(start_value);
        let d = start_value - shift;
        self.held_ns += width;
        self.held_shifted += width * d;
        self.held_shifted_squares += width * d * d;
        self.held_squared_weights += width * width;
        let mean_value = match (mode, next) {
            (TwaMode::Linear, Some(Node { timestamp_ns, value: Some(end_value), .. })) => {
                let span = nanoseconds_between(governing.timestamp_ns, timestamp_ns);
                let at = |t: i64| {
                    start_value + (end_value - start_value) * (nanoseconds_between(governing.timestamp_ns, t) / span)
                };
                (at(from_ns) + at(to_ns)) / 2.0
            }
            _ => start_value,
        };
        self.twa_area += mean_value * width;
        self.twa_ns += width;
    }

    /// The time-weighted average (twa); `None` when no number governed any time.
    pub(super) fn average(&self) -> Option<f64> {
        (self.twa_ns > 0.0).then(|| self.twa_area / self.twa_ns)
    }

    /// The mean of the values held, weighted by how long each held (step).
    pub(super) fn held_mean(&self) -> Option<f64> {
        let shift = self.shift?;
        (self.held_ns > 0.0).then(|| shift + self.held_shifted / self.held_ns)
    }

    /// `Σw·(x − mean)²`, the weighted squared deviations of the values held.
    fn held_squared_deviations(&self) -> f64 {
        (self.held_shifted_squares - self.held_shifted * self.held_shifted / self.held_ns).max(0.0)
    }

    /// Population standard deviation of the values held: `√(Σw·(x − mean)² / Σw)`.
    pub(super) fn held_stddev_population(&self) -> Option<f64> {
        (self.held_ns > 0.0).then(|| (self.held_squared_deviations() / self.held_ns).sqrt())
    }

    /// Sample standard deviation of the values held, with the time spans as reliability weights:
    /// `√(Σw·(x − mean)² / (Σw − Σw²/Σw))`, which is the usual n − 1 form when every span is equal.
    /// `None` when a single span holds all the time.
    pub(super) fn held_stddev_sample(&self) -> Option<f64> {
        if self.held_ns <= 0.0 {
            return None;
        }
        let denominator = self.held_ns - self.held_squared_weights / self.held_ns;
        // Relative, since the weights are in ns: one span leaves only rounding.
        (denominator > self.held_ns * 1e-12).then(|| (self.held_squared_deviations() / denominator).sqrt())
    }

    /// Seconds governed by good points; `None` when no point governed any time.
    pub(super) fn good_seconds(&self) -> Option<f64> {
        (self.covered_ns > 0.0).then_some(self.good_ns / NS_PER_SECOND)
    }

    /// Seconds governed by bad points; `None` when no point governed any time.
    pub(super) fn bad_seconds(&self) -> Option<f64> {
        (self.covered_ns > 0.0).then_some(self.bad_ns / NS_PER_SECOND)
    }

    /// Percentage (0 to 100) of the governed time that good points governed.
    pub(super) fn good_percent(&self) -> Option<f64> {
        (self.covered_ns > 0.0).then(|| 100.0 * self.good_ns / self.covered_ns)
    }

    /// Percentage (0 to 100) of the governed time that bad points governed.
    pub(super) fn bad_percent(&self) -> Option<f64> {
        (self.covered_ns > 0.0).then(|| 100.0 * self.bad_ns / self.covered_ns)
    }

    /// Seconds a boolean held true and false; `None` when no boolean governed any time.
    pub(super) fn state_seconds(&self) -> Option<(f64, f64)> {
        (self.true_ns + self.false_ns > 0.0).then(|| (self.true_ns / NS_PER_SECOND, self.false_ns / NS_PER_SECOND))
    }
}
