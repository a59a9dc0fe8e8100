//! Turning one segment's columns of one series into per-bucket chunks, and chunks back into points.
//!
//! Apply side: a segment's records of one series (possibly in several entries of the payload, and
//! possibly straddling an hour boundary) become one chunk per [`BUCKET_NS`](crate::BUCKET_NS)
//! bucket, records kept in input order. Scan side: the chunks of one bucket, in key order (epoch,
//! sequence, sender), merge into columns sorted by time with duplicates resolved last-write-wins.

use std::collections::BTreeMap;
use std::ops::Range;

use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::{Quality, Value, ValueKind};

use crate::layout::{SeriesStatistics, bucket_start};

/// One sample read back from the replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Data time, in ns since the Unix epoch, as the source stamped it.
    pub timestamp_ns: i64,
    /// The sample's value, of its series' kind.
    pub value: Value,
    /// The source's quality for the sample.
    pub quality: Quality,
}

/// The bucket all of `columns`' records fall in, if they fall in one.
pub(crate) fn single_bucket(columns: &SeriesColumns) -> Option<i64> {
    let (min_ns, max_ns) = columns.min_max_timestamp()?;
    (bucket_start(min_ns) == bucket_start(max_ns)).then(|| bucket_start(min_ns))
}

/// Calls `emit(bucket start, columns)` once per bucket the records of `parts` (all of one series,
/// in payload order) fall in, ascending by bucket, with the records of that bucket in input order.
/// The common case (one entry, one bucket) passes the entry itself without copying.
pub(crate) fn for_each_bucket(parts: &[&SeriesColumns], mut emit: impl FnMut(i64, &SeriesColumns)) {
    let non_empty: Vec<&SeriesColumns> = parts.iter().copied().filter(|part| !part.is_empty()).collect();
    if let [only] = non_empty.as_slice()
        && let Some(bucket_start_ns) = single_bucket(only)
    {
        emit(bucket_start_ns, only);
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
pub(crate) fn fold_statistics(
    previous: Option<SeriesStatistics>,
    parts: &[&SeriesColumns],
) -> Option<SeriesStatistics> {
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

/// Merges one bucket's chunks (given in key order, so later chunks win) into the columns of its
/// points whose timestamps lie in `from_ns..=to_ns`, ascending by time, one per timestamp: for
/// equal timestamps the last chunk wins, and within a chunk the later record. `None` when no point
/// is in range. The common case (one chunk, applied in order) hands the decoded chunk back whole.
pub(crate) fn merge_bucket(chunks: Vec<SeriesColumns>, from_ns: i64, to_ns: i64) -> Option<SeriesColumns> {
    merge_bucket_of(chunks, from_ns, to_ns, false)
}

/// The points [`merge_bucket`] gives, as blocks of columns in time order that together hold them:
/// when the chunks are already in order (applied in order, no duplicates), each chunk's rows in
/// range as its own block, without copying them into one; otherwise the one merged block.
pub(crate) fn merge_bucket_blocks(mut chunks: Vec<SeriesColumns>, from_ns: i64, to_ns: i64) -> Vec<SeriesColumns> {
    if !already_in_order(&chunks, false) {
        return merge_bucket_of(chunks, from_ns, to_ns, false).into_iter().collect();
    }
    chunks.retain_mut(|chunk| {
        let lower = chunk.timestamps_ns.partition_point(|&t| t < from_ns);
        let upper = chunk.timestamps_ns.partition_point(|&t| t <= to_ns);
        keep_rows(chunk, lower..upper.max(lower));
        !chunk.is_empty()
    });
    chunks
}

/// [`merge_bucket`], told whether each chunk's timestamps are already known to be strictly
/// ascending (the codec knows it of a stride): then only the chunks' boundaries are compared.
pub(crate) fn merge_bucket_of(
    mut chunks: Vec<SeriesColumns>,
    from_ns: i64,
    to_ns: i64,
    each_ascending: bool,
) -> Option<SeriesColumns> {
    if already_in_order(&chunks, each_ascending) {
        // Applied in order with no duplicates: each chunk's rows in range are one run.
        let mut merged: Option<SeriesColumns> = None;
        for mut chunk in chunks.drain(..) {
            let lower = chunk.timestamps_ns.partition_point(|&t| t < from_ns);
            let upper = chunk.timestamps_ns.partition_point(|&t| t <= to_ns);
            if lower >= upper {
                continue;
            }
            match merged.as_mut() {
                None => {
                    keep_rows(&mut chunk, lower..upper);
                    merged = Some(chunk);
                }
                Some(merged) => append_rows(merged, &chunk, lower..upper),
            }
        }
        return merged;
    }
    let mut order: Vec<(i64, u32, u32)> = Vec::with_capacity(chunks.iter().map(SeriesColumns::len).sum());
    for (index, chunk) in chunks.iter().enumerate() {
        for (row, &timestamp_ns) in chunk.timestamps_ns.iter().enumerate() {
            if (from_ns..=to_ns).contains(&timestamp_ns) {
                order.push((timestamp_ns, index as u32, row as u32));
            }
        }
    }
    // (time, chunk, row) ascending: the last entry of each run of equal times is the winner.
    order.sort_unstable();
    let mut merged = SeriesColumns::new(chunks.first()?.key.clone());
    for (position, &(timestamp_ns, index, row)) in order.iter().enumerate() {
        let superseded = order.get(position + 1).is_some_and(|next| next.0 == timestamp_ns);
        if !superseded {
            let (chunk, row) = (&chunks[index as usize], row as usize);
            merged.push(timestamp_ns, chunk.value(row), chunk.qualities[row]);
        }
    }
    (!merged.is_empty()).then_some(merged)
}

/// Keeps only `rows` of `columns`.
fn keep_rows(columns: &mut SeriesColumns, rows: Range<usize>) {
    fn keep<T>(column: &mut Vec<T>, rows: &Range<usize>) {
        column.truncate(rows.end);
        column.drain(..rows.start);
    }
    if rows == (0..columns.len()) {
        return;
    }
    keep(&mut columns.timestamps_ns, &rows);
    keep(&mut columns.qualities, &rows);
    match &mut columns.values {
        Values::F64(values) => keep(values, &rows),
        Values::I64(values) => keep(values, &rows),
        Values::Bool(values) => keep(values, &rows),
        Values::String(values) => keep(values, &rows),
        Values::Mixed(values) => keep(values, &rows),
    }
}

/// Appends `rows` of `from` to `into` (which becomes [`Values::Mixed`] if their kinds differ).
fn append_rows(into: &mut SeriesColumns, from: &SeriesColumns, rows: Range<usize>) {
    into.timestamps_ns.extend_from_slice(&from.timestamps_ns[rows.clone()]);
    into.qualities.extend_from_slice(&from.qualities[rows.clone()]);
    match (&mut into.values, &from.values) {
        (Values::F64(into), Values::F64(from)) => into.extend_from_slice(&from[rows]),
        (Values::I64(into), Values::I64(from)) => into.extend_from_slice(&from[rows]),
        (Values::Bool(into), Values::Bool(from)) => into.extend_from_slice(&from[rows]),
        (Values::String(into), Values::String(from)) => into.extend_from_slice(&from[rows]),
        (values, _) => rows.for_each(|row| values.push(from.value(row))),
    }
}

/// Appends every row of `from` to `into`.
pub(crate) fn append_all(into: &mut SeriesColumns, from: &SeriesColumns) {
    append_rows(into, from, 0..from.len());
}

/// The rows of `columns` whose timestamps `keep` accepts.
pub(crate) fn keep_rows_where(columns: &SeriesColumns, mut keep: impl FnMut(i64) -> bool) -> SeriesColumns {
    fn pick<T: Clone>(column: &[T], rows: &[usize]) -> Vec<T> {
        rows.iter().map(|&row| column[row].clone()).collect()
    }
    let rows: Vec<usize> = (0..columns.len()).filter(|&row| keep(columns.timestamps_ns[row])).collect();
    let values = match &columns.values {
        Values::F64(values) => Values::F64(pick(values, &rows)),
        Values::I64(values) => Values::I64(pick(values, &rows)),
        Values::Bool(values) => Values::Bool(pick(values, &rows)),
        Values::String(values) => Values::String(pick(values, &rows)),
        Values::Mixed(_) => {
            // Kept rows of one kind become a column of that kind, as apply would have stored them.
            let mut kept = SeriesColumns::new(columns.key.clone());
            for row in rows {
                kept.push(columns.timestamps_ns[row], columns.value(row), columns.qualities[row]);
            }
            return kept;
        }
    };
    SeriesColumns {
        key: columns.key.clone(),
        timestamps_ns: pick(&columns.timestamps_ns, &rows),
        values,
        qualities: pick(&columns.qualities, &rows),
    }
}

/// Every chunk strictly ascending (known to be when `each_ascending`) and each chunk entirely
/// after the one before it.
fn already_in_order(chunks: &[SeriesColumns], each_ascending: bool) -> bool {
    let mut previous = None::<i64>;
    for chunk in chunks {
        let timestamps = &chunk.timestamps_ns;
        let (Some(&first), Some(&last)) = (timestamps.first(), timestamps.last()) else { continue };
        if previous.is_some_and(|p| p >= first) || !(each_ascending || chunk.strictly_ascending()) {
            return false;
        }
        previous = Some(last);
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layout::BUCKET_NS;
    use diode_common::record::SeriesKey;

    /// Columns of series `a` holding `points`, as floats of good quality.
    pub(crate) fn columns(points: &[(i64, f64)]) -> SeriesColumns {
        let mut columns = SeriesColumns::new(SeriesKey::new("a"));
        for &(timestamp_ns, value) in points {
            columns.push(timestamp_ns, Value::F64(value), Quality::GOOD);
        }
        columns
    }

    fn merged_in(chunks: &[SeriesColumns], from_ns: i64, to_ns: i64) -> Vec<(i64, f64)> {
        let Some(merged) = merge_bucket(chunks.to_vec(), from_ns, to_ns) else { return Vec::new() };
        assert_eq!(merged.values.len(), merged.len());
        assert_eq!(merged.qualities.len(), merged.len());
        (0..merged.len()).map(|row| (merged.timestamps_ns[row], merged.value(row).as_f64().unwrap())).collect()
    }

    fn merged(chunks: &[SeriesColumns]) -> Vec<(i64, f64)> {
        merged_in(chunks, i64::MIN, i64::MAX)
    }

    #[test]
    fn later_chunks_and_later_records_win_duplicate_timestamps() {
        let first = columns(&[(1, 1.0), (2, 2.0), (2, 2.5)]);
        let second = columns(&[(2, 9.0), (0, 0.5)]);
        assert_eq!(merged(std::slice::from_ref(&first)), vec![(1, 1.0), (2, 2.5)]);
        assert_eq!(merged(&[first, second]), vec![(0, 0.5), (1, 1.0), (2, 9.0)]);
    }

    #[test]
    fn chunks_in_order_are_cut_to_the_range_and_joined() {
        let first = columns(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        let second = columns(&[(4, 4.0), (5, 5.0)]);
        let both = [first.clone(), second.clone()];
        assert_eq!(merged_in(&both, 2, 4), vec![(2, 2.0), (3, 3.0), (4, 4.0)]);
        assert_eq!(merged_in(&both, 4, 9), vec![(4, 4.0), (5, 5.0)]);
        assert_eq!(merged_in(&both, 6, 9), vec![]);
        assert_eq!(merged_in(std::slice::from_ref(&first), 0, 9), vec![(1, 1.0), (2, 2.0), (3, 3.0)]);
    }

    #[test]
    fn the_blocks_hold_exactly_the_merged_points_in_order_and_in_range() {
        // Chunks in order, out of order, with duplicates, empty, and reaching past the range.
        let cases: [&[&[(i64, f64)]]; 6] = [
            &[&[(1, 1.0), (2, 2.0), (3, 3.0)], &[(4, 4.0), (5, 5.0)], &[(7, 7.0)]],
            &[&[(1, 1.0), (2, 2.0)], &[], &[(3, 3.0)]],
            &[&[(1, 1.0), (3, 3.0)], &[(2, 2.0), (4, 4.0)]],
            &[&[(1, 1.0), (2, 2.0)], &[(2, 9.0), (5, 5.0)]],
            &[&[(2, 2.0), (1, 1.0)]],
            &[&[(1, 1.0), (1, 1.5)], &[(3, 3.0)]],
        ];
        for chunks in cases {
            let chunks: Vec<SeriesColumns> = chunks.iter().map(|points| columns(points)).collect();
            for (from_ns, to_ns) in [(i64::MIN, i64::MAX), (2, 4), (3, 3), (6, 9), (8, 9)] {
                let blocks = merge_bucket_blocks(chunks.clone(), from_ns, to_ns);
                let joined: Vec<(i64, f64)> = blocks
                    .iter()
                    .flat_map(|block| {
                        assert!(!block.is_empty(), "no empty block");
                        (0..block.len()).map(|row| (block.timestamps_ns[row], block.value(row).as_f64().unwrap()))
                    })
                    .collect();
                assert_eq!(joined, merged_in(&chunks, from_ns, to_ns), "{chunks:?} in {from_ns}..={to_ns}");
            }
        }
    }

    #[test]
    fn joining_chunks_of_different_kinds_keeps_every_value() {
        let first = columns(&[(1, 1.5)]);
        let mut second = SeriesColumns::new(SeriesKey::new("a"));
        second.push(2, Value::I64(7), Quality::BAD);
        let merged = merge_bucket(vec![first, second], 0, 9).unwrap();
        assert_eq!(merged.value(0), Value::F64(1.5));
        assert_eq!(merged.value(1), Value::I64(7));
        assert_eq!(merged.qualities, vec![Quality::GOOD, Quality::BAD]);
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
