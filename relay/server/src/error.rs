//! The relay's one error type and its mapping to HTTP answers.
//!
//! 4xx answers explain what was wrong without echoing ids or tokens; 5xx answers say nothing
//! beyond "internal error" (the detail goes to the log, which never holds ids, tokens or payloads).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use carekey_relay_api::ErrorBody;

/// Every way a relay request can fail.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The request is malformed: invalid JSON, base64, hex id, header, length, unknown
    /// format version or trailing bytes. Answered 400 with a message saying which part.
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code.
        code: &'static str,
        /// Explanation for the client.
        message: String,
    },
    /// A credential is missing or does not verify: owner signature, bearer token unknown,
    /// mailbox token wrong, receipt signature invalid. Answered 401.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A credential header (owner counter or signature, bearer token, fetch receipt) is
    /// present but does not parse. Answered 401 like a credential that does not verify (RFC
    /// 6750 section 3.1: a malformed token is `invalid_token`), with a code saying which one.
    #[error("{message}")]
    BadCredential {
        /// Stable machine-readable code, e.g. `bad_token`.
        code: &'static str,
        /// Fixed explanation.
        message: &'static str,
    },
    /// The credential is valid but the action is not allowed: a delegation chain that widens
    /// scope, expiry or depth, or a receipt naming another key/object. Answered 403.
    #[error("{message}")]
    Forbidden {
        /// Stable machine-readable code.
        code: &'static str,
        /// Explanation for the client.
        message: String,
    },
    /// No such share, blob, token, upload or mailbox. Answered 404.
    #[error("{0}")]
    NotFound(&'static str),
    /// The share, token or mailbox existed but is revoked or expired. Answered 410.
    #[error("{0}")]
    Gone(&'static str),
    /// The write lost a race or was replayed: counter not above the stored one, manifest
    /// version compare-and-swap failed, pairing mailbox already answered, blob id taken.
    /// Answered 409.
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable code.
        code: &'static str,
        /// Explanation for the client.
        message: String,
    },
    /// The body or blob is larger than the configured limit. Answered 413.
    #[error("{0}")]
    TooLarge(&'static str),
    /// The request body has a media type this route does not take. Answered 415.
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    /// Per-IP/per-token rate limit or storage quota exceeded. Answered 429 with Retry-After.
    #[error("{message}")]
    TooMany {
        /// Seconds the client should wait.
        retry_after: u64,
        /// Explanation for the client.
        message: &'static str,
    },
    /// A per-client storage quota (crate::quota) is used up. Answered 429 with a long
    /// Retry-After: space comes back when the client's objects are deleted or expire.
    #[error("{0}")]
    QuotaExceeded(&'static str),
    /// The relay's global storage cap is reached. Answered 507 `storage_full`; reads and
    /// deletes go on.
    #[error("the relay's storage is full; reads and deletes still work")]
    StorageFull,
    /// The database failed (I/O, constraint, connection) or an internal invariant broke.
    /// Answered 500 with no detail; the detail is logged without ids.
    #[error("storage failure: {0}")]
    Storage(String),
}

/// Seconds a client over its storage quota is told to wait.
pub const QUOTA_RETRY_SECS: u64 = 3600;

/// Shorthand for results in this crate.
pub type Result<T, E = RelayError> = std::result::Result<T, E>;

impl RelayError {
    /// A 400 answer with a stable code.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 403 answer with a stable code.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// A 409 answer with a stable code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::BadCredential { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone(_) => StatusCode::GONE,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::Forbidden { code, .. } => code,
            Self::Conflict { code, .. } | Self::BadCredential { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::Gone(_) => "gone",
            Self::TooLarge(_) => "too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooMany { .. } => "too_many_requests",
            Self::QuotaExceeded(_) => "client_quota",
            Self::StorageFull => "storage_full",
            Self::Storage(_) => "internal",
        }
    }
}

impl From<rusqlite::Error> for RelayError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Storage(format!("sqlite: {e}"))
    }
}

impl From<tokio_postgres::Error> for RelayError {
    /// The server's message and SQLSTATE, never its `DETAIL` (which quotes row values such as
    /// the key of a violated constraint); `Display` alone says only "db error".
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self::Storage(format!(
                "postgres: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            )),
            None => Self::Storage(format!("postgres: {e}")),
        }
    }
}

/// Marks a response built by [`error_response`]: its body is already the relay's
/// `{error, message}` JSON. `crate::rejection::json_errors` rewrites every other error answer
/// (axum's own rejections, 405, 408 from the timeout layer) into that form.
#[derive(Debug, Clone, Copy)]
pub struct JsonError;

/// Builds a JSON error response.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: code.to_owned(),
        message: message.to_owned(),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.extensions_mut().insert(JsonError);
    resp
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && !matches!(self, Self::StorageFull) {
            // The detail never reaches the client (issue 4: "5xx bodies reveal nothing").
            tracing::error!(error = %self, "request failed");
            return error_response(status, "internal", "internal error");
        }
        let mut resp = error_response(status, self.code(), &self.to_string());
        let retry_after = match self {
            Self::TooMany { retry_after, .. } => Some(retry_after.max(1)),
            Self::QuotaExceeded(_) => Some(QUOTA_RETRY_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn server_errors_reveal_nothing() {
        let resp = RelayError::Storage("sqlite: disk I/O error at /secret/path share 00ff".into())
            .into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(resp.into_body(), 1 << 16).await.expect("body");
        assert_eq!(
            &body[..],
            br#"{"error":"internal","message":"internal error"}"#
        );
    }

    #[tokio::test]
    async fn too_many_carries_retry_after() {
        let resp = RelayError::TooMany {
            retry_after: 7,
            message: "slow down",
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }
}
