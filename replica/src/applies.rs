//! What sinks read: the apply log (every applied segment in apply order) with each segment's
//! points as they stand now, and the sinks' durable cursors.
//!
//! A sink follows the apply log from its cursor. [`Replica::read_applied`] gives, for each applied
//! segment, the points it wrote that still win last-write-wins: a point that a chunk later in
//! last-write-wins order (a higher epoch, sequence or sender at the same bucket) overrides is left
//! out, because that chunk's segment exports (or already exported) the winning value. A sink that
//! upserts every point it is given, in apply order, therefore ends equal to the replica, and a
//! resent or corrected value reaches it as an update of the same (series, time), never a second row.

use std::collections::HashMap;

use diode_common::codec::SeriesColumns;
use diode_common::seal;
use rocksdb::WriteBatch;

use crate::bucket::{self, Bucket};
use crate::chunks;
use crate::error::{ReplicaError, describe_segment};
use crate::layout::{
    self, CF_META, CF_POINTS, CF_SEGMENTS, MAX_SINK_NAME_BYTES, POINT_BUCKET_PREFIX_LENGTH, PointKey, SegmentKey,
};
use crate::open::Replica;

/// One applied segment as a sink exports it.
#[derive(Debug, Clone)]
pub struct AppliedSegment {
    /// Its place in the apply log: 1 for the first segment the replica applied.
    pub apply_number: u64,
    /// Which segment it was: sender, epoch and sequence.
    pub segment: SegmentKey,
    /// When the receiver applied it (ns since the Unix epoch).
    pub applied_at_ns: i64,
    /// Per series it wrote (ascending series ids): the points that still win, ascending by time,
    /// one per timestamp. A series whose points were all overridden since is left out.
    pub series: Vec<AppliedSeries>,
}

impl AppliedSegment {
    /// Points to export.
    pub fn point_count(&self) -> usize {
        self.series.iter().map(|series| series.columns.len()).sum()
    }
}

/// The exported points of one series of an applied segment.
#[derive(Debug, Clone)]
pub struct AppliedSeries {
    /// The replica's id of the series ([`Replica::series_info`] gives its name and tags).
    pub series_id: u32,
    /// Its winning points: timestamps, values and qualities, ascending by time.
    pub columns: SeriesColumns,
}

/// A sink's durable position in the apply log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkCursor {
    /// Every segment up to this apply number is exported (0: none yet).
    pub apply_number: u64,
    /// When the cursor last moved (ns since the Unix epoch).
    pub updated_at_ns: i64,
}

impl Replica {
    /// The apply number of the last applied segment (0 before the first): the end of the apply log.
    pub fn last_apply_number(&self) -> u64 {
        self.state.counters.segments_applied
    }

    /// Applied segments after apply number `after`, in apply order: at most `max_segments`, and no
    /// more once `max_points` points are gathered (always at least one segment when one exists).
    /// Reads one consistent view: nothing applied meanwhile can change what one call returns.
    pub fn read_applied(
        &self,
        after: u64,
        max_segments: usize,
        max_points: usize,
    ) -> Result<Vec<AppliedSegment>, ReplicaError> {
        let mut applied = Vec::new();
        let mut points = 0usize;
        let mut apply_number = after;
        let mut winners = WinnersCache::default();
        while apply_number < self.last_apply_number() && applied.len() < max_segments.max(1) && points < max_points {
            apply_number += 1;
            let segment = self.read_one_applied(apply_number, &mut winners)?;
            points += segment.point_count();
            applied.push(segment);
        }
        Ok(applied)
    }

    fn read_one_applied(&self, apply_number: u64, winners: &mut WinnersCache) -> Result<AppliedSegment, ReplicaError> {
        let what = || format!("apply log entry {apply_number}");
        let entry = self
            .db
            .get_pinned_cf(self.cf(CF_META), layout::apply_log_key(apply_number))
            .map_err(|source| ReplicaError::storage(&self.path, "reading the apply log", source))?
            .ok_or_else(|| ReplicaError::corrupt(&self.path, &what(), "is missing"))?;
        let key = layout::decode_apply_log_entry(&entry)
            .map_err(|reason| ReplicaError::corrupt(&self.path, &what(), reason))?;
        let stored = self.stored_segment(key)?.ok_or_else(|| {
            ReplicaError::corrupt(&self.path, &describe_segment(key), "is in the apply log but not in the audit log")
        })?;
        let damaged = |error: &dyn std::fmt::Display| ReplicaError::corrupt(&self.path, &describe_segment(key), error);
        let sealed = seal::parse(&stored.sealed).map_err(|error| damaged(&error))?;
        let payload = seal::decode_verified(&sealed).map_err(|error| damaged(&error))?;
        let mut by_id: Vec<(u32, usize)> = Vec::with_capacity(payload.len());
        for (index, columns) in payload.iter().enumerate().filter(|(_, columns)| !columns.is_empty()) {
            let id = self
                .series_id(&columns.key)
                .ok_or_else(|| damaged(&format_args!("writes series {} which is not in the catalog", columns.key)))?;
            by_id.push((id, index));
        }
        by_id.sort_unstable();
        let mut series = Vec::with_capacity(by_id.len());
        let mut parts: Vec<&SeriesColumns> = Vec::new();
        for group in by_id.chunk_by(|a, b| a.0 == b.0) {
            parts.clear();
            parts.extend(group.iter().map(|&(_, index)| &payload[index]));
            if let Some(columns) = self.winning_points(group[0].0, &parts, key, winners)? {
                series.push(AppliedSeries { series_id: group[0].0, columns });
            }
        }
        Ok(AppliedSegment { apply_number, segment: key, applied_at_ns: stored.applied_at_ns, series })
    }

    /// The records `parts` (one series of one segment) wrote that still win: split into buckets
    /// as apply stored them, each bucket sorted and deduplicated (the later record wins), without
    /// the timestamps a later chunk of the same bucket holds.
    fn winning_points(
        &self,
        series_id: u32,
        parts: &[&SeriesColumns],
        segment: SegmentKey,
        winners: &mut WinnersCache,
    ) -> Result<Option<SeriesColumns>, ReplicaError> {
        let mut buckets: Vec<(i64, SeriesColumns)> = Vec::new();
        chunks::for_each_bucket(parts, |bucket_start_ns, columns| buckets.push((bucket_start_ns, columns.clone())));
        let mut merged: Option<SeriesColumns> = None;
        for (bucket_start_ns, columns) in buckets {
            let own = PointKey {
                series_id,
                bucket_start_ns,
                epoch: segment.epoch,
                sequence: segment.sequence,
                sender_id: segment.sender_id,
            };
            let Some(mut sorted) = chunks::merge_bucket(vec![columns], i64::MIN, i64::MAX) else { continue };
            if self.has_later_chunk(own)? {
                let bucket = winners.bucket(self, own)?;
                let own_index = bucket.index_of(own);
                sorted = chunks::keep_rows_where(&sorted, |timestamp_ns| {
                    own_index.is_some() && bucket.winner.get(&timestamp_ns) == own_index.as_ref()
                });
            }
            if sorted.is_empty() {
                continue;
            }
            match merged.as_mut() {
                None => merged = Some(sorted),
                Some(merged) => chunks::append_all(merged, &sorted),
            }
        }
        Ok(merged)
    }

    /// Whether a chunk after `own` (later in last-write-wins order) exists in its bucket. Usually
    /// not, when a sink keeps up: one seek that finds the next bucket or series. Once the bucket
    /// is merged, `own` is a part of its merged entry.
    fn has_later_chunk(&self, own: PointKey) -> Result<bool, ReplicaError> {
        let storage = |source| ReplicaError::storage(&self.path, "reading points", source);
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_POINTS));
        let own_key = own.to_bytes();
        let prefix = &own_key[..POINT_BUCKET_PREFIX_LENGTH];
        raw.seek(own_key);
        let found = raw.key() == Some(own_key.as_slice());
        if found {
            raw.next();
        }
        // Either the entry after `own`, or (not stored on its own) the first stored chunk after it.
        let stored_later = raw.key().is_some_and(|key| key.starts_with(prefix));
        raw.status().map_err(storage)?;
        if found && stored_later {
            return Ok(true);
        }
        // The bucket's merged entry (which sorts before every chunk key) may hold `own`, or a part
        // after it when `own` filled a gap after the merge.
        let merged = self.db.get_pinned_cf(self.cf(CF_POINTS), prefix).map_err(storage)?;
        let parts = match merged.as_deref().map(layout::decode_merged_table) {
            Some(Ok((parts, _))) => parts,
            Some(Err(reason)) => {
                return Err(ReplicaError::corrupt(&self.path, &bucket::describe_entry(prefix), reason));
            }
            None => Vec::new(),
        };
        let key_of = |part: &layout::MergedPart| part.key(own.series_id, own.bucket_start_ns);
        if !found && !parts.iter().any(|part| key_of(part) == own) {
            let what = format!("the chunk of series {} bucket {}", own.series_id, own.bucket_start_ns);
            return Err(ReplicaError::corrupt(&self.path, &what, "is missing though its segment is applied"));
        }
        Ok(stored_later || parts.iter().any(|part| key_of(part) > own))
    }

    /// Which chunk wins each timestamp of one bucket (the last in key order holding it).
    fn bucket_winners(&self, own: PointKey) -> Result<BucketWinners, ReplicaError> {
        let mut raw = self.points_iterator(own.series_id, own.bucket_start_ns, own.bucket_start_ns);
        let mut bucket = BucketWinners::default();
        // Only the timestamps are used; the key is a placeholder.
        let placeholder = diode_common::record::SeriesKey::new("chunk");
        let Some(stored) = Bucket::read(&mut raw, &placeholder, &self.path)? else { return Ok(bucket) };
        let what = stored.describe();
        let chunks = stored.into_chunks().map_err(|reason| ReplicaError::corrupt(&self.path, &what, reason))?;
        for (key, chunk) in chunks {
            let index = bucket.chunks.len() as u32;
            bucket.chunks.push((key.epoch, key.sequence, key.sender_id));
            bucket.winner.reserve(chunk.timestamps_ns.len());
            for &timestamp_ns in &chunk.timestamps_ns {
                bucket.winner.insert(timestamp_ns, index);
            }
        }
        Ok(bucket)
    }

    /// The cursor of sink `name`, if it ever stored one.
    pub fn sink_cursor(&self, name: &str) -> Result<Option<SinkCursor>, ReplicaError> {
        let entry = self
            .db
            .get_pinned_cf(self.cf(CF_META), layout::sink_cursor_key(name))
            .map_err(|source| ReplicaError::storage(&self.path, "reading a sink cursor", source))?;
        let Some(entry) = entry else { return Ok(None) };
        let (apply_number, updated_at_ns) = layout::decode_sink_cursor(&entry)
            .map_err(|reason| ReplicaError::corrupt(&self.path, &format!("the cursor of sink {name:?}"), reason))?;
        Ok(Some(SinkCursor { apply_number, updated_at_ns }))
    }

    /// Every stored sink cursor, by name.
    pub fn sink_cursors(&self) -> Result<Vec<(String, SinkCursor)>, ReplicaError> {
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_META));
        raw.seek([layout::META_SINK_CURSOR]);
        let mut cursors = Vec::new();
        while let (Some(key), Some(value)) = (raw.key(), raw.value()) {
            if key.first() != Some(&layout::META_SINK_CURSOR) {
                break;
            }
            let name = layout::parse_sink_cursor_key(key)
                .ok_or_else(|| ReplicaError::corrupt(&self.path, "a sink cursor key", "is not a sink name"))?;
            let (apply_number, updated_at_ns) = layout::decode_sink_cursor(value)
                .map_err(|reason| ReplicaError::corrupt(&self.path, &format!("the cursor of sink {name:?}"), reason))?;
            cursors.push((name.to_owned(), SinkCursor { apply_number, updated_at_ns }));
            raw.next();
        }
        raw.status().map_err(|source| ReplicaError::storage(&self.path, "reading the sink cursors", source))?;
        Ok(cursors)
    }

    /// Stores the cursor of sink `name` (1 to [`MAX_SINK_NAME_BYTES`] bytes). Takes `&self`: a
    /// sink writes its cursor beside apply (RocksDB orders the writes) without stopping it.
    pub fn set_sink_cursor(&self, name: &str, cursor: SinkCursor) -> Result<(), ReplicaError> {
        let sync = self.require_writable()?;
        if name.is_empty() || name.len() > MAX_SINK_NAME_BYTES {
            return Err(ReplicaError::corrupt(&self.path, &format!("sink name {name:?}"), "is empty or too long"));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META),
            layout::sink_cursor_key(name),
            layout::encode_sink_cursor(cursor.apply_number, cursor.updated_at_ns),
        );
        self.write(batch, sync, "storing a sink cursor")
    }

    /// Gives a replica written before the apply log existed one: every stored segment, numbered
    /// 1, 2, … in key order (sender, epoch, sequence), so sinks can backfill it. Does nothing when
    /// the log already ends at the last apply number.
    pub(crate) fn complete_apply_log(&self) -> Result<(), ReplicaError> {
        let last = self.last_apply_number();
        if last == 0 || self.apply_log_has(last)? {
            return Ok(());
        }
        let sync = self.require_writable()?;
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_SEGMENTS));
        raw.seek_to_first();
        let (mut number, mut batch) = (0u64, WriteBatch::default());
        while let Some(key) = raw.key() {
            let segment = SegmentKey::from_bytes(key)
                .ok_or_else(|| ReplicaError::corrupt(&self.path, "a segments key", "is not 24 bytes"))?;
            number += 1;
            batch.put_cf(self.cf(CF_META), layout::apply_log_key(number), layout::encode_apply_log_entry(segment));
            if batch.len() >= 10_000 {
                self.write(std::mem::take(&mut batch), sync, "writing the apply log")?;
            }
            raw.next();
        }
        raw.status().map_err(|source| ReplicaError::storage(&self.path, "reading the audit log", source))?;
        if number != last {
            return Err(ReplicaError::corrupt(
                &self.path,
                "the audit log",
                format!("holds {number} segments but the counters say {last} were applied"),
            ));
        }
        self.write(batch, sync, "writing the apply log")
    }

    fn apply_log_has(&self, apply_number: u64) -> Result<bool, ReplicaError> {
        self.db
            .get_pinned_cf(self.cf(CF_META), layout::apply_log_key(apply_number))
            .map(|entry| entry.is_some())
            .map_err(|source| ReplicaError::storage(&self.path, "reading the apply log", source))
    }
}

/// Most timestamps [`WinnersCache`] holds before it starts over: bounds a sink's memory however
/// large the buckets it backfills.
const WINNERS_BUDGET: usize = 4_000_000;

/// Winners of the buckets one [`Replica::read_applied`] call met, so a batch that backfills many
/// segments of one bucket reads and decodes that bucket once, not once per segment.
#[derive(Default)]
struct WinnersCache {
    buckets: HashMap<(u32, i64), BucketWinners>,
    timestamps: usize,
}

impl WinnersCache {
    fn bucket(&mut self, replica: &Replica, own: PointKey) -> Result<&BucketWinners, ReplicaError> {
        let key = (own.series_id, own.bucket_start_ns);
        if !self.buckets.contains_key(&key) {
            let bucket = replica.bucket_winners(own)?;
            if self.timestamps + bucket.winner.len() > WINNERS_BUDGET {
                self.buckets.clear();
                self.timestamps = 0;
            }
            self.timestamps += bucket.winner.len();
            self.buckets.insert(key, bucket);
        }
        Ok(&self.buckets[&key])
    }
}

/// One bucket's chunks in key order (epoch, sequence, sender) and, per timestamp, the index of
/// the last chunk holding it.
#[derive(Default)]
struct BucketWinners {
    chunks: Vec<(u64, u64, u64)>,
    /// Hashed with foldhash: a sink's read looks up every point of a bucket with later chunks.
    winner: foldhash::HashMap<i64, u32>,
}

impl BucketWinners {
    /// The index of `own`'s chunk.
    fn index_of(&self, own: PointKey) -> Option<u32> {
        self.chunks.binary_search(&(own.epoch, own.sequence, own.sender_id)).ok().map(|index| index as u32)
    }
}
