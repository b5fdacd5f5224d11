//! Every error the relay answers is `{"error": code, "message": text}` (docs/relay.md "HTTP
//! API"), including the answers axum and tower produce by themselves: a path or query that does
//! not parse, a body over the limit, a method the route does not take (405, with `Allow`), the
//! request timeout (408), an unknown route (404) and a body of the wrong media type (415).
//!
//! Three pieces:
//!
//! - [`Path`] and [`Query`]: the axum extractors with a [`RelayError`] rejection (`bad_path`,
//!   `bad_query`). axum's own rejection texts quote what the client sent (serde's "invalid
//!   digit in `abc`"); these messages are fixed.
//! - [`BodyKind`]: what a route takes; `crate::body::guard` answers 415
//!   `unsupported_media_type` for another media type (and 413/408 for oversized and stalled
//!   bodies).
//! - [`json_errors`]: the outermost layer. Any 4xx/5xx that was not built by
//!   [`crate::error::error_response`] gets a fixed JSON body chosen by its status alone, so
//!   nothing the client sent and nothing internal can reach the answer; `Allow` and
//!   `Retry-After` are kept. A 422 (axum's "JSON data error") becomes 400 like every other
//!   malformed body.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::error::{JsonError, RelayError, error_response};

/// `axum::extract::Path` answering 400 `bad_path` with a fixed message.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = RelayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, RelayError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            // A route/extractor mismatch is the relay's bug, not the client's.
            Err(e) if e.status().is_server_error() => Err(RelayError::Storage(format!(
                "path extractor: {}",
                e.body_text()
            ))),
            Err(_) => Err(RelayError::bad(
                "bad_path",
                "a path segment is malformed (ids are lowercase hex, numbers decimal)",
            )),
        }
    }
}

/// `axum::extract::Query` answering 400 `bad_query` with a fixed message.
#[derive(Debug, Clone, Copy)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = RelayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, RelayError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|_| {
                RelayError::bad(
                    "bad_query",
                    "the query string lacks a required parameter or has a malformed one (see the route's parameters in /openapi.json)",
                )
            })
    }
}

/// What a route takes as its request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// No body (GET, DELETE and bodyless POSTs); any media type is ignored.
    None,
    /// JSON (`application/json` or `*/*+json` when a type is named).
    Json,
    /// Opaque bytes (`application/octet-stream` when a type is named).
    Raw,
}

impl BodyKind {
    /// Whether `content_type` (a header value, `None` if absent) is acceptable. A missing
    /// `Content-Type` is accepted for every kind (the clients and tests predating the check
    /// send none for raw bodies); a named type must match. This also refuses the "simple"
    /// types a browser form may send across origins without a preflight (`text/plain`,
    /// `application/x-www-form-urlencoded`, `multipart/form-data`).
    pub fn accepts(self, content_type: Option<&[u8]>) -> bool {
        let Some(ct) = content_type else {
            return true;
        };
        let Ok(ct) = std::str::from_utf8(ct) else {
            return false;
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match self {
            Self::None => true,
            Self::Json => essence == "application/json" || essence.ends_with("+json"),
            Self::Raw => essence == "application/octet-stream",
        }
    }

    /// The media type named in messages and the OpenAPI document.
    pub fn media_type(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Json => Some("application/json"),
            Self::Raw => Some("application/octet-stream"),
        }
    }
}

/// The fixed answer for an error status the handlers did not build themselves.
pub fn generic(status: StatusCode) -> (StatusCode, &'static str, &'static str) {
    match status.as_u16() {
        400 | 422 => (
            StatusCode::BAD_REQUEST,
            "bad_request",
            "malformed request (path, query, headers or body)",
        ),
        401 => (
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authentication required",
        ),
        403 => (StatusCode::FORBIDDEN, "forbidden", "not allowed"),
        404 => (StatusCode::NOT_FOUND, "not_found", "no such route"),
        405 => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take this method (see the Allow header)",
        ),
        408 => (
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took longer than the relay's request timeout",
        ),
        411 => (
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "the request needs a Content-Length",
        ),
        413 => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "request body larger than the relay's limit",
        ),
        415 => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "this route does not take a body of this media type",
        ),
        429 => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many requests",
        ),
        s if s >= 500 => (status, "internal", "internal error"),
        _ => (status, "bad_request", "the request was refused"),
    }
}

/// Outermost layer: rewrites every error answer not built by `error_response` (see the
/// module documentation). Success answers and the relay's own errors pass unchanged.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.extensions().get::<JsonError>().is_some()
    {
        return resp;
    }
    let (parts, _body) = resp.into_parts();
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), "non-relay server error answer");
    }
    let (status, code, message) = generic(status);
    let mut out = error_response(status, code, message);
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let j = BodyKind::Json;
        assert!(j.accepts(None));
        assert!(j.accepts(Some(b"application/json")));
        assert!(j.accepts(Some(b"Application/JSON; charset=utf-8")));
        assert!(j.accepts(Some(b"application/problem+json")));
        assert!(!j.accepts(Some(b"text/plain")));
        assert!(!j.accepts(Some(b"application/x-www-form-urlencoded")));
        assert!(!j.accepts(Some(b"\xff")));
        let r = BodyKind::Raw;
        assert!(r.accepts(None));
        assert!(r.accepts(Some(b"application/octet-stream")));
        assert!(!r.accepts(Some(b"application/json")));
        assert!(!r.accepts(Some(b"multipart/form-data; boundary=x")));
        assert!(BodyKind::None.accepts(Some(b"text/plain")));
    }

    #[test]
    fn generic_answers_are_fixed() {
        assert_eq!(
            generic(StatusCode::UNPROCESSABLE_ENTITY).0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(generic(StatusCode::BAD_GATEWAY).1, "internal");
        assert_eq!(generic(StatusCode::IM_A_TEAPOT).0, StatusCode::IM_A_TEAPOT);
    }
}
