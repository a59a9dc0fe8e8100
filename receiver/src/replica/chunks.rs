//! Turning one segment's columns of one series into per-bucket chunks, and chunks back into points.
//!
//! Apply side: a segment's records of one series (possibly in several entries of the payload, and
//! possibly straddling an hour boundary) become one chunk per [`BUCKET_NS`](super::BUCKET_NS)
//! bucket, records kept in input order. Scan side: the chunks of one bucket, in key order (epoch,
//! sequence, sender), merge into points sorted by time with duplicates resolved last-write-wins.

use std::collections::BTreeMap;

use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::{Quality, Value, ValueKind};

use super::layout::{SeriesStatistics, bucket_start};

/// One sample read back from the replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub timestamp_ns: i64,
    pub value: Value,
    pub quality: Quality,
}

/// Calls `emit(bucket start, columns)` once per bucket the records of `parts` (all of one series,
/// in payload order) fall in, ascending by bucket, with the records of that bucket in input order.
/// The common case (one entry, one bucket) passes the entry itself without copying.
pub fn for_each_bucket(parts: &[&SeriesColumns], mut emit: impl FnMut(i64, &SeriesColumns)) {
    let non_empty: Vec<&SeriesColumns> = parts.iter().copied().filter(|part| !part.is_empty()).collect();
    if let [only] = non_empty.as_slice()
        && let Some((min_ns, max_ns)) = only.min_max_timestamp()
        && bucket_start(min_ns) == bucket_start(max_ns)
    {
        emit(bucket_start(min_ns), only);
        return;
    }
    let mut buckets: BTreeMap<i64, SeriesColumns> = BTreeMap::new();
    for part in non_empty {
        for (row, &timestamp_ns) in part.timestamps_ns.iter().enumerate() {
            buckets.entry(bucket_start(timestamp_ns)).or_insert_with(|| SeriesColumns::new(part.key.clone())).push(
                timestamp_ns,
                part.value(row),
                part.qualities[row],
            );
        }
    }
    for (bucket, columns) in &buckets {
        emit(*bucket, columns);
    }
}

fn kind_bit(kind: ValueKind) -> u8 {
    1 << (kind as u8)
}

/// Kinds present in a column (bit `k` for `ValueKind` `k`) and the kind of its first value.
fn kinds_of(values: &Values) -> Option<(ValueKind, u8)> {
    let single = |kind: ValueKind, empty: bool| (!empty).then_some((kind, kind_bit(kind)));
    match values {
        Values::F64(v) => single(ValueKind::F64, v.is_empty()),
        Values::I64(v) => single(ValueKind::I64, v.is_empty()),
        Values::Bool(v) => single(ValueKind::Bool, v.is_empty()),
        Values::String(v) => single(ValueKind::String, v.is_empty()),
        Values::Mixed(v) => {
            let first = v.first()?.kind();
            Some((first, v.iter().fold(0, |mask, value| mask | kind_bit(value.kind()))))
        }
    }
}

/// Statistics of `parts` (one series of one segment) folded into `previous`. `None` when `parts`
/// holds no records and there were no statistics before.
pub fn fold_statistics(previous: Option<SeriesStatistics>, parts: &[&SeriesColumns]) -> Option<SeriesStatistics> {
    let mut statistics = previous;
    for part in parts {
        let (Some((first_kind, kinds)), Some((min_ns, max_ns))) = (kinds_of(&part.values), part.min_max_timestamp())
        else {
            continue;
        };
        let count = part.len() as u64;
        statistics = Some(match statistics {
            None => SeriesStatistics {
                kind: first_kind,
                kinds_seen: kinds,
                first_timestamp_ns: min_ns,
                last_timestamp_ns: max_ns,
                point_count: count,
            },
            Some(s) => SeriesStatistics {
                kind: s.kind,
                kinds_seen: s.kinds_seen | kinds,
                first_timestamp_ns: s.first_timestamp_ns.min(min_ns),
                last_timestamp_ns: s.last_timestamp_ns.max(max_ns),
                point_count: s.point_count.saturating_add(count),
            },
        });
    }
    statistics
}

/// Appends to `out` the points of one bucket's chunks (given in key order, so later chunks win)
/// whose timestamps lie in `from_ns..=to_ns`, ascending by time, one per timestamp: for equal
/// timestamps the last chunk wins, and within a chunk the later record.
pub fn merge_bucket(chunks: &[SeriesColumns], from_ns: i64, to_ns: i64, out: &mut Vec<Point>) {
    let point = |chunk: &SeriesColumns, row: usize| Point {
        timestamp_ns: chunk.timestamps_ns[row],
        value: chunk.value(row),
        quality: chunk.qualities[row],
    };
    let in_range = |timestamp_ns: i64| (from_ns..=to_ns).contains(&timestamp_ns);
    if already_in_order(chunks) {
        // Applied in order with no duplicates: the common case needs no sort.
        for chunk in chunks {
            let rows = chunk.timestamps_ns.iter().enumerate().filter(|(_, t)| in_range(**t));
            out.extend(rows.map(|(row, _)| point(chunk, row)));
        }
        return;
    }
    let mut order: Vec<(i64, u32, u32)> = Vec::with_capacity(chunks.iter().map(SeriesColumns::len).sum());
    for (index, chunk) in chunks.iter().enumerate() {
        for (row, &timestamp_ns) in chunk.timestamps_ns.iter().enumerate() {
            if in_range(timestamp_ns) {
                order.push((timestamp_ns, index as u32, row as u32));
            }
        }
    }
    // (time, chunk, row) ascending: the last entry of each run of equal times is the winner.
    order.sort_unstable();
    for (position, &(timestamp_ns, index, row)) in order.iter().enumerate() {
        let superseded = order.get(position + 1).is_some_and(|next| next.0 == timestamp_ns);
        if !superseded {
            out.push(point(&chunks[index as usize], row as usize));
        }
    }
}

/// Every chunk strictly ascending and each chunk entirely after the one before it.
fn already_in_order(chunks: &[SeriesColumns]) -> bool {
    let mut previous = None::<i64>;
    for chunk in chunks {
        for &timestamp_ns in &chunk.timestamps_ns {
            if previous.is_some_and(|p| p >= timestamp_ns) {
                return false;
            }
            previous = Some(timestamp_ns);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::layout::BUCKET_NS;
    use diode_common::record::SeriesKey;

    fn columns(points: &[(i64, f64)]) -> SeriesColumns {
        let mut columns = SeriesColumns::new(SeriesKey::new("a"));
        for &(timestamp_ns, value) in points {
            columns.push(timestamp_ns, Value::F64(value), Quality::GOOD);
        }
        columns
    }

    fn merged(chunks: &[SeriesColumns]) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        merge_bucket(chunks, i64::MIN, i64::MAX, &mut out);
        out.iter().map(|p| (p.timestamp_ns, p.value.as_f64().unwrap())).collect()
    }

    #[test]
    fn later_chunks_and_later_records_win_duplicate_timestamps() {
        let first = columns(&[(1, 1.0), (2, 2.0), (2, 2.5)]);
        let second = columns(&[(2, 9.0), (0, 0.5)]);
        assert_eq!(merged(std::slice::from_ref(&first)), vec![(1, 1.0), (2, 2.5)]);
        assert_eq!(merged(&[first, second]), vec![(0, 0.5), (1, 1.0), (2, 9.0)]);
    }

    #[test]
    fn records_straddling_an_hour_are_split_into_buckets_in_input_order() {
        let part = columns(&[(BUCKET_NS + 5, 1.0), (BUCKET_NS - 1, 2.0), (BUCKET_NS + 1, 3.0)]);
        let mut seen = Vec::new();
        for_each_bucket(&[&part], |bucket, chunk| seen.push((bucket, chunk.timestamps_ns.clone())));
        assert_eq!(seen, vec![(0, vec![BUCKET_NS - 1]), (BUCKET_NS, vec![BUCKET_NS + 5, BUCKET_NS + 1])]);
    }

    #[test]
    fn statistics_remember_the_first_kind_and_every_kind_seen() {
        let floats = columns(&[(5, 1.0), (3, 2.0)]);
        let mut integers = SeriesColumns::new(SeriesKey::new("a"));
        integers.push(10, Value::I64(1), Quality::GOOD);
        let statistics = fold_statistics(None, &[&floats, &integers]).unwrap();
        assert_eq!(statistics.kind, ValueKind::F64);
        assert_eq!(statistics.kinds_seen, 0b11);
        assert_eq!((statistics.first_timestamp_ns, statistics.last_timestamp_ns, statistics.point_count), (3, 10, 3));
    }
}
