//! The API's errors and their HTTP statuses, in one place: every error type the handlers
//! meet converts here, and each answers in its route's protocol shape (the core encodes
//! the bodies: `{"error": kind, "message", …}` for `/api/ml`, `{"error": message}` for
//! KServe and the Open Inference Protocol, MLflow's `{"error_code", "message"}`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use inference::error::truncate_echo;
use inference::request::{error_reply, Protocol, Reply};
use inference::{ConfigError, RequestError};

use crate::error::{DataLoadError, QueueError, StoreError};

/// Error body of every failed `/api/ml` request (for the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind, e.g. `unknown_category`, `model_not_found`.
    pub error: String,
    /// What was wrong, for people.
    pub message: String,
    /// The 0-based row of the request the error is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// The column the error is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable kind.
    pub kind: &'static str,
    /// Message (echoed input is already truncated).
    pub message: String,
    /// The request row, when the error is about one.
    pub row: Option<usize>,
    /// The column, when the error is about one.
    pub column: Option<String>,
    /// The shape to answer in.
    pub protocol: Protocol,
}

impl ApiError {
    /// An error in `/api/ml`'s shape.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), row: None, column: None, protocol: Protocol::ApiMl }
    }

    /// 404.
    pub fn not_found(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, message)
    }

    /// 422.
    pub fn invalid(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, message)
    }

    /// The same error, answered in `protocol`'s shape.
    pub fn in_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("request body exceeds {limit} bytes"))
    }
}

/// A core reply as an HTTP response.
pub fn reply_response(reply: Reply) -> Response {
    let mut res =
        (StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), reply.body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Some(n) = reply.json_header_length {
        res.headers_mut().insert("inference-header-content-length", HeaderValue::from(n));
    }
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.as_u16();
        let mut res = reply_response(error_reply(
            self.protocol,
            status,
            self.kind,
            &self.message,
            self.row,
            self.column.as_deref(),
        ));
        // A full queue or an unreachable store passes: tell clients when to try again (RFC 9110 §10.2.3).
        let retry = match self.status {
            StatusCode::TOO_MANY_REQUESTS => Some("10"),
            StatusCode::SERVICE_UNAVAILABLE => Some("5"),
            _ => None,
        };
        if let Some(seconds) = retry {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(seconds));
        }
        res
    }
}

impl ApiError {
    /// A request error as `protocol` answers it (status and shape).
    pub fn request(e: RequestError, protocol: Protocol) -> Self {
        let status = StatusCode::from_u16(e.status(protocol)).unwrap_or(StatusCode::BAD_REQUEST);
        Self {
            status,
            kind: e.kind(),
            message: e.to_string(),
            row: e.row(),
            column: e.column().map(str::to_owned),
            protocol,
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        ApiError::request(e, Protocol::ApiMl)
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        ApiError::invalid(e.kind(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Corrupt { .. } | StoreError::TooLarge { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            StoreError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &e {
            StoreError::Backend(_) => backend_hidden(&e, "the model store"),
            e => e.to_string(),
        };
        ApiError::new(status, e.kind(), message)
    }
}

/// The message of a backend failure for a client: what is unavailable, not where it lives
/// (a Redis address, a file system path) nor why in detail, which the server's log records.
fn backend_hidden(e: &dyn std::fmt::Display, what: &str) -> String {
    tracing::warn!(error = %e, "{what} is unavailable");
    format!("{what} is unavailable just now; retry later")
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let status = match &e {
            QueueError::Full { .. } => StatusCode::TOO_MANY_REQUESTS,
            QueueError::NotFound(_) => StatusCode::NOT_FOUND,
            QueueError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &e {
            QueueError::NotFound(id) => format!("no training task `{}`", truncate_echo(id)),
            QueueError::Backend(_) => backend_hidden(&e, "the task queue"),
            e => e.to_string(),
        };
        ApiError::new(status, e.kind(), message)
    }
}

impl From<DataLoadError> for ApiError {
    fn from(e: DataLoadError) -> Self {
        ApiError::invalid(e.kind(), e.to_string())
    }
}

/// How much of a plain-text error body [`json_errors`] keeps as the message.
const TEXT_ERROR_BYTES: usize = 4096;

/// Error answers that leave a layer or an extractor as plain text or empty (axum's query and
/// path rejections, the timeout layer's 408) are rewritten in the route's protocol's JSON
/// error shape, so every error a client sees has one form.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let protocol = super::web::protocol_of_path(req.uri().path());
    let res = next.run(req).await;
    let status = res.status();
    let content_type = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let plain = content_type.is_empty() || content_type.starts_with("text/plain");
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, TEXT_ERROR_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let kind = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_error",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    let message =
        if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { truncate_echo(&text) };
    let mut out = ApiError::new(status, kind, message).in_protocol(protocol).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_refusals_say_when_to_retry() {
        let full = ApiError::from(QueueError::Full { limit: 3 }).into_response();
        assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(full.headers().get("retry-after").unwrap(), "10");
        let down = ApiError::from(QueueError::Backend("redis".into())).into_response();
        assert_eq!(down.headers().get("retry-after").unwrap(), "5");
        assert!(ApiError::invalid("x", "y").into_response().headers().get("retry-after").is_none());
    }
}
