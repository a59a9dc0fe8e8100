//! The series listing (`diode-receiver series`, `/api/v1/series`): its columns and its rows.

use std::io::Write;

use diode_replica::SeriesInfo;

use super::output::{self, Cell, RowWriter};

/// Columns of the series listing.
pub fn series_columns(format: output::Format) -> Vec<&'static str> {
    match format {
        output::Format::Table => vec!["series", "type", "first", "last", "points_estimate"],
        _ => vec!["series", "name", "tags", "type", "mixed_kinds", "first", "last", "points_estimate"],
    }
}

/// Writes one catalog entry of the series listing.
pub fn write_series_row<W: Write>(
    info: &SeriesInfo,
    format: output::Format,
    out: &mut RowWriter<W>,
) -> std::io::Result<()> {
    let display = info.key.to_string();
    let kind = if info.mixed_kinds { format!("{} (mixed)", info.kind.name()) } else { info.kind.name().to_owned() };
    match format {
        output::Format::Table => out.write_row(&[
            Cell::Text(&display),
            Cell::Text(&kind),
            Cell::Time(info.first_timestamp_ns),
            Cell::Time(info.last_timestamp_ns),
            Cell::Count(info.point_count),
        ]),
        _ => out.write_row(&[
            Cell::Text(&display),
            Cell::Text(&info.key.name),
            Cell::Tags(&info.key.tags),
            Cell::Text(info.kind.name()),
            Cell::Flag(info.mixed_kinds),
            Cell::Time(info.first_timestamp_ns),
            Cell::Time(info.last_timestamp_ns),
            Cell::Count(info.point_count),
        ]),
    }
}
