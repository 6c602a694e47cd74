//! `trainer serve`: the HTTP API on axum. Only this module knows HTTP; training runs through
//! [`crate::pipeline`] and prediction through the inference core.

mod api;
mod body;
mod cache;
mod error;
mod tasks;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::data::redis::RedisOptions;
use crate::export::clean_stale_temp_dirs;

pub use api::resolve_dataset;

/// Server settings (the CLI builds this from `trainer serve` flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bind address.
    pub host: String,
    /// Bind port (0 = any free port; the chosen one is logged).
    pub port: u16,
    /// Where models live.
    pub models_dir: PathBuf,
    /// Relative `dataset_path`s resolve inside this directory.
    pub data_dir: PathBuf,
    /// Trainings running at once; the rest wait as pending.
    pub max_concurrent_trainings: usize,
    /// Bearer key required for train and delete.
    pub api_key: Option<String>,
    /// Static files served at `/` (the web page), when present.
    pub web_dir: Option<PathBuf>,
    /// Redis connection for `redis:KEY` datasets.
    pub redis: RedisOptions,
}

/// Shared state of all handlers.
pub struct AppState {
    config: ServerConfig,
    models: cache::ModelCache,
    tasks: tasks::TaskStore,
    telemetry: telemetry::Telemetry,
    training_slots: Arc<Semaphore>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "trainer", description = "Tabular MLP training and prediction service."),
    paths(
        api::train,
        api::train_status,
        api::predict,
        api::list_models,
        api::get_model,
        api::get_bundle,
        api::delete_model,
        api::health,
        api::ready
    ),
    components(schemas(
        inference::config::TrainConfig,
        inference::config::ModelConfig,
        inference::config::TrainOptions,
        inference::config::TaskType,
        inference::config::Activation,
        inference::config::MissingStrategy,
        inference::config::OptimizerKind,
        inference::config::DeviceChoice,
        inference::Prediction,
        api::TrainAccepted,
        api::PredictRequest,
        api::PredictInput,
        api::ModelSummary,
        tasks::TaskStatus,
        tasks::TaskState,
        error::ErrorBody
    ))
)]
struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The application router.
pub fn router(state: Arc<AppState>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let mut app = Router::new()
        .route("/api/ml/train", post(api::train))
        .route("/api/ml/train/status/{task_id}", get(api::train_status))
        .route("/api/ml/predict", post(api::predict))
        .route("/api/ml/models", get(api::list_models))
        .route("/api/ml/models/{model_id}", get(api::get_model).delete(api::delete_model))
        .route("/api/ml/models/{model_id}/bundle", get(api::get_bundle))
        .route("/api/ml/openapi.json", get(openapi))
        .route("/health", get(api::health))
        .route("/ready", get(api::ready))
        .route("/metrics", get(api::metrics));
    let not_found = || async { error::ApiError::not_found("not_found", "no such route") };
    if let Some(web) = state.config.web_dir.as_ref().filter(|d| d.is_dir()) {
        app = app.fallback_service(
            ServeDir::new(web).fallback(axum::handler::HandlerWithoutStateExt::into_service(not_found)),
        );
    } else {
        app = app.fallback(not_found);
    }
    app.layer(middleware::from_fn_with_state(state.clone(), telemetry::track))
        .layer(DefaultBodyLimit::max(body::BODY_LIMIT))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn shutdown_signal(state: Arc<AppState>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: stopping trainings");
    state.tasks.shut_down();
}

/// Serve until SIGINT/SIGTERM.
pub fn run(config: ServerConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.models_dir)?;
    clean_stale_temp_dirs(&config.models_dir);
    let loopback = matches!(config.host.as_str(), "127.0.0.1" | "localhost" | "::1");
    if !loopback && config.api_key.is_none() {
        tracing::warn!("binding {} without --api-key: anyone who can reach it can train models", config.host);
    }
    let state = Arc::new(AppState {
        models: cache::ModelCache::new(&config.models_dir),
        tasks: tasks::TaskStore::default(),
        telemetry: telemetry::Telemetry::default(),
        training_slots: Arc::new(Semaphore::new(config.max_concurrent_trainings.max(1))),
        config,
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let addr = format!("{}:{}", state.config.host, state.config.port);
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let local: SocketAddr = listener.local_addr()?;
        tracing::info!("listening on http://{local}");
        // A line tests and scripts can wait for (they may bind port 0).
        println!("listening on http://{local}");
        axum::serve(listener, router(state.clone())).with_graceful_shutdown(shutdown_signal(state.clone())).await
    })?;
    rt.shutdown_timeout(Duration::from_secs(10));
    Ok(())
}
