//! Where a query's points come from: a replica the query owns (the CLI's read-only instance) or
//! the running receiver's replica behind its `RwLock`, read a bounded batch per lock so the apply
//! thread is never held up by a long scan.
//!
//! Also the one lookup scans cannot do directly: the last point before an instant (the carry-in
//! of a time-weighted average, the latest value), found by scanning backwards in growing windows.

use std::sync::{PoisonError, RwLock};

use crate::replica::{BUCKET_NS, Point, PointScan, Replica, ReplicaError};

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
    type Scan<'a>: Iterator<Item = Result<Point, ReplicaError>> + 'a
    where
        Self: 'a;

    /// The points of `series_id` with `from_ns <= timestamp <= to_ns_inclusive`.
    fn scan(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> Self::Scan<'_>;
}

impl PointSource for Replica {
    type Scan<'a> = PointScan<'a>;

    fn scan(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> PointScan<'_> {
        Replica::scan(self, series_id, from_ns, to_ns_inclusive)
    }
}

/// The running receiver's replica, read in batches, each under its own short read lock. A batch
/// covers whole one-hour buckets (the replica's unit of storage, so no bucket is decoded twice):
/// one bucket at first, twice as many after a batch of under a quarter of
/// [`POINTS_PER_LOCK`] points, half as many after one of over [`POINTS_PER_LOCK`]. A lock is
/// therefore held for about [`POINTS_PER_LOCK`] points (at most four times that plus the rest of a
/// bucket), or one bucket of a series denser than that.
///
/// Points applied between batches appear if they fall after the batch read last; this only ever
/// adds points (a later write of a timestamp already returned is not revisited).
pub struct LockedReplica<'a>(pub &'a RwLock<Replica>);

impl PointSource for LockedReplica<'_> {
    type Scan<'a>
        = BatchedScan<'a>
    where
        Self: 'a;

    fn scan(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> BatchedScan<'_> {
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
    buffer: std::vec::IntoIter<Point>,
    finished: bool,
}

impl BatchedScan<'_> {
    fn refill(&mut self) -> Result<(), ReplicaError> {
        let from_ns = self.next_from_ns;
        let first_bucket_ns = from_ns.saturating_sub(from_ns.rem_euclid(BUCKET_NS));
        // Near the end of time the batch simply runs to the end of the range.
        let batch_end_ns =
            self.buckets_per_lock.checked_mul(BUCKET_NS).and_then(|span| first_bucket_ns.checked_add(span));
        let mut until_ns = batch_end_ns.map_or(self.to_ns, |end_ns| self.to_ns.min(end_ns - 1));
        let mut batch = Vec::with_capacity(POINTS_PER_LOCK);
        // Set once the batch is full: the end of the bucket being read, where it stops.
        let mut cut_at_ns = None;
        {
            // A poisoned lock means the apply thread panicked mid-apply; RocksDB's batch is
            // atomic, so what is stored is still whole and worth reading.
            let replica = self.lock.read().unwrap_or_else(PoisonError::into_inner);
            for point in replica.scan(self.series_id, from_ns, until_ns) {
                let point = point?;
                match cut_at_ns {
                    Some(bucket_end_ns) if point.timestamp_ns >= bucket_end_ns => break,
                    Some(_) => {}
                    None if batch.len() + 1 >= MAX_POINTS_PER_LOCK => {
                        let bucket_ns = point.timestamp_ns.saturating_sub(point.timestamp_ns.rem_euclid(BUCKET_NS));
                        cut_at_ns = Some(bucket_ns.saturating_add(BUCKET_NS));
                    }
                    None => {}
                }
                batch.push(point);
            }
        }
        if let Some(bucket_end_ns) = cut_at_ns {
            // A wide batch met dense data: finish the bucket at hand and narrow down.
            until_ns = until_ns.min(bucket_end_ns.saturating_sub(1));
            self.buckets_per_lock = 1;
        } else if batch.len() < POINTS_PER_LOCK / 4 {
            self.buckets_per_lock = (self.buckets_per_lock * 2).min(MAX_BUCKETS_PER_LOCK);
        } else if batch.len() > POINTS_PER_LOCK {
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
    type Item = Result<Point, ReplicaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(point) = self.buffer.next() {
                return Some(Ok(point));
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
        for point in source.scan(series_id, low_ns, high_ns) {
            let point = point?;
            if accept(&point) {
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
