//! Owner-write authentication (docs/relay.md "HTTP API", owner; relay-formats.md "Owner write
//! signature"): the signed message of a request, its verification under the share's key, and
//! the share row lock every owner write and every fetch takes first.
//!
//! Below the routes: the share, token, delegation, audit, link and backup handlers and the
//! fetch log build on it; it builds only on formats, storage and errors.

use axum::http::{HeaderMap, Method, Uri};
use carekey_relay_api::{HEADER_COUNTER, HEADER_SIGNATURE};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::encoding::{self, from_db, put_str16, to_db};
use crate::error::{RelayError, Result};
use crate::storage::Tx;

/// Domain label of owner write signatures.
pub const OWNER_WRITE_LABEL: &[u8] = b"carekey/v1/owner-write";

/// A verified-later owner request: the exact signed message and its signature.
#[derive(Debug, Clone)]
pub struct OwnerWrite {
    message: Vec<u8>,
    counter: u64,
    signature: Signature,
}

/// The owner-write message of relay-formats.md.
pub fn owner_message(
    method: &str,
    path_and_query: &str,
    origin: &str,
    body: &[u8],
    counter: u64,
) -> Result<Vec<u8>> {
    let mut m =
        Vec::with_capacity(OWNER_WRITE_LABEL.len() + 64 + path_and_query.len() + origin.len());
    m.extend_from_slice(OWNER_WRITE_LABEL);
    m.push(0);
    put_str16(&mut m, method)?;
    put_str16(&mut m, path_and_query)?;
    put_str16(&mut m, origin)?;
    m.extend_from_slice(&Sha256::digest(body));
    m.extend_from_slice(&counter.to_be_bytes());
    Ok(m)
}

impl OwnerWrite {
    /// Reads `Carekey-Counter` and `Carekey-Signature` and rebuilds the signed message.
    pub fn from_request(
        config: &Config,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Self> {
        let counter = headers.get(HEADER_COUNTER).ok_or(RelayError::Unauthorized(
            "owner request needs Carekey-Counter and Carekey-Signature",
        ))?;
        let bad_counter = || RelayError::BadCredential {
            code: "bad_counter",
            message: "Carekey-Counter must be a decimal u64 below 2^63",
        };
        let counter = counter
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(bad_counter)?;
        to_db("counter", counter).map_err(|_| bad_counter())?;
        let sig = headers
            .get(HEADER_SIGNATURE)
            .ok_or(RelayError::Unauthorized(
                "owner request needs Carekey-Signature",
            ))?;
        let sig: [u8; 64] = sig
            .to_str()
            .ok()
            .and_then(|s| encoding::unb64_fixed("Carekey-Signature", s).ok())
            .ok_or(RelayError::BadCredential {
                code: "bad_signature",
                message: "Carekey-Signature must be 64 bytes of unpadded base64url",
            })?;
        let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let message = owner_message(method.as_str(), pq, &config.origin, body, counter)?;
        Ok(Self {
            message,
            counter,
            signature: Signature::from_bytes(&sig),
        })
    }

    /// The counter of the request.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Verifies the signature under `owner_key` with `verify_strict`.
    pub fn verify(&self, owner_key: &[u8]) -> Result<()> {
        let key: [u8; 32] = owner_key
            .try_into()
            .map_err(|_| RelayError::Storage("stored owner key has a bad length".into()))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| RelayError::Unauthorized("owner signature does not verify"))?;
        key.verify_strict(&self.message, &self.signature)
            .map_err(|_| RelayError::Unauthorized("owner signature does not verify"))
    }
}

/// The locked share row.
#[derive(Debug, Clone)]
pub struct ShareRow {
    /// Owner key bytes.
    pub owner_key: Vec<u8>,
    /// Last accepted counter.
    pub counter: u64,
    /// Bytes stored (blobs and pending chunks).
    pub bytes_used: u64,
    /// Current manifest version (0: none yet).
    pub manifest_version: u64,
}

/// Locks and loads a share; 410 if deleted/expired, 404 if unknown.
pub fn lock_share(tx: &mut dyn Tx, share_id: &[u8; 16], now: u64) -> Result<ShareRow> {
    let sql = format!(
        "SELECT owner_key, counter, expires_at, bytes_used, manifest_version FROM shares \
         WHERE share_id = $1{}",
        tx.lock_clause()
    );
    let Some(row) = tx.query_opt(&sql, &[share_id.into()])? else {
        let gone = tx.query_opt(
            "SELECT until_at FROM share_tombstones WHERE share_id = $1",
            &[share_id.into()],
        )?;
        return Err(match gone {
            Some(_) => RelayError::Gone("share deleted or expired"),
            None => RelayError::NotFound("no such share"),
        });
    };
    if from_db(row[2].int()?)? <= now {
        return Err(RelayError::Gone("share expired"));
    }
    Ok(ShareRow {
        owner_key: row[0].bytes()?.to_vec(),
        counter: from_db(row[1].int()?)?,
        bytes_used: from_db(row[3].int()?)?,
        manifest_version: from_db(row[4].int()?)?,
    })
}

/// Locks the share, verifies the owner signature and moves the counter forward.
pub fn authorize_owner(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    ow: &OwnerWrite,
    now: u64,
) -> Result<ShareRow> {
    let mut sh = lock_share(tx, share_id, now)?;
    ow.verify(&sh.owner_key)?;
    if ow.counter <= sh.counter {
        return Err(RelayError::conflict(
            "counter_replayed",
            "Carekey-Counter must be greater than the share's last accepted counter (replayed or reordered request)",
        ));
    }
    tx.exec(
        "UPDATE shares SET counter = $2 WHERE share_id = $1",
        &[share_id.into(), to_db("counter", ow.counter)?.into()],
    )?;
    sh.counter = ow.counter;
    Ok(sh)
}
