//! Where a query's points come from: a replica the query owns (the CLI's read-only instance) or
//! the running receiver's replica behind its `RwLock`, read a bounded batch per lock so the apply
//! thread is never held up by a long scan.
//!
//! Also the one lookup scans cannot do directly: the last point before an instant (the carry-in
//! of a time-weighted average, the latest value), found by scanning backwards in growing windows.

use std::sync::RwLock;

use diode_common::codec::SeriesColumns;
use diode_replica::{BUCKET_NS, ColumnScan, Point, Points, Replica, ReplicaError, bucket_start};

use crate::locks;

/// Points a batch of [`LockedReplica`] aims at: about a millisecond of decoding, so a query never
/// delays an apply noticeably.
pub const POINTS_PER_LOCK: usize = 16_384;

/// Points after which a batch stops at the end of the bucket it is in (a sparse stretch widened
/// the batches and dense data followed).
const MAX_POINTS_PER_LOCK: usize = 4 * POINTS_PER_LOCK;

/// Longest time span one batch reads, in buckets (about 3.7 years): sparse series widen their
/// batches up to this, so a long gap costs a few seeks, not one per hour.
const MAX_BUCKETS_PER_LOCK: i64 = 32_768;

/// Something that scans one series' points, ascending by time, last write already applied.
pub trait PointSource {
    /// The blocks of one scan.
    type Blocks<'a>: Iterator<Item = Result<SeriesColumns, ReplicaError>> + 'a
    where
        Self: 'a;

    /// The points of `series_id` with `from_ns <= timestamp <= to_ns_inclusive`, as non-empty
    /// blocks of columns, ascending by time within and across blocks.
    fn blocks(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> Self::Blocks<'_>;

    /// The same points one at a time.
    fn scan(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> Points<Self::Blocks<'_>> {
        Points::new(self.blocks(series_id, from_ns, to_ns_inclusive))
    }
}

impl PointSource for Replica {
    type Blocks<'a> = ColumnScan<'a>;

    fn blocks(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> ColumnScan<'_> {
        self.scan_columns(series_id, from_ns, to_ns_inclusive)
    }
}

/// The running receiver's replica, read in batches, each under its own short read lock. A batch
/// covers whole one-hour buckets (the replica's unit of storage, so no bucket is decoded twice):
/// one bucket at first, twice as many after a batch of under a quarter of
/// [`POINTS_PER_LOCK`] points, half as many after one of over [`POINTS_PER_LOCK`]. A lock is
/// therefore held for about [`POINTS_PER_LOCK`] points (at most four times that plus one
/// bucket), or one bucket of a series denser than that.
///
/// Points applied between batches appear if they fall after the batch read last; this only ever
/// adds points (a later write of a timestamp already returned is not revisited).
pub struct LockedReplica<'a>(pub &'a RwLock<Replica>);

impl PointSource for LockedReplica<'_> {
    type Blocks<'a>
        = BatchedScan<'a>
    where
        Self: 'a;

    fn blocks(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> BatchedScan<'_> {
        BatchedScan {
            lock: self.0,
            series_id,
            next_from_ns: from_ns,
            to_ns: to_ns_inclusive,
            buckets_per_lock: 1,
            buffer: Vec::new().into_iter(),
            finished: from_ns > to_ns_inclusive,
        }
    }
}

/// See [`LockedReplica`].
pub struct BatchedScan<'a> {
    lock: &'a RwLock<Replica>,
    series_id: u32,
    next_from_ns: i64,
    to_ns: i64,
    buckets_per_lock: i64,
    buffer: std::vec::IntoIter<SeriesColumns>,
    finished: bool,
}

impl BatchedScan<'_> {
    fn refill(&mut self) -> Result<(), ReplicaError> {
        let from_ns = self.next_from_ns;
        let first_bucket_ns = bucket_start(from_ns);
        // Near the end of time the batch simply runs to the end of the range.
        let batch_end_ns =
            self.buckets_per_lock.checked_mul(BUCKET_NS).and_then(|span| first_bucket_ns.checked_add(span));
        let mut until_ns = batch_end_ns.map_or(self.to_ns, |end_ns| self.to_ns.min(end_ns - 1));
        let mut batch = Vec::new();
        let mut points = 0;
        // Set once the batch is full: the end of the last bucket read, where it stops.
        let mut cut_at_ns = None;
        {
            let replica = locks::read(self.lock);
            for block in replica.scan_columns(self.series_id, from_ns, until_ns) {
                let block = block?;
                points += block.len();
                let bucket_ns = bucket_start(block.timestamps_ns[0]);
                batch.push(block);
                if points >= MAX_POINTS_PER_LOCK {
                    cut_at_ns = Some(bucket_ns.saturating_add(BUCKET_NS));
                    break;
                }
            }
        }
        if let Some(bucket_end_ns) = cut_at_ns {
            // A wide batch met dense data: stop after the bucket at hand and narrow down.
            until_ns = until_ns.min(bucket_end_ns.saturating_sub(1));
            self.buckets_per_lock = 1;
        } else if points < POINTS_PER_LOCK / 4 {
            self.buckets_per_lock = (self.buckets_per_lock * 2).min(MAX_BUCKETS_PER_LOCK);
        } else if points > POINTS_PER_LOCK {
            self.buckets_per_lock = (self.buckets_per_lock / 2).max(1);
        }
        match until_ns.checked_add(1) {
            Some(next) if until_ns < self.to_ns => self.next_from_ns = next,
            _ => self.finished = true,
        }
        self.buffer = batch.into_iter();
        Ok(())
    }
}

impl Iterator for BatchedScan<'_> {
    type Item = Result<SeriesColumns, ReplicaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(block) = self.buffer.next() {
                return Some(Ok(block));
            }
            if self.finished {
                return None;
            }
            if let Err(error) = self.refill() {
                self.finished = true;
                return Some(Err(error));
            }
        }
    }
}

/// A source that stops yielding blocks once `deadline` (if any) has passed: the engine, which
/// checks the same deadline before it writes a row, then ends the query with a timeout instead of
/// rows computed from the cut scan.
pub struct UntilDeadline<'a, S> {
    /// The source scanned.
    pub source: &'a S,
    /// When to stop; `None`: never.
    pub deadline: Option<std::time::Instant>,
}

impl<S: PointSource> PointSource for UntilDeadline<'_, S> {
    type Blocks<'a>
        = DeadlineBlocks<S::Blocks<'a>>
    where
        Self: 'a;

    fn blocks(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> Self::Blocks<'_> {
        DeadlineBlocks { blocks: self.source.blocks(series_id, from_ns, to_ns_inclusive), deadline: self.deadline }
    }
}

/// See [`UntilDeadline`].
pub struct DeadlineBlocks<I> {
    blocks: I,
    deadline: Option<std::time::Instant>,
}

impl<I: Iterator> Iterator for DeadlineBlocks<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        if self.deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
            return None;
        }
        self.blocks.next()
    }
}

/// The last point with `earliest_ns <= timestamp < before_ns` that `accept` takes, scanning
/// backwards in windows of one bucket, then two, four… (so a long gap costs a few seeks, and the
/// window that finds the point holds at most about as much data as the gap it crossed).
/// `earliest_ns` is usually the series' first timestamp from the catalog.
pub fn last_point_before<S: PointSource>(
    source: &S,
    series_id: u32,
    before_ns: i64,
    earliest_ns: i64,
    accept: impl Fn(&Point) -> bool,
) -> Result<Option<Point>, ReplicaError> {
    if before_ns <= earliest_ns {
        return Ok(None);
    }
    let mut high_ns = before_ns - 1;
    let mut span_ns = BUCKET_NS;
    loop {
        let low_ns = high_ns.saturating_sub(span_ns - 1).max(earliest_ns);
        let mut found = None;
        for block in source.blocks(series_id, low_ns, high_ns) {
            let block = block?;
            // The block's last accepted point, looked for from its end.
            let point_at = |row: usize| Point {
                timestamp_ns: block.timestamps_ns[row],
                value: block.value(row),
                quality: block.qualities[row],
            };
            if let Some(point) = (0..block.len()).rev().map(point_at).find(|point| accept(point)) {
                found = Some(point);
            }
        }
        if found.is_some() || low_ns <= earliest_ns {
            return Ok(found);
        }
        high_ns = low_ns - 1;
        span_ns = span_ns.saturating_mul(2);
    }
}
