//! A query as typed (CLI flags or HTTP parameters) and the checked request it becomes: the
//! range, the mode (raw, latest, aggregate, interpolate) and its parameters, each refused with a
//! message that names it and says what to write instead.

use diode_common::record::{MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, ValueKind};
use diode_replica::SeriesInfo;

use super::core::aggregate::{Aggregate, Basis, Needs, TwaMode, WindowSettings, window_count};
use super::core::bounds::Boundary;
use super::core::glob;
use super::core::interpolate::{AtMode, Method, instant_count};
use super::core::plot::{MAX_PLOT_INTERVALS, interval_width};
use super::error::QueryError;
use crate::time::{format_rfc3339, parse_duration, parse_time};

/// Most windows or interpolation instants one series may produce in one query: beyond this the
/// step is surely a typo (1ms over a year), and the answer would be mostly empty rows.
pub const MAX_ROWS_PER_SERIES: u64 = 100_000_000;

/// Most instants one `at` query may list: each costs a row per series, and a longer list is a
/// regular grid better asked with `interpolate`.
pub const MAX_AT_TIMES: usize = 10_000;

/// How parameters are named in messages: `--every` on the command line, `every` over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Command-line flags: `--good-only`.
    Cli,
    /// HTTP query parameters: `good_only`.
    Http,
}

impl Syntax {
    /// `parameter` (as HTTP spells it) as this syntax spells it.
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
    /// The recorded points, with bounding values as `boundary` says.
    Raw {
        /// Which points around the range are added.
        boundary: Boundary,
    },
    /// The last point.
    Latest,
    /// Aggregates over fixed windows (`every`).
    Aggregate(WindowSettings),
    /// Values at evenly spaced instants from `from` to `to`.
    Interpolate {
        /// Spacing of the instants, in ns.
        step_ns: i64,
        /// How values between points are read.
        method: Method,
    },
    /// Values at listed instants (OPC UA ReadAtTime).
    At {
        /// The instants, ascending and without repeats, in ns since the Unix epoch.
        instants_ns: Vec<i64>,
        /// How a value is read at each.
        mode: AtMode,
    },
    /// At most five points per interval, for drawing (PI PlotValues).
    Plot {
        /// How many intervals the range is cut into.
        intervals: u64,
        /// Their width, in ns, from `from` on.
        width_ns: i64,
    },
}

impl Mode {
    /// Whether a page of this mode resumes at a row's time inside its range (`resume_from`)
    /// rather than with `from` moved to it: modes whose rows depend on where the range starts.
    pub fn resumes_inside_range(&self) -> bool {
        matches!(self, Mode::Raw { boundary: Boundary::Outside | Boundary::Interpolated } | Mode::Plot { .. })
    }
}

/// A parsed, checked query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    /// The series: an exact display form, a bare name (every tag set) or a glob.
    pub selector: String,
    /// Start of the range, inclusive, in ns since the Unix epoch.
    pub from_ns: i64,
    /// End of the range, inclusive, in ns since the Unix epoch.
    pub to_ns: i64,
    /// What is computed per series.
    pub mode: Mode,
    /// Skip points whose quality is not good.
    pub good_only: bool,
    /// Aggregates: report windows without data too (count 0, nulls), over the whole range.
    pub empty_windows: bool,
}

/// A query as typed (CLI flags or HTTP parameters), before checking.
#[derive(Debug, Clone, Default)]
pub struct QueryText {
    /// `series`: the selector.
    pub series: String,
    /// `from`: start, as written (RFC 3339, epoch number, `now`, `-1h`).
    pub from: Option<String>,
    /// `to`: end, written like `from`.
    pub to: Option<String>,
    /// `every`: window length for aggregates, as a duration.
    pub every: Option<String>,
    /// `agg`: comma-separated aggregates.
    pub agg: Option<String>,
    /// `twa_mode`: how `twa` joins points.
    pub twa_mode: Option<TwaMode>,
    /// `basis`: what `mean`, `stddev` and `stddev_population` weigh each value by.
    pub basis: Option<Basis>,
    /// `boundary`: which points around the range a raw read adds.
    pub boundary: Option<Boundary>,
    /// `at`: comma-separated instants to read each series at.
    pub at: Option<String>,
    /// `at_mode`: how `at` reads a value at each instant.
    pub at_mode: Option<AtMode>,
    /// `plot`: the number of intervals of a plot read.
    pub plot: Option<String>,
    /// `interpolate`: spacing of interpolation instants, as a duration.
    pub interpolate: Option<String>,
    /// `method`: how interpolation reads between points.
    pub method: Option<Method>,
    /// `latest`: only the last point of each series.
    pub latest: bool,
    /// `good_only`: skip points whose quality is not good.
    pub good_only: bool,
    /// `empty_windows`: report windows without data too.
    pub empty_windows: bool,
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
            "{name} {text:?} is not a duration ({}); give a positive duration {example}",
            error.with_causes()
        ))),
    }
}

fn parse_time_parameter(syntax: Syntax, parameter: &str, text: &str, now_ns: i64) -> Result<i64, QueryError> {
    parse_time(text, now_ns)
        .map_err(|error| QueryError::Invalid(format!("{} {}", syntax.name(parameter), error.with_causes())))
}

impl QueryRequest {
    /// Checks a typed query. `now_ns` anchors `now` and relative times.
    pub fn parse(text: &QueryText, syntax: Syntax, now_ns: i64) -> Result<QueryRequest, QueryError> {
        let selector = check_selector(text, syntax)?;
        check_combinations(text, syntax)?;
        let (from_ns, to_ns) = parse_range(text, syntax, now_ns)?;
        let mode = if text.latest {
            Mode::Latest
        } else if let Some(step) = &text.interpolate {
            parse_interpolation(text, step, syntax, (from_ns, to_ns))?
        } else if let Some(every) = &text.every {
            parse_windows(text, every, syntax, (from_ns, to_ns))?
        } else if let Some(at) = &text.at {
            Mode::At { instants_ns: parse_instants(at, syntax, now_ns)?, mode: text.at_mode.unwrap_or_default() }
        } else if let Some(plot) = &text.plot {
            parse_plot(plot, syntax, (from_ns, to_ns))?
        } else {
            Mode::Raw { boundary: text.boundary.unwrap_or_default() }
        };
        Ok(QueryRequest {
            selector,
            from_ns,
            to_ns,
            mode,
            good_only: text.good_only,
            empty_windows: text.empty_windows,
        })
    }

    /// Column names of the rows this query writes.
    pub fn columns(&self) -> Vec<&'static str> {
        match &self.mode {
            Mode::Aggregate(settings) => {
                let mut columns = vec!["series", "window_start"];
                columns.extend(settings.aggregates.iter().flat_map(|a| a.columns()));
                columns
            }
            _ => vec!["series", "time", "value", "quality"],
        }
    }
}

/// The series selector, trimmed: not empty, not absurdly long.
fn check_selector(text: &QueryText, syntax: Syntax) -> Result<String, QueryError> {
    let selector = text.series.trim().to_owned();
    if selector.is_empty() {
        return Err(QueryError::Invalid(format!(
            "{} is empty; give a series name or a glob such as plant1/*/steam_temp",
            syntax.name("series")
        )));
    }
    if selector.len() > glob::MAX_PATTERN_BYTES {
        return Err(QueryError::Invalid(format!(
            "{} is {} bytes; the limit is {}",
            syntax.name("series"),
            selector.len(),
            glob::MAX_PATTERN_BYTES
        )));
    }
    Ok(selector)
}

/// Refuses parameters that do not go together, or one that needs another.
fn check_combinations(text: &QueryText, syntax: Syntax) -> Result<(), QueryError> {
    let name = |parameter: &str| syntax.name(parameter);
    let invalid = |message: String| Err(QueryError::Invalid(message));
    // One way of reading per query; `agg` belongs with `every`.
    let windows = if text.every.is_some() { "every" } else { "agg" };
    let modes = [
        (text.latest, "latest"),
        (text.interpolate.is_some(), "interpolate"),
        (text.every.is_some() || text.agg.is_some(), windows),
        (text.at.is_some(), "at"),
        (text.plot.is_some(), "plot"),
    ];
    let mut given = modes.iter().filter(|(given, _)| *given).map(|(_, parameter)| *parameter);
    let first = given.next();
    if let (Some(first), Some(second)) = (first, given.next()) {
        return invalid(format!("{} and {} cannot be combined", name(first), name(second)));
    }
    if text.agg.is_some() && text.every.is_none() {
        return invalid(format!(
            "{} needs {} (the window length), e.g. {} 1m",
            name("agg"),
            name("every"),
            name("every")
        ));
    }
    if let (Some(_), Some(mode)) = (text.boundary, first) {
        return invalid(format!("{} applies only to raw reads, not with {}", name("boundary"), name(mode)));
    }
    for (given, parameter, present, needed) in [
        (text.method.is_some(), "method", text.interpolate.is_some(), "interpolate"),
        (text.twa_mode.is_some(), "twa_mode", text.every.is_some(), "every"),
        (text.basis.is_some(), "basis", text.every.is_some(), "every"),
        (text.empty_windows, "empty_windows", text.every.is_some(), "every"),
        (text.at_mode.is_some(), "at_mode", text.at.is_some(), "at"),
    ] {
        if given && !present {
            return invalid(format!("{} applies only with {}", name(parameter), name(needed)));
        }
    }
    Ok(())
}

/// `from` and `to` (defaults: the last hour; unbounded for `latest`), in order, clamped to the
/// record limits.
fn parse_range(text: &QueryText, syntax: Syntax, now_ns: i64) -> Result<(i64, i64), QueryError> {
    // `latest` and `at` read around their own times: no bound unless asked.
    let unbounded = text.latest || text.at.is_some();
    let (default_from, default_to) = if unbounded { ("", "") } else { ("-1h", "now") };
    let from_ns = match text.from.as_deref() {
        Some(from) => parse_time_parameter(syntax, "from", from, now_ns)?,
        None if unbounded => i64::MIN,
        None => parse_time(default_from, now_ns).expect("valid default"),
    };
    let to_ns = match text.to.as_deref() {
        Some(to) => parse_time_parameter(syntax, "to", to, now_ns)?,
        None if unbounded => i64::MAX,
        None => parse_time(default_to, now_ns).expect("valid default"),
    };
    if from_ns > to_ns {
        return Err(QueryError::Invalid(format!(
            "{} {} is after {} {}: the range is empty; swap them or move {}",
            syntax.name("from"),
            format_rfc3339(from_ns),
            syntax.name("to"),
            format_rfc3339(to_ns),
            syntax.name("from"),
        )));
    }
    // No point lies outside the record limits; clamping keeps window arithmetic in range.
    Ok((from_ns.clamp(MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS), to_ns.clamp(MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS)))
}

/// `interpolate` with its `step` and method, within the row limit over `range`.
fn parse_interpolation(text: &QueryText, step: &str, syntax: Syntax, range: (i64, i64)) -> Result<Mode, QueryError> {
    let step_ns = parse_step(syntax, "interpolate", step)?;
    let count = instant_count(range.0, range.1, step_ns);
    within_row_limit(
        count,
        || format!("{} {step} makes {count} instants", syntax.name("interpolate")),
        "a longer step",
    )?;
    Ok(Mode::Interpolate { step_ns, method: text.method.unwrap_or_default() })
}

/// The instants of `at`: times as `from` takes them, comma-separated, at most [`MAX_AT_TIMES`];
/// sorted, repeats dropped.
fn parse_instants(text: &str, syntax: Syntax, now_ns: i64) -> Result<Vec<i64>, QueryError> {
    let name = syntax.name("at");
    let given = text.split(',').count();
    if given > MAX_AT_TIMES {
        return Err(QueryError::Invalid(format!(
            "{name} lists {given} times; the limit is {MAX_AT_TIMES}: split the query, or use {} for a regular grid",
            syntax.name("interpolate")
        )));
    }
    let mut instants = Vec::with_capacity(given);
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(QueryError::Invalid(format!(
                "{name} {text:?} has an empty time; give times separated by commas, e.g. {name} -1h,now"
            )));
        }
        let at_ns =
            parse_time(part, now_ns).map_err(|error| QueryError::Invalid(format!("{name} {}", error.with_causes())))?;
        instants.push(at_ns.clamp(MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS));
    }
    instants.sort_unstable();
    instants.dedup();
    Ok(instants)
}

/// `plot` with its number of intervals (1 to [`MAX_PLOT_INTERVALS`]) over `range`.
fn parse_plot(text: &str, syntax: Syntax, (from_ns, to_ns): (i64, i64)) -> Result<Mode, QueryError> {
    match text.trim().parse::<u64>() {
        Ok(intervals @ 1..=MAX_PLOT_INTERVALS) => {
            Ok(Mode::Plot { intervals, width_ns: interval_width(from_ns, to_ns, intervals) })
        }
        _ => Err(QueryError::Invalid(format!(
            "{} {text:?} is not a number of intervals from 1 to {MAX_PLOT_INTERVALS}; give about the trend's width \
             in pixels, e.g. {} 1000",
            syntax.name("plot"),
            syntax.name("plot")
        ))),
    }
}

/// `every` windows with their aggregates (default: mean), within the row limit over `range`.
fn parse_windows(text: &QueryText, every: &str, syntax: Syntax, range: (i64, i64)) -> Result<Mode, QueryError> {
    let every_ns = parse_step(syntax, "every", every)?;
    let count = window_count(range.0, range.1, every_ns);
    within_row_limit(count, || format!("{} {every} makes {count} windows", syntax.name("every")), "longer windows")?;
    let aggregates = match &text.agg {
        Some(list) => {
            Aggregate::parse_list(list).map_err(|e| QueryError::Invalid(format!("{} {e}", syntax.name("agg"))))?
        }
        None => vec![Aggregate::Mean],
    };
    if text.twa_mode.is_some() && !aggregates.contains(&Aggregate::Twa) {
        return Err(twa_mode_without_twa(syntax));
    }
    if text.basis.is_some() && !aggregates.iter().any(|a| a.has_basis()) {
        return Err(basis_without_aggregate(syntax));
    }
    if text.good_only
        && let Some(quality) = aggregates.iter().find(|a| a.measures_quality())
    {
        return Err(QueryError::Invalid(format!(
            "{} {} measures quality, which {} would leave out; drop {} for it",
            syntax.name("agg"),
            quality.name(),
            syntax.name("good_only"),
            syntax.name("good_only")
        )));
    }
    Ok(Mode::Aggregate(WindowSettings {
        every_ns,
        aggregates,
        twa_mode: text.twa_mode.unwrap_or_default(),
        basis: text.basis.unwrap_or_default(),
        good_only: text.good_only,
    }))
}

fn twa_mode_without_twa(syntax: Syntax) -> QueryError {
    QueryError::Invalid(format!("{} applies only with {} twa", syntax.name("twa_mode"), syntax.name("agg")))
}

fn basis_without_aggregate(syntax: Syntax) -> QueryError {
    QueryError::Invalid(format!(
        "{} applies only with {} mean, stddev or stddev_population",
        syntax.name("basis"),
        syntax.name("agg")
    ))
}

/// Series a note names before it only counts the rest.
const NAMED_IN_NOTES: usize = 5;

/// The series a query answers for, and a note naming those it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// The series answered for, in display order.
    pub series: Vec<SeriesInfo>,
    /// Set when series were left out: which, and why.
    pub note: Option<String>,
}

/// Aggregates apply to the series whose values they can use: numeric ones to series with
/// numbers (not only strings), `time_in_state` to series with booleans. Other series are left out
/// and named in a note, or the query is refused when no selected series is left.
pub fn select_kinds(request: &QueryRequest, series: Vec<SeriesInfo>) -> Result<Selected, QueryError> {
    let Mode::Aggregate(settings) = &request.mode else { return Ok(Selected { series, note: None }) };
    let mut series = series;
    let mut notes = Vec::new();
    for needs in [Needs::Numbers, Needs::Booleans] {
        let Some(aggregate) = settings.aggregates.iter().find(|a| a.needs() == needs).copied() else { continue };
        let (what, usable): (&str, fn(&SeriesInfo) -> bool) = match needs {
            Needs::Numbers => ("strings", |info| info.kind != ValueKind::String || info.mixed_kinds),
            _ => ("values other than booleans", |info| info.kind == ValueKind::Bool || info.mixed_kinds),
        };
        let (kept, left_out): (Vec<SeriesInfo>, Vec<SeriesInfo>) = series.into_iter().partition(usable);
        if kept.is_empty() {
            let info = left_out.first().expect("select_series picks at least one series");
            return Err(QueryError::Invalid(format!(
                "{} holds {what}, which have no {}; use count, first or last for it, or select other series",
                info.key,
                aggregate.name()
            )));
        }
        if !left_out.is_empty() {
            let mut names: Vec<String> =
                left_out.iter().take(NAMED_IN_NOTES).map(|info| info.key.to_string()).collect();
            if left_out.len() > NAMED_IN_NOTES {
                names.push(format!("and {} more", left_out.len() - NAMED_IN_NOTES));
            }
            notes.push(format!(
                "left out {} series holding {what}, which have no {}: {}; use count, first or last for them",
                left_out.len(),
                aggregate.name(),
                names.join(", ")
            ));
        }
        series = kept;
    }
    Ok(Selected { series, note: (!notes.is_empty()).then(|| notes.join("; ")) })
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

    #[test]
    fn defaults_are_the_last_hour_of_raw_values() {
        let request = QueryRequest::parse(&text("a"), Syntax::Cli, NOW).unwrap();
        assert_eq!(
            (request.from_ns, request.to_ns, &request.mode),
            (NOW - 3_600_000_000_000, NOW, &Mode::Raw { boundary: Boundary::Inside })
        );
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
    fn string_series_refuse_numeric_aggregates() {
        let mut strings = info(0, SeriesKey::new("valve/state"));
        strings.kind = ValueKind::String;
        let request = QueryRequest::parse(
            &QueryText { every: Some("1m".into()), agg: Some("count,mean".into()), ..text("a") },
            Syntax::Cli,
            NOW,
        )
        .unwrap();
        assert!(select_kinds(&request, vec![strings.clone()]).unwrap_err().to_string().contains("no mean"));
        let request = QueryRequest::parse(
            &QueryText { every: Some("1m".into()), agg: Some("count,last".into()), ..text("a") },
            Syntax::Cli,
            NOW,
        )
        .unwrap();
        assert_eq!(select_kinds(&request, vec![strings]).unwrap().note, None);
    }

    #[test]
    fn numeric_aggregates_over_a_mix_leave_out_the_string_series_and_name_them() {
        let mut series: Vec<SeriesInfo> = (0..8)
            .map(|id| {
                let mut info = info(id, SeriesKey::new(format!("valve{id}/state")));
                info.kind = ValueKind::String;
                info
            })
            .collect();
        series.push(info(8, SeriesKey::new("pump/flow")));
        let request = QueryRequest::parse(
            &QueryText { every: Some("1m".into()), agg: Some("mean".into()), ..text("*") },
            Syntax::Cli,
            NOW,
        )
        .unwrap();
        let selected = select_kinds(&request, series).unwrap();
        assert_eq!(selected.series.iter().map(|info| info.id).collect::<Vec<_>>(), vec![8]);
        assert_eq!(
            selected.note.unwrap(),
            "left out 8 series holding strings, which have no mean: valve0/state, valve1/state, valve2/state, \
             valve3/state, valve4/state, and 3 more; use count, first or last for them"
        );
    }

    #[test]
    fn empty_windows_apply_only_to_aggregates() {
        assert!(
            error(&QueryText { empty_windows: true, ..text("a") })
                .contains("--empty-windows applies only with --every")
        );
    }

    /// Times and durations an analyst (or a hostile client) may write: edges of the i64 range,
    /// of the record limits and of the units, and text that is none of them.
    fn time_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("now".to_owned()),
            Just("-1h".to_owned()),
            Just("now-9223372036854775807ns".to_owned()),
            Just("9223372036854775807".to_owned()),
            Just("-9223372036854775808".to_owned()),
            Just("1677-09-21T00:12:43.145224192Z".to_owned()),
            Just("2262-04-11T23:47:16.854775807Z".to_owned()),
            Just("9999-12-31T23:59:59Z".to_owned()),
            Just("-9999-01-01T00:00:00Z".to_owned()),
            (-3_000_000_000_000_000_000i64..3_000_000_000_000_000_000).prop_map(|n| n.to_string()),
            (0u32..2_000, prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w"]))
                .prop_map(|(n, unit)| format!("-{n}{unit}")),
            "[ -~]{0,12}",
        ]
    }

    fn duration_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            (0u64..5_000, prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h", "d", "w", ""]))
                .prop_map(|(n, unit)| format!("{n}{unit}")),
            Just("9223372036854775807ns".to_owned()),
            Just("9223372036854775808ns".to_owned()),
            Just("1h30m".to_owned()),
            Just("-5m".to_owned()),
            "[ -~]{0,8}",
        ]
    }

    proptest::proptest! {
        // Most random ranges are refused (inverted, or text that is no time): enough cases that
        // every mode is accepted a few hundred times.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Whatever the parameters, parsing answers (never a panic), and an accepted query is one
        /// the engine can run: an ordered range inside the record limits, a positive step, rows
        /// per series within the limit, instants sorted and unique, plot intervals in range.
        #[test]
        fn any_parameters_give_a_runnable_query_or_an_error(
            from in proptest::option::of(time_text()),
            to in proptest::option::of(time_text()),
            mode in 0usize..6,
            step in duration_text(),
            agg in proptest::option::of(proptest::sample::select(vec!["mean", "min,max,count", "twa", "mean,,", "nope"])),
            at in proptest::collection::vec(time_text(), 1..5),
            plot in proptest::sample::select(vec!["0", "1", "999", "10000", "10001", "18446744073709551616", "x"]),
            good_only in proptest::bool::ANY,
            syntax in proptest::sample::select(vec![Syntax::Cli, Syntax::Http]),
        ) {
            let mut query = QueryText { from, to, good_only, ..text("plant1/*") };
            match mode {
                1 => query.latest = true,
                2 => query.interpolate = Some(step),
                3 => {
                    query.every = Some(step);
                    query.agg = agg.map(str::to_owned);
                }
                4 => query.at = Some(at.join(",")),
                5 => query.plot = Some(plot.to_owned()),
                _ => {}
            }
            let Ok(request) = QueryRequest::parse(&query, syntax, NOW) else { return Ok(()) };
            proptest::prop_assert!(request.from_ns <= request.to_ns);
            proptest::prop_assert!(MIN_TIMESTAMP_NS <= request.from_ns && request.to_ns <= MAX_TIMESTAMP_NS);
            match &request.mode {
                Mode::Interpolate { step_ns, .. } => {
                    proptest::prop_assert!(*step_ns > 0);
                    proptest::prop_assert!(instant_count(request.from_ns, request.to_ns, *step_ns) <= MAX_ROWS_PER_SERIES);
                }
                Mode::Aggregate(settings) => {
                    proptest::prop_assert!(settings.every_ns > 0 && !settings.aggregates.is_empty());
                    proptest::prop_assert!(
                        window_count(request.from_ns, request.to_ns, settings.every_ns) <= MAX_ROWS_PER_SERIES
                    );
                }
                Mode::At { instants_ns, .. } => {
                    proptest::prop_assert!(!instants_ns.is_empty() && instants_ns.len() <= MAX_AT_TIMES);
                    proptest::prop_assert!(instants_ns.windows(2).all(|pair| pair[0] < pair[1]));
                    proptest::prop_assert!(
                        instants_ns.iter().all(|at| (MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS).contains(at))
                    );
                }
                Mode::Plot { intervals, width_ns } => {
                    proptest::prop_assert!((1..=MAX_PLOT_INTERVALS).contains(intervals) && *width_ns > 0);
                    // The intervals cover the range, unless it is longer than the widest interval
                    // (i64::MAX ns, 292 years), which then holds more intervals than asked.
                    let covered = i128::from(*width_ns) * i128::from(*intervals);
                    proptest::prop_assert!(
                        covered > i128::from(request.to_ns) - i128::from(request.from_ns) || *width_ns == i64::MAX
                    );
                }
                Mode::Raw { .. } | Mode::Latest => {}
            }
        }
    }
}
