//! Route handlers of `/api/ml/*`, `/health`, `/ready` and `/metrics`.

use std::path::{Component, Path};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use inference::config::TrainConfig;
use inference::{Model, PredictError, Prediction, ValueRef};

use super::body::JsonBody;
use super::cache::valid_id;
use super::error::ApiError;
use super::tasks::{self, TaskStatus};
use super::AppState;
use crate::registry::{self, BUNDLE_FILE, METADATA_FILE};

type Shared = State<Arc<AppState>>;

/// Answer of `POST /api/ml/train`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrainAccepted {
    /// Id to poll.
    pub task_id: String,
    /// Always `pending`.
    pub status: String,
    /// Human-readable.
    pub message: String,
}

/// Rows to predict: one row (`features: [...]`), many (`features: [[...], ...]`) or records.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PredictInput {
    /// Raw values in feature order (numbers, category text, null for missing), or an array of such rows.
    #[schema(value_type = Vec<Object>)]
    pub features: Option<Value>,
    /// Rows as objects keyed by column name.
    #[schema(value_type = Vec<Object>)]
    pub records: Option<Vec<Map<String, Value>>>,
}

/// Body of `POST /api/ml/predict`; rows may sit under `data` (documented form) or at the top level.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PredictRequest {
    /// Rows to predict (documented form).
    pub data: Option<PredictInput>,
    /// Model to use; the newest when absent.
    pub model_id: Option<String>,
    /// Rows at the top level (also accepted).
    #[serde(flatten)]
    pub inline: PredictInput,
}

/// One row of records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelSummary {
    /// Model id.
    pub model_id: String,
    /// RFC 3339 time of export.
    pub saved_at: String,
    /// Task.
    pub task_type: String,
    /// Test metrics.
    #[schema(value_type = Object)]
    pub test_metrics: Value,
}

fn check_auth(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.config.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Length-independent comparison of every byte.
    let equal = given.len() == key.len() && given.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if equal {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong `Authorization: Bearer <key>`"))
    }
}

/// `dataset_path` must be `redis:KEY` or a relative path that stays inside the data dir.
pub fn resolve_dataset(data_dir: &Path, dataset: &str) -> Result<String, ApiError> {
    if dataset.starts_with("redis:") {
        return Ok(dataset.to_owned());
    }
    let bad = |m: String| ApiError::invalid("invalid_dataset_path", m);
    let p = Path::new(dataset);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(bad(format!(
            "dataset_path {dataset:?} must be redis:KEY or a relative path without `..` inside the server's data dir"
        )));
    }
    let base = data_dir.canonicalize().map_err(|e| ApiError::internal("data_dir_unavailable", e.to_string()))?;
    let full = base
        .join(p)
        .canonicalize()
        .map_err(|_| bad(format!("dataset_path {dataset:?} does not exist in the data dir")))?;
    if !full.starts_with(&base) {
        return Err(bad(format!("dataset_path {dataset:?} resolves outside the data dir")));
    }
    Ok(full.to_string_lossy().into_owned())
}

/// Queue a training run.
#[utoipa::path(post, path = "/api/ml/train", request_body = TrainConfig,
    responses((status = 200, body = TrainAccepted), (status = 401, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn train(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(cfg): JsonBody<TrainConfig>,
) -> Result<Json<TrainAccepted>, ApiError> {
    check_auth(&state, &headers)?;
    cfg.validate()?;
    if state.tasks.unfinished() >= tasks::MAX_QUEUED {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_trainings",
            format!("{} trainings are already queued or running; retry later", tasks::MAX_QUEUED),
        ));
    }
    if let Some(path) = &cfg.dataset_path {
        // Validate only: the path is kept as given (the metadata records it) and read
        // relative to the data dir by the pipeline.
        resolve_dataset(&state.config.data_dir, path)?;
    }
    let task_id = tasks::submit(state.clone(), cfg);
    Ok(Json(TrainAccepted { task_id, status: "pending".into(), message: "Training task queued".into() }))
}

/// Status of a training task.
#[utoipa::path(get, path = "/api/ml/train/status/{task_id}", params(("task_id" = String, Path)),
    responses((status = 200, body = TaskStatus), (status = 404, body = super::error::ErrorBody)))]
pub async fn train_status(
    State(state): Shared,
    UrlPath(task_id): UrlPath<String>,
) -> Result<Json<TaskStatus>, ApiError> {
    state
        .tasks
        .get(&task_id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("task_not_found", format!("no training task `{task_id}`")))
}

fn row<'a>(model: &Model, values: &'a [Value]) -> Result<Vec<ValueRef<'a>>, PredictError> {
    if values.len() != model.num_features() {
        return Err(PredictError::WrongFeatureCount { expected: model.num_features(), got: values.len() });
    }
    values
        .iter()
        .zip(model.feature_names())
        .map(|(v, name)| {
            ValueRef::from_json(v)
                .ok_or_else(|| PredictError::InvalidValue { column: name.clone(), value: v.to_string() })
        })
        .collect()
}

fn with_row(i: usize, e: PredictError) -> ApiError {
    let mut err = ApiError::from(e);
    err.message = format!("row {i}: {}", err.message);
    err
}

fn record_prediction(model: &Model, rec: &Map<String, Value>) -> Result<Prediction, PredictError> {
    for name in model.feature_names() {
        if let Some(v) = rec.get(name) {
            if ValueRef::from_json(v).is_none() {
                return Err(PredictError::InvalidValue { column: name.clone(), value: v.to_string() });
            }
        }
    }
    model.predict_record(|name| rec.get(name).and_then(ValueRef::from_json))
}

/// Predict one row, many rows, or records.
#[utoipa::path(post, path = "/api/ml/predict", request_body = PredictRequest,
    responses((status = 200, description = "`{model_id, predicted_class, predicted_label, confidence, probabilities}`, `{model_id, predicted_value}`, or `{model_id, predictions: [...]}`", body = Prediction),
        (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn predict(State(state): Shared, JsonBody(req): JsonBody<PredictRequest>) -> Result<Json<Value>, ApiError> {
    let input = match req.data {
        Some(d) if d.features.is_some() || d.records.is_some() => d,
        _ => req.inline,
    };
    let model_id = match req.model_id {
        Some(id) => id,
        None => state
            .models
            .newest_id()
            .ok_or_else(|| ApiError::not_found("model_not_found", "no trained model is available: train one first"))?,
    };
    let model = state.models.get(&model_id)?;
    let mut body = match (&input.features, &input.records) {
        (Some(Value::Array(rows)), None) if !rows.is_empty() && rows.iter().all(Value::is_array) => {
            let parsed = rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    row(&model, r.as_array().map(Vec::as_slice).unwrap_or_default()).map_err(|e| with_row(i, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // One batched forward pass (tiled GEMM) instead of a matrix-vector pass per row.
            let preds = model.predict_batch(parsed).map_err(|(i, e)| with_row(i, e))?;
            state.telemetry.predicted(preds.len());
            serde_json::json!({ "predictions": preds })
        }
        (Some(Value::Array(values)), None) => {
            let p = model.predict(row(&model, values)?.into_iter())?;
            state.telemetry.predicted(1);
            serde_json::to_value(p).map_err(|e| ApiError::internal("internal", e.to_string()))?
        }
        (None, Some(records)) => {
            let preds = records
                .iter()
                .enumerate()
                .map(|(i, rec)| record_prediction(&model, rec).map_err(|e| with_row(i, e)))
                .collect::<Result<Vec<_>, _>>()?;
            state.telemetry.predicted(preds.len());
            serde_json::json!({ "predictions": preds })
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("validation_error", "give either `features` or `records`, not both"))
        }
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "validation_error",
                "`features` must be an array of values or an array of rows",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "validation_error",
                "missing `data.features` (one row or an array of rows) or `data.records`",
            ))
        }
    };
    if let Value::Object(m) = &mut body {
        m.insert("model_id".into(), Value::String(model_id));
    }
    Ok(Json(body))
}

/// Saved models, newest first.
#[utoipa::path(get, path = "/api/ml/models", responses((status = 200, body = Vec<ModelSummary>)))]
pub async fn list_models(State(state): Shared) -> Json<Vec<ModelSummary>> {
    let dir = state.models.dir().to_owned();
    let list = tokio::task::spawn_blocking(move || {
        registry::list(&dir)
            .into_iter()
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.dir.join(METADATA_FILE)).ok()?;
                let m: Value = serde_json::from_str(&text).ok()?;
                Some(ModelSummary {
                    model_id: e.id,
                    saved_at: m["saved_at"].as_str().unwrap_or_default().to_owned(),
                    task_type: m["task_type"].as_str().unwrap_or_default().to_owned(),
                    test_metrics: m["test_metrics"].clone(),
                })
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    Json(list)
}

/// A model's metadata.
#[utoipa::path(get, path = "/api/ml/models/{model_id}", params(("model_id" = String, Path)),
    responses((status = 200, description = "the bundle metadata"), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_model(State(state): Shared, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    // The bundle's own JSON text, verified at load, served as stored.
    let model = state.models.get(&id)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], model.metadata_json().to_owned()).into_response())
}

/// A model's `model.safetensors` bytes (a complete bundle for browsers and workers).
#[utoipa::path(get, path = "/api/ml/models/{model_id}/bundle", params(("model_id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", description = "model.safetensors"), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_bundle(State(state): Shared, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let nf = || ApiError::not_found("model_not_found", format!("model `{id}` not found"));
    if !valid_id(&id) {
        return Err(nf());
    }
    let bytes = tokio::fs::read(state.models.dir().join(&id).join(BUNDLE_FILE)).await.map_err(|_| nf())?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}.safetensors\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Delete a model (only when the server has an API key, and with it).
#[utoipa::path(delete, path = "/api/ml/models/{model_id}", params(("model_id" = String, Path)),
    responses((status = 200), (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_model(
    State(state): Shared,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    if state.config.api_key.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "deleting models is disabled: start the server with --api-key",
        ));
    }
    check_auth(&state, &headers)?;
    let dir = state.models.dir().join(&id);
    if !valid_id(&id) || !dir.join(BUNDLE_FILE).is_file() {
        return Err(ApiError::not_found("model_not_found", format!("model `{id}` not found")));
    }
    // Rename first so the model disappears at once, then remove.
    let trash = state.models.dir().join(format!(".deleted-{id}-{}", uuid::Uuid::new_v4()));
    std::fs::rename(&dir, &trash).map_err(|e| ApiError::internal("delete_failed", e.to_string()))?;
    let _ = tokio::fs::remove_dir_all(&trash).await;
    state.models.evict(&id);
    Ok(Json(serde_json::json!({ "deleted": id })))
}

/// Liveness.
#[utoipa::path(get, path = "/health", responses((status = 200)))]
pub async fn health() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the models directory is readable.
#[utoipa::path(get, path = "/ready", responses((status = 200), (status = 503, body = super::error::ErrorBody)))]
pub async fn ready(State(state): Shared) -> Result<Json<Value>, ApiError> {
    match std::fs::read_dir(state.models.dir()) {
        Ok(_) => Ok(Json(serde_json::json!({ "status": "ready", "models": registry::list(state.models.dir()).len() }))),
        Err(e) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", format!("models dir unreadable: {e}")))
        }
    }
}

/// Prometheus metrics.
pub async fn metrics(State(state): Shared) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.telemetry.render())
}
