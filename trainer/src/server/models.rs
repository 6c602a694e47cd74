//! `/api/ml/models`: the list (paginated, from the store's index), one model's metadata, its
//! verified bundle bytes (with a strong ETag and an RFC 9530 digest), and deletion.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::store::{ModelId, ModelSummary, Page};

/// Models per page unless `limit` says otherwise, and the most a page may hold.
pub const DEFAULT_PAGE: usize = 100;
/// See [`DEFAULT_PAGE`].
pub const MAX_PAGE: usize = 1000;

/// Query of `GET /api/ml/models`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Models per page (1–1000, default 100).
    pub limit: Option<usize>,
    /// The `x-next-cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Saved models, newest first; unloadable ones are listed with `status: "unloadable"` and
/// the reason. Further pages: the `x-next-cursor` header (also a `Link: rel="next"`).
#[utoipa::path(get, path = "/api/ml/models", params(ListQuery), responses((status = 200, body = Vec<ModelSummary>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // Every bad limit is one error, 422 in the API's shape (not the framework's text).
    let bad_limit =
        || ApiError::invalid("validation_error", format!("limit must be one whole number in 1..={MAX_PAGE}"));
    let Query(q) = q.map_err(|_| bad_limit())?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad_limit());
    }
    let after = q
        .cursor
        .as_deref()
        .map(ModelId::parse)
        .transpose()
        .map_err(|_| ApiError::invalid("validation_error", "cursor is not a cursor this server handed out"))?;
    let listing = state.store.list(&Page { limit, after }).await?;
    let mut res = Json(listing.models).into_response();
    if let Some(next) = listing.next {
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(next.as_str()) {
            h.insert("x-next-cursor", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("</api/ml/models?limit={limit}&cursor={next}>; rel=\"next\"")) {
            h.insert(header::LINK, v);
        }
    }
    Ok(res)
}

/// A model's metadata (the bundle's, verified), with `bundle_sha256` of its file.
#[utoipa::path(get, path = "/api/ml/models/{model_id}", params(("model_id" = String, Path)),
    responses((status = 200, description = "the bundle metadata"), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let loaded = state.store.open(&ModelId::parse(&id)?).await?;
    let mut meta: serde_json::Map<String, serde_json::Value> = serde_json::from_str(loaded.model.metadata_json())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt_model", e.to_string()))?;
    meta.insert("bundle_sha256".into(), loaded.sha256.clone().into());
    Ok(Json(meta).into_response())
}

/// A model's `model.safetensors` bytes (a complete bundle for browsers and workers), only
/// after verification. `ETag` is the file's sha256; `If-None-Match` gets 304. One byte range
/// (`Range: bytes=…`, honoured under a matching `If-Range`) gets 206, so an interrupted
/// download of a large bundle resumes; several ranges get the whole file.
#[utoipa::path(get, path = "/api/ml/models/{model_id}/bundle", params(("model_id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", description = "model.safetensors"),
        (status = 206, content_type = "application/octet-stream", description = "one byte range of it"),
        (status = 304, description = "unchanged"), (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody)))]
pub async fn bundle(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = ModelId::parse(&id)?;
    let loaded = state.store.open(&id).await?;
    let etag = format!("\"{}\"", loaded.sha256);
    let digest =
        format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(hex_to_bytes(&loaded.sha256)));
    // Every If-None-Match line counts: repeated header lines are one comma-separated list (RFC 9110 §5.3).
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag);
    let len = loaded.bytes.len() as u64;
    let mut res = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = match requested_part(&headers, &etag, len) {
            Part::Unsatisfiable => {
                let e = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the requested range is outside the bundle's {len} bytes"),
                );
                let mut r = e.into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
            Part::Range(range) => {
                let (start, end) = (*range.start(), *range.end());
                let mut r =
                    (StatusCode::PARTIAL_CONTENT, loaded.bytes.slice(start as usize..=end as usize)).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                r
            }
            Part::Whole => {
                let mut r = loaded.bytes.clone().into_response();
                // The digest of this message's content: the whole file only in a 200.
                if let Ok(v) = HeaderValue::from_str(&digest) {
                    r.headers_mut().insert("content-digest", v);
                }
                r
            }
        };
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.safetensors\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        // The digest of the whole file, whichever part this message carries (RFC 9530 §3).
        if let Ok(v) = HeaderValue::from_str(&digest) {
            h.insert("repr-digest", v);
        }
        r
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Bundles never change under an id (ids are never reused), but may be deleted: revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// What of a `len`-byte file to send.
enum Part {
    Whole,
    Range(std::ops::RangeInclusive<u64>),
    /// A range wholly past the end: 416.
    Unsatisfiable,
}

/// The part of a `len`-byte file the request asks for: one byte range when it asks for
/// exactly one and its `If-Range` (when given) is this file's strong `etag`. A malformed
/// `Range` is ignored, as RFC 9110 §14.2 lets a server do (the whole file follows), and so are
/// several ranges (no multipart answers).
fn requested_part(headers: &HeaderMap, etag: &str, len: u64) -> Part {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Part::Whole };
    if headers.get(header::IF_RANGE).is_some_and(|v| v.to_str().map_or(true, |t| t.trim() != etag)) {
        return Part::Whole;
    }
    let Ok(parsed) = http_range_header::parse_range_header(range) else { return Part::Whole };
    match parsed.validate(len) {
        Ok(mut ranges) if ranges.len() == 1 => ranges.pop().map_or(Part::Whole, Part::Range),
        Ok(_) => Part::Whole,
        Err(_) => Part::Unsatisfiable,
    }
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// Delete a model (only when the server has an API key, and with it).
#[utoipa::path(delete, path = "/api/ml/models/{model_id}", params(("model_id" = String, Path)),
    responses((status = 200), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = ModelId::parse(&id)?;
    state.store.delete(&id).await?;
    Ok(Json(serde_json::json!({ "deleted": id.as_str() })))
}
