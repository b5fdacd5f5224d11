//! Backup slots (docs/vault.md "Recovery phrase and backup blob").
//!
//! A backup slot holds the newest ciphertext backup of one device under a 16-byte id the vault
//! derives from the recovery phrase (`backup_id(root, generation)`). The slot is bound at its
//! first write to an Ed25519 owner key (`backup_owner_key(generation)`, also derived from the
//! phrase), and every later request is an owner request exactly like share owner writes: method,
//! path with query, origin, body hash and a counter strictly greater than the slot's last one,
//! checked and stored inside the write transaction. The backup version (`?version=V`, covered by
//! the signature) must be strictly greater than the stored one, so a stale backup never replaces
//! a newer one. A slot not written for `--backup-ttl-secs` (default 400 days) has its bytes dropped
//! by the sweeper like an owner's delete (key, counter and version kept, so an old write cannot
//! be replayed into it); the owner may delete them any time.

use crate::rejection::{Path, Query};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use carekey_relay_api::{BackupStored, HEADER_BACKUP_VERSION, HEADER_OWNER_KEY};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::client::ClientId;
use crate::credential::ct_eq;
use crate::download::Plan;
use crate::encoding::{self, b64, from_db, parse_id, to_db};
use crate::error::{RelayError, Result};
use crate::owner::OwnerWrite;
use crate::quota::{self, ClientKey, QuotaLimits};
use crate::state::AppState;
use crate::storage::Tx;

/// Query of a backup write.
#[derive(Debug, Deserialize)]
pub struct BackupQuery {
    /// Backup version; must be greater than the stored one.
    pub version: u64,
}

/// The locked slot row.
struct Slot {
    owner_key: Vec<u8>,
    counter: u64,
    version: u64,
    deleted: bool,
    /// Who the slot is charged to (its creator; `None` before accounting).
    client: Option<ClientKey>,
    size: i64,
}

fn lock_slot(tx: &mut dyn Tx, backup_id: &[u8; 16]) -> Result<Option<Slot>> {
    let sql = format!(
        "SELECT owner_key, counter, version, deleted, client, size FROM backups WHERE backup_id = $1{}",
        tx.lock_clause()
    );
    tx.query_opt(&sql, &[backup_id.into()])?
        .map(|r| {
            Ok(Slot {
                owner_key: r[0].bytes()?.to_vec(),
                counter: from_db(r[1].int()?)?,
                version: from_db(r[2].int()?)?,
                deleted: r[3].int()? != 0,
                client: quota::client_of(r.get(4))?,
                size: r[5].int()?,
            })
        })
        .transpose()
}

/// Verifies the owner signature under the slot's key and moves its counter forward.
fn authorize(tx: &mut dyn Tx, backup_id: &[u8; 16], slot: &Slot, ow: &OwnerWrite) -> Result<()> {
    ow.verify(&slot.owner_key)?;
    if ow.counter() <= slot.counter {
        return Err(RelayError::conflict(
            "counter_replayed",
            "Carekey-Counter must be greater than the backup slot's last accepted counter (replayed or reordered request)",
        ));
    }
    tx.exec(
        "UPDATE backups SET counter = $2 WHERE backup_id = $1",
        &[backup_id.into(), to_db("counter", ow.counter())?.into()],
    )?;
    Ok(())
}

/// Reads the optional `Carekey-Owner-Key` header.
fn owner_key_header(headers: &HeaderMap) -> Result<Option<[u8; 32]>> {
    headers
        .get(HEADER_OWNER_KEY)
        .map(|v| {
            let s = v
                .to_str()
                .map_err(|_| RelayError::bad("bad_key", "Carekey-Owner-Key is not ASCII"))?;
            encoding::unb64_fixed::<32>("Carekey-Owner-Key", s)
        })
        .transpose()
}

/// `PUT /v1/backups/{backup_id}?version=V` (owner write, raw ciphertext body). Creates the slot
/// on the first write (binding `Carekey-Owner-Key`), replaces the blob on later ones.
#[allow(clippy::too_many_arguments)] // axum extractors
pub async fn put(
    State(state): State<AppState>,
    Path(id_hex): Path<String>,
    Query(q): Query<BackupQuery>,
    client: ClientId,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<BackupStored>)> {
    let backup_id = parse_id("backup id", &id_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let claimed = owner_key_header(&headers)?;
    if body.len() as u64 > state.config.max_backup_bytes {
        return Err(RelayError::TooLarge("backup larger than the relay's limit"));
    }
    if q.version == 0 {
        return Err(RelayError::bad(
            "bad_version",
            "backup version must be at least 1",
        ));
    }
    let version = to_db("version", q.version)?;
    let counter = to_db("counter", ow.counter())?;
    let sha: [u8; 32] = Sha256::digest(&body).into();
    let size = body.len() as u64;
    let size_db = to_db("size", size)?;
    let now = to_db("now", state.clock.now())?;
    let (ck, limits) = (state.client_key(&client), state.quota_limits());
    let status = state
        .storage
        .transact(move |tx| {
            let Some(slot) = lock_slot(tx, &backup_id)? else {
                // First write: self-certifying, like share creation.
                let key = claimed.ok_or_else(|| {
                    RelayError::bad(
                        "owner_key_required",
                        "the first write to a backup slot must carry Carekey-Owner-Key",
                    )
                })?;
                ow.verify(&key)?;
                quota::charge(tx, &limits, Some(ck), 1, size_db)?;
                let n = tx.exec(
                    "INSERT INTO backups (backup_id, owner_key, counter, version, size, sha256, \
                     data, deleted, created_at, updated_at, client) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $9) \
                     ON CONFLICT (backup_id) DO NOTHING",
                    &[
                        (&backup_id).into(),
                        (&key).into(),
                        counter.into(),
                        version.into(),
                        size_db.into(),
                        (&sha).into(),
                        body.to_vec().into(),
                        now.into(),
                        quota::client_value(&ck),
                    ],
                )?;
                if n == 0 {
                    // Another instance created it between our read and insert.
                    return Err(RelayError::conflict(
                        "slot_created",
                        "the backup slot was created concurrently; retry",
                    ));
                }
                return Ok(StatusCode::CREATED);
            };
            if let Some(k) = claimed
                && !ct_eq(&k, &slot.owner_key)
            {
                return Err(RelayError::forbidden(
                    "owner_key_mismatch",
                    "this backup slot is bound to another owner key",
                ));
            }
            authorize(tx, &backup_id, &slot, &ow)?;
            if q.version <= slot.version {
                return Err(RelayError::conflict(
                    "stale_version",
                    "backup version must be greater than the stored one",
                ));
            }
            // A refill of a deleted (or expired) slot is a live object again.
            quota::charge(
                tx,
                &limits,
                slot.client,
                i64::from(slot.deleted),
                size_db - slot.size,
            )?;
            tx.exec(
                "UPDATE backups SET version = $2, size = $3, sha256 = $4, data = $5, \
                 deleted = 0, updated_at = $6 WHERE backup_id = $1",
                &[
                    (&backup_id).into(),
                    version.into(),
                    size_db.into(),
                    (&sha).into(),
                    body.to_vec().into(),
                    now.into(),
                ],
            )?;
            Ok(StatusCode::OK)
        })
        .await?;
    Ok((
        status,
        Json(BackupStored {
            version: q.version,
            size,
            sha256: b64(&sha),
        }),
    ))
}

/// `GET /v1/backups/{backup_id}` (owner request): the newest backup, version in
/// `Carekey-Backup-Version`.
pub async fn get(
    State(state): State<AppState>,
    Path(id_hex): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let backup_id = parse_id("backup id", &id_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let (version, plan) = state
        .storage
        .transact(move |tx| {
            let slot = lock_slot(tx, &backup_id)?.ok_or(RelayError::NotFound("no such backup"))?;
            authorize(tx, &backup_id, &slot, &ow)?;
            if slot.deleted {
                return Err(RelayError::NotFound("no such backup"));
            }
            let size = from_db(slot.size)?;
            let mut plan = Plan::new();
            plan.push_backup(tx, &backup_id, slot.version, size)?;
            Ok((slot.version, plan))
        })
        .await?;
    // Streamed from storage piece by piece (crate::download; docs/relay.md "Streaming").
    let mut resp = plan.respond(std::sync::Arc::clone(&state.storage));
    resp.headers_mut()
        .insert(HEADER_BACKUP_VERSION, HeaderValue::from(version));
    Ok(resp)
}

/// Drops a live slot's bytes (owner delete, or the sweeper's expiry), keeping its key, counter
/// and version, and releases its quota.
fn drop_bytes(tx: &mut dyn Tx, backup_id: &[u8; 16], slot: &Slot) -> Result<()> {
    quota::charge(tx, &QuotaLimits::NONE, slot.client, -1, -slot.size)?;
    tx.exec(
        "UPDATE backups SET data = $2, size = 0, deleted = 1 WHERE backup_id = $1",
        &[backup_id.into(), Vec::<u8>::new().into()],
    )?;
    Ok(())
}

/// Sweeper step: drops the bytes of up to `batch` live slots last written at or before
/// `cutoff` (each re-checked under its row lock: a write meanwhile keeps it). Returns how many.
pub fn expire_stale(tx: &mut dyn Tx, cutoff: i64, batch: i64) -> Result<u64> {
    let ids = tx.query(
        "SELECT backup_id FROM backups WHERE deleted = 0 AND updated_at <= $1 LIMIT $2",
        &[cutoff.into(), batch.into()],
    )?;
    let mut n = 0;
    for r in ids {
        let id: [u8; 16] = r[0].array()?;
        let sql = format!(
            "SELECT updated_at FROM backups WHERE backup_id = $1{}",
            tx.lock_clause()
        );
        let still = tx
            .query_opt(&sql, &[(&id).into()])?
            .map(|r| r[0].int())
            .transpose()?
            .is_some_and(|u| u <= cutoff);
        if !still {
            continue;
        }
        if let Some(slot) = lock_slot(tx, &id)?
            && !slot.deleted
        {
            drop_bytes(tx, &id, &slot)?;
            n += 1;
        }
    }
    Ok(n)
}

/// `DELETE /v1/backups/{backup_id}` (owner request): removes the backup bytes. The slot's key,
/// counter and version stay, so an old recorded write cannot be replayed to bring a deleted
/// backup back; a later write with a higher version and counter fills the slot again.
pub async fn delete(
    State(state): State<AppState>,
    Path(id_hex): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let backup_id = parse_id("backup id", &id_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    state
        .storage
        .transact(move |tx| {
            let slot = lock_slot(tx, &backup_id)?.ok_or(RelayError::NotFound("no such backup"))?;
            authorize(tx, &backup_id, &slot, &ow)?;
            if slot.deleted {
                return Err(RelayError::NotFound("no such backup"));
            }
            drop_bytes(tx, &backup_id, &slot)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
