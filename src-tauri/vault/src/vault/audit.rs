//! The local audit chain (docs/vault.md "Local audit chain").

use carekey_core::audit::{self, ChainKind, Entry, Head};
use carekey_core::envelope::ObjectKind;
use carekey_core::wire::Wire;
use rusqlite::{Connection, params};

use super::{T_AUDIT, Vault, header_get, header_put, now_secs, open_bytes, seal_bytes, tagged};
use crate::crypto::VaultKeys;
use crate::error::{Result, VaultError};
use crate::types::*;

impl Vault {
    /// Appends an event to the local audit chain (the client logs shares and revocations).
    pub fn log_event(&mut self, event: &AuditEvent) -> Result<()> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        audit_append(&tx, &st.keys, &self.vault_id, event)?;
        tx.commit()?;
        Ok(())
    }

    /// Verifies the whole local chain and its signed head; names the first bad entry.
    pub fn verify_audit(&mut self) -> Result<Head> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let (head, _) = load_audit(&self.conn, &st.keys, &self.vault_id)?;
        Ok(head)
    }

    /// The decrypted audit log (verified first).
    pub fn audit_log(&mut self) -> Result<Vec<AuditRecord>> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let (_, recs) = load_audit(&self.conn, &st.keys, &self.vault_id)?;
        Ok(recs)
    }
}

pub(super) fn read_head(conn: &Connection) -> Result<(Head, Option<[u8; 64]>)> {
    match header_get(conn, "audit_head")? {
        None => Ok((Head::EMPTY, None)),
        Some(b) if b.len() == 8 + 32 + 64 => {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&b[..8]);
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&b[8..40]);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&b[40..]);
            Ok((
                Head {
                    seq: u64::from_be_bytes(seq),
                    hash,
                },
                Some(sig),
            ))
        }
        Some(_) => Err(VaultError::AuditBroken {
            seq: 0,
            reason: "signed head is malformed",
        }),
    }
}

pub(super) fn audit_append(
    tx: &Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    event: &AuditEvent,
) -> Result<()> {
    let (head, _) = read_head(tx)?;
    let seq = head.seq + 1;
    let pt = serde_json::to_vec(event).map_err(|_| VaultError::InvalidArgument("audit event"))?;
    let body = seal_bytes(
        &keys.vault,
        ObjectKind::VaultValue,
        &tagged(T_AUDIT, &seq.to_be_bytes()),
        &pt,
    );
    let mut chain = audit::Chain::resume(ChainKind::Local, *vault_id, head);
    let entry = chain.append(now_secs(), event.kind(), body);
    let new_head = chain.head();
    let sig = new_head.sign(ChainKind::Local, vault_id, keys.identity.signing());
    tx.execute(
        "INSERT INTO audit(seq, entry) VALUES (?1, ?2)",
        params![i64::try_from(seq).unwrap_or(i64::MAX), entry.to_bytes()],
    )?;
    let mut h = Vec::with_capacity(104);
    h.extend_from_slice(&new_head.seq.to_be_bytes());
    h.extend_from_slice(&new_head.hash);
    h.extend_from_slice(&sig);
    header_put(tx, "audit_head", &h)
}

pub(super) fn load_audit(
    conn: &Connection,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
) -> Result<(Head, Vec<AuditRecord>)> {
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT seq, entry FROM audit ORDER BY seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut recs = Vec::with_capacity(rows.len());
    for (seq, bytes) in rows {
        let seq = u64::try_from(seq).unwrap_or(0);
        let broken = |reason| VaultError::AuditBroken { seq, reason };
        let e = Entry::from_bytes(&bytes).map_err(|_| broken("entry is not decodable"))?;
        if e.seq != seq {
            return Err(broken("entry was moved to another position"));
        }
        let pt = open_bytes(
            &keys.vault,
            ObjectKind::VaultValue,
            &tagged(T_AUDIT, &seq.to_be_bytes()),
            &e.body,
        )
        .map_err(|_| broken("entry body was altered"))?;
        let event: AuditEvent =
            serde_json::from_slice(&pt).map_err(|_| broken("entry body is not an event"))?;
        if event.kind() != e.kind {
            return Err(broken("entry kind was altered"));
        }
        recs.push(AuditRecord {
            seq,
            time: e.time,
            event,
        });
        entries.push(e);
    }
    let head =
        audit::verify_extends(ChainKind::Local, vault_id, Head::EMPTY, &entries).map_err(|e| {
            match e {
                carekey_core::Error::AuditChain { seq, reason } => {
                    // A broken link at entry n means entry n-1 (or n's link) was altered.
                    VaultError::AuditBroken { seq, reason }
                }
                other => VaultError::Core(other),
            }
        })?;
    let (signed, sig) = read_head(conn)?;
    if signed != head {
        return Err(VaultError::AuditBroken {
            seq: head.seq.min(signed.seq) + 1,
            reason: "log does not end at the signed head (entries removed, added or altered)",
        });
    }
    let sig = sig.ok_or(VaultError::AuditBroken {
        seq: head.seq,
        reason: "signed head is missing",
    })?;
    head.verify(
        ChainKind::Local,
        vault_id,
        &keys.identity.signing_public(),
        &sig,
    )
    .map_err(|_| VaultError::AuditBroken {
        seq: head.seq,
        reason: "head signature is invalid",
    })?;
    Ok((head, recs))
}
