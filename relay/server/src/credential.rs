//! Bearer credentials (docs/relay.md "HTTP API", reader and mailbox; relay-formats.md "Read
//! token hash"): the stored hash of a read or mailbox token, the token states, the
//! constant-time comparison and the `Authorization: Bearer` parser.
//!
//! Below the routes: tokens, mailboxes, backups, quotas and the fetch log build on it.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::encoding;
use crate::error::{RelayError, Result};

/// Domain label of the read-token hash (also used for mailbox capability tokens).
pub const READ_TOKEN_LABEL: &[u8] = b"carekey/v1/read-token";
/// Token status: usable.
pub const STATUS_ACTIVE: i64 = 0;
/// Token status: revoked by the owner (or with an ancestor).
pub const STATUS_REVOKED: i64 = 1;
/// Token status: past its TTL.
pub const STATUS_EXPIRED: i64 = 2;

/// `SHA-256("carekey/v1/read-token" 0x00 || token)`.
pub fn token_hash(token: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(READ_TOKEN_LABEL);
    h.update([0u8]);
    h.update(token);
    h.finalize().into()
}

/// Constant-time equality of two secret-derived byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Extracts and hashes `Authorization: Bearer <base64url(32 bytes)>`.
pub fn bearer_hash(headers: &HeaderMap) -> Result<[u8; 32]> {
    let bad = || RelayError::BadCredential {
        code: "bad_token",
        message: "Authorization must be 'Bearer <base64url of 32 bytes>'",
    };
    let v = headers
        .get(header::AUTHORIZATION)
        .ok_or(RelayError::Unauthorized("a bearer token is required"))?
        .to_str()
        .map_err(|_| bad())?;
    let t = v.strip_prefix("Bearer ").ok_or_else(bad)?;
    let token: [u8; 32] = encoding::unb64_fixed("bearer token", t.trim()).map_err(|_| bad())?;
    Ok(token_hash(&token))
}
