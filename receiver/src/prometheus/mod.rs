//! A Prometheus-compatible query API over the replica, for Grafana's built-in Prometheus data
//! source and `promtool`: served under `/prometheus` on the read-only HTTP listener.
//!
//! - [`parse`]: PromQL text → expression of the subset (total; refuses the rest by name).
//! - [`mapping`]: diode series ↔ metric name and labels (reversible, collision-free).
//! - [`functions`]: the range-vector functions over one window (pure arithmetic).
//! - [`eval`]: the PromQL subset evaluated at every step over any [`eval::SampleSource`] (pure).
//! - [`replica`]: the replica's scans ([`crate::query::source`]) as a sample source.
//! - [`times`]: times and durations as the API takes and writes them.
//! - [`http`]: the routes, their parameters and Prometheus's JSON shapes and errors.
//!
//! # Definitions
//!
//! **Samples.** Floats and integers are their value, booleans 0 and 1; strings are not
//! samples (their series list, but hold nothing to query). Points of bad quality (OPC UA
//! severity Bad) are left out, so a failed sensor's substitute values never reach a graph;
//! uncertain points are kept. `include_bad=true` on a query keeps every point.
//!
//! **Subset.** Selectors with `=`, `!=`, `=~`, `!~` on the name and every label, `offset`;
//! range vectors `x[d]`; `rate`, `increase`, `delta`, `irate`, `avg_over_time`,
//! `min_over_time`, `max_over_time`, `sum_over_time`, `count_over_time`, `last_over_time`,
//! `stddev_over_time`, `quantile_over_time`; `sum`, `avg`, `min`, `max`, `count` with `by` or
//! `without`; `+ - * / % ^` and `== != > < >= <=` (with `bool`) between numbers, a vector and a
//! number, and two vectors matched one-to-one (with `on` or `ignoring`); unary minus; numbers.
//! Anything else (other functions and aggregations, `and`/`or`/`unless`, `group_left`/
//! `group_right`, subqueries, `@`, strings) is refused with a 422 naming it.
//!
//! **Semantics** (Prometheus 3's): an instant selector at time t takes each series' last sample
//! in `(t − 5m, t]` (`lookback_delta` changes the 5 minutes); a range selector `x[d]` takes the
//! samples in `(t − d, t]`; `offset o` moves both back by o. A range query evaluates at
//! `start, start + step, …` up to `end`. Functions and arithmetic drop the metric name
//! (`last_over_time` and filtering comparisons keep it). `rate`, `increase` and `delta`
//! extrapolate to the window's edges as Prometheus does; `stddev_over_time` is the population
//! standard deviation; `quantile_over_time` interpolates between ranks.

pub mod eval;
pub mod functions;
pub mod http;
pub mod mapping;
pub mod parse;
pub mod replica;
pub mod times;
