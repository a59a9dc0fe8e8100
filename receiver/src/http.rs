//! The receiver's read-only HTTP listener: `/metrics` (Prometheus), `/api/v1/status` and
//! `/api/v1/gaps` and `/api/v1/replication` (JSON), the query routes `/api/v1/series` and
//! `/api/v1/query` (handlers in [`crate::query::http`]), and the Prometheus-compatible API under
//! `/prometheus` (handlers in [`crate::prometheus::http`]). Optional bearer token on `/api/...` and
//! `/prometheus/...`. The routes are assembled and served here only, by
//! [`diode_host::http_server`]: a connection cap and header, idle and write timeouts (`[http]` in
//! the config), so idle or slow clients cannot stop the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::HttpConfig;
use crate::query::http::QueryLimits;
use crate::state::{AppState, Shared, authorised};
use crate::status;
use crate::{locks, query};

/// Every route of the listener.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/gaps", get(gaps_json))
        .route("/api/v1/replication", get(replication_json))
        .route("/api/v1/series", get(query::http::series_route))
        .route("/api/v1/query", get(query::http::query_route))
        .nest("/prometheus", crate::prometheus::http::routes())
}

/// Why the listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address is taken or not local; change `http.listen`.
    #[error("cannot listen for HTTP on {listen}; change http.listen")]
    Listen {
        /// The address from `http.listen`.
        listen: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// The connection limits `[http]` sets.
pub fn limits(config: &HttpConfig) -> diode_host::http_server::HttpLimits {
    diode_host::http_server::HttpLimits {
        max_connections: config.max_connections,
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        write_timeout: Duration::from_millis(config.write_timeout_ms),
    }
}

/// The query limits `[http]` sets.
pub fn query_limits(config: &HttpConfig) -> QueryLimits {
    QueryLimits {
        timeout: Duration::from_millis(config.query_timeout_ms),
        write_timeout: Duration::from_millis(config.write_timeout_ms),
    }
}

/// Every route with its state and `[http]`'s query limits: what [`serve`] serves.
pub fn app(shared: Arc<Shared>, config: &HttpConfig) -> axum::Router {
    let state = AppState { shared, token: config.bearer_token.as_deref().map(Arc::from) };
    routes().layer(Extension(query_limits(config))).with_state(state)
}

/// The listener for [`serve`] (`http.listen`).
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    diode_host::http_server::bind(listen).await.map_err(|source| HttpError::Listen { listen, source })
}

/// Serves every route on `listener` with `config`'s token and limits, for ever.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, config: &HttpConfig) {
    diode_host::http_server::serve(listener, app(shared, config), limits(config), "http.max_connections").await;
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.shared.counters.render();
    let (points, series) = {
        let replica = locks::read(&state.shared.replica);
        let streams = replica.streams();
        text.push_str(&status::stream_metrics(&streams));
        text.push_str(&status::software_metrics(&streams));
        let sinks = locks::lock(&state.shared.counters.sinks).clone();
        text.push_str(&crate::sinks::metrics(&sinks, replica.last_apply_number()));
        (replica.total_points(), replica.series_count())
    };
    text.push_str(&format!(
        "# HELP diode_receiver_replica_points Points in the replica (kept across restarts).\n\
         # TYPE diode_receiver_replica_points gauge\ndiode_receiver_replica_points {points}\n\
         # HELP diode_receiver_replica_series Series in the replica's catalog.\n\
         # TYPE diode_receiver_replica_series gauge\ndiode_receiver_replica_series {series}\n"
    ));
    text.push_str(&state.shared.replication.render_metrics());
    diode_host::process::render_metrics(&mut text, "diode_receiver");
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

async fn replication_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    axum::Json(state.shared.replication.status_json()).into_response()
}

async fn status_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let mut status = {
        let replica = locks::read(&state.shared.replica);
        status::status_json(&replica, Some(&state.shared.counters))
    };
    if let Some(object) = status.as_object_mut() {
        object.insert("replication".to_owned(), state.shared.replication.status_json());
    }
    axum::Json(status).into_response()
}

async fn gaps_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let replica = locks::read(&state.shared.replica);
    axum::Json(status::gaps_json(&replica)).into_response()
}
