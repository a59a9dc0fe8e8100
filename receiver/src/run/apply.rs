//! The apply side of `diode-receiver run`: verify each completed segment, check it against the
//! stored chain and apply it exactly once; record beacons. Errors of a segment are counted and
//! logged; only errors of the replica itself (a failing disk) stop the receiver.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use diode_common::keys::{TrustedKeys, encode_hex};
use diode_common::seal;
use diode_replica::{ApplyOutcome, HeadCheck, Replica, ReplicaError, ReplicaOptions};

use crate::locks;
use crate::state::{Shared, VerifiedBeacon};
use crate::time::now_ns;

pub use crate::state::Work;

/// Longest the apply thread waits for a segment before it records waiting beacons.
const BEACON_CHECK: Duration = Duration::from_millis(100);
/// Rows the apply thread rewrites merging closed hours (`Replica::merge_closed_buckets`) after
/// each apply and each idle wait: at most about 60 ms of work (1.2 µs a row when every chunk holds
/// one point, less when chunks hold more), so apply and readers are never held up for long, and a
/// live plant's hour of 5,000 series at 1 Hz (18 million rows) is merged within a minute or two
/// of closing (the loop turns about ten times a second when segments come every second).
const MERGE_ROWS_PER_TURN: usize = 50_000;
/// First and longest wait before a failed replica write is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LONGEST: Duration = Duration::from_secs(5);

/// The apply loop: verify, check, apply exactly once; record the beacons waiting in the slot.
///
/// It never fails: a segment's own faults are counted and logged, and a failing replica write is
/// retried (with a reopen) until it succeeds or the receiver stops.
pub fn apply_loop(queue: Receiver<Work>, trusted: TrustedKeys, shared: Arc<Shared>) {
    // Taken while the replica is surely writable: a failed reopen leaves it read-only.
    let options = locks::read(&shared.replica).options();
    loop {
        match queue.recv_timeout(BEACON_CHECK) {
            Ok(Work::Segment { bytes, .. }) => {
                let mut retry = RETRY_FIRST;
                while let Err(error) = apply_segment(&bytes, &trusted, &shared) {
                    if !wait_out_write_failure(&shared, &error, &mut retry, options) {
                        return;
                    }
                }
                shared.counters.apply_queue_bytes.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        record_waiting_beacons(&shared);
        merge_closed_hours(&shared);
    }
}

/// Merges some closed hours (up to [`MERGE_ROWS_PER_TURN`] rows). A failed write is counted and
/// logged and tried again next turn; nothing applied depends on it.
fn merge_closed_hours(shared: &Shared) {
    let quiet_ns = i64::from(shared.merge_quiet_s) * 1_000_000_000;
    let mut replica = locks::write(&shared.replica);
    match replica.merge_closed_buckets(MERGE_ROWS_PER_TURN, now_ns(), quiet_ns) {
        Ok(report) => {
            let counters = &shared.counters;
            counters.buckets_merged.fetch_add(report.buckets_merged, Ordering::Relaxed);
            counters.chunks_merged.fetch_add(report.chunks_merged, Ordering::Relaxed);
            counters.buckets_waiting_to_merge.store(replica.buckets_waiting_to_merge() as u64, Ordering::Relaxed);
            if let Some(reason) = report.unreadable {
                shared.log.warn("bucket_not_merged", || {
                    format!("a closed hour is left as it is: {reason}; run `diode-receiver audit verify`")
                });
            }
        }
        Err(error) => {
            shared.counters.replica_write_errors.fetch_add(1, Ordering::Relaxed);
            shared.log.warn("merge_failed", || format!("cannot merge a closed hour: {error}"));
        }
    }
}

/// After a failed replica write (a full disk, an I/O error): counts and logs it, waits (doubling
/// `retry` up to [`RETRY_LONGEST`]), reopens the replica so RocksDB forgets the error, and says
/// whether to try again (false once the receiver is stopping). Meanwhile the receive thread goes
/// on: completed segments wait in the queue, then are shed and counted, and the carousel or a
/// resend brings them back. Nothing acknowledged is lost: the OT side keeps every segment.
fn wait_out_write_failure(
    shared: &Shared,
    error: &ReplicaError,
    retry: &mut Duration,
    options: ReplicaOptions,
) -> bool {
    shared.counters.replica_write_errors.fetch_add(1, Ordering::Relaxed);
    shared.counters.replica_write_blocked.store(1, Ordering::Relaxed);
    tracing::error!(
        retry_in_ms = retry.as_millis() as u64,
        "apply is stopped: {error}; free space or fix the disk under the replica, apply resumes by itself \
         (segments arriving meanwhile are shed and come back with the carousel or a resend)"
    );
    let mut waited = Duration::ZERO;
    while waited < *retry {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(BEACON_CHECK.min(*retry - waited));
        waited += BEACON_CHECK;
    }
    *retry = (*retry * 2).min(RETRY_LONGEST);
    let mut replica = locks::write(&shared.replica);
    // Reopening drops an error RocksDB keeps until then; the write-ahead log keeps what was
    // written. A failed reopen leaves the replica read-only until the next one.
    if let Err(error) = replica.reopen(options) {
        tracing::error!("cannot reopen the replica at {}: {error}", replica.path().display());
    }
    true
}

/// Records every beacon waiting in the slot (the newest verified one of each sender).
fn record_waiting_beacons(shared: &Shared) {
    let waiting = std::mem::take(&mut *locks::lock(&shared.beacons));
    for (_, verified) in waiting {
        record_beacon(shared, &verified);
    }
}

fn record_beacon(shared: &Shared, VerifiedBeacon { beacon, raw }: &VerifiedBeacon) {
    let counters = &shared.counters;
    let mut replica = locks::write(&shared.replica);
    let head = match replica.record_beacon(beacon, raw, now_ns()) {
        Ok(head) => head,
        Err(error) => {
            // A beacon is resent every second: losing one to a failing disk costs nothing.
            counters.replica_write_errors.fetch_add(1, Ordering::Relaxed);
            shared.log.warn("beacon_not_recorded", || format!("cannot record a beacon in the replica: {error}"));
            return;
        }
    };
    if let HeadCheck::Differs { segment, signed_hash, stored_hash } = head {
        counters.beacon_head_mismatches.fetch_add(1, Ordering::Relaxed);
        shared.log.warn("beacon_head_mismatch", || {
            format!(
                "the signed beacon of sender {} epoch {} says its head {} hashes to {}, the stored \
                 segment to {}: a forked chain (state lost without a new epoch?) or a misused key; run \
                 `diode-receiver audit verify` and compare with the sender",
                segment.sender_id,
                segment.epoch,
                segment.sequence,
                encode_hex(&signed_hash),
                encode_hex(&stored_hash)
            )
        });
    }
    counters.beacons_accepted.fetch_add(1, Ordering::Relaxed);
    counters.last_beacon_received_ns.store(now_ns(), Ordering::Relaxed);
    counters.announced_head.store(beacon.head_sequence, Ordering::Relaxed);
    counters.gap_segments.store(gap_count(&replica), Ordering::Relaxed);
}

fn gap_count(replica: &Replica) -> u64 {
    replica.gaps().iter().map(|gap| gap.last_sequence - gap.first_sequence + 1).sum()
}

/// Verifies and applies one segment. Whatever is wrong with the segment itself (signature,
/// chain, payload, a sender producing series without bound, a stream with too many gaps) is
/// counted by reason and logged, and only that segment is refused; the error returned is the
/// replica's own (a failed write), which the caller retries.
pub fn apply_segment(bytes: &[u8], trusted: &TrustedKeys, shared: &Shared) -> Result<(), ReplicaError> {
    let counters = &shared.counters;
    let (segment, decoded) = match seal::open_with_chunks(bytes, trusted) {
        Ok(opened) => opened,
        Err(error) => {
            let reason = error.reason_label();
            counters.reject(reason);
            shared.log.warn(reason, || format!("refused a segment: {error}"));
            return Ok(());
        }
    };
    let mut replica = locks::write(&shared.replica);
    match replica.apply_decoded(&segment, &decoded, now_ns()) {
        Ok(ApplyOutcome::Applied { points, .. }) => {
            counters.segments_applied.fetch_add(1, Ordering::Relaxed);
            counters.points_applied.fetch_add(points, Ordering::Relaxed);
            counters.last_apply_ns.store(now_ns(), Ordering::Relaxed);
            counters.applied_head.fetch_max(segment.header.sequence, Ordering::Relaxed);
            counters.gap_segments.store(gap_count(&replica), Ordering::Relaxed);
            counters.replica_write_blocked.store(0, Ordering::Relaxed);
            drop(replica);
            let header = &segment.header;
            shared.replication.publish(|| crate::replicate::feed::AppliedSegment {
                sender_id: header.sender_id,
                epoch: header.epoch,
                sequence: header.sequence,
                sealed: Arc::from(bytes),
            });
        }
        Ok(ApplyOutcome::AlreadyApplied) => {
            counters.segments_already_applied.fetch_add(1, Ordering::Relaxed);
            counters.replica_write_blocked.store(0, Ordering::Relaxed);
        }
        Err(error) => match refusal_reason(&error) {
            Some(reason) => {
                counters.reject(reason);
                shared.log.warn(reason, || format!("refused a segment: {error}"));
            }
            None => return Err(error),
        },
    }
    Ok(())
}

/// The reason label of an error that belongs to one segment (refused, the rest goes on), or
/// `None` for an error of the replica itself.
fn refusal_reason(error: &ReplicaError) -> Option<&'static str> {
    match error {
        ReplicaError::ChainMismatch { .. } => Some("chain_mismatch"),
        ReplicaError::InconsistentSegment { .. } => Some("bad_payload"),
        ReplicaError::TooManySeries { .. } => Some("too_many_series"),
        ReplicaError::Tracker { .. } => Some("too_many_ranges"),
        _ => None,
    }
}
