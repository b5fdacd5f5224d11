//! Reading the relay's answers under byte caps (docs/threat-model.md "Hostile relay";
//! docs/relay.md "Streaming"): the relay is not trusted, so no answer is read whole before its
//! size is checked. Each answer has a cap from the protocol (a blob: the size the signed
//! manifest states; a page of mailbox messages, notices or audit entries: what the relay's
//! page limits allow; a small JSON answer or an error body: a few KiB), and the body is read
//! chunk by chunk against it: one byte more and the read stops with
//! [`ClientError::TooLarge`], having held at most the cap plus one chunk.

use carekey_relay_api as api;

use crate::error::{ClientError, Result};

/// An error answer's body (`{error, message}`).
pub const ERROR_BODY_MAX: u64 = 4 << 10;
/// A small JSON answer (ids, tokens, the relay's key, a created link).
pub const SMALL_JSON_MAX: u64 = 64 << 10;
/// Largest message or pairing reply the relay stores (its `MAX_MESSAGE_BYTES`).
pub const MESSAGE_MAX: u64 = 256 << 10;
/// A JSON page of `items` base64 bodies adding up to at most `bytes`: each body's base64 is
/// at most 4 characters more than 4/3 of it, plus room for
/// a JSON object's keys (128 bytes) per item.
const fn b64_page(bytes: usize, items: usize) -> u64 {
    (bytes as u64).div_ceil(3) * 4 + items as u64 * (128 + 4) + 1024
}
/// A page of mailbox messages: the relay cuts pages at `MAILBOX_PAGE_ITEMS` messages and
/// `MAILBOX_PAGE_BYTES` of bodies (≈ 1.4 MB of JSON, not the 70 MB 200 full messages made).
pub const MAILBOX_PAGE_MAX: u64 = b64_page(api::MAILBOX_PAGE_BYTES, api::MAILBOX_PAGE_ITEMS);
/// A page of delegation notices, cut by the relay the same way (`NOTICE_PAGE_*`).
pub const NOTICE_PAGE_MAX: u64 = b64_page(api::NOTICE_PAGE_BYTES, api::NOTICE_PAGE_ITEMS);
/// A page of the audit log: the relay cuts pages at 1 MiB of entry bodies and 1,000 entries;
/// with the fixed fields, hashes and base64 that is well under 4 MiB.
pub const AUDIT_PAGE_MAX: u64 = 4 << 20;
/// A sealed manifest (the relay's body limit is `--max-body-bytes`, 8 MiB by default).
pub const MANIFEST_MAX: u64 = 32 << 20;
/// A blob read without a stated size (the relay's `--max-blob-bytes` default is 64 MiB).
pub const BLOB_MAX: u64 = 64 << 20;
/// A backup (the relay's `--max-backup-bytes` default is 64 MiB).
pub const BACKUP_MAX: u64 = 64 << 20;
/// Most bytes reserved up front for a body whatever its declared length (the rest grows as
/// bytes actually arrive).
const PREALLOC_MAX: u64 = 1 << 20;

/// Reads `resp`'s body, refusing more than `max` bytes: a declared `Content-Length` over
/// `max` is refused before reading, and the bytes are counted as they arrive.
pub async fn read_capped(
    mut resp: reqwest::Response,
    max: u64,
    what: &'static str,
) -> Result<Vec<u8>> {
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > max) {
        return Err(ClientError::TooLarge { what });
    }
    let reserve = declared.unwrap_or(0).min(max).min(PREALLOC_MAX);
    let mut out = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            if e.is_timeout() {
                ClientError::Timeout
            } else {
                ClientError::BadResponse { what }
            }
        })?;
        let Some(chunk) = chunk else {
            return Ok(out);
        };
        if (out.len() as u64).saturating_add(chunk.len() as u64) > max {
            return Err(ClientError::TooLarge { what });
        }
        out.extend_from_slice(&chunk);
    }
}

/// Reads and parses a JSON answer of at most `max` bytes.
pub async fn json_capped<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    max: u64,
    what: &'static str,
) -> Result<T> {
    let body = read_capped(resp, max, what).await?;
    serde_json::from_slice(&body).map_err(|_| ClientError::BadResponse { what })
}
