//! Evaluating a parsed PromQL expression of the subset over the catalog's series, at every step
//! of a range (an instant query is a range of one step). Pure: the samples come from any
//! [`SampleSource`], series from a list of [`SeriesEntry`]; no RocksDB, HTTP or clock.
//!
//! [`super::parse`] has refused whatever is outside the subset before anything is read;
//! [`evaluate`] computes each node for every step at once: a scalar is one number per step, an
//! instant vector a list of series with an optional value per step.
//!
//! Each selector reads its series once, ascending: an instant selector keeps the last sample
//! within the lookback window `(t − lookback, t]`, a range selector keeps the samples of
//! `(t − range, t]` in a sliding window (Prometheus 3's left-open windows). When the steps are
//! farther apart than the window, each step reads only its own window instead.

use std::collections::BTreeMap;

use super::functions::{RangeFunction, Sample, kahan_sum};
use super::mapping::{Labels, METRIC_NAME_LABEL as METRIC_NAME, matches};
use super::parse::{Aggregation, Expr, Grouping, Operator, RangeSelector, Selector};

/// A series as queries see it: its replica id and its labels (see [`super::mapping`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesEntry {
    /// The series' id in the replica's catalog, the key its samples are read by.
    pub id: u32,
    /// The series' Prometheus labels, the metric name among them.
    pub labels: Labels,
}

/// Blocks of numeric samples of one series, ascending by time within and across blocks.
pub type SampleBlocks<'a> = Box<dyn Iterator<Item = Result<Vec<Sample>, String>> + 'a>;

/// Where samples come from: the samples of `series_id` with `from_ns <= t <= to_ns`.
pub trait SampleSource {
    /// The samples of `series_id` in `[from_ns, to_ns]` (ns since the Unix epoch), in blocks,
    /// ascending; an `Err` carries why the read failed and ends the evaluation as
    /// [`EvalError::Source`].
    fn blocks(&self, series_id: u32, from_ns: i64, to_ns: i64) -> SampleBlocks<'_>;
}

/// The instants a query is evaluated at: `start_ns + i · step_ns` for `i < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// The first instant, ns since the Unix epoch.
    pub start_ns: i64,
    /// Between two instants, in ns; positive (1 for an instant query).
    pub step_ns: i64,
    /// How many instants; at least 1.
    pub count: usize,
}

impl Steps {
    /// The single instant of an instant query.
    pub fn instant(at_ns: i64) -> Steps {
        Steps { start_ns: at_ns, step_ns: 1, count: 1 }
    }

    fn at(&self, index: usize) -> i64 {
        self.start_ns + index as i64 * self.step_ns
    }

    fn last(&self) -> i64 {
        self.at(self.count - 1)
    }
}

/// What bounds an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How far back an instant selector looks for a sample (Prometheus: 5 minutes).
    pub lookback_ns: i64,
    /// Most samples held at once: step values of every node plus the samples of open windows.
    pub max_samples: usize,
}

/// Why an expression was not evaluated. Each maps to a Prometheus error type and status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A well-formed query that cannot be answered (duplicate series in a match): 422.
    #[error("{0}")]
    Execution(String),
    /// A query that would hold too many samples: 422.
    #[error(
        "query processing would load too many samples into memory (more than {limit}); ask for a shorter range, \
         a longer step or fewer series"
    )]
    TooManySamples {
        /// [`Limits::max_samples`], the most the query may hold at once.
        limit: usize,
    },
    /// The replica failed: 500.
    #[error("reading the replica failed: {0}")]
    Source(String),
}

/// A node's value: one number per step, or series with an optional value per step.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// One number per step, in step order.
    Scalar(Vec<f64>),
    /// An instant vector: each series with its value at each step.
    Vector(Vec<StepSeries>),
}

/// One series of an instant vector over the steps.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSeries {
    /// The result's labels, sorted by name; the metric name dropped where Prometheus drops it
    /// (arithmetic, unary minus, functions but `last_over_time`).
    pub labels: Labels,
    /// One entry per step, in step order; `None` where the series has no value at that step.
    pub values: Vec<Option<f64>>,
}

/// The arithmetic result, or for comparisons 1/0 for true/false.
fn apply(operator: Operator, lhs: f64, rhs: f64) -> f64 {
    let truth = |b: bool| if b { 1.0 } else { 0.0 };
    match operator {
        Operator::Add => lhs + rhs,
        Operator::Sub => lhs - rhs,
        Operator::Mul => lhs * rhs,
        Operator::Div => lhs / rhs,
        // Go's math.Mod and Rust's % agree: the sign of the dividend.
        Operator::Mod => lhs % rhs,
        Operator::Pow => lhs.powf(rhs),
        Operator::Eq => truth(lhs == rhs),
        Operator::Ne => truth(lhs != rhs),
        Operator::Gt => truth(lhs > rhs),
        Operator::Lt => truth(lhs < rhs),
        Operator::Ge => truth(lhs >= rhs),
        Operator::Le => truth(lhs <= rhs),
    }
}

/// Evaluates a parsed expression at every step.
pub fn evaluate(
    expr: &Expr,
    catalog: &[SeriesEntry],
    source: &dyn SampleSource,
    steps: Steps,
    limits: Limits,
) -> Result<Value, EvalError> {
    assert!(steps.count > 0 && steps.step_ns > 0, "a query has at least one step");
    let mut evaluator = Evaluator { catalog, source, steps, limits, held_samples: 0 };
    let value = evaluator.eval(expr)?;
    if let Value::Vector(series) = &value {
        let mut seen = std::collections::BTreeSet::new();
        for one in series {
            if !seen.insert(&one.labels) {
                return Err(EvalError::Execution(format!(
                    "vector cannot contain metrics with the same labelset {}",
                    display_labels(&one.labels)
                )));
            }
        }
    }
    Ok(value)
}

/// The raw samples of `(at − range, at]` (shifted by the offset) of every series a range
/// selector picks: what an instant query of `x[5m]` answers.
pub fn raw_samples(
    matrix: &RangeSelector,
    catalog: &[SeriesEntry],
    source: &dyn SampleSource,
    at_ns: i64,
    limits: Limits,
) -> Result<Vec<(Labels, Vec<Sample>)>, EvalError> {
    let end_ns = at_ns.saturating_sub(matrix.selector.offset_ns);
    let range_ns = matrix.range_ns;
    let mut held = 0usize;
    let mut answer = Vec::new();
    for entry in select(catalog, &matrix.selector) {
        let mut samples = Vec::new();
        for block in source.blocks(entry.id, end_ns.saturating_sub(range_ns).saturating_add(1), end_ns) {
            let block = block.map_err(EvalError::Source)?;
            held += block.len();
            if held > limits.max_samples {
                return Err(EvalError::TooManySamples { limit: limits.max_samples });
            }
            samples.extend(block);
        }
        if !samples.is_empty() {
            answer.push((entry.labels.clone(), samples));
        }
    }
    Ok(answer)
}

/// `{a="1", b="2"}`, for messages.
pub fn display_labels(labels: &[(String, String)]) -> String {
    let parts: Vec<String> = labels.iter().map(|(name, value)| format!("{name}={value:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn select<'c>(catalog: &'c [SeriesEntry], selector: &'c Selector) -> impl Iterator<Item = &'c SeriesEntry> {
    catalog.iter().filter(move |entry| matches(&selector.matchers, &entry.labels))
}

fn without_metric_name(labels: &[(String, String)]) -> Labels {
    labels.iter().filter(|(name, _)| name != METRIC_NAME).cloned().collect()
}

/// Reads one series' samples one at a time from its blocks.
struct Cursor<'a> {
    blocks: SampleBlocks<'a>,
    block: Vec<Sample>,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(blocks: SampleBlocks<'a>) -> Cursor<'a> {
        Cursor { blocks, block: Vec::new(), at: 0 }
    }

    fn peek(&mut self) -> Result<Option<Sample>, EvalError> {
        while self.at >= self.block.len() {
            match self.blocks.next() {
                None => return Ok(None),
                Some(block) => {
                    self.block = block.map_err(EvalError::Source)?;
                    self.at = 0;
                }
            }
        }
        Ok(Some(self.block[self.at]))
    }

    /// Moves past every sample up to `t_ns` (inclusive), returning the last of them.
    fn last_until(&mut self, t_ns: i64) -> Result<Option<Sample>, EvalError> {
        let mut last = None;
        while self.peek()?.is_some() {
            let rest = &self.block[self.at..];
            let taken = rest.partition_point(|s| s.timestamp_ns <= t_ns);
            if taken > 0 {
                last = Some(rest[taken - 1]);
            }
            self.at += taken;
            if taken < rest.len() {
                break;
            }
        }
        Ok(last)
    }

    /// Appends every sample up to `t_ns` (inclusive) to `out`, a block slice at a time.
    fn take_until(&mut self, t_ns: i64, out: &mut Vec<Sample>) -> Result<(), EvalError> {
        while self.peek()?.is_some() {
            let rest = &self.block[self.at..];
            let taken = rest.partition_point(|s| s.timestamp_ns <= t_ns);
            out.extend_from_slice(&rest[..taken]);
            self.at += taken;
            if taken < rest.len() {
                break;
            }
        }
        Ok(())
    }
}

/// The samples of a sliding window: a buffer whose front is dropped by moving `start`, compacted
/// once the dropped part outgrows the rest.
struct Window {
    buffer: Vec<Sample>,
    start: usize,
}

impl Window {
    fn samples(&self) -> &[Sample] {
        &self.buffer[self.start..]
    }

    /// Drops the samples at or before `bound_ns`.
    fn drop_until(&mut self, bound_ns: i64) {
        self.start += self.samples().partition_point(|s| s.timestamp_ns <= bound_ns);
        if self.start > 1_024 && self.start > self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
    }
}

struct Evaluator<'a> {
    catalog: &'a [SeriesEntry],
    source: &'a dyn SampleSource,
    steps: Steps,
    limits: Limits,
    /// Step values allocated so far (never given back: a conservative bound).
    held_samples: usize,
}

impl Evaluator<'_> {
    fn hold(&mut self, samples: usize) -> Result<(), EvalError> {
        self.held_samples = self.held_samples.saturating_add(samples);
        if self.held_samples > self.limits.max_samples {
            return Err(EvalError::TooManySamples { limit: self.limits.max_samples });
        }
        Ok(())
    }

    fn eval(&mut self, expr: &Expr) -> Result<Value, EvalError> {
        match expr {
            Expr::Number(number) => Ok(Value::Scalar(vec![*number; self.steps.count])),
            Expr::Negate(inner) => Ok(match self.eval(inner)? {
                Value::Scalar(values) => Value::Scalar(values.into_iter().map(|v| -v).collect()),
                Value::Vector(series) => Value::Vector(
                    series
                        .into_iter()
                        .map(|one| StepSeries {
                            labels: without_metric_name(&one.labels),
                            values: one.values.into_iter().map(|v| v.map(|v| -v)).collect(),
                        })
                        .collect(),
                ),
            }),
            Expr::Selector(selector) => self.instant_selector(selector).map(Value::Vector),
            Expr::Call { function, quantile, range } => {
                let quantiles = match quantile {
                    Some(phi) => match self.eval(phi)? {
                        Value::Scalar(values) => values,
                        Value::Vector(_) => {
                            return Err(EvalError::Execution(
                                "quantile_over_time() takes a number as its first argument".to_owned(),
                            ));
                        }
                    },
                    None => vec![0.0; self.steps.count],
                };
                self.range_function(*function, range, &quantiles).map(Value::Vector)
            }
            Expr::Aggregate { aggregation, grouping, expr } => {
                self.aggregate(*aggregation, grouping.as_ref(), expr).map(Value::Vector)
            }
            Expr::Binary { operator, return_bool, matching, lhs, rhs } => {
                self.binary(*operator, *return_bool, matching.as_ref(), lhs, rhs)
            }
            Expr::Range(_) => Err(EvalError::Execution(
                "a range vector such as x[5m] must be given to a function such as rate() or avg_over_time()".to_owned(),
            )),
        }
    }

    /// Per series, the last sample within the lookback window of each step.
    fn instant_selector(&mut self, selector: &Selector) -> Result<Vec<StepSeries>, EvalError> {
        let offset_ns = selector.offset_ns;
        let lookback_ns = self.limits.lookback_ns;
        let steps = self.steps;
        let mut out = Vec::new();
        for entry in select(self.catalog, selector) {
            self.hold(steps.count)?;
            let mut values = vec![None; steps.count];
            if steps.step_ns <= lookback_ns {
                let from_ns = steps.start_ns.saturating_sub(offset_ns).saturating_sub(lookback_ns).saturating_add(1);
                let mut cursor =
                    Cursor::new(self.source.blocks(entry.id, from_ns, steps.last().saturating_sub(offset_ns)));
                let mut last: Option<Sample> = None;
                for (index, value) in values.iter_mut().enumerate() {
                    let t = steps.at(index).saturating_sub(offset_ns);
                    last = cursor.last_until(t)?.or(last);
                    *value = last.filter(|s| s.timestamp_ns > t.saturating_sub(lookback_ns)).map(|s| s.value);
                }
            } else {
                for (index, value) in values.iter_mut().enumerate() {
                    let t = steps.at(index).saturating_sub(offset_ns);
                    let mut last = None;
                    for block in self.source.blocks(entry.id, t.saturating_sub(lookback_ns).saturating_add(1), t) {
                        last = block.map_err(EvalError::Source)?.last().copied().or(last);
                    }
                    *value = last.map(|s: Sample| s.value);
                }
            }
            if values.iter().any(Option::is_some) {
                out.push(StepSeries { labels: entry.labels.clone(), values });
            }
        }
        Ok(out)
    }

    /// `function` over the window `(t − range, t]` of every step, per series.
    fn range_function(
        &mut self,
        function: RangeFunction,
        matrix: &RangeSelector,
        quantiles: &[f64],
    ) -> Result<Vec<StepSeries>, EvalError> {
        let offset_ns = matrix.selector.offset_ns;
        let range_ns = matrix.range_ns;
        let steps = self.steps;
        let mut out = Vec::new();
        for entry in select(self.catalog, &matrix.selector) {
            self.hold(steps.count)?;
            let room = self.limits.max_samples.saturating_sub(self.held_samples);
            let mut values = vec![None; steps.count];
            if steps.step_ns <= range_ns {
                let from_ns = steps.start_ns.saturating_sub(offset_ns).saturating_sub(range_ns).saturating_add(1);
                let mut cursor =
                    Cursor::new(self.source.blocks(entry.id, from_ns, steps.last().saturating_sub(offset_ns)));
                let mut window = Window { buffer: Vec::new(), start: 0 };
                for (index, value) in values.iter_mut().enumerate() {
                    let t = steps.at(index).saturating_sub(offset_ns);
                    cursor.take_until(t, &mut window.buffer)?;
                    window.drop_until(t.saturating_sub(range_ns));
                    if window.buffer.len() > room {
                        return Err(EvalError::TooManySamples { limit: self.limits.max_samples });
                    }
                    *value = function.apply(window.samples(), t, range_ns, quantiles[index]);
                }
            } else {
                let mut window = Vec::new();
                for (index, value) in values.iter_mut().enumerate() {
                    let t = steps.at(index).saturating_sub(offset_ns);
                    window.clear();
                    for block in self.source.blocks(entry.id, t.saturating_sub(range_ns).saturating_add(1), t) {
                        window.extend(block.map_err(EvalError::Source)?);
                        if window.len() > room {
                            return Err(EvalError::TooManySamples { limit: self.limits.max_samples });
                        }
                    }
                    *value = function.apply(&window, t, range_ns, quantiles[index]);
                }
            }
            if values.iter().any(Option::is_some) {
                let labels = if function.keeps_metric_name() {
                    entry.labels.clone()
                } else {
                    without_metric_name(&entry.labels)
                };
                out.push(StepSeries { labels, values });
            }
        }
        Ok(out)
    }

    fn aggregate(
        &mut self,
        kind: Aggregation,
        grouping: Option<&Grouping>,
        expr: &Expr,
    ) -> Result<Vec<StepSeries>, EvalError> {
        let Value::Vector(input) = self.eval(expr)? else {
            return Err(EvalError::Execution("an aggregation takes an instant vector, not a number".to_owned()));
        };
        let count = self.steps.count;
        let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
        for (index, one) in input.iter().enumerate() {
            groups.entry(group_labels(&one.labels, grouping)).or_default().push(index);
        }
        self.hold(groups.len() * count)?;
        let mut out = Vec::with_capacity(groups.len());
        for (labels, members) in groups {
            let values = (0..count)
                .map(|step| {
                    let present: Vec<f64> = members.iter().filter_map(|&m| input[m].values[step]).collect();
                    combine(kind, &present)
                })
                .collect();
            out.push(StepSeries { labels, values });
        }
        Ok(out)
    }

    fn binary(
        &mut self,
        operator: Operator,
        return_bool: bool,
        matching: Option<&Grouping>,
        lhs: &Expr,
        rhs: &Expr,
    ) -> Result<Value, EvalError> {
        let lhs = self.eval(lhs)?;
        let rhs = self.eval(rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(lhs), Value::Scalar(rhs)) => {
                Ok(Value::Scalar(lhs.iter().zip(&rhs).map(|(&l, &r)| apply(operator, l, r)).collect()))
            }
            (Value::Vector(vector), Value::Scalar(scalar)) => {
                Ok(Value::Vector(vector_scalar(operator, return_bool, vector, &scalar, false)))
            }
            (Value::Scalar(scalar), Value::Vector(vector)) => {
                Ok(Value::Vector(vector_scalar(operator, return_bool, vector, &scalar, true)))
            }
            (Value::Vector(lhs), Value::Vector(rhs)) => {
                self.vector_vector(operator, return_bool, matching, lhs, rhs).map(Value::Vector)
            }
        }
    }

    /// One-to-one matching: each left series meets the right series with the same labels
    /// (all but the metric name, or those `on`/`ignoring` say) present at the same step.
    fn vector_vector(
        &mut self,
        operator: Operator,
        return_bool: bool,
        matching: Option<&Grouping>,
        lhs: Vec<StepSeries>,
        rhs: Vec<StepSeries>,
    ) -> Result<Vec<StepSeries>, EvalError> {
        let count = self.steps.count;
        let mut right_by_signature: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
        for (index, one) in rhs.iter().enumerate() {
            right_by_signature.entry(signature(&one.labels, matching)).or_default().push(index);
        }
        let mut left_by_signature: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
        for (index, one) in lhs.iter().enumerate() {
            left_by_signature.entry(signature(&one.labels, matching)).or_default().push(index);
        }
        let drop_name = !operator.is_comparison() || return_bool;
        let mut results: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        for (key, lefts) in &left_by_signature {
            let Some(rights) = right_by_signature.get(key) else { continue };
            for step in 0..count {
                let present = |side: &[StepSeries], members: &[usize]| -> Vec<usize> {
                    members.iter().copied().filter(|&m| side[m].values[step].is_some()).collect()
                };
                let (left_present, right_present) = (present(&lhs, lefts), present(&rhs, rights));
                if left_present.is_empty() || right_present.is_empty() {
                    continue;
                }
                if right_present.len() > 1 {
                    return Err(EvalError::Execution(format!(
                        "found duplicate series for the match group {} on the right hand-side of the operation; \
                         many-to-many matching is not allowed: matching labels must be unique on one side",
                        display_labels(key)
                    )));
                }
                if left_present.len() > 1 {
                    return Err(EvalError::Execution(format!(
                        "found duplicate series for the match group {} on the left hand-side of the operation; \
                         group_left/group_right is not supported",
                        display_labels(key)
                    )));
                }
                let (left, right) = (&lhs[left_present[0]], &rhs[right_present[0]]);
                let (l, r) = (left.values[step].unwrap_or(f64::NAN), right.values[step].unwrap_or(f64::NAN));
                let value = apply(operator, l, r);
                let value = match (operator.is_comparison(), return_bool) {
                    (true, false) if value == 0.0 => continue,
                    (true, false) => l,
                    _ => value,
                };
                let labels = result_labels(&left.labels, matching, drop_name);
                let slot = results.entry(labels).or_insert_with(|| vec![None; count]);
                if slot[step].is_some() {
                    return Err(EvalError::Execution(format!(
                        "multiple matches for labels {}: many-to-one matching is not supported",
                        display_labels(key)
                    )));
                }
                slot[step] = Some(value);
            }
        }
        self.hold(results.len() * count)?;
        Ok(results.into_iter().map(|(labels, values)| StepSeries { labels, values }).collect())
    }
}

/// The labels a vector-to-vector match compares: without the metric name, restricted by `on`
/// or without those of `ignoring`.
fn signature(labels: &[(String, String)], matching: Option<&Grouping>) -> Labels {
    labels
        .iter()
        .filter(|(name, _)| match matching {
            Some(Grouping::Include(on)) => on.contains(name),
            Some(Grouping::Exclude(ignoring)) => name != METRIC_NAME && !ignoring.contains(name),
            None => name != METRIC_NAME,
        })
        .cloned()
        .collect()
}

/// The labels of a one-to-one result: the left side's, kept to `on`'s or without `ignoring`'s,
/// and without the metric name unless a filtering comparison keeps it.
fn result_labels(labels: &[(String, String)], matching: Option<&Grouping>, drop_name: bool) -> Labels {
    labels
        .iter()
        .filter(|(name, _)| {
            let kept = match matching {
                Some(Grouping::Include(on)) => on.contains(name),
                Some(Grouping::Exclude(ignoring)) => !ignoring.contains(name),
                None => true,
            };
            kept && !(drop_name && name == METRIC_NAME)
        })
        .cloned()
        .collect()
}

/// The labels of a series' group: those `by` names, or all but those `without` names and the
/// metric name; none without a modifier.
fn group_labels(labels: &[(String, String)], modifier: Option<&Grouping>) -> Labels {
    labels
        .iter()
        .filter(|(name, _)| match modifier {
            Some(Grouping::Include(by)) => by.contains(name),
            Some(Grouping::Exclude(without)) => name != METRIC_NAME && !without.contains(name),
            None => false,
        })
        .cloned()
        .collect()
}

fn combine(kind: Aggregation, present: &[f64]) -> Option<f64> {
    if present.is_empty() {
        return None;
    }
    let pick = |better: fn(f64, f64) -> bool| {
        present.iter().copied().fold(f64::NAN, |kept, v| if kept.is_nan() || better(v, kept) { v } else { kept })
    };
    Some(match kind {
        Aggregation::Sum => kahan_sum(present.iter().copied()),
        Aggregation::Avg => kahan_sum(present.iter().copied()) / present.len() as f64,
        Aggregation::Count => present.len() as f64,
        Aggregation::Min => pick(|v, kept| v < kept),
        Aggregation::Max => pick(|v, kept| v > kept),
    })
}

/// A vector with a scalar on either side (`scalar_first`: the scalar is on the left).
/// Arithmetic drops the metric name; a comparison filters and keeps the vector's values, or with
/// `bool` gives 0/1 without the metric name.
fn vector_scalar(
    operator: Operator,
    return_bool: bool,
    vector: Vec<StepSeries>,
    scalar: &[f64],
    scalar_first: bool,
) -> Vec<StepSeries> {
    let drop_name = !operator.is_comparison() || return_bool;
    vector
        .into_iter()
        .filter_map(|one| {
            let values: Vec<Option<f64>> = one
                .values
                .iter()
                .zip(scalar)
                .map(|(value, &s)| {
                    let v = (*value)?;
                    let (l, r) = if scalar_first { (s, v) } else { (v, s) };
                    let result = apply(operator, l, r);
                    match (operator.is_comparison(), return_bool) {
                        (true, false) => (result != 0.0).then_some(v),
                        _ => Some(result),
                    }
                })
                .collect();
            let labels = if drop_name { without_metric_name(&one.labels) } else { one.labels };
            values.iter().any(Option::is_some).then_some(StepSeries { labels, values })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::mapping;
    use crate::prometheus::parse::parse;
    use diode_common::record::SeriesKey;

    const S: i64 = 1_000_000_000;
    const LIMITS: Limits = Limits { lookback_ns: 300 * S, max_samples: 1_000_000 };

    /// Series in memory, each a list of (seconds, value).
    struct Memory(Vec<Vec<(i64, f64)>>);

    impl SampleSource for Memory {
        fn blocks(&self, series_id: u32, from_ns: i64, to_ns: i64) -> SampleBlocks<'_> {
            let samples: Vec<Sample> = self.0[series_id as usize]
                .iter()
                .map(|&(t, v)| Sample { timestamp_ns: t * S, value: v })
                .filter(|s| (from_ns..=to_ns).contains(&s.timestamp_ns))
                .collect();
            // Blocks of two, to cross block edges.
            let blocks: Vec<Result<Vec<Sample>, String>> = samples.chunks(2).map(|c| Ok(c.to_vec())).collect();
            Box::new(blocks.into_iter())
        }
    }

    fn catalog() -> Vec<SeriesEntry> {
        let key = |name: &str, unit: &str| SeriesKey::with_tags(name, vec![("unit".into(), unit.into())]);
        vec![
            SeriesEntry { id: 0, labels: mapping::labels(&key("plant/a/temp", "1")) },
            SeriesEntry { id: 1, labels: mapping::labels(&key("plant/b/temp", "1")) },
            SeriesEntry { id: 2, labels: mapping::labels(&key("plant/a/flow", "2")) },
        ]
    }

    /// a/temp: 10 s apart from 0 to 120 s, value = t; b/temp: 0, 60, 120 s, values 1, 2, 3;
    /// a/flow: a counter at 0, 30, 60, 90, 120 s: 0, 30, 60, 10 (reset), 40.
    fn source() -> Memory {
        Memory(vec![
            (0..=12).map(|i| (i * 10, (i * 10) as f64)).collect(),
            vec![(0, 1.0), (60, 2.0), (120, 3.0)],
            vec![(0, 0.0), (30, 30.0), (60, 60.0), (90, 10.0), (120, 40.0)],
        ])
    }

    fn run(query: &str, steps: Steps) -> Result<Value, EvalError> {
        let expr = parse(query).unwrap();
        evaluate(&expr, &catalog(), &source(), steps, LIMITS)
    }

    fn vector(query: &str, steps: Steps) -> Vec<(String, Vec<Option<f64>>)> {
        match run(query, steps).unwrap() {
            Value::Vector(series) => series.into_iter().map(|one| (display_labels(&one.labels), one.values)).collect(),
            Value::Scalar(values) => panic!("a scalar: {values:?}"),
        }
    }

    fn range(start_s: i64, step_s: i64, count: usize) -> Steps {
        Steps { start_ns: start_s * S, step_ns: step_s * S, count }
    }

    #[test]
    fn an_instant_selector_takes_the_last_sample_within_the_lookback() {
        let rows = vector("plant:b:temp", range(0, 30, 5));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, vec![Some(1.0), Some(1.0), Some(2.0), Some(2.0), Some(3.0)]);
        // 5 minutes after the last sample it is gone (the window is left-open).
        let rows = vector("plant:b:temp", range(419, 1, 3));
        assert_eq!(rows[0].1, vec![Some(3.0), None, None]);
        // Steps farther apart than the lookback read each step's window alone: same answer.
        let rows = vector("plant:a:temp", Steps { start_ns: 5 * S, step_ns: 400 * S, count: 2 });
        assert_eq!(rows[0].1, vec![Some(0.0), Some(120.0)]);
    }

    #[test]
    fn matchers_select_by_name_and_labels() {
        let names = |query: &str| -> Vec<String> {
            vector(query, Steps::instant(120 * S)).into_iter().map(|(labels, _)| labels).collect()
        };
        assert_eq!(names(r#"{__name__=~"plant:.*:temp"}"#).len(), 2);
        assert_eq!(names(r#"{diode_name="plant/a/flow"}"#).len(), 1);
        assert_eq!(names(r#"{unit!="1", unit=~".+"}"#).len(), 1);
        assert_eq!(names(r#"{__name__=~".+", diode_name!~"plant/a/.*"}"#).len(), 1);
    }

    #[test]
    fn range_functions_over_sliding_windows() {
        // avg_over_time(a/temp[30s]) at 30, 60, 90, 120: (10+20+30)/3 = 20, 50, 80, 110.
        let rows = vector("avg_over_time(plant:a:temp[30s])", range(30, 30, 4));
        assert_eq!(rows[0].1, vec![Some(20.0), Some(50.0), Some(80.0), Some(110.0)]);
        assert!(!rows[0].0.contains("__name__"), "functions drop the metric name: {}", rows[0].0);
        // The same with the steps farther apart than the range (each window read alone).
        let rows = vector("avg_over_time(plant:a:temp[30s])", range(30, 60, 2));
        assert_eq!(rows[0].1, vec![Some(20.0), Some(80.0)]);
        // increase over the whole counter with its reset: 30+30+(60 added back)-50+30 = 40 - 0 + 60 = 100
        // sampled over 120 s in (0, 120]... the first sample at 0 is outside (0, 120]: samples 30..120,
        // change 40 - 30 + 60 = 70 over 90 s, to the start 30 s ≥ 33 s? no: 30 < 33, so all the way;
        // zero lies 90·30/70 = 38.6 s back, farther: 70 · 120/90 = 93.33….
        let rows = vector("increase(plant:a:flow[2m])", Steps::instant(120 * S));
        assert!((rows[0].1[0].unwrap() - 70.0 * 120.0 / 90.0).abs() < 1e-9, "{rows:?}");
        let rows = vector("last_over_time(plant:b:temp[1m] offset 1m)", Steps::instant(120 * S));
        assert_eq!(rows[0].1, vec![Some(2.0)]);
        assert!(rows[0].0.contains("__name__"), "last_over_time keeps the name");
        let rows = vector("quantile_over_time(0.5, plant:a:temp[40s])", Steps::instant(120 * S));
        assert_eq!(rows[0].1, vec![Some(105.0)]);
    }

    #[test]
    fn sums_and_averages_by_label() {
        let rows = vector(r#"sum by (unit) ({__name__=~".*temp"})"#, Steps::instant(60 * S));
        assert_eq!(rows, vec![(r#"{unit="1"}"#.to_owned(), vec![Some(62.0)])]);
        let rows = vector(r#"avg without (diode_name) ({__name__=~".*temp"})"#, Steps::instant(60 * S));
        assert_eq!(rows, vec![(r#"{unit="1"}"#.to_owned(), vec![Some(31.0)])]);
        let rows = vector(r#"count({unit=~".+"})"#, Steps::instant(60 * S));
        assert_eq!(rows, vec![("{}".to_owned(), vec![Some(3.0)])]);
        let rows = vector(r#"max({unit=~".+"})"#, Steps::instant(60 * S));
        assert_eq!(rows[0].1, vec![Some(60.0)]);
        let rows = vector(r#"min by (diode_name) ({unit=~".+"})"#, Steps::instant(60 * S));
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn arithmetic_and_comparisons_with_scalars_and_vectors() {
        match run("1 + 1", Steps::instant(0)).unwrap() {
            Value::Scalar(values) => assert_eq!(values, vec![2.0]),
            other => panic!("{other:?}"),
        }
        let rows = vector("plant:b:temp * 10 - 1", Steps::instant(60 * S));
        assert_eq!(rows[0].1, vec![Some(19.0)]);
        assert!(!rows[0].0.contains("__name__"));
        // A filtering comparison keeps the name and the value; with bool, 0/1 without the name.
        let rows = vector("plant:a:temp > 50", range(40, 10, 3));
        assert_eq!(rows[0].1, vec![None, None, Some(60.0)]);
        assert!(rows[0].0.contains("__name__"));
        let rows = vector("100 < bool plant:a:temp", range(90, 10, 3));
        assert_eq!(rows[0].1, vec![Some(0.0), Some(0.0), Some(1.0)]);
        // Vector with vector: matched on all labels but the name, or on those `on` names.
        let rows = vector("plant:a:temp / ignoring(diode_name) plant:b:temp", Steps::instant(120 * S));
        assert_eq!(rows, vec![(r#"{unit="1"}"#.to_owned(), vec![Some(40.0)])]);
        let rows = vector("plant:a:temp - on(unit) plant:b:temp", Steps::instant(60 * S));
        assert_eq!(rows, vec![(r#"{unit="1"}"#.to_owned(), vec![Some(58.0)])]);
        // No match, no result.
        assert!(vector("plant:a:temp + plant:b:temp", Steps::instant(60 * S)).is_empty());
        let rows = vector("-plant:b:temp offset 1m", Steps::instant(120 * S));
        assert_eq!(rows[0].1, vec![Some(-2.0)]);
    }

    #[test]
    fn ambiguous_matches_are_errors_not_answers() {
        let error = run(r#"{unit="1"} - on(unit) plant:b:temp"#, Steps::instant(60 * S)).unwrap_err();
        assert!(matches!(error, EvalError::Execution(_)) && error.to_string().contains("left"), "{error}");
        let error = run(r#"plant:b:temp - on(unit) {unit="1"}"#, Steps::instant(60 * S)).unwrap_err();
        assert!(matches!(error, EvalError::Execution(_)) && error.to_string().contains("right"), "{error}");
        let error = run(r#"plant:a:flow + on(unit) {unit=~"1|2"}"#, Steps::instant(60 * S));
        assert!(error.is_ok(), "{error:?}");
    }

    #[test]
    fn a_query_holding_too_many_samples_is_refused() {
        let expr = parse("sum_over_time(plant:a:temp[10m])").unwrap();
        let limits = Limits { max_samples: 5, ..LIMITS };
        let error = evaluate(&expr, &catalog(), &source(), Steps::instant(120 * S), limits).unwrap_err();
        assert_eq!(error, EvalError::TooManySamples { limit: 5 });
    }

    #[test]
    fn raw_samples_of_a_range_selector() {
        let Expr::Range(matrix) = parse("plant:b:temp[2m]").unwrap() else { panic!() };
        let raw = raw_samples(&matrix, &catalog(), &source(), 120 * S, LIMITS).unwrap();
        let values: Vec<f64> = raw[0].1.iter().map(|s| s.value).collect();
        assert_eq!(values, vec![2.0, 3.0], "the window (0, 120] leaves out the sample at 0");
    }
}
