//! Picking series from the catalog by name: the one matcher behind `query --series`,
//! `series --match` and `audit proof --series`, and the "no such series" message with the nearest
//! names.

use diode_replica::SeriesInfo;

use super::glob;

/// How a name picks series, by their display form (`name` or `name{key=value,...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector<'a> {
    /// Every series.
    All,
    /// A glob (`*`, `?`) over the display form; without those, an exact display form or a bare
    /// name (every tag set of it). How queries and listings pick.
    Pattern(&'a str),
    /// Exactly one display form. How a proof names its series.
    DisplayForm(&'a str),
}

impl Selector<'_> {
    /// Whether the series `info`, shown as `display`, answers to this selector.
    pub fn matches(self, info: &SeriesInfo, display: &str) -> bool {
        match self {
            Selector::All => true,
            Selector::Pattern(pattern) if glob::is_glob(pattern) => glob::glob_matches(pattern, display),
            Selector::Pattern(name) => display == name || &*info.key.name == name,
            Selector::DisplayForm(name) => display == name,
        }
    }
}

/// The series of `catalog` that `selector` picks, sorted by display form.
pub fn matching_series<'c>(catalog: &'c [SeriesInfo], selector: Selector<'_>) -> Vec<&'c SeriesInfo> {
    let mut chosen: Vec<(String, &SeriesInfo)> = catalog
        .iter()
        .filter_map(|info| {
            let display = info.key.to_string();
            selector.matches(info, &display).then_some((display, info))
        })
        .collect();
    chosen.sort_by(|a, b| a.0.cmp(&b.0));
    chosen.into_iter().map(|(_, info)| info).collect()
}

/// The series `selector` (a [`Selector::Pattern`]) picks from `catalog`, sorted by display form;
/// an error with the nearest names when it picks none.
pub fn select_series(catalog: &[SeriesInfo], selector: &str) -> Result<Vec<SeriesInfo>, NoSeries> {
    let chosen = matching_series(catalog, Selector::Pattern(selector));
    if chosen.is_empty() {
        return Err(NoSeries::new(catalog, selector));
    }
    Ok(chosen.into_iter().cloned().collect())
}

/// The catalog entries a `--match` glob (or exact name) picks, sorted by display form; all when
/// `pattern` is `None`. An empty answer is not an error for listings.
pub fn list_series(catalog: Vec<SeriesInfo>, pattern: Option<&str>) -> Vec<SeriesInfo> {
    let selector = pattern.map_or(Selector::All, Selector::Pattern);
    matching_series(&catalog, selector).into_iter().cloned().collect()
}

/// No series answers to a selector: the message says so and names the nearest series.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoSeries(String);

/// Bytes of a selector an error message repeats.
const ECHOED_SELECTOR_BYTES: usize = 256;

impl NoSeries {
    /// The message for `selector`, with the nearest names of `catalog` (see
    /// [`glob::suggestions`], whose cost is bounded: run it off an async worker all the same).
    pub fn new(catalog: &[SeriesInfo], selector: &str) -> NoSeries {
        let echoed = if selector.len() > ECHOED_SELECTOR_BYTES {
            let cut = (0..=ECHOED_SELECTOR_BYTES).rev().find(|&at| selector.is_char_boundary(at)).unwrap_or(0);
            format!("{:?}… ({} bytes)", &selector[..cut], selector.len())
        } else {
            format!("{selector:?}")
        };
        let opening = if glob::is_glob(selector) {
            format!("no series matches {echoed}")
        } else {
            format!("no series named {echoed}")
        };
        let suggestions = glob::suggestions(catalog, selector);
        if catalog.is_empty() {
            NoSeries(format!("{opening}; the replica holds no series yet"))
        } else if suggestions.is_empty() {
            NoSeries(format!("{opening}; list the series with `diode-receiver series` or /api/v1/series"))
        } else {
            NoSeries(format!("{opening}; did you mean: {}", suggestions.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diode_common::record::{SeriesKey, ValueKind};

    fn info(id: u32, key: SeriesKey) -> SeriesInfo {
        SeriesInfo {
            id,
            key,
            kind: ValueKind::F64,
            mixed_kinds: false,
            first_timestamp_ns: 0,
            last_timestamp_ns: 0,
            point_count: 1,
        }
    }

    fn catalog() -> Vec<SeriesInfo> {
        vec![
            info(0, SeriesKey::new("plant1/boiler3/steam_temp")),
            info(1, SeriesKey::new("plant1/boiler3/steam_pressure")),
            info(2, SeriesKey::with_tags("plant1/boiler4/steam_temp", vec![("unit".into(), "C".into())])),
            info(3, SeriesKey::new("plant2/pump1/flow")),
        ]
    }

    #[test]
    fn unknown_series_suggest_the_three_nearest_names() {
        let message = select_series(&catalog(), "plant1/boiler3/steam_tmp").unwrap_err().to_string();
        assert_eq!(
            message,
            "no series named \"plant1/boiler3/steam_tmp\"; did you mean: plant1/boiler3/steam_temp, \
             plant1/boiler4/steam_temp{unit=C}, plant1/boiler3/steam_pressure"
        );
        let message = select_series(&[], "x").unwrap_err().to_string();
        assert!(message.contains("holds no series yet"), "{message}");
    }

    #[test]
    fn a_very_long_unknown_selector_gets_no_suggestions_and_is_echoed_cut_short() {
        let selector = format!("plant1/boiler3/steam_tmp{}", "y".repeat(20_000));
        let message = select_series(&catalog(), &selector).unwrap_err().to_string();
        assert!(!message.contains("did you mean"), "{message}");
        assert!(message.contains("(20024 bytes)") && message.len() < 500, "{message}");
        assert!(message.contains("list the series"), "{message}");
    }

    #[test]
    fn globs_and_bare_names_select_sorted_series() {
        let chosen: Vec<u32> =
            select_series(&catalog(), "plant1/*/steam_temp*").unwrap().iter().map(|i| i.id).collect();
        assert_eq!(chosen, vec![0, 2]);
        // A bare name selects its tagged series; the display form selects it too.
        assert_eq!(select_series(&catalog(), "plant1/boiler4/steam_temp").unwrap()[0].id, 2);
        assert_eq!(select_series(&catalog(), "plant1/boiler4/steam_temp{unit=C}").unwrap()[0].id, 2);
        assert!(select_series(&catalog(), "plant3/*").unwrap_err().to_string().starts_with("no series matches"));
        assert_eq!(list_series(catalog(), Some("plant2/*")).len(), 1);
        assert_eq!(list_series(catalog(), None).len(), 4);
    }
}
