//! Query handlers of the receiver's HTTP API (routed by [`crate::http`]): read-only, bearer token when configured, JSON by
//! default, errors as `{"error": "..."}` with 400 (bad parameter), 401 (token), 404 (no such
//! series) or 503 (too many queries at once).
//!
//! - `GET /api/v1/series?match=GLOB&format=json|jsonl|csv|table&time_format=rfc3339|ns|ms`
//! - `GET /api/v1/query?series=NAME|GLOB&from=T&to=T` plus `every`, `agg`, `twa_mode`, `basis`,
//!   `empty_windows`, `interpolate`, `method`, `boundary`, `at`, `at_mode`, `plot`, `latest`,
//!   `good_only`, `format`, `time_format`, `limit`; the same meanings and defaults as
//!   `diode-receiver query` (see [`crate::query`]).
//!
//! **Cost.** At most [`MAX_CONCURRENT_QUERIES`] queries and listings run at once, each on a
//! blocking thread (picking series from the catalog and the "did you mean" search included), and
//! both stream their answers. A query stops after `http.query_timeout_ms`, waiting for its client
//! included ([`QueryLimits`]), with an error; a client that takes nothing of the answer for
//! `http.write_timeout_ms` is disconnected and its query ends, freeing its slot. Numeric
//! aggregates over a glob that also picks string series leave those out and say so in a `"note"`.
//!
//! CSV is chosen by `format=csv` or, without `format`, by `Accept: text/csv`.
//!
//! **Pagination.** `limit` caps the rows of one response (default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]). A response cut at the limit carries `"next"`: a relative URL of the same query
//! with `from` set to the first row not returned (a raw point's time, a window's start, an
//! interpolation instant; all past the last row returned) and `to` fixed, so `now` and `-1h` do
//! not move between pages. When the query spans several series, `next` also names
//! `resume_series` (series sorting before it are done) and `later_from` (where the series after
//! it start: the original `from`). Plot reads and raw reads with `boundary=outside` or
//! `interpolated`, whose rows depend on where the range starts, keep `from` instead and name
//! `resume_series` and `resume_from` (the time of the first row not returned: that series' rows
//! before it are left out). In JSON `next` is always present (`null` on the last page);
//! in JSON lines it is a final `{"next": ...}` line, in CSV a final `# next: ...` line. Pages
//! are cut on rows, never inside a row, so following `next` until it is null returns every row
//! exactly once (points applied meanwhile after the cut appear on later pages).
//!
//! Rows stream as they are computed; the replica's read lock is taken once per batch of
//! [`POINTS_PER_LOCK`](super::source::POINTS_PER_LOCK) points, never across a whole scan. An
//! error after rows were sent ends the page with an `"error"` key (JSON), an `{"error": ...}`
//! line (JSON lines) or a `# error: ...` line (CSV).

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use diode_replica::SeriesInfo;
use tokio::sync::mpsc;

use super::core::aggregate::{Aggregate, Basis, TwaMode};
use super::core::bounds::Boundary;
use super::core::glob;
use super::core::interpolate::{AtMode, Method};
use super::core::select::{list_series, select_series};
use super::engine::{NextPage, Resume, run_query_until};
use super::error::QueryError;
use super::listing::{series_columns, write_series_row};
use super::output::{Format, RowWriter, TimeFormat, Trailer};
use super::request::{Mode, QueryRequest, QueryText, Selected, Syntax, select_kinds};
use super::source::LockedReplica;
use crate::locks;
use crate::state::{AppState, Shared, authorised};
use crate::time::{format_rfc3339, now_ns, parse_time};

/// How long a query may run and wait for its client (`http.query_timeout_ms`,
/// `http.write_timeout_ms`); routes served without them take the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Time a query may run, waiting for its client included: it then ends with an error.
    pub timeout: std::time::Duration,
    /// Time a query waits for its client to take the next chunk of its answer.
    pub write_timeout: std::time::Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits { timeout: std::time::Duration::from_secs(30), write_timeout: std::time::Duration::from_secs(30) }
    }
}

/// Rows per response when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100_000;
/// Largest `limit` accepted.
pub const MAX_LIMIT: u64 = 1_000_000;
/// Queries and listings running at once; more get 503. Each holds a blocking thread and up to
/// [`CHANNEL_CHUNKS`] × [`CHUNK_BYTES`] of output.
pub const MAX_CONCURRENT_QUERIES: usize = 4;
/// Output is sent to the connection in chunks of about this size…
pub const CHUNK_BYTES: usize = 64 * 1024;
/// …with at most this many waiting, so a slow client slows the query instead of growing memory.
pub const CHANNEL_CHUNKS: usize = 4;

const QUERY_PARAMETERS: [&str; 22] = [
    "series",
    "from",
    "to",
    "every",
    "agg",
    "twa_mode",
    "basis",
    "empty_windows",
    "interpolate",
    "method",
    "boundary",
    "at",
    "at_mode",
    "plot",
    "latest",
    "good_only",
    "format",
    "time_format",
    "limit",
    "resume_series",
    "resume_from",
    "later_from",
];
const SERIES_PARAMETERS: [&str; 3] = ["match", "format", "time_format"];

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn query_error_response(error: QueryError) -> Response {
    let status = match &error {
        QueryError::NotFound(_) => StatusCode::NOT_FOUND,
        QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
        QueryError::Replica(_) | QueryError::Output(_) => StatusCode::INTERNAL_SERVER_ERROR,
        QueryError::TimedOut { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, error.to_string())
}

/// Request parameters by name; unknown and repeated names are refused (a typo such as `form=`
/// would otherwise silently query the default range).
struct Parameters(Vec<(String, String)>);

impl Parameters {
    fn check(pairs: Vec<(String, String)>, known: &[&str]) -> Result<Parameters, QueryError> {
        for (index, (name, _)) in pairs.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(QueryError::Invalid(format!("unknown parameter {name:?}; known: {}", known.join(", "))));
            }
            if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(QueryError::Invalid(format!("parameter {name:?} is given twice")));
            }
        }
        Ok(Parameters(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn flag(&self, name: &str) -> Result<bool, QueryError> {
        match self.get(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("") | Some("true") | Some("1") => Ok(true),
            Some(other) => Err(QueryError::Invalid(format!("{name} {other:?} is not a flag; use true or false"))),
        }
    }

    fn parsed<T>(&self, name: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, QueryError> {
        self.get(name).map(|text| parse(text).map_err(|e| QueryError::Invalid(format!("{name} {e}")))).transpose()
    }

    fn format(&self, headers: &HeaderMap) -> Result<Format, QueryError> {
        if let Some(format) = self.parsed("format", Format::parse)? {
            return Ok(format);
        }
        let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or("");
        Ok(if accept.contains("text/csv") { Format::Csv } else { Format::Json })
    }
}

fn parameters(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    known: &[&str],
) -> Result<Parameters, QueryError> {
    let Query(pairs) = query.map_err(|rejection| QueryError::Invalid(rejection.body_text()))?;
    Parameters::check(pairs, known)
}

fn catalog(shared: &Shared) -> Vec<SeriesInfo> {
    locks::read(&shared.replica).series_list()
}

fn busy() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{MAX_CONCURRENT_QUERIES} queries are running already; retry in a moment"),
    )
}

/// `GET /api/v1/series`: streamed from a blocking thread, as queries are.
pub async fn series_route(
    State(state): State<AppState>,
    limits: Option<Extension<QueryLimits>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let parsed = (|| {
        let parameters = parameters(query, &SERIES_PARAMETERS)?;
        let format = parameters.format(&headers)?;
        let time_format = parameters.parsed("time_format", TimeFormat::parse)?.unwrap_or_default();
        Ok::<_, QueryError>((format, time_format, parameters.get("match").map(str::to_owned)))
    })();
    let (format, time_format, pattern) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return query_error_response(error),
    };
    let Some(slot) = QuerySlot::take() else { return busy() };
    let limits = limits.map(|Extension(limits)| limits).unwrap_or_default();
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let out = ChannelWriter::new(sender, tokio::runtime::Handle::current(), limits.write_timeout);
    let shared = Arc::clone(&state.shared);
    tokio::task::spawn_blocking(move || stream_listing(&shared, pattern.as_deref(), (format, time_format), out, slot));
    ([(header::CONTENT_TYPE, format.content_type())], Body::from_stream(ChunkStream(receiver))).into_response()
}

/// Writes the series listing into the response body; stops when the client goes away.
fn stream_listing(
    shared: &Shared,
    pattern: Option<&str>,
    (format, time_format): (Format, TimeFormat),
    out: ChannelWriter,
    slot: QuerySlot,
) {
    let listed = list_series(catalog(shared), pattern);
    let Ok(mut writer) = RowWriter::new(out, format, time_format, series_columns(format), "series", false) else {
        return;
    };
    for info in &listed {
        if write_series_row(info, format, &mut writer).is_err() {
            return;
        }
    }
    drop(slot);
    let _ = writer.finish(&Trailer::default());
}

/// A checked query request and what its next page needs.
struct HttpQuery {
    request: QueryRequest,
    format: Format,
    time_format: TimeFormat,
    limit: u64,
    resume: Option<Resume>,
}

impl HttpQuery {
    fn parse(parameters: &Parameters, headers: &HeaderMap, now_ns: i64) -> Result<HttpQuery, QueryError> {
        let Some(series) = parameters.get("series") else {
            return Err(QueryError::Invalid(
                "series is required, e.g. /api/v1/query?series=plant1/*/steam_temp&from=-1h".to_owned(),
            ));
        };
        let text = QueryText {
            series: series.to_owned(),
            from: parameters.get("from").map(str::to_owned),
            to: parameters.get("to").map(str::to_owned),
            every: parameters.get("every").map(str::to_owned),
            agg: parameters.get("agg").map(str::to_owned),
            twa_mode: parameters.parsed("twa_mode", TwaMode::parse)?,
            basis: parameters.parsed("basis", Basis::parse)?,
            interpolate: parameters.get("interpolate").map(str::to_owned),
            method: parameters.parsed("method", Method::parse)?,
            boundary: parameters.parsed("boundary", Boundary::parse)?,
            at: parameters.get("at").map(str::to_owned),
            at_mode: parameters.parsed("at_mode", AtMode::parse)?,
            plot: parameters.get("plot").map(str::to_owned),
            latest: parameters.flag("latest")?,
            good_only: parameters.flag("good_only")?,
            empty_windows: parameters.flag("empty_windows")?,
        };
        let request = QueryRequest::parse(&text, Syntax::Http, now_ns)?;
        let limit = match parameters.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<u64>() {
                Ok(limit @ 1..=MAX_LIMIT) => limit,
                _ => {
                    return Err(QueryError::Invalid(format!(
                        "limit {text:?} is not a row count from 1 to {MAX_LIMIT}; page through larger answers with \"next\""
                    )));
                }
            },
        };
        let resume = parse_resume(parameters, &request, now_ns)?;
        Ok(HttpQuery {
            format: parameters.format(headers)?,
            time_format: parameters.parsed("time_format", TimeFormat::parse)?.unwrap_or_default(),
            request,
            limit,
            resume,
        })
    }

    /// The URL of the page starting at `next`.
    fn next_url(&self, next: &NextPage, several_series: bool) -> String {
        let request = &self.request;
        // Modes whose rows depend on where the range starts keep `from` and resume at the row.
        let inside_range = request.mode.resumes_inside_range();
        let from_ns = if inside_range { request.from_ns } else { next.from_ns };
        let mut pairs: Vec<(&str, String)> = vec![
            ("series", request.selector.clone()),
            ("from", format_rfc3339(from_ns)),
            ("to", format_rfc3339(request.to_ns)),
        ];
        pairs.extend(mode_parameters(request));
        if request.good_only {
            pairs.push(("good_only", "true".to_owned()));
        }
        let format = match self.format {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
        };
        pairs.push(("format", format.to_owned()));
        let time_format = match self.time_format {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::Ns => "ns",
            TimeFormat::Ms => "ms",
        };
        pairs.push(("time_format", time_format.to_owned()));
        pairs.push(("limit", self.limit.to_string()));
        if several_series || inside_range {
            let later_from_ns = self.resume.as_ref().map_or(request.from_ns, |resume| resume.later_from_ns);
            pairs.push(("resume_series", next.series.clone()));
            if inside_range {
                pairs.push(("resume_from", format_rfc3339(next.from_ns)));
            }
            pairs.push(("later_from", format_rfc3339(later_from_ns)));
        }
        let query: Vec<String> =
            pairs.iter().map(|(name, value)| format!("{name}={}", percent_encode(value))).collect();
        format!("/api/v1/query?{}", query.join("&"))
    }
}

/// The parameters that choose `request`'s mode, as a next page's URL repeats them.
fn mode_parameters(request: &QueryRequest) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    match &request.mode {
        Mode::Raw { boundary } => {
            if *boundary != Boundary::Inside {
                pairs.push(("boundary", boundary.name().to_owned()));
            }
        }
        Mode::At { instants_ns, mode } => {
            let instants: Vec<String> = instants_ns.iter().map(|&at_ns| format_rfc3339(at_ns)).collect();
            pairs.push(("at", instants.join(",")));
            pairs.push(("at_mode", mode.name().to_owned()));
        }
        Mode::Plot { intervals, .. } => pairs.push(("plot", intervals.to_string())),
        Mode::Latest => pairs.push(("latest", "true".to_owned())),
        Mode::Aggregate(settings) => {
            pairs.push(("every", format!("{}ns", settings.every_ns)));
            let names: Vec<&str> = settings.aggregates.iter().map(|a| a.name()).collect();
            pairs.push(("agg", names.join(",")));
            if settings.wants(Aggregate::Twa) {
                pairs.push(("twa_mode", settings.twa_mode.name().to_owned()));
            }
            if settings.aggregates.iter().any(|a| a.has_basis()) {
                pairs.push(("basis", settings.basis.name().to_owned()));
            }
            if request.empty_windows {
                pairs.push(("empty_windows", "true".to_owned()));
            }
        }
        Mode::Interpolate { step_ns, method } => {
            pairs.push(("interpolate", format!("{step_ns}ns")));
            let method = match method {
                Method::Linear => "linear",
                Method::Previous => "previous",
            };
            pairs.push(("method", method.to_owned()));
        }
    }
    pairs
}

/// `resume_series`, `resume_from` and `later_from`: where a page of `request` resumes.
fn parse_resume(parameters: &Parameters, request: &QueryRequest, now_ns: i64) -> Result<Option<Resume>, QueryError> {
    let time = |name: &str, text: &str| {
        parse_time(text, now_ns).map_err(|error| QueryError::Invalid(format!("{name} {}", error.with_causes())))
    };
    let Some(series) = parameters.get("resume_series") else {
        for name in ["later_from", "resume_from"] {
            if parameters.get(name).is_some() {
                return Err(QueryError::Invalid(format!("{name} applies only with resume_series")));
            }
        }
        return Ok(None);
    };
    let later_from_ns = parameters.get("later_from").map(|text| time("later_from", text)).transpose()?;
    let resume_from_ns = parameters.get("resume_from").map(|text| time("resume_from", text)).transpose()?;
    if resume_from_ns.is_some() && !request.mode.resumes_inside_range() {
        return Err(QueryError::Invalid(
            "resume_from applies only to plot reads and raw reads with boundary=outside or interpolated".to_owned(),
        ));
    }
    Ok(Some(Resume {
        series: series.to_owned(),
        later_from_ns: later_from_ns.unwrap_or(request.from_ns),
        resume_from_ns,
    }))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A slot among [`MAX_CONCURRENT_QUERIES`], released when dropped. The Prometheus API takes
/// its slots here too.
pub(crate) struct QuerySlot;

static QUERIES_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

impl QuerySlot {
    pub(crate) fn take() -> Option<QuerySlot> {
        QUERIES_IN_FLIGHT
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_CONCURRENT_QUERIES).then_some(n + 1))
            .ok()
            .map(|_| QuerySlot)
    }
}

impl Drop for QuerySlot {
    fn drop(&mut self) {
        QUERIES_IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /api/v1/query`.
pub async fn query_route(
    State(state): State<AppState>,
    limits: Option<Extension<QueryLimits>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let started = Instant::now();
    let limits = limits.map(|Extension(limits)| limits).unwrap_or_default();
    let query = match parameters(query, &QUERY_PARAMETERS).and_then(|p| HttpQuery::parse(&p, &headers, now_ns())) {
        Ok(query) => query,
        Err(error) => return query_error_response(error),
    };
    let Some(slot) = QuerySlot::take() else { return busy() };
    // Picking the series, and for an unknown name the nearest names, costs time in proportion to
    // the catalog: on a blocking thread, under the slot.
    let prepared = {
        let (shared, request) = (Arc::clone(&state.shared), query.request.clone());
        tokio::task::spawn_blocking(move || {
            let series = select_series(&catalog(&shared), &request.selector)?;
            select_kinds(&request, series)
        })
        .await
    };
    let selected = match prepared {
        Ok(Ok(selected)) => selected,
        Ok(Err(error)) => return query_error_response(error),
        Err(error) => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("the query task failed: {error}"));
        }
    };
    let content_type = query.format.content_type();
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let out = ChannelWriter::new(sender, tokio::runtime::Handle::current(), limits.write_timeout);
    let shared = Arc::clone(&state.shared);
    let timing = (started, limits.timeout);
    tokio::task::spawn_blocking(move || stream_query(&shared, &query, selected, timing, out, slot));
    ([(header::CONTENT_TYPE, content_type)], Body::from_stream(ChunkStream(receiver))).into_response()
}

/// Runs the query on a blocking thread, writing into the response body, until `timing`'s timeout
/// after its start. The slot is given back before the last chunk goes out, so a client that sends
/// its next request as soon as it has read a page finds the slot free.
fn stream_query(
    shared: &Shared,
    query: &HttpQuery,
    selected: Selected,
    timing: (Instant, Duration),
    out: ChannelWriter,
    slot: QuerySlot,
) {
    let request = &query.request;
    let Ok(mut writer) = RowWriter::new(out, query.format, query.time_format, request.columns(), "rows", true) else {
        return;
    };
    let source = LockedReplica(&shared.replica);
    let series = &selected.series;
    let page = (Some(query.limit), query.resume.as_ref());
    let outcome = run_query_until(&source, series, request, page, timing, &mut writer);
    let several_series = series.len() > 1 || glob::is_glob(&request.selector);
    let trailer = match outcome {
        Ok(outcome) => Trailer {
            next: outcome.next.map(|next| query.next_url(&next, several_series)),
            error: None,
            note: selected.note,
        },
        // The client went away or stopped reading; nobody is left to tell.
        Err(QueryError::Output(_)) => return,
        Err(error) => {
            tracing::warn!("query of {:?} failed: {error}", request.selector);
            Trailer { next: None, error: Some(error.to_string()), note: selected.note }
        }
    };
    drop(slot);
    // A failure here is the client going away too.
    let _ = writer.finish(&trailer);
}

/// `io::Write` into the response body: buffers [`CHUNK_BYTES`] and hands chunks to the
/// connection, waiting when [`CHANNEL_CHUNKS`] are queued, at most the write timeout per chunk.
/// Fails once the client has gone, or has taken nothing for the write timeout.
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
    buffer: Vec<u8>,
    runtime: tokio::runtime::Handle,
    write_timeout: Duration,
}

impl ChannelWriter {
    fn new(
        sender: mpsc::Sender<Result<Bytes, io::Error>>,
        runtime: tokio::runtime::Handle,
        write_timeout: Duration,
    ) -> ChannelWriter {
        ChannelWriter { sender, buffer: Vec::with_capacity(CHUNK_BYTES), runtime, write_timeout }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES)));
        let sending = tokio::time::timeout(self.write_timeout, self.sender.send(Ok(chunk)));
        match self.runtime.block_on(sending) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP client went away")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the HTTP client took nothing for {} ms", self.write_timeout.as_millis()),
            )),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() { Ok(()) } else { self.send() }
    }
}

/// The receiving end as a body stream.
struct ChunkStream(mpsc::Receiver<Result<Bytes, io::Error>>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let error = Parameters::check(pairs(&[("series", "a"), ("form", "-1h")]), &QUERY_PARAMETERS).err().unwrap();
        assert!(error.to_string().contains("unknown parameter \"form\""));
        let error = Parameters::check(pairs(&[("series", "a"), ("series", "b")]), &QUERY_PARAMETERS).err().unwrap();
        assert!(error.to_string().contains("twice"));
    }

    #[test]
    fn limits_above_the_cap_are_refused() {
        let parameters = Parameters::check(pairs(&[("series", "a"), ("limit", "1000001")]), &QUERY_PARAMETERS).unwrap();
        let error = HttpQuery::parse(&parameters, &HeaderMap::new(), 0).err().unwrap();
        assert!(error.to_string().contains("from 1 to 1000000"), "{error}");
    }

    #[test]
    fn accept_text_csv_chooses_csv_unless_format_says_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, "text/csv".parse().unwrap());
        let parameters = Parameters::check(pairs(&[("series", "a")]), &QUERY_PARAMETERS).unwrap();
        assert_eq!(parameters.format(&headers).unwrap(), Format::Csv);
        let parameters = Parameters::check(pairs(&[("series", "a"), ("format", "json")]), &QUERY_PARAMETERS).unwrap();
        assert_eq!(parameters.format(&headers).unwrap(), Format::Json);
    }

    #[test]
    fn next_urls_fix_the_range_and_resume_at_the_first_row_not_returned() {
        let parameters = Parameters::check(
            pairs(&[("series", "plant1/*"), ("from", "-1h"), ("every", "1m"), ("agg", "mean,twa"), ("limit", "10")]),
            &QUERY_PARAMETERS,
        )
        .unwrap();
        let now = 1_767_225_600_000_000_000;
        let query = HttpQuery::parse(&parameters, &HeaderMap::new(), now).unwrap();
        let next = NextPage { series: "plant1/b{u=C}".into(), from_ns: now - 60_000_000_000 };
        assert_eq!(
            query.next_url(&next, true),
            "/api/v1/query?series=plant1%2F%2A&from=2025-12-31T23%3A59%3A00Z&to=2026-01-01T00%3A00%3A00Z\
             &every=60000000000ns&agg=mean%2Ctwa&twa_mode=step&basis=event&format=json&time_format=rfc3339&limit=10\
             &resume_series=plant1%2Fb%7Bu%3DC%7D&later_from=2025-12-31T23%3A00%3A00Z"
        );
    }
}
