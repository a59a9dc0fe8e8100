//! How a diode series appears to Prometheus clients, and back: its metric name and labels
//! ([`labels`]), the series a label set names ([`series_key`]), and label matchers over the
//! catalog ([`matches`]). Pure: series keys in, label sets out.
//!
//! - **Metric name** (`__name__`): the series name with each `/` written `:` and every other
//!   character outside `[A-Za-z0-9_:]` written `_`, with `_` put in front of a leading digit:
//!   `plant1/boiler3/steam_temp` is `plant1:boiler3:steam_temp`. Readable, but two names can
//!   share it (`a-b` and `a.b`), so it is not what identifies a series.
//! - **`diode_name`**: the series name exactly as stored. With the tags it identifies the series,
//!   so no two series ever share a label set, and the series comes back from its labels.
//! - **Tags**: a tag whose key is a valid Prometheus label name (`[A-Za-z_][A-Za-z0-9_]*`) that
//!   neither starts with `__` (reserved by Prometheus) nor with `diode_` (reserved here) keeps its
//!   key; any other key is written `diode_tag_` followed by the lowercase hex of its UTF-8 bytes
//!   (`unit-of` → `diode_tag_756e69742d6f66`). Kept keys never start with `diode_`, and hex is
//!   one-to-one, so two tag keys never share a label name. Values are kept as they are.

use diode_common::record::SeriesKey;

use super::parse::Matcher;

/// The label every series carries with its name as stored.
pub const NAME_LABEL: &str = "diode_name";
/// Prometheus's metric name label.
pub const METRIC_NAME_LABEL: &str = "__name__";
/// The start of a label name that carries a tag key in hex.
pub const ESCAPED_TAG_PREFIX: &str = "diode_tag_";

/// A label set, sorted by label name, names unique.
pub type Labels = Vec<(String, String)>;

/// The metric name of a series named `name`.
pub fn metric_name(name: &str) -> String {
    let mut metric = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        metric.push('_');
    }
    for c in name.chars() {
        metric.push(match c {
            '/' => ':',
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => c,
            _ => '_',
        });
    }
    metric
}

fn is_plain_label_name(key: &str) -> bool {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with("__")
        && !key.starts_with("diode_")
}

/// The label name of a tag key.
pub fn label_name(tag_key: &str) -> String {
    if is_plain_label_name(tag_key) {
        return tag_key.to_owned();
    }
    let mut name = String::with_capacity(ESCAPED_TAG_PREFIX.len() + 2 * tag_key.len());
    name.push_str(ESCAPED_TAG_PREFIX);
    for byte in tag_key.bytes() {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// The tag key a label name stands for; `None` for `__name__`, `diode_name` and names no tag
/// key maps to.
pub fn tag_key(label: &str) -> Option<String> {
    if let Some(hex) = label.strip_prefix(ESCAPED_TAG_PREFIX) {
        if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).ok()).collect();
        let key = String::from_utf8(bytes?).ok()?;
        // Only keys that are not kept as they are were escaped.
        return (!is_plain_label_name(&key)).then_some(key);
    }
    is_plain_label_name(label).then(|| label.to_owned())
}

/// The labels of a series: `__name__`, `diode_name` and one per tag, sorted by name.
pub fn labels(key: &SeriesKey) -> Labels {
    let mut labels = Vec::with_capacity(key.tags.len() + 2);
    labels.push((METRIC_NAME_LABEL.to_owned(), metric_name(&key.name)));
    labels.push((NAME_LABEL.to_owned(), key.name.to_string()));
    labels.extend(key.tags.iter().map(|(k, v)| (label_name(k), v.clone())));
    labels.sort();
    labels
}

/// The series a full label set (as [`labels`] makes it) names.
pub fn series_key(labels: &[(String, String)]) -> Result<SeriesKey, String> {
    let mut name = None;
    let mut tags = Vec::new();
    for (label, value) in labels {
        match label.as_str() {
            METRIC_NAME_LABEL => {}
            NAME_LABEL => name = Some(value.clone()),
            other => match tag_key(other) {
                Some(key) => tags.push((key, value.clone())),
                None => return Err(format!("label {other:?} stands for no diode tag")),
            },
        }
    }
    let name = name.ok_or_else(|| format!("the label set has no {NAME_LABEL} label"))?;
    Ok(SeriesKey::with_tags(name, tags))
}

/// The value of `name` in `labels` ("" when absent, as Prometheus reads a missing label).
pub fn label_value<'l>(labels: &'l [(String, String)], name: &str) -> &'l str {
    labels.iter().find(|(label, _)| label == name).map_or("", |(_, value)| value.as_str())
}

/// Whether `labels` passes every matcher of a selector.
pub fn matches(matchers: &[Matcher], labels: &[(String, String)]) -> bool {
    matchers.iter().all(|matcher| matcher.accepts(label_value(labels, &matcher.label)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(name: &str, tags: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::with_tags(name, tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Labels {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_plant_tag_path_reads_as_a_metric_name_and_keeps_its_name_in_a_label() {
        let labels = labels(&key("plant1/boiler3/steam_temp", &[("unit", "C")]));
        assert_eq!(
            labels,
            pairs(&[
                ("__name__", "plant1:boiler3:steam_temp"),
                ("diode_name", "plant1/boiler3/steam_temp"),
                ("unit", "C")
            ])
        );
        assert_eq!(metric_name("3rd-line/flow.rate µ"), "_3rd_line:flow_rate__");
    }

    #[test]
    fn tag_keys_that_are_not_label_names_or_are_reserved_are_written_in_hex() {
        assert_eq!(label_name("unit-of"), "diode_tag_756e69742d6f66");
        assert_eq!(label_name("diode_name"), "diode_tag_64696f64655f6e616d65");
        assert_eq!(label_name("__name__"), "diode_tag_5f5f6e616d655f5f");
        assert_eq!(label_name("site_id"), "site_id");
        assert_eq!(tag_key("diode_tag_756e69742d6f66").as_deref(), Some("unit-of"));
        // Hex of a key that would have been kept is no tag's label name.
        assert_eq!(tag_key(&format!("{ESCAPED_TAG_PREFIX}{}", "75")), None);
        assert_eq!(tag_key("diode_tag_zz"), None);
    }

    #[test]
    fn series_whose_metric_names_collide_keep_distinct_label_sets() {
        let a = labels(&key("a-b", &[]));
        let b = labels(&key("a.b", &[]));
        assert_eq!(label_value(&a, "__name__"), label_value(&b, "__name__"));
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn every_series_comes_back_from_its_labels(
            name in "[a-z0-9/_.:-]{1,12}",
            tags in proptest::collection::btree_map("[a-zA-Z0-9_.-]{1,8}", "[ -~]{1,6}", 0..4),
        ) {
            let key = SeriesKey::with_tags(name, tags.into_iter().collect());
            let labels = labels(&key);
            prop_assert_eq!(series_key(&labels).unwrap(), key);
        }

        #[test]
        fn distinct_tag_keys_get_distinct_label_names(a in "[ -~]{1,8}", b in "[ -~]{1,8}") {
            prop_assume!(a != b);
            prop_assert_ne!(label_name(&a), label_name(&b));
        }
    }
}
