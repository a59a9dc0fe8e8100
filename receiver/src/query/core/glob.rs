//! Choosing series by name: a small glob matcher over the display form of a [`SeriesKey`]
//! (`name` or `name{key=value,...}`) and "did you mean" suggestions by edit distance.
//!
//! `*` matches any run of characters, `/`, `{`, `=` and `,` included (so `plant1/*` lists every
//! series under `plant1`, tags and all); `?` matches exactly one character. Nothing else is special
//! and matching is case-sensitive, like the names themselves.

use diode_replica::SeriesInfo;

/// Longest glob accepted, in bytes. Series names are at most 512 bytes; tags add at most 32 × 2 ×
/// 256, so anything longer matches nothing useful and only costs time.
pub const MAX_PATTERN_BYTES: usize = 20_000;

/// How many suggestions an unknown-series error offers.
pub const SUGGESTIONS: usize = 3;

/// Longest name (or glob) suggestions are looked for, in bytes: a longer one is no typo of a
/// series name, and comparing it with every name would only cost time.
pub const MAX_SUGGESTION_NAME_BYTES: usize = 256;

/// Most catalog entries compared with an unknown name. A larger catalog is narrowed to the names
/// that sort nearest to it (half before, half after), so a typo near the end of a name still
/// finds it while the cost stays bounded whatever the catalog's size.
pub const MAX_SUGGESTION_CANDIDATES: usize = 100_000;

/// Whether `pattern` uses `*` or `?`.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether `text` matches `pattern` as a whole. Linear in practice: the classic two-pointer match
/// that backtracks only to the last `*` (worst case `O(text × pattern)`, never exponential).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0usize, 0usize);
    // Position in the pattern just after the last `*`, and the text position it was tried at.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p + 1, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                // Let the last `*` swallow one more character and retry from there.
                Some((after_star, tried_at)) => {
                    p = after_star;
                    t = tried_at + 1;
                    backtrack = Some((after_star, tried_at + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Levenshtein distance between `a` and `b` (in characters), or `None` once it is certain to
/// exceed `limit`: the cut-off keeps suggestions over a large catalog cheap.
pub fn edit_distance_within(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0usize; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        let mut row_minimum = current[0];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            row_minimum = row_minimum.min(current[j + 1]);
        }
        if row_minimum > limit {
            return None;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    Some(previous[b.len()]).filter(|&distance| distance <= limit)
}

/// The [`SUGGESTIONS`] display names nearest to `wanted` by edit distance (ties: alphabetical).
/// A tagged series is as near as the nearer of its display form and its bare name, so a typo in
/// the name still finds it. None for a `wanted` longer than [`MAX_SUGGESTION_NAME_BYTES`]; at
/// most [`MAX_SUGGESTION_CANDIDATES`] entries are compared.
pub fn suggestions(catalog: &[SeriesInfo], wanted: &str) -> Vec<String> {
    if wanted.len() > MAX_SUGGESTION_NAME_BYTES {
        return Vec::new();
    }
    // (distance, name), kept sorted, at most SUGGESTIONS long.
    let mut best: Vec<(usize, String)> = Vec::with_capacity(SUGGESTIONS + 1);
    for info in nearest_names(catalog, wanted, MAX_SUGGESTION_CANDIDATES) {
        let name = info.key.to_string();
        let limit = if best.len() == SUGGESTIONS { best[SUGGESTIONS - 1].0 } else { usize::MAX };
        let by_display = edit_distance_within(wanted, &name, limit);
        let by_name = if info.key.tags.is_empty() { None } else { edit_distance_within(wanted, &info.key.name, limit) };
        let Some(distance) = by_display.into_iter().chain(by_name).min() else { continue };
        let candidate = (distance, name);
        if best.len() == SUGGESTIONS && candidate >= best[SUGGESTIONS - 1] {
            continue;
        }
        let position = best.partition_point(|entry| *entry < candidate);
        best.insert(position, candidate);
        best.truncate(SUGGESTIONS);
    }
    best.into_iter().map(|(_, name)| name).collect()
}

/// `catalog` when it has at most `count` entries; otherwise the `count` entries whose names sort
/// nearest to `wanted`, half before it and half after (one pass, no copy of the names).
pub fn nearest_names<'c>(catalog: &'c [SeriesInfo], wanted: &str, count: usize) -> Vec<&'c SeriesInfo> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    if catalog.len() <= count {
        return catalog.iter().collect();
    }
    let half = count / 2;
    // The largest names below `wanted` (a min-heap drops the smallest) and the smallest at or
    // above it (a max-heap drops the largest).
    let mut below: BinaryHeap<Reverse<(&str, usize)>> = BinaryHeap::with_capacity(half + 1);
    let mut above: BinaryHeap<(&str, usize)> = BinaryHeap::with_capacity(count - half + 1);
    for (index, info) in catalog.iter().enumerate() {
        let name = &*info.key.name;
        if name < wanted {
            below.push(Reverse((name, index)));
            if below.len() > half {
                below.pop();
            }
        } else {
            above.push((name, index));
            if above.len() > count - half {
                above.pop();
            }
        }
    }
    let indices = below.into_iter().map(|Reverse((_, index))| index).chain(above.into_iter().map(|(_, index)| index));
    indices.map(|index| &catalog[index]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run_including_slashes_and_tags() {
        assert!(glob_matches("plant1/*/steam_temp", "plant1/boiler3/steam_temp"));
        assert!(glob_matches("plant1/*", "plant1/boiler3/steam_temp{unit=C}"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*temp*", "plant1/boiler3/steam_temp"));
        assert!(!glob_matches("plant1/*/steam_temp", "plant1/boiler3/steam_temp{unit=C}"));
        assert!(!glob_matches("plant2/*", "plant1/boiler3/steam_temp"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(glob_matches("boiler?", "boiler3"));
        assert!(glob_matches("b?iler", "bøiler"));
        assert!(!glob_matches("boiler?", "boiler"));
        assert!(!glob_matches("boiler?", "boiler33"));
    }

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(glob_matches("a/b", "a/b"));
        assert!(!glob_matches("a/b", "a/bc"));
        assert!(!glob_matches("A/b", "a/b"));
    }

    #[test]
    fn backtracking_finds_the_right_star_split() {
        assert!(glob_matches("*a*b", "xxaxxab"));
        assert!(glob_matches("a*b*c", "abbbbc"));
        assert!(!glob_matches("a*b*c", "abbbb"));
        // Many stars over a long near-miss stay fast (no exponential blow-up).
        let text = "a".repeat(5_000);
        assert!(!glob_matches(&format!("{}b", "*a".repeat(50)), &text));
    }

    fn catalog(names: impl IntoIterator<Item = String>) -> Vec<SeriesInfo> {
        names
            .into_iter()
            .enumerate()
            .map(|(id, name)| SeriesInfo {
                id: id as u32,
                key: diode_common::record::SeriesKey::new(name),
                kind: diode_common::record::ValueKind::F64,
                mixed_kinds: false,
                first_timestamp_ns: 0,
                last_timestamp_ns: 0,
                point_count: 1,
            })
            .collect()
    }

    #[test]
    fn names_longer_than_the_suggestion_limit_get_no_suggestions() {
        let catalog = catalog(["plant1/boiler3/steam_temp".to_owned()]);
        assert_eq!(suggestions(&catalog, "plant1/boiler3/steam_tmp"), vec!["plant1/boiler3/steam_temp"]);
        let long = format!("plant1/boiler3/steam_tmp{}", "x".repeat(MAX_SUGGESTION_NAME_BYTES));
        assert!(suggestions(&catalog, &long).is_empty());
    }

    #[test]
    fn a_large_catalog_is_narrowed_to_the_names_sorting_nearest() {
        let names = (0..1_000).map(|i| format!("plant/unit{i:04}/temp"));
        let catalog = catalog(names);
        let nearest: Vec<&str> =
            nearest_names(&catalog, "plant/unit0500/tmp", 4).iter().map(|info| &*info.key.name).collect();
        let mut sorted = nearest.clone();
        sorted.sort_unstable();
        // "plant/unit0500/temp" sorts before "plant/unit0500/tmp": two names below it, two above.
        assert_eq!(
            sorted,
            ["plant/unit0499/temp", "plant/unit0500/temp", "plant/unit0501/temp", "plant/unit0502/temp"]
        );
        assert_eq!(nearest_names(&catalog, "x", 2_000).len(), 1_000);
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance_within("kitten", "sitting", 10), Some(3));
        assert_eq!(edit_distance_within("", "abc", 10), Some(3));
        assert_eq!(edit_distance_within("same", "same", 0), Some(0));
        assert_eq!(edit_distance_within("kitten", "sitting", 2), None);
    }
}
