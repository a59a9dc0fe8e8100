//! Running a checked request over a point source: the rows of each series (raw points with their
//! bounds, the latest point, aggregate windows, interpolated instants, values at given times or
//! plot points, computed by [`super::core`]) written as they are computed, cut at a row limit with
//! where the next page starts.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use diode_common::record::{Quality, Value};
use diode_replica::{BUCKET_NS, Point, ReplicaError, SeriesInfo, bucket_start};

use super::core::aggregate::{self, Aggregate, AggregateValue, WindowSettings, Windows, window_start};
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

    fn write<'a, W: Write>(&'a self, series: &'a str, out: &mut RowWriter<W>) -> std::io::Result<()> {
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
                let cell = |value: &'a AggregateValue| match value {
                    AggregateValue::Null => Cell::Null,
                    AggregateValue::Count(n) => Cell::Count(*n),
                    AggregateValue::Number(x) => Cell::Number(*x),
                    AggregateValue::Value(v) => Cell::Value(v),
                };
                // On the stack: every aggregate once, and two columns for one of them.
                let mut cells = [Cell::Null; Aggregate::ALL.len() + 3];
                let used = window.values.len() + 2;
                if used > cells.len() {
                    let mut cells = vec![Cell::Text(series), Cell::Time(window.start_ns)];
                    cells.extend(window.values.iter().map(cell));
                    return out.write_row(&cells);
                }
                cells[0] = Cell::Text(series);
                cells[1] = Cell::Time(window.start_ns);
                for (slot, value) in cells[2..].iter_mut().zip(&window.values) {
                    *slot = cell(value);
                }
                out.write_row(&cells[..used])
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
        Mode::Aggregate(settings) => window_rows(source, info, request, settings, (from_ns, request.to_ns))?,
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

/// The windows of one series' aggregates that [`window_rows`] computes from `from_ns` on.
fn window_range(info: &SeriesInfo, request: &QueryRequest, (from_ns, to_ns): (i64, i64)) -> (i64, i64) {
    // Without empty windows, only the windows over the series' own data can have rows.
    if request.empty_windows {
        (from_ns, to_ns)
    } else {
        (from_ns.max(info.first_timestamp_ns), to_ns.min(info.last_timestamp_ns))
    }
}

/// The aggregate windows of one series from the window holding `from_ns` to the one holding
/// `to_ns` (at most `request.to_ns`). Each window is computed from its own points (and, for the
/// time-weighted aggregates, the point before it and the point after it), so the rows of a range
/// cut at a window boundary are the rows of its two parts, one after the other.
fn window_rows<'a, S: PointSource>(
    source: &'a S,
    info: &SeriesInfo,
    request: &QueryRequest,
    settings: &WindowSettings,
    range: (i64, i64),
) -> Result<Rows<'a>, ReplicaError> {
    let id = info.id;
    let (from_ns, to_ns) = window_range(info, request, range);
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
pub fn run_query<S: PointSource + Sync, W: Write>(
    source: &S,
    series: &[SeriesInfo],
    request: &QueryRequest,
    limit: Option<u64>,
    resume: Option<&Resume>,
    out: &mut RowWriter<W>,
) -> Result<QueryOutcome, QueryError> {
    let source = UntilDeadline { source, deadline: None };
    run(&source, series, request, (limit, resume), (None, Threads::Shared), out)
}

/// [`run_query`] that stops with [`QueryError::TimedOut`] once `timeout` has passed since
/// `started`. No row is written after the deadline, so no row comes from a scan it cut short.
pub fn run_query_until<S: PointSource + Sync, W: Write>(
    source: &S,
    series: &[SeriesInfo],
    request: &QueryRequest,
    (limit, resume): (Option<u64>, Option<&Resume>),
    (started, timeout): (Instant, Duration),
    out: &mut RowWriter<W>,
) -> Result<QueryOutcome, QueryError> {
    let deadline = started + timeout;
    let source = UntilDeadline { source, deadline: Some(deadline) };
    run(&source, series, request, (limit, resume), (Some((deadline, timeout)), Threads::Shared), out)
}

/// An aggregate series is computed in units of at least this many windows and
/// [`BUCKETS_PER_UNIT`] buckets (68 hours of 1-minute windows, 64 hours of 1-second ones): pieces
/// big enough that handing them out costs nothing next to computing them, small enough that a
/// year of one series keeps every core busy.
const WINDOWS_PER_UNIT: i64 = 4_096;

/// See [`WINDOWS_PER_UNIT`].
const BUCKETS_PER_UNIT: i64 = 64;

/// Rows a worker hands over at once.
const ROWS_PER_BATCH: usize = 512;

/// Batches a unit computed ahead may hold before its worker waits for the output to catch up: a
/// query holds at most `(BATCHES_AHEAD + 1) * ROWS_PER_BATCH` rows per unit under way.
const BATCHES_AHEAD: usize = 8;

/// Most worker threads the queries of one process compute on at once.
const MAX_QUERY_THREADS: usize = 8;

/// Worker threads the queries of this process hold now. They share one per core (at most
/// [`MAX_QUERY_THREADS`]): a query borrows the cores no other query is computing on, and computes
/// on its own thread when none is free, so concurrent queries never run more threads than before
/// they computed in parallel plus the machine's cores, and the apply thread keeps its share.
static WORKERS_TAKEN: AtomicUsize = AtomicUsize::new(0);

/// The worker threads all queries may hold at once: one per core, at most [`MAX_QUERY_THREADS`];
/// read once (`available_parallelism` reads cgroup files on Linux).
fn worker_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET
        .get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(MAX_QUERY_THREADS))
}

/// Worker threads borrowed from the process's budget, given back when dropped.
struct Borrowed(usize);

impl Borrowed {
    /// Every worker no other query holds, or none when fewer than two are free (one worker beside
    /// a waiting writer computes no faster than the calling thread alone).
    fn take() -> Self {
        let budget = worker_budget();
        let mut taken = WORKERS_TAKEN.load(Ordering::Relaxed);
        loop {
            let count = budget.saturating_sub(taken);
            if count < 2 {
                return Borrowed(0);
            }
            match WORKERS_TAKEN.compare_exchange_weak(taken, taken + count, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Borrowed(count),
                Err(now) => taken = now,
            }
        }
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        WORKERS_TAKEN.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// The threads a query computes on.
#[derive(Debug, Clone, Copy)]
enum Threads {
    /// Workers borrowed from the process's budget when the query has more than one unit.
    Shared,
    /// Exactly this many workers (1: the calling thread alone), whatever other queries hold.
    #[cfg(test)]
    Exactly(usize),
}

/// A piece of a query computed on its own: the rows of one series, or for aggregates the rows of
/// a run of its windows.
#[derive(Debug, Clone, Copy)]
struct Unit {
    /// Index into the query's series.
    series: usize,
    from_ns: i64,
    /// For aggregates, the last instant of the unit's windows; otherwise the request's `to`.
    to_ns: i64,
    resume_from_ns: Option<i64>,
    /// The series' last unit: the output checks the deadline after it.
    last_of_series: bool,
}

/// The units of a query, in output order: series by series (those a resumed page has done left
/// out), and an aggregate series' windows cut, at window boundaries that are also bucket
/// boundaries where the windows allow, into runs of at least [`WINDOWS_PER_UNIT`] windows and one
/// bucket.
fn units<'a>(
    series: &'a [SeriesInfo],
    request: &'a QueryRequest,
    resume: Option<&'a Resume>,
) -> impl Iterator<Item = Unit> + 'a {
    let started = move |(index, info): (usize, &'a SeriesInfo)| {
        let display = info.key.to_string();
        let (from_ns, resume_from_ns) = match resume {
            Some(resume) if display < resume.series => return None,
            Some(resume) if display > resume.series => (resume.later_from_ns, None),
            Some(resume) => (request.from_ns, resume.resume_from_ns),
            None => (request.from_ns, None),
        };
        Some((index, info, from_ns, resume_from_ns))
    };
    series.iter().enumerate().filter_map(started).flat_map(move |(index, info, from_ns, resume_from_ns)| {
        let whole = Unit { series: index, from_ns, to_ns: request.to_ns, resume_from_ns, last_of_series: true };
        let pieces = match &request.mode {
            Mode::Aggregate(settings) => {
                let (first_ns, last_ns) = window_range(info, request, (from_ns, request.to_ns));
                let every_ns = settings.every_ns;
                let span_ns = every_ns.saturating_mul(WINDOWS_PER_UNIT).max(BUCKETS_PER_UNIT * BUCKET_NS);
                Some((window_start(first_ns, every_ns), every_ns, span_ns, last_ns))
            }
            _ => None,
        };
        // (where the next unit's windows start, its `from`); `None` once the last unit is out.
        let mut next = Some((pieces.map_or(from_ns, |(start_ns, ..)| start_ns), from_ns));
        std::iter::from_fn(move || {
            let (start_ns, unit_from_ns) = next.take()?;
            let Some((_, every_ns, span_ns, last_ns)) = pieces else { return Some(whole) };
            let candidate_ns = start_ns.saturating_add(span_ns);
            if candidate_ns > last_ns || candidate_ns == i64::MAX {
                return Some(Unit { from_ns: unit_from_ns, ..whole });
            }
            // A window boundary, at a bucket's start if one is a window boundary nearby.
            let mut cut_ns = window_start(bucket_start(candidate_ns), every_ns);
            if cut_ns <= start_ns {
                cut_ns = window_start(candidate_ns, every_ns);
            }
            next = Some((cut_ns, cut_ns));
            Some(Unit { from_ns: unit_from_ns, to_ns: cut_ns - 1, last_of_series: false, ..whole })
        })
    })
}

/// The rows of one unit.
fn unit_rows<'a, S: PointSource>(
    source: &'a S,
    series: &[SeriesInfo],
    request: &QueryRequest,
    unit: Unit,
) -> Result<Rows<'a>, ReplicaError> {
    let info = &series[unit.series];
    match &request.mode {
        Mode::Aggregate(settings) => window_rows(source, info, request, settings, (unit.from_ns, unit.to_ns)),
        _ => series_rows(source, info, request, unit.from_ns, unit.resume_from_ns),
    }
}

/// What a worker hands over: rows, or the error that ended its unit.
type Batch = Result<Vec<Row>, ReplicaError>;

/// A unit given to a worker, with where its rows go.
type Job = (Unit, SyncSender<Batch>);

/// Computes units until there are no more, or until the output stops taking rows.
fn work<S: PointSource>(source: &S, series: &[SeriesInfo], request: &QueryRequest, jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
        let Ok((unit, out)) = job else { return };
        let sent = match unit_rows(source, series, request, unit) {
            Ok(rows) => send_rows(rows, &out),
            Err(error) => out.send(Err(error)).is_ok(),
        };
        if !sent {
            // The output is gone: the query ended (limit, deadline, error, client away).
            return;
        }
    }
}

/// Sends `rows` in batches; `false` once the output no longer takes them.
fn send_rows(rows: Rows<'_>, out: &SyncSender<Batch>) -> bool {
    let mut batch = Vec::with_capacity(ROWS_PER_BATCH);
    for row in rows {
        match row {
            Ok(row) => batch.push(row),
            Err(error) => return out.send(Err(error)).is_ok(),
        }
        if batch.len() == ROWS_PER_BATCH
            && out.send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(ROWS_PER_BATCH)))).is_err()
        {
            return false;
        }
    }
    batch.is_empty() || out.send(Ok(batch)).is_ok()
}

/// The rows of a unit a worker computes, as they arrive.
struct Received {
    batches: std::sync::mpsc::IntoIter<Batch>,
    rows: std::vec::IntoIter<Row>,
}

impl Iterator for Received {
    type Item = Result<Row, ReplicaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.rows.next() {
                return Some(Ok(row));
            }
            match self.batches.next()? {
                Ok(rows) => self.rows = rows.into_iter(),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// Writes the units' rows in order, cut at `limit`, and says where the next page starts.
struct Output<'o, W: Write> {
    series: &'o [SeriesInfo],
    limit: Option<u64>,
    deadline: Option<(Instant, Duration)>,
    out: &'o mut RowWriter<W>,
    written: u64,
    /// The display form of the series of the last unit written.
    display: Option<(usize, String)>,
}

impl<W: Write> Output<'_, W> {
    // Checked after each row is computed and before it is written: a row computed from a scan the
    // deadline cut short is never written.
    fn check_deadline(&self) -> Result<(), QueryError> {
        match self.deadline {
            Some((deadline, timeout)) if Instant::now() >= deadline => {
                Err(QueryError::TimedOut { timeout_ms: timeout.as_millis() })
            }
            _ => Ok(()),
        }
    }

    /// Writes a unit's rows; `Some` when the limit cut the answer there.
    fn write_unit(
        &mut self,
        unit: Unit,
        rows: impl Iterator<Item = Result<Row, ReplicaError>>,
    ) -> Result<Option<NextPage>, QueryError> {
        if self.display.as_ref().is_none_or(|(series, _)| *series != unit.series) {
            self.display = Some((unit.series, self.series[unit.series].key.to_string()));
        }
        let display = &self.display.as_ref().expect("set above").1;
        for row in rows {
            let row = row?;
            self.check_deadline()?;
            if self.limit.is_some_and(|limit| self.written >= limit) {
                return Ok(Some(NextPage { series: display.clone(), from_ns: row.position_ns() }));
            }
            row.write(display, self.out)?;
            self.written += 1;
        }
        if unit.last_of_series {
            // The series' rows may have ended because the deadline cut its scan.
            self.check_deadline()?;
        }
        Ok(None)
    }
}

fn run<S: PointSource + Sync, W: Write>(
    source: &UntilDeadline<'_, S>,
    series: &[SeriesInfo],
    request: &QueryRequest,
    (limit, resume): (Option<u64>, Option<&Resume>),
    (deadline, threads): (Option<(Instant, Duration)>, Threads),
    out: &mut RowWriter<W>,
) -> Result<QueryOutcome, QueryError> {
    let mut output = Output { series, limit, deadline, out, written: 0, display: None };
    let mut rest = units(series, request, resume).peekable();
    let first = rest.next();
    let several = rest.peek().is_some();
    let mut units = first.into_iter().chain(rest);
    let (threads, _borrowed) = match threads {
        Threads::Shared if several => {
            let borrowed = Borrowed::take();
            (borrowed.0, Some(borrowed))
        }
        // A query of one unit (one series' raw rows, a few days of one series' windows) has
        // nothing to share out: it costs no thread.
        Threads::Shared => (0, None),
        #[cfg(test)]
        Threads::Exactly(count) => (count, None),
    };
    run_units(source, series, request, &mut output, &mut units, threads)
}

/// Computes `units` on `threads` workers (on the calling thread when fewer than two) and writes
/// their rows in order.
fn run_units<S: PointSource + Sync, W: Write>(
    source: &UntilDeadline<'_, S>,
    series: &[SeriesInfo],
    request: &QueryRequest,
    output: &mut Output<'_, W>,
    units: &mut impl Iterator<Item = Unit>,
    threads: usize,
) -> Result<QueryOutcome, QueryError> {
    if threads <= 1 {
        for unit in units {
            if let Some(next) = output.write_unit(unit, unit_rows(source, series, request, unit)?)? {
                return Ok(QueryOutcome { rows: output.written, next: Some(next) });
            }
        }
        return Ok(QueryOutcome { rows: output.written, next: None });
    }
    // Workers compute the units, in order, at most `threads + 1` units ahead of the output, each
    // holding at most BATCHES_AHEAD batches of rows; this thread writes them in order.
    let (job_sender, job_receiver) = std::sync::mpsc::channel::<Job>();
    let job_receiver = Mutex::new(job_receiver);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let jobs = &job_receiver;
            scope.spawn(move || work(source, series, request, jobs));
        }
        let mut in_flight = VecDeque::new();
        let outcome = write_in_order(output, units, (&job_sender, &mut in_flight), threads + 1);
        // Ends the workers: no more jobs, and the rows of those under way go nowhere.
        drop(job_sender);
        drop(in_flight);
        outcome
    })
}

/// Hands `units` to the workers, keeping `ahead` of them under way, and writes their rows in order.
fn write_in_order<W: Write>(
    output: &mut Output<'_, W>,
    units: &mut impl Iterator<Item = Unit>,
    (jobs, in_flight): (&std::sync::mpsc::Sender<Job>, &mut VecDeque<(Unit, Receiver<Batch>)>),
    ahead: usize,
) -> Result<QueryOutcome, QueryError> {
    loop {
        while in_flight.len() < ahead
            && let Some(unit) = units.next()
        {
            let (sender, receiver) = sync_channel(BATCHES_AHEAD);
            // Cannot fail: the workers' end of the channel lives as long as the scope.
            let _ = jobs.send((unit, sender));
            in_flight.push_back((unit, receiver));
        }
        let Some((unit, receiver)) = in_flight.pop_front() else { break };
        let rows = Received { batches: receiver.into_iter(), rows: Vec::new().into_iter() };
        if let Some(next) = output.write_unit(unit, rows)? {
            return Ok(QueryOutcome { rows: output.written, next: Some(next) });
        }
    }
    Ok(QueryOutcome { rows: output.written, next: None })
}

#[cfg(test)]
mod tests {
    use diode_common::codec::SeriesColumns;
    use diode_common::record::{Quality, SeriesKey, Value, ValueKind};

    use super::*;
    use crate::query::core::aggregate::Basis;
    use crate::query::output::{Format, TimeFormat};
    use crate::query::request::{QueryText, Syntax};

    const S: i64 = 1_000_000_000;
    const HOUR: i64 = 3_600 * S;
    /// 2025-01-01T00:00:00Z.
    const BASE: i64 = 1_735_689_600 * S;

    /// Series in memory, one block per hour, as a replica scan gives them.
    struct Memory(Vec<Vec<SeriesColumns>>);

    impl PointSource for Memory {
        type Blocks<'a> = std::vec::IntoIter<Result<SeriesColumns, ReplicaError>>;

        fn blocks(&self, series_id: u32, from_ns: i64, to_ns: i64) -> Self::Blocks<'_> {
            let mut blocks = Vec::new();
            for block in &self.0[series_id as usize] {
                let mut kept = SeriesColumns::new(block.key.clone());
                for row in 0..block.len() {
                    let timestamp_ns = block.timestamps_ns[row];
                    if (from_ns..=to_ns).contains(&timestamp_ns) {
                        kept.push(timestamp_ns, block.value(row), block.qualities[row]);
                    }
                }
                if !kept.is_empty() {
                    blocks.push(Ok(kept));
                }
            }
            blocks.into_iter()
        }
    }

    /// Three series over ten days with gaps, bad points and a day of integers, and their infos.
    fn memory() -> (Memory, Vec<SeriesInfo>) {
        let mut series = Vec::new();
        let mut infos = Vec::new();
        for id in 0..3u32 {
            let key = SeriesKey::new(format!("s{id}"));
            let mut blocks = Vec::new();
            for hour in 0..240i64 {
                // Series 1 has a four-day gap; series 2 one point every 7 s.
                if id == 1 && (48..144).contains(&hour) {
                    continue;
                }
                let mut block = SeriesColumns::new(key.clone());
                for second in (0..3_600i64).step_by(if id == 2 { 7 } else { 1 }) {
                    let t = BASE + hour * HOUR + second * S + i64::from(id) * 300_000;
                    let x = ((t / S) as f64 * 0.001).sin() * 10.0 + f64::from(id);
                    let value = if hour % 24 == 5 && id == 0 { Value::I64(x as i64) } else { Value::F64(x) };
                    let quality = if second % 13 == 0 { Quality::BAD } else { Quality::GOOD };
                    block.push(t, value, quality);
                }
                blocks.push(block);
            }
            let first_timestamp_ns = blocks[0].timestamps_ns[0];
            let last_timestamp_ns = *blocks.last().unwrap().timestamps_ns.last().unwrap();
            let point_count = blocks.iter().map(|b| b.len() as u64).sum();
            infos.push(SeriesInfo {
                id,
                key,
                kind: ValueKind::F64,
                mixed_kinds: true,
                first_timestamp_ns,
                last_timestamp_ns,
                point_count,
            });
            series.push(blocks);
        }
        (Memory(series), infos)
    }

    fn answer(source: &Memory, series: &[SeriesInfo], text: &QueryText, limit: Option<u64>, threads: usize) -> String {
        let request = QueryRequest::parse(text, Syntax::Cli, BASE + 240 * HOUR).expect("valid query");
        let mut out =
            RowWriter::new(Vec::new(), Format::Csv, TimeFormat::Ns, request.columns(), "rows", false).unwrap();
        let source = UntilDeadline { source, deadline: None };
        let outcome =
            run(&source, series, &request, (limit, None), (None, Threads::Exactly(threads)), &mut out).expect("query");
        let text = String::from_utf8(out.finish(&Default::default()).unwrap()).unwrap();
        format!("{text}{outcome:?}")
    }

    /// Units computed on several threads, an aggregate series cut into runs of windows, give
    /// exactly the rows of one thread computing every series whole.
    #[test]
    fn threads_give_the_rows_of_one_thread() {
        let (source, series) = memory();
        let query = |every: Option<&str>, agg: Option<&str>| QueryText {
            series: "s*".into(),
            from: Some((BASE + 3 * HOUR + 17 * S).to_string()),
            to: Some((BASE + 239 * HOUR).to_string()),
            every: every.map(Into::into),
            agg: agg.map(Into::into),
            ..QueryText::default()
        };
        let mut cases = vec![
            query(Some("1m"), Some("mean,min,max,count,stddev,first,last")),
            query(Some("7m"), Some("twa,percent_good,count")),
            query(Some("30s"), Some("sum,count")),
            query(Some("2m"), Some("twa,delta")),
            query(Some("1h"), Some("mean")),
            query(None, None),
            QueryText { good_only: true, ..query(Some("1m"), Some("mean,twa")) },
            QueryText { empty_windows: true, ..query(Some("10m"), Some("count,twa")) },
            QueryText { basis: Some(Basis::Time), ..query(Some("5m"), Some("mean,stddev")) },
            QueryText { interpolate: Some("90s".into()), ..query(None, None) },
        ];
        cases.push(QueryText { latest: true, ..query(None, None) });
        for text in &cases {
            let one = answer(&source, &series, text, None, 1);
            assert!(one.lines().count() > 2, "{text:?} has rows");
            for threads in [2, 3] {
                assert_eq!(answer(&source, &series, text, None, threads), one, "{text:?} on {threads} threads");
            }
            for limit in [0, 1, 700, 5_000] {
                let one = answer(&source, &series, text, Some(limit), 1);
                assert_eq!(answer(&source, &series, text, Some(limit), 2), one, "{text:?} limited to {limit}");
            }
        }
    }
}
