//! Streaming reads of the replica: the points of one series over a time range, and the audit log.
//!
//! A point scan is one seek to the first bucket of the range and a forward walk bounded by the
//! last bucket; it decodes and merges one bucket's chunks at a time into one block of columns, so
//! memory is bounded by one bucket of one series, not by the range. Aggregates fold over the
//! blocks' columns directly; everything else reads them a point at a time.

use std::path::Path;

use diode_common::codec::SeriesColumns;
use diode_common::record::SeriesKey;
use rocksdb::DBRawIterator;

use crate::bucket::{Bucket, bucket_of};
use crate::chunks::{Point, merge_bucket_of};
use crate::error::ReplicaError;
use crate::layout::{SegmentKey, decode_audit_entry};

/// The points of one series in a time range as columns, one block per stored bucket that has
/// points in range, ascending by time; see [`Replica::scan_columns`](crate::Replica::scan_columns).
pub struct ColumnScan<'a> {
    /// `None` once the scan is over (or was empty from the start).
    raw: Option<DBRawIterator<'a>>,
    path: &'a Path,
    key: SeriesKey,
    series_id: u32,
    from_ns: i64,
    to_ns: i64,
}

impl<'a> ColumnScan<'a> {
    pub(super) fn new(
        raw: Option<DBRawIterator<'a>>,
        path: &'a Path,
        key: SeriesKey,
        series_id: u32,
        from_ns: i64,
        to_ns: i64,
    ) -> ColumnScan<'a> {
        ColumnScan { raw, path, key, series_id, from_ns, to_ns }
    }

    /// Reads, decodes and merges the next bucket. `Ok(None)` at the end of the series' buckets;
    /// `Ok(Some(None))` for a bucket with no point in range.
    fn next_bucket(&mut self) -> Result<Option<Option<SeriesColumns>>, ReplicaError> {
        let Some(raw) = self.raw.as_mut() else { return Ok(None) };
        if raw.key().and_then(bucket_of).is_some_and(|(series_id, _)| series_id != self.series_id) {
            return Ok(None);
        }
        // A key apply never writes is refused rather than merged into answers (audit names it).
        let Some(bucket) = Bucket::read(raw, &self.key, self.path)? else { return Ok(None) };
        let what = bucket.describe();
        let (blocks, each_ascending) =
            bucket.into_blocks().map_err(|reason| ReplicaError::corrupt(self.path, &what, reason))?;
        Ok(Some(merge_bucket_of(blocks, self.from_ns, self.to_ns, each_ascending)))
    }
}

impl Iterator for ColumnScan<'_> {
    /// Never empty.
    type Item = Result<SeriesColumns, ReplicaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_bucket() {
                Ok(Some(Some(block))) => return Some(Ok(block)),
                Ok(Some(None)) => continue,
                Ok(None) => {
                    self.raw = None;
                    return None;
                }
                Err(error) => {
                    self.raw = None;
                    return Some(Err(error));
                }
            }
        }
    }
}

/// Blocks of columns read one point at a time.
pub struct Points<B> {
    blocks: B,
    block: Option<SeriesColumns>,
    row: usize,
}

impl<B> Points<B> {
    /// Reads `blocks` (each a run of one series' columns, in time order) as single points.
    pub fn new(blocks: B) -> Points<B> {
        Points { blocks, block: None, row: 0 }
    }
}

impl<E, B: Iterator<Item = Result<SeriesColumns, E>>> Iterator for Points<B> {
    type Item = Result<Point, E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(block) = &self.block
                && self.row < block.len()
            {
                let row = self.row;
                self.row += 1;
                let point = Point {
                    timestamp_ns: block.timestamps_ns[row],
                    value: block.value(row),
                    quality: block.qualities[row],
                };
                return Some(Ok(point));
            }
            match self.blocks.next()? {
                Ok(block) => (self.block, self.row) = (Some(block), 0),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// The points of one series in a time range, ascending by time; see [`Replica::scan`](crate::Replica::scan).
pub type PointScan<'a> = Points<ColumnScan<'a>>;

/// A segment as stored in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSegment {
    /// Where the segment sits: sender, epoch and sequence.
    pub key: SegmentKey,
    /// When the receiver applied it (receiver clock, ns since the Unix epoch).
    pub applied_at_ns: i64,
    /// The sealed segment exactly as received: header ‖ signature ‖ payload.
    pub sealed: Vec<u8>,
}

/// Stored segments in key order (sender, epoch, sequence); see [`Replica::segments`](crate::Replica::segments).
///
/// A damaged entry (a key that is not 24 bytes, or a value that is not an audit entry) is yielded
/// as [`ReplicaError::AuditEntryDamaged`], naming it, and the scan goes on with the next entry, so
/// one damaged entry never hides the ones after it. A RocksDB read error ends the scan.
pub struct SegmentScan<'a> {
    raw: Option<DBRawIterator<'a>>,
    path: &'a Path,
}

impl<'a> SegmentScan<'a> {
    pub(super) fn new(raw: DBRawIterator<'a>, path: &'a Path) -> SegmentScan<'a> {
        SegmentScan { raw: Some(raw), path }
    }

    fn read(&mut self) -> Option<Result<StoredSegment, ReplicaError>> {
        let raw = self.raw.as_mut()?;
        if !raw.valid() {
            let status = raw.status();
            self.raw = None;
            return status.err().map(|source| Err(ReplicaError::storage(self.path, "scanning the audit log", source)));
        }
        let (key_bytes, entry) = (raw.key().unwrap_or_default(), raw.value().unwrap_or_default());
        let key = SegmentKey::from_bytes(key_bytes);
        let damaged = |reason: &str| ReplicaError::AuditEntryDamaged {
            path: self.path.to_owned(),
            key,
            key_bytes: key_bytes.to_vec(),
            reason: reason.to_owned(),
        };
        let result = match (key, decode_audit_entry(entry)) {
            (Some(key), Ok((applied_at_ns, sealed))) => {
                Ok(StoredSegment { key, applied_at_ns, sealed: sealed.to_vec() })
            }
            (None, _) => Err(damaged("its key is not 24 bytes")),
            (Some(_), Err(reason)) => Err(damaged(reason)),
        };
        raw.next();
        Some(result)
    }
}

impl Iterator for SegmentScan<'_> {
    type Item = Result<StoredSegment, ReplicaError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read()
    }
}
