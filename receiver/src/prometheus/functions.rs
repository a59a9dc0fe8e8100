//! The range-vector functions of the PromQL subset, over the samples of one window, as
//! Prometheus defines them: `rate`, `increase`, `delta` (extrapolated to the window's edges),
//! `irate` and the `*_over_time` family. Pure arithmetic over a slice of samples.

/// One numeric sample: time in ns since the Unix epoch, value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the value was taken, ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// The value as a number (an integer or boolean point converted, true as 1).
    pub value: f64,
}

/// A function of the subset that takes a range vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeFunction {
    /// `rate`: the per-second increase of a counter over the window, resets accounted for,
    /// extrapolated to the window's edges.
    Rate,
    /// `increase`: the increase of a counter over the window, resets accounted for,
    /// extrapolated to the window's edges.
    Increase,
    /// `delta`: the last value less the first of a gauge, extrapolated to the window's edges.
    Delta,
    /// `irate`: the per-second rate between the window's last two samples.
    Irate,
    /// `avg_over_time`: the mean of the window's values.
    AvgOverTime,
    /// `min_over_time`: the smallest of the window's values.
    MinOverTime,
    /// `max_over_time`: the largest of the window's values.
    MaxOverTime,
    /// `sum_over_time`: the total of the window's values.
    SumOverTime,
    /// `count_over_time`: how many samples the window holds.
    CountOverTime,
    /// `last_over_time`: the window's last value.
    LastOverTime,
    /// `stddev_over_time`: the population standard deviation of the window's values.
    StddevOverTime,
    /// `quantile_over_time(φ, …)`: φ comes per step.
    QuantileOverTime,
}

impl RangeFunction {
    /// The function of this name, if the subset has it.
    pub fn named(name: &str) -> Option<RangeFunction> {
        Some(match name {
            "rate" => RangeFunction::Rate,
            "increase" => RangeFunction::Increase,
            "delta" => RangeFunction::Delta,
            "irate" => RangeFunction::Irate,
            "avg_over_time" => RangeFunction::AvgOverTime,
            "min_over_time" => RangeFunction::MinOverTime,
            "max_over_time" => RangeFunction::MaxOverTime,
            "sum_over_time" => RangeFunction::SumOverTime,
            "count_over_time" => RangeFunction::CountOverTime,
            "last_over_time" => RangeFunction::LastOverTime,
            "stddev_over_time" => RangeFunction::StddevOverTime,
            "quantile_over_time" => RangeFunction::QuantileOverTime,
            _ => return None,
        })
    }

    /// Whether the result keeps the metric name (only `last_over_time`, whose values are the
    /// series' own).
    pub fn keeps_metric_name(self) -> bool {
        self == RangeFunction::LastOverTime
    }

    /// The function's value over `window` (the samples in `(end - range, end]`, ascending), or
    /// `None` when the window has too few samples. `quantile` is φ for `quantile_over_time`.
    pub fn apply(self, window: &[Sample], end_ns: i64, range_ns: i64, quantile: f64) -> Option<f64> {
        let last = window.last()?;
        let values = || window.iter().map(|s| s.value);
        match self {
            RangeFunction::Rate => extrapolated_delta(window, end_ns, range_ns, true, true),
            RangeFunction::Increase => extrapolated_delta(window, end_ns, range_ns, true, false),
            RangeFunction::Delta => extrapolated_delta(window, end_ns, range_ns, false, false),
            RangeFunction::Irate => instant_rate(window),
            RangeFunction::AvgOverTime => Some(mean(values(), window.len())),
            RangeFunction::MinOverTime => Some(values().fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m })),
            RangeFunction::MaxOverTime => Some(values().fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m })),
            RangeFunction::SumOverTime => Some(kahan_sum(values())),
            RangeFunction::CountOverTime => Some(window.len() as f64),
            RangeFunction::LastOverTime => Some(last.value),
            RangeFunction::StddevOverTime => Some(population_stddev(values(), window.len())),
            RangeFunction::QuantileOverTime => {
                let mut sorted: Vec<f64> = values().collect();
                Some(quantile_of(quantile, &mut sorted))
            }
        }
    }
}

/// Compensated (Kahan–Neumaier) sum, as Prometheus sums.
pub fn kahan_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut compensation) = (0.0f64, 0.0f64);
    for value in values {
        let total = sum + value;
        if sum.abs() >= value.abs() {
            compensation += (sum - total) + value;
        } else {
            compensation += (value - total) + sum;
        }
        sum = total;
    }
    // Infinities make the compensation NaN; the plain sum is then the answer.
    if compensation.is_finite() { sum + compensation } else { sum }
}

fn mean(values: impl Iterator<Item = f64>, count: usize) -> f64 {
    kahan_sum(values) / count as f64
}

/// The population standard deviation (dividing by n), as `stddev_over_time` defines it.
fn population_stddev(values: impl Iterator<Item = f64> + Clone, count: usize) -> f64 {
    let mean = mean(values.clone(), count);
    let variance = kahan_sum(values.map(|v| (v - mean) * (v - mean))) / count as f64;
    variance.sqrt()
}

/// Prometheus's quantile: φ < 0 is −∞, φ > 1 is +∞, otherwise linear interpolation between the
/// sorted values at rank φ·(n − 1).
pub fn quantile_of(phi: f64, values: &mut [f64]) -> f64 {
    if phi.is_nan() || values.is_empty() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    let rank = phi * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// `rate`, `increase` and `delta`: the change over the window (counter resets added back for
/// counters), extrapolated towards the window's edges as Prometheus does: all the way to an edge
/// when the first or last sample lies within 1.1 average intervals of it, otherwise half an
/// average interval; a counter is never extrapolated below zero. Divided by the range in
/// seconds for `rate`. Needs two samples.
fn extrapolated_delta(window: &[Sample], end_ns: i64, range_ns: i64, counter: bool, per_second: bool) -> Option<f64> {
    if window.len() < 2 {
        return None;
    }
    let (first, last) = (window[0], window[window.len() - 1]);
    let mut change = last.value - first.value;
    if counter {
        let mut previous = first.value;
        for sample in &window[1..] {
            if sample.value < previous {
                change += previous;
            }
            previous = sample.value;
        }
    }
    let seconds = |ns: i64| ns as f64 / 1e9;
    let start_ns = end_ns.saturating_sub(range_ns);
    let mut to_start = seconds(first.timestamp_ns - start_ns);
    let mut to_end = seconds(end_ns - last.timestamp_ns);
    let sampled = seconds(last.timestamp_ns - first.timestamp_ns);
    if sampled <= 0.0 {
        return None;
    }
    let average_interval = sampled / (window.len() - 1) as f64;
    let threshold = average_interval * 1.1;
    if to_start >= threshold {
        to_start = average_interval / 2.0;
    }
    if counter && change > 0.0 && first.value >= 0.0 {
        let to_zero = sampled * (first.value / change);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average_interval / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= seconds(range_ns);
    }
    Some(change * factor)
}

/// `irate`: the per-second change between the last two samples (the last value alone after a
/// counter reset).
fn instant_rate(window: &[Sample]) -> Option<f64> {
    let [.., previous, last] = window else { return None };
    let interval_s = (last.timestamp_ns - previous.timestamp_ns) as f64 / 1e9;
    if interval_s <= 0.0 {
        return None;
    }
    let change = if last.value < previous.value { last.value } else { last.value - previous.value };
    Some(change / interval_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn samples(list: &[(i64, f64)]) -> Vec<Sample> {
        list.iter().map(|&(t, v)| Sample { timestamp_ns: t * S, value: v }).collect()
    }

    #[test]
    fn rate_over_a_full_window_extrapolates_to_both_edges() {
        // Window (0, 60]: samples every 15 s at 15, 30, 45, 60 rising by 15 each: change 45 over
        // 45 s sampled; the first sample is 15 s (one interval, under 1.1) from the start and the
        // last is on the end, so the change is extrapolated to 60 s: 60; rate 60/60 = 1.
        let window = samples(&[(15, 15.0), (30, 30.0), (45, 45.0), (60, 60.0)]);
        let at = |f: RangeFunction| f.apply(&window, 60 * S, 60 * S, 0.0).unwrap();
        for (function, expected) in
            [(RangeFunction::Increase, 60.0), (RangeFunction::Rate, 1.0), (RangeFunction::Delta, 60.0)]
        {
            assert!((at(function) - expected).abs() < 1e-12, "{function:?}: {}", at(function));
        }
    }

    #[test]
    fn counter_resets_are_added_back_and_a_counter_is_not_extrapolated_below_zero() {
        // 10, 20, 5 (reset: +20), 15 at 30..=60 s in (0, 60]: change 15 - 10 + 20 = 25 over 30 s
        // sampled, average interval 10 s. To the start: 30 s ≥ 11 s, so half an interval, 5 s;
        // zero would be reached 30·10/25 = 12 s before the first sample: 5 s wins. End: 0.
        // 25 · 35/30 = 29.1666…
        let window = samples(&[(30, 10.0), (40, 20.0), (50, 5.0), (60, 15.0)]);
        let increase = RangeFunction::Increase.apply(&window, 60 * S, 60 * S, 0.0).unwrap();
        assert!((increase - 25.0 * 35.0 / 30.0).abs() < 1e-12, "{increase}");
        // A counter from 1 to 11 over 10 s at 50..=60 in (0, 60]: zero lies 1 s before 50, nearer
        // than half an interval (5 s), so the change is extrapolated by 1 s only: 10 · 11/10 = 11.
        let window = samples(&[(50, 1.0), (60, 11.0)]);
        assert_eq!(RangeFunction::Increase.apply(&window, 60 * S, 60 * S, 0.0), Some(11.0));
        // delta is no counter: 10 · 15/10 = 15.
        assert_eq!(RangeFunction::Delta.apply(&window, 60 * S, 60 * S, 0.0), Some(15.0));
        // One sample is not enough.
        assert_eq!(RangeFunction::Rate.apply(&window[..1], 60 * S, 60 * S, 0.0), None);
    }

    #[test]
    fn irate_uses_the_last_two_samples() {
        let window = samples(&[(0, 1.0), (10, 5.0), (14, 13.0)]);
        assert_eq!(RangeFunction::Irate.apply(&window, 14 * S, 60 * S, 0.0), Some(2.0));
        let reset = samples(&[(10, 5.0), (14, 2.0)]);
        assert_eq!(RangeFunction::Irate.apply(&reset, 14 * S, 60 * S, 0.0), Some(0.5));
    }

    #[test]
    fn over_time_aggregates_match_hand_worked_values() {
        let window = samples(&[(1, 2.0), (2, 4.0), (3, 4.0), (4, 4.0), (5, 5.0), (6, 5.0), (7, 7.0), (8, 9.0)]);
        let at = |f: RangeFunction, q: f64| f.apply(&window, 8 * S, 60 * S, q).unwrap();
        assert_eq!(at(RangeFunction::AvgOverTime, 0.0), 5.0);
        assert_eq!(at(RangeFunction::SumOverTime, 0.0), 40.0);
        assert_eq!(at(RangeFunction::CountOverTime, 0.0), 8.0);
        assert_eq!(at(RangeFunction::MinOverTime, 0.0), 2.0);
        assert_eq!(at(RangeFunction::MaxOverTime, 0.0), 9.0);
        assert_eq!(at(RangeFunction::LastOverTime, 0.0), 9.0);
        // Population: squared deviations 9+1+1+1+0+0+4+16 = 32, / 8 = 4, √ = 2.
        assert_eq!(at(RangeFunction::StddevOverTime, 0.0), 2.0);
        // Rank 0.5 · 7 = 3.5 between sorted[3] = 4 and sorted[4] = 5.
        assert_eq!(at(RangeFunction::QuantileOverTime, 0.5), 4.5);
        assert_eq!(at(RangeFunction::QuantileOverTime, 1.0), 9.0);
        assert_eq!(at(RangeFunction::QuantileOverTime, 1.5), f64::INFINITY);
        assert_eq!(at(RangeFunction::QuantileOverTime, -0.1), f64::NEG_INFINITY);
    }

    #[test]
    fn compensated_sums_keep_small_terms() {
        assert_eq!(kahan_sum([1e16, 1.0, -1e16].into_iter()), 1.0);
    }
}
