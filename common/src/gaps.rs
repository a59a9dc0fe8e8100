//! Which sequences of one `(sender id, epoch)` stream have been applied, and which are missing.
//!
//! There is no back channel, so the receiver must know exactly what it lacks and say so: an
//! operator orders `diode-sender resend` for the ranges [`SequenceTracker::missing_ranges`]
//! reports. Segments may arrive in any order (FEC, carousel, resends), so the tracker keeps a
//! watermark (every sequence up to it is applied) plus the applied sequences above it as disjoint
//! ranges, which stays small however the arrivals interleave. Beacons announce the sender's head,
//! so sequences that never arrived at all still show as missing.
//!
//! The tracker is persisted by the replica in the same RocksDB write batch as the segment it
//! records, so its byte form ([`SequenceTracker::to_bytes`]) is explicit and versioned, and its
//! decoder is total.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// Most disjoint ranges of applied sequences a tracker holds above its watermark. Each range costs
/// 16 bytes persisted and about 48 bytes in memory, so the bound keeps one tracker under about
/// 16 MiB on disk. Reaching it takes a million isolated losses in one epoch, which an operator
/// should have noticed long before; past it the tracker refuses rather than grows without bound.
pub const MAX_APPLIED_RANGES: usize = 1_000_000;

/// Magic at the start of a persisted tracker.
pub const TRACKER_MAGIC: [u8; 4] = *b"DGAP";
/// Version of the persisted layout described at [`SequenceTracker::to_bytes`].
pub const TRACKER_FORMAT_VERSION: u8 = 1;
/// Bytes before the ranges in the persisted layout.
const TRACKER_HEADER_LENGTH: usize = 32;
/// Bytes per persisted range.
const RANGE_LENGTH: usize = 16;

/// Applied and announced sequences of one `(sender id, epoch)` stream. Sequences start at 1.
///
/// Invariants (checked by [`SequenceTracker::from_bytes`] and kept by every method):
/// - every sequence in `1..=contiguous_through` is applied;
/// - `applied_above` holds disjoint, non-adjacent ranges `start..=end`, keyed by `start`, all
///   with `start > contiguous_through + 1` (a range touching the watermark is absorbed into it);
/// - `highest_known >= highest_applied()`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SequenceTracker {
    contiguous_through: u64,
    /// start → end (inclusive) of each applied range above the watermark.
    applied_above: BTreeMap<u64, u64>,
    highest_known: u64,
}

impl SequenceTracker {
    /// A stream of which nothing is known yet.
    pub fn new() -> SequenceTracker {
        SequenceTracker::default()
    }

    /// Every sequence up to and including this one is applied (0: not even sequence 1).
    pub fn contiguous_through(&self) -> u64 {
        self.contiguous_through
    }

    /// The highest applied sequence (0: none applied).
    pub fn highest_applied(&self) -> u64 {
        self.applied_above.last_key_value().map_or(self.contiguous_through, |(_, &end)| end)
    }

    /// The highest sequence known to exist: applied, or announced by a beacon (0: none).
    pub fn highest_known(&self) -> u64 {
        self.highest_known
    }

    /// Number of disjoint applied ranges above the watermark (a measure of fragmentation).
    pub fn applied_range_count(&self) -> usize {
        self.applied_above.len()
    }

    /// Whether `sequence` has been applied.
    pub fn is_applied(&self, sequence: u64) -> bool {
        if sequence == 0 {
            return false;
        }
        if sequence <= self.contiguous_through {
            return true;
        }
        self.applied_above.range(..=sequence).next_back().is_some_and(|(_, &end)| sequence <= end)
    }

    /// Records that `sequence` was applied. Returns `Ok(false)` if it already was (nothing
    /// changes), `Ok(true)` if it is new. Refuses sequence 0 (sequences start at 1) and a new
    /// isolated sequence once [`MAX_APPLIED_RANGES`] ranges are held; in both cases nothing changes.
    pub fn on_applied(&mut self, sequence: u64) -> Result<bool, GapsError> {
        if sequence == 0 {
            return Err(GapsError::ZeroSequence);
        }
        if self.is_applied(sequence) {
            return Ok(false);
        }
        // Neighbouring ranges: the one ending just below `sequence` and the one starting just above.
        let below = self
            .applied_above
            .range(..sequence)
            .next_back()
            .filter(|&(_, &end)| end.checked_add(1) == Some(sequence))
            .map(|(&start, _)| start);
        let above_start = sequence.checked_add(1).filter(|next| self.applied_above.contains_key(next));
        let extends_watermark = self.contiguous_through.checked_add(1) == Some(sequence);
        if below.is_none() && above_start.is_none() && !extends_watermark {
            if self.applied_above.len() >= MAX_APPLIED_RANGES {
                return Err(GapsError::TooManyRanges { limit: MAX_APPLIED_RANGES });
            }
            self.applied_above.insert(sequence, sequence);
        } else {
            let above_end = above_start.map(|start| self.applied_above.remove(&start).expect("range present"));
            let end = above_end.unwrap_or(sequence);
            if extends_watermark {
                debug_assert!(below.is_none(), "no range may touch the watermark");
                self.contiguous_through = end;
            } else if let Some(start) = below {
                self.applied_above.insert(start, end);
            } else {
                self.applied_above.insert(sequence, end);
            }
        }
        self.absorb_into_watermark();
        self.highest_known = self.highest_known.max(self.highest_applied());
        Ok(true)
    }

    /// Records that the sender announced `head_sequence` as its latest (a beacon): every sequence
    /// up to it exists, so the ones not applied are missing. Lower announcements change nothing.
    pub fn on_head_announced(&mut self, head_sequence: u64) {
        self.highest_known = self.highest_known.max(head_sequence);
    }

    /// Every sequence in `1..=highest_known` not applied, as ascending disjoint ranges. There are
    /// at most `applied_range_count() + 1` of them.
    pub fn missing_ranges(&self) -> Vec<RangeInclusive<u64>> {
        let mut missing = Vec::new();
        let mut next_unapplied = self.contiguous_through.checked_add(1);
        for (&start, &end) in &self.applied_above {
            let Some(from) = next_unapplied else { break };
            if start > from {
                missing.push(from..=start - 1);
            }
            next_unapplied = end.checked_add(1);
        }
        if let Some(from) = next_unapplied
            && from <= self.highest_known
        {
            missing.push(from..=self.highest_known);
        }
        missing
    }

    /// How many sequences are missing in total (saturating at `u64::MAX`).
    pub fn missing_count(&self) -> u64 {
        self.missing_ranges()
            .iter()
            .fold(0u64, |total, range| total.saturating_add((range.end() - range.start()).saturating_add(1)))
    }

    /// The applied ranges above the watermark, ascending.
    pub fn applied_ranges_above_watermark(&self) -> impl Iterator<Item = RangeInclusive<u64>> + '_ {
        self.applied_above.iter().map(|(&start, &end)| start..=end)
    }

    /// Moves a range that now touches the watermark into it.
    fn absorb_into_watermark(&mut self) {
        if let Some(next) = self.contiguous_through.checked_add(1)
            && let Some(end) = self.applied_above.remove(&next)
        {
            self.contiguous_through = end;
        }
    }

    /// The persisted form. All integers little-endian:
    ///
    /// | offset | size | field |
    /// |---:|---:|---|
    /// | 0 | 4 | magic `DGAP` |
    /// | 4 | 1 | format version (1) |
    /// | 5 | 3 | reserved, zero |
    /// | 8 | 8 | contiguous through |
    /// | 16 | 8 | highest known |
    /// | 24 | 4 | range count `n` (at most [`MAX_APPLIED_RANGES`]) |
    /// | 28 | 4 | reserved, zero |
    /// | 32 | 16·n | ranges above the watermark, ascending: start u64, end u64 (inclusive) |
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(TRACKER_HEADER_LENGTH + RANGE_LENGTH * self.applied_above.len());
        bytes.extend_from_slice(&TRACKER_MAGIC);
        bytes.push(TRACKER_FORMAT_VERSION);
        bytes.extend_from_slice(&[0u8; 3]);
        bytes.extend_from_slice(&self.contiguous_through.to_le_bytes());
        bytes.extend_from_slice(&self.highest_known.to_le_bytes());
        let count = u32::try_from(self.applied_above.len()).expect("range count bounded by MAX_APPLIED_RANGES");
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 4]);
        for (&start, &end) in &self.applied_above {
            bytes.extend_from_slice(&start.to_le_bytes());
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        bytes
    }

    /// Parses [`to_bytes`](Self::to_bytes) output; total: any other input is an error, never a
    /// panic, and a tracker that breaks an invariant is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<SequenceTracker, GapsError> {
        let header = bytes
            .get(..TRACKER_HEADER_LENGTH)
            .ok_or(GapsError::Truncated { length_bytes: bytes.len(), needed_bytes: TRACKER_HEADER_LENGTH })?;
        if header[0..4] != TRACKER_MAGIC {
            return Err(GapsError::BadMagic);
        }
        if header[4] != TRACKER_FORMAT_VERSION {
            return Err(GapsError::UnsupportedVersion { version: header[4] });
        }
        if header[5..8] != [0u8; 3] || header[28..32] != [0u8; 4] {
            return Err(GapsError::Inconsistent { reason: "reserved bytes are not zero" });
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let contiguous_through = u64_at(8);
        let highest_known = u64_at(16);
        let count = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes")) as usize;
        if count > MAX_APPLIED_RANGES {
            return Err(GapsError::TooManyRanges { limit: MAX_APPLIED_RANGES });
        }
        let needed_bytes = TRACKER_HEADER_LENGTH + RANGE_LENGTH * count;
        if bytes.len() != needed_bytes {
            return Err(GapsError::Truncated { length_bytes: bytes.len(), needed_bytes });
        }
        let mut applied_above = BTreeMap::new();
        // The lowest start the next range may have: two above the previous end (or watermark).
        let mut lowest_start = contiguous_through.checked_add(2);
        for index in 0..count {
            let at = TRACKER_HEADER_LENGTH + RANGE_LENGTH * index;
            let (start, end) = (u64_at(at), u64_at(at + 8));
            if lowest_start.is_none_or(|lowest| start < lowest) {
                return Err(GapsError::Inconsistent {
                    reason: "ranges overlap, touch each other or the watermark, or are not ascending",
                });
            }
            if end < start {
                return Err(GapsError::Inconsistent { reason: "a range ends before it starts" });
            }
            applied_above.insert(start, end);
            lowest_start = end.checked_add(2);
        }
        let tracker = SequenceTracker { contiguous_through, applied_above, highest_known };
        if highest_known < tracker.highest_applied() {
            return Err(GapsError::Inconsistent { reason: "highest known is below the highest applied sequence" });
        }
        Ok(tracker)
    }
}

/// Why a tracker refused an update or a persisted tracker could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GapsError {
    /// [`SequenceTracker::on_applied`] was given sequence 0, which no segment has.
    #[error("sequence 0 is not a valid segment sequence; sequences start at 1")]
    ZeroSequence,
    /// A new isolated sequence would need more than [`MAX_APPLIED_RANGES`] ranges, or a persisted
    /// tracker claims more.
    #[error(
        "the stream has {limit} disjoint runs of applied segments; resend the missing ranges so they merge \
         before more isolated segments can be tracked"
    )]
    TooManyRanges {
        /// [`MAX_APPLIED_RANGES`].
        limit: usize,
    },
    /// A persisted tracker is shorter than its header, or its length is not what its range count
    /// requires.
    #[error("sequence tracker is {length_bytes} bytes; its header and ranges need {needed_bytes}")]
    Truncated {
        /// Bytes given.
        length_bytes: usize,
        /// Bytes the header (and, once read, its range count) requires.
        needed_bytes: usize,
    },
    /// The bytes do not start with [`TRACKER_MAGIC`]: not a persisted tracker.
    #[error("not a sequence tracker (bad magic)")]
    BadMagic,
    /// A persisted tracker in a format version other than [`TRACKER_FORMAT_VERSION`], written by
    /// another build.
    #[error(
        "sequence tracker format version {version} is not supported by this build (supports {TRACKER_FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// A persisted tracker that parses but breaks a rule: non-zero reserved bytes, ranges out of
    /// order, overlapping or touching the watermark, or a highest known sequence below the
    /// highest applied.
    #[error("sequence tracker is inconsistent: {reason}")]
    Inconsistent {
        /// The rule it breaks.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_new_tracker_knows_nothing_and_misses_nothing() {
        let tracker = SequenceTracker::new();
        assert_eq!(tracker.contiguous_through(), 0);
        assert_eq!(tracker.highest_known(), 0);
        assert!(tracker.missing_ranges().is_empty());
        assert!(!tracker.is_applied(0));
        assert!(!tracker.is_applied(1));
    }

    #[test]
    fn in_order_sequences_advance_the_watermark_without_ranges() {
        let mut tracker = SequenceTracker::new();
        for sequence in 1..=100 {
            assert_eq!(tracker.on_applied(sequence), Ok(true));
        }
        assert_eq!(tracker.contiguous_through(), 100);
        assert_eq!(tracker.applied_range_count(), 0);
        assert!(tracker.missing_ranges().is_empty());
    }

    #[test]
    fn a_repeated_sequence_is_reported_and_changes_nothing() {
        let mut tracker = SequenceTracker::new();
        tracker.on_applied(5).unwrap();
        let before = tracker.clone();
        assert_eq!(tracker.on_applied(5), Ok(false));
        assert_eq!(tracker, before);
    }

    #[test]
    fn holes_are_missing_until_filled_and_then_merge_into_the_watermark() {
        let mut tracker = SequenceTracker::new();
        for sequence in [1, 2, 5, 7, 8] {
            tracker.on_applied(sequence).unwrap();
        }
        assert_eq!(tracker.missing_ranges(), vec![3..=4, 6..=6]);
        tracker.on_applied(6).unwrap();
        assert_eq!(tracker.applied_range_count(), 1);
        tracker.on_applied(4).unwrap();
        tracker.on_applied(3).unwrap();
        assert_eq!(tracker.contiguous_through(), 8);
        assert_eq!(tracker.applied_range_count(), 0);
    }

    #[test]
    fn an_announced_head_makes_never_received_sequences_missing() {
        let mut tracker = SequenceTracker::new();
        tracker.on_applied(1).unwrap();
        tracker.on_head_announced(4);
        assert_eq!(tracker.missing_ranges(), vec![2..=4]);
        tracker.on_head_announced(2);
        assert_eq!(tracker.highest_known(), 4, "a lower head never forgets what is known");
        assert_eq!(tracker.missing_count(), 3);
    }

    #[test]
    fn sequence_zero_is_refused() {
        let mut tracker = SequenceTracker::new();
        assert_eq!(tracker.on_applied(0), Err(GapsError::ZeroSequence));
        assert_eq!(tracker, SequenceTracker::new());
    }

    #[test]
    fn the_largest_sequences_do_not_overflow() {
        let mut tracker = SequenceTracker::new();
        tracker.on_applied(u64::MAX).unwrap();
        tracker.on_applied(u64::MAX - 1).unwrap();
        assert!(tracker.is_applied(u64::MAX));
        assert_eq!(tracker.missing_ranges(), vec![1..=u64::MAX - 2]);
        assert_eq!(SequenceTracker::from_bytes(&tracker.to_bytes()), Ok(tracker));
    }

    #[test]
    fn the_range_bound_is_enforced_and_leaves_the_tracker_unchanged() {
        let mut tracker = SequenceTracker::new();
        for index in 0..MAX_APPLIED_RANGES as u64 {
            tracker.on_applied(3 + 2 * index).unwrap();
        }
        let before = tracker.applied_range_count();
        let isolated = 3 + 2 * MAX_APPLIED_RANGES as u64 + 10;
        assert_eq!(tracker.on_applied(isolated), Err(GapsError::TooManyRanges { limit: MAX_APPLIED_RANGES }));
        assert_eq!(tracker.applied_range_count(), before);
        // Filling a hole still works: it merges ranges instead of adding one.
        assert_eq!(tracker.on_applied(4), Ok(true));
    }

    #[test]
    fn the_persisted_layout_is_the_documented_one() {
        let mut tracker = SequenceTracker::new();
        for sequence in [1, 2, 4, 5, 9] {
            tracker.on_applied(sequence).unwrap();
        }
        tracker.on_head_announced(12);
        let bytes = tracker.to_bytes();
        assert_eq!(&bytes[0..4], b"DGAP");
        assert_eq!(bytes[4], 1);
        assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 12);
        assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 2);
        assert_eq!(bytes.len(), 32 + 2 * 16);
        assert_eq!(u64::from_le_bytes(bytes[32..40].try_into().unwrap()), 4);
        assert_eq!(u64::from_le_bytes(bytes[40..48].try_into().unwrap()), 5);
    }

    #[test]
    fn inconsistent_persisted_trackers_are_refused() {
        let mut tracker = SequenceTracker::new();
        tracker.on_applied(1).unwrap();
        tracker.on_applied(3).unwrap();
        let good = tracker.to_bytes();
        // A range touching the watermark (start = contiguous + 1).
        let mut touching = good.clone();
        touching[32..40].copy_from_slice(&2u64.to_le_bytes());
        assert!(matches!(SequenceTracker::from_bytes(&touching), Err(GapsError::Inconsistent { .. })));
        // Highest known below the highest applied.
        let mut low_head = good.clone();
        low_head[16..24].copy_from_slice(&1u64.to_le_bytes());
        assert!(matches!(SequenceTracker::from_bytes(&low_head), Err(GapsError::Inconsistent { .. })));
        // A count beyond the bound.
        let mut huge = good;
        huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(SequenceTracker::from_bytes(&huge), Err(GapsError::TooManyRanges { .. })));
    }

    #[derive(Debug, Clone)]
    enum Operation {
        Applied(u64),
        Announced(u64),
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            4 => (0u64..120).prop_map(Operation::Applied),
            1 => (0u64..140).prop_map(Operation::Announced),
        ]
    }

    /// The obvious model: a set of applied sequences and the highest known.
    fn model_missing(applied: &BTreeSet<u64>, highest_known: u64) -> Vec<RangeInclusive<u64>> {
        let mut missing: Vec<RangeInclusive<u64>> = Vec::new();
        for sequence in (1..=highest_known).filter(|s| !applied.contains(s)) {
            match missing.last_mut() {
                Some(last) if *last.end() + 1 == sequence => *last = *last.start()..=sequence,
                _ => missing.push(sequence..=sequence),
            }
        }
        missing
    }

    proptest! {
        #[test]
        fn the_tracker_agrees_with_a_set_model(operations in proptest::collection::vec(operation(), 0..300)) {
            let mut tracker = SequenceTracker::new();
            let mut applied = BTreeSet::new();
            let mut highest_known = 0u64;
            for operation in operations {
                match operation {
                    Operation::Applied(sequence) => {
                        let result = tracker.on_applied(sequence);
                        if sequence == 0 {
                            prop_assert_eq!(result, Err(GapsError::ZeroSequence));
                        } else {
                            prop_assert_eq!(result, Ok(applied.insert(sequence)));
                            highest_known = highest_known.max(sequence);
                        }
                    }
                    Operation::Announced(sequence) => {
                        tracker.on_head_announced(sequence);
                        highest_known = highest_known.max(sequence);
                    }
                }
                let contiguous = (1..).take_while(|s| applied.contains(s)).last().unwrap_or(0);
                prop_assert_eq!(tracker.contiguous_through(), contiguous);
                prop_assert_eq!(tracker.highest_known(), highest_known);
                prop_assert_eq!(tracker.highest_applied(), applied.last().copied().unwrap_or(0));
                prop_assert_eq!(tracker.missing_ranges(), model_missing(&applied, highest_known));
            }
            for sequence in 0..150 {
                prop_assert_eq!(tracker.is_applied(sequence), applied.contains(&sequence));
            }
            prop_assert_eq!(SequenceTracker::from_bytes(&tracker.to_bytes()), Ok(tracker));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SequenceTracker::from_bytes(&bytes);
        }

        #[test]
        fn decoding_a_damaged_tracker_never_panics_and_any_accepted_form_round_trips(
            sequences in proptest::collection::vec(1u64..60, 0..40),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut tracker = SequenceTracker::new();
            for sequence in sequences {
                tracker.on_applied(sequence).unwrap();
            }
            let mut bytes = tracker.to_bytes();
            for (at, byte) in damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            if let Ok(decoded) = SequenceTracker::from_bytes(&bytes) {
                prop_assert_eq!(decoded.to_bytes(), bytes);
            }
        }
    }
}
