//! Prediction over HTTP, for every protocol: bytes in, the core's answer out. The handler only
//! picks the model (named in the URL, in the body, or the newest) and moves bytes; decoding,
//! preprocessing, the forward pass and encoding are the core's ([`inference::request`]).
//! Bodies over [`OFFLOAD_BYTES`] are answered on the blocking pool, a bounded number at once,
//! so large batches never stall the async workers (and `/health`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use inference::request::{Protocol, Reply, Request};

use super::body::RawBody;
use super::error::{reply_response, ApiError, ErrorBody};
use super::AppState;
use crate::store::ModelId;

/// Bodies larger than this are decoded and predicted off the async workers.
pub const OFFLOAD_BYTES: usize = 16 * 1024;

/// The name that means "the newest loadable model" in protocol URLs.
pub const LATEST: &str = "latest";

/// Predict one row, many rows, or records.
#[utoipa::path(post, path = "/api/ml/predict", request_body = super::openapi::PredictRequest,
    responses((status = 200, description = "`{model_id, predicted_class, predicted_label, confidence, probabilities}`, `{model_id, predicted_value}`, or `{model_id, predictions: [...]}`", body = inference::Prediction),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn api_ml(State(state): State<Arc<AppState>>, body: RawBody) -> Response {
    serve(state, Protocol::ApiMl, None, Ok(body)).await
}

/// Answer `body` in `protocol`, with the model `url_model` names (or the body's, or the newest).
/// A body the extractor refused is answered in the protocol's error shape.
pub async fn serve(
    state: Arc<AppState>,
    protocol: Protocol,
    url_model: Option<String>,
    body: Result<RawBody, ApiError>,
) -> Response {
    serve_as(state, protocol, url_model, body, false).await
}

/// As [`serve`]; `explain_route` answers KServe V1's `:explain` (every row explained).
pub async fn serve_as(
    state: Arc<AppState>,
    protocol: Protocol,
    url_model: Option<String>,
    body: Result<RawBody, ApiError>,
    explain_route: bool,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => return e.in_protocol(protocol).into_response(),
    };
    // Explanations cost thousands of forward rows per row: always off the async workers.
    if body.bytes.len() <= OFFLOAD_BYTES && !explain_route && !asks_explain(&body) {
        return respond(&state, protocol, url_model, &body, explain_route, &AtomicBool::new(false)).await;
    }
    let Ok(permit) = state.heavy_predicts.clone().acquire_owned().await else {
        return ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is stopping")
            .into_response();
    };
    let handle = tokio::runtime::Handle::current();
    // hyper drops this future when the client disconnects; the guard then stops the
    // explanations at their next row, and the permit comes back.
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancelled.clone());
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        handle.block_on(respond(&state, protocol, url_model, &body, explain_route, &cancelled))
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "predict task failed");
        ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "the prediction failed")
            .in_protocol(protocol)
            .into_response()
    })
}

/// Sets its flag when dropped: with the handler's future, or at its end.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether the body may ask for explanations (a cheap byte scan; the parser decides).
fn asks_explain(body: &RawBody) -> bool {
    body.bytes.windows(9).any(|w| w == b"\"explain\"")
}

async fn respond(
    state: &AppState,
    protocol: Protocol,
    url_model: Option<String>,
    body: &RawBody,
    explain_route: bool,
    cancelled: &AtomicBool,
) -> Response {
    match answer(state, protocol, url_model, body, explain_route, cancelled).await {
        Ok(reply) => {
            state.telemetry.predicted(reply.rows);
            reply_response(reply)
        }
        Err(e) => {
            if e.kind == "cancelled" {
                state.telemetry.cancelled();
            }
            e.in_protocol(protocol).into_response()
        }
    }
}

async fn answer(
    state: &AppState,
    protocol: Protocol,
    url_model: Option<String>,
    body: &RawBody,
    explain_route: bool,
    cancelled: &AtomicBool,
) -> Result<Reply, ApiError> {
    // A model the URL names is found first: an unknown one is a 404 whatever the body holds.
    let by_url = match url_model.as_deref().filter(|id| *id != LATEST) {
        Some(id) => Some(state.store.open(&ModelId::parse(id)?).await?),
        None => None,
    };
    let mut req =
        Request::parse(protocol, &body.bytes, body.transport()).map_err(|e| ApiError::request(e, protocol))?;
    if explain_route {
        req = req.explain_route();
    }
    let loaded = match by_url {
        Some(loaded) => loaded,
        None => {
            let named = if url_model.is_some() { None } else { req.model_id().filter(|id| *id != LATEST) };
            let id = match named {
                Some(id) => ModelId::parse(id)?,
                None => state.store.newest().await?.ok_or_else(|| {
                    ApiError::not_found("model_not_found", "no trained model is available: train one first")
                })?,
            };
            state.store.open(&id).await?
        }
    };
    req.answer_unless(&loaded.model, &state.config.limits.request, || cancelled.load(Ordering::Relaxed))
        .map_err(|e| ApiError::request(e, protocol))
}
