//! `trainer serve`: the HTTP transport. Only this module knows HTTP. Handlers are thin: they
//! pick a model or a task and move bytes; prediction is the core's request layer, training
//! goes through a [`TaskQueue`] to workers, models through a [`ModelStore`].
//!
//! The listener is hardened against slow and greedy clients: a connection cap (at the cap, a
//! new client evicts the oldest connection that never sent a request head; if there is none,
//! it waits in the kernel's backlog), a header-read timeout, per-request and
//! request-body timeouts, body and row limits, and back-off when accept fails (EMFILE).

mod auth;
mod body;
mod error;
mod host;
mod models;
mod openapi;
mod ops;
mod predict;
mod protocols;
mod telemetry;
mod train;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::routing::{delete, get, post};
use axum::{middleware, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

use inference::config::Caps;

use crate::error::ServeError;
use crate::pipeline::RunOptions;
use crate::queue::TaskQueue;
use crate::store::ModelStore;

pub use error::ApiError;

/// Limits on what one client can make the server do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Per-request work (rows).
    pub request: inference::request::Limits,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A client must send its request headers within this time.
    pub header_timeout: Duration,
    /// A request (body included) must be answered within this time.
    pub request_timeout: Duration,
    /// Large-body predictions computed at once on the blocking pool; more wait.
    pub max_heavy_predicts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            request: inference::request::Limits::default(),
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_heavy_predicts: 2,
        }
    }
}

/// Server settings (the CLI builds this from `trainer serve` flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bind address.
    pub host: String,
    /// Bind port (0 = any free port; the chosen one is printed).
    pub port: u16,
    /// Bearer key required for train, cancel and delete (delete is disabled without it).
    pub api_key: Option<String>,
    /// Allow binding beyond loopback without a key.
    pub insecure_no_auth: bool,
    /// `Host` names answered besides loopback ones (`*`: any); see [`host`].
    pub allowed_hosts: Vec<String>,
    /// The page's files from this directory instead of the embedded ones.
    pub web_dir: Option<PathBuf>,
    /// The model `POST /invocations` (MLflow) answers with; the newest loadable when absent.
    pub mlflow_model: Option<String>,
    /// How workers read datasets (the data dir, allowed Redis keys).
    pub run: RunOptions,
    /// Caps on train configs.
    pub caps: Caps,
    /// Per-client limits.
    pub limits: Limits,
    /// In-process workers (trainings at once; 0 = API only).
    pub workers: usize,
    /// Most trials one tuning request may ask for.
    pub max_trials: usize,
}

/// Shared state of all handlers.
pub struct AppState {
    config: ServerConfig,
    store: Arc<dyn ModelStore>,
    queue: Arc<dyn TaskQueue>,
    redis: Option<crate::redis_pool::Pool>,
    telemetry: telemetry::Telemetry,
    heavy_predicts: Arc<Semaphore>,
    hosts: host::HostPolicy,
}

impl AppState {
    /// State over a store and a queue (tests build routers from this with `oneshot`).
    pub fn new(config: ServerConfig, store: Arc<dyn ModelStore>, queue: Arc<dyn TaskQueue>) -> Arc<Self> {
        Self::from_backend(config, crate::backend::Backend { store, queue, redis: None })
    }

    /// State over a process's backend (local, or shared through Redis).
    pub fn from_backend(config: ServerConfig, b: crate::backend::Backend) -> Arc<Self> {
        let heavy_predicts = Arc::new(Semaphore::new(config.limits.max_heavy_predicts.max(1)));
        let hosts = host::HostPolicy::new(&config.host, &config.allowed_hosts);
        Arc::new(Self {
            hosts,
            config,
            store: b.store,
            queue: b.queue,
            redis: b.redis,
            telemetry: telemetry::Telemetry::default(),
            heavy_predicts,
        })
    }

    /// The worker context of this server's in-process workers.
    fn worker_context(self: &Arc<Self>) -> crate::worker::WorkerContext {
        let state = self.clone();
        crate::worker::WorkerContext {
            queue: self.queue.clone(),
            store: self.store.clone(),
            run: self.config.run.clone(),
            caps: self.config.caps,
            device: None,
            redis: self.redis.clone(),
            on_finished: Arc::new(move |outcome| state.telemetry.training_finished(outcome)),
        }
    }
}

/// The application router.
pub fn router(state: Arc<AppState>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let keyed = || middleware::from_fn_with_state(state.clone(), auth::key_if_set);
    let admin = middleware::from_fn_with_state(state.clone(), auth::key_required);
    let app = Router::new()
        .route("/api/ml/train", post(train::train).route_layer(keyed()))
        .route("/api/ml/tune", post(train::tune).route_layer(keyed()))
        .route("/api/ml/train/status/{task_id}", get(train::status))
        .route("/api/ml/train/{task_id}", delete(train::cancel).route_layer(keyed()))
        .route("/api/ml/train/{task_id}/cancel", post(train::cancel).route_layer(keyed()))
        .route("/api/ml/predict", post(predict::api_ml))
        .route("/api/ml/models", get(models::list))
        .route("/api/ml/models/{model_id}", get(models::get).merge(delete(models::delete).route_layer(admin)))
        .route("/api/ml/models/{model_id}/bundle", get(models::bundle))
        .route("/api/ml/openapi.json", get(openapi::document))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        // Open Inference Protocol (KServe V2, Triton).
        .route("/v2", get(protocols::v2_server))
        .route("/v2/health/live", get(protocols::v2_live))
        .route("/v2/health/ready", get(protocols::v2_ready))
        .route("/v2/models/{model}", get(protocols::v2_metadata))
        .route("/v2/models/{model}/ready", get(protocols::v2_model_ready))
        .route("/v2/models/{model}/infer", post(protocols::v2_infer))
        .route("/v2/models/{model}/versions/{version}", get(protocols::v2_metadata_version))
        .route("/v2/models/{model}/versions/{version}/ready", get(protocols::v2_model_ready_version))
        .route("/v2/models/{model}/versions/{version}/infer", post(protocols::v2_infer_version))
        // KServe V1 / TF-Serving.
        .route("/v1/models", get(protocols::v1_models))
        .route("/v1/models/{model}", get(protocols::v1_model).post(protocols::v1_action))
        // MLflow scoring server.
        .route("/invocations", post(protocols::invocations))
        .route("/ping", get(protocols::ping))
        .route("/version", get(protocols::version))
        .route("/", get(protocols::root))
        .fallback(web::fallback)
        // After every route: it applies to the method routers that exist.
        .method_not_allowed_fallback(web::method_not_allowed);
    let limits = &state.config.limits;
    // Inner to outer: body limit and timeouts; errors any of them left as text made JSON;
    // metrics, which so see every answer (the timeouts' 408s too); request ids and tracing.
    // Our extractors enforce the body limit with the API's error shape; this bounds the rest.
    app.layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(limits.request_timeout))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), host::check))
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), telemetry::track))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(middleware::map_request(telemetry::sanitize_request_id))
        .with_state(state)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuse settings that would leave the server open: an empty key, or no key beyond loopback.
pub fn check_security(config: &ServerConfig) -> Result<(), ServeError> {
    if config.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(ServeError::Config(
            "the API key is empty (--api-key or TRAINER_API_KEY): give a real key, or none to keep train open and delete disabled".into(),
        ));
    }
    if !is_loopback(&config.host) && config.api_key.is_none() && !config.insecure_no_auth {
        return Err(ServeError::Config(format!(
            "refusing to bind {} without --api-key: anyone who can reach it could train models (pass --insecure-no-auth to allow it)",
            config.host
        )));
    }
    Ok(())
}

/// SIGINT or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal arriving in between would otherwise kill the process uncleanly.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (int, term) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = wait(int) => {}, _ = wait(term) => {} }
    }
}

/// How long to wait before accepting again after `e`: file-descriptor exhaustion needs
/// connections to close first, so back off longer and say so (at most once a second).
fn accept_backoff(e: &std::io::Error, last_warning: &mut Option<std::time::Instant>) -> Duration {
    let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOMEM));
    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        tracing::warn!(error = %e, "accept failed; backing off");
        *last_warning = Some(std::time::Instant::now());
    }
    if exhausted {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(5)
    }
}

/// Serve `state` on `listener` until SIGINT/SIGTERM, then stop trainings and drain.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    serve_until(listener, state, shutdown_signal()).await
}

/// As [`serve`], until `signal` completes.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    signal: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let limits = state.config.limits.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..state.config.workers)
        .map(|i| {
            let ctx = state.worker_context();
            tokio::spawn(crate::worker::run(ctx, format!("serve-{}-{i}", std::process::id()), stop.clone()))
        })
        .collect();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(signal);
    let mut last_warning = None;
    let waiting = WaitingConnections::default();
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tokio::time::sleep(accept_backoff(&e, &mut last_warning)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let permit = match connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap with a client waiting: close the oldest idle connection (one that
                // never sent a request head, or a keep-alive one between requests), as nginx
                // drains its reusable connections, so neither header tricklers (slowloris) nor
                // clients parking keep-alive sockets can hold every slot; with none, wait.
                waiting.evict_oldest();
                tokio::select! {
                    p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = &mut signal => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let slot = waiting.register();
        let svc = slot.tracking(app.clone());
        let (builder, watcher, header_timeout) = (builder.clone(), graceful.watcher(), limits.header_timeout);
        tokio::spawn(async move {
            // hyper's header timer starts at the first byte: a connection that sends nothing
            // is closed at the same timeout here.
            let mut byte = [0u8; 1];
            let first = tokio::select! {
                r = tokio::time::timeout(header_timeout, stream.peek(&mut byte)) => matches!(r, Ok(Ok(n)) if n > 0),
                _ = slot.evict.notified() => false,
            };
            if first {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(svc));
                tokio::select! {
                    _ = watcher.watch(conn.into_owned()) => {}
                    _ = slot.evict.notified() => tracing::debug!("closed an idle connection to free its slot"),
                }
            }
            drop(permit);
        });
    }
    tracing::info!("shutting down: stopping trainings");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    state.queue.shut_down().await;
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after 10 s; closing them");
    }
    Ok(())
}

/// A connection's standing for eviction at the connection cap.
#[derive(Default)]
struct ConnectionSlot {
    /// Requests whose head arrived and whose response body is not yet sent.
    busy: std::sync::atomic::AtomicUsize,
    evict: tokio::sync::Notify,
}

/// Marks a connection busy while it lives (moved into the response body).
struct Busy(Arc<ConnectionSlot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ConnectionSlot {
    /// `app`, counting this connection busy from a request head until its response body has
    /// been sent (or dropped): only an idle connection may be evicted.
    fn tracking<B>(
        self: &Arc<Self>,
        app: Router,
    ) -> impl tower::Service<
        Request<B>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        use http_body_util::BodyExt;
        let (on_request, on_response) = (self.clone(), self.clone());
        let app = tower::ServiceExt::map_request(app, move |req: Request<B>| {
            on_request.busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            req
        });
        tower::ServiceExt::map_response(app, move |res: axum::response::Response| {
            let busy = Busy(on_response.clone());
            res.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _held_until_the_body_ends = &busy;
                    frame
                }))
            })
        })
    }
}

/// Open connections, oldest first, for [`WaitingConnections::evict_oldest`].
#[derive(Default)]
struct WaitingConnections(std::sync::Mutex<std::collections::VecDeque<std::sync::Weak<ConnectionSlot>>>);

impl WaitingConnections {
    fn register(&self) -> Arc<ConnectionSlot> {
        let slot = Arc::new(ConnectionSlot::default());
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.retain(|w| w.strong_count() > 0); // Forget closed connections.
        q.push_back(Arc::downgrade(&slot));
        slot
    }

    /// Close the oldest open connection that is idle (no request in flight), if any.
    fn evict_oldest(&self) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let idle =
            q.iter().position(|w| w.upgrade().is_some_and(|s| s.busy.load(std::sync::atomic::Ordering::Relaxed) == 0));
        if let Some(s) = idle.and_then(|i| q.remove(i)).and_then(|w| w.upgrade()) {
            s.evict.notify_one();
        }
    }
}

/// Bind, print `listening on http://ADDR` (scripts and tests wait for it) and serve.
pub fn run(config: ServerConfig, backend: crate::backend::Backend) -> Result<(), ServeError> {
    check_security(&config)?;
    if !is_loopback(&config.host) && config.api_key.is_none() {
        tracing::warn!(
            "binding {} without --api-key (--insecure-no-auth): anyone who can reach it can train",
            config.host
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let local: SocketAddr = listener.local_addr()?;
        // Before "listening": whoever waits for that line may signal at once.
        let signal = shutdown_signal();
        tracing::info!("listening on http://{local}");
        println!("listening on http://{local}");
        serve_until(listener, AppState::from_backend(config, backend), signal).await
    })?;
    rt.shutdown_timeout(Duration::from_secs(10));
    Ok(())
}
