//! What the walk of the audit log hands the comparisons: the stored segments that verified
//! ([`SignedSegment`]) and, once decoded, one series' records from one of them ([`SignedPart`]);
//! the last-write-wins order of segments; and the bit-for-bit equality of values both comparisons
//! judge by.

use std::ops::Range;

use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::{Quality, Value};
use diode_common::seal::SegmentHash;
use diode_replica::SegmentKey;

/// A stored segment that verified, as the walk over the audit log saw it.
#[derive(Debug, Clone)]
pub(super) struct SignedSegment {
    pub key: SegmentKey,
    /// [`SealedSegment::signed_hash`](diode_common::seal::SealedSegment::signed_hash) of the
    /// header and signature the walk verified: the comparison decodes only these exact segments,
    /// and needs not verify their signatures again.
    pub signed_hash: SegmentHash,
    pub min_timestamp_ns: i64,
    pub max_timestamp_ns: i64,
    pub record_count: u32,
    /// Within the selected sequences (others only resolve last-write-wins in the span).
    pub selected: bool,
}

/// One series' records of one decoded segment, in payload order.
#[derive(Clone, Copy)]
pub(super) struct SignedPart<'a> {
    pub columns: &'a SeriesColumns,
    pub segment: SegmentKey,
    /// Whether the timestamps are strictly ascending ([`SeriesColumns::strictly_ascending`]), as a segment sealed
    /// from a plant's sources almost always holds them: its rows in any time range are then one
    /// run, found by binary search, with no duplicate among them.
    pub ascending: bool,
}

/// Rows `range` of `timestamps_ns` (strictly ascending) that lie in `window`. Most parts lie
/// wholly inside it, which their first and last timestamps show without a search.
pub(super) fn rows_in_window(timestamps_ns: &[i64], window: (i64, i64)) -> Range<usize> {
    match (timestamps_ns.first(), timestamps_ns.last()) {
        (Some(&first), Some(&last)) if window.0 <= first && last <= window.1 => 0..timestamps_ns.len(),
        _ => timestamps_ns.partition_point(|&t| t < window.0)..timestamps_ns.partition_point(|&t| t <= window.1),
    }
}

/// Last-write-wins rank of a segment, as the replica resolves duplicates: the highest
/// (epoch, sequence) wins, ties between senders go to the higher sender id.
pub(super) fn write_order(key: SegmentKey) -> (u64, u64, u64) {
    (key.epoch, key.sequence, key.sender_id)
}

/// Whether the value at `row` of `values` is bit-for-bit `other` (so `-0.0 != 0.0`, and NaN
/// payloads compare by their bits), without cloning strings.
pub(super) fn value_at_equals(values: &Values, row: usize, other: &Value) -> bool {
    match (values, other) {
        (Values::F64(values), Value::F64(other)) => values[row].to_bits() == other.to_bits(),
        (Values::I64(values), Value::I64(other)) => values[row] == *other,
        (Values::Bool(values), Value::Bool(other)) => values[row] == *other,
        (Values::String(values), Value::String(other)) => values[row] == *other,
        (Values::Mixed(values), other) => values[row].bit_eq(other),
        _ => false,
    }
}

/// Whether two runs of qualities are equal. Compared with one test at the end, not one per row:
/// a slice of a newtype is compared element by element with an early exit, which does not
/// vectorise (it was a tenth of the comparisons' time).
pub(super) fn qualities_equal(a: &[Quality], b: &[Quality]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |differ, (a, b)| differ | (a.0 ^ b.0)) == 0
}

/// How many leading rows of `a` and `b` are equal, given whether all of them are (`all_equal`,
/// found by a comparison of the whole runs that vectorises): row by row only when not.
pub(super) fn leading_equal<T: PartialEq>(a: &[T], b: &[T], all_equal: bool) -> usize {
    if all_equal { a.len().min(b.len()) } else { a.iter().zip(b).take_while(|(a, b)| a == b).count() }
}

/// Whether row `i` of `a` and row `j` of `b` hold the same value, bit for bit, as
/// [`value_at_equals`] judges it, without building a [`Value`] when both columns have one kind.
pub(super) fn values_equal(a: &Values, i: usize, b: &Values, j: usize) -> bool {
    match (a, b) {
        (Values::F64(x), Values::F64(y)) => x[i].to_bits() == y[j].to_bits(),
        (Values::I64(x), Values::I64(y)) => x[i] == y[j],
        (Values::Bool(x), Values::Bool(y)) => x[i] == y[j],
        (Values::String(x), Values::String(y)) => x[i] == y[j],
        _ => value_at_equals(a, i, &b.get(j)),
    }
}

/// Whether rows `a_rows` of `a` and rows `b_rows` of `b` (as many) hold the same values, bit for
/// bit, as [`values_equal`] judges them row by row.
pub(super) fn values_equal_rows(a: &Values, a_rows: Range<usize>, b: &Values, b_rows: Range<usize>) -> bool {
    match (a, b) {
        // Bits XORed and ORed together, tested once at the end (as `qualities_equal`: an early
        // exit per row does not vectorise).
        (Values::F64(x), Values::F64(y)) => {
            let (x, y) = (&x[a_rows], &y[b_rows]);
            x.len() == y.len() && x.iter().zip(y).fold(0, |differ, (x, y)| differ | (x.to_bits() ^ y.to_bits())) == 0
        }
        (Values::I64(x), Values::I64(y)) => x[a_rows] == y[b_rows],
        (Values::Bool(x), Values::Bool(y)) => x[a_rows] == y[b_rows],
        (Values::String(x), Values::String(y)) => x[a_rows] == y[b_rows],
        _ => a_rows.zip(b_rows).all(|(i, j)| values_equal(a, i, b, j)),
    }
}

/// How many of `count` rows of `a` from `i` and of `b` from `j` hold the same values, bit for bit,
/// before the first that differs, as [`values_equal`] judges them row by row.
pub(super) fn common_values(a: &Values, i: usize, b: &Values, j: usize, count: usize) -> usize {
    fn common<T>(x: &[T], y: &[T], same: impl Fn(&T, &T) -> bool) -> usize {
        x.iter().zip(y).take_while(|(x, y)| same(x, y)).count()
    }
    match (a, b) {
        (Values::F64(x), Values::F64(y)) => {
            common(&x[i..i + count], &y[j..j + count], |x, y| x.to_bits() == y.to_bits())
        }
        (Values::I64(x), Values::I64(y)) => common(&x[i..i + count], &y[j..j + count], |x, y| x == y),
        (Values::Bool(x), Values::Bool(y)) => common(&x[i..i + count], &y[j..j + count], |x, y| x == y),
        (Values::String(x), Values::String(y)) => common(&x[i..i + count], &y[j..j + count], |x, y| x == y),
        _ => (0..count).take_while(|&k| values_equal(a, i + k, b, j + k)).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualities_are_equal_only_when_every_row_and_the_length_agree() {
        let run: Vec<Quality> = (0..100).map(|row| Quality(row * 7)).collect();
        assert!(qualities_equal(&run, &run.clone()));
        assert!(qualities_equal(&[], &[]));
        assert!(!qualities_equal(&run, &run[..99]));
        for row in [0, 50, 99] {
            for bit in [0, 16, 31] {
                let mut changed = run.clone();
                changed[row].0 ^= 1 << bit;
                assert!(!qualities_equal(&run, &changed), "row {row}, bit {bit}");
                assert_eq!(leading_equal(&run, &changed, false), row);
            }
        }
        assert_eq!(leading_equal(&run, &run, true), run.len());
        assert_eq!(leading_equal(&run, &run[..40], false), 40);
    }

    #[test]
    fn float_rows_are_equal_only_bit_for_bit() {
        // Row 12 holds 0.0, which must differ from -0.0.
        let run: Vec<f64> = (0..100).map(|row| f64::from(row) * 0.25 - 3.0).collect();
        let values = Values::F64(run.clone());
        assert!(values_equal_rows(&values, 0..100, &Values::F64(run.clone()), 0..100));
        assert!(values_equal_rows(&values, 10..30, &Values::F64(run[10..30].to_vec()), 0..20));
        for (row, other) in [(0, 3.0), (12, -0.0), (99, f64::NAN), (50, f64::from_bits(run[50].to_bits() ^ 1))] {
            let mut changed = run.clone();
            changed[row] = other;
            assert!(!values_equal_rows(&values, 0..100, &Values::F64(changed), 0..100), "row {row}");
        }
        let nan = |payload: u64| f64::from_bits(f64::NAN.to_bits() | payload);
        assert!(values_equal_rows(&Values::F64(vec![nan(1)]), 0..1, &Values::F64(vec![nan(1)]), 0..1));
        assert!(!values_equal_rows(&Values::F64(vec![nan(1)]), 0..1, &Values::F64(vec![nan(2)]), 0..1));
    }
}
