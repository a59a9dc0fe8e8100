//! Raw reads of the points column family, for the auditor: every stored chunk in key order with
//! its key decoded, nothing merged and nothing skipped.
//!
//! Queries read points through [`PointScan`](crate::PointScan), which merges each bucket's chunks
//! last-write-wins and so hides superseded values, and which only visits catalogued series. An
//! audit must see every chunk as stored, whatever its key: these scans give exactly that. A key
//! that is not a points key (36 bytes) is yielded as such, not refused, so that the scan goes on.

use std::path::Path;

use rocksdb::DBRawIterator;

use crate::error::ReplicaError;
use crate::layout::{CF_POINTS, PointKey};
use crate::open::Replica;

/// One stored chunk of the points column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChunk {
    /// The decoded key, or the raw key bytes when they are not a points key.
    pub key: Result<PointKey, Vec<u8>>,
    /// The stored value: `codec::encode_columns` of the series' records of one segment in one
    /// bucket, if nothing altered it.
    pub value: Vec<u8>,
}

/// Chunks in key order (series id, bucket, epoch, sequence, sender id); see
/// [`Replica::point_chunks`] and [`Replica::series_chunks`]. A RocksDB read error ends the scan.
pub struct ChunkScan<'a> {
    raw: Option<DBRawIterator<'a>>,
    path: &'a Path,
}

impl Iterator for ChunkScan<'_> {
    type Item = Result<RawChunk, ReplicaError>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.raw.as_mut()?;
        if !raw.valid() {
            let status = raw.status();
            self.raw = None;
            return status.err().map(|source| Err(ReplicaError::storage(self.path, "scanning points chunks", source)));
        }
        let (key, value) = (raw.key().unwrap_or_default(), raw.value().unwrap_or_default());
        let chunk = RawChunk { key: PointKey::from_bytes(key).ok_or_else(|| key.to_vec()), value: value.to_vec() };
        raw.next();
        Some(Ok(chunk))
    }
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
        ChunkScan { raw: Some(raw), path: &self.path }
    }

    /// The chunks of `series_id` in the buckets that overlap `from_ns..=to_ns_inclusive`, in key
    /// order: by bucket, then in last-write-wins order. Every key in that key range is yielded,
    /// also one that is not a points key.
    pub fn series_chunks(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> ChunkScan<'_> {
        ChunkScan { raw: Some(self.points_iterator(series_id, from_ns, to_ns_inclusive)), path: &self.path }
    }
}
