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
        super::protocols::invocations
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
