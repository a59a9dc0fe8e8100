//! The receiver's read-only HTTP listener: `/metrics` (Prometheus), `/api/v1/status` and
//! `/api/v1/gaps` (JSON), and the query routes `/api/v1/series` and `/api/v1/query` (handlers in
//! [`crate::query::http`]). Optional bearer token on `/api/...`. The routes are assembled and
//! served here only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::{AppState, Shared, authorised};
use crate::status;
use crate::{locks, query};

/// Every route of the listener.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/gaps", get(gaps_json))
        .route("/api/v1/series", get(query::http::series_route))
        .route("/api/v1/query", get(query::http::query_route))
}

/// Why the listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen for HTTP on {listen}; change http.listen")]
    Listen { listen: SocketAddr, source: std::io::Error },
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Serves every route on `listen` until the server fails.
pub async fn serve(listen: SocketAddr, shared: Arc<Shared>, token: Option<String>) -> Result<(), HttpError> {
    let state = AppState { shared, token: token.map(Arc::from) };
    let app = routes().with_state(state);
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| HttpError::Listen { listen, source })?;
    axum::serve(listener, app).await.map_err(HttpError::Serve)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.shared.counters.render();
    let (points, series) = {
        let replica = locks::read(&state.shared.replica);
        text.push_str(&status::stream_metrics(&replica.streams()));
        (replica.total_points(), replica.series_count())
    };
    text.push_str(&format!(
        "# HELP diode_receiver_replica_points Points in the replica (kept across restarts).\n\
         # TYPE diode_receiver_replica_points gauge\ndiode_receiver_replica_points {points}\n\
         # HELP diode_receiver_replica_series Series in the replica's catalog.\n\
         # TYPE diode_receiver_replica_series gauge\ndiode_receiver_replica_series {series}\n"
    ));
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

async fn status_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let replica = locks::read(&state.shared.replica);
    axum::Json(status::status_json(&replica, Some(&state.shared.counters))).into_response()
}

async fn gaps_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let replica = locks::read(&state.shared.replica);
    axum::Json(status::gaps_json(&replica)).into_response()
}
