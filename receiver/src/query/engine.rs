//! Running a checked request over a point source: the rows of each series (raw points with their
//! bounds, the latest point, aggregate windows, interpolated instants, values at given times or
//! plot points, computed by [`super::core`]) written as they are computed, cut at a row limit with
//! where the next page starts.

use std::io::Write;
use std::time::{Duration, Instant};

use diode_common::record::{Quality, Value};
use diode_replica::{Point, ReplicaError, SeriesInfo};

use super::core::aggregate::{self, AggregateValue, WindowSettings, Windows, window_start};
use super::core::bounds::{Boundary, Bounded};
use super::core::interpolate::{Instants, Interpolated};
use super::core::plot::{Plot, interval_start};
use super::error::QueryError;
use super::output::{Cell, RowWriter};
use super::request::{Mode, QueryRequest};
use super::source::{PointSource, UntilDeadline, last_point_before};

/// Where a paginated query resumes: series sorting before `series` are done; `series` starts at
/// the request's `from` (leaving out its rows before `resume_from_ns`, if set), and later series
/// at `later_from_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The series (name and tags, as listed) the page starts at.
    pub series: String,
    /// Where the series after it start, in ns since the Unix epoch (the original `from`).
    pub later_from_ns: i64,
    /// For the modes that resume inside their range ([`Mode::resumes_inside_range`]): the time
    /// of `series`' first row on this page, in ns since the Unix epoch; its earlier rows were on
    /// earlier pages.
    pub resume_from_ns: Option<i64>,
}

/// Where the next page starts: `series` at `from_ns`, later series at the original `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPage {
    /// The series the next page starts at.
    pub series: String,
    /// Where in it, in ns since the Unix epoch.
    pub from_ns: i64,
}

/// What [`run_query`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutcome {
    /// Rows written.
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

fn point_row(point: Point) -> Row {
    Row::Point { timestamp_ns: point.timestamp_ns, value: Some((point.value, point.quality)) }
}

/// The rows of one series from `from_ns` on; for the modes that resume inside their range
/// ([`Mode::resumes_inside_range`]), without the rows before `resume_from_ns`.
fn series_rows<'a, S: PointSource>(
    source: &'a S,
    info: &SeriesInfo,
    request: &QueryRequest,
    from_ns: i64,
    resume_from_ns: Option<i64>,
) -> Result<Rows<'a>, ReplicaError> {
    let (id, to_ns, good_only) = (info.id, request.to_ns, request.good_only);
    let accept = move |point: &Point| !good_only || point.quality.is_good();
    Ok(match &request.mode {
        Mode::Raw { boundary: Boundary::Inside } => Box::new(
            source
                .scan(id, from_ns, to_ns)
                .filter(move |point| match point {
                    Ok(point) => accept(point),
                    Err(_) => true,
                })
                .map(move |point| point.map(point_row)),
        ),
        Mode::Raw { boundary } => {
            // A resumed page starts its scan at the row it resumes at, and has no start row.
            let start_ns = resume_from_ns.map_or(from_ns, |resume_ns| resume_ns.max(from_ns));
            let with_start = resume_from_ns.is_none_or(|resume_ns| resume_ns <= from_ns);
            let before = last_point_before(source, id, start_ns, info.first_timestamp_ns, accept)?;
            let points = source.scan(id, start_ns, i64::MAX);
            let rows = Bounded::new(*boundary, good_only, (from_ns, to_ns), (before, with_start), points);
            Box::new(rows.map(|row| row.map(|row| Row::Point { timestamp_ns: row.timestamp_ns, value: row.value })))
        }
        Mode::Latest => {
            let upper_ns = to_ns.min(info.last_timestamp_ns);
            let earliest_ns = from_ns.max(info.first_timestamp_ns);
            let latest = last_point_before(source, id, upper_ns.saturating_add(1), earliest_ns, accept)?;
            Box::new(latest.map(|point| Ok(point_row(point))).into_iter())
        }
        Mode::Aggregate(settings) => window_rows(source, info, request, settings, from_ns)?,
        Mode::Interpolate { step_ns, method } => {
            let carry_in = last_point_before(source, id, from_ns, info.first_timestamp_ns, accept)?;
            let points = source.scan(id, from_ns, i64::MAX);
            Box::new(
                Interpolated::new(*method, good_only, from_ns, to_ns, *step_ns, carry_in, points)
                    .map(|row| row.map(|row| Row::Point { timestamp_ns: row.timestamp_ns, value: row.value })),
            )
        }
        Mode::At { instants_ns, mode } => {
            let instants: Vec<i64> =
                instants_ns.iter().copied().filter(|at_ns| (from_ns..=to_ns).contains(at_ns)).collect();
            let Some(&first_ns) = instants.first() else { return Ok(Box::new(std::iter::empty())) };
            let carry_in = last_point_before(source, id, first_ns, info.first_timestamp_ns, accept)?;
            let points = source.scan(id, first_ns, i64::MAX);
            Box::new(
                Interpolated::at_instants(*mode, good_only, Instants::Listed(instants.into_iter()), carry_in, points)
                    .map(|row| row.map(|row| Row::Point { timestamp_ns: row.timestamp_ns, value: row.value })),
            )
        }
        Mode::Plot { width_ns, .. } => {
            // A resumed page recomputes the interval it resumes in and leaves out its rows before.
            let skip_before_ns = resume_from_ns.unwrap_or(i64::MIN);
            let start_ns =
                resume_from_ns.map_or(from_ns, |resume_ns| interval_start(from_ns, *width_ns, resume_ns.max(from_ns)));
            let points = source.scan(id, start_ns, to_ns);
            Box::new(
                Plot::new(from_ns, to_ns, *width_ns, good_only, points)
                    .filter(move |point| !matches!(point, Ok(point) if point.timestamp_ns < skip_before_ns))
                    .map(|point| point.map(point_row)),
            )
        }
    })
}

/// The aggregate windows of one series from `from_ns` on.
fn window_rows<'a, S: PointSource>(
    source: &'a S,
    info: &SeriesInfo,
    request: &QueryRequest,
    settings: &WindowSettings,
    from_ns: i64,
) -> Result<Rows<'a>, ReplicaError> {
    let id = info.id;
    // Without empty windows, only the windows over the series' own data can have rows.
    let (from_ns, to_ns) = if request.empty_windows {
        (from_ns, request.to_ns)
    } else {
        (from_ns.max(info.first_timestamp_ns), request.to_ns.min(info.last_timestamp_ns))
    };
    if from_ns > to_ns {
        return Ok(Box::new(std::iter::empty()));
    }
    let first_start_ns = window_start(from_ns, settings.every_ns);
    let end_ns = window_start(to_ns, settings.every_ns).saturating_add(settings.every_ns);
    let (carry_in, scan_to_ns) = if settings.is_time_weighted() {
        // Any quality: a non-good carry-in still ends the value before it.
        let carry_in = last_point_before(source, id, first_start_ns, info.first_timestamp_ns, |_| true)?;
        (carry_in, i64::MAX)
    } else {
        (None, end_ns - 1)
    };
    let blocks = source.blocks(id, first_start_ns, scan_to_ns);
    let windows = Windows::new(settings.clone(), from_ns, to_ns, carry_in.as_ref(), blocks);
    let windows = if request.empty_windows { windows } else { windows.skip_empty() };
    Ok(Box::new(windows.map(|row| row.map(Row::Window))))
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
    run(&UntilDeadline { source, deadline: None }, series, request, (limit, resume), None, out)
}

/// [`run_query`] that stops with [`QueryError::TimedOut`] once `timeout` has passed since
/// `started`. No row is written after the deadline, so no row comes from a scan it cut short.
pub fn run_query_until<S: PointSource, W: Write>(
    source: &S,
    series: &[SeriesInfo],
    request: &QueryRequest,
    (limit, resume): (Option<u64>, Option<&Resume>),
    (started, timeout): (Instant, Duration),
    out: &mut RowWriter<W>,
) -> Result<QueryOutcome, QueryError> {
    let deadline = started + timeout;
    let source = UntilDeadline { source, deadline: Some(deadline) };
    run(&source, series, request, (limit, resume), Some((deadline, timeout)), out)
}

fn run<S: PointSource, W: Write>(
    source: &UntilDeadline<'_, S>,
    series: &[SeriesInfo],
    request: &QueryRequest,
    (limit, resume): (Option<u64>, Option<&Resume>),
    deadline: Option<(Instant, Duration)>,
    out: &mut RowWriter<W>,
) -> Result<QueryOutcome, QueryError> {
    // Checked after each row is computed and before it is written: a row computed from a scan the
    // deadline cut short is never written.
    let check_deadline = || match deadline {
        Some((deadline, timeout)) if Instant::now() >= deadline => {
            Err(QueryError::TimedOut { timeout_ms: timeout.as_millis() })
        }
        _ => Ok(()),
    };
    let mut written = 0u64;
    for info in series {
        let display = info.key.to_string();
        let (from_ns, resume_from_ns) = match resume {
            Some(resume) if display < resume.series => continue,
            Some(resume) if display > resume.series => (resume.later_from_ns, None),
            Some(resume) => (request.from_ns, resume.resume_from_ns),
            None => (request.from_ns, None),
        };
        for row in series_rows(source, info, request, from_ns, resume_from_ns)? {
            let row = row?;
            check_deadline()?;
            if limit.is_some_and(|limit| written >= limit) {
                let next = NextPage { series: display, from_ns: row.position_ns() };
                return Ok(QueryOutcome { rows: written, next: Some(next) });
            }
            row.write(&display, out)?;
            written += 1;
        }
        // The series' rows may have ended because the deadline cut its scan.
        check_deadline()?;
    }
    Ok(QueryOutcome { rows: written, next: None })
}
