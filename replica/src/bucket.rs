//! One bucket's points entries as every reader sees them: the chunks apply stored, whether each
//! is still an entry of its own or a part of the bucket's merged entry (see `merge`).
//!
//! A merged entry (key: the 12-byte bucket prefix) sorts before the bucket's 36-byte chunk keys
//! and holds the parts it replaced in key order. Chunks applied after the merge are stored on
//! their own again, and usually sort after every part (a later segment); a segment that fills an
//! old gap sorts between parts. Readers therefore interleave the parts with the stored chunks by
//! key, which gives exactly the chunks, in exactly the order, that the bucket held before it was
//! merged: last-write-wins, the audit's chunk comparison and the sinks' reads are unchanged.

use std::ops::Range;
use std::path::Path;

use diode_common::codec::{SeriesColumns, Values, decode_columns_ordered};
use diode_common::record::SeriesKey;
use rocksdb::DBRawIterator;

use crate::error::ReplicaError;
use crate::layout::{self, MergedPart, PointKey};

/// `(series id, bucket start)` of a points key, or `None` for a key neither apply nor a merge
/// writes.
pub(crate) fn bucket_of(key: &[u8]) -> Option<(u32, i64)> {
    if layout::is_merged_key(key) {
        return layout::parse_merged_key(key);
    }
    PointKey::from_bytes(key).map(|key| (key.series_id, key.bucket_start_ns))
}

/// Names a points entry for messages.
pub(crate) fn describe_entry(key: &[u8]) -> String {
    if let Some((series_id, bucket_start_ns)) = layout::parse_merged_key(key) {
        return format!("the merged bucket {bucket_start_ns} of series {series_id}");
    }
    match PointKey::from_bytes(key) {
        Some(k) => format!(
            "the points chunk of series {} bucket {} from sender {} epoch {} sequence {}",
            k.series_id, k.bucket_start_ns, k.sender_id, k.epoch, k.sequence
        ),
        None => format!("a points entry with a {}-byte key", key.len()),
    }
}

/// A merged entry's parts and their rows, decoded and checked against each other.
pub(crate) fn decode_merged(value: &[u8], series: SeriesKey) -> Result<(Vec<MergedPart>, SeriesColumns), String> {
    let (parts, _) = layout::decode_merged_table(value)?;
    let merged = MergedRows::read(value, series)?;
    Ok((parts, merged.rows))
}

/// A merged entry read for its rows: the table is kept as bytes and read only when the parts are
/// needed (a scan of a merged hour with nothing stored beside it needs the rows alone).
struct MergedRows {
    /// The value's header and table.
    head: Vec<u8>,
    /// How many parts the header names.
    count: usize,
    rows: SeriesColumns,
    /// The rows' timestamps are known to be strictly ascending (see `decode_columns_ordered`).
    ascending: bool,
}

impl MergedRows {
    fn read(value: &[u8], series: SeriesKey) -> Result<MergedRows, String> {
        let (count, row_count, head, columns) = layout::split_merged(value)?;
        let (rows, ascending) = decode_columns_ordered(columns, series).map_err(|error| error.to_string())?;
        if row_count != rows.len() as u64 {
            return Err(format!("its header names {row_count} rows but it holds {}", rows.len()));
        }
        Ok(MergedRows { head: head.to_vec(), count, rows, ascending })
    }

    fn parts(&self) -> Result<Vec<MergedPart>, String> {
        Ok(layout::decode_merged_table(&self.head)?.0)
    }
}

/// Rows `rows` of `columns` as columns of their own, typed as apply would have stored them.
pub(crate) fn slice_rows(columns: &SeriesColumns, rows: Range<usize>) -> SeriesColumns {
    let values = match &columns.values {
        Values::F64(values) => Values::F64(values[rows.clone()].to_vec()),
        Values::I64(values) => Values::I64(values[rows.clone()].to_vec()),
        Values::Bool(values) => Values::Bool(values[rows.clone()].to_vec()),
        Values::String(values) => Values::String(values[rows.clone()].to_vec()),
        Values::Mixed(_) => {
            // A part of one kind inside mixed rows was stored typed: push row by row to get that.
            let mut part = SeriesColumns::new(columns.key.clone());
            for row in rows {
                part.push(columns.timestamps_ns[row], columns.value(row), columns.qualities[row]);
            }
            return part;
        }
    };
    SeriesColumns {
        key: columns.key.clone(),
        timestamps_ns: columns.timestamps_ns[rows.clone()].to_vec(),
        values,
        qualities: columns.qualities[rows].to_vec(),
    }
}

/// The chunks a merged entry holds, with their keys, in key order.
pub(crate) fn merged_chunks(
    series_id: u32,
    bucket_start_ns: i64,
    value: &[u8],
    series: SeriesKey,
) -> Result<Vec<(PointKey, SeriesColumns)>, String> {
    let (parts, rows) = decode_merged(value, series)?;
    Ok(split_into_chunks(series_id, bucket_start_ns, &parts, &rows))
}

/// A merged entry's rows alone, checked against its header (the table is not read).
pub(crate) fn merged_rows(value: &[u8], series: SeriesKey) -> Result<SeriesColumns, String> {
    Ok(MergedRows::read(value, series)?.rows)
}

/// `rows` cut into the chunks `parts` name (in order, their row counts adding up to `rows`), each
/// under the key it had on its own.
pub(crate) fn split_into_chunks(
    series_id: u32,
    bucket_start_ns: i64,
    parts: &[MergedPart],
    rows: &SeriesColumns,
) -> Vec<(PointKey, SeriesColumns)> {
    let mut chunks = Vec::with_capacity(parts.len());
    let mut row = 0usize;
    for part in parts {
        let end = row + part.rows as usize;
        chunks.push((part.key(series_id, bucket_start_ns), slice_rows(rows, row..end)));
        row = end;
    }
    chunks
}

/// The entries of one bucket of one series, decoded.
pub(crate) struct Bucket {
    pub(crate) series_id: u32,
    pub(crate) bucket_start_ns: i64,
    /// The merged entry, if any.
    merged: Option<MergedRows>,
    /// The chunks stored as entries of their own, in key order.
    stored: Vec<(PointKey, SeriesColumns)>,
    /// Every stored chunk's timestamps are known to be strictly ascending.
    stored_ascending: bool,
}

impl Bucket {
    /// Reads the bucket whose first entry `raw` is at (every entry with its series id and bucket)
    /// and leaves `raw` at the entry after them. `Ok(None)` when `raw` is at the end. Decoded
    /// columns carry `series`. A key neither apply nor a merge writes, or an entry that does not
    /// decode, is an error naming it.
    pub(crate) fn read(
        raw: &mut DBRawIterator<'_>,
        series: &SeriesKey,
        path: &Path,
    ) -> Result<Option<Bucket>, ReplicaError> {
        let storage = |source| ReplicaError::storage(path, "scanning points", source);
        let Some(first_key) = raw.key() else {
            raw.status().map_err(storage)?;
            return Ok(None);
        };
        let Some((series_id, bucket_start_ns)) = bucket_of(first_key) else {
            return Err(ReplicaError::corrupt(
                path,
                &describe_entry(first_key),
                "has a key apply never writes (neither a 36-byte chunk key nor a 12-byte merged bucket key)",
            ));
        };
        let prefix = layout::bucket_prefix(series_id, bucket_start_ns);
        let mut bucket =
            Bucket { series_id, bucket_start_ns, merged: None, stored: Vec::new(), stored_ascending: true };
        while let (Some(key), Some(value)) = (raw.key(), raw.value()) {
            if !key.starts_with(&prefix) {
                break;
            }
            if layout::is_merged_key(key) {
                let merged = MergedRows::read(value, series.clone())
                    .map_err(|reason| ReplicaError::corrupt(path, &describe_entry(key), reason))?;
                bucket.merged = Some(merged);
            } else {
                let Some(chunk_key) = PointKey::from_bytes(key) else {
                    return Err(ReplicaError::corrupt(
                        path,
                        &describe_entry(key),
                        "has a key apply never writes (not 36 bytes)",
                    ));
                };
                let (chunk, ascending) = decode_columns_ordered(value, series.clone())
                    .map_err(|error| ReplicaError::corrupt(path, &describe_entry(key), error))?;
                bucket.stored_ascending &= ascending;
                bucket.stored.push((chunk_key, chunk));
            }
            raw.next();
        }
        raw.status().map_err(storage)?;
        Ok(Some(bucket))
    }

    /// Names the bucket's merged entry, for messages.
    pub(crate) fn describe(&self) -> String {
        describe_entry(&layout::bucket_prefix(self.series_id, self.bucket_start_ns))
    }

    /// Whether some chunks are stored as entries of their own.
    pub(crate) fn has_stored_chunks(&self) -> bool {
        !self.stored.is_empty()
    }

    /// The keys of the chunks stored as entries of their own.
    pub(crate) fn stored_keys(&self) -> Vec<PointKey> {
        self.stored.iter().map(|(key, _)| *key).collect()
    }

    /// How many chunks the bucket holds, counting each part of a merged entry.
    pub(crate) fn chunk_count(&self) -> usize {
        self.merged.as_ref().map_or(0, |merged| merged.count) + self.stored.len()
    }

    /// The bucket's rows as blocks in last-write-wins order, for `chunks::merge_bucket_of`, and
    /// whether each block's timestamps are known to be strictly ascending: a merged entry's rows
    /// stay one block unless stored chunks fall between its parts (a gap filled after the merge),
    /// where they are cut. An error when the merged entry's table does not read.
    pub(crate) fn into_blocks(self) -> Result<(Vec<SeriesColumns>, bool), String> {
        let Some(merged) = self.merged else {
            return Ok((self.stored.into_iter().map(|(_, chunk)| chunk).collect(), self.stored_ascending));
        };
        // A slice of ascending rows is ascending.
        let ascending = merged.ascending && self.stored_ascending;
        if self.stored.is_empty() {
            return Ok((vec![merged.rows], ascending));
        }
        let parts = merged.parts()?;
        let rows = merged.rows;
        let mut blocks = Vec::with_capacity(self.stored.len() + 1);
        let (mut part, mut row) = (0, 0usize);
        for (key, chunk) in self.stored {
            let start = row;
            while part < parts.len() && parts[part].key(self.series_id, self.bucket_start_ns) < key {
                row += parts[part].rows as usize;
                part += 1;
            }
            if row > start {
                blocks.push(slice_rows(&rows, start..row));
            }
            blocks.push(chunk);
        }
        if row == 0 {
            // Every part sorts after every stored chunk.
            blocks.push(rows);
        } else if row < rows.len() {
            blocks.push(slice_rows(&rows, row..rows.len()));
        }
        Ok((blocks, ascending))
    }

    /// Every chunk of the bucket with its key, in key order: the merged entry's parts split out
    /// and interleaved with the chunks stored on their own. An error when the merged entry's
    /// table does not read.
    pub(crate) fn into_chunks(self) -> Result<Vec<(PointKey, SeriesColumns)>, String> {
        let Some(merged) = self.merged else { return Ok(self.stored) };
        let parts = merged.parts()?;
        let mut chunks = split_into_chunks(self.series_id, self.bucket_start_ns, &parts, &merged.rows);
        chunks.extend(self.stored);
        chunks.sort_by_key(|(key, _)| *key);
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::tests::columns;
    use diode_common::codec::encode_columns;
    use diode_common::record::{Quality, Value};

    fn part(sequence: u64, rows: u32) -> MergedPart {
        MergedPart { epoch: 1, sequence, sender_id: 9, rows }
    }

    fn key(sequence: u64) -> PointKey {
        PointKey { series_id: 3, bucket_start_ns: 0, epoch: 1, sequence, sender_id: 9 }
    }

    fn bucket(parts: Vec<MergedPart>, rows: SeriesColumns, stored: Vec<(PointKey, SeriesColumns)>) -> Bucket {
        let mut value = Vec::new();
        layout::encode_merged_table(&parts, &mut value);
        encode_columns(&rows, &mut value);
        let merged = MergedRows::read(&value, SeriesKey::new("a")).unwrap();
        // Not known ascending: merge_bucket_of then checks every block.
        Bucket { series_id: 3, bucket_start_ns: 0, merged: Some(merged), stored, stored_ascending: false }
    }

    #[test]
    fn a_merged_bucket_is_one_block_unless_a_stored_chunk_falls_between_its_parts() {
        let rows = columns(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        let parts = vec![part(2, 1), part(4, 2)];
        let later = (key(7), columns(&[(2, 9.0)]));
        let blocks = bucket(parts.clone(), rows.clone(), vec![later.clone()]).into_blocks().unwrap().0;
        assert_eq!(blocks, vec![rows.clone(), later.1.clone()]);
        let gap_fill = (key(3), columns(&[(3, 7.0)]));
        let blocks =
            bucket(parts.clone(), rows.clone(), vec![gap_fill.clone(), later.clone()]).into_blocks().unwrap().0;
        assert_eq!(blocks, vec![columns(&[(1, 1.0)]), gap_fill.1.clone(), columns(&[(2, 2.0), (3, 3.0)]), later.1]);
        let chunks = bucket(parts, rows, vec![gap_fill.clone()]).into_chunks().unwrap();
        let keys: Vec<u64> = chunks.iter().map(|(key, _)| key.sequence).collect();
        assert_eq!(keys, vec![2, 3, 4]);
        assert_eq!(chunks[2].1, columns(&[(2, 2.0), (3, 3.0)]));
        let earliest = (key(1), columns(&[(5, 5.0)]));
        let blocks = bucket(vec![part(2, 1)], columns(&[(1, 1.0)]), vec![earliest.clone()]).into_blocks().unwrap().0;
        assert_eq!(blocks, vec![earliest.1, columns(&[(1, 1.0)])]);
    }

    #[test]
    fn a_merged_table_that_disagrees_with_its_rows_is_refused() {
        let mut value = Vec::new();
        layout::encode_merged_table(&[part(1, 1), part(2, 1)], &mut value);
        encode_columns(&columns(&[(1, 1.0), (2, 2.0)]), &mut value);
        assert!(decode_merged(&value, SeriesKey::new("a")).is_ok());
        let mut short = Vec::new();
        layout::encode_merged_table(&[part(1, 1), part(2, 2)], &mut short);
        encode_columns(&columns(&[(1, 1.0), (2, 2.0)]), &mut short);
        assert!(
            decode_merged(&short, SeriesKey::new("a")).unwrap_err().contains("names 3 rows"),
            "the header counts the parts' rows"
        );
        let mut unordered = Vec::new();
        layout::encode_merged_table(&[part(2, 1), part(1, 1)], &mut unordered);
        encode_columns(&columns(&[(1, 1.0), (2, 2.0)]), &mut unordered);
        assert!(decode_merged(&unordered, SeriesKey::new("a")).unwrap_err().contains("key order"));
        for length in 0..value.len() {
            assert!(decode_merged(&value[..length], SeriesKey::new("a")).is_err(), "length {length}");
        }
    }

    #[test]
    fn mixed_rows_cut_into_parts_of_one_kind_are_typed_again() {
        let mut rows = columns(&[(1, 1.0)]);
        rows.push(2, Value::I64(4), Quality::GOOD);
        assert!(matches!(rows.values, Values::Mixed(_)));
        assert_eq!(slice_rows(&rows, 0..1), columns(&[(1, 1.0)]));
        assert!(matches!(slice_rows(&rows, 1..2).values, Values::I64(_)));
    }

    #[test]
    fn damaged_merged_values_are_refused_or_read_consistently_never_a_panic() {
        let mut value = Vec::new();
        layout::encode_merged_table(&[part(1, 2), part(2, 1), part(5, 1)], &mut value);
        encode_columns(&columns(&[(1, 1.0), (2, 2.0), (3, 3.0), (9, 4.0)]), &mut value);
        let mut rng = diode_common::rng::SeededRng::new(11);
        let mut read = 0;
        for _ in 0..20_000 {
            let mut damaged = value.clone();
            for _ in 0..=rng.below(3) {
                let length = damaged.len() as u64;
                match rng.below(3) {
                    0 if length > 0 => damaged[rng.below(length) as usize] ^= 1 << rng.below(8),
                    1 => damaged.truncate(rng.below(length + 1) as usize),
                    _ => damaged.insert(rng.below(length + 1) as usize, rng.below(256) as u8),
                }
            }
            if let Ok((parts, rows)) = decode_merged(&damaged, SeriesKey::new("a")) {
                read += 1;
                assert_eq!(parts.iter().map(|part| part.rows as usize).sum::<usize>(), rows.len());
                assert!(parts.windows(2).all(|pair| pair[0] < pair[1]));
                assert_eq!(merged_chunks(3, 0, &damaged, SeriesKey::new("a")).unwrap().len(), parts.len());
            }
        }
        assert!(read > 0, "some damage leaves a readable value (a changed float): the check above ran");
    }
}
