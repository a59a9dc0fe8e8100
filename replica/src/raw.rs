//! Raw reads of the points column family, for the auditor: every stored chunk in key order with
//! its key decoded, nothing merged away and nothing skipped.
//!
//! Queries read points through [`PointScan`](crate::PointScan), which merges each bucket's chunks
//! last-write-wins and so hides superseded values, and which only visits catalogued series. An
//! audit must see every chunk as stored, whatever its key: these scans give exactly that. A
//! merged bucket (see `merge`) is yielded as the chunks it holds, each under the key it had on its
//! own, interleaved by key with the chunks stored after the merge. A key that is neither a chunk
//! key (36 bytes) nor a merged bucket key (12 bytes) is yielded as such, not refused, so that the
//! scan goes on; so is a merged bucket that cannot be read (an error naming it).

use std::path::Path;

use diode_common::codec::{SeriesColumns, decode_columns};
use diode_common::record::SeriesKey;
use rocksdb::DBRawIterator;

use crate::bucket::{self, merged_chunks, merged_rows, split_into_chunks};
use crate::error::ReplicaError;
use crate::layout::{self, CF_POINTS, PointKey};
use crate::open::Replica;

/// What a chunk holds, as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkValue {
    /// A chunk stored as an entry of its own: its stored bytes, `codec::encode_columns` of the
    /// series' records of one segment in one bucket, if nothing altered them.
    Stored(Vec<u8>),
    /// A chunk inside a merged bucket: its rows, as the merged entry holds them.
    Merged(SeriesColumns),
    /// A chunk inside a merged bucket whose table reads but whose rows do not: why.
    Unreadable(String),
}

impl ChunkValue {
    /// The chunk's columns, carrying `series`; a stored chunk that does not decode is an error
    /// saying why.
    pub fn into_columns(self, series: SeriesKey) -> Result<SeriesColumns, String> {
        match self {
            ChunkValue::Stored(bytes) => decode_columns(&bytes, series).map_err(|error| error.to_string()),
            ChunkValue::Merged(mut columns) => {
                columns.key = series;
                Ok(columns)
            }
            ChunkValue::Unreadable(reason) => Err(reason),
        }
    }
}

/// One chunk of the points column family.
#[derive(Debug, Clone, PartialEq)]
pub struct RawChunk {
    /// The decoded key, or the raw key bytes when they are not a points key.
    pub key: Result<PointKey, Vec<u8>>,
    /// What it holds.
    pub value: ChunkValue,
}

/// Chunks in key order (series id, bucket, epoch, sequence, sender id); see
/// [`Replica::point_chunks`] and [`Replica::series_chunks`]. A RocksDB read error ends the scan; a
/// merged bucket that cannot be read is an error item, and the scan goes on after it.
pub struct ChunkScan<'a> {
    raw: Option<DBRawIterator<'a>>,
    path: &'a Path,
    /// The chunks of the merged bucket last read that are still to come, last first.
    parts: Vec<(PointKey, ChunkValue)>,
}

impl ChunkScan<'_> {
    /// Whether the next merged part comes before the raw entry the iterator is at.
    fn part_comes_first(&self) -> bool {
        let Some((part, _)) = self.parts.last() else { return false };
        let Some(raw) = self.raw.as_ref() else { return true };
        // A merged bucket key (or a malformed one) never sorts inside the parts' bucket after them.
        raw.key().and_then(PointKey::from_bytes).is_none_or(|stored| *part < stored)
    }
}

impl Iterator for ChunkScan<'_> {
    type Item = Result<RawChunk, ReplicaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.part_comes_first() {
                let (key, value) = self.parts.pop()?;
                return Some(Ok(RawChunk { key: Ok(key), value }));
            }
            let raw = self.raw.as_mut()?;
            if !raw.valid() {
                let status = raw.status();
                self.raw = None;
                if let Err(source) = status {
                    return Some(Err(ReplicaError::storage(self.path, "scanning points chunks", source)));
                }
                continue;
            }
            let (key, value) = (raw.key().unwrap_or_default(), raw.value().unwrap_or_default());
            if let Some((series_id, bucket_start_ns)) = layout::parse_merged_key(key) {
                let parts = merged_parts(series_id, bucket_start_ns, value);
                let what = bucket::describe_entry(key);
                raw.next();
                match parts {
                    Ok(mut parts) => {
                        parts.reverse();
                        self.parts = parts;
                        continue;
                    }
                    Err(reason) => return Some(Err(ReplicaError::corrupt(self.path, &what, reason))),
                }
            }
            let chunk = RawChunk {
                key: PointKey::from_bytes(key).ok_or_else(|| key.to_vec()),
                value: ChunkValue::Stored(value.to_vec()),
            };
            raw.next();
            return Some(Ok(chunk));
        }
    }
}

/// The chunks of a merged bucket with their keys, in key order: their rows, or (when only the
/// table reads) why the rows do not, so each chunk is still named. An error when the table does
/// not read.
fn merged_parts(series_id: u32, bucket_start_ns: i64, value: &[u8]) -> Result<Vec<(PointKey, ChunkValue)>, String> {
    let (table, _) = layout::decode_merged_table(value)?;
    Ok(match merged_rows(value, SeriesKey::new("")) {
        Ok(rows) => split_into_chunks(series_id, bucket_start_ns, &table, &rows)
            .into_iter()
            .map(|(key, columns)| (key, ChunkValue::Merged(columns)))
            .collect(),
        Err(reason) => table
            .iter()
            .map(|part| {
                let what = bucket::describe_entry(&layout::bucket_prefix(series_id, bucket_start_ns));
                (part.key(series_id, bucket_start_ns), ChunkValue::Unreadable(format!("{what} {reason}")))
            })
            .collect(),
    })
}

/// One entry of the points column family, as [`Replica::for_each_point_chunk`] visits it.
#[derive(Debug)]
pub enum PointsEntry<'a> {
    /// A chunk stored as an entry of its own, and its stored bytes.
    Chunk(PointKey, &'a [u8]),
    /// A merged bucket: the keys of the chunks it holds (in key order), or why its table cannot
    /// be read; and its stored bytes ([`Replica::merged_bucket_chunks`] decodes them).
    Merged {
        /// Its stored key (12 bytes).
        key: &'a [u8],
        /// The bucket's series.
        series_id: u32,
        /// The bucket's start.
        bucket_start_ns: i64,
        /// The keys its chunks had on their own, or why its table cannot be read.
        chunks: Result<Vec<PointKey>, &'static str>,
        /// Its stored bytes.
        value: &'a [u8],
    },
    /// A key neither apply nor a merge writes, and its value.
    Malformed(&'a [u8], &'a [u8]),
}

impl Replica {
    /// Every chunk of the points column family, in key order, from the first series id
    /// `from_series_id` on (0: all of them).
    pub fn point_chunks(&self, from_series_id: u32) -> ChunkScan<'_> {
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_POINTS));
        if from_series_id == 0 {
            raw.seek_to_first();
        } else {
            raw.seek(from_series_id.to_be_bytes());
        }
        ChunkScan { raw: Some(raw), path: &self.path, parts: Vec::new() }
    }

    /// The chunks of `series_id` in the buckets that overlap `from_ns..=to_ns_inclusive`, in key
    /// order: by bucket, then in last-write-wins order. Every key in that key range is yielded,
    /// also one that is not a points key.
    pub fn series_chunks(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> ChunkScan<'_> {
        ChunkScan {
            raw: Some(self.points_iterator(series_id, from_ns, to_ns_inclusive)),
            path: &self.path,
            parts: Vec::new(),
        }
    }

    /// The chunks a merged bucket's stored bytes hold (as [`PointsEntry::Merged`] gives them),
    /// with their keys, in key order; or why they cannot be read.
    pub fn merged_bucket_chunks(
        series_id: u32,
        bucket_start_ns: i64,
        value: &[u8],
    ) -> Result<Vec<(PointKey, SeriesColumns)>, String> {
        merged_chunks(series_id, bucket_start_ns, value, SeriesKey::new(""))
    }
}
