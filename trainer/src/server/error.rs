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
        reply_response(error_reply(self.protocol, status, self.kind, &self.message, self.row, self.column.as_deref()))
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
        ApiError::new(status, e.kind(), e.to_string())
    }
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
