//! Liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::Value;

use super::error::{ApiError, ErrorBody};
use super::AppState;

/// Liveness.
#[utoipa::path(get, path = "/health", responses((status = 200)))]
pub async fn health() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the model store answers.
#[utoipa::path(get, path = "/ready", responses((status = 200), (status = 503, body = ErrorBody)))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match state.store.count().await {
        Ok(n) => Ok(Json(serde_json::json!({ "status": "ready", "models": n }))),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string())),
    }
}

/// Prometheus metrics.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.telemetry.render())
}
