//! The persisted sequence tracker (`SequenceTracker::from_bytes`, read back from the replica's
//! stream entries) on arbitrary bytes: never panics; whatever decodes encodes back to the same
//! bytes and keeps the tracker's invariants, also after further updates. Seeds:
//! `fuzz/seeds/sequence_tracker/`.
#![no_main]

use diode_common::gaps::SequenceTracker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(mut tracker) = SequenceTracker::from_bytes(bytes) else { return };
    assert_eq!(tracker.to_bytes(), bytes, "a decoded tracker encodes back to the same bytes");
    check(&tracker);
    // Updates on a decoded tracker keep the invariants: the watermark, the lowest and the highest
    // missing sequences.
    let mut updates = vec![tracker.contiguous_through().saturating_add(1), tracker.highest_known()];
    updates.extend(tracker.missing_ranges().first().map(|range| *range.end()));
    for sequence in updates {
        if tracker.on_applied(sequence).is_ok() {
            assert!(sequence == 0 || tracker.is_applied(sequence));
        }
        check(&tracker);
        assert_eq!(SequenceTracker::from_bytes(&tracker.to_bytes()).as_ref(), Ok(&tracker));
    }
});

fn check(tracker: &SequenceTracker) {
    assert!(tracker.highest_known() >= tracker.highest_applied());
    assert!(tracker.highest_applied() >= tracker.contiguous_through());
    let missing = tracker.missing_ranges();
    assert!(missing.len() <= tracker.applied_range_count() + 1);
    let mut previous_end: Option<u64> = None;
    for range in &missing {
        assert!(range.start() <= range.end());
        assert!(*range.start() > tracker.contiguous_through());
        assert!(*range.end() <= tracker.highest_known());
        assert!(previous_end.is_none_or(|end| end < *range.start()));
        assert!(!tracker.is_applied(*range.start()) && !tracker.is_applied(*range.end()));
        previous_end = Some(*range.end());
    }
    if tracker.contiguous_through() > 0 {
        assert!(tracker.is_applied(1) && tracker.is_applied(tracker.contiguous_through()));
    }
}
