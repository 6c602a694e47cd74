//! The serving protocols existing clients speak, beside `/api/ml`: the Open Inference Protocol
//! (KServe V2, Triton), KServe V1 / TF-Serving and MLflow's scoring server. Only routing and
//! health here; bodies are decoded and answered by the core ([`inference::request`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use inference::request::Protocol;

use super::body::RawBody;
use super::error::{ApiError, ErrorBody};
use super::predict::{self, LATEST};
use super::AppState;
use crate::store::{ModelId, Page};

fn oip(e: impl Into<ApiError>) -> ApiError {
    e.into().in_protocol(Protocol::OipV2)
}

/// The model a protocol URL names: an id, or `latest` for the newest loadable model.
async fn resolve(state: &AppState, name: &str) -> Result<ModelId, ApiError> {
    if name == LATEST {
        return state
            .store
            .newest()
            .await?
            .ok_or_else(|| ApiError::not_found("model_not_found", "no trained model is available: train one first"));
    }
    Ok(ModelId::parse(name)?)
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", responses((status = 200, description = "`{name, version, extensions}`")))]
pub async fn v2_server() -> Json<Value> {
    Json(json!({ "name": "trainer", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"] }))
}

/// Liveness.
#[utoipa::path(get, path = "/v2/health/live", responses((status = 200, description = "`{\"live\": true}`")))]
pub async fn v2_live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// Readiness: the model store answers.
#[utoipa::path(get, path = "/v2/health/ready", responses((status = 200, description = "`{\"ready\": true}`"), (status = 503)))]
pub async fn v2_ready(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state.store.count().await.map_err(oip)?;
    Ok(Json(json!({ "ready": true })))
}

/// Model metadata: inputs and outputs with datatypes and shapes (-1 = any number of rows).
#[utoipa::path(get, path = "/v2/models/{model}", params(("model" = String, Path, description = "a model id, or `latest`")),
    responses((status = 200, description = "`{name, versions, platform, inputs, outputs}`"), (status = 404)))]
pub async fn v2_metadata(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Result<Response, ApiError> {
    let id = resolve(&state, &model).await.map_err(oip)?;
    let loaded = state.store.open(&id).await.map_err(oip)?;
    let mut res = inference::request::oip_model_metadata(&loaded.model).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

/// The one version every model has.
const VERSION: &str = "1";

/// A version path other than [`VERSION`]: 404, as Triton answers an unknown version.
fn check_version(model: &str, version: &str) -> Result<(), ApiError> {
    if version == VERSION {
        return Ok(());
    }
    Err(oip(ApiError::not_found(
        "model_not_found",
        format!(
            "model `{}` has no version `{}` (its versions: {VERSION})",
            inference::error::truncate_echo(model),
            inference::error::truncate_echo(version)
        ),
    )))
}

/// The same, for a version (models have one version, `1`).
pub async fn v2_metadata_version(
    state: State<Arc<AppState>>,
    Path((model, v)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_version(&model, &v)?;
    v2_metadata(state, Path(model)).await
}

/// Model readiness: `{name, ready}` when the model loads.
#[utoipa::path(get, path = "/v2/models/{model}/ready", params(("model" = String, Path)),
    responses((status = 200, description = "`{name, ready: true}`"), (status = 404)))]
pub async fn v2_model_ready(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = resolve(&state, &model).await.map_err(oip)?;
    state.store.open(&id).await.map_err(oip)?;
    Ok(Json(json!({ "name": model, "ready": true })))
}

/// The same, for a version.
pub async fn v2_model_ready_version(
    state: State<Arc<AppState>>,
    Path((model, v)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_version(&model, &v)?;
    v2_model_ready(state, Path(model)).await
}

/// Inference (JSON, or Triton's binary tensor data extension).
#[utoipa::path(post, path = "/v2/models/{model}/infer", params(("model" = String, Path)),
    responses((status = 200, description = "`{model_name, id?, outputs: [{name, datatype, shape, data}]}`"), (status = 400), (status = 404)))]
pub async fn v2_infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    body: Result<RawBody, ApiError>,
) -> Response {
    predict::serve(state, Protocol::OipV2, Some(model), body).await
}

/// The same, for a version.
pub async fn v2_infer_version(
    state: State<Arc<AppState>>,
    Path((model, v)): Path<(String, String)>,
    body: Result<RawBody, ApiError>,
) -> Response {
    if let Err(e) = check_version(&model, &v) {
        return e.into_response();
    }
    v2_infer(state, Path(model), body).await
}

/// KServe V1 model list.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, description = "`{\"models\": [...]}`")))]
pub async fn v1_models(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let listing = state.store.list(&Page { limit: super::models::MAX_PAGE, after: None }).await?;
    let names: Vec<String> = listing.models.into_iter().filter(|m| m.is_ok()).map(|m| m.model_id).collect();
    Ok(Json(json!({ "models": names })))
}

/// KServe V1 model readiness `GET /v1/models/{m}` → `{name, ready}`.
#[utoipa::path(get, path = "/v1/models/{model}", params(("model" = String, Path)),
    responses((status = 200, description = "`{name, ready}`"), (status = 404, body = ErrorBody)))]
pub async fn v1_model(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    let v1 = |e: ApiError| e.in_protocol(Protocol::KServeV1);
    let id = resolve(&state, &model).await.map_err(v1)?;
    state.store.open(&id).await.map_err(|e| v1(e.into()))?;
    Ok(Json(json!({ "name": model, "ready": true })))
}

/// KServe V1 `POST /v1/models/{m}:predict`, and `:explain` → `{"predictions", "explanations"}`.
#[utoipa::path(post, path = "/v1/models/{model}:predict", params(("model" = String, Path)),
    request_body(description = "`{\"instances\": [...]}` or `{\"inputs\": ...}`", content_type = "application/json"),
    responses((status = 200, description = "`{\"predictions\": [...]}`"), (status = 400), (status = 404)))]
pub async fn v1_action(
    State(state): State<Arc<AppState>>,
    Path(tail): Path<String>,
    body: Result<RawBody, ApiError>,
) -> Response {
    match tail.rsplit_once(':') {
        Some((model, "predict")) => predict::serve(state, Protocol::KServeV1, Some(model.to_owned()), body).await,
        Some((model, "explain")) => {
            predict::serve_as(state, Protocol::KServeV1, Some(model.to_owned()), body, true).await
        }
        _ => ApiError::not_found("not_found", "no such route: use /v1/models/{model}:predict")
            .in_protocol(Protocol::KServeV1)
            .into_response(),
    }
}

/// MLflow scoring: `POST /invocations` (JSON in MLflow's formats, or `text/csv`), answered by
/// `--mlflow-model` or else the newest loadable model.
#[utoipa::path(post, path = "/invocations",
    request_body(description = "exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs` (plus `params`), or a CSV with a header", content_type = "application/json"),
    responses((status = 200, description = "`{\"predictions\": [...]}`"), (status = 400), (status = 415)))]
pub async fn invocations(State(state): State<Arc<AppState>>, body: Result<RawBody, ApiError>) -> Response {
    let model = state.config.mlflow_model.clone();
    predict::serve(state, Protocol::Mlflow, model, body).await
}

/// MLflow's health check: 200 with a newline, as its scoring server answers, when the model
/// `/invocations` uses (`--mlflow-model`, or the newest) loads; else its error, so a load
/// balancer does not route scoring to a server that can only fail it.
pub async fn ping(State(state): State<Arc<AppState>>) -> Response {
    let mlflow = |e: ApiError| e.in_protocol(Protocol::Mlflow).into_response();
    let name = state.config.mlflow_model.clone().unwrap_or_else(|| LATEST.to_owned());
    let id = match resolve(&state, &name).await {
        Ok(id) => id,
        Err(e) => return mlflow(e),
    };
    match state.store.open(&id).await {
        Ok(_) => ([(header::CONTENT_TYPE, "application/json")], "\n").into_response(),
        Err(e) => mlflow(e.into()),
    }
}

/// MLflow's version endpoint: the bare version string.
pub async fn version() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], env!("CARGO_PKG_VERSION")).into_response()
}

/// `GET /`: the page for browsers, KServe V1's liveness `{"status": "alive"}` for other clients.
pub async fn root(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let wants_html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html {
        if let Some(page) = super::web::index(&state) {
            return page;
        }
    }
    (StatusCode::OK, Json(json!({ "status": "alive" }))).into_response()
}
