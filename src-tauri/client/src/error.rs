//! The one error type of the client, shaped for the apps: every variant has a stable
//! [`ClientError::code`] the UI switches on, and a message that never carries a key, token, id,
//! or patient datum.

/// Everything a flow can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No network route to the relay (DNS failure, connection refused, offline device).
    #[error("the relay cannot be reached; check the connection and try again")]
    RelayUnreachable,
    /// The relay did not answer in time.
    #[error("the relay did not answer in time")]
    Timeout,
    /// 410: the read token was revoked or has expired; the share is no longer readable.
    #[error("access to these records was revoked or has expired")]
    AccessEnded,
    /// 404: the object is not (or no longer) there, e.g. a blob replaced by a re-key.
    #[error("the relay has no such object")]
    NotFound,
    /// 409: a compare-and-swap or single-use object lost a race (e.g. the pairing already got
    /// its reply).
    #[error("conflict on the relay: {code}")]
    Conflict {
        /// The relay's stable error code.
        code: String,
    },
    /// 429: too many requests or over quota.
    #[error("the relay asks to slow down (retry in {retry_after_secs} s)")]
    RateLimited {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Another 4xx: the relay refused the request; `code` is its stable error code.
    #[error("the relay refused the request: {code}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The relay's stable error code.
        code: String,
    },
    /// 5xx: the relay failed; it reveals nothing more.
    #[error("the relay failed (HTTP {status})")]
    RelayFailure {
        /// HTTP status.
        status: u16,
    },
    /// A response that is not what the protocol says (bad JSON, bad base64, wrong sizes).
    #[error("the relay sent a malformed answer ({what})")]
    BadResponse {
        /// Which answer.
        what: &'static str,
    },
    /// Data failed a cryptographic or protocol check: tampered, forged, replayed, rolled back,
    /// or moved. Nothing of it was stored.
    #[error("verification failed: {0}")]
    Tampered(#[from] carekey_core::Error),
    /// Nobody answered within the wait (pairing reply, grant).
    #[error("nobody answered in time")]
    NoAnswer,
    /// The user (or the app) cancelled a long operation.
    #[error("cancelled")]
    Cancelled,
    /// The operation is not allowed in this state (e.g. forwarding under policy never).
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// The caller passed something unusable (bad QR text, unknown share).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The local vault refused or failed (locked, tampered row, disk); its own code says which.
    #[error("vault: {0}")]
    Vault(#[from] carekey_vault::VaultError),
}

impl ClientError {
    /// Stable machine-readable code for the UI (`{code, message}` over IPC).
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::RelayUnreachable => "relay_unreachable",
            ClientError::Timeout => "timeout",
            ClientError::AccessEnded => "access_ended",
            ClientError::NotFound => "not_found",
            ClientError::Conflict { .. } => "conflict",
            ClientError::RateLimited { .. } => "rate_limited",
            ClientError::Refused { .. } => "refused",
            ClientError::RelayFailure { .. } => "relay_failure",
            ClientError::BadResponse { .. } => "bad_response",
            ClientError::Tampered(_) => "tampered",
            ClientError::NoAnswer => "no_answer",
            ClientError::Cancelled => "cancelled",
            ClientError::NotAllowed(_) => "not_allowed",
            ClientError::InvalidInput(_) => "invalid_input",
            ClientError::Vault(e) => e.code(),
        }
    }
}

/// Result alias of the client.
pub type Result<T, E = ClientError> = core::result::Result<T, E>;
