//! Query routes of the receiver's HTTP API.

use crate::http::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
}
