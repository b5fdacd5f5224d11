//! FHIR import (one transaction per import) and export (docs/vault.md "Import / export").

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::Vault;
use super::audit::audit_append;
use super::index::{build_index_without, updated_index};
use super::records::{Prov, all_ids, put_record, read_record};
use super::shares::{delete_source, register_source};
use crate::error::{Result, VaultError};
use crate::fhir::{self, Item, NdjsonFile};
use crate::types::*;

impl Vault {
    /// Imports a FHIR Bundle in one transaction: all entries or none.
    pub fn import_bundle(
        &mut self,
        json: &[u8],
        opts: &ImportOptions,
        ctl: &mut ImportControl<'_>,
    ) -> Result<ImportReport> {
        let items = fhir::parse_bundle(json)?;
        self.import_items(items, opts, ctl, false, None)
    }

    /// [`Vault::import_bundle`] into a namespace of its own (docs/vault.md, the `records` table): each
    /// record's id is the MAC of `ns:<hex namespace>/Type/id` (not `Type/id` alone), so
    /// the same `Type/id` imported plainly, received through a share (`share:<tag>/`) or in
    /// another namespace is another record. The doctor app keeps each SMART Health Link's or
    /// Card's records so (namespace derived under its own label). With `opts.share` set, the
    /// share's namespace applies instead.
    pub fn import_bundle_namespaced(
        &mut self,
        json: &[u8],
        opts: &ImportOptions,
        namespace: &[u8; 16],
        ctl: &mut ImportControl<'_>,
    ) -> Result<ImportReport> {
        let items = fhir::parse_bundle(json)?;
        self.import_items(items, opts, ctl, false, Some(*namespace))
    }

    /// Imports FHIR bulk NDJSON files in one transaction: all lines of all files or none.
    pub fn import_ndjson(
        &mut self,
        files: &[NdjsonFile],
        opts: &ImportOptions,
        ctl: &mut ImportControl<'_>,
    ) -> Result<ImportReport> {
        let mut items = Vec::new();
        for f in files {
            items.extend(fhir::parse_ndjson(&f.name, &f.data)?);
        }
        self.import_items(items, opts, ctl, false, None)
    }

    /// One transaction for the whole import; with `replace`, the records of `opts.share` are
    /// deleted first in the same transaction ([`Vault::replace_share`]).
    pub(super) fn import_items(
        &mut self,
        items: Vec<Item>,
        opts: &ImportOptions,
        ctl: &mut ImportControl<'_>,
        replace: bool,
        namespace: Option<[u8; 16]>,
    ) -> Result<ImportReport> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let source_label = opts.source.clone().unwrap_or_else(|| "import".to_owned());
        let tx = self.conn.transaction()?;
        // What the write removes and adds, to update the search index in place afterwards.
        let mut removed: HashSet<RecordId> = HashSet::new();
        let mut added: Vec<RecordSummary> = Vec::with_capacity(items.len());
        let share = match &opts.share {
            Some(s) => {
                if replace {
                    let tag = st.keys.bi_sources.mac(&s.share_id);
                    let ids: Vec<Vec<u8>> = tx
                        .prepare_cached("SELECT id FROM records WHERE source = ?1")?
                        .query_map([&tag[..]], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    removed.extend(
                        ids.into_iter()
                            .filter_map(|id| <[u8; 32]>::try_from(id).ok().map(RecordId)),
                    );
                    delete_source(
                        &tx,
                        &st.keys,
                        &self.vault_id,
                        &s.share_id,
                        PurgeReason::Replaced,
                    )?;
                }
                Some(register_source(&tx, &st.keys, s)?)
            }
            None => None,
        };
        let total = items.len();
        let mut report = ImportReport::default();
        for (i, item) in items.into_iter().enumerate() {
            if ctl.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(VaultError::Cancelled);
            }
            if i % 64 == 0
                && let Some(p) = ctl.progress.as_mut()
            {
                p(ImportProgress { done: i, total });
            }
            let ty = item
                .resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let prov = match &share {
                Some((tag, s)) => Prov::Shared(*tag, s.clone()),
                None => Prov::Imported(source_label.clone(), namespace),
            };
            let (summary, replaced, atts) = put_record(&tx, &st.keys, item.resource, prov)
                .map_err(|e| match e {
                    VaultError::InvalidArgument(r) => VaultError::Import {
                        at: item.at.clone(),
                        reason: r.to_owned(),
                    },
                    other => other,
                })?;
            // A record imported again replaces its earlier row (and index entry).
            removed.insert(summary.id);
            added.push(summary);
            report.records += 1;
            report.replaced += usize::from(replaced);
            report.attachments += atts;
            *report.by_type.entry(ty).or_default() += 1;
        }
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::Imported {
                source: source_label,
                records: report.records,
            },
        )?;
        tx.commit()?;
        // Updated now, while the import's progress is still on screen, rather than on the
        // next listing: the timeline shown right after an import of thousands of records
        // would otherwise wait for every summary to be decrypted again (docs/vault.md
        // "Search"). The summaries this write made are not decrypted again: they join the
        // index already built, or one built from the other rows (a doctor's check-up stores
        // thousands of records and shows the chart at once). A failure to build only leaves
        // it to be built lazily.
        let kept = match st.index.take() {
            Some(old) => Some(old),
            None => build_index_without(&self.conn, &st.keys, &removed).ok(),
        };
        st.index = kept.map(|old| updated_index(old, &removed, added));
        if let Some(p) = ctl.progress.as_mut() {
            p(ImportProgress { done: total, total });
        }
        Ok(report)
    }

    /// Exports all records (or the chosen ones) as a FHIR `collection` Bundle (JSON bytes).
    pub fn export_bundle(&mut self, ids: Option<&[RecordId]>) -> Result<Vec<u8>> {
        self.touch()?;
        let st = self.state.as_mut().ok_or(VaultError::Locked)?;
        let ids: Vec<RecordId> = match ids {
            Some(ids) => ids.to_vec(),
            None => all_ids(&self.conn)?,
        };
        let mut resources = Vec::with_capacity(ids.len());
        for id in &ids {
            resources.push(read_record(&self.conn, &st.keys, id)?.resource);
        }
        let bundle = fhir::make_bundle(resources);
        let tx = self.conn.transaction()?;
        audit_append(
            &tx,
            &st.keys,
            &self.vault_id,
            &AuditEvent::Exported { records: ids.len() },
        )?;
        tx.commit()?;
        serde_json::to_vec_pretty(&bundle)
            .map_err(|_| VaultError::InvalidArgument("bundle could not be encoded"))
    }
}
