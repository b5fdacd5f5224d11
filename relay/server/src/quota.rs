//! Storage exhaustion limits (docs/relay.md "Limits"): per-client quotas on live objects and
//! bytes, a global storage cap, and the optional operator enrollment key.
//!
//! Accounting. Every stored row is charged to one client ([`crate::client::ClientId`]) in the
//! transaction that stores it, and released in the transaction that deletes it:
//!
//! | what | charged to | objects | bytes |
//! |---|---|---|---|
//! | share | its creator | 1 | manifest |
//! | blob, pending upload | the share's creator | 1 each | size (`shares.bytes_used`) |
//! | pairing mailbox | its creator | 1 | the reply |
//! | relationship mailbox | its creator | 1 | – |
//! | message | its sender | 1 each | body |
//! | backup slot with bytes | its creator | 1 | size |
//!
//! Contents of a share are charged to whoever created the share (only its owner key can write
//! to it, from wherever), so uploading from many addresses does not multiply a quota.
//! Not counted: tokens, delegation notices and audit entries (bounded by the owner's grants
//! and the rate limits) and tombstones.
//!
//! Clients are stored as a 16-byte pseudonymous key, SHA-256 of a per-database secret and the
//! client ([`ClientKeys`]), not as addresses. That keeps addresses out of a casual look at the
//! database; it is not anonymity against someone holding the database (the secret is in it,
//! and IPv4 is small enough to try).
//!
//! Counters: `client_usage(client, objects, bytes)` per client, and the global byte total in
//! 16 `storage_total` shards (client key's first byte; rows without a client use shard 0), so
//! writes of different clients on PostgreSQL do not all queue on one row. Checks happen only
//! when a change adds: deleting is always possible. On SQLite (one writer) the cap is exact;
//! on PostgreSQL, concurrent writers may overshoot it by what they add at the same moment.
//! [`Usage::apply`] locks client rows in key order and shards after all client rows, so two
//! transactions never wait for each other in a cycle.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::client::ClientId;
use crate::config::Config;
use crate::encoding;
use crate::error::{RelayError, Result};
use crate::storage::{Storage, Tx, Value};

/// A client's storage key (see the module documentation).
pub type ClientKey = [u8; 16];

/// Shards of the global byte total.
pub const SHARDS: u8 = 16;

/// `relay_meta` row holding the secret of [`ClientKeys`].
pub const SECRET_META_NAME: &str = "client_key_secret";

/// Domain label of client keys.
pub const CLIENT_KEY_LABEL: &[u8] = b"carekey/v1/client-key";

/// Request header carrying the operator's enrollment key (`--enrollment-key`).
pub const HEADER_ENROLLMENT_KEY: &str = carekey_relay_api::HEADER_ENROLLMENT_KEY;

/// Derives storage keys of clients from a per-database secret (every instance on one
/// PostgreSQL derives the same keys).
#[derive(Clone)]
pub struct ClientKeys {
    secret: [u8; 32],
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKeys(..)")
    }
}

impl ClientKeys {
    /// Loads the secret, generating and storing it on first start.
    pub async fn load_or_create(storage: &dyn Storage) -> Result<Self> {
        let fresh: [u8; 32] = encoding::random();
        let secret = storage
            .transact(move |tx| {
                tx.exec(
                    "INSERT INTO relay_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    &[SECRET_META_NAME.into(), (&fresh).into()],
                )?;
                tx.query_opt(
                    "SELECT value FROM relay_meta WHERE name = $1",
                    &[SECRET_META_NAME.into()],
                )?
                .ok_or_else(|| RelayError::Storage("client key secret missing".into()))?[0]
                    .array::<32>()
            })
            .await?;
        Ok(Self { secret })
    }

    /// The storage key of `client`: SHA-256("carekey/v1/client-key" 0x00 || secret || client)
    /// truncated to 16 bytes.
    pub fn key(&self, client: &ClientId) -> ClientKey {
        let mut h = Sha256::new();
        h.update(CLIENT_KEY_LABEL);
        h.update([0u8]);
        h.update(self.secret);
        h.update(client.encode());
        let d: [u8; 32] = h.finalize().into();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        k
    }
}

/// The limits [`Usage::apply`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Most live objects per client.
    pub client_max_objects: u64,
    /// Most bytes per client.
    pub client_max_bytes: u64,
    /// Most bytes in total.
    pub storage_cap_bytes: u64,
}

impl QuotaLimits {
    /// The limits configured in `c`.
    pub fn of(c: &Config) -> Self {
        Self {
            client_max_objects: c.client_max_objects,
            client_max_bytes: c.client_max_bytes,
            storage_cap_bytes: c.storage_cap_bytes,
        }
    }

    /// No limits (for releases, which never check).
    pub const NONE: Self = Self {
        client_max_objects: u64::MAX,
        client_max_bytes: u64::MAX,
        storage_cap_bytes: u64::MAX,
    };
}

/// Usage changes of one transaction: objects and bytes per client (`None`: rows stored before
/// accounting existed, which count toward the global total only).
#[derive(Debug, Default, Clone)]
pub struct Usage {
    deltas: BTreeMap<Option<ClientKey>, (i64, i64)>,
}

impl Usage {
    /// Adds `objects` and `bytes` (negative: released) for `client`.
    pub fn add(&mut self, client: Option<ClientKey>, objects: i64, bytes: i64) -> &mut Self {
        let d = self.deltas.entry(client).or_insert((0, 0));
        d.0 = d.0.saturating_add(objects);
        d.1 = d.1.saturating_add(bytes);
        self
    }

    /// Adds rows `(client, objects, bytes)` of a `GROUP BY client` query (as negative deltas
    /// when `release`).
    pub fn add_rows(&mut self, rows: &[crate::storage::Row], release: bool) -> Result<&mut Self> {
        let sign = if release { -1 } else { 1 };
        for r in rows {
            let client = client_of(r.first())?;
            let objects = int_or_zero(r.get(1))?;
            let bytes = int_or_zero(r.get(2))?;
            self.add(client, sign * objects, sign * bytes);
        }
        Ok(self)
    }

    /// Checks the limits for what is added and writes the counters.
    pub fn apply(&self, tx: &mut dyn Tx, limits: &QuotaLimits) -> Result<()> {
        let mut shards: BTreeMap<u8, i64> = BTreeMap::new();
        for (client, &(objects, bytes)) in &self.deltas {
            if let Some(k) = client
                && (objects != 0 || bytes != 0)
            {
                apply_client(tx, k, objects, bytes, limits)?;
            }
            if bytes != 0 {
                let s = shards.entry(shard_of(client.as_ref())).or_insert(0);
                *s = s.saturating_add(bytes);
            }
        }
        let added: i64 = shards.values().sum();
        if added > 0 && limits.storage_cap_bytes != u64::MAX {
            let total = tx
                .query_opt(
                    "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM storage_total",
                    &[],
                )?
                .map_or(Ok(0), |r| r[0].int())?
                .max(0);
            let cap = i64::try_from(limits.storage_cap_bytes).unwrap_or(i64::MAX);
            if total.saturating_add(added) > cap {
                return Err(RelayError::StorageFull);
            }
        }
        for (shard, bytes) in shards {
            if bytes != 0 {
                tx.exec(
                    "UPDATE storage_total SET bytes = bytes + $2 WHERE shard = $1",
                    &[i64::from(shard).into(), bytes.into()],
                )?;
            }
        }
        Ok(())
    }
}

fn shard_of(client: Option<&ClientKey>) -> u8 {
    client.map_or(0, |k| k[0] % SHARDS)
}

fn int_or_zero(v: Option<&Value>) -> Result<i64> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.int(),
    }
}

/// A `client` column value: `None` for NULL (rows from before accounting).
pub fn client_of(v: Option<&Value>) -> Result<Option<ClientKey>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.array::<16>().map(Some),
    }
}

/// A `client` column value to bind (`Null` is only ever read, so legacy rows are never
/// written: new rows always have a client).
pub fn client_value(k: &ClientKey) -> Value {
    Value::Bytes(k.to_vec())
}

fn apply_client(
    tx: &mut dyn Tx,
    k: &ClientKey,
    objects: i64,
    bytes: i64,
    limits: &QuotaLimits,
) -> Result<()> {
    let sql = format!(
        "SELECT objects, bytes FROM client_usage WHERE client = $1{}",
        tx.lock_clause()
    );
    let old = tx.query_opt(&sql, &[k.into()])?;
    let (o0, b0) = match &old {
        Some(r) => (r[0].int()?, r[1].int()?),
        None => (0, 0),
    };
    let o1 = o0.saturating_add(objects).max(0);
    let b1 = b0.saturating_add(bytes).max(0);
    let over = |v: i64, max: u64| u64::try_from(v).unwrap_or(0) > max;
    if objects > 0 && over(o1, limits.client_max_objects) {
        return Err(RelayError::QuotaExceeded(
            "this client has stored as many objects as the relay allows; delete some or wait for them to expire",
        ));
    }
    if bytes > 0 && over(b1, limits.client_max_bytes) {
        return Err(RelayError::QuotaExceeded(
            "this client has stored as many bytes as the relay allows; delete some or wait for them to expire",
        ));
    }
    match old {
        Some(_) if o1 == 0 && b1 == 0 => {
            tx.exec("DELETE FROM client_usage WHERE client = $1", &[k.into()])?;
        }
        Some(_) => {
            tx.exec(
                "UPDATE client_usage SET objects = $2, bytes = $3 WHERE client = $1",
                &[k.into(), o1.into(), b1.into()],
            )?;
        }
        None if o1 == 0 && b1 == 0 => {}
        None => {
            // Another instance may insert the row between our read and this insert.
            tx.exec(
                "INSERT INTO client_usage (client, objects, bytes) VALUES ($1, $2, $3) \
                 ON CONFLICT (client) DO UPDATE SET objects = client_usage.objects + $2, \
                 bytes = client_usage.bytes + $3",
                &[k.into(), o1.into(), b1.into()],
            )?;
        }
    }
    Ok(())
}

/// Charges (or, negative, releases) one client at once.
pub fn charge(
    tx: &mut dyn Tx,
    limits: &QuotaLimits,
    client: Option<ClientKey>,
    objects: i64,
    bytes: i64,
) -> Result<()> {
    Usage::default()
        .add(client, objects, bytes)
        .apply(tx, limits)
}

/// The client a share's contents are charged to (its creator; `None` for a share from before
/// accounting, or one that is gone).
pub fn share_client(tx: &mut dyn Tx, share_id: &[u8; 16]) -> Result<Option<ClientKey>> {
    let row = tx.query_opt(
        "SELECT client FROM shares WHERE share_id = $1",
        &[share_id.into()],
    )?;
    match row {
        Some(r) => client_of(r.first()),
        None => Ok(None),
    }
}

/// Charges a change of a share's contents to the share's creator.
pub fn charge_share(
    tx: &mut dyn Tx,
    limits: &QuotaLimits,
    share_id: &[u8; 16],
    objects: i64,
    bytes: i64,
) -> Result<()> {
    if objects == 0 && bytes == 0 {
        return Ok(());
    }
    let client = share_client(tx, share_id)?;
    charge(tx, limits, client, objects, bytes)
}

/// Releases everything a share holds (called before its rows are deleted): the share, its
/// blobs and pending uploads, `bytes_used` and the manifest.
pub fn release_share(tx: &mut dyn Tx, share_id: &[u8; 16]) -> Result<()> {
    let p: [Value; 1] = [share_id.into()];
    let Some(row) = tx.query_opt(
        "SELECT client, bytes_used, LENGTH(manifest) FROM shares WHERE share_id = $1",
        &p,
    )?
    else {
        return Ok(());
    };
    let client = client_of(row.first())?;
    let bytes = int_or_zero(row.get(1))?.saturating_add(int_or_zero(row.get(2))?);
    let count = |tx: &mut dyn Tx, sql: &str| -> Result<i64> {
        tx.query_opt(sql, &p)?
            .map_or(Ok(0), |r| int_or_zero(r.first()))
    };
    let blobs = count(tx, "SELECT COUNT(*) FROM blobs WHERE share_id = $1")?;
    let uploads = count(tx, "SELECT COUNT(*) FROM uploads WHERE share_id = $1")?;
    // SMART Health Links are charged to the share's creator too (health_link/store.rs).
    let links = count(tx, "SELECT COUNT(*) FROM shl_links WHERE share_id = $1")?;
    let link_bytes = count(
        tx,
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM shl_links WHERE share_id = $1",
    )?;
    charge(
        tx,
        &QuotaLimits::NONE,
        client,
        -(1 + blobs + uploads + links),
        -bytes.saturating_add(link_bytes),
    )
}

/// A client's current usage (objects, bytes), for tests and operators.
pub async fn usage_of(storage: &dyn Storage, k: ClientKey) -> Result<(u64, u64)> {
    storage
        .read(move |tx| {
            let r = tx.query_opt(
                "SELECT objects, bytes FROM client_usage WHERE client = $1",
                &[(&k).into()],
            )?;
            Ok(match r {
                Some(r) => (
                    encoding::from_db(r[0].int()?)?,
                    encoding::from_db(r[1].int()?)?,
                ),
                None => (0, 0),
            })
        })
        .await
}

/// The global byte total.
pub async fn total_bytes(storage: &dyn Storage) -> Result<i64> {
    storage
        .read(|tx| {
            tx.query_opt(
                "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM storage_total",
                &[],
            )?
            .map_or(Ok(0), |r| r[0].int())
        })
        .await
}

/// Domain label of the enrollment key hash.
pub const ENROLLMENT_LABEL: &[u8] = b"carekey/v1/enrollment-key";

/// `SHA-256("carekey/v1/enrollment-key" 0x00 || key)`: what the relay keeps of the key.
pub fn enrollment_hash(key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENROLLMENT_LABEL);
    h.update([0u8]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// Routes that create storage for a new party and so need the enrollment key when one is
/// configured: method and path template.
pub const ENROLLMENT_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/shares"),
    ("POST", "/v1/pairing"),
    ("POST", "/v1/mailboxes"),
    ("PUT", "/v1/backups/{backup_id}"),
];

/// Routes that store new bytes or objects, and so can answer 429 `client_quota` and 507
/// `storage_full`.
pub const STORING_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/shares"),
    ("PUT", "/v1/shares/{share_id}/blobs/{blob_id}"),
    ("POST", "/v1/shares/{share_id}/uploads"),
    (
        "PUT",
        "/v1/shares/{share_id}/uploads/{upload_id}/chunks/{n}",
    ),
    ("PUT", "/v1/shares/{share_id}/manifest"),
    ("PUT", "/v1/backups/{backup_id}"),
    ("POST", "/v1/pairing"),
    ("PUT", "/v1/pairing/{mailbox_id}"),
    ("POST", "/v1/mailboxes"),
    ("POST", "/v1/mailboxes/{mailbox_id}/messages"),
    ("POST", "/v1/shares/{share_id}/links"),
];

/// Whether `method path` needs the enrollment key.
pub fn needs_enrollment(method: &Method, path: &str) -> bool {
    ENROLLMENT_ROUTES
        .iter()
        .any(|(m, p)| method.as_str() == *m && path == *p)
}

/// Middleware: with `--enrollment-key`, the [`ENROLLMENT_ROUTES`] answer 403
/// `enrollment_required` unless `Carekey-Enrollment-Key` carries the key (compared as hashes,
/// in constant time).
pub async fn enrollment(State(config): State<Arc<Config>>, req: Request, next: Next) -> Response {
    if let Some(want) = &config.enrollment_key_hash {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        if route.is_some_and(|p| needs_enrollment(req.method(), p)) {
            let presented = req
                .headers()
                .get(HEADER_ENROLLMENT_KEY)
                .and_then(|v| v.to_str().ok())
                .map(|k| enrollment_hash(k.trim()));
            if !presented.is_some_and(|p| crate::credential::ct_eq(&p, want)) {
                return RelayError::forbidden(
                    "enrollment_required",
                    "this relay accepts new shares, mailboxes and backups only with its enrollment key (Carekey-Enrollment-Key)",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}
