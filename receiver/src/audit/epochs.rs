//! The senders' signed beacons against the stored chain: why each epoch began and where the one
//! before it ended (checked against the stored segment there), and whether the heads the beacons
//! sign are the segments stored at those positions.

use diode_common::beacon::{Beacon, BeaconError};
use diode_common::keys::TrustedKeys;
use diode_common::seal::{self, SegmentHash};
use diode_replica::{Replica, ReplicaError, SegmentKey};

use super::findings::{Finding, hash_hex};
use super::report::{Announcement, EpochReport, SignedAnnouncement};

/// What the senders' signed beacons say about where epochs begin and end. For each epoch, the
/// beacon the replica kept of it (the first received; for a replica written before those were kept,
/// the sender's latest beacon when it is of that epoch) is verified: it gives the reason the epoch
/// began, and the last sequence and hash of the epoch before, which are checked against the stored
/// segment at that position.
pub(super) fn epoch_boundaries(
    replica: &Replica,
    trusted: &TrustedKeys,
    epochs: &mut [EpochReport],
) -> Result<Vec<Finding>, ReplicaError> {
    let mut findings = Vec::new();
    for index in 0..epochs.len() {
        let (sender_id, epoch) = (epochs[index].sender_id, epochs[index].epoch);
        let invalid = |message: String| Finding::BeaconInvalid { sender_id, epoch, message };
        let kept = match replica.epoch_beacon(sender_id, epoch) {
            Ok(Some(kept)) => Some(kept),
            Ok(None) => replica
                .last_beacon(sender_id)?
                .filter(|(summary, _)| summary.epoch == epoch)
                .map(|(summary, raw)| (summary.received_at_ns, raw)),
            Err(error @ ReplicaError::Storage { .. }) => return Err(error),
            Err(damaged) => {
                findings.push(invalid(damaged.to_string()));
                None
            }
        };
        let Some((received_at_ns, raw)) = kept else { continue };
        let beacon = match Beacon::open(&raw, trusted) {
            Ok(beacon) if (beacon.sender_id, beacon.epoch) == (sender_id, epoch) => beacon,
            Ok(beacon) => {
                let why = format!("it is a beacon of sender {} epoch {}", beacon.sender_id, beacon.epoch);
                findings.push(invalid(why.clone()));
                epochs[index].announcement = Some(Announcement { received_at_ns, verified: Err(why) });
                continue;
            }
            Err(error) => {
                // A key no longer trusted (rotated out, revoked) says nothing; a trusted key whose
                // signature fails means the kept bytes were altered.
                if !matches!(error, BeaconError::UnknownKey { .. } | BeaconError::KeyNotValidAt { .. }) {
                    findings.push(invalid(error.to_string()));
                }
                epochs[index].announcement = Some(Announcement { received_at_ns, verified: Err(error.to_string()) });
                continue;
            }
        };
        epochs[index].reason = Some(beacon.epoch_reason.label());
        epochs[index].announcement = Some(Announcement {
            received_at_ns,
            verified: Ok(SignedAnnouncement {
                key_id: beacon.key_id,
                sent_at_ns: beacon.sent_at_ns,
                epoch_started_at_ns: beacon.epoch_started_at_ns,
            }),
        });
        findings.extend(head_mismatch(replica, &beacon)?);
        if beacon.previous_epoch == 0 || beacon.previous_epoch_last_sequence == 0 {
            continue;
        }
        let last =
            SegmentKey { sender_id, epoch: beacon.previous_epoch, sequence: beacon.previous_epoch_last_sequence };
        let stored_hash = stored_hash(replica, last)?;
        let verified = stored_hash.map(|hash| hash == beacon.previous_epoch_last_hash);
        if let (Some(false), Some(hash)) = (verified, stored_hash) {
            findings.push(Finding::EpochEndMismatch {
                segment: last,
                beacon_hash: hash_hex(&beacon.previous_epoch_last_hash),
                stored_hash: hash_hex(&hash),
            });
        }
        if let Some(previous) =
            epochs.iter_mut().find(|report| (report.sender_id, report.epoch) == (sender_id, last.epoch))
        {
            previous.ended_at_sequence = Some(last.sequence);
            previous.end_hash_verified = verified;
        }
    }
    // The sender's latest beacon names the newest head of all.
    let mut senders: Vec<u64> = epochs.iter().map(|report| report.sender_id).collect();
    senders.sort_unstable();
    senders.dedup();
    for sender_id in senders {
        let Some((_, raw)) = replica.last_beacon(sender_id).ok().flatten() else { continue };
        let Ok(beacon) = Beacon::open(&raw, trusted) else { continue };
        if let Some(finding) = head_mismatch(replica, &beacon)?
            && !findings.contains(&finding)
        {
            findings.push(finding);
        }
    }
    Ok(findings)
}

/// The hash of the stored segment at `key`, if it is stored and readable.
fn stored_hash(replica: &Replica, key: SegmentKey) -> Result<Option<SegmentHash>, ReplicaError> {
    match replica.stored_segment(key) {
        Ok(stored) => Ok(stored.and_then(|stored| seal::parse(&stored.sealed).ok()).map(|segment| segment.hash())),
        Err(error @ ReplicaError::Storage { .. }) => Err(error),
        Err(_) => Ok(None),
    }
}

/// A finding when `beacon`'s signed head is not the stored segment at that position.
fn head_mismatch(replica: &Replica, beacon: &Beacon) -> Result<Option<Finding>, ReplicaError> {
    if beacon.head_sequence == 0 {
        return Ok(None);
    }
    let head = SegmentKey { sender_id: beacon.sender_id, epoch: beacon.epoch, sequence: beacon.head_sequence };
    Ok(stored_hash(replica, head)?.filter(|stored| *stored != beacon.head_hash).map(|stored| {
        Finding::BeaconHeadMismatch {
            segment: head,
            beacon_hash: hash_hex(&beacon.head_hash),
            stored_hash: hash_hex(&stored),
        }
    }))
}
