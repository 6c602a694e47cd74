//! The API key, checked by middleware before any body is read: `Authorization: Bearer KEY`
//! (the scheme matched case-insensitively, RFC 7235), compared in constant time through
//! digests of equal length, so neither the key's bytes nor its length leak through timing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;

/// Whether `headers` carry the bearer `key`.
pub fn has_key(headers: &HeaderMap, key: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(char::is_whitespace)?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .unwrap_or("");
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(key.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    let mut res =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong `Authorization: Bearer <key>`")
            .into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    res
}

/// Routes open without a server key, guarded with one (train, cancel).
pub async fn key_if_set(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match &state.config.api_key {
        Some(key) if !has_key(req.headers(), key) => unauthorized(),
        _ => next.run(req).await,
    }
}

/// Routes disabled without a server key (delete).
pub async fn key_required(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match &state.config.api_key {
        None => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "deleting models is disabled: start the server with --api-key",
        )
        .into_response(),
        Some(key) if !has_key(req.headers(), key) => unauthorized(),
        Some(_) => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_exact_on_the_key() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        assert!(has_key(&h("Bearer s3cret"), "s3cret"));
        assert!(has_key(&h("bearer s3cret"), "s3cret"));
        assert!(has_key(&h("BEARER   s3cret "), "s3cret"));
        assert!(!has_key(&h("Bearer s3cre"), "s3cret"));
        assert!(!has_key(&h("Basic s3cret"), "s3cret"));
        assert!(!has_key(&h("s3cret"), "s3cret"));
        assert!(!has_key(&HeaderMap::new(), "s3cret"));
    }
}
