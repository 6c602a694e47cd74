//! Request bodies: [`RawBody`] (bytes, capped at `--max-body-bytes`, with the content type;
//! `Content-Encoding: gzip` or `deflate` decoded, within the same cap) and [`JsonBody`] (a typed
//! JSON body), whose every rejection is the API's JSON error shape (axum's own extractors
//! answer some rejections in plain text).

use std::io::Read;
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
        let json_header_length = json_header_length(headers)?;
        let coding = Coding::of(headers)?; // None: identity
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
        let bytes = match coding {
            None => bytes,
            // Large bodies inflate off the async workers, as large predictions run.
            Some(c) if bytes.len() > super::predict::OFFLOAD_BYTES => {
                tokio::task::spawn_blocking(move || c.decode(&bytes, limit))
                    .await
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??
            }
            Some(c) => c.decode(&bytes, limit)?,
        };
        Ok(Self { bytes, content_type, json_header_length })
    }
}

/// `Inference-Header-Content-Length`: absent or 0 (Triton's "missing") is `None`; anything
/// but a byte count is refused rather than read as absent.
fn json_header_length(headers: &axum::http::HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(v) = headers.get("inference-header-content-length") else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("").trim();
    match text.parse::<usize>() {
        Ok(0) => Ok(None),
        Ok(n) if !text.starts_with('+') => Ok(Some(n)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("Inference-Header-Content-Length must be a byte count, got {:?}", echo(v)),
        )),
    }
}

/// A header's value as a message may echo it (lossy, truncated).
fn echo(v: &axum::http::HeaderValue) -> String {
    inference::error::truncate_echo(&String::from_utf8_lossy(v.as_bytes()))
}

/// A request body's `Content-Encoding` other than identity.
#[derive(Debug, Clone, Copy)]
enum Coding {
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2); raw deflate is also accepted,
    /// as some clients send it.
    Deflate,
}

impl Coding {
    /// The coding `headers` name; `None` for identity (or none).
    fn of(headers: &axum::http::HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(v) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(None);
        };
        match v.to_str().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Self::Gzip)),
            "deflate" => Ok(Some(Self::Deflate)),
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Encoding {:?} is not supported: send gzip, deflate or identity", echo(v)),
            )),
        }
    }

    /// Inflate `bytes`, refusing output over `limit` bytes (a small body may inflate to any size).
    fn decode(self, bytes: &[u8], limit: usize) -> Result<Bytes, ApiError> {
        let inflate = |r: &mut dyn Read| -> std::io::Result<Vec<u8>> {
            let mut out = Vec::new();
            r.take(limit as u64 + 1).read_to_end(&mut out)?;
            Ok(out)
        };
        let out = match self {
            Self::Gzip => inflate(&mut flate2::read::MultiGzDecoder::new(bytes)),
            Self::Deflate => inflate(&mut flate2::read::ZlibDecoder::new(bytes))
                .or_else(|_| inflate(&mut flate2::read::DeflateDecoder::new(bytes))),
        }
        .map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("the body could not be decompressed: {e}"))
        })?;
        if out.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        Ok(Bytes::from(out))
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
        // A repeated key would be read one way here and maybe another way by a proxy or a log.
        let mut de = serde_json::Deserializer::from_slice(&body.bytes);
        serde::Deserializer::deserialize_any(&mut de, NoDuplicateKeys).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::invalid("validation_error", inference::error::truncate_echo(&e.to_string()))
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {e}")),
        })?;
        serde_json::from_slice(&body.bytes).map(JsonBody).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::invalid("validation_error", inference::error::truncate_echo(&e.to_string()))
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {e}")),
        })
    }
}

/// Walks a JSON value and fails on an object that repeats a key (at any depth).
struct NoDuplicateKeys;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate field `{}`",
                    inference::error::truncate_echo(&key)
                )));
            }
            map.next_value::<Checked>()?;
        }
        Ok(())
    }
}

/// A value checked by [`NoDuplicateKeys`].
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys).map(|()| Checked)
    }
}
