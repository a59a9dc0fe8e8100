//! Merging a closed hour: once no more points are expected in a bucket, its chunks (one per
//! segment that wrote into it: one per second for a live plant) become one entry.
//!
//! Apply writes one chunk per series, bucket and segment, which is what makes apply cheap; for a
//! plant sealing a segment every second that is one RocksDB entry (a 36-byte key and a chunk
//! header) per point. When a bucket has closed, [`Replica::merge_closed_buckets`] rewrites its
//! chunks as one merged entry keyed by the bucket prefix, which holds every chunk's rows (the
//! superseded ones too) in key order with a table of the parts (segment and row count). Nothing
//! is lost: readers split the parts out again (`bucket`), so last-write-wins, the sinks' reads and
//! the audit's check of every chunk against its signed segment see exactly the chunks apply
//! wrote. A segment applied into a merged bucket later (a filled gap, a correction) is stored as
//! a chunk of its own, interleaved by key, and marks the bucket to be merged again.
//!
//! Which buckets wait is kept in `meta` (`'M'` entries, written in the apply batch that first
//! writes into the bucket, deleted in the merge batch), so a restart forgets none. A bucket is
//! closed when the newest data time the replica holds is [`CLOSE_AFTER_NS`] past its end and no
//! segment has written into it for a quiet time the caller gives (by the receiver's clock, as
//! applies stamp it: a backfill or a resent gap flowing through an old hour merges it once, not
//! once per segment). Each merge is one atomic batch.

use diode_common::codec::{ChunkEncoder, SeriesColumns};
use diode_common::record::SeriesKey;
use rocksdb::WriteBatch;

use crate::bucket::Bucket;
use crate::error::ReplicaError;
use crate::layout::{self, BUCKET_NS, CF_META, CF_POINTS, MergedPart, PointKey};
use crate::open::Replica;

/// How far the newest data time must be past a bucket's end before it is merged: late points of
/// a live plant arrive within seconds, a resent gap within minutes.
pub const CLOSE_AFTER_NS: i64 = 10 * 60 * 1_000_000_000;
/// Most rows one merged entry holds (an hour at about 70 Hz): a bucket with more is a fast series
/// whose chunks hold tens of points each already, and merging it would hold apply up for long.
const MAX_MERGED_ROWS: usize = 250_000;

/// What one call of [`Replica::merge_closed_buckets`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// Buckets rewritten as one merged entry.
    pub buckets_merged: u64,
    /// Chunks those buckets held before (each part of an earlier merge counted).
    pub chunks_merged: u64,
    /// Rows rewritten.
    pub rows: u64,
    /// Buckets that could not be read (a damaged entry: the audit names it) and were left as
    /// they are.
    pub buckets_unreadable: u64,
    /// Why the last unreadable bucket could not be read, for the log.
    pub unreadable: Option<String>,
}

impl Replica {
    /// Merges closed buckets until about `row_budget` rows have been rewritten: those whose hour
    /// ended [`CLOSE_AFTER_NS`] before the newest data time held and that no apply has written
    /// into for `quiet_ns` before `now_ns` (the clock applies are stamped with). Call it beside
    /// apply (the receiver does after each apply and when idle). Only a failed write is an error;
    /// a bucket that cannot be read is counted and left alone.
    pub fn merge_closed_buckets(
        &mut self,
        row_budget: usize,
        now_ns: i64,
        quiet_ns: i64,
    ) -> Result<MergeReport, ReplicaError> {
        // Every bucket holds a row at least: no more than `row_budget` can be merged in one call.
        let closed: Vec<(i64, u32)> = self.closed_buckets(now_ns, quiet_ns).take(row_budget).collect();
        let report = self.merge_buckets(closed, row_budget)?;
        if self.closed_buckets(now_ns, quiet_ns).next().is_none() {
            self.settle()?;
        }
        Ok(report)
    }

    /// The buckets [`Replica::merge_closed_buckets`] would merge now, oldest hour first.
    fn closed_buckets(&self, now_ns: i64, quiet_ns: i64) -> impl Iterator<Item = (i64, u32)> + '_ {
        let high_water = self.state.pending.newest_ns;
        self.state
            .pending
            .buckets
            .iter()
            .take_while(move |((bucket_start_ns, _), _)| {
                bucket_start_ns.saturating_add(BUCKET_NS).saturating_add(CLOSE_AFTER_NS) <= high_water
            })
            .filter(move |(_, last_written_ns)| last_written_ns.saturating_add(quiet_ns) <= now_ns)
            .map(|(bucket, _)| *bucket)
    }

    /// Once the buckets of a closing hour are all merged, the replica settles: the statistics
    /// deltas are folded now rather than left standing (up to a checkpoint's worth: a live plant's
    /// deltas hold about as many bytes per point as its merged points) until the next checkpoint
    /// apply writes. Once per closing, not once per merge turn: a turn's checkpoint rewrites the
    /// `'S'` entry of every series applied since the last, and a live hour of 5,000 series closes
    /// in hundreds of turns.
    fn settle(&mut self) -> Result<(), ReplicaError> {
        if self.state.pending.merged_since_settled {
            let sync = self.require_writable()?;
            self.checkpoint_statistics(sync)?;
            self.state.pending.merged_since_settled = false;
        }
        Ok(())
    }

    /// Merges every bucket waiting to be merged, closed or not: for measurements and for an
    /// operator who wants a quiet replica compact now. A bucket merged early and written again is
    /// merged again later, so this is always safe.
    pub fn merge_all_buckets(&mut self) -> Result<MergeReport, ReplicaError> {
        let all: Vec<(i64, u32)> = self.state.pending.buckets.keys().copied().collect();
        let report = self.merge_buckets(all, usize::MAX)?;
        self.settle()?;
        Ok(report)
    }

    /// How many statistics deltas wait for a checkpoint (one per apply since the last; merging a
    /// closed hour writes one).
    pub fn statistics_deltas_pending(&self) -> usize {
        self.state.journal.pending_deltas.len()
    }

    /// How many buckets wait to be merged.
    pub fn buckets_waiting_to_merge(&self) -> usize {
        self.state.pending.buckets.len()
    }

    fn merge_buckets(&mut self, buckets: Vec<(i64, u32)>, row_budget: usize) -> Result<MergeReport, ReplicaError> {
        let sync = self.require_writable()?;
        let mut report = MergeReport::default();
        let mut rows_done = 0usize;
        let mut encoder = ChunkEncoder::default();
        for (bucket_start_ns, series_id) in buckets {
            if rows_done >= row_budget {
                break;
            }
            let mut batch = WriteBatch::default();
            batch.delete_cf(self.cf(CF_META), layout::pending_merge_key(series_id, bucket_start_ns));
            match self.stage_merge(&mut batch, &mut encoder, series_id, bucket_start_ns) {
                Ok(Some((chunks, rows))) => {
                    report.buckets_merged += 1;
                    report.chunks_merged += chunks as u64;
                    report.rows += rows as u64;
                    rows_done += rows;
                }
                Ok(None) => {}
                Err(error @ ReplicaError::Storage { .. }) => return Err(error),
                Err(error) => {
                    report.buckets_unreadable += 1;
                    report.unreadable = Some(error.to_string());
                    // Forgotten until the next open; the entries stay as they are for the audit.
                    self.state.pending.buckets.remove(&(bucket_start_ns, series_id));
                    continue;
                }
            }
            self.write(batch, sync, "merging a closed bucket")?;
            self.state.pending.buckets.remove(&(bucket_start_ns, series_id));
        }
        if report.buckets_merged > 0 {
            self.state.pending.merged_since_settled = true;
        }
        Ok(report)
    }

    /// Stages the merge of one bucket into `batch`: the merged entry, and the deletion of the
    /// chunks it replaces. `Ok(None)` when there is nothing to merge (at most one chunk, or too
    /// many rows): the caller still deletes the bucket's pending mark.
    fn stage_merge(
        &self,
        batch: &mut WriteBatch,
        encoder: &mut ChunkEncoder,
        series_id: u32,
        bucket_start_ns: i64,
    ) -> Result<Option<(usize, usize)>, ReplicaError> {
        let prefix = layout::bucket_prefix(series_id, bucket_start_ns);
        let mut raw = self.points_iterator(series_id, bucket_start_ns, bucket_start_ns);
        let bucket = match Bucket::read(&mut raw, &SeriesKey::new(""), &self.path)? {
            Some(bucket) if bucket.series_id == series_id && bucket.bucket_start_ns == bucket_start_ns => bucket,
            _ => return Ok(None),
        };
        let chunk_count = bucket.chunk_count();
        if chunk_count < 2 || !bucket.has_stored_chunks() {
            return Ok(None);
        }
        let stored_keys = bucket.stored_keys();
        let what = bucket.describe();
        let chunks = bucket.into_chunks().map_err(|reason| ReplicaError::corrupt(&self.path, &what, reason))?;
        let rows: usize = chunks.iter().map(|(_, chunk)| chunk.len()).sum();
        if rows > MAX_MERGED_ROWS {
            return Ok(None);
        }
        let mut value = Vec::with_capacity(rows * 2 + chunks.len() * 4 + 16);
        encode_merged_into(&chunks, encoder, &mut value);
        let points = self.cf(CF_POINTS);
        batch.put_cf(points, prefix, &value);
        for key in stored_keys {
            batch.delete_cf(points, key.to_bytes());
        }
        Ok(Some((chunk_count, rows)))
    }
}

/// The value a merge stores for one bucket: `chunks` (of one series and bucket, in key order, as
/// [`Replica::merged_bucket_chunks`] gives them back) as one merged entry. For tools and tests that
/// write a merged bucket themselves; the key is the bucket prefix (`series id ‖ bucket start`).
pub fn encode_merged_bucket(chunks: &[(PointKey, SeriesColumns)]) -> Vec<u8> {
    let mut value = Vec::new();
    encode_merged_into(chunks, &mut ChunkEncoder::default(), &mut value);
    value
}

fn encode_merged_into(chunks: &[(PointKey, SeriesColumns)], encoder: &mut ChunkEncoder, out: &mut Vec<u8>) {
    let mut parts = Vec::with_capacity(chunks.len());
    let mut merged_rows = SeriesColumns::new(SeriesKey::new(""));
    for (key, chunk) in chunks.iter().filter(|(_, chunk)| !chunk.is_empty()) {
        parts.push(MergedPart {
            epoch: key.epoch,
            sequence: key.sequence,
            sender_id: key.sender_id,
            rows: chunk.len() as u32,
        });
        merged_rows.append(chunk);
    }
    layout::encode_merged_table(&parts, out);
    encoder.encode(&merged_rows, out);
}
