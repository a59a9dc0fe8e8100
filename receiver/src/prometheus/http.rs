//! The Prometheus HTTP API routes (nested under `/prometheus` by [`crate::http`]): what
//! Grafana's Prometheus data source and `promtool` send, answered in Prometheus's JSON shapes.
//!
//! - `GET|POST /api/v1/query` (`query`, `time`) and `/api/v1/query_range` (`query`, `start`,
//!   `end`, `step`), both with `timeout`, `lookback_delta` and diode's `include_bad`;
//! - `GET|POST /api/v1/series` (`match[]`, `start`, `end`, `limit`), `/api/v1/labels`,
//!   `GET /api/v1/label/<name>/values`;
//! - `GET /api/v1/status/buildinfo`, `/api/v1/metadata`, `GET|POST /api/v1/query_exemplars`
//!   (always empty: diode keeps no exemplars).
//!
//! Parameters come from the URL and, for POST, from an `application/x-www-form-urlencoded` body;
//! names Prometheus does not know are ignored, as Prometheus ignores them. Errors are
//! `{"status":"error","errorType":…,"error":…}`: `bad_data` 400 (a parameter, a parse error),
//! `execution` 422 (outside the subset, ambiguous matches, too many samples), `timeout` 503
//! (`http.query_timeout_ms`, or a shorter `timeout` parameter), `unavailable` 503 (every query
//! slot taken), `internal` 500. The bearer token, when set, is required as on `/api/v1/*`.
//!
//! **Cost.** Queries share the query slots of `/api/v1/query`
//! ([`MAX_CONCURRENT_QUERIES`](crate::query::http::MAX_CONCURRENT_QUERIES)) and run on a
//! blocking thread, scanning through the same batched read lock; a query stops at its deadline
//! with a `timeout` error, never with a partial answer. A range query may have at most
//! [`MAX_POINTS_PER_SERIES`] steps (Prometheus's own limit, which Grafana's step choice keeps
//! to), and an evaluation holds at most [`MAX_SAMPLES`] samples (step values and open windows):
//! a Prometheus answer cannot be paged, so this bounds its memory instead of a row limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use diode_replica::SeriesInfo;

use super::eval::{self, EvalError, Limits, SeriesEntry, Steps, Value};
use super::functions::Sample;
use super::mapping::{self, Labels};
use super::parse::{Expr, ParseError, ValueType, parse, parse_selector};
use super::replica::{ReplicaSamples, catalog_entries};
use super::times::{NS_PER_MS, parse_duration_ms, parse_time_ms, write_time_ms};
use crate::locks;
use crate::query::http::{QueryLimits, QuerySlot};
use crate::query::source::{LockedReplica, UntilDeadline};
use crate::state::{AppState, Shared, authorised};
use crate::time::now_ns;

/// Most steps of one range query (Prometheus's limit).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;
/// Most samples an evaluation holds at once (about 16 bytes each).
pub const MAX_SAMPLES: usize = 10_000_000;
/// Prometheus's default lookback for instant selectors.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);
/// The Prometheus API version these routes follow, reported by `buildinfo`.
pub const PROMETHEUS_API_VERSION: &str = "2.40.0";

/// The routes, relative to the prefix they are nested under.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v1/query", get(instant_query).post(instant_query))
        .route("/api/v1/query_range", get(range_query).post(range_query))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(label_names).post(label_names))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(build_info))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
}

/// A Prometheus API error.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status answered, such as 400 or 422.
    pub status: StatusCode,
    /// The response's `errorType`: `bad_data`, `execution`, `timeout`, `unavailable` or
    /// `internal`, as Prometheus names them.
    pub error_type: &'static str,
    /// The response's `error`: what is wrong, naming the parameter or the construct.
    pub message: String,
}

impl ApiError {
    fn bad_data(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, error_type: "bad_data", message: message.into() }
    }

    fn bad_parameter(name: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::bad_data(format!("invalid parameter {name:?}: {why}"))
    }
}

impl From<EvalError> for ApiError {
    fn from(error: EvalError) -> ApiError {
        let (status, error_type) = match &error {
            EvalError::Source(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
        };
        ApiError { status, error_type, message: error.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"status": "error", "errorType": self.error_type, "error": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

fn success(data: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], format!(r#"{{"status":"success","data":{data}}}"#)).into_response()
}

/// The parameters of a request: the URL's, then a form body's.
struct Form(Vec<(String, String)>);

impl Form {
    fn read(method: &Method, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Form {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if *method == Method::POST && is_form {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        Form(pairs)
    }

    /// The first value of `name`, as Prometheus reads one.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    }

    fn time_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name).map(|text| parse_time_ms(text).map_err(|why| ApiError::bad_parameter(name, why))).transpose()
    }

    fn duration_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name).map(|text| parse_duration_ms(text).map_err(|why| ApiError::bad_parameter(name, why))).transpose()
    }

    fn include_bad(&self) -> Result<bool, ApiError> {
        match self.get("include_bad") {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_parameter("include_bad", format!("{other:?} is not true or false"))),
        }
    }
}

/// A value as Prometheus writes it: shortest form, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(value: f64) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: f64, out: &mut String) {
    use std::fmt::Write;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

fn json_labels(labels: &[(String, String)], out: &mut String) {
    out.push('{');
    for (index, (name, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&json_string(name));
        out.push(':');
        out.push_str(&json_string(value));
    }
    out.push('}');
}

fn json_pair(ms: i64, value: f64, out: &mut String) {
    out.push('[');
    write_time_ms(ms, out);
    out.push_str(",\"");
    write_value(value, out);
    out.push_str("\"]");
}

/// The `data` of an instant query's answer.
pub fn instant_json(value: &Value, at_ms: i64) -> String {
    let mut out = String::new();
    match value {
        Value::Scalar(values) => {
            out.push_str(r#"{"resultType":"scalar","result":"#);
            json_pair(at_ms, values[0], &mut out);
        }
        Value::Vector(series) => {
            out.push_str(r#"{"resultType":"vector","result":["#);
            let mut first = true;
            for one in series {
                let Some(value) = one.values[0] else { continue };
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(r#"{"metric":"#);
                json_labels(&one.labels, &mut out);
                out.push_str(r#","value":"#);
                json_pair(at_ms, value, &mut out);
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

/// The `data` of a range query's answer (a scalar becomes one series without labels).
pub fn range_json(value: &Value, steps: Steps) -> String {
    let step_ms = |index: usize| (steps.start_ns + index as i64 * steps.step_ns) / NS_PER_MS;
    let mut out = String::from(r#"{"resultType":"matrix","result":["#);
    let mut write_series =
        |labels: &[(String, String)], values: &mut dyn Iterator<Item = (usize, f64)>, first: bool| {
            if !first {
                out.push(',');
            }
            out.push_str(r#"{"metric":"#);
            json_labels(labels, &mut out);
            out.push_str(r#","values":["#);
            for (n, (index, value)) in values.enumerate() {
                if n > 0 {
                    out.push(',');
                }
                json_pair(step_ms(index), value, &mut out);
            }
            out.push_str("]}");
        };
    match value {
        Value::Scalar(values) => write_series(&[], &mut values.iter().copied().enumerate(), true),
        Value::Vector(series) => {
            for (n, one) in series.iter().enumerate() {
                let mut present = one.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v)));
                write_series(&one.labels, &mut present, n == 0);
            }
        }
    }
    out.push_str("]}");
    out
}

fn raw_json(series: &[(Labels, Vec<Sample>)]) -> String {
    let mut out = String::from(r#"{"resultType":"matrix","result":["#);
    for (n, (labels, samples)) in series.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":"#);
        json_labels(labels, &mut out);
        out.push_str(r#","values":["#);
        for (i, sample) in samples.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_pair(sample.timestamp_ns.div_euclid(NS_PER_MS), sample.value, &mut out);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

/// What a query asks, checked.
struct QueryPlan {
    expr: Expr,
    steps: Steps,
    instant: bool,
    lookback_ns: i64,
    include_bad: bool,
    timeout: Option<Duration>,
}

fn parse_query(form: &Form) -> Result<Expr, ApiError> {
    let text =
        form.get("query").ok_or_else(|| ApiError::bad_parameter("query", "missing; give a PromQL expression"))?;
    parse(text).map_err(|error| match error {
        ParseError::Unsupported(_) => {
            ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, error_type: "execution", message: error.to_string() }
        }
        ParseError::Invalid { .. } => ApiError::bad_parameter("query", error),
    })
}

fn common(form: &Form) -> Result<(i64, bool, Option<Duration>), ApiError> {
    let lookback_ns = match form.duration_ms("lookback_delta")? {
        None => DEFAULT_LOOKBACK.as_millis() as i64 * NS_PER_MS,
        Some(ms) if ms > 0 => ms.saturating_mul(NS_PER_MS),
        Some(_) => return Err(ApiError::bad_parameter("lookback_delta", "must be positive")),
    };
    let timeout = match form.duration_ms("timeout")? {
        None => None,
        Some(ms) if ms > 0 => Some(Duration::from_millis(ms as u64)),
        Some(_) => return Err(ApiError::bad_parameter("timeout", "must be positive")),
    };
    Ok((lookback_ns, form.include_bad()?, timeout))
}

fn instant_plan(form: &Form, now_ms: i64) -> Result<QueryPlan, ApiError> {
    let expr = parse_query(form)?;
    let at_ms = form.time_ms("time")?.unwrap_or(now_ms);
    let (lookback_ns, include_bad, timeout) = common(form)?;
    let steps = Steps::instant(ms_to_ns(at_ms, "time")?);
    Ok(QueryPlan { expr, steps, instant: true, lookback_ns, include_bad, timeout })
}

fn ms_to_ns(ms: i64, name: &str) -> Result<i64, ApiError> {
    ms.checked_mul(NS_PER_MS).ok_or_else(|| ApiError::bad_parameter(name, "is outside the years 1677 to 2262"))
}

fn range_plan(form: &Form) -> Result<QueryPlan, ApiError> {
    let expr = parse_query(form)?;
    let required = |name: &str, value: Option<i64>| value.ok_or_else(|| ApiError::bad_parameter(name, "missing"));
    let start_ms = required("start", form.time_ms("start")?)?;
    let end_ms = required("end", form.time_ms("end")?)?;
    let step_ms = required("step", form.duration_ms("step")?)?;
    // Within the years 1677 to 2262 (what ns fit), so the arithmetic below cannot overflow.
    let (start_ns, end_ns) = (ms_to_ns(start_ms, "start")?, ms_to_ns(end_ms, "end")?);
    if end_ms < start_ms {
        return Err(ApiError::bad_parameter("end", "end timestamp must not be before start time"));
    }
    if step_ms <= 0 {
        return Err(ApiError::bad_parameter(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let count = (end_ms - start_ms) / step_ms + 1;
    if count > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(format!(
            "exceeded maximum resolution of {MAX_POINTS_PER_SERIES} points per timeseries. Try decreasing the query \
             resolution (?step=XX)"
        )));
    }
    if !matches!(expr.value_type(), ValueType::Vector | ValueType::Scalar) {
        return Err(ApiError::bad_data(format!(
            "invalid expression type {:?} for range query, must be Scalar or instant Vector",
            expr.value_type().to_string()
        )));
    }
    let (lookback_ns, include_bad, timeout) = common(form)?;
    debug_assert!(end_ns >= start_ns);
    let steps = Steps { start_ns, step_ns: ms_to_ns(step_ms, "step")?, count: count as usize };
    Ok(QueryPlan { expr, steps, instant: false, lookback_ns, include_bad, timeout })
}

fn catalog(shared: &Shared) -> Vec<SeriesInfo> {
    locks::read(&shared.replica).series_list()
}

fn busy() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error_type: "unavailable",
        message: format!(
            "{} queries are running already; retry in a moment",
            crate::query::http::MAX_CONCURRENT_QUERIES
        ),
    }
}

fn timed_out(timeout: Duration) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error_type: "timeout",
        message: format!(
            "query timed out in expression evaluation after {} ms (http.query_timeout_ms, or the timeout parameter); \
             ask for a shorter range, a longer step or fewer series",
            timeout.as_millis()
        ),
    }
}

/// Evaluates `plan` over the running receiver's replica until its deadline.
pub fn run_plan(shared: &Shared, plan: &QueryPlanView<'_>, deadline: Option<Instant>) -> Result<String, ApiError> {
    let entries = catalog_entries(&catalog(shared));
    let locked = LockedReplica(&shared.replica);
    let bounded = UntilDeadline { source: &locked, deadline };
    let source = ReplicaSamples { source: &bounded, include_bad: plan.include_bad };
    answer(plan, &entries, &source)
}

/// A query's answer (`data`) over any catalog and source: what the routes and the benchmarks run.
pub fn answer(
    plan: &QueryPlanView<'_>,
    entries: &[SeriesEntry],
    source: &dyn eval::SampleSource,
) -> Result<String, ApiError> {
    let limits = Limits { lookback_ns: plan.lookback_ns, max_samples: MAX_SAMPLES };
    let steps = plan.steps;
    if plan.instant {
        if let Expr::Range(matrix) = plan.expr {
            let raw = eval::raw_samples(matrix, entries, source, steps.start_ns, limits)?;
            return Ok(raw_json(&raw));
        }
        let value = eval::evaluate(plan.expr, entries, source, steps, limits)?;
        return Ok(instant_json(&value, steps.start_ns / NS_PER_MS));
    }
    let value = eval::evaluate(plan.expr, entries, source, steps, limits)?;
    Ok(range_json(&value, steps))
}

/// A checked query, borrowed: the expression, its steps and how to read the replica.
pub struct QueryPlanView<'a> {
    /// The parsed expression, already checked against the subset.
    pub expr: &'a Expr,
    /// The instants evaluated: one for `/api/v1/query`, `start` to `end` by `step` for
    /// `/api/v1/query_range`.
    pub steps: Steps,
    /// Whether the answer is an instant query's (a vector, a scalar, or the raw samples of a
    /// top-level range selector) rather than a range query's matrix.
    pub instant: bool,
    /// How far back an instant selector looks for a sample, in ns: `lookback_delta`, by
    /// default 5 minutes.
    pub lookback_ns: i64,
    /// The `include_bad` parameter: whether points of bad quality count as samples.
    pub include_bad: bool,
}

impl QueryPlan {
    fn view(&self) -> QueryPlanView<'_> {
        QueryPlanView {
            expr: &self.expr,
            steps: self.steps,
            instant: self.instant,
            lookback_ns: self.lookback_ns,
            include_bad: self.include_bad,
        }
    }
}

/// Runs a checked query under a slot on a blocking thread, stopping at its deadline.
async fn run_query(state: AppState, limits: Option<Extension<QueryLimits>>, plan: QueryPlan) -> Response {
    let started = Instant::now();
    let limits = limits.map(|Extension(limits)| limits).unwrap_or_default();
    let timeout = plan.timeout.map_or(limits.timeout, |asked| asked.min(limits.timeout));
    let Some(slot) = QuerySlot::take() else { return busy().into_response() };
    let shared = Arc::clone(&state.shared);
    let deadline = started.checked_add(timeout);
    let outcome = tokio::task::spawn_blocking(move || {
        let outcome = run_plan(&shared, &plan.view(), deadline);
        drop(slot);
        // A scan cut at the deadline leaves a partial answer: never sent.
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(timed_out(timeout));
        }
        outcome
    })
    .await;
    match outcome {
        Ok(Ok(data)) => success(data),
        Ok(Err(error)) => {
            if error.status.is_server_error() {
                tracing::warn!("Prometheus API query failed: {}", error.message);
            }
            error.into_response()
        }
        Err(error) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_type: "internal",
            message: format!("the query task failed: {error}"),
        }
        .into_response(),
    }
}

async fn instant_query(
    State(state): State<AppState>,
    limits: Option<Extension<QueryLimits>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let form = Form::read(&method, &headers, query.as_deref(), &body);
    match instant_plan(&form, now_ns().div_euclid(NS_PER_MS)) {
        Ok(plan) => run_query(state, limits, plan).await,
        Err(error) => error.into_response(),
    }
}

async fn range_query(
    State(state): State<AppState>,
    limits: Option<Extension<QueryLimits>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let form = Form::read(&method, &headers, query.as_deref(), &body);
    match range_plan(&form) {
        Ok(plan) => run_query(state, limits, plan).await,
        Err(error) => error.into_response(),
    }
}

/// The series `match[]` (all series without one, when `optional`) picks with data in
/// `[start, end]`, sorted by labels, at most `limit`.
fn matching_entries(form: &Form, optional: bool, catalog: &[SeriesInfo]) -> Result<Vec<Labels>, ApiError> {
    let matchers = form.all("match[]");
    if matchers.is_empty() && !optional {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let mut selectors = Vec::new();
    for text in &matchers {
        selectors.push(parse_selector(text).map_err(|why| ApiError::bad_parameter("match[]", why))?);
    }
    let start_ns = form.time_ms("start")?.map_or(i64::MIN, |ms| ms.saturating_mul(NS_PER_MS));
    let end_ns = form.time_ms("end")?.map_or(i64::MAX, |ms| ms.saturating_mul(NS_PER_MS).saturating_add(NS_PER_MS - 1));
    let mut picked: Vec<Labels> = catalog
        .iter()
        .filter(|info| info.point_count > 0 && info.first_timestamp_ns <= end_ns && info.last_timestamp_ns >= start_ns)
        .map(|info| mapping::labels(&info.key))
        .filter(|labels| selectors.is_empty() || selectors.iter().any(|s| mapping::matches(&s.matchers, labels)))
        .collect();
    picked.sort();
    Ok(picked)
}

fn limit(form: &Form) -> Result<usize, ApiError> {
    match form.get("limit") {
        None | Some("0") => Ok(usize::MAX),
        Some(text) => text.parse().map_err(|_| ApiError::bad_parameter("limit", format!("{text:?} is not a count"))),
    }
}

/// Runs a listing under a slot on a blocking thread.
async fn listing(
    state: AppState,
    headers: &HeaderMap,
    form: Form,
    list: impl FnOnce(&Form, &[SeriesInfo]) -> Result<String, ApiError> + Send + 'static,
) -> Response {
    if let Err(response) = authorised(&state, headers) {
        return response;
    }
    let Some(slot) = QuerySlot::take() else { return busy().into_response() };
    let shared = Arc::clone(&state.shared);
    let outcome = tokio::task::spawn_blocking(move || {
        let answer = list(&form, &catalog(&shared));
        drop(slot);
        answer
    })
    .await;
    match outcome {
        Ok(Ok(data)) => success(data),
        Ok(Err(error)) => error.into_response(),
        Err(error) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_type: "internal",
            message: format!("the listing task failed: {error}"),
        }
        .into_response(),
    }
}

async fn series(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let form = Form::read(&method, &headers, query.as_deref(), &body);
    listing(state, &headers, form, |form, catalog| {
        let picked = matching_entries(form, false, catalog)?;
        let mut out = String::from("[");
        for (n, labels) in picked.iter().take(limit(form)?).enumerate() {
            if n > 0 {
                out.push(',');
            }
            json_labels(labels, &mut out);
        }
        out.push(']');
        Ok(out)
    })
    .await
}

fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.map(json_string).collect();
    format!("[{}]", items.join(","))
}

async fn label_names(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let form = Form::read(&method, &headers, query.as_deref(), &body);
    listing(state, &headers, form, |form, catalog| {
        let picked = matching_entries(form, true, catalog)?;
        let names: std::collections::BTreeSet<&str> =
            picked.iter().flat_map(|labels| labels.iter().map(|(name, _)| name.as_str())).collect();
        Ok(json_list(names.into_iter().take(limit(form)?)))
    })
    .await
}

async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let form = Form::read(&method, &headers, query.as_deref(), &body);
    listing(state, &headers, form, move |form, catalog| {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
        }
        let picked = matching_entries(form, true, catalog)?;
        let values: std::collections::BTreeSet<&str> = picked
            .iter()
            .filter_map(|labels| labels.iter().find(|(n, _)| *n == name))
            .map(|(_, v)| v.as_str())
            .collect();
        Ok(json_list(values.into_iter().take(limit(form)?)))
    })
    .await
}

async fn build_info(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    success(
        serde_json::json!({
            "version": PROMETHEUS_API_VERSION,
            "revision": format!("diode-receiver {}", env!("CARGO_PKG_VERSION")),
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        })
        .to_string(),
    )
}

/// `/api/v1/metadata`: every metric name, typed `unknown` (diode does not know whether a
/// series counts or measures), with the diode names it stands for as help.
async fn metadata(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let form = Form::read(&method, &headers, query.as_deref(), &[]);
    listing(state, &headers, form, |form, catalog| {
        let mut names: std::collections::BTreeMap<String, std::collections::BTreeSet<&str>> = Default::default();
        for info in catalog {
            names.entry(mapping::metric_name(&info.key.name)).or_default().insert(&info.key.name);
        }
        let wanted = form.get("metric");
        let mut data = serde_json::Map::new();
        for (metric, diode_names) in names.iter().filter(|(m, _)| wanted.is_none_or(|w| w == m.as_str())) {
            if data.len() >= limit(form)? {
                break;
            }
            let help = format!("diode series {}", diode_names.iter().copied().collect::<Vec<_>>().join(", "));
            data.insert(metric.clone(), serde_json::json!([{"type": "unknown", "help": help, "unit": ""}]));
        }
        Ok(serde_json::Value::Object(data).to_string())
    })
    .await
}

async fn exemplars(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    success("[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn range_parameters_are_checked_as_prometheus_checks_them() {
        let error = |pairs: &[(&str, &str)]| range_plan(&form(pairs)).err().unwrap();
        let base = [("query", "up"), ("start", "0"), ("end", "60"), ("step", "15")];
        assert!(range_plan(&form(&base)).is_ok());
        assert!(error(&[("query", "up"), ("start", "60"), ("end", "0"), ("step", "15")]).message.contains("before"));
        assert!(error(&[("query", "up"), ("start", "0"), ("end", "60"), ("step", "0")]).message.contains("step"));
        assert!(error(&[("query", "up"), ("start", "0"), ("end", "86400"), ("step", "1")]).message.contains("11000"));
        assert!(error(&[("query", "up[5m]"), ("start", "0"), ("end", "60"), ("step", "15")]).message.contains("range"));
        let parse = error(&[("query", "sum(("), ("start", "0"), ("end", "60"), ("step", "15")]);
        assert_eq!((parse.status, parse.error_type), (StatusCode::BAD_REQUEST, "bad_data"));
        assert!(error(&[("start", "0")]).message.contains("\"query\""));
        // Times whose distance would overflow are refused, not wrapped.
        let far = error(&[("query", "up"), ("start", "-9223372036854775"), ("end", "9223372036854775"), ("step", "1")]);
        assert!(far.message.contains("1677"), "{}", far.message);
    }

    #[test]
    fn answers_take_prometheus_shapes() {
        let labels = vec![("__name__".to_owned(), "up".to_owned())];
        let vector = Value::Vector(vec![eval::StepSeries { labels, values: vec![Some(1.0), None, Some(2.5)] }]);
        assert_eq!(instant_json(&Value::Scalar(vec![2.0]), 1_000), r#"{"resultType":"scalar","result":[1,"2"]}"#);
        let steps = Steps { start_ns: 0, step_ns: 15_000 * NS_PER_MS, count: 3 };
        assert_eq!(
            range_json(&vector, steps),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up"},"values":[[0,"1"],[30,"2.5"]]}]}"#
        );
        assert_eq!(
            instant_json(&vector, 0),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up"},"value":[0,"1"]}]}"#
        );
    }
}
