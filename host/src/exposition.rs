//! The Prometheus text exposition format, as both appliances' `/metrics` write it.

/// `text` as a label value: backslash, double quote and newline escaped.
pub fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backslashes_quotes_and_newlines_are_escaped() {
        assert_eq!(label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
