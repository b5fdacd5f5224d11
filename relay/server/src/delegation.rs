//! Delegation chains and patient notices (docs/protocol.md "Forwarding";
//! relay-formats.md "Scope", "Delegation link (version 1)").
//!
//! A delegated token is registered only with a root-first chain the relay verifies link by
//! link: signature under the parent key, keys chained, scope and expiry only narrowing, depth
//! strictly decreasing, every intermediate token still active. The relay learns only the
//! tree's shape; revoking any node revokes its subtree (see [`crate::token::revoke_subtree`]).
//!
//! A version-2 link also signs the child token's relay groups: below a scoped parent the
//! child must be scoped, with groups that are a subset of the parent's stored groups, so a
//! delegate can never read a blob its delegator could not (relay-formats.md "Scoped tokens").

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use carekey_relay_api::{self as api, DelegationRegistration, Notice, NoticeList};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

use crate::audit::{self, Kind};
use crate::credential::STATUS_ACTIVE;
use crate::encoding::{self, Reader, b64, from_db, parse_id, put_bytes32, to_db};
use crate::error::{RelayError, Result};
use crate::owner::{self, OwnerWrite};
use crate::scope::Scope;
use crate::state::AppState;
use crate::storage::{self, Tx};
use crate::token::{self, Group, NewToken};

/// Domain label of delegation link signatures.
pub const DELEGATION_LABEL: &[u8] = b"carekey/v1/delegation";
/// Delegation link format version without relay groups (the child reads what its parent
/// reads; refused below a scoped parent).
pub const LINK_VERSION: u8 = 1;
/// Delegation link format version with the child's relay groups.
pub const LINK_VERSION_SCOPED: u8 = 2;
/// Largest notice accepted with a delegation, in bytes.
pub const MAX_NOTICE_BYTES: usize = 64 * 1024;
// A page never holds more than the largest notice, so any notice can be read.
const _: () = assert!(MAX_NOTICE_BYTES <= api::NOTICE_PAGE_BYTES);

/// A parsed delegation link.
#[derive(Debug, Clone)]
pub struct Link {
    /// Raw link bytes.
    pub bytes: Vec<u8>,
    /// Share the link is for.
    pub share_id: [u8; 16],
    /// Delegating key.
    pub parent_key: [u8; 32],
    /// Delegate's key.
    pub child_key: [u8; 32],
    /// Delegate's token hash.
    pub child_token_hash: [u8; 32],
    /// Delegated scope.
    pub scope: Scope,
    /// Raw scope bytes.
    pub scope_bytes: Vec<u8>,
    /// The child token's relay groups (version 2; sorted, unique), `None` in version 1.
    pub groups: Option<Vec<Group>>,
    /// Expiry (Unix seconds).
    pub expires_at: u64,
    /// Remaining depth.
    pub depth: u8,
    signed_len: usize,
    signature: [u8; 64],
}

impl Link {
    /// Parses one version-1 link exactly.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let mut r = Reader::new("delegation link", &bytes);
        let version = r.u8()?;
        if version != LINK_VERSION && version != LINK_VERSION_SCOPED {
            return Err(RelayError::bad(
                "bad_version",
                "unknown delegation link version",
            ));
        }
        let share_id = r.array::<16>()?;
        let parent_key = r.array::<32>()?;
        let child_key = r.array::<32>()?;
        let child_token_hash = r.array::<32>()?;
        let scope_start = bytes.len() - r.remaining();
        let scope = Scope::read(&mut r)?;
        let scope_end = bytes.len() - r.remaining();
        let groups = if version == LINK_VERSION_SCOPED {
            let n = usize::from(r.u16()?);
            if n > carekey_relay_api::MAX_TOKEN_GROUPS {
                return Err(RelayError::bad(
                    "bad_groups",
                    "a delegation link names too many relay groups",
                ));
            }
            let mut g: Vec<Group> = Vec::with_capacity(n.min(r.remaining() / 16));
            for _ in 0..n {
                let t = r.array::<16>()?;
                if g.last().is_some_and(|p| *p >= t) {
                    return Err(RelayError::bad(
                        "bad_groups",
                        "relay groups must be sorted ascending without duplicates",
                    ));
                }
                g.push(t);
            }
            Some(g)
        } else {
            None
        };
        let expires_at = r.u64()?;
        let depth = r.u8()?;
        let signed_len = bytes.len() - r.remaining();
        let signature = r.array::<64>()?;
        r.finish()?;
        let scope_bytes = bytes
            .get(scope_start..scope_end)
            .ok_or_else(|| RelayError::bad("truncated", "delegation link is truncated"))?
            .to_vec();
        Ok(Self {
            share_id,
            parent_key,
            child_key,
            child_token_hash,
            scope,
            scope_bytes,
            groups,
            expires_at,
            depth,
            signed_len,
            signature,
            bytes,
        })
    }

    /// Verifies the link's signature under its `parent_key` (verify_strict).
    pub fn verify(&self) -> Result<()> {
        let bad = || {
            RelayError::forbidden(
                "bad_link_signature",
                "a delegation link signature does not verify",
            )
        };
        let key = VerifyingKey::from_bytes(&self.parent_key).map_err(|_| bad())?;
        let mut m = Vec::with_capacity(DELEGATION_LABEL.len() + 1 + self.signed_len);
        m.extend_from_slice(DELEGATION_LABEL);
        m.push(0);
        m.extend_from_slice(&self.bytes[..self.signed_len]);
        key.verify_strict(&m, &Signature::from_bytes(&self.signature))
            .map_err(|_| bad())
    }
}

/// The token a link's parent holds, as stored.
struct Parent {
    hash: [u8; 32],
    key: [u8; 32],
    scope: Scope,
    expires_at: u64,
    depth: u8,
    /// Stored relay groups (`None`: a share-wide token).
    groups: Option<Vec<Group>>,
}

fn load_active(tx: &mut dyn Tx, share_id: &[u8; 16], hash: &[u8; 32], now: u64) -> Result<Parent> {
    let row = tx
        .query_opt(
            "SELECT reader_key, scope, expires_at, depth, status FROM tokens \
             WHERE share_id = $1 AND token_hash = $2",
            &[share_id.into(), hash.into()],
        )?
        .ok_or_else(|| {
            RelayError::forbidden(
                "chain_unknown_token",
                "a token of the chain is not registered",
            )
        })?;
    let expires_at = from_db(row[2].int()?)?;
    if row[4].int()? != STATUS_ACTIVE || expires_at <= now {
        return Err(RelayError::Gone(
            "a token of the chain is revoked or expired",
        ));
    }
    Ok(Parent {
        hash: *hash,
        key: row[0].array()?,
        scope: Scope::parse(row[1].bytes()?)?,
        expires_at,
        depth: u8::try_from(row[3].int()?).map_err(|_| RelayError::Storage("bad depth".into()))?,
        groups: token::token_groups(tx, share_id, hash)?,
    })
}

/// Checks `chain` against the stored tokens and returns the new token to insert.
fn verify_chain(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    root_hash: &[u8; 32],
    chain: &[Link],
    now: u64,
) -> Result<NewToken> {
    let root_parent = tx
        .query_opt(
            "SELECT parent_hash FROM tokens WHERE share_id = $1 AND token_hash = $2",
            &[share_id.into(), root_hash.into()],
        )?
        .ok_or_else(|| {
            RelayError::forbidden("chain_unknown_token", "the root token is not registered")
        })?;
    if !root_parent[0].bytes()?.is_empty() {
        return Err(RelayError::forbidden(
            "chain_not_root",
            "root_token_hash names a delegated token",
        ));
    }
    let mut parent = load_active(tx, share_id, root_hash, now)?;
    let last = chain.len().saturating_sub(1);
    for (i, link) in chain.iter().enumerate() {
        if link.share_id != *share_id {
            return Err(RelayError::forbidden(
                "chain_share",
                "a delegation link names another share",
            ));
        }
        if link.parent_key != parent.key {
            return Err(RelayError::forbidden(
                "chain_broken",
                "a link's parent key is not the previous child key",
            ));
        }
        link.verify()?;
        if !link.scope.within(&parent.scope) {
            return Err(RelayError::forbidden(
                "delegation_widens_scope",
                "a delegation link widens the scope",
            ));
        }
        // Below a scoped parent: a scoped child within the parent's groups. Below a share-wide
        // parent (registered before scoped tokens): anything, as the child reads no more.
        if let Some(pg) = &parent.groups {
            match &link.groups {
                Some(cg) if cg.iter().all(|g| pg.binary_search(g).is_ok()) => {}
                _ => {
                    return Err(RelayError::forbidden(
                        "delegation_widens_groups",
                        "a delegation link's relay groups are not within its parent's",
                    ));
                }
            }
        }
        if link.expires_at > parent.expires_at {
            return Err(RelayError::forbidden(
                "delegation_widens_expiry",
                "a delegation link outlives its parent",
            ));
        }
        if link.depth >= parent.depth {
            return Err(RelayError::forbidden(
                "delegation_depth",
                "a delegation link does not reduce the depth",
            ));
        }
        if i < last {
            let next = load_active(tx, share_id, &link.child_token_hash, now)?;
            let row = tx
                .query_opt(
                    "SELECT parent_hash FROM tokens WHERE share_id = $1 AND token_hash = $2",
                    &[share_id.into(), (&link.child_token_hash).into()],
                )?
                .ok_or_else(|| {
                    RelayError::forbidden(
                        "chain_unknown_token",
                        "a token of the chain is not registered",
                    )
                })?;
            if row[0].bytes()? != parent.hash.as_slice() || next.key != link.child_key {
                return Err(RelayError::forbidden(
                    "chain_mismatch",
                    "the chain does not match the registered tokens",
                ));
            }
            parent = next;
        } else {
            if link.expires_at <= now {
                return Err(RelayError::bad(
                    "bad_expiry",
                    "the delegated token is already expired",
                ));
            }
            VerifyingKey::from_bytes(&link.child_key)
                .map_err(|_| RelayError::bad("bad_key", "child key is not a valid Ed25519 key"))?;
            return Ok(NewToken {
                token_hash: link.child_token_hash,
                reader_key: link.child_key,
                scope: link.scope_bytes.clone(),
                expires_at: link.expires_at,
                depth: link.depth,
                parent_hash: parent.hash.to_vec(),
                groups: link.groups.clone(),
            });
        }
    }
    Err(RelayError::bad(
        "empty_chain",
        "the delegation chain is empty",
    ))
}

/// `POST /v1/shares/{share_id}/delegations` (JSON [`DelegationRegistration`]; authenticated
/// by the chain's signatures).
pub async fn register(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    body: Bytes,
) -> Result<StatusCode> {
    let share_id = parse_id("share id", &share_hex)?;
    let req: DelegationRegistration = encoding::parse_json(&body)?;
    let root_hash: [u8; 32] = encoding::unb64_fixed("root_token_hash", &req.root_token_hash)?;
    if req.chain.is_empty() {
        return Err(RelayError::bad(
            "empty_chain",
            "the delegation chain is empty",
        ));
    }
    if req.chain.len() > usize::from(state.config.max_delegation_depth) {
        return Err(RelayError::forbidden(
            "delegation_depth",
            "the delegation chain is longer than the relay allows",
        ));
    }
    let chain = req
        .chain
        .iter()
        .map(|l| Link::parse(encoding::unb64("delegation link", l)?))
        .collect::<Result<Vec<_>>>()
        // The chain is this request's credential: one that does not parse is answered like
        // one that does not verify (401), as for bearer tokens and owner signatures.
        .map_err(|_| RelayError::BadCredential {
            code: "bad_link",
            message: "a delegation link is not a well-formed link (relay-formats.md \"Delegation link\")",
        })?;
    // The notice is what lets the patient see the delegation at all (docs/protocol.md
    // "Forwarding"): without one, a doctor under `allowed` could delegate unseen.
    let notice = encoding::unb64("notice", &req.notice)?;
    if notice.is_empty() {
        return Err(RelayError::bad(
            "notice_required",
            "a delegation must carry a notice sealed to the patient",
        ));
    }
    if notice.len() > MAX_NOTICE_BYTES {
        return Err(RelayError::TooLarge("notice larger than the relay's limit"));
    }
    let mut audit_body = Vec::new();
    audit_body.extend_from_slice(&(chain.len() as u16).to_be_bytes());
    for l in &chain {
        put_bytes32(&mut audit_body, &l.bytes)?;
    }
    let now = state.clock.now();
    state
        .storage
        .transact(move |tx| {
            owner::lock_share(tx, &share_id, now)?;
            let new = verify_chain(tx, &share_id, &root_hash, &chain, now)?;
            token::insert(tx, &share_id, new)?;
            audit::append(tx, &share_id, now, Kind::DelegationRegistered, &audit_body)?;
            // In the same transaction as the audit entry: the patient never sees a
            // registration whose notice is not there yet.
            let row = tx
                .query_opt(
                    "SELECT notice_seq FROM shares WHERE share_id = $1",
                    &[(&share_id).into()],
                )?
                .ok_or(RelayError::NotFound("no such share"))?;
            let seq = row[0].int()? + 1;
            tx.exec(
                "INSERT INTO notices (share_id, seq, time, body) VALUES ($1, $2, $3, $4)",
                &[
                    (&share_id).into(),
                    seq.into(),
                    to_db("now", now)?.into(),
                    notice.into(),
                ],
            )?;
            tx.exec(
                "UPDATE shares SET notice_seq = $2 WHERE share_id = $1",
                &[(&share_id).into(), seq.into()],
            )?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::CREATED)
}

/// Query of a notice read.
#[derive(Debug, Deserialize)]
pub struct AfterQuery {
    /// Return notices with `seq > after` (default 0).
    #[serde(default)]
    pub after: Option<u64>,
}

/// `GET /v1/shares/{share_id}/notices?after=N` (owner request).
pub async fn notices(
    State(state): State<AppState>,
    Path(share_hex): Path<String>,
    Query(q): Query<AfterQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<NoticeList>> {
    let share_id = parse_id("share id", &share_hex)?;
    let ow = OwnerWrite::from_request(&state.config, &method, &uri, &headers, &body)?;
    let after = to_db("after", q.after.unwrap_or(0))?;
    let now = state.clock.now();
    let rows = state
        .storage
        .transact(move |tx| {
            owner::authorize_owner(tx, &share_id, &ow, now)?;
            storage::read_page(
                tx,
                "notices",
                "share_id",
                &share_id,
                after,
                api::NOTICE_PAGE_ITEMS,
                api::NOTICE_PAGE_BYTES,
            )
        })
        .await?;
    let notices = rows
        .into_iter()
        .map(|r| {
            Ok(Notice {
                seq: from_db(r[0].int()?)?,
                time: from_db(r[1].int()?)?,
                body: b64(r[2].bytes()?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Json(NoticeList { notices }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Receipt;

    fn ids(n: u8) -> Vec<[u8; 16]> {
        (0..n).map(|i| [i; 16]).collect()
    }

    fn enc(categories: u32, records: &[[u8; 16]]) -> Vec<u8> {
        let mut s = categories.to_be_bytes().to_vec();
        s.extend_from_slice(&(records.len() as u16).to_be_bytes());
        for r in records {
            s.extend_from_slice(r);
        }
        s
    }

    #[test]
    fn scope_within_rules() {
        let p = Scope::parse(&enc(0b101, &ids(3))).expect("parent");
        assert!(Scope::parse(&enc(0b001, &ids(2))).expect("c").within(&p));
        assert!(Scope::parse(&enc(0, &[])).expect("c").within(&p));
        assert!(!Scope::parse(&enc(0b010, &[])).expect("c").within(&p));
        assert!(!Scope::parse(&enc(0b001, &[[9; 16]])).expect("c").within(&p));
    }

    #[test]
    fn scope_rejects_unsorted_duplicates_and_trailing() {
        assert!(Scope::parse(&enc(1, &[[2; 16], [1; 16]])).is_err());
        assert!(Scope::parse(&enc(1, &[[1; 16], [1; 16]])).is_err());
        let mut s = enc(1, &[]);
        s.push(0);
        assert!(Scope::parse(&s).is_err());
        assert!(Scope::parse(&[0, 0, 0]).is_err());
    }

    /// Parsers never panic on arbitrary bytes (truncations of a valid link and random noise).
    #[test]
    fn parsers_never_panic() {
        let mut link = vec![LINK_VERSION];
        link.extend_from_slice(&[7; 16 + 32 + 32 + 32]);
        link.extend_from_slice(&enc(3, &ids(2)));
        link.extend_from_slice(&[0; 9]);
        link.extend_from_slice(&[1; 64]);
        assert!(Link::parse(link.clone()).is_ok());
        for n in 0..link.len() {
            assert!(Link::parse(link[..n].to_vec()).is_err());
            let _ = Receipt::parse(link[..n].to_vec());
            let _ = Scope::parse(&link[..n]);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x & 0xff) as u8
                })
                .collect();
            let _ = Link::parse(bytes.clone());
            let _ = Receipt::parse(bytes.clone());
            let _ = Scope::parse(&bytes);
        }
    }
}
