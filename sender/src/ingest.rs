//! Sources that speak the InfluxDB line protocol, so existing collectors (Telegraf's OPC UA, Modbus,
//! MQTT and S7 inputs, InfluxDB client libraries) need only a new URL:
//!
//! - HTTP: `POST /api/v2/write` (v2), `POST /write` (v1), `GET /ping`, `GET /health`, gzip bodies,
//!   InfluxDB's status codes and JSON error bodies;
//! - raw line protocol over TCP (newline-delimited stream) and UDP (one batch per datagram).
//!
//! A write is answered 204 only after its records are in the spool (see `pipeline`): 204 means
//! durable. Writes that arrive together share one spool sync (`commit`). A body with a bad line is
//! refused whole (400 naming the first bad line), so a writer can fix it and retry without creating
//! duplicates.
//!
//! Slow and hostile clients cannot stop the listeners: HTTP is served by
//! [`diode_host::http_server`] (connection cap, header, idle and write timeouts); a write's token
//! is checked before its body is read, the body is bounded in size (compressed and decompressed)
//! and in read time, and at most [`IngestLimits::max_concurrent_writes`] writes are read, parsed
//! and spooled at once: a write beyond them is answered 503 with `Retry-After` at once, without
//! reading its body (a collector retries it, as it retries a full spool). TCP connections are
//! capped (more wait in the backlog, losing nothing), their pending batches bounded in lines and
//! bytes; accept and receive errors (out of descriptors) are logged, backed off and survived.

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::line_protocol::{self, ParseOptions, Precision};
use anyhow::Context;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use diode_common::codec::Grouper;
use diode_host::backoff::{Backoff, RateLimitedWarning};
use diode_host::http_server::HttpLimits;
use http_body::Body as _;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::clock::now_ns;
use crate::commit::Committer;
use crate::config::IngestConfig;
use crate::pipeline::{PipelineError, SubmitError};

/// What the ingest listeners need.
#[derive(Clone)]
pub struct IngestState {
    /// The spool, through group commit.
    pub committer: Committer,
    /// `ingest.token`: when set, HTTP writes must present it.
    pub token: Option<Arc<str>>,
    /// `ingest.max_body_bytes`: the largest body (after gunzip) and the longest TCP line.
    pub max_body_bytes: usize,
    /// `ingest.quality_field`: the field read as a record's quality, not stored.
    pub quality_field: Option<String>,
    /// `ingest.quality_tag`: the tag read as a record's quality, not stored.
    pub quality_tag: Option<String>,
}

/// How the ingest listeners protect themselves from slow and hostile clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// The HTTP listener's connection cap and timeouts.
    pub http: HttpLimits,
    /// HTTP writes whose bodies are read, parsed and spooled at once; more are answered 503.
    pub max_concurrent_writes: usize,
    /// Time a write's body may take to arrive, once its head has.
    pub body_timeout: Duration,
    /// TCP line protocol connections served at once; more wait in the listen backlog.
    pub tcp_max_connections: usize,
}

/// Default [`IngestLimits::max_concurrent_writes`]: twice the eight collectors of the ingest
/// bench. Each write in progress may hold its body and its decompressed text (up to
/// `ingest.max_body_bytes` each) and its records.
pub const DEFAULT_MAX_CONCURRENT_WRITES: usize = 16;
/// Default [`IngestLimits::body_timeout`]: a 32 MiB body at 5 Mbit/s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`IngestLimits::tcp_max_connections`].
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 256;

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            http: HttpLimits::default(),
            max_concurrent_writes: DEFAULT_MAX_CONCURRENT_WRITES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            tcp_max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
        }
    }
}

impl IngestLimits {
    /// The limits `[ingest]` sets.
    pub fn from_config(config: &IngestConfig) -> IngestLimits {
        IngestLimits {
            http: HttpLimits {
                max_connections: config.max_connections,
                header_timeout: Duration::from_millis(config.header_timeout_ms),
                idle_timeout: Duration::from_millis(config.idle_timeout_ms),
                write_timeout: Duration::from_millis(config.write_timeout_ms),
            },
            max_concurrent_writes: config.max_concurrent_writes,
            body_timeout: Duration::from_millis(config.body_timeout_ms),
            tcp_max_connections: config.tcp_max_connections,
        }
    }
}

/// What the HTTP handlers share: the listeners' state and the write slots.
#[derive(Clone)]
struct HttpIngest {
    state: IngestState,
    /// One permit per write being read, parsed or spooled.
    writes: Arc<tokio::sync::Semaphore>,
    max_concurrent_writes: usize,
    body_timeout: Duration,
}

/// The InfluxDB version reported by `/ping` and `/health`, which some clients check.
const COMPATIBLE_VERSION: &str = "2.7.0";
/// Seconds a client is told to wait when the spool is full.
const RETRY_AFTER_SECONDS: &str = "5";
/// Seconds a client is told to wait when every write slot is taken.
const BUSY_RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

#[derive(Debug, Deserialize, Default)]
struct WriteParams {
    precision: Option<String>,
    /// v1 password (InfluxDB 1.x passes credentials as `u` and `p`).
    p: Option<String>,
}

/// The HTTP routes with the default [`IngestLimits`].
pub fn router(state: IngestState) -> axum::Router {
    router_with(state, &IngestLimits::default())
}

/// The HTTP routes with `limits`' write slots and body timeout.
pub fn router_with(state: IngestState, limits: &IngestLimits) -> axum::Router {
    let http = HttpIngest {
        state,
        writes: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_writes)),
        max_concurrent_writes: limits.max_concurrent_writes,
        body_timeout: limits.body_timeout,
    };
    axum::Router::new()
        .route("/api/v2/write", post(write_v2))
        .route("/write", post(write_v1))
        .route("/ping", get(ping).head(ping))
        .route("/health", get(health))
        .with_state(http)
}

/// Serves the HTTP routes on `listener` (see [`diode_host::http_server`]), for ever.
pub async fn serve_http(listener: tokio::net::TcpListener, state: IngestState, limits: &IngestLimits) {
    if let Ok(listen) = listener.local_addr() {
        tracing::info!(%listen, "accepting InfluxDB line protocol over HTTP");
    }
    diode_host::http_server::serve(listener, router_with(state, limits), limits.http, "ingest.max_connections").await;
}

async fn ping() -> Response {
    (StatusCode::NO_CONTENT, [("x-influxdb-version", COMPATIBLE_VERSION), ("x-influxdb-build", "OSS")]).into_response()
}

async fn health() -> Response {
    axum::Json(json!({
        "name": "diode-sender",
        "message": "ready for writes",
        "status": "pass",
        "checks": [],
        "version": COMPATIBLE_VERSION,
    }))
    .into_response()
}

// The body is taken unread (`Body`, not `Bytes`): the token is checked and a write slot taken
// before a byte of it is read, and its size is bounded by `ingest.max_body_bytes`, not by axum's
// default limit.
async fn write_v2(
    State(http): State<HttpIngest>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(http, Api::V2, params, headers, body).await
}

async fn write_v1(
    State(http): State<HttpIngest>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(http, Api::V1, params, headers, body).await
}

/// An error answered the way InfluxDB answers it.
fn error(api: Api, status: StatusCode, code: &str, message: String, line: Option<usize>) -> Response {
    let body = match api {
        Api::V2 => {
            let mut body = json!({ "code": code, "message": message });
            if let Some(line) = line {
                body["line"] = json!(line);
            }
            body
        }
        Api::V1 => json!({ "error": message }),
    };
    (status, axum::Json(body)).into_response()
}

fn authorised(state: &IngestState, api: Api, params: &WriteParams, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.token else { return true };
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|value| value.strip_prefix("Token ").or_else(|| value.strip_prefix("Bearer ")).map(str::to_owned));
    let given = from_header.or_else(|| if api == Api::V1 { params.p.clone() } else { None });
    given.is_some_and(|token| diode_common::keys::constant_time_eq(token.as_bytes(), expected.as_bytes()))
}

fn too_large(api: Api, max_body_bytes: usize) -> Response {
    let message = format!("request body exceeds the {max_body_bytes} byte limit; send smaller batches");
    error(api, StatusCode::PAYLOAD_TOO_LARGE, "request too large", message, None)
}

/// The body, read whole, never more than `limit` bytes.
async fn read_body(mut body: Body, limit: usize, declared: Option<usize>) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(frame) = std::future::poll_fn(|context| Pin::new(&mut body).poll_frame(context)).await {
        let frame = frame.map_err(|e| BodyError::Invalid(format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

async fn write(http: HttpIngest, api: Api, params: WriteParams, headers: HeaderMap, body: Body) -> Response {
    let state = &http.state;
    // Everything that can refuse a write without its body comes first: the body is never read
    // for a write that would be refused anyway.
    if !authorised(state, api, &params, &headers) {
        return error(api, StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized access".into(), None);
    }
    let precision = match params.precision.as_deref().map(str::parse::<Precision>).transpose() {
        Ok(precision) => precision.unwrap_or(Precision::Nanoseconds),
        Err(e) => return error(api, StatusCode::BAD_REQUEST, "invalid", format!("invalid precision: {e}"), None),
    };
    let max_body_bytes = state.max_body_bytes;
    let declared = body.size_hint().exact().map(|length| usize::try_from(length).unwrap_or(usize::MAX));
    if declared.is_some_and(|length| length > max_body_bytes) {
        return too_large(api, max_body_bytes);
    }
    // Held until the write is answered: bounds the bodies, texts and records held at once.
    let Ok(_slot) = Arc::clone(&http.writes).try_acquire_owned() else {
        let message = format!(
            "{} writes are in progress already (ingest.max_concurrent_writes); retry in a moment",
            http.max_concurrent_writes
        );
        let mut response = error(api, StatusCode::SERVICE_UNAVAILABLE, "unavailable", message, None);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(BUSY_RETRY_AFTER_SECONDS));
        return response;
    };
    let body = match tokio::time::timeout(http.body_timeout, read_body(body, max_body_bytes, declared)).await {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => return too_large(api, max_body_bytes),
        Ok(Err(BodyError::Invalid(message))) => return error(api, StatusCode::BAD_REQUEST, "invalid", message, None),
        Err(_) => {
            let message = format!(
                "the request body did not arrive within {} ms (ingest.body_timeout_ms)",
                http.body_timeout.as_millis()
            );
            return error(api, StatusCode::REQUEST_TIMEOUT, "request timeout", message, None);
        }
    };
    let gzip = headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let options = ParseOptions {
        precision,
        now_ns: now_ns(),
        quality_field: state.quality_field.clone(),
        quality_tag: state.quality_tag.clone(),
    };
    // Decompressing, parsing and encoding the spool frames take milliseconds for a large body:
    // off the async worker, so concurrent writers do that on every core, the committing thread
    // only appends and syncs, and the listeners stay responsive.
    let committer = state.committer.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        parse_body(&body, gzip, max_body_bytes, &options, committer.grouper())
            .map(|grouped| committer.prepare_grouped(grouped))
    })
    .await;
    let submitted = match prepared {
        Ok(Ok(Ok(prepared))) => state.committer.submit_prepared(prepared).await.map_err(|(e, _)| e),
        Ok(Ok(Err(invalid))) => Err(invalid),
        Ok(Err(refusal)) => return error(api, refusal.status, refusal.code, refusal.message, refusal.line),
        Err(e) => {
            let message = format!("the parsing task failed: {e}");
            return error(api, StatusCode::INTERNAL_SERVER_ERROR, "internal error", message, None);
        }
    };
    match submitted {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(SubmitError::SpoolFull { used_bytes, limit_bytes }) => unavailable(
            api,
            format!("the spool is full ({used_bytes} of {limit_bytes} bytes): the link is behind; retry later"),
        ),
        // Nothing of the write was stored, and the same write succeeds once space is freed (the
        // pipeline logs the full disk, once).
        Err(e @ SubmitError::Storage(PipelineError::DiskFull { .. })) => {
            unavailable(api, format!("{e}; nothing of this write was stored, retry later"))
        }
        Err(e @ SubmitError::Invalid { .. }) => error(api, StatusCode::BAD_REQUEST, "invalid", e.to_string(), None),
        Err(e @ (SubmitError::Storage(_) | SubmitError::Stopped)) => {
            tracing::error!("{e}");
            error(api, StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string(), None)
        }
    }
}

/// 503 with `Retry-After`: the spool cannot take the write now, and nothing of it was stored.
fn unavailable(api: Api, message: String) -> Response {
    let mut response = error(api, StatusCode::SERVICE_UNAVAILABLE, "unavailable", message, None);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    response
}

enum BodyError {
    TooLarge,
    Invalid(String),
}

/// The body as text, gunzipped if needed, never larger than `limit` bytes.
fn decode_body(body: &[u8], gzip: bool, limit: usize) -> Result<String, BodyError> {
    if body.len() > limit {
        return Err(BodyError::TooLarge);
    }
    let bytes = if gzip {
        let mut decoded = Vec::new();
        let mut reader = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
        reader
            .read_to_end(&mut decoded)
            .map_err(|e| BodyError::Invalid(format!("gzip body cannot be decoded: {e}")))?;
        if decoded.len() > limit {
            return Err(BodyError::TooLarge);
        }
        decoded
    } else {
        body.to_vec()
    };
    String::from_utf8(bytes)
        .map_err(|e| BodyError::Invalid(format!("body is not UTF-8 (byte {})", e.utf8_error().valid_up_to())))
}

/// Why a write's body is refused: what [`error`] answers.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    line: Option<usize>,
}

/// The records of a write's body, grouped into `grouped` as they are parsed, or why it is refused.
fn parse_body(
    body: &[u8],
    gzip: bool,
    max_body_bytes: usize,
    options: &ParseOptions,
    mut grouped: Grouper,
) -> Result<Grouper, Refusal> {
    let invalid = |message: String, line: Option<usize>| Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "invalid",
        message,
        line,
    };
    let body = match decode_body(body, gzip, max_body_bytes) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(Refusal {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "request too large",
                message: format!("request body exceeds the {max_body_bytes} byte limit; send smaller batches"),
                line: None,
            });
        }
        Err(BodyError::Invalid(message)) => return Err(invalid(message, None)),
    };
    if let Err(e) = line_protocol::parse_lines_grouped(&body, options, &mut grouped) {
        return Err(invalid(e.to_string(), Some(e.line_number)));
    }
    Ok(grouped)
}

/// Raw line protocol over TCP, as Telegraf's socket_writer sends it: newline-delimited, each line
/// acknowledged by nothing (TCP has no reply in this protocol), so lines are spooled in batches
/// as they arrive. A bad line is logged and skipped; a full spool pauses reading (backpressure).
/// At most [`IngestLimits::tcp_max_connections`] connections are served at once (more wait in
/// the backlog); a failed accept (out of descriptors) is logged, backed off and retried. Serves
/// for ever.
pub async fn serve_tcp(listener: tokio::net::TcpListener, state: IngestState, limits: &IngestLimits) {
    if let Ok(listen) = listener.local_addr() {
        tracing::info!(%listen, "accepting line protocol over TCP");
    }
    diode_host::fd_limit::reserve(limits.tcp_max_connections, "ingest.tcp_max_connections");
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.tcp_max_connections));
    let (accept_failed, cap_reached) = (RateLimitedWarning::default(), RateLimitedWarning::default());
    let mut backoff = Backoff::default();
    loop {
        // At the cap, new connections wait in the kernel's backlog, their lines with them: closing
        // them would lose what they sent (this protocol acknowledges nothing).
        let permit = match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                cap_reached.warn(|| {
                    format!(
                        "{} line protocol connections are open (ingest.tcp_max_connections); new ones wait until one \
                         ends",
                        limits.tcp_max_connections
                    )
                });
                // The semaphore is never closed.
                let Ok(permit) = Arc::clone(&connections).acquire_owned().await else { return };
                permit
            }
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(error) => {
                accept_failed
                    .warn(|| format!("accepting a line protocol connection over TCP failed: {error}; retrying"));
                drop(permit);
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = tcp_connection(stream, &state).await {
                tracing::warn!(%peer, "line protocol connection ended: {e:#}");
            }
            drop(permit);
        });
    }
}

/// UDP datagrams being parsed and spooled at once.
const UDP_DATAGRAMS_IN_FLIGHT: usize = 256;

/// Lines gathered before they are spooled together…
const TCP_BATCH_LINES: usize = 5_000;
/// …or bytes: a batch is spooled once it holds this much (so at most this plus one line, which
/// `ingest.max_body_bytes` bounds, is pending per connection).
pub const TCP_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// A connection idle this long has its partial batch spooled.
const TCP_IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

async fn tcp_connection(stream: impl tokio::io::AsyncRead + Unpin, state: &IngestState) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut batch = String::new();
    let mut count = 0;
    // The line being read; an idle flush can interrupt it, and what was read of it is kept.
    let mut line = Vec::new();
    loop {
        // Bounded: a line longer than the body limit ends the connection instead of memory.
        let mut bounded = (&mut reader).take(state.max_body_bytes as u64 + 1);
        let read = tokio::time::timeout(TCP_IDLE_FLUSH, bounded.read_until(b'\n', &mut line)).await;
        anyhow::ensure!(line.len() <= state.max_body_bytes, "a line is longer than {} bytes", state.max_body_bytes);
        match read {
            Ok(Ok(0)) => {
                // The last line may have come without a newline, and in parts.
                take_line(&mut line, &mut batch);
                spool_text(state, batch).await;
                return Ok(());
            }
            Ok(Ok(_)) => {
                take_line(&mut line, &mut batch);
                count += 1;
                if count >= TCP_BATCH_LINES || batch.len() >= TCP_BATCH_BYTES {
                    spool_text(state, std::mem::take(&mut batch)).await;
                    count = 0;
                }
            }
            Ok(Err(e)) => {
                spool_text(state, std::mem::take(&mut batch)).await;
                return Err(e).context("reading the connection");
            }
            Err(_) => {
                // Idle: spool the whole lines gathered; a partly read line waits for its rest.
                spool_text(state, std::mem::take(&mut batch)).await;
                count = 0;
            }
        }
    }
}

/// Moves a line read from a socket (if any) into `batch`, newline-terminated.
fn take_line(line: &mut Vec<u8>, batch: &mut String) {
    if line.is_empty() {
        return;
    }
    match std::str::from_utf8(line) {
        Ok(text) => {
            batch.push_str(text.trim_end_matches(['\n', '\r']));
            batch.push('\n');
        }
        Err(_) => tracing::warn!("skipped a line that is not UTF-8"),
    }
    line.clear();
}

/// Parses and spools a batch from TCP or UDP, where there is nobody to answer: bad lines are
/// logged and skipped, and a full spool is waited out. Parsing runs off the async worker.
async fn spool_text(state: &IngestState, text: String) {
    if text.is_empty() {
        return;
    }
    let options = ParseOptions {
        precision: Precision::Nanoseconds,
        now_ns: now_ns(),
        quality_field: state.quality_field.clone(),
        quality_tag: state.quality_tag.clone(),
    };
    let committer = state.committer.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        // One bad line costs only itself; the others are grouped into spool frames as they are
        // parsed.
        let mut grouped = committer.grouper();
        line_protocol::parse_lines_grouped_skipping(&text, &options, &mut grouped, |e| {
            tracing::warn!("skipped a line protocol line: {e}");
        });
        (grouped.records() > 0).then(|| committer.prepare_grouped(grouped))
    })
    .await;
    let mut records = match parsed {
        Ok(None) => return,
        Ok(Some(Ok(prepared))) => match state.committer.submit_prepared(prepared).await {
            Ok(()) => return,
            Err((error, refused)) if error.is_full() => refused,
            Err((e, _)) => {
                tracing::error!("records from a socket listener were not spooled: {e}");
                return;
            }
        },
        Ok(Some(Err(e))) => {
            tracing::error!("records from a socket listener were not spooled: {e}");
            return;
        }
        Err(e) => {
            tracing::error!("records from a socket listener were not parsed: {e}");
            return;
        }
    };
    // The spool is full: wait it out, as a socket's sender cannot be told to retry.
    while !records.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        match state.committer.submit(records).await {
            Ok(()) => return,
            Err((error, refused)) if error.is_full() => records = refused,
            Err((e, _)) => {
                tracing::error!("records from a socket listener were not spooled: {e}");
                return;
            }
        }
    }
}

/// Raw line protocol over UDP, one batch per datagram (Telegraf's socket_writer with udp://),
/// for ever.
pub async fn serve_udp(socket: tokio::net::UdpSocket, state: IngestState) {
    if let Ok(listen) = socket.local_addr() {
        tracing::info!(%listen, "accepting line protocol over UDP");
    }
    receive_datagrams(&socket, state).await;
}

/// Where datagrams come from: a UDP socket, or a test's script of datagrams and errors.
trait DatagramSource {
    fn receive(&self, buffer: &mut [u8]) -> impl std::future::Future<Output = std::io::Result<usize>> + Send;
}

impl DatagramSource for tokio::net::UdpSocket {
    async fn receive(&self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.recv_from(buffer).await.map(|(length, _)| length)
    }
}

/// Spools every datagram `source` gives, for ever. A failed receive is logged (at most every ten
/// seconds), backed off and retried.
async fn receive_datagrams(source: &impl DatagramSource, state: IngestState) {
    let mut buffer = vec![0u8; 65_536];
    // Datagrams are spooled concurrently (and share syncs through group commit), so the socket is
    // read again at once instead of after each sync; bounded, so a flood waits in the socket.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(UDP_DATAGRAMS_IN_FLIGHT));
    let receive_failed = RateLimitedWarning::default();
    let mut backoff = Backoff::default();
    loop {
        let length = match source.receive(&mut buffer).await {
            Ok(length) => {
                backoff.reset();
                length
            }
            Err(error) => {
                receive_failed.warn(|| format!("receiving line protocol over UDP failed: {error}; retrying"));
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        let Ok(text) = std::str::from_utf8(&buffer[..length]) else {
            tracing::warn!("skipped a UDP datagram that is not UTF-8 line protocol");
            continue;
        };
        let text = text.to_owned();
        // The semaphore is never closed.
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else { return };
        let state = state.clone();
        tokio::spawn(async move {
            spool_text(&state, text).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FsyncPolicy;
    use crate::framed_log::faults::FaultyDisk;
    use crate::framed_log::{Disk, RealDisk};
    use crate::pipeline::{Pipeline, PipelineSettings, SealedEntry};
    use axum::body::Body;
    use axum::http::Request;
    use diode_common::keys::{SenderKey, TrustedKeys};
    use diode_common::record::{Record, Value};
    use std::io::Write;
    use std::sync::Mutex;
    use std::sync::mpsc::Receiver;
    use tower::ServiceExt;

    struct Fixture {
        _dir: tempfile::TempDir,
        pipeline: Arc<Mutex<Pipeline>>,
        state: IngestState,
        sealed: Receiver<SealedEntry>,
    }

    fn fixture(token: Option<&str>, spool_max_bytes: u64) -> Fixture {
        fixture_on(Arc::new(RealDisk), token, spool_max_bytes)
    }

    /// A fixture whose spool and segment log write through `disk`.
    fn fixture_on(disk: Arc<dyn Disk>, token: Option<&str>, spool_max_bytes: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let settings = PipelineSettings {
            sender_id: 1,
            data_dir: dir.path().to_owned(),
            max_records: 10_000,
            max_age_ns: 1,
            zstd_level: 3,
            spool_max_bytes,
            fsync: FsyncPolicy::Always,
            max_unsent_bytes: 1 << 30,
            retention_bytes: 1 << 30,
        };
        let (tx, sealed) = std::sync::mpsc::sync_channel(100);
        let pipeline = Pipeline::open_on(disk, settings, SenderKey::from_seed([3; 32]), 0, tx).unwrap();
        let pipeline = Arc::new(Mutex::new(pipeline));
        let state = IngestState {
            committer: Committer::start(Arc::clone(&pipeline)).unwrap(),
            token: token.map(Arc::from),
            max_body_bytes: 4096,
            quality_field: None,
            quality_tag: None,
        };
        Fixture { _dir: dir, pipeline, state, sealed }
    }

    fn records_sealed(fixture: &Fixture) -> Vec<Record> {
        fixture.pipeline.lock().unwrap().flush(0).unwrap();
        let trusted = TrustedKeys::single(SenderKey::from_seed([3; 32]).public_key());
        fixture
            .sealed
            .try_iter()
            .flat_map(|entry| {
                let (_, series) = diode_common::seal::open_records(&entry.bytes, &trusted).unwrap();
                series.iter().flat_map(|s| s.records()).collect::<Vec<_>>()
            })
            .collect()
    }

    async fn call(state: &IngestState, request: Request<Body>) -> (StatusCode, HeaderMap, serde_json::Value) {
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
        Request::post(uri).body(body.into()).unwrap()
    }

    #[tokio::test]
    async fn a_v2_write_is_answered_204_once_its_records_are_spooled() {
        let fixture = fixture(None, 1 << 20);
        let body = "boiler,unit=b3 steam_temp=512.5,running=true 1700000000123\n";
        let (status, _, _) = call(&fixture.state, post("/api/v2/write?org=o&bucket=b&precision=ms", body)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let records = records_sealed(&fixture);
        assert_eq!(records.len(), 2);
        let temp = records.iter().find(|r| &*r.series.name == "boiler/steam_temp").unwrap();
        assert_eq!(temp.timestamp_ns, 1_700_000_000_123_000_000);
        assert_eq!(temp.value, Value::F64(512.5));
        assert_eq!(*temp.series.tags, [("unit".to_owned(), "b3".to_owned())]);
    }

    #[tokio::test(start_paused = true)]
    async fn tcp_lines_interrupted_by_the_idle_flush_or_ended_by_the_connection_are_kept_whole() {
        use tokio::io::AsyncWriteExt;
        let fixture = fixture(None, 1 << 20);
        let (mut client, server) = tokio::io::duplex(1024);
        let state = fixture.state.clone();
        let connection = tokio::spawn(async move { tcp_connection(server, &state).await });
        // On the paused clock, the listener reads what is there and then idles: the idle flush runs
        // five times while the first line is half read.
        client.write_all(b"m,t=a f=").await.unwrap();
        tokio::time::sleep(TCP_IDLE_FLUSH * 5).await;
        // The first line ends; the second has no newline, is read, and is still pending when an
        // idle flush spools the first; then the connection ends.
        client.write_all(b"1 1\nm,t=a f=2 2").await.unwrap();
        tokio::time::sleep(TCP_IDLE_FLUSH * 5).await;
        drop(client);
        connection.await.unwrap().unwrap();
        let values: Vec<(i64, Value)> =
            records_sealed(&fixture).into_iter().map(|r| (r.timestamp_ns, r.value)).collect();
        assert_eq!(values, vec![(1, Value::F64(1.0)), (2, Value::F64(2.0))]);
    }

    #[tokio::test]
    async fn a_bad_line_refuses_the_whole_body_and_names_the_line() {
        let fixture = fixture(None, 1 << 20);
        let body = "m f=1 1\nm f=oops 2\nm f=3 3\n";
        let (status, _, json) = call(&fixture.state, post("/api/v2/write?bucket=b", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["code"], "invalid");
        assert_eq!(json["line"], 2);
        let (status, _, json) = call(&fixture.state, post("/write?db=d", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(json["error"].as_str().unwrap().contains("line 2") || json["error"].as_str().unwrap().contains("oops"));
        assert!(records_sealed(&fixture).is_empty());
    }

    #[tokio::test]
    async fn a_missing_or_wrong_token_is_answered_401() {
        let fixture = fixture(Some("s3cret"), 1 << 20);
        let (status, _, json) = call(&fixture.state, post("/api/v2/write?bucket=b", "m f=1 1")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json["code"], "unauthorized");
        let wrong = Request::post("/api/v2/write?bucket=b")
            .header("authorization", "Token nope")
            .body(Body::from("m f=1 1"))
            .unwrap();
        assert_eq!(call(&fixture.state, wrong).await.0, StatusCode::UNAUTHORIZED);
        let right = Request::post("/api/v2/write?bucket=b")
            .header("authorization", "Token s3cret")
            .body(Body::from("m f=1 1"))
            .unwrap();
        assert_eq!(call(&fixture.state, right).await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&fixture.state, post("/write?db=d&u=x&p=s3cret", "m f=1 1")).await.0, StatusCode::NO_CONTENT);
    }

    #[tokio::test]
    async fn an_oversized_body_is_answered_413() {
        let fixture = fixture(None, 1 << 20);
        let body = "m f=1 1\n".repeat(1_000);
        let (status, _, json) = call(&fixture.state, post("/api/v2/write?bucket=b", body)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json["code"], "request too large");
    }

    #[tokio::test]
    async fn gzip_bodies_are_accepted_and_gzip_bombs_are_refused() {
        let fixture = fixture(None, 1 << 20);
        let gzip = |text: &str| {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(text.as_bytes()).unwrap();
            encoder.finish().unwrap()
        };
        let request = |bytes: Vec<u8>| {
            Request::post("/api/v2/write?bucket=b").header("content-encoding", "gzip").body(Body::from(bytes)).unwrap()
        };
        assert_eq!(call(&fixture.state, request(gzip("m f=1i 1\nm f=2i 2\n"))).await.0, StatusCode::NO_CONTENT);
        let bomb = gzip(&"m f=1 1\n".repeat(100_000));
        assert!(bomb.len() < 4096);
        assert_eq!(call(&fixture.state, request(bomb)).await.0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(records_sealed(&fixture).len(), 2);
    }

    #[tokio::test]
    async fn a_full_spool_is_answered_503_with_retry_after() {
        let fixture = fixture(None, 1);
        assert_eq!(call(&fixture.state, post("/api/v2/write?bucket=b", "m f=1 1")).await.0, StatusCode::NO_CONTENT);
        let (status, headers, _) = call(&fixture.state, post("/api/v2/write?bucket=b", "m f=2 2")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get("retry-after").unwrap(), "5");
    }

    /// The spool's disk is full (ENOSPC): nothing of the write is stored, the collector is told to
    /// come back, and the same write is accepted once space is freed.
    #[tokio::test]
    async fn a_full_disk_is_answered_503_with_retry_after_and_the_write_is_taken_once_space_is_freed() {
        let disk = FaultyDisk::new();
        let fixture = fixture_on(Arc::new(disk.clone()), None, 1 << 20);
        disk.limit_space(0);
        let (status, headers, json) = call(&fixture.state, post("/api/v2/write?bucket=b", "m f=1 1")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get("retry-after").unwrap(), "5");
        let message = json["message"].as_str().unwrap();
        assert!(message.contains("full") && message.contains("No space left on device"), "{message}");
        disk.free_space();
        assert_eq!(call(&fixture.state, post("/api/v2/write?bucket=b", "m f=1 1")).await.0, StatusCode::NO_CONTENT);
        assert_eq!(records_sealed(&fixture).len(), 1);
    }

    /// A request body that never delivers a byte; it says when it is first polled.
    struct Unread {
        declared_length: Option<u64>,
        polled: Arc<tokio::sync::Notify>,
    }

    impl http_body::Body for Unread {
        type Data = axum::body::Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            self.polled.notify_one();
            std::task::Poll::Pending
        }

        fn size_hint(&self) -> http_body::SizeHint {
            self.declared_length.map_or_else(http_body::SizeHint::default, http_body::SizeHint::with_exact)
        }
    }

    fn unread(declared_length: Option<u64>) -> (Body, Arc<tokio::sync::Notify>) {
        let polled = Arc::new(tokio::sync::Notify::new());
        (Body::new(Unread { declared_length, polled: Arc::clone(&polled) }), polled)
    }

    /// A deadline guard for answers that must not wait for a body that never comes.
    const GUARD: std::time::Duration = std::time::Duration::from_secs(10);

    #[tokio::test]
    async fn a_body_over_axums_two_mebibyte_default_but_within_max_body_bytes_is_accepted() {
        let mut fixture = fixture(None, 1 << 30);
        fixture.state.max_body_bytes = IngestConfig::default().max_body_bytes;
        // 5.4 MB of line protocol: 300,000 lines of 18 bytes.
        let body: String = (0..300_000).map(|i| format!("m,t=a f=1 {:08}\n", i + 1)).collect();
        assert!(body.len() > 5_000_000, "{}", body.len());
        let (status, _, json) = call(&fixture.state, post("/api/v2/write?bucket=b", body)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{json}");
        assert_eq!(records_sealed(&fixture).len(), 300_000);
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused_before_the_body_is_read() {
        let fixture = fixture(Some("s3cret"), 1 << 20);
        let (body, polled) = unread(None);
        let request = Request::post("/api/v2/write?bucket=b").header("authorization", "Token nope").body(body).unwrap();
        let answer = tokio::time::timeout(GUARD, call(&fixture.state, request)).await;
        let (status, _, json) = answer.expect("answered without waiting for the body");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json["code"], "unauthorized");
        assert!(tokio::time::timeout(std::time::Duration::ZERO, polled.notified()).await.is_err(), "the body was read");
    }

    #[tokio::test]
    async fn a_declared_length_over_max_body_bytes_is_refused_before_the_body_is_read() {
        let fixture = fixture(None, 1 << 20);
        let (body, polled) = unread(Some(1 << 30));
        let answer = tokio::time::timeout(GUARD, call(&fixture.state, post("/api/v2/write?bucket=b", body))).await;
        let (status, _, json) = answer.expect("answered without waiting for the body");
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json["code"], "request too large");
        assert!(tokio::time::timeout(std::time::Duration::ZERO, polled.notified()).await.is_err(), "the body was read");
    }

    #[tokio::test]
    async fn writes_beyond_max_concurrent_writes_are_answered_503_with_retry_after() {
        let fixture = fixture(None, 1 << 20);
        let limits = IngestLimits { max_concurrent_writes: 1, ..IngestLimits::default() };
        let router = router_with(fixture.state.clone(), &limits);
        // The first write takes the only slot and waits for a body that never comes.
        let (body, polled) = unread(None);
        let first = tokio::spawn(router.clone().oneshot(post("/api/v2/write?bucket=b", body)));
        tokio::time::timeout(GUARD, polled.notified()).await.expect("the first write reads its body");
        let response = router.clone().oneshot(post("/api/v2/write?bucket=b", "m f=1 1")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get("retry-after").unwrap(), "1");
        let json: serde_json::Value =
            serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
        assert!(json["message"].as_str().unwrap().contains("ingest.max_concurrent_writes"), "{json}");
        // The slot is free again once the first write is gone.
        first.abort();
        let _ = first.await;
        let response = router.oneshot(post("/api/v2/write?bucket=b", "m f=1 1")).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_within_the_body_timeout_is_answered_408() {
        let fixture = fixture(None, 1 << 20);
        let limits = IngestLimits { body_timeout: std::time::Duration::from_millis(50), ..IngestLimits::default() };
        let (body, _) = unread(None);
        let response = router_with(fixture.state.clone(), &limits).oneshot(post("/write?db=d", body)).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tcp_batch_is_spooled_once_it_holds_four_mebibytes_not_only_after_five_thousand_lines() {
        use tokio::io::AsyncWriteExt;
        let mut fixture = fixture(None, 1 << 30);
        fixture.state.max_body_bytes = 2 << 20;
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let state = fixture.state.clone();
        let connection = tokio::spawn(async move { tcp_connection(server, &state).await });
        // 150 lines of 60 KiB each (a long string field; 9 MB, far fewer than 5,000 lines), written
        // without a pause: the clock is paused, so no idle flush can cut the batches; only their
        // size does.
        let text = "x".repeat(60 * 1024);
        for i in 0..150 {
            client.write_all(format!("m s=\"{text}\" {}\n", i + 1).as_bytes()).await.unwrap();
        }
        drop(client);
        connection.await.unwrap().unwrap();
        let writes = fixture.state.committer.counters().writes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(writes >= 3, "9 MB of lines were spooled in {writes} batches");
        assert_eq!(records_sealed(&fixture).len(), 150);
    }

    /// Datagrams and receive errors, in order; then nothing more, for ever.
    struct Scripted(Mutex<std::collections::VecDeque<std::io::Result<&'static str>>>);

    impl DatagramSource for Scripted {
        async fn receive(&self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let next = self.0.lock().unwrap().pop_front();
            match next {
                Some(Ok(text)) => {
                    buffer[..text.len()].copy_from_slice(text.as_bytes());
                    Ok(text.len())
                }
                Some(Err(error)) => Err(error),
                None => std::future::pending().await,
            }
        }
    }

    #[tokio::test]
    async fn failed_udp_receives_are_backed_off_and_the_listener_carries_on() {
        let fixture = fixture(None, 1 << 20);
        let script = Scripted(Mutex::new(
            [
                Err(std::io::Error::from_raw_os_error(24)),
                Err(std::io::Error::from_raw_os_error(105)),
                Ok("m f=1 1\n"),
                Err(std::io::Error::from_raw_os_error(24)),
                Ok("m f=2 2\n"),
            ]
            .into(),
        ));
        let state = fixture.state.clone();
        let listener = tokio::spawn(async move { receive_datagrams(&script, state).await });
        let counters = Arc::clone(fixture.state.committer.counters());
        let deadline = tokio::time::Instant::now() + GUARD;
        while counters.writes.load(std::sync::atomic::Ordering::Relaxed) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "the datagrams after the errors were not spooled");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!listener.is_finished(), "the listener stopped");
        listener.abort();
        let mut values: Vec<Value> = records_sealed(&fixture).into_iter().map(|r| r.value).collect();
        values.sort_by(|a, b| a.as_f64().partial_cmp(&b.as_f64()).unwrap());
        assert_eq!(values, vec![Value::F64(1.0), Value::F64(2.0)]);
    }

    /// Waits until `count` writes from the socket listeners are durable.
    async fn wait_for_writes(fixture: &Fixture, count: u64) {
        let counters = Arc::clone(fixture.state.committer.counters());
        let deadline = tokio::time::Instant::now() + GUARD;
        while counters.writes.load(std::sync::atomic::Ordering::Relaxed) < count {
            assert!(tokio::time::Instant::now() < deadline, "{count} writes were not spooled");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_tcp_connection_beyond_the_cap_waits_for_a_free_place_and_loses_nothing() {
        use tokio::io::AsyncWriteExt;
        let fixture = fixture(None, 1 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = listener.local_addr().unwrap();
        let limits = IngestLimits { tcp_max_connections: 1, ..IngestLimits::default() };
        let state = fixture.state.clone();
        let listener = tokio::spawn(async move { serve_tcp(listener, state, &limits).await });
        let mut first = tokio::net::TcpStream::connect(listen).await.unwrap();
        first.write_all(b"m f=1 1\n").await.unwrap();
        // The second connection, beyond the cap, sends its line and closes at once.
        let mut second = tokio::net::TcpStream::connect(listen).await.unwrap();
        second.write_all(b"m f=2 2\n").await.unwrap();
        drop(second);
        // The first's line is spooled (its idle flush); the second's waits for a place.
        wait_for_writes(&fixture, 1).await;
        let values: Vec<Value> = records_sealed(&fixture).into_iter().map(|r| r.value).collect();
        assert_eq!(values, vec![Value::F64(1.0)]);
        drop(first);
        wait_for_writes(&fixture, 2).await;
        let values: Vec<Value> = records_sealed(&fixture).into_iter().map(|r| r.value).collect();
        assert_eq!(values, vec![Value::F64(2.0)]);
        listener.abort();
    }

    #[tokio::test]
    async fn ping_and_health_answer_like_influxdb() {
        let fixture = fixture(None, 1 << 20);
        let (status, headers, _) = call(&fixture.state, Request::get("/ping").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(headers.contains_key("x-influxdb-version"));
        let (status, _, json) = call(&fixture.state, Request::get("/health").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["status"], "pass");
    }

    #[tokio::test]
    async fn an_unknown_precision_is_answered_400() {
        let fixture = fixture(None, 1 << 20);
        let (status, _, _) = call(&fixture.state, post("/api/v2/write?bucket=b&precision=fortnights", "m f=1 1")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
