//! The OpenAPI document (`GET /api/ml/openapi.json`), generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

/// Rows to predict: one row (`features: [...]`), many (`features: [[...], ...]`) or records.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: the core's request layer reads bodies
pub struct PredictInput {
    /// Raw values in feature order (numbers, category text, null for missing), or an array of such rows.
    #[schema(value_type = Vec<Object>)]
    pub features: Option<serde_json::Value>,
    /// Rows as objects keyed by column name.
    #[schema(value_type = Vec<Object>)]
    pub records: Option<serde_json::Value>,
}

/// Body of `POST /api/ml/predict`; rows may sit under `data` (documented form) or at the top
/// level; KServe V1's `instances` (rows as arrays or objects) is accepted too.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
pub struct PredictRequest {
    /// Rows to predict (documented form).
    pub data: Option<PredictInput>,
    /// Model to use; the newest loadable one when absent.
    pub model_id: Option<String>,
    /// KServe V1 rows → `{"model_id", "predictions": [...]}`.
    #[schema(value_type = Vec<Object>)]
    pub instances: Option<serde_json::Value>,
}

/// Routes served by a handler whose annotation names another path (utoipa takes one path
/// per function): documentation only, so the document lists every route the router serves.
#[allow(dead_code)]
mod more_routes {
    use super::super::error::ErrorBody;
    use crate::queue::TaskStatus;

    /// Cancel a task (the same as `DELETE /api/ml/train/{task_id}`).
    #[utoipa::path(post, path = "/api/ml/train/{task_id}/cancel", params(("task_id" = String, Path)),
        responses((status = 200, body = TaskStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
    pub fn cancel_post() {}

    /// Prometheus metrics (text exposition format).
    #[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", description = "metrics")))]
    pub fn metrics() {}

    /// MLflow health check: 200 while the `/invocations` model loads.
    #[utoipa::path(get, path = "/ping", responses((status = 200), (status = 404), (status = 503)))]
    pub fn ping() {}

    /// MLflow version.
    #[utoipa::path(get, path = "/version", responses((status = 200, description = "the version string")))]
    pub fn version() {}

    /// KServe V1 explanations: `{"instances"}` → `{"explanations": [...]}`.
    #[utoipa::path(post, path = "/v1/models/{model}:explain", params(("model" = String, Path)),
        responses((status = 200, description = "`{\"explanations\": [...]}`"), (status = 400), (status = 404), (status = 413)))]
    pub fn v1_explain() {}

    /// Open Inference Protocol model metadata of a version (this server keeps one per model).
    #[utoipa::path(get, path = "/v2/models/{model}/versions/{version}",
        params(("model" = String, Path), ("version" = String, Path)), responses((status = 200), (status = 404)))]
    pub fn v2_metadata_version() {}

    /// Open Inference Protocol readiness of a version.
    #[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready",
        params(("model" = String, Path), ("version" = String, Path)), responses((status = 200), (status = 404)))]
    pub fn v2_ready_version() {}

    /// Open Inference Protocol inference on a version.
    #[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer",
        params(("model" = String, Path), ("version" = String, Path)),
        responses((status = 200), (status = 400), (status = 404), (status = 413)))]
    pub fn v2_infer_version() {}
}

#[derive(OpenApi)]
#[openapi(
    info(title = "trainer", description = "Tabular MLP training and prediction service."),
    paths(
        super::train::train,
        super::train::tune,
        super::train::status,
        super::train::cancel,
        super::predict::api_ml,
        super::models::list,
        super::models::get,
        super::models::bundle,
        super::models::delete,
        super::ops::health,
        super::ops::ready,
        super::protocols::v2_server,
        super::protocols::v2_live,
        super::protocols::v2_ready,
        super::protocols::v2_metadata,
        super::protocols::v2_model_ready,
        super::protocols::v2_infer,
        super::protocols::v1_models,
        super::protocols::v1_model,
        super::protocols::v1_action,
        super::protocols::invocations,
        more_routes::cancel_post,
        more_routes::metrics,
        more_routes::ping,
        more_routes::version,
        more_routes::v1_explain,
        more_routes::v2_metadata_version,
        more_routes::v2_ready_version,
        more_routes::v2_infer_version
    ),
    components(schemas(
        inference::config::TrainConfig,
        inference::config::ModelConfig,
        inference::config::TrainOptions,
        inference::config::ExplainConfig,
        inference::config::RedisConfig,
        inference::config::EngineChoice,
        inference::config::TaskType,
        inference::config::Activation,
        inference::config::MissingStrategy,
        inference::config::OptimizerKind,
        inference::config::DeviceChoice,
        inference::Prediction,
        super::train::TrainAccepted,
        PredictRequest,
        PredictInput,
        crate::store::ModelSummary,
        crate::queue::TaskStatus,
        crate::queue::TaskState,
        super::error::ErrorBody
    ))
)]
struct ApiDoc;

/// The document.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
