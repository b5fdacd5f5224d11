//! Shares: owner-signed writes, blobs, chunked uploads, manifest compare-and-swap and epoch
//! deletion (docs/protocol.md "Manifest and epochs" and "Revocation and expiry").
//!
//! Owner writes are authenticated by the share's pseudonymous Ed25519 key over method, path,
//! origin, body hash and a counter (relay-formats.md "Owner write signature"); the counter is
//! compared and stored inside the write transaction after the share row is locked, so a
//! replayed or reordered request is rejected without trusting clocks.

use crate::rejection::{Path, Query};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use carekey_relay_api::{
    BlobStored, CreateShareRequest, CreateShareResponse, EpochDeleted, HEADER_MANIFEST_VERSION,
    MANIFEST_OBJECT_ID, ManifestSwapped, UploadCommit, UploadOpened,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::audit::{self, Kind};
use crate::client::ClientId;
use crate::download::Plan;
use crate::encoding::{self, b64, from_db, hex, parse_id, to_db};
use crate::error::{RelayError, Result};
use crate::fetchlog::{Fetched, Logged};
use crate::owner::{OwnerWrite, ShareRow, authorize_owner};
use crate::quota;
use crate::state::AppState;
use crate::storage::{Tx, Value};
use crate::token::ReadRequest;

/// Most chunks in one upload.
pub const MAX_CHUNKS: u32 = 1 << 16;
/// Seconds a client over its storage quota is told to wait.
const QUOTA_RETRY_SECS: u64 = 3600;

fn add_bytes(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    sh: &ShareRow,
    quota: u64,
    add: u64,
) -> Result<()> {
    let total = sh.bytes_used.saturating_add(add);
    if total > quota {
        return Err(RelayError::TooMany {
            retry_after: QUOTA_RETRY_SECS,
            message: "share storage quota exceeded",
        });
    }
    tx.exec(
        "UPDATE shares SET bytes_used = $2 WHERE share_id = $1",
        &[share_id.into(), to_db("bytes", total)?.into()],
    )?;
    Ok(())
}

fn sub_bytes(tx: &mut dyn Tx, share_id: &[u8; 16], sub: i64) -> Result<()> {
    tx.exec(
        "UPDATE shares SET bytes_used = CASE WHEN bytes_used > $2 THEN bytes_used - $2 ELSE 0 END \
         WHERE share_id = $1",
        &[share_id.into(), sub.into()],
    )?;
    Ok(())
}

/// `POST /v1/shares` (owner write, self-certifying).
pub async fn create(
    State(state): State<AppState>,
    client: ClientId,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreateShareResponse>)> {
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let req: CreateShareRequest = encoding::parse_json(&body)?;
    let owner_key: [u8; 32] = encoding::unb64_fixed("owner_key", &req.owner_key)?;
    ow.verify(&owner_key)?;
    let now = state.clock.now();
    if req.expires_at <= now || req.expires_at - now > state.config.max_share_ttl_secs {
        return Err(RelayError::bad(
            "bad_expiry",
            "expires_at must be in the future and within the relay's share lifetime limit",
        ));
    }
    let expires = to_db("expires_at", req.expires_at)?;
    let counter = to_db("counter", ow.counter())?;
    let share_id: [u8; 16] = encoding::random();
    let (ck, limits) = (state.client_key(&client), state.quota_limits());
    state
        .storage
        .transact(move |tx| {
            quota::charge(tx, &limits, Some(ck), 1, 0)?;
            tx.exec(
                "INSERT INTO shares (share_id, owner_key, counter, expires_at, bytes_used, \
                 manifest_version, audit_seq, audit_head, notice_seq, created_at, client) \
                 VALUES ($1, $2, $3, $4, 0, 0, 0, $5, 0, $6, $7)",
                &[
                    (&share_id).into(),
                    (&owner_key).into(),
                    counter.into(),
                    expires.into(),
                    (&[0u8; 32]).into(),
                    to_db("now", now)?.into(),
                    quota::client_value(&ck),
                ],
            )?;
            audit::append(tx, &share_id, now, Kind::ShareCreated, &[])?;
            Ok(())
        })
        .await?;
    state.metrics.shares_created.inc();
    Ok((
        StatusCode::CREATED,
        Json(CreateShareResponse {
            share_id: hex(&share_id),
        }),
    ))
}

/// `DELETE /v1/shares/{share_id}` (owner write): deletes everything of the share now.
pub async fn delete(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let share_id = parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let now = state.clock.now();
    let until = to_db("time", now.saturating_add(state.config.tombstone_secs))?;
    state
        .storage
        .transact(move |tx| {
            authorize_owner(tx, &share_id, &ow, now)?;
            purge(tx, &share_id, until)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes every row of a share and leaves a tombstone answering 410 until `until`.
pub fn purge(tx: &mut dyn Tx, share_id: &[u8; 16], until: i64) -> Result<()> {
    quota::release_share(tx, share_id)?;
    let p: [Value; 1] = [share_id.into()];
    tx.exec(
        "DELETE FROM upload_chunks WHERE upload_id IN (SELECT upload_id FROM uploads WHERE share_id = $1)",
        &p,
    )?;
    tx.exec(
        "DELETE FROM upload_chunks WHERE upload_id IN (SELECT parts_id FROM blob_parts WHERE share_id = $1)",
        &p,
    )?;
    for table in [
        "uploads",
        "blob_parts",
        "blobs",
        "tokens",
        "audit",
        "notices",
        "shares",
    ] {
        tx.exec(&format!("DELETE FROM {table} WHERE share_id = $1"), &p)?;
    }
    crate::token::purge_groups(tx, share_id)?;
    crate::health_link::store::purge_share(tx, share_id)?;
    tx.exec(
        "INSERT INTO share_tombstones (share_id, until_at) VALUES ($1, $2) \
         ON CONFLICT (share_id) DO UPDATE SET until_at = $2",
        &[share_id.into(), until.into()],
    )?;
    Ok(())
}

/// Query naming an epoch.
#[derive(Debug, Deserialize)]
pub struct EpochQuery {
    /// Epoch the blob belongs to.
    pub epoch: u32,
}

fn store_blob(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    blob_id: &[u8; 16],
    epoch: u32,
    data: Vec<u8>,
) -> Result<(StatusCode, BlobStored)> {
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let size = data.len() as u64;
    if let Some(conflict) = existing_blob(tx, share_id, blob_id, &sha, size)? {
        return conflict;
    }
    tx.exec(
        "INSERT INTO blobs (share_id, blob_id, epoch, size, sha256, data) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            share_id.into(),
            blob_id.into(),
            i64::from(epoch).into(),
            to_db("size", size)?.into(),
            (&sha).into(),
            data.into(),
        ],
    )?;
    Ok((
        StatusCode::CREATED,
        BlobStored {
            size,
            sha256: b64(&sha),
        },
    ))
}

/// `Some(answer)` when a blob with this id exists: 200 for the same bytes (a retry after a
/// lost answer), 409 for different ones.
fn existing_blob(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    blob_id: &[u8; 16],
    sha: &[u8; 32],
    size: u64,
) -> Result<Option<Result<(StatusCode, BlobStored)>>> {
    let existing = tx.query_opt(
        "SELECT sha256 FROM blobs WHERE share_id = $1 AND blob_id = $2",
        &[share_id.into(), blob_id.into()],
    )?;
    let Some(row) = existing else {
        return Ok(None);
    };
    // Same bytes again (a retry after a lost answer) is fine; different bytes are not.
    Ok(Some(if row[0].bytes()? == sha.as_slice() {
        Ok((
            StatusCode::OK,
            BlobStored {
                size,
                sha256: b64(sha),
            },
        ))
    } else {
        Err(RelayError::conflict(
            "blob_exists",
            "a different blob already has this id",
        ))
    }))
}

/// `PUT /v1/shares/{share_id}/blobs/{blob_id}?epoch=E` (owner write, raw bytes).
pub async fn put_blob(
    State(state): State<AppState>,
    Path((share_hex, blob_hex)): Path<(String, String)>,
    Query(q): Query<EpochQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<BlobStored>)> {
    let share_id = parse_id("share id", &share_hex)?;
    let blob_id = parse_id("blob id", &blob_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    if body.len() as u64 > state.config.max_blob_bytes {
        return Err(RelayError::TooLarge("blob larger than the relay's limit"));
    }
    let now = state.clock.now();
    let quota = state.config.share_quota_bytes;
    let limits = state.quota_limits();
    let (status, stored) = state
        .storage
        .transact(move |tx| {
            let sh = authorize_owner(tx, &share_id, &ow, now)?;
            let out = store_blob(tx, &share_id, &blob_id, q.epoch, body.to_vec())?;
            if out.0 == StatusCode::CREATED {
                add_bytes(tx, &share_id, &sh, quota, out.1.size)?;
                quota::charge_share(tx, &limits, &share_id, 1, to_db("size", out.1.size)?)?;
            }
            Ok(out)
        })
        .await?;
    state.metrics.blobs_stored.inc();
    Ok((status, Json(stored)))
}

/// Query opening a chunked upload.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    /// Id the blob gets at commit (32 hex).
    pub blob: String,
    /// Epoch the blob belongs to.
    pub epoch: u32,
}

/// `POST /v1/shares/{share_id}/uploads?blob=B&epoch=E` (owner write): opens a chunked upload.
pub async fn open_upload(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    Query(q): Query<UploadQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<UploadOpened>)> {
    let share_id = parse_id("share id", &share_hex)?;
    let blob_id = parse_id("blob id", &q.blob)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let now = state.clock.now();
    let upload_id: [u8; 16] = encoding::random();
    let limits = state.quota_limits();
    state
        .storage
        .transact(move |tx| {
            authorize_owner(tx, &share_id, &ow, now)?;
            quota::charge_share(tx, &limits, &share_id, 1, 0)?;
            if tx
                .query_opt(
                    "SELECT 1 FROM blobs WHERE share_id = $1 AND blob_id = $2",
                    &[(&share_id).into(), (&blob_id).into()],
                )?
                .is_some()
            {
                return Err(RelayError::conflict(
                    "blob_exists",
                    "a blob already has this id",
                ));
            }
            tx.exec(
                "INSERT INTO uploads (upload_id, share_id, blob_id, epoch, bytes, created_at) \
                 VALUES ($1, $2, $3, $4, 0, $5)",
                &[
                    (&upload_id).into(),
                    (&share_id).into(),
                    (&blob_id).into(),
                    i64::from(q.epoch).into(),
                    to_db("now", now)?.into(),
                ],
            )?;
            Ok(())
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadOpened {
            upload_id: hex(&upload_id),
        }),
    ))
}

fn load_upload(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    upload_id: &[u8; 16],
) -> Result<(Vec<u8>, u32, u64)> {
    let row = tx
        .query_opt(
            "SELECT blob_id, epoch, bytes FROM uploads WHERE upload_id = $1 AND share_id = $2",
            &[upload_id.into(), share_id.into()],
        )?
        .ok_or(RelayError::NotFound("no such upload"))?;
    let epoch =
        u32::try_from(row[1].int()?).map_err(|_| RelayError::Storage("bad epoch".into()))?;
    Ok((row[0].bytes()?.to_vec(), epoch, from_db(row[2].int()?)?))
}

/// `PUT /v1/shares/{share_id}/uploads/{upload_id}/chunks/{n}` (owner write, raw bytes).
pub async fn put_chunk(
    State(state): State<AppState>,
    Path((share_hex, upload_hex, n)): Path<(String, String, u32)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let share_id = parse_id("share id", &share_hex)?;
    let upload_id = parse_id("upload id", &upload_hex)?;
    if n >= MAX_CHUNKS {
        return Err(RelayError::bad("bad_chunk", "chunk index too large"));
    }
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let now = state.clock.now();
    let (quota, max_blob) = (state.config.share_quota_bytes, state.config.max_blob_bytes);
    let limits = state.quota_limits();
    state
        .storage
        .transact(move |tx| {
            let sh = authorize_owner(tx, &share_id, &ow, now)?;
            let (_, _, bytes) = load_upload(tx, &share_id, &upload_id)?;
            let old = tx
                .query_opt(
                    "SELECT LENGTH(data) FROM upload_chunks WHERE upload_id = $1 AND n = $2",
                    &[(&upload_id).into(), i64::from(n).into()],
                )?
                .map(|r| r[0].int())
                .transpose()?
                .map_or(Ok(0), from_db)?;
            let len = body.len() as u64;
            let new_bytes = bytes.saturating_sub(old).saturating_add(len);
            if new_bytes > max_blob {
                return Err(RelayError::TooLarge(
                    "upload larger than the relay's blob limit",
                ));
            }
            if old > 0 {
                sub_bytes(tx, &share_id, to_db("bytes", old)?)?;
            }
            let sh = ShareRow {
                bytes_used: sh.bytes_used.saturating_sub(old),
                ..sh
            };
            add_bytes(tx, &share_id, &sh, quota, len)?;
            let delta = to_db("bytes", len)?.saturating_sub(to_db("bytes", old)?);
            quota::charge_share(tx, &limits, &share_id, 0, delta)?;
            tx.exec(
                "INSERT INTO upload_chunks (upload_id, n, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (upload_id, n) DO UPDATE SET data = $3",
                &[
                    (&upload_id).into(),
                    i64::from(n).into(),
                    body.to_vec().into(),
                ],
            )?;
            tx.exec(
                "UPDATE uploads SET bytes = $2 WHERE upload_id = $1",
                &[(&upload_id).into(), to_db("bytes", new_bytes)?.into()],
            )?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/shares/{share_id}/uploads/{upload_id}/commit` (owner write, JSON
/// [`UploadCommit`]): assembles the chunks into the blob in one transaction; before this
/// commits no part of the blob is visible.
pub async fn commit_upload(
    State(state): State<AppState>,
    Path((share_hex, upload_hex)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<BlobStored>)> {
    let share_id = parse_id("share id", &share_hex)?;
    let upload_id = parse_id("upload id", &upload_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let req: UploadCommit = encoding::parse_json(&body)?;
    let want: [u8; 32] = encoding::unb64_fixed("sha256", &req.sha256)?;
    let now = state.clock.now();
    let (status, stored) = state
        .storage
        .transact(move |tx| {
            authorize_owner(tx, &share_id, &ow, now)?;
            let (blob_id, epoch, bytes) = load_upload(tx, &share_id, &upload_id)?;
            let blob_id: [u8; 16] = blob_id
                .try_into()
                .map_err(|_| RelayError::Storage("bad blob id".into()))?;
            // Hash the parts one at a time (bounded memory); the bytes stay where they are.
            let ns = tx.query(
                "SELECT n FROM upload_chunks WHERE upload_id = $1 ORDER BY n",
                &[(&upload_id).into()],
            )?;
            if ns.len() != req.chunks as usize {
                return Err(RelayError::bad(
                    "chunks_missing",
                    "chunk count does not match the uploaded chunks",
                ));
            }
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            for (i, r) in ns.iter().enumerate() {
                if r[0].int()? != i as i64 {
                    return Err(RelayError::bad(
                        "chunks_missing",
                        "chunks are not numbered 0..chunks",
                    ));
                }
                let part = tx
                    .query_opt(
                        "SELECT data FROM upload_chunks WHERE upload_id = $1 AND n = $2",
                        &[(&upload_id).into(), r[0].clone()],
                    )?
                    .ok_or_else(|| RelayError::Storage("upload chunk vanished".into()))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| RelayError::Storage("short row".into()))?
                    .into_bytes()?;
                hasher.update(&part);
                size += part.len() as u64;
            }
            let got: [u8; 32] = hasher.finalize().into();
            if got != want {
                return Err(RelayError::bad(
                    "hash_mismatch",
                    "SHA-256 of the chunks does not match",
                ));
            }
            if size != bytes {
                return Err(RelayError::Storage("upload size does not match its chunks".into()));
            }
            if existing_blob(tx, &share_id, &blob_id, &got, size)?.is_some() {
                return Err(RelayError::conflict(
                    "blob_exists",
                    "a blob already has this id",
                ));
            }
            // The blob row holds no bytes; its parts stay in `upload_chunks` under the upload
            // id and `blob_parts` points at them (no copy, no rewrite of the parts).
            tx.exec(
                "INSERT INTO blobs (share_id, blob_id, epoch, size, sha256, data) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    (&share_id).into(),
                    (&blob_id).into(),
                    i64::from(epoch).into(),
                    to_db("size", size)?.into(),
                    (&got).into(),
                    Vec::new().into(),
                ],
            )?;
            tx.exec(
                "INSERT INTO blob_parts (share_id, blob_id, epoch, parts_id) VALUES ($1, $2, $3, $4)",
                &[
                    (&share_id).into(),
                    (&blob_id).into(),
                    i64::from(epoch).into(),
                    (&upload_id).into(),
                ],
            )?;
            let out = (
                StatusCode::CREATED,
                BlobStored {
                    size,
                    sha256: b64(&got),
                },
            );
            tx.exec(
                "DELETE FROM uploads WHERE upload_id = $1",
                &[(&upload_id).into()],
            )?;
            Ok(out)
        })
        .await?;
    state.metrics.blobs_stored.inc();
    Ok((status, Json(stored)))
}

/// Query of a manifest swap.
#[derive(Debug, Deserialize)]
pub struct SwapQuery {
    /// New version (must be greater than `prev`).
    pub version: u64,
    /// Version the owner expects to replace (0 when there is none yet).
    pub prev: u64,
}

/// `PUT /v1/shares/{share_id}/manifest?version=V&prev=P` (owner write, raw bytes):
/// compare-and-swap on the manifest version.
pub async fn put_manifest(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    Query(q): Query<SwapQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ManifestSwapped>> {
    let share_id = parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    if q.version <= q.prev {
        return Err(RelayError::bad(
            "bad_version",
            "manifest version must go up",
        ));
    }
    let version = to_db("version", q.version)?;
    let now = state.clock.now();
    let limits = state.quota_limits();
    state
        .storage
        .transact(move |tx| {
            let sh = authorize_owner(tx, &share_id, &ow, now)?;
            if sh.manifest_version != q.prev {
                return Err(RelayError::conflict(
                    "version_mismatch",
                    "the current manifest version is not the expected previous version",
                ));
            }
            let old = tx
                .query_opt(
                    "SELECT LENGTH(manifest) FROM shares WHERE share_id = $1",
                    &[(&share_id).into()],
                )?
                .and_then(|r| r.into_iter().next())
                .filter(|v| !v.is_null())
                .map_or(Ok(0), |v| v.int())?;
            let delta = i64::try_from(body.len())
                .unwrap_or(i64::MAX)
                .saturating_sub(old);
            quota::charge_share(tx, &limits, &share_id, 0, delta)?;
            tx.exec(
                "UPDATE shares SET manifest = $2, manifest_version = $3 WHERE share_id = $1",
                &[(&share_id).into(), body.to_vec().into(), version.into()],
            )?;
            audit::append(
                tx,
                &share_id,
                now,
                Kind::ManifestSwapped,
                &q.version.to_be_bytes(),
            )?;
            Ok(())
        })
        .await?;
    Ok(Json(ManifestSwapped { version: q.version }))
}

/// `GET /v1/shares/{share_id}/manifest` (read token + fetch receipt).
///
/// Like blobs: checked and read in a read-only transaction, then logged through the fetch
/// group commit. If the manifest was swapped between the read and the append (nothing was
/// logged), the read is redone in one write transaction that reads and logs together.
pub async fn get_manifest(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let share_id = parse_id("share id", &share_hex)?;
    let read = ReadRequest::from_headers(&headers, state.config.receipt_max_skew_secs)?;
    let now = state.clock.now();
    let retry = read.clone();
    let (read, (version, plan)) = state
        .storage
        .read(move |tx| {
            read.authorize(tx, &share_id, MANIFEST_OBJECT_ID, now)?;
            let vm = plan_manifest(tx, &share_id)?;
            Ok((read, vm))
        })
        .await?;
    let logged = state
        .fetch_log
        .append(read.into_entry(share_id, Fetched::Manifest(version), now))
        .await?;
    let (version, plan) = match logged {
        Logged::Committed => (version, plan),
        Logged::Stale => {
            state
                .storage
                .transact(move |tx| {
                    retry.authorize(tx, &share_id, MANIFEST_OBJECT_ID, now)?;
                    let vm = plan_manifest(tx, &share_id)?;
                    retry.log_fetch(tx, &share_id, now)?;
                    Ok(vm)
                })
                .await?
        }
    };
    state.metrics.fetches.inc();
    // Streamed like a blob (docs/relay.md "Streaming"): a manifest of many MiB costs a slow
    // reader two pieces of memory, not the whole manifest.
    let mut resp = plan.respond(std::sync::Arc::clone(&state.storage));
    resp.headers_mut().insert(
        HEADER_MANIFEST_VERSION,
        axum::http::HeaderValue::from(version),
    );
    Ok(resp)
}

/// Plans the download of the current manifest of a share whose reader was authorized.
fn plan_manifest(tx: &mut dyn Tx, share_id: &[u8; 16]) -> Result<(u64, Plan)> {
    let mut plan = Plan::new();
    let version = plan.push_manifest(tx, share_id)?;
    Ok((version, plan))
}

/// `GET /v1/shares/{share_id}/blobs/{blob_id}` (read token + fetch receipt).
///
/// The token and receipt are checked and the blob planned in a read-only transaction (reads
/// run in parallel); the blob is answered only after the fetch's audit entry was committed by
/// the group commit ([`crate::fetchlog`]), which re-checks token and blob under the share
/// lock, and streams from storage piece by piece ([`crate::download`]).
pub async fn get_blob(
    State(state): State<AppState>,
    Path((share_hex, blob_hex)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let share_id = parse_id("share id", &share_hex)?;
    let blob_id = parse_id("blob id", &blob_hex)?;
    let read = ReadRequest::from_headers(&headers, state.config.receipt_max_skew_secs)?;
    let now = state.clock.now();
    let (read, plan) = state
        .storage
        .read(move |tx| {
            read.authorize(tx, &share_id, &blob_hex, now)?;
            let mut plan = Plan::new();
            plan.push_blob(tx, &share_id, &blob_id, false)?;
            Ok((read, plan))
        })
        .await?;
    match state
        .fetch_log
        .append(read.into_entry(share_id, Fetched::Blob(blob_id), now))
        .await?
    {
        Logged::Committed => {}
        // Only manifests can be stale (blob ids never change their bytes).
        Logged::Stale => return Err(RelayError::Storage("blob fetch reported stale".into())),
    }
    state.metrics.fetches.inc();
    Ok(plan.respond(std::sync::Arc::clone(&state.storage)))
}

/// `DELETE /v1/shares/{share_id}/epochs/{epoch}` (owner write): bulk delete of an old epoch.
pub async fn delete_epoch(
    State(state): State<AppState>,
    Path((share_hex, epoch)): Path<(String, u32)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EpochDeleted>> {
    let share_id = parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let now = state.clock.now();
    let deleted = state
        .storage
        .transact(move |tx| {
            authorize_owner(tx, &share_id, &ow, now)?;
            delete_one_epoch(tx, &share_id, epoch, now)
        })
        .await?;
    Ok(Json(EpochDeleted {
        deleted_blobs: deleted,
    }))
}

/// Query of a range deletion of epochs.
#[derive(Debug, Deserialize)]
pub struct BelowQuery {
    /// Every epoch with a number below this one goes.
    pub below: u32,
}

/// `DELETE /v1/shares/{share_id}/epochs?below=N` (owner write): deletes every epoch below `N`
/// that still holds anything (blobs, pending uploads, group rows), in one transaction, one
/// "epoch deleted" audit entry each. A revoke deletes everything below its new epoch this
/// way, so an earlier revoke interrupted before its own deletion leaves nothing behind that
/// the revoked reader's old keys open (docs/protocol.md "Revocation and expiry").
pub async fn delete_epochs_below(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    Query(q): Query<BelowQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EpochDeleted>> {
    let share_id = parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let now = state.clock.now();
    let deleted = state
        .storage
        .transact(move |tx| {
            authorize_owner(tx, &share_id, &ow, now)?;
            let p: [Value; 2] = [(&share_id).into(), i64::from(q.below).into()];
            let rows = tx.query(
                "SELECT epoch FROM blobs WHERE share_id = $1 AND epoch < $2 \
                 UNION SELECT epoch FROM uploads WHERE share_id = $1 AND epoch < $2 \
                 UNION SELECT epoch FROM blob_groups WHERE share_id = $1 AND epoch < $2 \
                 ORDER BY 1",
                &p,
            )?;
            let mut deleted = 0u64;
            for r in rows {
                let epoch = u32::try_from(r[0].int()?)
                    .map_err(|_| RelayError::Storage("bad epoch".into()))?;
                deleted = deleted.saturating_add(delete_one_epoch(tx, &share_id, epoch, now)?);
            }
            Ok(deleted)
        })
        .await?;
    Ok(Json(EpochDeleted {
        deleted_blobs: deleted,
    }))
}

/// Deletes one epoch's blobs, chunk parts, pending uploads and group rows, frees their bytes
/// and logs it; returns how many blobs went. The caller holds the owner's authorization.
fn delete_one_epoch(tx: &mut dyn Tx, share_id: &[u8; 16], epoch: u32, now: u64) -> Result<u64> {
    let p: [Value; 2] = [share_id.into(), i64::from(epoch).into()];
    let freed = tx
        .query_opt(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE share_id = $1 AND epoch = $2",
            &p,
        )?
        .map(|r| r[0].int())
        .transpose()?
        .unwrap_or(0);
    tx.exec(
        "DELETE FROM upload_chunks WHERE upload_id IN \
         (SELECT parts_id FROM blob_parts WHERE share_id = $1 AND epoch = $2)",
        &p,
    )?;
    tx.exec(
        "DELETE FROM blob_parts WHERE share_id = $1 AND epoch = $2",
        &p,
    )?;
    let n = tx.exec("DELETE FROM blobs WHERE share_id = $1 AND epoch = $2", &p)?;
    crate::token::forget_epoch_groups(tx, share_id, epoch)?;
    let pending = tx.query(
        "SELECT upload_id, bytes FROM uploads WHERE share_id = $1 AND epoch = $2",
        &p,
    )?;
    let mut freed = freed;
    let objects = i64::try_from(n)
        .unwrap_or(i64::MAX)
        .saturating_add(pending.len() as i64);
    for r in pending {
        tx.exec(
            "DELETE FROM upload_chunks WHERE upload_id = $1",
            &[r[0].clone()],
        )?;
        tx.exec("DELETE FROM uploads WHERE upload_id = $1", &[r[0].clone()])?;
        freed = freed.saturating_add(r[1].int()?);
    }
    sub_bytes(tx, share_id, freed)?;
    quota::charge_share(tx, &quota::QuotaLimits::NONE, share_id, -objects, -freed)?;
    audit::append(tx, share_id, now, Kind::EpochDeleted, &epoch.to_be_bytes())?;
    Ok(n)
}
