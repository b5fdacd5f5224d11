//! Share sources of the doctor app: records tagged by share, purged on revoke or expiry
//! (docs/vault.md "Import / export", doctor app).

use carekey_core::envelope::ObjectKind;
use rusqlite::{Connection, Transaction, params};
use zeroize::Zeroizing;

use super::audit::audit_append;
use super::records::read_summary;
use super::{T_SOURCE, Vault, hex, open_bytes, seal_bytes, tagged, tampered};
use crate::crypto::VaultKeys;
use crate::error::{Result, VaultError};
use crate::types::*;

impl Vault {
    /// Removes every record received through a share (revoked or expired), logging `reason`.
    /// Returns how many.
    pub fn purge_source(&mut self, share_id: &[u8; 16], reason: PurgeReason) -> Result<usize> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let tx = self.conn.transaction()?;
        let n = delete_source(&tx, &st.keys, &self.vault_id, share_id, reason)?;
        tx.commit()?;
        st.index = None;
        Ok(n)
    }

    /// Replaces the stored copy of a share (doctor app) in one transaction: the share's
    /// previous records are deleted (logged as purged, reason `Replaced`) and the Bundle is
    /// imported tagged with `opts.share`, which must be set. All or nothing: a malformed entry
    /// or a cancel leaves the previous copy in place.
    pub fn replace_share(
        &mut self,
        json: &[u8],
        opts: &ImportOptions,
        ctl: &mut ImportControl<'_>,
    ) -> Result<ImportReport> {
        if opts.share.is_none() {
            return Err(VaultError::InvalidArgument(
                "replacing a share needs the share source",
            ));
        }
        let items = crate::fhir::parse_bundle(json)?;
        self.import_items(items, opts, ctl, true, None)
    }

    /// [`Vault::replace_share`] for resources already parsed (the doctor's client holds the
    /// fetched records as JSON values): the same checks per resource and the same single
    /// transaction, without a Bundle encoded only to be parsed again.
    pub fn replace_share_resources(
        &mut self,
        resources: Vec<serde_json::Value>,
        opts: &ImportOptions,
        ctl: &mut ImportControl<'_>,
    ) -> Result<ImportReport> {
        if opts.share.is_none() {
            return Err(VaultError::InvalidArgument(
                "replacing a share needs the share source",
            ));
        }
        let items = crate::fhir::items_of(resources)?;
        self.import_items(items, opts, ctl, true, None)
    }

    /// The records received through one share (doctor app), newest first, through the
    /// `records.source` blind index (docs/vault.md "Schema"): nothing else is decrypted.
    pub fn list_source(&mut self, share_id: &[u8; 16]) -> Result<Vec<RecordSummary>> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let tag = st.keys.bi_sources.mac(share_id);
        let ids: Vec<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT id FROM records WHERE source = ?1 ORDER BY rowid")?
            .query_map([&tag[..]], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let rid = RecordId(
                id.try_into()
                    .map_err(|_| VaultError::BadHeader("record id length"))?,
            );
            out.push(read_summary(&self.conn, &st.keys, &rid)?);
        }
        out.sort_by(|a, b| b.date.cmp(&a.date));
        Ok(out)
    }

    /// The shares this vault holds records of (doctor app): share id, expiry, label.
    pub fn sources(&mut self) -> Result<Vec<ShareSource>> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        read_sources(&self.conn, &st.keys)
    }

    /// Purges every share whose expiry is at or before `now` (Unix seconds). Returns how many
    /// records were removed.
    pub fn purge_expired(&mut self, now: u64) -> Result<usize> {
        let expired: Vec<[u8; 16]> = self
            .sources()?
            .into_iter()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.share_id)
            .collect();
        let mut n = 0;
        for id in expired {
            n += self.purge_source(&id, PurgeReason::Expired)?;
        }
        Ok(n)
    }
}

pub(super) fn register_source(
    tx: &Transaction<'_>,
    keys: &VaultKeys,
    s: &ShareSource,
) -> Result<([u8; 32], ShareSource)> {
    let tag = keys.bi_sources.mac(&s.share_id);
    let pt = Zeroizing::new(
        serde_json::to_vec(s).map_err(|_| VaultError::InvalidArgument("share source"))?,
    );
    let value = seal_bytes(
        &keys.vault,
        ObjectKind::VaultValue,
        &tagged(T_SOURCE, &tag),
        &pt,
    );
    tx.execute(
        "INSERT INTO sources(tag, value) VALUES (?1, ?2)
         ON CONFLICT(tag) DO UPDATE SET value = excluded.value",
        params![&tag[..], value],
    )?;
    Ok((tag, s.clone()))
}

/// Deletes a share's records and its source row and logs the purge, inside `tx`.
pub(super) fn delete_source(
    tx: &Transaction<'_>,
    keys: &VaultKeys,
    vault_id: &[u8; 16],
    share_id: &[u8; 16],
    reason: PurgeReason,
) -> Result<usize> {
    let tag = keys.bi_sources.mac(share_id);
    let n = tx.execute("DELETE FROM records WHERE source = ?1", [&tag[..]])?;
    tx.execute("DELETE FROM sources WHERE tag = ?1", [&tag[..]])?;
    audit_append(
        tx,
        keys,
        vault_id,
        &AuditEvent::Purged {
            share_id: hex(share_id),
            records: n,
            reason,
        },
    )?;
    Ok(n)
}

/// Every share source row, opened (a row that fails to open is named as tampered).
fn read_sources(conn: &Connection, keys: &VaultKeys) -> Result<Vec<ShareSource>> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
        .prepare("SELECT tag, value FROM sources ORDER BY rowid")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (tag, value) in rows {
        let pt = open_bytes(
            &keys.vault,
            ObjectKind::VaultValue,
            &tagged(T_SOURCE, &tag),
            &value,
        )
        .map_err(|_| tampered("share source", &tag))?;
        let s: ShareSource =
            serde_json::from_slice(&pt).map_err(|_| tampered("share source", &tag))?;
        out.push(s);
    }
    Ok(out)
}
