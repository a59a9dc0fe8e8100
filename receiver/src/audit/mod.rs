//! Audit: prove that every point in the replica was signed on the OT side, and let third parties
//! check single points without the replica.
//!
//! - [`verify`] re-verifies every stored segment (signature under a trusted key valid at its
//!   sealing time, payload hash, header against payload), the hash chain of every
//!   `(sender, epoch)`, the gaps against the receiver's own tracker, and then every point of the
//!   replica against the points the signed segments say it must hold (last write wins). Its
//!   result is an [`report::AuditReport`].
//! - [`proof`] exports the segments and chain links behind some points of one series into a
//!   self-contained binary proof file (`docs/proof-format.md`); the file's codec and its offline
//!   check, which needs only the sender's public keys, are `diode_common::proof`.
//! - [`cli`] is `diode-receiver audit verify | proof | check-proof`.

mod chunks;
pub mod cli;
mod points;
pub mod proof;
pub mod report;
pub mod verify;

use std::ops::RangeInclusive;

use diode_common::codec::Values;
use diode_common::record::Value;
use diode_replica::{Replica, SegmentKey, SeriesInfo};

/// Last-write-wins rank of a segment, as the replica resolves duplicates: the highest
/// (epoch, sequence) wins, ties between senders go to the higher sender id.
pub(crate) fn write_order(key: SegmentKey) -> (u64, u64, u64) {
    (key.epoch, key.sequence, key.sender_id)
}

/// Whether the value at `row` of `values` is bit-for-bit `other` (so `-0.0 != 0.0`, and NaN
/// payloads compare by their bits), without cloning strings.
pub(crate) fn value_at_equals(values: &Values, row: usize, other: &Value) -> bool {
    match (values, other) {
        (Values::F64(values), Value::F64(other)) => values[row].to_bits() == other.to_bits(),
        (Values::I64(values), Value::I64(other)) => values[row] == *other,
        (Values::Bool(values), Value::Bool(other)) => values[row] == *other,
        (Values::String(values), Value::String(other)) => values[row] == *other,
        (Values::Mixed(values), other) => values[row].bit_eq(other),
        _ => false,
    }
}

/// The catalogued series whose display form (`name` or `name{key=value,...}`) is `name`.
pub(crate) fn find_series(replica: &Replica, name: &str) -> anyhow::Result<SeriesInfo> {
    let matching: Vec<SeriesInfo> =
        replica.series_list().into_iter().filter(|info| info.key.to_string() == name).collect();
    match matching.len() {
        1 => Ok(matching.into_iter().next().expect("one match")),
        0 => {
            let similar: Vec<String> = replica
                .series_list()
                .into_iter()
                .map(|info| info.key.to_string())
                .filter(|shown| shown.starts_with(name) || shown.contains(name))
                .take(5)
                .collect();
            if similar.is_empty() {
                anyhow::bail!(
                    "the replica holds no series {name:?}; list them with `diode-receiver series --config FILE`"
                )
            }
            anyhow::bail!("the replica holds no series {name:?}; did you mean one of {similar:?}?")
        }
        _ => anyhow::bail!("{} series are shown as {name:?}; this cannot happen in a healthy replica", matching.len()),
    }
}

/// JSON form of a value: numbers, booleans and strings as themselves; non-finite floats (which
/// sources refuse, but the codec carries) as their text.
pub(crate) fn value_json(value: &Value) -> serde_json::Value {
    match value {
        Value::F64(v) if v.is_finite() => serde_json::json!(v),
        Value::F64(v) => serde_json::json!(v.to_string()),
        Value::I64(v) => serde_json::json!(v),
        Value::Bool(v) => serde_json::json!(v),
        Value::String(v) => serde_json::json!(v),
    }
}

/// `value (kind, quality)` for humans.
pub(crate) use diode_common::proof::describe_point as describe_value;

/// Ascending, disjoint ranges `a` minus ascending, disjoint ranges `b`.
pub(crate) fn subtract_ranges(a: &[RangeInclusive<u64>], b: &[RangeInclusive<u64>]) -> Vec<RangeInclusive<u64>> {
    let mut out = Vec::new();
    let mut cut = b.iter().peekable();
    for range in a {
        let (mut start, end) = (*range.start(), *range.end());
        let mut exhausted = false;
        while let Some(remove) = cut.peek() {
            if *remove.end() < start {
                cut.next();
                continue;
            }
            if *remove.start() > end {
                break;
            }
            if *remove.start() > start {
                out.push(start..=*remove.start() - 1);
            }
            match remove.end().checked_add(1) {
                Some(next) if next <= end => {
                    start = next;
                    cut.next();
                }
                _ => {
                    exhausted = true;
                    break;
                }
            }
        }
        if !exhausted {
            out.push(start..=end);
        }
    }
    out
}

/// Intersects ascending, disjoint ranges with one range.
pub(crate) fn clip_ranges(ranges: &[RangeInclusive<u64>], within: &RangeInclusive<u64>) -> Vec<RangeInclusive<u64>> {
    ranges
        .iter()
        .filter_map(|range| {
            let start = (*range.start()).max(*within.start());
            let end = (*range.end()).min(*within.end());
            (start <= end).then_some(start..=end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtracting_ranges_leaves_what_only_the_first_holds() {
        assert_eq!(subtract_ranges(&[1..=10], &[3..=4, 7..=7]), vec![1..=2, 5..=6, 8..=10]);
        assert_eq!(subtract_ranges(&[1..=10], &[0..=20]), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(subtract_ranges(&[1..=3, 5..=9], &[3..=5]), vec![1..=2, 6..=9]);
        assert_eq!(subtract_ranges(&[1..=u64::MAX], &[5..=u64::MAX]), vec![1..=4]);
        assert_eq!(subtract_ranges(&[4..=6], &[]), vec![4..=6]);
    }

    #[test]
    fn clipping_keeps_the_overlap() {
        assert_eq!(clip_ranges(&[1..=3, 5..=9], &(2..=6)), vec![2..=3, 5..=6]);
    }
}
