//! The prediction page at `/`: the files of `web/` compiled into the binary (so `trainer serve`
//! works from any directory, `cargo install`ed or not), or a directory given with `--web-dir`.
//! `web/pkg/` is the browser entry of the npm package (`scripts/build-wasm.sh`, which the
//! test script runs before the trainer is built); it is embedded when it existed at build
//! time, and the page says how to get it when it is absent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use super::error::ApiError;
use super::AppState;

#[derive(Embed)]
#[folder = "../web/"]
#[include = "*.html"]
#[include = "*.js"]
#[include = "*.css"]
#[include = "*.svg"]
#[include = "pkg/inference.js"]
#[include = "pkg/inference_bg.wasm"]
#[exclude = "edge/*"]
struct Assets;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn file(path: &str, bytes: Vec<u8>) -> Response {
    let mut res = bytes.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// A page file by path (`index.html` for `/`): from `--web-dir` when given, else embedded.
fn lookup(state: &AppState, path: &str) -> Option<Response> {
    let path = match path {
        "" => "index.html".to_owned(),
        // Browsers ask for /favicon.ico whatever the page links: answer with the page's icon.
        "favicon.ico" => "favicon.svg".to_owned(),
        p if p.ends_with('/') => format!("{p}index.html"),
        p => p.to_owned(),
    };
    // Only plain relative names: no `..`, no hidden files.
    if path.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
        return None;
    }
    match &state.config.web_dir {
        Some(dir) => {
            let bytes = crate::store::fs::read_regular(&dir.join(&path), 64 << 20).ok()?;
            Some(file(&path, bytes))
        }
        None => Assets::get(&path).map(|f| file(&path, f.data.into_owned())),
    }
}

/// The page's `index.html`, if there is a page.
pub fn index(state: &AppState) -> Option<Response> {
    lookup(state, "")
}

/// Fallback for unrouted GETs: a page file, else the API's 404.
pub async fn fallback(State(state): State<Arc<AppState>>, req: Request) -> Response {
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
        let path = req.uri().path().trim_start_matches('/').to_owned();
        let state2 = state.clone();
        // --web-dir reads the filesystem: off the async workers.
        let found = tokio::task::spawn_blocking(move || lookup(&state2, &path)).await.ok().flatten();
        if let Some(res) = found {
            return res;
        }
    }
    let protocol = protocol_of_path(req.uri().path());
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").in_protocol(protocol).into_response()
}

/// A route that exists, asked with a method it does not answer: 405 with an error body in the
/// route's protocol (axum's own 405 has none).
pub async fn method_not_allowed(req: Request) -> Response {
    let message = format!("{} is not allowed on {}", req.method(), inference::error::truncate_echo(req.uri().path()));
    let protocol = protocol_of_path(req.uri().path());
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message).in_protocol(protocol).into_response()
}

/// The protocol whose error shape a path's answers use.
pub fn protocol_of_path(path: &str) -> inference::request::Protocol {
    use inference::request::Protocol;
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/v2") {
        Protocol::OipV2
    } else if under("/v1") {
        Protocol::KServeV1
    } else if under("/invocations") || under("/ping") || under("/version") {
        Protocol::Mlflow
    } else {
        Protocol::ApiMl
    }
}
