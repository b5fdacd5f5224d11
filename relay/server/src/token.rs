//! Read tokens and fetch receipts (docs/protocol.md "Manifest and epochs"; relay-formats.md
//! "Read token hash", "Root token registration", "Fetch receipt").
//!
//! The relay stores only `token_hash`; a token is active, revoked or expired. Revoked and
//! expired tokens stay as tombstones so reads keep answering 410 (404 is kept for "no such
//! blob"). Revoking a token revokes its whole delegated subtree in the same transaction.
//!
//! Scoped tokens (relay-formats.md "Scoped tokens"): a token registered with relay groups
//! reads only the blobs the owner registered in one of its groups; every blob GET and batch
//! fetch is checked ([`ReadRequest::authorize`]), and a delegated token's groups must be a
//! subset of its parent's ([`crate::delegation`]). Groups are opaque 16-byte tags: the relay
//! learns which blobs share one, never what it stands for.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use carekey_relay_api::{
    BATCH_OBJECT_PREFIX, BlobGroupRegistration, BlobGroupsStored, GROUP_TAG_LEN, HEADER_RECEIPT,
    MANIFEST_OBJECT_ID, MAX_BATCH_BLOBS, MAX_GROUP_ROWS, MAX_TOKEN_GROUPS, RootTokenRegistration,
    TokensRevoked,
};
use ed25519_dalek::{Signature, VerifyingKey};

use crate::audit::{self, Kind};
pub use crate::credential::{
    READ_TOKEN_LABEL, STATUS_ACTIVE, STATUS_EXPIRED, STATUS_REVOKED, bearer_hash, ct_eq, token_hash,
};
use crate::encoding::{self, Reader, from_db, parse_hex, parse_id, to_db};
use crate::error::{RelayError, Result};
use crate::fetchlog::{FetchEntry, Fetched};
use crate::owner::{self, OwnerWrite};
use crate::scope::Scope;
use crate::state::AppState;
use crate::storage::{Tx, Value};

/// Domain label of fetch receipts.
pub const FETCH_RECEIPT_LABEL: &[u8] = b"carekey/v1/fetch-receipt";
/// Receipt format version.
pub const RECEIPT_VERSION: u8 = 1;
/// An opaque relay group tag (relay-formats.md "Scoped tokens").
pub type Group = [u8; GROUP_TAG_LEN];

/// A fetch receipt that does not parse: a malformed credential (401), like a bearer token
/// that does not parse.
fn bad_receipt(_: RelayError) -> RelayError {
    RelayError::BadCredential {
        code: "bad_receipt",
        message: "the fetch receipt is not a well-formed version-1 receipt (relay-formats.md \"Fetch receipt\")",
    }
}

/// A parsed fetch receipt.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// All receipt bytes (stored in the audit log).
    pub bytes: Vec<u8>,
    share_id: [u8; 16],
    object_id: String,
    reader_key: [u8; 32],
    time: u64,
    signed_len: usize,
    signature: [u8; 64],
}

impl Receipt {
    /// Parses a receipt (version 1, no trailing bytes).
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let mut r = Reader::new("fetch receipt", &bytes);
        if r.u8()? != RECEIPT_VERSION {
            return Err(RelayError::bad(
                "bad_version",
                "unknown fetch receipt version",
            ));
        }
        let share_id = r.array::<16>()?;
        let object_id = r.str16()?.to_owned();
        let reader_key = r.array::<32>()?;
        let time = r.u64()?;
        let _nonce = r.array::<16>()?;
        let signed_len = bytes.len() - r.remaining();
        let signature = r.array::<64>()?;
        r.finish()?;
        Ok(Self {
            share_id,
            object_id,
            reader_key,
            time,
            signed_len,
            signature,
            bytes,
        })
    }

    /// Verifies the receipt signature under its own `reader_key` (`verify_strict`).
    pub fn verify(&self) -> Result<()> {
        let mut m = Vec::with_capacity(FETCH_RECEIPT_LABEL.len() + 1 + self.signed_len);
        m.extend_from_slice(FETCH_RECEIPT_LABEL);
        m.push(0);
        m.extend_from_slice(&self.bytes[..self.signed_len]);
        if verify_strict_cached(&self.reader_key, &m, &self.signature) {
            Ok(())
        } else {
            Err(RelayError::Unauthorized(
                "fetch receipt signature does not verify",
            ))
        }
    }
}

/// Most decompressed reader keys kept (a few hundred KiB at most).
pub const READER_KEY_CACHE: usize = 4096;

/// Decompressed reader keys by their 32-byte encoding.
static READER_KEYS: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();

/// The reader key `bytes` as a [`VerifyingKey`], or `None` if it does not decompress.
///
/// Decompressing an Edwards point costs a field inversion (a square root) on every request,
/// about a fifth of the receipt check, while a doctor signs many receipts with one key. A
/// cached key is the very value `VerifyingKey::from_bytes` returned, so `verify_strict`
/// decides exactly as before; a key that fails to decompress is never cached, it just fails
/// again. Only keys that matched a registered token's reader key reach this point, so the
/// cache is filled by owners' registrations, not by arbitrary request bytes; it is still
/// bounded (an arbitrary entry is dropped when full: a miss only costs the decompression).
fn reader_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    let cache = READER_KEYS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(k) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(bytes) {
        return Some(*k);
    }
    // Decompressed outside the lock: other requests keep hitting the cache meanwhile.
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    let mut m = cache.lock().unwrap_or_else(|p| p.into_inner());
    if m.len() >= READER_KEY_CACHE
        && let Some(old) = m.keys().next().copied()
    {
        m.remove(&old);
    }
    m.insert(*bytes, key);
    Some(key)
}

/// `verify_strict` of `sig` over `msg` under `key`, with the key decompressed at most once.
fn verify_strict_cached(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    reader_key(key).is_some_and(|k| k.verify_strict(msg, &Signature::from_bytes(sig)).is_ok())
}

/// A reader request: hashed bearer token plus fetch receipt.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    token_hash: [u8; 32],
    receipt: Receipt,
    max_skew: u64,
}

impl ReadRequest {
    /// Reads `Authorization` and `Carekey-Receipt`; the receipt's time may be at most
    /// `max_skew` seconds away from the relay clock.
    pub fn from_headers(headers: &HeaderMap, max_skew: u64) -> Result<Self> {
        let token_hash = bearer_hash(headers)?;
        let r = headers
            .get(HEADER_RECEIPT)
            .ok_or(RelayError::BadCredential {
                code: "receipt_required",
                message: "reads need a Carekey-Receipt header",
            })?
            .to_str()
            .map_err(|_| bad_receipt(RelayError::NotFound("non-ASCII receipt")))?;
        let receipt = encoding::unb64("Carekey-Receipt", r)
            .and_then(Receipt::parse)
            .map_err(bad_receipt)?;
        Ok(Self {
            token_hash,
            receipt,
            max_skew,
        })
    }

    /// A batch fetch: the bearer token from `Authorization`, the receipt as the raw request
    /// body (a batch receipt names up to [`carekey_relay_api::MAX_BATCH_BLOBS`] ids, too long
    /// for a header that proxies pass).
    pub fn from_body(headers: &HeaderMap, body: &[u8], max_skew: u64) -> Result<Self> {
        let token_hash = bearer_hash(headers)?;
        if body.is_empty() {
            return Err(RelayError::BadCredential {
                code: "receipt_required",
                message: "a batch fetch carries its fetch receipt as the request body",
            });
        }
        Ok(Self {
            token_hash,
            receipt: Receipt::parse(body.to_vec()).map_err(bad_receipt)?,
            max_skew,
        })
    }

    /// The object the receipt names.
    pub fn object_id(&self) -> &str {
        &self.receipt.object_id
    }

    /// Locks the share (in a write transaction; a read-only one just reads it) and checks the
    /// token (401 unknown, 410 revoked/expired) and the receipt (reader key of the token, this
    /// share, this object, valid signature, signed time within the allowed skew of `now`).
    pub fn authorize(
        &self,
        tx: &mut dyn Tx,
        share_id: &[u8; 16],
        object_id: &str,
        now: u64,
    ) -> Result<()> {
        owner::lock_share(tx, share_id, now)?;
        let row = tx
            .query_opt(
                "SELECT reader_key, expires_at, status, scoped FROM tokens WHERE share_id = $1 AND token_hash = $2",
                &[share_id.into(), (&self.token_hash).into()],
            )?
            .ok_or(RelayError::Unauthorized("unknown read token"))?;
        if row[2].int()? != STATUS_ACTIVE {
            return Err(RelayError::Gone("read token revoked or expired"));
        }
        if from_db(row[1].int()?)? <= now {
            return Err(RelayError::Gone("read token revoked or expired"));
        }
        let rc = &self.receipt;
        if !ct_eq(row[0].bytes()?, &rc.reader_key) {
            return Err(RelayError::forbidden(
                "receipt_key",
                "fetch receipt is not signed by the token's reader key",
            ));
        }
        if rc.share_id != *share_id || rc.object_id != object_id {
            return Err(RelayError::forbidden(
                "receipt_object",
                "fetch receipt names another share or object",
            ));
        }
        rc.verify()?;
        if rc.time.abs_diff(now) > self.max_skew {
            return Err(RelayError::bad(
                "receipt_time",
                format!(
                    "fetch receipt time is more than {} s away from the relay clock (check the device clock and sign a fresh receipt)",
                    self.max_skew
                ),
            ));
        }
        if row[3].int()? != 0 {
            check_scope(tx, share_id, &self.token_hash, object_id)?;
        }
        Ok(())
    }

    /// The audit entry of this fetch for the group commit ([`crate::fetchlog`]).
    pub fn into_entry(self, share_id: [u8; 16], object: Fetched, now: u64) -> FetchEntry {
        FetchEntry {
            share_id,
            token_hash: self.token_hash,
            object,
            receipt: self.receipt.bytes,
            now,
        }
    }

    /// Appends the fetch (with its receipt) to the share's audit chain.
    pub fn log_fetch(&self, tx: &mut dyn Tx, share_id: &[u8; 16], now: u64) -> Result<()> {
        audit::append(tx, share_id, now, Kind::Fetch, &self.receipt.bytes)?;
        Ok(())
    }
}

/// The blob ids a read names: none for the manifest, the list of a batch, or one blob.
fn blobs_named(object_id: &str) -> Result<Vec<[u8; 16]>> {
    if object_id == MANIFEST_OBJECT_ID {
        Ok(Vec::new())
    } else if object_id.starts_with(BATCH_OBJECT_PREFIX) {
        parse_ids(object_id)
    } else {
        Ok(vec![parse_id("blob id", object_id)?])
    }
}

/// Parses the ids a batch receipt names: `blobs:` then 1..=[`MAX_BATCH_BLOBS`] ids of 32
/// lowercase hex characters, no separator, no id twice.
pub fn parse_ids(object_id: &str) -> Result<Vec<[u8; 16]>> {
    let bad = |m: &'static str| RelayError::bad("bad_batch", m);
    let list = object_id.strip_prefix(BATCH_OBJECT_PREFIX).ok_or_else(|| {
        bad("a batch fetch receipt must name its blobs (object id 'blobs:' then the ids)")
    })?;
    if list.is_empty() || list.len() % 32 != 0 {
        return Err(bad(
            "a batch receipt's object id must list ids of 32 lowercase hex characters",
        ));
    }
    let n = list.len() / 32;
    if n > MAX_BATCH_BLOBS {
        return Err(RelayError::bad(
            "batch_too_many",
            format!("a batch fetch names at most {MAX_BATCH_BLOBS} blobs"),
        ));
    }
    let mut ids = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::with_capacity(n);
    for k in 0..n {
        let part = list
            .get(k * 32..(k + 1) * 32)
            .ok_or_else(|| bad("a batch receipt's object id is not ASCII hex"))?;
        let id = parse_id("batch blob id", part)?;
        if !seen.insert(id) {
            return Err(bad("a batch fetch names the same blob twice"));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// A scoped token reads a blob only if the owner registered the blob in one of the token's
/// groups; otherwise 404, exactly as for a blob that is not stored, so a token learns nothing
/// about blobs outside its scope (not even that they exist), and an honest reader racing a
/// re-key (old blob ids deleted with their groups) sees the 404 it always saw. All or nothing
/// for a batch (nothing read, nothing logged).
fn check_scope(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    token_hash: &[u8; 32],
    object_id: &str,
) -> Result<()> {
    let ids = blobs_named(object_id)?;
    if ids.is_empty() {
        return Ok(());
    }
    // One query per read, not one per blob (a check-up's batches name up to MAX_BATCH_BLOBS
    // blobs each, so up to 256 point queries per batch before). The ids are distinct
    // (`parse_ids`), so every one is in scope exactly when the count of distinct ids found
    // equals the count named.
    let mut sql = String::from(
        "SELECT COUNT(DISTINCT b.blob_id) FROM blob_groups b JOIN token_groups t \
         ON t.share_id = b.share_id AND t.grp = b.grp \
         WHERE b.share_id = $1 AND t.token_hash = $2 AND b.blob_id IN (",
    );
    for k in 0..ids.len() {
        if k > 0 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&(k + 3).to_string());
    }
    sql.push(')');
    let mut params: Vec<Value> = Vec::with_capacity(ids.len() + 2);
    params.push(share_id.into());
    params.push(token_hash.into());
    params.extend(ids.iter().map(Value::from));
    let found = tx
        .query_opt(&sql, &params)?
        .map(|r| r[0].int())
        .transpose()?
        .unwrap_or(0);
    if usize::try_from(found).ok() != Some(ids.len()) {
        return Err(RelayError::NotFound(
            "no such blob in the read token's scope",
        ));
    }
    Ok(())
}

/// The groups of a token: `None` for a share-wide (unscoped) token, or unknown token.
pub fn token_groups(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    token_hash: &[u8; 32],
) -> Result<Option<Vec<Group>>> {
    let Some(row) = tx.query_opt(
        "SELECT scoped FROM tokens WHERE share_id = $1 AND token_hash = $2",
        &[share_id.into(), token_hash.into()],
    )?
    else {
        return Ok(None);
    };
    if row[0].int()? == 0 {
        return Ok(None);
    }
    let mut g: Vec<Group> = tx
        .query(
            "SELECT grp FROM token_groups WHERE share_id = $1 AND token_hash = $2",
            &[share_id.into(), token_hash.into()],
        )?
        .iter()
        .map(|r| r[0].array())
        .collect::<Result<_>>()?;
    g.sort_unstable();
    Ok(Some(g))
}

/// Parses a list of base64url group tags: sorted, de-duplicated, at most
/// [`MAX_TOKEN_GROUPS`].
pub fn parse_groups(list: &[String]) -> Result<Vec<Group>> {
    if list.len() > MAX_TOKEN_GROUPS {
        return Err(RelayError::bad(
            "bad_groups",
            "a token names at most 4107 relay groups",
        ));
    }
    let mut g = list
        .iter()
        .map(|t| encoding::unb64_fixed::<GROUP_TAG_LEN>("group", t))
        .collect::<Result<Vec<_>>>()?;
    g.sort_unstable();
    g.dedup();
    Ok(g)
}

/// Deletes the group rows of a purged share.
pub fn purge_groups(tx: &mut dyn Tx, share_id: &[u8; 16]) -> Result<()> {
    tx.exec(
        "DELETE FROM token_groups WHERE share_id = $1",
        &[share_id.into()],
    )?;
    tx.exec(
        "DELETE FROM blob_groups WHERE share_id = $1",
        &[share_id.into()],
    )?;
    Ok(())
}

/// Deletes the blob group rows of a deleted epoch.
pub fn forget_epoch_groups(tx: &mut dyn Tx, share_id: &[u8; 16], epoch: u32) -> Result<()> {
    tx.exec(
        "DELETE FROM blob_groups WHERE share_id = $1 AND epoch = $2",
        &[share_id.into(), i64::from(epoch).into()],
    )?;
    Ok(())
}

/// Deletes the group rows of the tokens the sweeper is about to delete (not active, past
/// `cutoff`).
pub fn sweep_groups(tx: &mut dyn Tx, cutoff: i64) -> Result<()> {
    tx.exec(
        "DELETE FROM token_groups WHERE EXISTS (SELECT 1 FROM tokens t \
         WHERE t.share_id = token_groups.share_id AND t.token_hash = token_groups.token_hash \
         AND t.status <> $1 AND t.expires_at <= $2)",
        &[STATUS_ACTIVE.into(), cutoff.into()],
    )?;
    Ok(())
}

/// `POST /v1/shares/{share_id}/groups` (owner write, JSON [`BlobGroupRegistration`]): puts
/// stored blobs into relay groups (each row under the blob's epoch, deleted with it). Every
/// blob must be stored (else 404, nothing stored); a pair stored already is kept.
pub async fn register_groups(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BlobGroupsStored>> {
    let share_id = parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let req: BlobGroupRegistration = encoding::parse_json(&body)?;
    let rows: usize = req.groups.iter().map(|g| g.blobs.len()).sum();
    if rows > MAX_GROUP_ROWS {
        return Err(RelayError::bad(
            "batch_too_many",
            format!("a group registration carries at most {MAX_GROUP_ROWS} (group, blob) pairs"),
        ));
    }
    let mut pairs: Vec<(Group, [u8; 16])> = Vec::with_capacity(rows);
    for g in &req.groups {
        let tag: Group = encoding::unb64_fixed("group", &g.group)?;
        for b in &g.blobs {
            pairs.push((tag, parse_id("blob id", b)?));
        }
    }
    let now = state.clock.now();
    let n = state
        .storage
        .transact(move |tx| {
            owner::authorize_owner(tx, &share_id, &ow, now)?;
            let mut epochs: HashMap<[u8; 16], i64> = HashMap::new();
            for (tag, blob) in &pairs {
                let epoch = match epochs.get(blob) {
                    Some(e) => *e,
                    None => {
                        let e = tx
                            .query_opt(
                                "SELECT epoch FROM blobs WHERE share_id = $1 AND blob_id = $2",
                                &[(&share_id).into(), blob.into()],
                            )?
                            .ok_or(RelayError::NotFound("no such blob"))?[0]
                            .int()?;
                        epochs.insert(*blob, e);
                        e
                    }
                };
                tx.exec(
                    "INSERT INTO blob_groups (share_id, blob_id, grp, epoch) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (share_id, blob_id, grp) DO NOTHING",
                    &[(&share_id).into(), blob.into(), tag.into(), epoch.into()],
                )?;
            }
            Ok(pairs.len() as u64)
        })
        .await?;
    Ok(Json(BlobGroupsStored { rows: n }))
}

/// Body of a kind-2 audit entry.
pub fn registered_body(
    token_hash: &[u8; 32],
    reader_key: &[u8; 32],
    expires_at: u64,
    depth: u8,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(73);
    b.extend_from_slice(token_hash);
    b.extend_from_slice(reader_key);
    b.extend_from_slice(&expires_at.to_be_bytes());
    b.push(depth);
    b
}

/// A token row to insert.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Hash of the bearer token.
    pub token_hash: [u8; 32],
    /// Key that must sign receipts.
    pub reader_key: [u8; 32],
    /// Encoded scope.
    pub scope: Vec<u8>,
    /// Expiry (Unix seconds).
    pub expires_at: u64,
    /// Remaining delegation depth.
    pub depth: u8,
    /// Parent token hash (empty for a root registration).
    pub parent_hash: Vec<u8>,
    /// Relay groups of a scoped token (sorted); `None`: reads the whole share.
    pub groups: Option<Vec<Group>>,
}

/// Inserts a token; 409 if the hash is already registered in this share.
pub fn insert(tx: &mut dyn Tx, share_id: &[u8; 16], t: NewToken) -> Result<()> {
    if tx
        .query_opt(
            "SELECT 1 FROM tokens WHERE share_id = $1 AND token_hash = $2",
            &[share_id.into(), (&t.token_hash).into()],
        )?
        .is_some()
    {
        return Err(RelayError::conflict(
            "token_exists",
            "this token hash is already registered",
        ));
    }
    tx.exec(
        "INSERT INTO tokens (share_id, token_hash, reader_key, scope, expires_at, depth, parent_hash, status, scoped) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            share_id.into(),
            (&t.token_hash).into(),
            (&t.reader_key).into(),
            t.scope.into(),
            to_db("expires_at", t.expires_at)?.into(),
            i64::from(t.depth).into(),
            t.parent_hash.into(),
            STATUS_ACTIVE.into(),
            i64::from(t.groups.is_some()).into(),
        ],
    )?;
    // Rows left by a swept token of the same hash must not widen this one.
    tx.exec(
        "DELETE FROM token_groups WHERE share_id = $1 AND token_hash = $2",
        &[share_id.into(), (&t.token_hash).into()],
    )?;
    for g in t.groups.iter().flatten() {
        tx.exec(
            "INSERT INTO token_groups (share_id, token_hash, grp) VALUES ($1, $2, $3)",
            &[share_id.into(), (&t.token_hash).into(), g.into()],
        )?;
    }
    Ok(())
}

/// `POST /v1/shares/{share_id}/tokens` (owner write, JSON [`RootTokenRegistration`]).
pub async fn register(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let share_id = parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let req: RootTokenRegistration = encoding::parse_json(&body)?;
    let token_hash: [u8; 32] = encoding::unb64_fixed("token_hash", &req.token_hash)?;
    let reader_key: [u8; 32] = encoding::unb64_fixed("reader_key", &req.reader_key)?;
    VerifyingKey::from_bytes(&reader_key)
        .map_err(|_| RelayError::bad("bad_key", "reader_key is not a valid Ed25519 key"))?;
    let scope = encoding::unb64("scope", &req.scope)?;
    Scope::parse(&scope)?;
    let groups = req.groups.as_deref().map(parse_groups).transpose()?;
    if req.depth > state.config.max_delegation_depth {
        return Err(RelayError::bad(
            "bad_depth",
            "depth exceeds the relay's delegation limit",
        ));
    }
    let now = state.clock.now();
    if req.expires_at <= now {
        return Err(RelayError::bad(
            "bad_expiry",
            "expires_at must be in the future",
        ));
    }
    state
        .storage
        .transact(move |tx| {
            owner::authorize_owner(tx, &share_id, &ow, now)?;
            insert(
                tx,
                &share_id,
                NewToken {
                    token_hash,
                    reader_key,
                    scope,
                    expires_at: req.expires_at,
                    depth: req.depth,
                    parent_hash: Vec::new(),
                    groups,
                },
            )?;
            let body = registered_body(&token_hash, &reader_key, req.expires_at, req.depth);
            audit::append(tx, &share_id, now, Kind::TokenRegistered, &body)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::CREATED)
}

/// Marks `root` and every token delegated below it revoked, logging each newly revoked one.
pub fn revoke_subtree(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    root: [u8; 32],
    now: u64,
) -> Result<u64> {
    let mut queue = vec![root];
    let mut revoked = 0;
    while let Some(h) = queue.pop() {
        let n = tx.exec(
            "UPDATE tokens SET status = $3 WHERE share_id = $1 AND token_hash = $2 AND status = $4",
            &[
                share_id.into(),
                (&h).into(),
                STATUS_REVOKED.into(),
                STATUS_ACTIVE.into(),
            ],
        )?;
        if n > 0 {
            revoked += 1;
            audit::append(tx, share_id, now, Kind::TokenRevoked, &h)?;
        }
        for r in tx.query(
            "SELECT token_hash FROM tokens WHERE share_id = $1 AND parent_hash = $2",
            &[share_id.into(), (&h).into()],
        )? {
            queue.push(r[0].array()?);
        }
    }
    Ok(revoked)
}

/// `DELETE /v1/shares/{share_id}/tokens/{token_hash_hex}` (owner write): revokes the token and
/// its delegated subtree at once (docs/protocol.md "Revocation and expiry", step 1).
pub async fn revoke(
    State(state): State<AppState>,
    Path((share_hex, token_hex)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokensRevoked>> {
    let share_id = parse_id("share id", &share_hex)?;
    let token: [u8; 32] = parse_hex("token hash", &token_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let now = state.clock.now();
    let n = state
        .storage
        .transact(move |tx| {
            owner::authorize_owner(tx, &share_id, &ow, now)?;
            if tx
                .query_opt(
                    "SELECT 1 FROM tokens WHERE share_id = $1 AND token_hash = $2",
                    &[(&share_id).into(), (&token).into()],
                )?
                .is_none()
            {
                return Err(RelayError::NotFound("no such token"));
            }
            revoke_subtree(tx, &share_id, token, now)
        })
        .await?;
    Ok(Json(TokensRevoked { revoked: n }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key cache must not change a single `verify_strict` answer: every CCTV Ed25519
    /// edge case (small-order and non-canonical keys and commitments, mixed-order points)
    /// gets the same answer through the cache, cold and warm, as straight from the bytes.
    #[test]
    fn cached_keys_verify_like_fresh_ones() {
        let dir = std::env::var_os("CAREKEY_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
            });
        let Ok(text) = std::fs::read_to_string(dir.join("vectors/ed25519vectors.json")) else {
            assert!(
                std::env::var_os("CAREKEY_REQUIRE_FIXTURES").is_none(),
                "CAREKEY_REQUIRE_FIXTURES is set but the fixtures are missing"
            );
            println!("skipped: fixtures not found at {}", dir.display());
            return;
        };
        let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).expect("valid JSON");
        let hex = |v: &serde_json::Value| {
            data_encoding::HEXLOWER_PERMISSIVE
                .decode(v.as_str().expect("hex string").as_bytes())
                .expect("hex")
        };
        let mut accepted = 0;
        for v in &vectors {
            let key: [u8; 32] = hex(&v["key"]).try_into().expect("32-byte key");
            let sig: [u8; 64] = hex(&v["sig"]).try_into().expect("64-byte signature");
            let msg = v["msg"].as_str().expect("msg").as_bytes();
            let fresh = VerifyingKey::from_bytes(&key)
                .is_ok_and(|k| k.verify_strict(msg, &Signature::from_bytes(&sig)).is_ok());
            assert_eq!(
                verify_strict_cached(&key, msg, &sig),
                fresh,
                "vector {}",
                v["number"]
            );
            assert_eq!(
                verify_strict_cached(&key, msg, &sig),
                fresh,
                "vector {} (warm)",
                v["number"]
            );
            accepted += usize::from(fresh);
        }
        assert!(vectors.len() > 100, "expected the full CCTV set");
        println!(
            "CCTV Ed25519 via the key cache: {accepted} of {} accepted",
            vectors.len()
        );
    }

    /// The cache stays bounded however many distinct keys pass through it.
    #[test]
    fn key_cache_is_bounded() {
        use ed25519_dalek::SigningKey;
        for i in 0..(READER_KEY_CACHE + 10) {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let vk = SigningKey::from_bytes(&seed).verifying_key();
            assert_eq!(reader_key(vk.as_bytes()), Some(vk));
        }
        let n = READER_KEYS
            .get()
            .map(|m| m.lock().map(|m| m.len()).unwrap_or(0));
        assert!(n.is_some_and(|n| n <= READER_KEY_CACHE));
    }
}
