//! `POST /api/ml/train`, `POST /api/ml/tune`, `GET /api/ml/train/status/{task_id}` and
//! cancelling a task.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use inference::config::TrainConfig;

use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::queue::{Job, TaskSpec, TaskState, TaskStatus};
use crate::tune::TuneOptions;

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

/// Check a train body as the server must before queueing it: every config rule within the
/// server's caps, and a dataset the server may read.
pub fn admit(state: &AppState, cfg: TrainConfig) -> Result<TrainConfig, ApiError> {
    if cfg.redis.is_some() {
        return Err(ApiError::invalid(
            "invalid_config",
            "invalid config field `redis`: the server uses its own Redis connection",
        ));
    }
    let checked = cfg.check_with(&state.config.caps)?;
    state.config.run.data.admit(checked.source())?;
    Ok(checked.into_inner())
}

/// Queue a training run.
#[utoipa::path(post, path = "/api/ml/train", request_body = TrainConfig,
    responses((status = 200, body = TrainAccepted), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn train(
    State(state): State<Arc<AppState>>,
    JsonBody(cfg): JsonBody<TrainConfig>,
) -> Result<Json<TrainAccepted>, ApiError> {
    let config = admit(&state, cfg)?;
    let status = state.queue.submit(TaskSpec::train(config)).await?;
    Ok(Json(TrainAccepted {
        task_id: status.task_id,
        status: "pending".into(),
        message: "Training task queued".into(),
    }))
}

/// Queue a hyperparameter search: the train body plus `tune` (trials, space, pruning, …); the
/// winner is saved like a trained model, with the search in its metadata. The status shows
/// `tuning` (trials done, pruned, best so far).
#[utoipa::path(post, path = "/api/ml/tune", request_body = Object,
    responses((status = 200, body = TrainAccepted), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn tune(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<TrainAccepted>, ApiError> {
    let serde_json::Value::Object(mut fields) = body else {
        return Err(ApiError::invalid("invalid_config", "the body must be a JSON object"));
    };
    let options = match fields.remove("tune") {
        Some(v) => serde_json::from_value::<TuneOptions>(v)
            .map_err(|e| ApiError::invalid("invalid_config", format!("invalid config field `tune`: {e}")))?,
        None => TuneOptions::default(),
    };
    options.check()?;
    let limits = &state.config;
    if options.trials > limits.max_trials {
        return Err(ApiError::invalid(
            "invalid_config",
            format!("invalid config field `tune.trials`: must be at most {} (the server's limit)", limits.max_trials),
        ));
    }
    // The whole search runs within the server's time limit for one training.
    let mut options = options;
    if let Some(cap) = limits.caps.max_seconds {
        options.budget_seconds = Some(options.budget_seconds.map_or(cap, |b| b.min(cap)));
    }
    let cfg: TrainConfig = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| ApiError::invalid("invalid_config", format!("invalid config: {e}")))?;
    let config = admit(&state, cfg)?;
    options.space.check_against(&config, &limits.caps)?;
    let status = state.queue.submit(TaskSpec { config, job: Job::Tune { options: Box::new(options) } }).await?;
    Ok(Json(TrainAccepted { task_id: status.task_id, status: "pending".into(), message: "Tuning task queued".into() }))
}

/// Status of a training task.
#[utoipa::path(get, path = "/api/ml/train/status/{task_id}", params(("task_id" = String, Path)),
    responses((status = 200, body = TaskStatus), (status = 404, body = ErrorBody)))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(task_id): Path<String>,
) -> Result<Json<TaskStatus>, ApiError> {
    state.queue.get(&task_id).await?.map(Json).ok_or_else(|| crate::error::QueueError::NotFound(task_id).into())
}

/// Cancel a task: a pending one ends at once, a running one at its next batch (then reads `cancelled`).
#[utoipa::path(delete, path = "/api/ml/train/{task_id}", params(("task_id" = String, Path)),
    responses((status = 200, body = TaskStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(task_id): Path<String>,
) -> Result<Json<TaskStatus>, ApiError> {
    let before = state.queue.get(&task_id).await?.map(|t| t.status);
    let after = state.queue.cancel(&task_id).await?;
    // A running task is counted by its worker when it stops; one cancelled while pending never
    // reaches a worker, so it is counted here.
    if before == Some(TaskState::Pending) && after.status == TaskState::Cancelled {
        state.telemetry.training_finished("cancelled");
    }
    Ok(Json(after))
}
