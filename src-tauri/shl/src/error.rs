//! The one error type of this crate.
//!
//! No variant carries a key, a passcode, a manifest or file URL (they are capabilities: whoever
//! has the URL and key reads the data) or any decrypted content. Strings inside variants are
//! either fixed texts or short header values (an algorithm name, a content type), cut to
//! [`MAX_ECHO`] printable ASCII characters.

/// How many characters of a header value (an unsupported `alg`, `enc`, `zip`, content type)
/// an error repeats.
pub const MAX_ECHO: usize = 40;

/// Every way opening a SMART Health Link or Card can fail.
///
/// [`ShlError::code`] gives a stable short code for the UI layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShlError {
    // ------------------------------------------------------------------ sizes and formats
    /// An input is larger than this crate accepts (`what` names the input, `max` the bound in
    /// bytes, or in items for counts). Checked before any decoding.
    #[error("{what} is too large (at most {max})")]
    TooLarge {
        /// Which input: "link text", "JWE", "manifest", ...
        what: &'static str,
        /// The bound it broke.
        max: usize,
    },
    /// A part that must be base64url (RFC 4648 §5, no padding) is not.
    #[error("{what} is not valid base64url")]
    Base64 {
        /// Which part: "link payload", "JWE ciphertext", ...
        what: &'static str,
    },
    /// A part that must be JSON is not, or not the JSON value expected (an object), or is
    /// nested deeper than allowed.
    #[error("{what} is not valid JSON: {reason}")]
    Json {
        /// Which part: "link payload", "JWE header", "manifest", ...
        what: &'static str,
        /// Why, in fixed words (never the input itself).
        reason: &'static str,
    },
    /// A JSON member is missing, of the wrong type or out of range.
    #[error("{what}: field `{field}` {reason}")]
    InvalidField {
        /// Which object: "link payload", "manifest file", "JWK", ...
        what: &'static str,
        /// The member name.
        field: &'static str,
        /// What is wrong with it, in fixed words.
        reason: &'static str,
    },

    // ------------------------------------------------------------------ shlink:/
    /// The text is neither `shlink:/…` nor a viewer URL with a `#shlink:/…` fragment.
    #[error("not a SMART Health Link (expected shlink:/ or a viewer URL with #shlink:/)")]
    NotShlink,
    /// The link's `key` is not 43 base64url characters encoding 32 bytes.
    #[error("the link's key is not 43 base64url characters (32 bytes)")]
    InvalidKey,
    /// The link's `label` is longer than 80 characters.
    #[error("the link's label is longer than 80 characters")]
    LabelTooLong,
    /// The link's `url` (or a manifest's `location`) is not an absolute `https://` URL with a
    /// host (plain `http://` only for a loopback host), or has user info, whitespace or
    /// control characters.
    #[error("{what} is not an acceptable https URL: {reason}")]
    InvalidUrl {
        /// "link url" or "file location".
        what: &'static str,
        /// Why, in fixed words.
        reason: &'static str,
    },
    /// The link has both the `P` (passcode) and `U` (direct file) flags, which the
    /// specification forbids.
    #[error("the link has both the P and U flags, which cannot be combined")]
    PasscodeWithDirectFile,
    /// The link's `exp` is not after `now`: the sharer meant it to be used no longer.
    #[error("the link expired (exp {exp}, now {now})")]
    Expired {
        /// The link's `exp`, in seconds since the epoch.
        exp: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// The link declares a protocol version (`v`) newer than 1; the specification says not to
    /// request its manifest.
    #[error("the link uses SMART Health Links version {v}; only version 1 is supported")]
    UnsupportedVersion {
        /// The declared version.
        v: u64,
    },
    /// The link has the `P` flag and no passcode was given.
    #[error("this link needs a passcode")]
    PasscodeRequired,

    // ------------------------------------------------------------------ JWE / JWS
    /// The compact serialization does not have the right shape (part count, a non-empty
    /// encrypted key for `dir`, a signature that is not 64 bytes, ...).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// "JWE" or "JWS".
        what: &'static str,
        /// What is wrong, in fixed words.
        reason: &'static str,
    },
    /// The header's `alg` is not the one supported (`dir` for a JWE, `ES256` for a JWS).
    #[error("{what} algorithm {alg:?} is not supported")]
    UnsupportedAlgorithm {
        /// "JWE alg" or "JWS alg".
        what: &'static str,
        /// The header's value (cut, printable ASCII), or "(missing)".
        alg: String,
    },
    /// The JWE header's `enc` is not `A256GCM`.
    #[error("JWE content encryption {enc:?} is not supported (only A256GCM)")]
    UnsupportedEncryption {
        /// The header's value (cut, printable ASCII), or "(missing)".
        enc: String,
    },
    /// The header's `zip` is present and not `DEF`.
    #[error("compression {zip:?} is not supported (only DEF)")]
    UnsupportedCompression {
        /// The header's value (cut, printable ASCII).
        zip: String,
    },
    /// The header has a `crit` member: it names extensions this crate does not implement
    /// (RFC 7515 §4.1.11 / RFC 7516 §4.1.13 require refusing it).
    #[error("{what} header has critical extensions (crit), which are not supported")]
    CriticalHeader {
        /// "JWE" or "JWS".
        what: &'static str,
    },
    /// The JWE initialization vector is not 96 bits (RFC 7518 §5.3).
    #[error("the JWE IV is {len} bytes; A256GCM needs 12")]
    IvLength {
        /// Its decoded length.
        len: usize,
    },
    /// The JWE authentication tag is not 128 bits (RFC 7518 §5.3).
    #[error("the JWE tag is {len} bytes; A256GCM needs 16")]
    TagLength {
        /// Its decoded length.
        len: usize,
    },
    /// Decryption failed and the JWE's `kid` names a different key than the one given: the
    /// file was encrypted for another link.
    #[error("the file is encrypted under a different key than this link's")]
    WrongKey,
    /// Decryption failed: the ciphertext, tag or header was changed, or the key is not the
    /// one the file was encrypted under (AES-GCM cannot tell these apart).
    #[error("the file could not be decrypted: it was altered or the key does not match")]
    DecryptionFailed,
    /// The DEFLATE stream (`zip: DEF`) is corrupt or truncated.
    #[error("the compressed content is corrupt")]
    Inflate,
    /// The DEFLATE stream inflates to more than the bound (a "zip bomb").
    #[error("the compressed content inflates to more than {max} bytes")]
    DecompressedTooLarge {
        /// The bound, in bytes.
        max: usize,
    },

    // ------------------------------------------------------------------ manifest and files
    /// A manifest file (or a direct file) has a content type this crate does not know.
    #[error("content type {content_type:?} is not supported")]
    UnsupportedContentType {
        /// The declared type (cut, printable ASCII).
        content_type: String,
    },
    /// `application/smart-api-access` (a SMART access token for a FHIR API): recognised, but
    /// this build does not open FHIR API access.
    #[error("SMART API access (application/smart-api-access) is not supported")]
    ApiAccessNotSupported,
    /// Decrypted content is not what its type says (not a FHIR resource, not a
    /// `.smart-health-card` file), or a direct file's type cannot be told.
    #[error("the content is not {expected}")]
    UnexpectedContent {
        /// What it should have been: "a FHIR resource", ...
        expected: &'static str,
    },

    // ------------------------------------------------------------------ SMART Health Cards
    /// The `shc:/` numeric text is malformed (odd digit count, a non-digit, a pair above 77,
    /// a character that cannot be in a JWS).
    #[error("not a valid shc:/ QR text: {reason}")]
    ShcNumeric {
        /// What is wrong, in fixed words.
        reason: &'static str,
    },
    /// The chunked form `shc:/C/N/…` is inconsistent (index out of range, differing totals,
    /// a chunk given twice with different content, chunks missing).
    #[error("SMART Health Card QR chunks: {reason}")]
    ShcChunks {
        /// What is wrong, in fixed words.
        reason: &'static str,
    },
    /// The JWS signature does not verify under the issuer's key named by `kid`: the card was
    /// altered after signing.
    #[error("the health card's signature does not verify: it was altered")]
    BadSignature,
    /// The card's `exp` claim is not after `now`.
    #[error("the health card expired (exp {exp}, now {now})")]
    CardExpired {
        /// The card's `exp`, seconds since the epoch.
        exp: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// The JWS payload is not a SMART Health Card (no `iss`, no
    /// `https://smarthealth.cards#health-card` type, no `fhirBundle` Bundle).
    #[error("not a SMART Health Card: {reason}")]
    NotHealthCard {
        /// What is missing, in fixed words.
        reason: &'static str,
    },
    /// A JWK is not an ES256 public signing key as SMART Health Cards requires (kty EC, crv
    /// P-256, x/y on the curve, kid the RFC 7638 thumbprint, no private `d`).
    #[error("not a usable issuer key: {reason}")]
    InvalidJwk {
        /// What is wrong, in fixed words.
        reason: &'static str,
    },

    // ------------------------------------------------------------------ fetch (HTTP)
    /// The server refused the passcode (HTTP 401). `remaining_attempts` is what the server
    /// said is left before the link is disabled, when it said so.
    #[error("the passcode was not accepted{}", remaining_text(*.remaining_attempts))]
    PasscodeRejected {
        /// The `remainingAttempts` of the 401 body, if the server sent one.
        remaining_attempts: Option<u64>,
    },
    /// The server answered 404: the link is no longer active.
    #[error("the link is no longer active")]
    LinkInactive,
    /// The server answered 429 Too Many Requests.
    #[error("the server asks to wait before asking again")]
    RateLimited {
        /// Its `Retry-After`, in seconds, when it sent one as a number.
        retry_after: Option<u64>,
    },
    /// The server answered with another unexpected HTTP status.
    #[error("the server answered HTTP {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// The request took longer than the client's timeout.
    #[error("the server did not answer in time")]
    Timeout,
    /// The server could not be reached or the connection failed (no URL in the text).
    #[error("the server could not be reached: {reason}")]
    Network {
        /// The transport error, without its URL.
        reason: String,
    },
}

fn remaining_text(n: Option<u64>) -> String {
    match n {
        Some(n) => format!(" ({n} attempts left)"),
        None => String::new(),
    }
}

impl ShlError {
    /// A stable short code for the UI layer:
    ///
    /// | code | variants |
    /// |---|---|
    /// | `too_large` | [`TooLarge`](Self::TooLarge), [`DecompressedTooLarge`](Self::DecompressedTooLarge) |
    /// | `invalid_input` | formats: base64, JSON, fields, keys, URLs, flags, `shc:/` text, chunks, JWKs, [`Inflate`](Self::Inflate), [`UnexpectedContent`](Self::UnexpectedContent) |
    /// | `expired` | [`Expired`](Self::Expired), [`CardExpired`](Self::CardExpired) |
    /// | `not_supported` | unsupported version, algorithm, encryption, compression, `crit`, content type, SMART API access |
    /// | `wrong_key` | [`WrongKey`](Self::WrongKey) |
    /// | `tampered` | [`DecryptionFailed`](Self::DecryptionFailed), [`BadSignature`](Self::BadSignature) |
    /// | `passcode_required` / `wrong_passcode` | [`PasscodeRequired`](Self::PasscodeRequired) / [`PasscodeRejected`](Self::PasscodeRejected) |
    /// | `access_ended` | [`LinkInactive`](Self::LinkInactive) |
    /// | `rate_limited`, `timeout`, `unreachable`, `bad_response` | the HTTP errors |
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } | Self::DecompressedTooLarge { .. } => "too_large",
            Self::Base64 { .. }
            | Self::Json { .. }
            | Self::InvalidField { .. }
            | Self::NotShlink
            | Self::InvalidKey
            | Self::LabelTooLong
            | Self::InvalidUrl { .. }
            | Self::PasscodeWithDirectFile
            | Self::Malformed { .. }
            | Self::IvLength { .. }
            | Self::TagLength { .. }
            | Self::Inflate
            | Self::UnexpectedContent { .. }
            | Self::ShcNumeric { .. }
            | Self::ShcChunks { .. }
            | Self::NotHealthCard { .. }
            | Self::InvalidJwk { .. } => "invalid_input",
            Self::Expired { .. } | Self::CardExpired { .. } => "expired",
            Self::UnsupportedVersion { .. }
            | Self::UnsupportedAlgorithm { .. }
            | Self::UnsupportedEncryption { .. }
            | Self::UnsupportedCompression { .. }
            | Self::CriticalHeader { .. }
            | Self::UnsupportedContentType { .. }
            | Self::ApiAccessNotSupported => "not_supported",
            Self::WrongKey => "wrong_key",
            Self::DecryptionFailed | Self::BadSignature => "tampered",
            Self::PasscodeRequired => "passcode_required",
            Self::PasscodeRejected { .. } => "wrong_passcode",
            Self::LinkInactive => "access_ended",
            Self::RateLimited { .. } => "rate_limited",
            Self::Timeout => "timeout",
            Self::Network { .. } => "unreachable",
            Self::HttpStatus { .. } => "bad_response",
        }
    }
}

/// A header value for an error message: printable ASCII only, at most [`MAX_ECHO`] characters.
pub(crate) fn echo(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_ECHO)
        .collect();
    if s.chars().count() > MAX_ECHO {
        out.push('…');
    }
    out
}

/// This crate's result type.
pub type Result<T, E = ShlError> = core::result::Result<T, E>;
