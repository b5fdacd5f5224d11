//! The doctor's local copy of shared records (DESIGN.md "Shares, epochs, relay objects":
//! "Expiry is enforced twice"; "Revocation = key rotation": "the revoked doctor's app gets 410
//! and purges").
//!
//! Fetched records go into the doctor's own encrypted vault tagged with the share and the
//! grant's expiry ([`carekey_vault::ShareSource`]). A 410 purges them at once, the expiry on
//! the device's clock purges them even offline, and each purge is logged in the vault's audit
//! chain with its reason.

use carekey_core::keys::Card;
use carekey_vault::{ImportControl, ImportOptions, PurgeReason, ShareSource, Vault};
use serde_json::{Value, json};

use crate::doctor::{Doctor, SharedRecord};
use crate::error::{ClientError, Result};
use crate::now;
use crate::progress::{Cancel, ProgressSink};

/// What one [`Doctor::sync_to_vault`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The share was fetched and verified; the vault now holds this copy of it.
    Stored {
        /// FHIR resources stored.
        records: usize,
        /// Attachments stored.
        attachments: usize,
    },
    /// Access ended (revoked or expired): the share's records were purged.
    Ended {
        /// Records removed from the vault.
        purged: usize,
        /// Why.
        reason: PurgeReason,
    },
}

/// Builds the Bundle the vault imports: FHIR records as they are, attachments as `Binary`
/// resources (the vault moves their bytes into its encrypted attachment store).
fn bundle_of(records: &[SharedRecord]) -> Result<Vec<u8>> {
    let mut entries = Vec::with_capacity(records.len());
    for r in records {
        let resource = if r.attachment {
            json!({
                "resourceType": "Binary",
                "id": crate::relay::hex_id(&r.record_id),
                "contentType": content_type(&r.title),
                "data": data_encoding::BASE64.encode(&r.data),
            })
        } else {
            let v: Value = serde_json::from_slice(&r.data)
                .map_err(|_| ClientError::InvalidInput("a shared record is not JSON"))?;
            v
        };
        entries.push(json!({ "resource": resource }));
    }
    serde_json::to_vec(&json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": entries,
    }))
    .map_err(|_| ClientError::InvalidInput("shared records could not be encoded"))
}

fn content_type(title: &str) -> &'static str {
    let lower = title.to_ascii_lowercase();
    if lower.ends_with(".pdf") {
        "application/pdf"
    } else if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        "image/jpeg"
    } else {
        "application/octet-stream"
    }
}

/// Stores one verified copy of a share, replacing the previous copy (records the patient
/// removed in a re-key leave with it).
pub fn store_share(
    vault: &mut Vault,
    patient: &Card,
    share_id: [u8; 16],
    expires_at: u64,
    records: &[SharedRecord],
) -> Result<(usize, usize)> {
    let bundle = bundle_of(records)?;
    vault.purge_source(&share_id, PurgeReason::Replaced)?;
    let report = vault.import_bundle(
        &bundle,
        &ImportOptions {
            source: Some("shared by patient".into()),
            share: Some(ShareSource {
                share_id,
                expires_at,
                label: patient.body.name.clone(),
            }),
        },
        &mut ImportControl::default(),
    )?;
    Ok((report.records, report.attachments))
}

impl Doctor {
    /// Fetches link `index`'s share, verifies it and stores it in `vault` tagged with the
    /// grant's expiry; when the relay says access ended (410) or the grant expired, purges
    /// that share's records instead and logs why.
    pub async fn sync_to_vault(
        &mut self,
        index: usize,
        vault: &mut Vault,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<SyncOutcome> {
        let (share_id, expires_at) = self
            .share_of(index)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        let patient = self
            .patient(index)
            .cloned()
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        match self.fetch(index, progress, cancel).await {
            Ok(records) => {
                let (records, attachments) =
                    store_share(vault, &patient, share_id, expires_at, &records)?;
                Ok(SyncOutcome::Stored {
                    records,
                    attachments,
                })
            }
            Err(ClientError::AccessEnded) => {
                let reason = if now() > expires_at {
                    PurgeReason::Expired
                } else {
                    PurgeReason::Revoked
                };
                let purged = vault.purge_source(&share_id, reason)?;
                Ok(SyncOutcome::Ended { purged, reason })
            }
            Err(e) => Err(e),
        }
    }

    /// Purges every expired share from `vault` on the device's clock (works offline) and ends
    /// the matching links. Returns how many records were removed.
    pub fn purge_expired(&mut self, vault: &mut Vault) -> Result<usize> {
        let t = now();
        let n = vault.purge_expired(t)?;
        self.end_expired_links(t);
        Ok(n)
    }
}
