//! Queries over the replica for IT analysts: raw ranges, aggregates over windows, interpolated
//! values and latest values, as CLI commands (`cli`) and read-only HTTP routes (`http`).
//!
//! The arithmetic is pure and streams: [`aggregate`] and [`interpolate`] turn an ascending
//! stream of points (blocks of columns, for aggregates) into rows, [`glob`] picks series, [`output`] writes rows as they come.
//! [`source`] says where points come from (a replica the query owns, or the running receiver's,
//! read a batch per lock). [`run_query`] ties them together for one request.
//!
//! # Definitions
//!
//! **Range.** `--from`/`--to` (`from`/`to`) are both inclusive; from > to is an error. Defaults:
//! the last hour (`-1h` to `now`); for `--latest`, no bound.
//!
//! **Selection.** `--series` is a glob (`*` any run of characters, `/` and tags included; `?` one
//! character) over the display form `name` or `name{key=value,…}`, or, without `*`/`?`, an exact
//! display form or a bare name (which selects every tag set of that name). Series come out sorted
//! by display form. `--good-only` keeps only good-quality points (OPC UA severity Good); otherwise
//! every point counts with its value, whatever its quality, and its quality is shown.
//!
//! **Windows** (`--every D`). Window k is `[k·D, (k+1)·D)` in ns since the Unix epoch (UTC), so
//! a point exactly on a boundary belongs to the window that starts there and windows of a day
//! start at 00:00 UTC. Every window that holds an instant of the range is reported, **whole**: it
//! aggregates all its points even where it reaches before `from` or after `to`, so a window's
//! figures never depend on the range asked. The last window may still be filling (`to` = now).
//! Empty windows are reported: `count` 0 and null for every other aggregate (except `twa`, below).
//!
//! **Aggregates** over the window's selected points: `count` (points, strings included), `min`,
//! `max`, `sum`, `mean` (over numbers: floats, integers, booleans as 0/1; strings have none),
//! `stddev` (the *sample* standard deviation, dividing by n − 1; null below two numbers),
//! `first` and `last` (the values of the earliest and latest point, as stored).
//!
//! **`twa`**, the time-weighted average, follows OPC UA Part 13 TimeAverage2 (simple bounds):
//! each point *governs* the time from its timestamp to the next point's. The window average is
//! the area under the signal divided by the time covered, both over `[start, end)` only:
//! - carry-in: the last point before the window's start governs the window up to its first point
//!   (`step`: its value holds; `linear`: the line from it to the next point, cut at the start);
//! - `step`: a value holds until the next point; `linear`: straight lines between consecutive
//!   points, cut at both window edges (the end edge uses the first point after the window);
//! - the series' last point governs to the end of its own window (no later point to draw a line
//!   to, so its value holds there, as TimeAverage2 does without an end bound); windows after the
//!   series' last point, and time before its first point, have no data: left out;
//! - without `--good-only`, every point counts with its value; with `--good-only`, time governed
//!   by a non-good point is left out of both the area and the covered time (TimeAverage2: "the
//!   time interval is reduced by the duration of the non-Good data"), and a line that would end
//!   at a non-good point holds its good starting value instead;
//! - strings govern time that is left out, like non-good points;
//! - a window whose covered time is zero (no data at all) has a null `twa`; an empty window
//!   between two points has one (the carried value, or the mean of the line across it).
//!
//! **Interpolation** (`--interpolate D`): instants `from, from + D, …` up to `to` (aligned to
//! `--from`, not the epoch). At each instant: the point at exactly that time if there is one;
//! otherwise, between the last point before and the first point after, `linear` draws the
//! straight line (floats and integers, as a float; quality the worse of the two; booleans and
//! strings take the earlier value) and `previous` takes the earlier point. No extrapolation:
//! before the first point and after the last, the value is null (the instant is still listed).
//! With `--good-only` non-good points are skipped and the neighbours are the nearest good points
//! (OPC UA's interpolated bounds).
//!
//! **Latest** (`--latest`): the last point of each series within the range (by default, the last
//! point stored); with `--good-only`, the last good one.
//!
//! **Pagination** (HTTP `limit`): see [`http`].

pub mod aggregate;
pub mod cli;
pub mod glob;
pub mod http;
pub mod interpolate;
mod lookahead;
pub mod output;
pub mod source;

use std::io::Write;

use diode_common::record::{MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, Quality, Value, ValueKind};

use crate::time::{format_rfc3339, parse_duration, parse_time};
use aggregate::{
    Aggregate, AggregateValue, TwaMode, WindowSettings, Windows, carry_in_from, window_count, window_start,
};
use diode_replica::{Point, ReplicaError, SeriesInfo};
use interpolate::{Interpolated, Method, instant_count};
use output::{Cell, RowWriter};
use source::{PointSource, last_point_before};

/// Most windows or interpolation instants one series may produce in one query: beyond this the
/// step is surely a typo (1ms over a year), and the answer would be mostly empty rows.
pub const MAX_ROWS_PER_SERIES: u64 = 100_000_000;

/// Why a query was refused or failed. Messages name the input and say what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// An unknown series or a glob matching nothing.
    #[error("{0}")]
    NotFound(String),
    /// A bad parameter: the message is complete.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// How parameters are named in messages: `--every` on the command line, `every` over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Cli,
    Http,
}

impl Syntax {
    pub fn name(self, parameter: &str) -> String {
        match self {
            Syntax::Cli => format!("--{}", parameter.replace('_', "-")),
            Syntax::Http => parameter.to_owned(),
        }
    }
}

/// What a query computes per series.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The recorded points.
    Raw,
    /// The last point.
    Latest,
    Aggregate(WindowSettings),
    Interpolate {
        step_ns: i64,
        method: Method,
    },
}

/// A parsed, checked query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    pub selector: String,
    pub from_ns: i64,
    pub to_ns: i64,
    pub mode: Mode,
    pub good_only: bool,
}

/// A query as typed (CLI flags or HTTP parameters), before checking.
#[derive(Debug, Clone, Default)]
pub struct QueryText {
    pub series: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub every: Option<String>,
    pub agg: Option<String>,
    pub twa_mode: Option<TwaMode>,
    pub interpolate: Option<String>,
    pub method: Option<Method>,
    pub latest: bool,
    pub good_only: bool,
}

/// A positive duration, with a message that names the parameter, the value and an example.
pub fn parse_step(syntax: Syntax, parameter: &str, text: &str) -> Result<i64, QueryError> {
    let name = syntax.name(parameter);
    let example = "such as 1m, 15s, 1h30m or 500ms";
    if text.trim_start().starts_with('-') {
        return Err(QueryError::Invalid(format!("{name} {text:?} is negative; give a positive duration {example}")));
    }
    if let Ok(number) = text.trim().parse::<u64>() {
        let problem = if number == 0 { "is zero" } else { "has no unit" };
        return Err(QueryError::Invalid(format!("{name} {text:?} {problem}; give a positive duration {example}")));
    }
    match parse_duration(text) {
        Ok(0) => Err(QueryError::Invalid(format!("{name} {text:?} is zero; give a positive duration {example}"))),
        Ok(ns) => Ok(ns),
        Err(error) => Err(QueryError::Invalid(format!(
            "{name} {text:?} is not a duration ({error:#}); give a positive duration {example}"
        ))),
    }
}

fn parse_time_parameter(syntax: Syntax, parameter: &str, text: &str, now_ns: i64) -> Result<i64, QueryError> {
    parse_time(text, now_ns).map_err(|error| QueryError::Invalid(format!("{} {error:#}", syntax.name(parameter))))
}

impl QueryRequest {
    /// Checks a typed query. `now_ns` anchors `now` and relative times.
    pub fn parse(text: &QueryText, syntax: Syntax, now_ns: i64) -> Result<QueryRequest, QueryError> {
        let name = |parameter: &str| syntax.name(parameter);
        let invalid = |message: String| Err(QueryError::Invalid(message));
        let selector = text.series.trim().to_owned();
        if selector.is_empty() {
            return invalid(format!(
                "{} is empty; give a series name or a glob such as plant1/*/steam_temp",
                name("series")
            ));
        }
        if selector.len() > glob::MAX_PATTERN_BYTES {
            return invalid(format!(
                "{} is {} bytes; the limit is {}",
                name("series"),
                selector.len(),
                glob::MAX_PATTERN_BYTES
            ));
        }
        let conflicting = |a: &str, b: &str| invalid(format!("{} and {} cannot be combined", name(a), name(b)));
        if text.latest {
            for (given, parameter) in [
                (text.every.is_some(), "every"),
                (text.agg.is_some(), "agg"),
                (text.interpolate.is_some(), "interpolate"),
            ] {
                if given {
                    return conflicting("latest", parameter);
                }
            }
        }
        if text.interpolate.is_some() {
            for (given, parameter) in [(text.every.is_some(), "every"), (text.agg.is_some(), "agg")] {
                if given {
                    return conflicting("interpolate", parameter);
                }
            }
        }
        if text.agg.is_some() && text.every.is_none() {
            return invalid(format!(
                "{} needs {} (the window length), e.g. {} 1m",
                name("agg"),
                name("every"),
                name("every")
            ));
        }
        if text.method.is_some() && text.interpolate.is_none() {
            return invalid(format!("{} applies only with {}", name("method"), name("interpolate")));
        }

        let (default_from, default_to) = if text.latest { ("", "") } else { ("-1h", "now") };
        let from_ns = match text.from.as_deref() {
            Some(from) => parse_time_parameter(syntax, "from", from, now_ns)?,
            None if text.latest => i64::MIN,
            None => parse_time(default_from, now_ns).expect("valid default"),
        };
        let to_ns = match text.to.as_deref() {
            Some(to) => parse_time_parameter(syntax, "to", to, now_ns)?,
            None if text.latest => i64::MAX,
            None => parse_time(default_to, now_ns).expect("valid default"),
        };
        if from_ns > to_ns {
            return invalid(format!(
                "{} {} is after {} {}: the range is empty; swap them or move {}",
                name("from"),
                format_rfc3339(from_ns),
                name("to"),
                format_rfc3339(to_ns),
                name("from"),
            ));
        }
        // No point lies outside the record limits; clamping keeps window arithmetic in range.
        let (from_ns, to_ns) =
            (from_ns.clamp(MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS), to_ns.clamp(MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS));

        let mode = if text.latest {
            Mode::Latest
        } else if let Some(step) = &text.interpolate {
            let step_ns = parse_step(syntax, "interpolate", step)?;
            let count = instant_count(from_ns, to_ns, step_ns);
            within_row_limit(
                count,
                || format!("{} {step} makes {count} instants", name("interpolate")),
                "a longer step",
            )?;
            Mode::Interpolate { step_ns, method: text.method.unwrap_or_default() }
        } else if let Some(every) = &text.every {
            let every_ns = parse_step(syntax, "every", every)?;
            let count = window_count(from_ns, to_ns, every_ns);
            within_row_limit(count, || format!("{} {every} makes {count} windows", name("every")), "longer windows")?;
            let aggregates = match &text.agg {
                Some(list) => {
                    Aggregate::parse_list(list).map_err(|e| QueryError::Invalid(format!("{} {e}", name("agg"))))?
                }
                None => vec![Aggregate::Mean],
            };
            if text.twa_mode.is_some() && !aggregates.contains(&Aggregate::Twa) {
                return invalid(format!("{} applies only with {} twa", name("twa_mode"), name("agg")));
            }
            Mode::Aggregate(WindowSettings {
                every_ns,
                aggregates,
                twa_mode: text.twa_mode.unwrap_or_default(),
                good_only: text.good_only,
            })
        } else {
            if text.twa_mode.is_some() {
                return invalid(format!("{} applies only with {} twa", name("twa_mode"), name("agg")));
            }
            Mode::Raw
        };
        Ok(QueryRequest { selector, from_ns, to_ns, mode, good_only: text.good_only })
    }

    /// Column names of the rows this query writes.
    pub fn columns(&self) -> Vec<&'static str> {
        match &self.mode {
            Mode::Aggregate(settings) => {
                let mut columns = vec!["series", "window_start"];
                columns.extend(settings.aggregates.iter().map(|a| a.name()));
                columns
            }
            _ => vec!["series", "time", "value", "quality"],
        }
    }
}

/// The series `selector` picks from `catalog`, sorted by display form; an error with the nearest
/// names when it picks none.
pub fn select_series(catalog: &[SeriesInfo], selector: &str) -> Result<Vec<SeriesInfo>, QueryError> {
    let mut chosen: Vec<(String, SeriesInfo)> = catalog
        .iter()
        .filter_map(|info| {
            let display = info.key.to_string();
            let hit = if glob::is_glob(selector) {
                glob::glob_matches(selector, &display)
            } else {
                display == selector || info.key.name == selector
            };
            hit.then(|| (display, info.clone()))
        })
        .collect();
    if chosen.is_empty() {
        return Err(not_found(catalog, selector));
    }
    chosen.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(chosen.into_iter().map(|(_, info)| info).collect())
}

fn not_found(catalog: &[SeriesInfo], selector: &str) -> QueryError {
    let opening = if glob::is_glob(selector) {
        format!("no series matches {selector:?}")
    } else {
        format!("no series named {selector:?}")
    };
    let suggestions = glob::suggestions(catalog, selector);
    if suggestions.is_empty() {
        QueryError::NotFound(format!("{opening}; the replica holds no series yet"))
    } else {
        QueryError::NotFound(format!("{opening}; did you mean: {}", suggestions.join(", ")))
    }
}

/// Refuses numeric aggregates over a series that only ever held strings.
pub fn check_kinds(request: &QueryRequest, series: &[SeriesInfo]) -> Result<(), QueryError> {
    let Mode::Aggregate(settings) = &request.mode else { return Ok(()) };
    let Some(numeric) = settings.aggregates.iter().find(|a| a.is_numeric()) else { return Ok(()) };
    match series.iter().find(|info| info.kind == ValueKind::String && !info.mixed_kinds) {
        Some(info) => Err(QueryError::Invalid(format!(
            "{} holds strings, which have no {}; use count, first or last for it, or select only numeric series",
            info.key,
            numeric.name()
        ))),
        None => Ok(()),
    }
}

/// Where a paginated query resumes: series sorting before `series` are done; `series` starts at
/// the request's `from`, and later series at `later_from_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub series: String,
    pub later_from_ns: i64,
}

/// Where the next page starts: `series` at `from_ns`, later series at the original `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPage {
    pub series: String,
    pub from_ns: i64,
}

/// Refuses a query whose rows per series (`count`, as `what` says) exceed the limit, suggesting
/// `remedy` or a shorter range.
fn within_row_limit(count: u64, what: impl FnOnce() -> String, remedy: &str) -> Result<(), QueryError> {
    if count <= MAX_ROWS_PER_SERIES {
        return Ok(());
    }
    Err(QueryError::Invalid(format!(
        "{} per series over this range; the limit is {MAX_ROWS_PER_SERIES}: use {remedy} or a shorter range",
        what()
    )))
}

/// What [`run_query`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutcome {
    pub rows: u64,
    /// Set when the limit cut the answer short.
    pub next: Option<NextPage>,
}

/// One output row before formatting.
enum Row {
    Point { timestamp_ns: i64, value: Option<(Value, Quality)> },
    Window(aggregate::WindowRow),
}

impl Row {
    fn position_ns(&self) -> i64 {
        match self {
            Row::Point { timestamp_ns, .. } => *timestamp_ns,
            Row::Window(window) => window.start_ns,
        }
    }

    fn write<W: Write>(&self, series: &str, out: &mut RowWriter<W>) -> std::io::Result<()> {
        match self {
            Row::Point { timestamp_ns, value: Some((value, quality)) } => out.write_row(&[
                Cell::Text(series),
                Cell::Time(*timestamp_ns),
                Cell::Value(value),
                Cell::Quality(*quality),
            ]),
            Row::Point { timestamp_ns, value: None } => {
                out.write_row(&[Cell::Text(series), Cell::Time(*timestamp_ns), Cell::Null, Cell::Null])
            }
            Row::Window(window) => {
                let mut cells = Vec::with_capacity(window.values.len() + 2);
                cells.push(Cell::Text(series));
                cells.push(Cell::Time(window.start_ns));
                cells.extend(window.values.iter().map(|value| match value {
                    AggregateValue::Null => Cell::Null,
                    AggregateValue::Count(n) => Cell::Count(*n),
                    AggregateValue::Number(x) => Cell::Number(*x),
                    AggregateValue::Value(v) => Cell::Value(v),
                }));
                out.write_row(&cells)
            }
        }
    }
}

type Rows<'a> = Box<dyn Iterator<Item = Result<Row, ReplicaError>> + 'a>;

/// The rows of one series from `from_ns` on.
fn series_rows<'a, S: PointSource>(
    source: &'a S,
    info: &SeriesInfo,
    request: &QueryRequest,
    from_ns: i64,
) -> Result<Rows<'a>, ReplicaError> {
    let (id, to_ns, good_only) = (info.id, request.to_ns, request.good_only);
    let accept = move |point: &Point| !good_only || point.quality.is_good();
    let point_row =
        |point: Point| Row::Point { timestamp_ns: point.timestamp_ns, value: Some((point.value, point.quality)) };
    Ok(match &request.mode {
        Mode::Raw => Box::new(
            source
                .scan(id, from_ns, to_ns)
                .filter(move |point| match point {
                    Ok(point) => accept(point),
                    Err(_) => true,
                })
                .map(move |point| point.map(point_row)),
        ),
        Mode::Latest => {
            let upper_ns = to_ns.min(info.last_timestamp_ns);
            let earliest_ns = from_ns.max(info.first_timestamp_ns);
            let latest = last_point_before(source, id, upper_ns.saturating_add(1), earliest_ns, accept)?;
            Box::new(latest.map(|point| Ok(point_row(point))).into_iter())
        }
        Mode::Aggregate(settings) => {
            let first_start_ns = window_start(from_ns, settings.every_ns);
            let end_ns = window_start(to_ns, settings.every_ns).saturating_add(settings.every_ns);
            let (carry_in, scan_to_ns) = if settings.wants(Aggregate::Twa) {
                // Any quality: a non-good carry-in still ends the value before it.
                let carry_in = last_point_before(source, id, first_start_ns, info.first_timestamp_ns, |_| true)?;
                (carry_in, i64::MAX)
            } else {
                (None, end_ns - 1)
            };
            let carry_in = carry_in.map(|point| carry_in_from(&point, settings.good_only));
            let blocks = source.blocks(id, first_start_ns, scan_to_ns);
            Box::new(Windows::new(settings.clone(), from_ns, to_ns, carry_in, blocks).map(|row| row.map(Row::Window)))
        }
        Mode::Interpolate { step_ns, method } => {
            let carry_in = last_point_before(source, id, from_ns, info.first_timestamp_ns, accept)?;
            let points = source.scan(id, from_ns, i64::MAX);
            Box::new(
                Interpolated::new(*method, good_only, from_ns, to_ns, *step_ns, carry_in, points)
                    .map(|row| row.map(|row| Row::Point { timestamp_ns: row.timestamp_ns, value: row.value })),
            )
        }
    })
}

/// Runs `request` over `series` (from [`select_series`]), writing rows to `out` as they are
/// computed. With a `limit`, stops before the row that would exceed it and says where the next
/// page starts. With `resume`, continues a previous page.
pub fn run_query<S: PointSource, W: Write>(
    source: &S,
    series: &[SeriesInfo],
    request: &QueryRequest,
    limit: Option<u64>,
    resume: Option<&Resume>,
    out: &mut RowWriter<W>,
) -> Result<QueryOutcome, QueryError> {
    let mut written = 0u64;
    for info in series {
        let display = info.key.to_string();
        let from_ns = match resume {
            Some(resume) if display < resume.series => continue,
            Some(resume) if display > resume.series => resume.later_from_ns,
            _ => request.from_ns,
        };
        for row in series_rows(source, info, request, from_ns)? {
            let row = row?;
            if limit.is_some_and(|limit| written >= limit) {
                let next = NextPage { series: display, from_ns: row.position_ns() };
                return Ok(QueryOutcome { rows: written, next: Some(next) });
            }
            row.write(&display, out)?;
            written += 1;
        }
    }
    Ok(QueryOutcome { rows: written, next: None })
}

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

/// The catalog entries a `--match` glob (or exact name) picks, sorted by display form; all when
/// `pattern` is `None`. An empty answer is not an error for listings.
pub fn list_series(catalog: Vec<SeriesInfo>, pattern: Option<&str>) -> Vec<SeriesInfo> {
    let mut listed: Vec<(String, SeriesInfo)> = catalog
        .into_iter()
        .map(|info| (info.key.to_string(), info))
        .filter(|(display, info)| match pattern {
            None => true,
            Some(pattern) if glob::is_glob(pattern) => glob::glob_matches(pattern, display),
            Some(pattern) => display == pattern || info.key.name == pattern,
        })
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    listed.into_iter().map(|(_, info)| info).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use diode_common::record::SeriesKey;

    const NOW: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

    fn text(series: &str) -> QueryText {
        QueryText { series: series.to_owned(), ..QueryText::default() }
    }

    fn error(text: &QueryText) -> String {
        QueryRequest::parse(text, Syntax::Cli, NOW).unwrap_err().to_string()
    }

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
    fn defaults_are_the_last_hour_of_raw_values() {
        let request = QueryRequest::parse(&text("a"), Syntax::Cli, NOW).unwrap();
        assert_eq!((request.from_ns, request.to_ns, &request.mode), (NOW - 3_600_000_000_000, NOW, &Mode::Raw));
    }

    #[test]
    fn an_inverted_range_names_both_times() {
        let message = error(&QueryText {
            from: Some("2026-01-02T00:00:00Z".into()),
            to: Some("2026-01-01T00:00:00Z".into()),
            ..text("a")
        });
        assert!(message.contains("--from 2026-01-02T00:00:00Z is after --to 2026-01-01T00:00:00Z"), "{message}");
    }

    #[test]
    fn bad_durations_say_what_was_given_and_show_an_example() {
        for (every, expected) in
            [("0s", "is zero"), ("-5m", "is negative"), ("5 parsecs", "is not a duration"), ("", "is not a duration")]
        {
            let message = error(&QueryText { every: Some(every.into()), ..text("a") });
            assert!(
                message.contains(expected) && message.contains("--every") && message.contains("1h30m"),
                "{message}"
            );
        }
        let message = QueryRequest::parse(&QueryText { interpolate: Some("0".into()), ..text("a") }, Syntax::Http, NOW)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("interpolate \"0\" is zero"), "{message}");
        assert!(error(&QueryText { every: Some("60".into()), ..text("a") }).contains("\"60\" has no unit"));
    }

    #[test]
    fn modes_that_do_not_mix_are_refused() {
        assert!(
            error(&QueryText { latest: true, every: Some("1m".into()), ..text("a") }).contains("cannot be combined")
        );
        assert!(
            error(&QueryText { interpolate: Some("1m".into()), agg: Some("mean".into()), ..text("a") })
                .contains("cannot be combined")
        );
        assert!(error(&QueryText { agg: Some("mean".into()), ..text("a") }).contains("needs --every"));
        assert!(
            error(&QueryText { twa_mode: Some(TwaMode::Linear), every: Some("1m".into()), ..text("a") })
                .contains("--twa-mode")
        );
        assert!(error(&QueryText { method: Some(Method::Previous), ..text("a") }).contains("--method"));
    }

    #[test]
    fn absurd_window_counts_are_refused() {
        let message = error(&QueryText { every: Some("1ns".into()), from: Some("-1d".into()), ..text("a") });
        assert!(message.contains("windows per series"), "{message}");
    }

    #[test]
    fn every_without_agg_means_mean_and_latest_is_unbounded() {
        let request =
            QueryRequest::parse(&QueryText { every: Some("1m".into()), ..text("a") }, Syntax::Cli, NOW).unwrap();
        assert!(matches!(&request.mode, Mode::Aggregate(s) if s.aggregates == vec![Aggregate::Mean]));
        let request = QueryRequest::parse(&QueryText { latest: true, ..text("a") }, Syntax::Cli, NOW).unwrap();
        assert_eq!((request.from_ns, request.to_ns), (MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS));
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

    #[test]
    fn string_series_refuse_numeric_aggregates() {
        let mut strings = info(0, SeriesKey::new("valve/state"));
        strings.kind = ValueKind::String;
        let request = QueryRequest::parse(
            &QueryText { every: Some("1m".into()), agg: Some("count,mean".into()), ..text("a") },
            Syntax::Cli,
            NOW,
        )
        .unwrap();
        assert!(check_kinds(&request, &[strings.clone()]).unwrap_err().to_string().contains("no mean"));
        let request = QueryRequest::parse(
            &QueryText { every: Some("1m".into()), agg: Some("count,last".into()), ..text("a") },
            Syntax::Cli,
            NOW,
        )
        .unwrap();
        assert!(check_kinds(&request, &[strings]).is_ok());
    }
}
