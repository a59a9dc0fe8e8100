//! How `audit verify` runs: its options, and the progress bars it shows on a terminal.

use std::ops::RangeInclusive;

/// How `audit verify` runs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only segments with a sequence in this range (in every stream) are checked; the points are
    /// compared over the data-time span those segments cover. `None`: everything.
    pub sequences: Option<RangeInclusive<u64>>,
    /// Most decoded points held in memory at once (about 30 bytes each); larger time windows are
    /// split by series, which costs extra decodes.
    pub memory_budget_points: u64,
    /// Worker threads for decoding and comparing.
    pub threads: usize,
    /// Findings listed in the report; all are counted.
    pub max_findings_listed: usize,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            sequences: None,
            memory_budget_points: 8_000_000,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8),
            max_findings_listed: 10_000,
            progress: false,
        }
    }
}

/// A progress bar on stderr, or a hidden one.
pub(super) fn progress_bar(visible: bool, length: u64, what: &str) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    let template = format!("{{spinner}} {what} [{{bar:40}}] {{human_pos}}/{{human_len}} {{per_sec}} eta {{eta}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
