//! Request bodies: [`RawBody`] (bytes, capped at `--max-body-bytes`, with the content type)
//! and [`JsonBody`] (a typed JSON body), whose every rejection is the API's JSON error shape
//! (axum's own extractors answer some rejections in plain text).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// A request body as bytes, within the server's size limit, and its `Content-Type`.
pub struct RawBody {
    /// The bytes.
    pub bytes: Bytes,
    /// The `Content-Type` header, if any (and valid text).
    pub content_type: Option<String>,
    /// The `Inference-Header-Content-Length` header (Open Inference Protocol binary extension).
    pub json_header_length: Option<usize>,
}

impl RawBody {
    /// What the core needs to know of the transport.
    pub fn transport(&self) -> inference::request::Transport<'_> {
        inference::request::Transport {
            content_type: self.content_type.as_deref(),
            json_header_length: self.json_header_length,
        }
    }
}

impl FromRequest<Arc<AppState>> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.config.limits.max_body_bytes;
        let headers = req.headers();
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let json_header_length = headers
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        // Refuse an announced oversize body before reading any of it.
        let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::too_large(limit));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
            }
        })?;
        Ok(Self { bytes, content_type, json_header_length })
    }
}

/// A JSON request body of type `T` (`Content-Type: application/json` required).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let body = RawBody::from_request(req, state).await?;
        let content_type = body.content_type.as_deref().unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !(mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "expected Content-Type: application/json, got {:?}",
                    inference::error::truncate_echo(content_type)
                ),
            ));
        }
        serde_json::from_slice(&body.bytes).map(JsonBody).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::invalid("validation_error", inference::error::truncate_echo(&e.to_string()))
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {e}")),
        })
    }
}
