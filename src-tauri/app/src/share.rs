//! Turning the records a patient chose in the vault into share items (docs/protocol.md
//! "Shares"), and the one mapping between the vault's record categories and a grant's scope
//! categories.
//!
//! ## Categories
//! The vault groups records for the UI by [`RecordGroup`] (12 values: it tells vitals from
//! other observations and people from other resources); a grant's scope is a set of
//! [`Category`] bits (11 values, docs/protocol.md "Scope"). [`grant_category`] is the only
//! place that maps one onto the other; a record a doctor wrote back (origin `received`) is
//! always in `notes`, whatever its resource type.
//!
//! ## Ids
//! A share item's 16-byte `record_id` is derived from the vault's 32-byte record id, which is
//! itself a MAC of the resource's type and id under the vault's blind key, so the share never
//! shows the relay or the doctor anything linkable to another share's ids:
//! `SHA-256(SHARE_ITEM_ID_LABEL || vault record id || u32 part)[..16]`, where part 0 is the
//! FHIR resource and part n ≥ 1 its n-th attachment. The same record shared twice gets the
//! same item id, so a doctor's copy replaces rather than duplicates it.

use std::collections::HashSet;

use carekey_client::patient::ShareItem;
use carekey_core::grant::Category;
use carekey_vault::fhir::RecordGroup;
use carekey_vault::{Origin, RecordId, RecordSummary, Vault};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{AppError, Result};
use crate::ipc::ShareCategory;

/// Domain label of share item ids (see the module docs).
pub const SHARE_ITEM_ID_LABEL: &[u8] = b"carekey-app/share-item-id/v1\0";

/// The grant category of a vault record (the module docs' mapping).
pub fn grant_category(summary: &RecordSummary) -> Category {
    if summary.origin == Origin::Received {
        return Category::Notes;
    }
    match summary.category {
        RecordGroup::Patient => Category::Demographics,
        RecordGroup::Condition => Category::Conditions,
        RecordGroup::Allergy => Category::Allergies,
        RecordGroup::Medication => Category::Medications,
        RecordGroup::Immunization => Category::Immunizations,
        RecordGroup::Observation | RecordGroup::Vitals => Category::Observations,
        RecordGroup::Procedure => Category::Procedures,
        RecordGroup::Encounter => Category::Encounters,
        RecordGroup::Document => Category::Documents,
        RecordGroup::Directory | RecordGroup::Other => Category::Other,
    }
}

/// The grant category an IPC category names.
pub fn category_of(c: ShareCategory) -> Category {
    match c {
        ShareCategory::Allergies => Category::Allergies,
        ShareCategory::Conditions => Category::Conditions,
        ShareCategory::Medications => Category::Medications,
        ShareCategory::Immunizations => Category::Immunizations,
        ShareCategory::Procedures => Category::Procedures,
        ShareCategory::Observations => Category::Observations,
        ShareCategory::Documents => Category::Documents,
        ShareCategory::Encounters => Category::Encounters,
        ShareCategory::Notes => Category::Notes,
        ShareCategory::Demographics => Category::Demographics,
        ShareCategory::Other => Category::Other,
    }
}

/// The IPC name of a grant category (inverse of [`category_of`]).
pub fn share_category(c: Category) -> ShareCategory {
    match c {
        Category::Allergies => ShareCategory::Allergies,
        Category::Conditions => ShareCategory::Conditions,
        Category::Medications => ShareCategory::Medications,
        Category::Immunizations => ShareCategory::Immunizations,
        Category::Procedures => ShareCategory::Procedures,
        Category::Observations => ShareCategory::Observations,
        Category::Documents => ShareCategory::Documents,
        Category::Encounters => ShareCategory::Encounters,
        Category::Notes => ShareCategory::Notes,
        Category::Demographics => ShareCategory::Demographics,
        Category::Other => ShareCategory::Other,
    }
}

/// The categories whose bits a scope sets, in the order of the category list.
pub fn scope_categories(scope: &carekey_core::grant::Scope) -> Vec<ShareCategory> {
    Category::ALL
        .iter()
        .copied()
        .filter(|c| scope.categories() & c.bit() != 0)
        .map(share_category)
        .collect()
}

/// The share item id of part `part` of a vault record (module docs).
pub fn item_id(record: &RecordId, part: u32) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(SHARE_ITEM_ID_LABEL);
    h.update(record.0);
    h.update(part.to_be_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// What the patient picked on the share screen.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Whole categories.
    pub categories: Vec<Category>,
    /// Single records.
    pub records: HashSet<RecordId>,
}

impl Selection {
    fn wants(&self, s: &RecordSummary) -> bool {
        self.records.contains(&s.id) || self.categories.contains(&grant_category(s))
    }
}

/// The items of a share and what they hold.
#[derive(Debug)]
pub struct ShareItems {
    /// FHIR records then, after each, its attachments.
    pub items: Vec<ShareItem>,
    /// FHIR records among them.
    pub records: usize,
    /// Attachments among them.
    pub attachments: usize,
    /// The grant categories present (what the done screen names).
    pub categories: Vec<Category>,
}

/// Reads the chosen records out of the vault as share items. Attachments travel as their own
/// chunked items (the vault stores them apart; the resource goes without its inline `data`).
/// Fails with `invalid_input` when nothing matches, and `not_found` for a chosen record that
/// is not in the vault.
pub fn items_from_vault(vault: &mut Vault, sel: &Selection) -> Result<ShareItems> {
    let listing = vault.list()?;
    let known: HashSet<&RecordId> = listing.records.iter().map(|r| &r.id).collect();
    if sel.records.iter().any(|r| !known.contains(r)) {
        return Err(AppError::not_found("a chosen record"));
    }
    let mut out = ShareItems {
        items: Vec::new(),
        records: 0,
        attachments: 0,
        categories: Vec::new(),
    };
    for s in listing.records.iter().filter(|s| sel.wants(s)) {
        let category = grant_category(s);
        if !out.categories.contains(&category) {
            out.categories.push(category);
        }
        let record = vault.get_record(&s.id)?;
        let mut resource = record.resource;
        strip_inline_data(&mut resource);
        let data = Zeroizing::new(serde_json::to_vec(&resource).map_err(|_| {
            AppError::new("internal", "a record could not be prepared for sharing")
        })?);
        out.items.push(ShareItem {
            record_id: item_id(&s.id, 0),
            category,
            title: s.fhir_type.clone(),
            data,
            attachment: false,
        });
        out.records += 1;
        for (n, a) in s.attachments.iter().enumerate() {
            let part = u32::try_from(n + 1).unwrap_or(u32::MAX);
            let bytes = vault.attachment(&a.id)?;
            out.items.push(ShareItem {
                record_id: item_id(&s.id, part),
                category,
                title: attachment_title(s, a.title.as_deref(), a.content_type.as_deref(), n),
                data: bytes,
                attachment: true,
            });
            out.attachments += 1;
        }
    }
    if out.items.is_empty() {
        return Err(AppError::invalid_input(
            "selection: no record is in the chosen categories",
        ));
    }
    out.categories.sort_by_key(|c| *c as u8);
    Ok(out)
}

/// Removes inline attachment bytes the vault keeps in its attachment store (`Binary.data`,
/// `content[].attachment.data`, as `carekey_vault` takes them out at import): they travel as
/// attachment items (and the doctor session hands received attachments out apart from their
/// resource). Anything else stays in the resource: a `DiagnosticReport.presentedForm[].data`
/// is not in the store, so removing it here would share the report without its form.
pub(crate) fn strip_inline_data(r: &mut Value) {
    if r.get("resourceType").and_then(Value::as_str) == Some("Binary")
        && let Some(o) = r.as_object_mut()
    {
        o.remove("data");
    }
    if let Some(Value::Array(items)) = r.get_mut("content") {
        for it in items.iter_mut() {
            if let Some(o) = it.get_mut("attachment").and_then(Value::as_object_mut) {
                o.remove("data");
            }
        }
    }
}

/// A file name for an attachment (the doctor's app derives the content type from it; the
/// doctor session names received attachments with it too).
pub(crate) fn attachment_title(
    s: &RecordSummary,
    title: Option<&str>,
    content_type: Option<&str>,
    n: usize,
) -> String {
    let ext = match content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
    {
        Some("application/pdf") => ".pdf",
        Some("image/png") => ".png",
        Some("image/jpeg") => ".jpg",
        Some("text/plain") => ".txt",
        Some("text/html") => ".html",
        _ => ".bin",
    };
    match title {
        Some(t) if !t.trim().is_empty() && t.chars().count() <= 120 => {
            if t.contains('.') {
                t.to_owned()
            } else {
                format!("{t}{ext}")
            }
        }
        _ => format!("{}-attachment-{}{ext}", s.fhir_type, n + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ipc_category_maps_both_ways() {
        for c in Category::ALL {
            assert_eq!(category_of(share_category(c)), c);
        }
    }

    #[test]
    fn item_ids_are_stable_and_distinct() {
        let r = RecordId([7; 32]);
        assert_eq!(item_id(&r, 0), item_id(&r, 0));
        assert_ne!(item_id(&r, 0), item_id(&r, 1));
        assert_ne!(item_id(&r, 0), item_id(&RecordId([8; 32]), 0));
    }

    #[test]
    fn inline_data_is_stripped() {
        let mut v = serde_json::json!({"resourceType": "DocumentReference",
            "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBE"}}]});
        strip_inline_data(&mut v);
        assert!(v["content"][0]["attachment"].get("data").is_none());
        assert_eq!(
            v["content"][0]["attachment"]["contentType"],
            "application/pdf"
        );
        // Not in the vault's attachment store: it stays, or the report loses its form.
        let mut r = serde_json::json!({"resourceType": "DiagnosticReport",
            "presentedForm": [{"contentType": "application/pdf", "data": "JVBE"}]});
        strip_inline_data(&mut r);
        assert_eq!(r["presentedForm"][0]["data"], "JVBE");
    }
}
