//! The audit chain as clients read it (docs/relay.md "Audit chain"; relay-formats.md "Relay
//! audit chain"): the relay's key at `/.well-known/carekey-relay` and the owner's paged read of
//! a share's chain with the signed head. The chain itself (entries, appends, head messages,
//! the key) is `crate::audit`, below the fetch log; these handlers sit with the routes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use carekey_relay_api::{AuditEntry, AuditHead, AuditLog, WellKnown};
use ed25519_dalek::Signer;
use serde::Deserialize;

use crate::audit::{PAGE_BYTES, PAGE_SIZE, fresh_head_message, head_message};
use crate::encoding::{self, b64, from_db};
use crate::error::{RelayError, Result};
use crate::owner::{self, OwnerWrite};
use crate::rejection::{Path, Query};
use crate::state::AppState;

/// `GET /.well-known/carekey-relay`.
pub async fn well_known(State(state): State<AppState>) -> Json<WellKnown> {
    Json(WellKnown {
        version: 1,
        audit_key: b64(state.audit_key.verifying_key().as_bytes()),
    })
}

/// Query of the audit read.
#[derive(Debug, Deserialize)]
pub struct FromQuery {
    /// First sequence number wanted (default 1).
    #[serde(default)]
    pub from: Option<u64>,
    /// The reader's 32 random bytes (base64url): the head is also signed over them.
    #[serde(default)]
    pub challenge: Option<String>,
}

/// `GET /v1/shares/{share_id}/audit?from=N[&challenge=C]` (owner request).
pub async fn read_log(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    Query(q): Query<FromQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AuditLog>> {
    let share_id = encoding::parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let from = encoding::to_db("from", q.from.unwrap_or(1).max(1))?;
    let challenge = q
        .challenge
        .as_deref()
        .map(|c| encoding::unb64_fixed::<32>("challenge", c))
        .transpose()?;
    let now = state.clock.now();
    let (rows, seq, head) = state
        .storage
        .transact(move |tx| {
            let sh = owner::authorize_owner(tx, &share_id, &ow, now)?;
            let rows = tx.query(
                "SELECT seq, prev_hash, time, kind, body, entry_hash FROM audit \
                 WHERE share_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                &[(&share_id).into(), from.into(), PAGE_SIZE.into()],
            )?;
            let row = tx
                .query_opt(
                    "SELECT audit_seq, audit_head FROM shares WHERE share_id = $1",
                    &[(&share_id).into()],
                )?
                .ok_or(RelayError::NotFound("no such share"))?;
            let _ = sh;
            Ok((rows, from_db(row[0].int()?)?, row[1].array::<32>()?))
        })
        .await?;
    // Cut the page at PAGE_BYTES of bodies; the client reads on from the last entry it got.
    let sizes = rows
        .iter()
        .map(|r| {
            r.get(4)
                .map_or(Ok(0), |v| v.bytes().map(|b| b.len() as u64))
        })
        .collect::<Result<Vec<_>>>()?;
    let keep = crate::storage::page_len(sizes, PAGE_BYTES as u64);
    let entries = rows
        .into_iter()
        .take(keep)
        .map(|r| {
            Ok(AuditEntry {
                seq: from_db(r[0].int()?)?,
                prev_hash: b64(r[1].bytes()?),
                time: from_db(r[2].int()?)?,
                kind: u8::try_from(r[3].int()?)
                    .map_err(|_| RelayError::Storage("bad audit kind".into()))?,
                body: b64(r[4].bytes()?),
                entry_hash: b64(r[5].bytes()?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let sig = state.audit_key.sign(&head_message(&share_id, seq, &head));
    let fresh = challenge.map(|c| {
        let s = state
            .audit_key
            .sign(&fresh_head_message(&share_id, seq, &head, &c));
        b64(&s.to_bytes())
    });
    Ok(Json(AuditLog {
        entries,
        head: AuditHead {
            seq,
            entry_hash: b64(&head),
            signature: b64(&sig.to_bytes()),
            fresh_signature: fresh,
        },
    }))
}
