//! The receiver's read-only HTTP listener: `/metrics` (Prometheus), `/api/v1/status` and
//! `/api/v1/gaps` (JSON). Optional bearer token on `/api/...`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::run::Shared;
use crate::status;

/// What every route gets: the running receiver's shared state and the optional bearer token.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub token: Option<Arc<str>>,
}

pub async fn serve(listen: SocketAddr, shared: Arc<Shared>, token: Option<String>) -> anyhow::Result<()> {
    let state = AppState { shared, token: token.map(Arc::from) };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/gaps", get(gaps_json))
        .merge(crate::query::http::routes())
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {listen}; change http.listen"))?;
    axum::serve(listener, app).await.context("HTTP server failed")
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.shared.counters.render();
    let (points, series) = {
        let replica = state.shared.replica.read().expect("replica lock");
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

/// `Ok` when no token is configured or the request carries it; otherwise the 401 to return.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
pub fn authorised(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &state.token else { return Ok(()) };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if diode_common::keys::constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err((StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "missing or wrong bearer token"})))
            .into_response()),
    }
}

async fn status_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let replica = state.shared.replica.read().expect("replica lock");
    axum::Json(status::status_json(&replica, Some(&state.shared.counters))).into_response()
}

async fn gaps_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let replica = state.shared.replica.read().expect("replica lock");
    axum::Json(status::gaps_json(&replica)).into_response()
}
