//! Points the core's tests are written with: floats at a time, good or bad.

use diode_common::record::{Quality, Value};
use diode_replica::Point;

/// One second, in ns.
pub(super) const S: i64 = 1_000_000_000;

/// A good float.
pub(super) fn p(timestamp_ns: i64, value: f64) -> Point {
    Point { timestamp_ns, value: Value::F64(value), quality: Quality::GOOD }
}

/// A bad float.
pub(super) fn bad(timestamp_ns: i64, value: f64) -> Point {
    Point { timestamp_ns, value: Value::F64(value), quality: Quality::BAD }
}
