//! The apply side of `diode-receiver run`: verify each completed segment, check it against the
//! stored chain and apply it exactly once; record beacons. Errors of a segment are counted and
//! logged; only errors of the replica itself (a failing disk) stop the receiver.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use diode_common::beacon::Beacon;
use diode_common::keys::{TrustedKeys, encode_hex};
use diode_common::seal;
use diode_replica::{ApplyOutcome, HeadCheck, Replica, ReplicaError};

use crate::locks;
use crate::state::Shared;
use crate::time::now_ns;

/// Why the apply thread stopped: the replica itself failed (a failing disk).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot record a beacon in the replica")]
    RecordBeacon(#[source] ReplicaError),
    #[error("cannot write to the replica")]
    Write(#[source] ReplicaError),
}

/// Work for the apply thread.
pub enum Work {
    Segment { bytes: Vec<u8>, recovered_by_fec: bool },
    Beacon { beacon: Box<Beacon>, raw: Vec<u8> },
}

/// The apply loop: verify, check, apply exactly once; record beacons.
pub fn apply_loop(queue: Receiver<Work>, trusted: TrustedKeys, shared: Arc<Shared>) -> Result<(), ApplyError> {
    let counters = &shared.counters;
    for work in queue {
        match work {
            Work::Segment { bytes, .. } => apply_segment(&bytes, &trusted, &shared)?,
            Work::Beacon { beacon, raw } => {
                let mut replica = locks::write(&shared.replica);
                let head = replica.record_beacon(&beacon, &raw, now_ns()).map_err(ApplyError::RecordBeacon)?;
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
        }
    }
    Ok(())
}

fn gap_count(replica: &Replica) -> u64 {
    replica.gaps().iter().map(|gap| gap.last_sequence - gap.first_sequence + 1).sum()
}

/// Verifies and applies one segment. Errors of the segment are counted and logged; only errors of
/// the replica itself (a failing disk) stop the receiver.
pub fn apply_segment(bytes: &[u8], trusted: &TrustedKeys, shared: &Shared) -> Result<(), ApplyError> {
    let counters = &shared.counters;
    let (segment, series) = match seal::open_records(bytes, trusted) {
        Ok(opened) => opened,
        Err(error) => {
            let reason = error.reason_label();
            counters.reject(reason);
            shared.log.warn(reason, || format!("refused a segment: {error}"));
            return Ok(());
        }
    };
    let mut replica = locks::write(&shared.replica);
    match replica.apply(&segment, &series, now_ns()) {
        Ok(ApplyOutcome::Applied { points, .. }) => {
            counters.segments_applied.fetch_add(1, Ordering::Relaxed);
            counters.points_applied.fetch_add(points, Ordering::Relaxed);
            counters.last_apply_ns.store(now_ns(), Ordering::Relaxed);
            counters.applied_head.fetch_max(segment.header.sequence, Ordering::Relaxed);
            counters.gap_segments.store(gap_count(&replica), Ordering::Relaxed);
        }
        Ok(ApplyOutcome::AlreadyApplied) => {
            counters.segments_already_applied.fetch_add(1, Ordering::Relaxed);
        }
        Err(error @ (ReplicaError::ChainMismatch { .. } | ReplicaError::InconsistentSegment { .. })) => {
            let reason =
                if matches!(error, ReplicaError::ChainMismatch { .. }) { "chain_mismatch" } else { "bad_payload" };
            counters.reject(reason);
            shared.log.warn(reason, || format!("refused a segment: {error}"));
        }
        Err(error) => return Err(ApplyError::Write(error)),
    }
    Ok(())
}
