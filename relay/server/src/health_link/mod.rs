//! SMART Health Links published through the relay (issue 15; docs/relay.md "SMART Health
//! Links"; HL7 SMART Health Cards and Links IG STU1, "SMART Health Links", cited as SHL).
//!
//! The patient's device encrypts each file as a JWE under a fresh link key (SHL "Encrypting
//! and Decrypting Files") and uploads the ciphertext with an Argon2id passcode hash in an
//! owner-signed write attached to one of its shares ([`create`]). The relay answers the
//! public manifest request ([`manifest`]) at `/shl/{link_id}`, a 256-bit id (SHL "Establish a
//! SMART Health Link Manifest URL"), checks the passcode, counts failed attempts (the link
//! dies after the allowed number), enforces `exp`, and appends every request, with the
//! viewer's self-asserted `recipient`, to that share's signed audit chain, so the patient's
//! access log shows "`<recipient>` downloaded the link". The relay never holds the key.
//!
//! - [`wire`]: what the bytes must look like (JWE form, passcode hash, audit body).
//! - [`store`]: the rows (migration 4).
//! - Here: the handlers and the CORS answer of the public routes (SHL viewers are web pages).

pub mod store;
pub mod wire;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carekey_relay_api::{
    self as api, CreateShlRequest, CreateShlResponse, ShlManifest, ShlManifestFile,
    ShlManifestRequest, ShlPasscodeRejected,
};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::audit::{self, Kind};
use crate::download::Plan;
use crate::encoding::{self, b64, from_db, parse_id};
use crate::error::{JsonError, RelayError, Result};
use crate::owner::{self, OwnerWrite};
use crate::rejection::Path;
use crate::state::AppState;
use store::NewLink;
use wire::Outcome;

/// Path prefix of the public routes (manifest and `location` files).
pub const PUBLIC_PREFIX: &str = "/shl/";
/// Largest manifest request body: `recipient` and `passcode` of at most 256 bytes each.
pub const MAX_MANIFEST_REQUEST_BYTES: usize = 4 << 10;
/// Seconds a `location` URL works (SHL "SMART Health Link Manifest Request": locations are
/// short-lived, at most one hour).
pub const TICKET_TTL_SECS: u64 = 600;
/// Files up to this size are embedded when the viewer states no `embeddedLengthMax`.
pub const DEFAULT_EMBEDDED_MAX: u64 = 256 << 10;
/// Passcode checks (Argon2id, 19 MiB each) running at once in one instance; more are
/// answered 429 at once, so a flood of guesses cannot take the relay's memory and CPU.
pub const MAX_PASSCODE_CHECKS: usize = 4;
/// Seconds a viewer refused a passcode-check slot is told to wait.
const PASSCODE_BUSY_RETRY_SECS: u64 = 1;
/// The answer for a link that does not exist, expired, was deleted, or died of failed
/// attempts: SHL's "no longer active" is a 404, and the four are not told apart.
const INACTIVE: &str = "no such link, or it is no longer active";

static PASSCODE_CHECKS: Semaphore = Semaphore::const_new(MAX_PASSCODE_CHECKS);

fn inactive() -> RelayError {
    RelayError::NotFound(INACTIVE)
}

/// `POST /v1/shares/{share_id}/links` (owner write): stores the link's JWE files and passcode
/// hash, logs kind `ShlPublished` (body: the link hash), answers the link id and manifest URL.
pub async fn create(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreateShlResponse>)> {
    let share_id = parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let req: CreateShlRequest = encoding::parse_json(&body)?;
    if req.files.is_empty() || req.files.len() > api::MAX_SHL_FILES {
        return Err(RelayError::bad("bad_files", "a link holds 1 to 64 files"));
    }
    // Bounded before any JWE is looked at (relay-api MAX_SHL_FILE_BYTES, MAX_SHL_LINK_BYTES).
    if req
        .files
        .iter()
        .any(|f| f.jwe.len() > api::MAX_SHL_FILE_BYTES)
    {
        return Err(RelayError::bad(
            "file_too_large",
            "a link file is over 4 MiB",
        ));
    }
    if req.files.iter().map(|f| f.jwe.len()).sum::<usize>() > api::MAX_SHL_LINK_BYTES {
        return Err(RelayError::bad(
            "link_too_large",
            "a link's files are over 7 MiB together",
        ));
    }
    let mut files = Vec::with_capacity(req.files.len());
    for f in req.files {
        if !api::SHL_CONTENT_TYPES.contains(&f.content_type.as_str()) {
            return Err(RelayError::bad(
                "bad_content_type",
                "contentType must be application/fhir+json or application/smart-health-card",
            ));
        }
        wire::check_jwe(&f.jwe)?;
        files.push((f.content_type, f.jwe));
    }
    if req.max_attempts == 0 || req.max_attempts > api::MAX_SHL_ATTEMPTS {
        return Err(RelayError::bad(
            "bad_attempts",
            "max_attempts must be 1 to 100",
        ));
    }
    let (salt, hash) = match &req.passcode {
        Some(p) => (
            encoding::unb64_fixed::<{ api::SHL_PASSCODE_SALT_LEN }>("passcode salt", &p.salt)?
                .to_vec(),
            encoding::unb64_fixed::<{ api::SHL_PASSCODE_HASH_LEN }>("passcode hash", &p.hash)?
                .to_vec(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let now = state.clock.now();
    let expires_at = req.expires_at;
    if expires_at <= now {
        return Err(RelayError::bad(
            "bad_expiry",
            "expires_at must be in the future",
        ));
    }
    let link_id: [u8; api::SHL_LINK_ID_LEN] = encoding::random();
    let link_hash = wire::link_hash(&link_id);
    let limits = state.quota_limits();
    let attempts = req.max_attempts;
    state
        .storage
        .transact(move |tx| {
            owner::authorize_owner(tx, &share_id, &ow, now)?;
            let share_exp = tx
                .query_opt(
                    "SELECT expires_at FROM shares WHERE share_id = $1",
                    &[(&share_id).into()],
                )?
                .ok_or(RelayError::NotFound("no such share"))?;
            if expires_at > from_db(share_exp[0].int()?)? {
                return Err(RelayError::bad(
                    "bad_expiry",
                    "a link cannot outlive its share",
                ));
            }
            store::insert(
                tx,
                &limits,
                &NewLink {
                    link_hash,
                    share_id,
                    files: &files,
                    salt: &salt,
                    hash: &hash,
                    attempts,
                    expires_at,
                    now,
                },
            )?;
            audit::append(tx, &share_id, now, Kind::ShlPublished, &link_hash)?;
            Ok(())
        })
        .await?;
    let id = b64(&link_id);
    Ok((
        StatusCode::CREATED,
        Json(CreateShlResponse {
            url: format!("{}{PUBLIC_PREFIX}{id}", state.config.origin),
            link_id: id,
        }),
    ))
}

/// `DELETE /v1/shares/{share_id}/links/{link_hash}` (owner write): the link answers 404 from
/// now on (copies already downloaded stay readable by whoever holds the key). Logs kind
/// `ShlDeleted` (body: the link hash).
pub async fn delete(
    State(state): State<AppState>,
    Path((share_hex, hash_hex)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let share_id = parse_id("share id", &share_hex)?;
    let link_hash: [u8; 32] = encoding::parse_hex("link hash", &hash_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let now = state.clock.now();
    state
        .storage
        .transact(move |tx| {
            owner::authorize_owner(tx, &share_id, &ow, now)?;
            if !store::delete(tx, &share_id, &link_hash)? {
                return Err(RelayError::NotFound("no such link"));
            }
            audit::append(tx, &share_id, now, Kind::ShlDeleted, &link_hash)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the write transaction of a manifest request decided.
enum Answer {
    Served(Vec<ShlManifestFile>),
    Rejected(u32),
}

/// `POST /shl/{link_id}`: the SHL manifest request (SHL "SMART Health Link Manifest
/// Request"): `{recipient, passcode?, embeddedLengthMax?}` → `{files: [{contentType,
/// embedded | location}]}`; 401 `{remainingAttempts}` on a wrong or missing passcode; 404
/// once the link is inactive. Every answered request (served or wrong passcode) is in the
/// share's audit chain with its recipient.
pub async fn manifest(
    State(state): State<AppState>,
    Path(link_b64): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let link_id = wire::parse_b64_id::<{ api::SHL_LINK_ID_LEN }>(&link_b64).ok_or_else(inactive)?;
    let req: ShlManifestRequest = encoding::parse_json(&body)?;
    if req.recipient.trim().is_empty() || req.recipient.chars().count() > api::MAX_SHL_REQUEST_FIELD
    {
        return Err(RelayError::bad(
            "bad_recipient",
            "recipient is required, at most 256 characters",
        ));
    }
    if req
        .passcode
        .as_ref()
        .is_some_and(|p| p.chars().count() > api::MAX_SHL_REQUEST_FIELD)
    {
        return Err(RelayError::bad(
            "bad_passcode",
            "passcode is at most 256 characters",
        ));
    }
    let link_hash = wire::link_hash(&link_id);
    let now = state.clock.now();
    let row = state
        .storage
        .read(move |tx| store::load(tx, &link_hash))
        .await?
        .filter(|r| r.live(now))
        .ok_or_else(inactive)?;
    let passcode_ok = if row.has_passcode() {
        let Some(offered) = req.passcode.clone() else {
            // Not an attempt: a viewer asks first, then prompts (SHL: "missing or invalid").
            return Ok(passcode_rejected(
                "passcode_required",
                "this link needs its passcode",
                row.attempts_left,
            ));
        };
        let _permit = PASSCODE_CHECKS
            .try_acquire()
            .map_err(|_| RelayError::TooMany {
                retry_after: PASSCODE_BUSY_RETRY_SECS,
                message: "too many passcode checks at once",
            })?;
        let (salt, hash) = (row.salt.clone(), row.hash.clone());
        tokio::task::spawn_blocking(move || {
            let offered = zeroize::Zeroizing::new(offered);
            wire::passcode_matches(offered.as_bytes(), &salt, &hash)
        })
        .await
        .map_err(|_| RelayError::Storage("passcode check task failed".into()))??
    } else {
        true
    };
    let origin = state.config.origin.clone();
    let embed_max = req.embedded_length_max.unwrap_or(DEFAULT_EMBEDDED_MAX);
    let recipient = req.recipient;
    let share_id = row.share_id;
    let answer = state
        .storage
        .transact(move |tx| {
            owner::lock_share(tx, &share_id, now).map_err(|e| match e {
                RelayError::Gone(_) | RelayError::NotFound(_) => inactive(),
                other => other,
            })?;
            // Re-read under the share lock: concurrent guesses are counted one by one.
            let cur = store::load(tx, &link_hash)?
                .filter(|r| r.live(now))
                .ok_or_else(inactive)?;
            if !passcode_ok {
                let left = store::count_failure(tx, &share_id, &link_hash, cur.attempts_left)?;
                let body = wire::audit_body(Outcome::WrongPasscode, &recipient);
                audit::append(tx, &share_id, now, Kind::ShlManifestRequested, &body)?;
                return Ok(Answer::Rejected(left));
            }
            let mut out = Vec::new();
            for (idx, content_type, jwe) in store::files(tx, &link_hash)? {
                if jwe.len() as u64 <= embed_max {
                    let text = String::from_utf8(jwe)
                        .map_err(|_| RelayError::Storage("stored JWE is not text".into()))?;
                    out.push(ShlManifestFile {
                        content_type,
                        embedded: Some(text),
                        location: None,
                    });
                } else {
                    let ticket: [u8; api::SHL_TICKET_LEN] = encoding::random();
                    let until = now.saturating_add(TICKET_TTL_SECS).min(cur.expires_at);
                    store::insert_ticket(tx, &wire::ticket_hash(&ticket), &link_hash, idx, until)?;
                    out.push(ShlManifestFile {
                        content_type,
                        embedded: None,
                        location: Some(format!("{origin}{PUBLIC_PREFIX}files/{}", b64(&ticket))),
                    });
                }
            }
            let body = wire::audit_body(Outcome::Served, &recipient);
            audit::append(tx, &share_id, now, Kind::ShlManifestRequested, &body)?;
            Ok(Answer::Served(out))
        })
        .await?;
    Ok(match answer {
        Answer::Served(files) => Json(ShlManifest { files }).into_response(),
        Answer::Rejected(0) => passcode_rejected(
            "wrong_passcode",
            "wrong passcode; no attempts are left and the link is no longer active",
            0,
        ),
        Answer::Rejected(left) => passcode_rejected("wrong_passcode", "wrong passcode", left),
    })
}

/// The SHL 401: the relay's `{error, message}` plus `remainingAttempts`.
fn passcode_rejected(code: &str, message: &str, remaining: u32) -> Response {
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(ShlPasscodeRejected {
            error: code.to_owned(),
            message: message.to_owned(),
            remaining_attempts: remaining,
        }),
    )
        .into_response();
    resp.extensions_mut().insert(JsonError);
    resp
}

/// `GET /shl/files/{ticket}`: a `location` file, `application/jose` (SHL "SMART Health Link
/// Manifest Request": the location answers the JWE itself). 404 once the ticket or its link
/// is no longer live.
pub async fn file(
    State(state): State<AppState>,
    Path(ticket_b64): Path<String>,
) -> Result<Response> {
    let ticket = wire::parse_b64_id::<{ api::SHL_TICKET_LEN }>(&ticket_b64).ok_or_else(inactive)?;
    let th = wire::ticket_hash(&ticket);
    let now = state.clock.now();
    // Streamed from storage like a blob (docs/relay.md "Streaming"): a slow viewer holds two
    // pieces of memory, not the whole file. A link deleted meanwhile cuts the body short.
    let plan = state
        .storage
        .read(move |tx| {
            let Some((link_hash, idx, size)) = store::file_by_ticket(tx, &th, now)? else {
                return Ok(None);
            };
            let mut plan = Plan::new();
            plan.push_shl_file(tx, &link_hash, idx, size)?;
            Ok(Some(plan))
        })
        .await?
        .ok_or_else(inactive)?;
    Ok(plan.respond_as("application/jose", Arc::clone(&state.storage)))
}

/// CORS for the public routes only: SHL viewers are web pages on other origins, which call
/// the manifest `POST` (JSON, so preflighted) and the `location` `GET`. No credentials are
/// involved (the link is the capability), so `*` is right; every other route stays
/// same-origin. Preflights are answered here, before routing.
pub async fn cors(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with(PUBLIC_PREFIX) {
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return resp;
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}
