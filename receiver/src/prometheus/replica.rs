//! The replica as a [`SampleSource`]: the query engine's scans ([`PointSource`]) turned into
//! numeric samples. Floats and integers as numbers, booleans as 0 and 1; strings are no samples;
//! points of bad quality (OPC UA severity Bad) are left out unless asked for, points of good and
//! uncertain quality kept.

use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::Severity;
use diode_replica::SeriesInfo;

use super::eval::{SampleBlocks, SampleSource, SeriesEntry};
use super::functions::Sample;
use super::mapping;
use crate::query::source::PointSource;

/// Samples from `source`, with or without bad-quality points.
pub struct ReplicaSamples<'a, S> {
    /// The replica's scans; the HTTP API passes them wrapped to stop at the query's deadline.
    pub source: &'a S,
    /// Whether points of bad quality (OPC UA severity Bad) are samples; uncertain and good
    /// ones always are.
    pub include_bad: bool,
}

impl<S: PointSource> SampleSource for ReplicaSamples<'_, S> {
    fn blocks(&self, series_id: u32, from_ns: i64, to_ns: i64) -> SampleBlocks<'_> {
        let include_bad = self.include_bad;
        Box::new(
            self.source
                .blocks(series_id, from_ns, to_ns)
                .map(move |block| block.map(|columns| samples(&columns, include_bad)).map_err(|e| e.to_string())),
        )
    }
}

/// The numeric samples of one block of columns.
pub fn samples(columns: &SeriesColumns, include_bad: bool) -> Vec<Sample> {
    let times = &columns.timestamps_ns;
    let kept = |row: usize| include_bad || columns.qualities[row].severity() != Severity::Bad;
    let sample = |row: usize, value: f64| Sample { timestamp_ns: times[row], value };
    match &columns.values {
        Values::F64(values) => (0..times.len()).filter(|&r| kept(r)).map(|r| sample(r, values[r])).collect(),
        Values::I64(values) => (0..times.len()).filter(|&r| kept(r)).map(|r| sample(r, values[r] as f64)).collect(),
        Values::Bool(values) => {
            (0..times.len()).filter(|&r| kept(r)).map(|r| sample(r, f64::from(u8::from(values[r])))).collect()
        }
        Values::String(_) => Vec::new(),
        Values::Mixed(values) => {
            (0..times.len()).filter(|&r| kept(r)).filter_map(|r| Some(sample(r, values[r].as_f64()?))).collect()
        }
    }
}

/// The catalog as queries see it: every series with its labels.
pub fn catalog_entries(catalog: &[SeriesInfo]) -> Vec<SeriesEntry> {
    catalog.iter().map(|info| SeriesEntry { id: info.id, labels: mapping::labels(&info.key) }).collect()
}
