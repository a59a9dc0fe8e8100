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
        let Some((received_at_ns, raw)) = kept_beacon(replica, sender_id, epoch, &mut findings)? else { continue };
        let Some(beacon) = open_kept_beacon(&raw, trusted, received_at_ns, &mut epochs[index], &mut findings) else {
            continue;
        };
        findings.extend(head_mismatch(replica, &beacon)?);
        check_previous_epoch_end(replica, &beacon, epochs, &mut findings)?;
    }
    check_latest_heads(replica, trusted, epochs, &mut findings)?;
    Ok(findings)
}

/// The beacon the replica kept of `epoch` (the first received; for a replica written before
/// those were kept, the sender's latest beacon when it is of that epoch), with when it was
/// received. A damaged one is a finding.
fn kept_beacon(
    replica: &Replica,
    sender_id: u64,
    epoch: u64,
    findings: &mut Vec<Finding>,
) -> Result<Option<(i64, Vec<u8>)>, ReplicaError> {
    match replica.epoch_beacon(sender_id, epoch) {
        Ok(Some(kept)) => Ok(Some(kept)),
        Ok(None) => Ok(replica
            .last_beacon(sender_id)?
            .filter(|(summary, _)| summary.epoch == epoch)
            .map(|(summary, raw)| (summary.received_at_ns, raw))),
        Err(error @ ReplicaError::Storage { .. }) => Err(error),
        Err(damaged) => {
            findings.push(Finding::BeaconInvalid { sender_id, epoch, message: damaged.to_string() });
            Ok(None)
        }
    }
}

/// Verifies the kept beacon of `report`'s epoch and records what it announces (or why it does
/// not verify) in `report`; the beacon when it verifies.
fn open_kept_beacon(
    raw: &[u8],
    trusted: &TrustedKeys,
    received_at_ns: i64,
    report: &mut EpochReport,
    findings: &mut Vec<Finding>,
) -> Option<Beacon> {
    let (sender_id, epoch) = (report.sender_id, report.epoch);
    let invalid = |message: String| Finding::BeaconInvalid { sender_id, epoch, message };
    let beacon = match Beacon::open(raw, trusted) {
        Ok(beacon) if (beacon.sender_id, beacon.epoch) == (sender_id, epoch) => beacon,
        Ok(beacon) => {
            let why = format!("it is a beacon of sender {} epoch {}", beacon.sender_id, beacon.epoch);
            findings.push(invalid(why.clone()));
            report.announcement = Some(Announcement { received_at_ns, verified: Err(why) });
            return None;
        }
        Err(error) => {
            // A key no longer trusted (rotated out, revoked) says nothing; a trusted key whose
            // signature fails means the kept bytes were altered.
            if !matches!(error, BeaconError::UnknownKey { .. } | BeaconError::KeyNotValidAt { .. }) {
                findings.push(invalid(error.to_string()));
            }
            report.announcement = Some(Announcement { received_at_ns, verified: Err(error.to_string()) });
            return None;
        }
    };
    report.reason = Some(beacon.epoch_reason.label());
    report.announcement = Some(Announcement {
        received_at_ns,
        verified: Ok(SignedAnnouncement {
            key_id: beacon.key_id,
            sent_at_ns: beacon.sent_at_ns,
            epoch_started_at_ns: beacon.epoch_started_at_ns,
        }),
    });
    Some(beacon)
}

/// Checks where the verified `beacon` says the epoch before it ended against the stored segment
/// there, and records that end in the previous epoch's report.
fn check_previous_epoch_end(
    replica: &Replica,
    beacon: &Beacon,
    epochs: &mut [EpochReport],
    findings: &mut Vec<Finding>,
) -> Result<(), ReplicaError> {
    if beacon.previous_epoch == 0 || beacon.previous_epoch_last_sequence == 0 {
        return Ok(());
    }
    let sender_id = beacon.sender_id;
    let last = SegmentKey { sender_id, epoch: beacon.previous_epoch, sequence: beacon.previous_epoch_last_sequence };
    let stored_hash = stored_hash(replica, last)?;
    let verified = stored_hash.map(|hash| hash == beacon.previous_epoch_last_hash);
    if let (Some(false), Some(hash)) = (verified, stored_hash) {
        findings.push(Finding::EpochEndMismatch {
            segment: last,
            beacon_hash: hash_hex(&beacon.previous_epoch_last_hash),
            stored_hash: hash_hex(&hash),
        });
    }
    if let Some(previous) = epochs.iter_mut().find(|report| (report.sender_id, report.epoch) == (sender_id, last.epoch))
    {
        previous.ended_at_sequence = Some(last.sequence);
        previous.end_hash_verified = verified;
    }
    Ok(())
}

/// The head each sender's latest beacon names (the newest head of all), against the stored
/// segment there; a mismatch already found through the epoch's kept beacon is not named twice.
fn check_latest_heads(
    replica: &Replica,
    trusted: &TrustedKeys,
    epochs: &[EpochReport],
    findings: &mut Vec<Finding>,
) -> Result<(), ReplicaError> {
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
    Ok(())
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
