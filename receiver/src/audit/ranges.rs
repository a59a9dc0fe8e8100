//! Ascending, disjoint sequence ranges: what the tracker comparison computes with.

use std::ops::RangeInclusive;

/// Ascending, disjoint ranges `a` minus ascending, disjoint ranges `b`.
pub(super) fn subtract_ranges(a: &[RangeInclusive<u64>], b: &[RangeInclusive<u64>]) -> Vec<RangeInclusive<u64>> {
    let mut out = Vec::new();
    let mut cut = b.iter().peekable();
    for range in a {
        let (mut start, end) = (*range.start(), *range.end());
        let mut exhausted = false;
        while let Some(remove) = cut.peek() {
            if *remove.end() < start {
                cut.next();
                continue;
            }
            if *remove.start() > end {
                break;
            }
            if *remove.start() > start {
                out.push(start..=*remove.start() - 1);
            }
            match remove.end().checked_add(1) {
                Some(next) if next <= end => {
                    start = next;
                    cut.next();
                }
                _ => {
                    exhausted = true;
                    break;
                }
            }
        }
        if !exhausted {
            out.push(start..=end);
        }
    }
    out
}

/// Intersects ascending, disjoint ranges with one range.
pub(super) fn clip_ranges(ranges: &[RangeInclusive<u64>], within: &RangeInclusive<u64>) -> Vec<RangeInclusive<u64>> {
    ranges
        .iter()
        .filter_map(|range| {
            let start = (*range.start()).max(*within.start());
            let end = (*range.end()).min(*within.end());
            (start <= end).then_some(start..=end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtracting_ranges_leaves_what_only_the_first_holds() {
        assert_eq!(subtract_ranges(&[1..=10], &[3..=4, 7..=7]), vec![1..=2, 5..=6, 8..=10]);
        assert_eq!(subtract_ranges(&[1..=10], &[0..=20]), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(subtract_ranges(&[1..=3, 5..=9], &[3..=5]), vec![1..=2, 6..=9]);
        assert_eq!(subtract_ranges(&[1..=u64::MAX], &[5..=u64::MAX]), vec![1..=4]);
        assert_eq!(subtract_ranges(&[4..=6], &[]), vec![4..=6]);
    }

    #[test]
    fn clipping_keeps_the_overlap() {
        assert_eq!(clip_ranges(&[1..=3, 5..=9], &(2..=6)), vec![2..=3, 5..=6]);
    }
}
