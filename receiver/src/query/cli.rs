//! `diode-receiver series` and `diode-receiver query`: the replica opened read-only beside the
//! running receiver, rows streamed to stdout as they are computed.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use diode_replica::Replica;

use super::core::aggregate::{Basis, TwaMode};
use super::core::bounds::Boundary;
use super::core::interpolate::{AtMode, Method};
use super::core::select::{NoSeries, list_series, select_series};
use super::engine::{NextPage, run_query};
use super::error::QueryError;
use super::http::DEFAULT_LIMIT;
use super::listing::{series_columns, write_series_row};
use super::output::{Format, RowWriter, TimeFormat, Trailer};
use super::request::{QueryRequest, QueryText, Syntax, select_kinds};
use crate::config::ReceiverConfig;
use crate::time::format_rfc3339;
use crate::time::now_ns;

/// Output buffer of the CLI: large enough that writing is never the bottleneck.
const STDOUT_BUFFER_BYTES: usize = 64 * 1024;

/// `diode-receiver series`: the catalog, one row per series.
#[derive(Debug, clap::Args)]
pub struct SeriesArgs {
    /// The receiver's config file (the replica is found through it).
    #[arg(long)]
    pub config: PathBuf,
    /// Only series whose display form (`name` or `name{key=value,...}`) matches: `*` is any run of
    /// characters (slashes and tags included), `?` one character. Without them: an exact display
    /// form, or a bare name (every tag set of it).
    #[arg(long = "match", value_name = "GLOB")]
    pub pattern: Option<String>,
    /// How rows are written.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// How times are written.
    #[arg(long, value_enum, default_value_t)]
    pub time_format: TimeFormat,
}

/// Exact definitions of every mode: `cargo doc` of `diode_receiver::query`, or the README.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The receiver's config file (the replica is found through it).
    #[arg(long)]
    pub config: PathBuf,
    /// A series (`name`, or `name{key=value,...}`), or a glob over those (`plant1/*/steam_temp`).
    #[arg(long, value_name = "NAME|GLOB")]
    pub series: String,
    /// Start, inclusive: RFC 3339, an epoch number (s, ms, us or ns by size), `now`, or `-1h`.
    /// Default: -1h (no bound with --latest).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// End, inclusive, written like --from. Default: now (no bound with --latest).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Aggregate over windows of this length, aligned to multiples of it since the Unix epoch
    /// (1d windows start at 00:00 UTC). Windows are reported whole.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub every: Option<String>,
    /// Aggregates per window, comma-separated: min, max, mean, sum, count, first, last, twa
    /// (time-weighted average), stddev (sample), stddev_population, range (max − min), delta
    /// (last − first), percent_good, percent_bad, duration_good, duration_bad (seconds),
    /// time_in_state (booleans: seconds true and false). Default: mean.
    #[arg(long, value_name = "AGG[,AGG...]")]
    pub agg: Option<String>,
    /// How twa joins points: step (a value holds until the next) or linear. Default: step.
    #[arg(long, value_enum)]
    pub twa_mode: Option<TwaMode>,
    /// What mean, stddev and stddev_population weigh each value by: event (every point the
    /// same) or time (how long each value held, stepped). Default: event.
    #[arg(long, value_enum)]
    pub basis: Option<Basis>,
    /// Values at --from, --from + DURATION, ... up to --to; no extrapolation past the data.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub interpolate: Option<String>,
    /// How --interpolate reads between points. Default: linear.
    #[arg(long, value_enum)]
    pub method: Option<Method>,
    /// Raw reads: which points around the range are added. inside: none; outside: the last point
    /// before --from and the first after --to; interpolated: values interpolated at --from and
    /// --to. No point is added at an end where a point lies exactly. Default: inside.
    #[arg(long, value_enum)]
    pub boundary: Option<Boundary>,
    /// Values at these times, comma-separated (written like --from), per series (at most
    /// 10,000). --from and --to, when given, keep only the times between them.
    #[arg(long, value_name = "TIME[,TIME...]", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// How --at reads each time: interpolated (the point there, else the line between the points
    /// around it; nothing past the last point) or previous (the last point at or before it, still
    /// held past the last point). Default: interpolated.
    #[arg(long, value_enum)]
    pub at_mode: Option<AtMode>,
    /// At most five points per interval (first, last, min, max and the first bad one) over this
    /// many equal intervals of the range (1 to 10,000), for drawing a trend.
    #[arg(long, value_name = "INTERVALS")]
    pub plot: Option<String>,
    /// The last point of each series (at or before --to, if given).
    #[arg(long)]
    pub latest: bool,
    /// Skip points whose quality is not good (uncertain and bad).
    #[arg(long)]
    pub good_only: bool,
    /// With --every: also report windows without data (count 0, nulls elsewhere), over the whole
    /// range. By default they are left out, as PI and Prometheus do.
    #[arg(long)]
    pub empty_windows: bool,
    /// Stop after this many rows, saying where the next would have started (as HTTP's limit).
    #[arg(long, value_name = "ROWS", default_value_t = DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// How rows are written.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// How times are written.
    #[arg(long, value_enum, default_value_t)]
    pub time_format: TimeFormat,
}

impl QueryArgs {
    /// The flags as a query to check, spelt as HTTP spells them.
    pub fn to_text(&self) -> QueryText {
        QueryText {
            series: self.series.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            every: self.every.clone(),
            agg: self.agg.clone(),
            twa_mode: self.twa_mode,
            basis: self.basis,
            interpolate: self.interpolate.clone(),
            method: self.method,
            boundary: self.boundary,
            at: self.at.clone(),
            at_mode: self.at_mode,
            plot: self.plot.clone(),
            latest: self.latest,
            good_only: self.good_only,
            empty_windows: self.empty_windows,
        }
    }
}

fn open_replica(config: &Path) -> anyhow::Result<Replica> {
    let config = ReceiverConfig::load(config)?;
    Replica::open_read_only(&config.replica_dir)
        .with_context(|| format!("cannot read the replica in {}", config.replica_dir.display()))
}

/// A closed pipe (`| head`) is a normal way for a listing to end.
fn ignore_broken_pipe(result: Result<(), QueryError>) -> anyhow::Result<()> {
    match result {
        Err(QueryError::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `diode-receiver series`: lists the matching series of the replica (read-only) with their kinds,
/// time spans and point counts.
pub fn series(args: SeriesArgs) -> anyhow::Result<()> {
    let replica = open_replica(&args.config)?;
    let stdout = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, io::stdout().lock());
    let result = write_series(&replica, args.pattern.as_deref(), args.format, args.time_format, stdout);
    if let Ok(0) = result
        && let Some(pattern) = &args.pattern
    {
        eprintln!("{}", NoSeries::new(&replica.series_list(), pattern));
    }
    ignore_broken_pipe(result.map(|_| ()))
}

/// Writes the series listing; returns how many series were listed.
pub fn write_series<W: Write>(
    replica: &Replica,
    pattern: Option<&str>,
    format: Format,
    time_format: TimeFormat,
    out: W,
) -> Result<u64, QueryError> {
    let listed = list_series(replica.series_list(), pattern);
    let mut writer = RowWriter::new(out, format, time_format, series_columns(format), "series", false)?;
    for info in &listed {
        write_series_row(info, format, &mut writer)?;
    }
    writer.finish(&Trailer::default())?;
    Ok(listed.len() as u64)
}

/// `diode-receiver query`: runs the query on the replica (read-only) and streams its rows to
/// standard output; fails when `--limit` cut the answer, naming where the next row was.
pub fn query(args: QueryArgs) -> anyhow::Result<()> {
    let request = QueryRequest::parse(&args.to_text(), Syntax::Cli, now_ns())?;
    let replica = open_replica(&args.config)?;
    let stdout = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, io::stdout().lock());
    let written = write_query_with(&replica, &request, (args.format, args.time_format), Some(args.limit), stdout);
    let written = match written {
        Err(QueryError::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        other => other?,
    };
    if let Some(note) = &written.note {
        eprintln!("note: {note}");
    }
    match &written.next {
        Some(next) => anyhow::bail!("{}", limit_reached(args.limit, next)),
        None => Ok(()),
    }
}

/// What a query answered, beside its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// Set when the row limit cut the answer: where the next row would have started.
    pub next: Option<NextPage>,
    /// Series left out of the answer, and why.
    pub note: Option<String>,
}

/// The message of an answer cut at `--limit`.
pub fn limit_reached(limit: u64, next: &NextPage) -> String {
    format!(
        "stopped at --limit {limit} rows; the next row would have been {} at {}: narrow --series or the range, \
         use longer --every windows, or raise --limit",
        next.series,
        format_rfc3339(next.from_ns)
    )
}

/// Runs a checked query over `replica`, streaming every row to `out`; returns the number of rows.
pub fn write_query<W: Write>(
    replica: &Replica,
    request: &QueryRequest,
    format: Format,
    time_format: TimeFormat,
    out: W,
) -> Result<u64, QueryError> {
    write_query_with(replica, request, (format, time_format), None, out).map(|written| written.rows)
}

/// Runs a checked query over `replica`, streaming rows to `out` up to `limit`.
pub fn write_query_with<W: Write>(
    replica: &Replica,
    request: &QueryRequest,
    (format, time_format): (Format, TimeFormat),
    limit: Option<u64>,
    out: W,
) -> Result<Written, QueryError> {
    let selected = select_kinds(request, select_series(&replica.series_list(), &request.selector)?)?;
    let mut writer = RowWriter::new(out, format, time_format, request.columns(), "rows", false)?;
    let outcome = run_query(replica, &selected.series, request, limit, None, &mut writer)?;
    writer.finish(&Trailer::default())?;
    Ok(Written { rows: outcome.rows, next: outcome.next, note: selected.note })
}
