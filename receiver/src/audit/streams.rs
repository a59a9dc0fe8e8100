//! The stored sequences of each `(sender, epoch)` against the receiver's tracker: a sequence the
//! tracker calls applied whose audit entry is gone was removed after apply; one it never applied
//! was never received (a gap the sender can fill); a stored one it never recorded was inserted
//! afterwards. Gives each epoch's summary too.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use diode_replica::Replica;

use super::ranges::{clip_ranges, subtract_ranges};
use super::report::{EpochReport, GapKind, GapReport};
use super::walk::{StreamWalk, Walk};

/// Stored sequences the receiver's tracker never recorded as applied, per stream.
pub(super) type Unrecorded = Vec<(u64, u64, RangeInclusive<u64>)>;

/// Epoch summaries, gaps and unrecorded entries: the tracker's view of each stream against the
/// stored sequences.
pub(super) fn compare_with_tracker(
    replica: &Replica,
    walk: &Walk,
    selected: &RangeInclusive<u64>,
) -> (Vec<EpochReport>, Vec<GapReport>, Unrecorded) {
    let trackers: BTreeMap<(u64, u64), _> =
        replica.streams().into_iter().map(|status| ((status.sender_id, status.epoch), status)).collect();
    let mut keys: Vec<(u64, u64)> = trackers.keys().chain(walk.streams.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let empty = StreamWalk::default();
    let mut epochs = Vec::with_capacity(keys.len());
    let mut gaps = Vec::new();
    let mut unrecorded = Vec::new();
    for (sender_id, epoch) in keys {
        let stream = walk.streams.get(&(sender_id, epoch)).unwrap_or(&empty);
        let tracker = trackers.get(&(sender_id, epoch));
        epochs.push(EpochReport {
            sender_id,
            epoch,
            first_sequence: stream.selected_first,
            last_sequence: stream.selected_last,
            stored_segments: stream.selected_count,
            highest_known: tracker.map_or(0, |t| t.highest_known),
            first_seen_at_ns: tracker.map(|t| t.first_seen_at_ns),
            first_sealed_at_ns: stream.first_sealed_at_ns,
            announced_by_beacon: tracker.is_some_and(|t| t.announced_by_beacon),
            begins_at_genesis: stream.begins_at_genesis,
            announcement: None,
            reason: None,
            ended_at_sequence: None,
            end_hash_verified: None,
        });
        // Known = 1..=highest known; applied = known minus the tracker's missing ranges.
        let known: Vec<RangeInclusive<u64>> = match tracker {
            Some(tracker) if tracker.highest_known > 0 => vec![1..=tracker.highest_known],
            _ => Vec::new(),
        };
        let never_applied = tracker.map_or(Vec::new(), |tracker| tracker.missing.clone());
        let applied = subtract_ranges(&known, &never_applied);
        let stored = clip_ranges(&stream.stored, selected);
        let mut add_gaps = |ranges: Vec<RangeInclusive<u64>>, kind: GapKind| {
            gaps.extend(ranges.into_iter().map(|range| GapReport {
                sender_id,
                epoch,
                first_sequence: *range.start(),
                last_sequence: *range.end(),
                kind,
            }));
        };
        add_gaps(clip_ranges(&subtract_ranges(&never_applied, &stored), selected), GapKind::NeverReceived);
        add_gaps(clip_ranges(&subtract_ranges(&applied, &stream.stored), selected), GapKind::RemovedAfterApply);
        unrecorded.extend(subtract_ranges(&stored, &applied).into_iter().map(|run| (sender_id, epoch, run)));
    }
    gaps.sort_by_key(|gap| (gap.sender_id, gap.epoch, gap.first_sequence));
    (epochs, gaps, unrecorded)
}
