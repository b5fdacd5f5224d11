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
    /// 403 `enrollment_required`: the relay is a closed deployment and this client sent no
    /// enrollment key, or not its operator's ([`crate::relay::Relay::with_enrollment_key`]).
    #[error("this relay is closed: creating anything on it needs its operator's enrollment key")]
    EnrollmentRequired,
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
    /// An answer longer than the protocol allows (a blob past the size its signed manifest
    /// states, a page past the relay's page limits): the read stopped at the cap
    /// (crate::answer), nothing of it is used.
    #[error("the relay sent more than the protocol allows ({what})")]
    TooLarge {
        /// Which answer.
        what: &'static str,
    },
    /// Data failed a cryptographic or protocol check: tampered, forged, replayed, rolled back,
    /// or moved. Nothing of it was stored. Made from a [`carekey_core::Error`] by the `From`
    /// impl below only when the error is none of the kinds that have their own variant
    /// (expired, already used, unreadable QR text).
    #[error("verification failed: {0}")]
    Tampered(carekey_core::Error),
    /// Something's validity ended: a pairing QR older than its expiry (scanned late, or the
    /// patient waited too long), an expired grant or delegation (core `Error::Expired`).
    #[error("{}", expired_message(what))]
    Expired {
        /// Which structure expired (a fixed name, never a value).
        what: &'static str,
    },
    /// The pairing QR was already answered or closed: the relay's pairing mailbox has its reply
    /// (409) or is gone (404), or the patient's side already accepted a reply (core
    /// `Error::PairingClosed`). docs/protocol.md "Pairing": a QR is single-use.
    #[error("this QR was already used: ask the patient for a new one")]
    AlreadyUsed,
    /// The patient declined the pairing (the check codes did not match, or the patient said
    /// no): a sealed "declined" message arrived on the pairing channel (docs/protocol.md
    /// "Pairing").
    #[error("the patient declined")]
    Declined,
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
            ClientError::EnrollmentRequired => "enrollment_required",
            ClientError::RelayFailure { .. } => "relay_failure",
            ClientError::BadResponse { .. } => "bad_response",
            ClientError::TooLarge { .. } => "too_large",
            ClientError::Tampered(_) => "tampered",
            ClientError::Expired { .. } => "expired",
            ClientError::AlreadyUsed => "already_used",
            ClientError::Declined => "declined",
            ClientError::NoAnswer => "no_answer",
            ClientError::Cancelled => "cancelled",
            ClientError::NotAllowed(_) => "not_allowed",
            ClientError::InvalidInput(_) => "invalid_input",
            ClientError::Vault(e) => e.code(),
        }
    }
}

/// The user-facing sentence of [`ClientError::Expired`]: a QR gets the advice the patient
/// can act on, anything else a generic wording.
fn expired_message(what: &str) -> String {
    if what == QR_WHAT {
        "this QR code has expired: ask the patient for a new one".to_owned()
    } else {
        format!("{what} has expired")
    }
}

/// The name core errors give the pairing QR (`QrPayload::check_fresh` and its decoder).
pub(crate) const QR_WHAT: &str = "pairing QR";
/// The name the QR decoder gives its errors (`QrPayload::parse`, `Wire::WHAT`).
const QR_PAYLOAD_WHAT: &str = "QR payload";

impl From<carekey_core::Error> for ClientError {
    /// Maps a core error by kind: expired → [`ClientError::Expired`], pairing closed →
    /// [`ClientError::AlreadyUsed`], undecodable QR text (what the user scanned or pasted) →
    /// [`ClientError::InvalidInput`], everything else → [`ClientError::Tampered`].
    fn from(e: carekey_core::Error) -> Self {
        use carekey_core::Error as E;
        match e {
            E::Expired { what } => ClientError::Expired { what },
            E::PairingClosed => ClientError::AlreadyUsed,
            E::Encoding { what }
            | E::Truncated { what }
            | E::TrailingBytes { what, .. }
            | E::UnknownVersion { what, .. }
            | E::Malformed { what, .. }
                if what == QR_PAYLOAD_WHAT =>
            {
                ClientError::InvalidInput(NOT_A_QR)
            }
            e => ClientError::Tampered(e),
        }
    }
}

/// What [`ClientError::InvalidInput`] says for text that is not a pairing QR.
pub(crate) const NOT_A_QR: &str =
    "this is not a Carekey pairing QR (expected text starting with CAREKEY:)";

/// Result alias of the client.
pub type Result<T, E = ClientError> = core::result::Result<T, E>;
