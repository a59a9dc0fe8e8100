//! Reads: streams and gaps, the series catalog, points over a time range, the audit log and the
//! counters. Catalog, streams and gaps come from memory; points and audit entries are read from
//! RocksDB as they are iterated (see `scan`).

use std::ops::RangeInclusive;

use diode_common::codec::SeriesColumns;
use diode_common::record::SeriesKey;
use rocksdb::{DBRawIterator, ReadOptions};

use crate::chunks::merge_bucket_blocks;
use crate::error::{ReplicaError, describe_segment};
use crate::layout::{
    self, BeaconSummary, CF_POINTS, CF_SEGMENTS, Counters, STREAM_ANNOUNCED_BY_BEACON, STREAM_SEEN_IN_SEGMENT,
    SegmentKey,
};
use crate::open::Replica;
use crate::raw::PointsEntry;
use crate::scan::{ColumnScan, PointScan, Points, SegmentScan, StoredSegment};
use crate::state::SeriesInfo;

/// One missing range of one stream: what an operator asks the sender to resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gap {
    /// The sender whose segments are missing.
    pub sender_id: u64,
    /// The epoch they belong to.
    pub epoch: u64,
    /// The first missing sequence.
    pub first_sequence: u64,
    /// The last missing sequence (inclusive; `>= first_sequence`).
    pub last_sequence: u64,
}

impl Gap {
    /// Number of missing segments (saturating).
    pub fn segment_count(&self) -> u64 {
        (self.last_sequence - self.first_sequence).saturating_add(1)
    }
}

/// State of one `(sender id, epoch)` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// The sender of the stream.
    pub sender_id: u64,
    /// The stream's epoch.
    pub epoch: u64,
    /// Every sequence up to this one is applied.
    pub contiguous_through: u64,
    /// The highest sequence applied (0: none yet).
    pub highest_applied: u64,
    /// Highest sequence applied or announced by a beacon.
    pub highest_known: u64,
    /// Sequences in `1..=highest_known` not applied, ascending.
    pub missing: Vec<RangeInclusive<u64>>,
    /// Number of sequences in `missing`, summed over its ranges.
    pub missing_count: u64,
    /// When the receiver first heard of this epoch (segment applied or beacon received).
    pub first_seen_at_ns: i64,
    /// A beacon has named this epoch (as its own, or as the one before it).
    pub announced_by_beacon: bool,
    /// At least one segment of this epoch was applied.
    pub seen_in_segment: bool,
    /// The sender's latest beacon, whatever epoch it reports.
    pub last_beacon: Option<BeaconSummary>,
}

impl Replica {
    /// Every stream, by sender id then epoch.
    pub fn streams(&self) -> Vec<StreamStatus> {
        self.state
            .streams
            .iter()
            .map(|(&(sender_id, epoch), stream)| {
                let tracker = &stream.tracker;
                let missing = tracker.missing_ranges();
                StreamStatus {
                    sender_id,
                    epoch,
                    contiguous_through: tracker.contiguous_through(),
                    highest_applied: tracker.highest_applied(),
                    highest_known: tracker.highest_known(),
                    missing_count: missing.iter().fold(0u64, |total, range| {
                        total.saturating_add((range.end() - range.start()).saturating_add(1))
                    }),
                    missing,
                    first_seen_at_ns: stream.first_seen_at_ns,
                    announced_by_beacon: stream.flags & STREAM_ANNOUNCED_BY_BEACON != 0,
                    seen_in_segment: stream.flags & STREAM_SEEN_IN_SEGMENT != 0,
                    last_beacon: self.state.beacons.get(&sender_id).cloned(),
                }
            })
            .collect()
    }

    /// Every missing range of every stream, by sender, epoch and sequence.
    pub fn gaps(&self) -> Vec<Gap> {
        self.state
            .streams
            .iter()
            .flat_map(|(&(sender_id, epoch), stream)| {
                stream.tracker.missing_ranges().into_iter().map(move |range| Gap {
                    sender_id,
                    epoch,
                    first_sequence: *range.start(),
                    last_sequence: *range.end(),
                })
            })
            .collect()
    }

    /// Whether the segment at `key` is applied (from memory; no read).
    pub fn is_applied(&self, key: SegmentKey) -> bool {
        self.state.streams.get(&(key.sender_id, key.epoch)).is_some_and(|s| s.tracker.is_applied(key.sequence))
    }

    /// The catalog, by id.
    pub fn series_list(&self) -> Vec<SeriesInfo> {
        (0..self.state.catalog.entries.len() as u32).filter_map(|id| self.state.catalog.info(id)).collect()
    }

    /// The catalog entry of `series_id`; `None` when the replica has no such id.
    pub fn series_info(&self, series_id: u32) -> Option<SeriesInfo> {
        self.state.catalog.info(series_id)
    }

    /// The replica's id of the series named `key` (name and tags); `None` when no segment has
    /// written it.
    pub fn series_id(&self, key: &SeriesKey) -> Option<u32> {
        self.state.catalog.ids.get(key).copied()
    }

    /// Series in the catalog (at most [`MAX_SERIES`](crate::MAX_SERIES)); ids run from 0 to this,
    /// exclusive.
    pub fn series_count(&self) -> u32 {
        self.state.catalog.entries.len() as u32
    }

    /// The points of `series_id` with `from_ns <= timestamp <= to_ns_inclusive`, ascending by time,
    /// one per timestamp: duplicates resolve last-write-wins, "last" being the highest (epoch,
    /// sequence) (ties between senders: the higher sender id) and within one segment the later
    /// record. Streams one bucket at a time. An unknown series or an empty range yields nothing.
    pub fn scan(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> PointScan<'_> {
        Points::new(self.scan_columns(series_id, from_ns, to_ns_inclusive))
    }

    /// The same points as [`scan`](Self::scan), as columns: one non-empty block per one-hour
    /// bucket, ascending.
    pub fn scan_columns(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> ColumnScan<'_> {
        let key = match self.state.catalog.entries.get(series_id as usize) {
            Some(entry) if from_ns <= to_ns_inclusive => entry.key.clone(),
            _ => return ColumnScan::new(None, &self.path, SeriesKey::new(""), series_id, from_ns, to_ns_inclusive),
        };
        let raw = self.points_iterator(series_id, from_ns, to_ns_inclusive);
        ColumnScan::new(Some(raw), &self.path, key, series_id, from_ns, to_ns_inclusive)
    }

    /// Merges the decoded chunks of one bucket of one series, given in key order (as
    /// [`series_chunks`](Self::series_chunks) yields them), exactly as [`scan_columns`](Self::scan_columns)
    /// does: the points with `from_ns <= timestamp <= to_ns_inclusive`, ascending, one per
    /// timestamp, last write wins, as blocks of columns in time order that together hold them
    /// (none when no point is in range). When the chunks were applied in order with no duplicates,
    /// each chunk's rows in range are a block of their own and nothing is copied; else there is one
    /// merged block. For a reader that needs the chunks themselves as well as the points they show
    /// (the audit), so reads and decodes them once.
    pub fn merge_chunks_blocks(chunks: Vec<SeriesColumns>, from_ns: i64, to_ns_inclusive: i64) -> Vec<SeriesColumns> {
        merge_bucket_blocks(chunks, from_ns, to_ns_inclusive)
    }

    /// A raw iterator over the points keys of `series_id` in the buckets that overlap
    /// `from_ns..=to_ns_inclusive`: positioned at the first, bounded after the last.
    pub(crate) fn points_iterator(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> DBRawIterator<'_> {
        let mut read_options = ReadOptions::default();
        if let Some(bound) = layout::scan_upper_bound(series_id, layout::bucket_start(to_ns_inclusive)) {
            read_options.set_iterate_upper_bound(bound);
        }
        let mut raw = self.db.raw_iterator_cf_opt(self.cf(CF_POINTS), read_options);
        raw.seek(layout::bucket_prefix(series_id, layout::bucket_start(from_ns)));
        raw
    }

    /// Calls `visit` for every entry of the points column family, in key order, without copying
    /// keys or values: a chunk stored on its own, a merged bucket (with the keys of the chunks it
    /// holds, read from its table alone), or a key neither apply nor a merge writes. For a reader
    /// that walks every chunk and looks at few values (the audit's inventory). Stops at the first
    /// RocksDB read error.
    pub fn for_each_point_chunk(&self, mut visit: impl FnMut(PointsEntry<'_>)) -> Result<(), ReplicaError> {
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_POINTS));
        raw.seek_to_first();
        while raw.valid() {
            let (key, value) = (raw.key().unwrap_or_default(), raw.value().unwrap_or_default());
            if let Some(chunk) = layout::PointKey::from_bytes(key) {
                visit(PointsEntry::Chunk(chunk, value));
            } else if let Some((series_id, bucket_start_ns)) = layout::parse_merged_key(key) {
                let chunks = layout::decode_merged_table(value)
                    .map(|(parts, _)| parts.iter().map(|part| part.key(series_id, bucket_start_ns)).collect());
                visit(PointsEntry::Merged { key, series_id, bucket_start_ns, chunks, value });
            } else {
                visit(PointsEntry::Malformed(key, value));
            }
            raw.next();
        }
        raw.status().map_err(|source| ReplicaError::storage(&self.path, "scanning points chunks", source))
    }

    /// The sealed bytes (header ‖ signature ‖ payload) of a stored segment.
    pub fn segment_bytes(&self, sender_id: u64, epoch: u64, sequence: u64) -> Result<Option<Vec<u8>>, ReplicaError> {
        Ok(self.stored_segment(SegmentKey { sender_id, epoch, sequence })?.map(|stored| stored.sealed))
    }

    /// A stored segment with its audit metadata.
    pub fn stored_segment(&self, key: SegmentKey) -> Result<Option<StoredSegment>, ReplicaError> {
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_SEGMENTS), key.to_bytes())
            .map_err(|source| ReplicaError::storage(&self.path, "reading the audit log", source))?;
        let Some(entry) = stored else { return Ok(None) };
        let (applied_at_ns, sealed) = layout::decode_audit_entry(&entry)
            .map_err(|reason| ReplicaError::corrupt(&self.path, &describe_segment(key), reason))?;
        Ok(Some(StoredSegment { key, applied_at_ns, sealed: sealed.to_vec() }))
    }

    /// Stored segments from `from` on, in key order (sender id, epoch, sequence): the auditor's
    /// walk. Use [`SegmentKey::FIRST`] for the whole log.
    pub fn segments(&self, from: SegmentKey) -> SegmentScan<'_> {
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_SEGMENTS));
        raw.seek(from.to_bytes());
        SegmentScan::new(raw, &self.path)
    }

    /// Stored segments of one stream, ascending by sequence.
    pub fn segments_of_stream(&self, sender_id: u64, epoch: u64) -> SegmentScan<'_> {
        let mut read_options = ReadOptions::default();
        let next_stream = match epoch.checked_add(1) {
            Some(next_epoch) => Some(SegmentKey { sender_id, epoch: next_epoch, sequence: 0 }),
            None => {
                sender_id.checked_add(1).map(|next_sender| SegmentKey { sender_id: next_sender, epoch: 0, sequence: 0 })
            }
        };
        if let Some(bound) = next_stream {
            read_options.set_iterate_upper_bound(bound.to_bytes().to_vec());
        }
        let mut raw = self.db.raw_iterator_cf_opt(self.cf(CF_SEGMENTS), read_options);
        raw.seek(SegmentKey { sender_id, epoch, sequence: 0 }.to_bytes());
        SegmentScan::new(raw, &self.path)
    }

    /// Sum of the catalog's point counts (an estimate: see [`SeriesInfo::point_count`]).
    pub fn total_points(&self) -> u64 {
        self.state.catalog.entries.iter().map(|entry| entry.statistics.point_count).sum()
    }

    /// The replica-wide counters as of the last apply or beacon.
    pub fn counters(&self) -> Counters {
        self.state.counters
    }
}
