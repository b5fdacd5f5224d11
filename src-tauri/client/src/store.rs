//! The doctor's local copy of shared records (docs/protocol.md "Revocation and expiry": expiry
//! is enforced twice; the revoked doctor's app gets 410 and purges).
//!
//! Fetched records go into the doctor's own encrypted vault tagged with the share and the
//! grant's expiry ([`carekey_vault::ShareSource`]). A 410 purges them at once, the expiry on
//! the device's clock purges them even offline, and each purge is logged in the vault's audit
//! chain with its reason.
//!
//! No vault is held across network I/O: [`Doctor::fetch_share`] fetches and verifies with no
//! vault, then [`FetchedShare::store`] writes in one short vault transaction
//! ([`carekey_vault::Vault::replace_share_resources`]: the old copy out, the new one in, or the purge).
//! Stored records name their share (`Origin::Shared { share_id, .. }`,
//! [`carekey_vault::Vault::list_source`]), and attachments stay with their record.

use carekey_core::keys::Card;
use carekey_vault::{ImportControl, ImportOptions, PurgeReason, ShareSource, Vault};
use serde_json::{Value, json};

use crate::doctor::{Doctor, LinkShare, SharedRecord};
use crate::error::{ClientError, Result};
use crate::ids::{LinkId, ShareId};
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

/// What [`store_share`] put in the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCounts {
    /// FHIR resources stored.
    pub records: usize,
    /// Attachments stored.
    pub attachments: usize,
}

/// Builds the resources the vault imports, in manifest order. A shared attachment follows the
/// record it belongs to (the apps and the CLI share a record, then its attachments, in the
/// vault's slot order; the record goes without its inline `data`): it is put back into the
/// first slot of that record left empty (`Binary.data`, or a `content[].attachment` with
/// neither `data` nor `url`), so the doctor's vault keeps it as that record's attachment
/// (docs/vault.md "Records and provenance"). An attachment with no such slot is stored as a
/// `Binary` resource of its own.
fn resources_of(records: &[SharedRecord]) -> Result<Vec<Value>> {
    let mut resources: Vec<Value> = Vec::with_capacity(records.len());
    // The last FHIR record seen: the owner candidate of the attachments that follow it.
    let mut owner: Option<usize> = None;
    for r in records {
        if r.attachment {
            let b64 = data_encoding::BASE64.encode(&r.data);
            let filled = owner
                .and_then(|i| resources.get_mut(i))
                .is_some_and(|res| fill_empty_slot(res, &b64));
            if !filled {
                resources.push(json!({
                    "resourceType": "Binary",
                    "id": crate::relay::hex_id(&r.record_id),
                    "contentType": content_type(&r.title),
                    "data": b64,
                }));
            }
        } else {
            let v: Value = serde_json::from_slice(&r.data)
                .map_err(|_| ClientError::InvalidInput("a shared record is not JSON"))?;
            resources.push(v);
            owner = Some(resources.len() - 1);
        }
    }
    Ok(resources)
}

/// Puts base64 `data` into the first empty attachment slot of `resource`; false if none.
fn fill_empty_slot(resource: &mut Value, b64: &str) -> bool {
    let Some(o) = resource.as_object_mut() else {
        return false;
    };
    if o.get("resourceType").and_then(Value::as_str) == Some("Binary") {
        if o.contains_key("data") {
            return false;
        }
        o.insert("data".into(), Value::String(b64.to_owned()));
        return true;
    }
    let Some(Value::Array(content)) = o.get_mut("content") else {
        return false;
    };
    let slot = content
        .iter_mut()
        .filter_map(|c| c.get_mut("attachment").and_then(Value::as_object_mut))
        .find(|a| !a.contains_key("data") && !a.contains_key("url"));
    match slot {
        Some(a) => {
            a.insert("data".into(), Value::String(b64.to_owned()));
            true
        }
        None => false,
    }
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

/// Stores one verified copy of a share in one vault transaction, replacing the previous copy
/// (records the patient removed in a re-key leave with it; the replaced copy is logged as
/// purged, reason `Replaced`). Synchronous: call it after the fetch, with the vault held only
/// for this.
pub fn store_share(
    vault: &mut Vault,
    patient: &Card,
    share_id: ShareId,
    expires_at: u64,
    records: &[SharedRecord],
) -> Result<StoredCounts> {
    let resources = resources_of(records)?;
    let report = vault.replace_share_resources(
        resources,
        &ImportOptions {
            source: Some("shared by patient".into()),
            share: Some(ShareSource {
                share_id: share_id.to_bytes(),
                expires_at,
                label: patient.body.name.clone(),
            }),
        },
        &mut ImportControl::default(),
    )?;
    Ok(StoredCounts {
        records: report.records,
        attachments: report.attachments,
    })
}

/// A share fetched and verified by [`Doctor::fetch_share`] (no vault involved yet), or the
/// news that access ended; [`FetchedShare::store`] puts it in the vault.
#[derive(Debug)]
pub enum FetchedShare {
    /// The verified records of the share.
    Records {
        /// The patient's card (its name labels the stored records); boxed, it is large.
        patient: Box<Card>,
        /// The share id (tags the stored records).
        share_id: ShareId,
        /// The grant's expiry (Unix seconds): the stored records are purged after it.
        expires_at: u64,
        /// The records, in manifest order.
        records: Vec<SharedRecord>,
    },
    /// The relay said access ended (410) or the grant expired: the share's records go.
    Ended {
        /// The share id.
        share_id: ShareId,
        /// Why: `Expired` on the device's clock, else `Revoked`.
        reason: PurgeReason,
    },
}

impl FetchedShare {
    /// Applies the fetch to `vault` in one short transaction: stores the copy (replacing the
    /// previous one) or purges the ended share, logging why.
    pub fn store(self, vault: &mut Vault) -> Result<SyncOutcome> {
        match self {
            FetchedShare::Records {
                patient,
                share_id,
                expires_at,
                records,
            } => {
                let n = store_share(vault, &patient, share_id, expires_at, &records)?;
                Ok(SyncOutcome::Stored {
                    records: n.records,
                    attachments: n.attachments,
                })
            }
            FetchedShare::Ended { share_id, reason } => {
                let purged = vault.purge_source(share_id.as_bytes(), reason)?;
                Ok(SyncOutcome::Ended { purged, reason })
            }
        }
    }
}

impl Doctor {
    /// Fetches and verifies link `id`'s share without touching any vault (the app holds
    /// no vault lock across the network); store the result with [`FetchedShare::store`].
    /// Access ended (410, or the grant's expiry passed) is not an error here but
    /// [`FetchedShare::Ended`].
    pub async fn fetch_share(
        &mut self,
        id: &LinkId,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<FetchedShare> {
        let LinkShare {
            share_id,
            expires_at,
        } = self
            .share_of(id)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        let patient = self
            .patient(id)
            .cloned()
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        match self.fetch(id, progress, cancel).await {
            Ok(records) => Ok(FetchedShare::Records {
                patient: Box::new(patient),
                share_id,
                expires_at,
                records,
            }),
            Err(ClientError::AccessEnded) => {
                let reason = if now() > expires_at {
                    PurgeReason::Expired
                } else {
                    PurgeReason::Revoked
                };
                Ok(FetchedShare::Ended { share_id, reason })
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches link `id`'s share, verifies it and stores it in `vault` tagged with the
    /// grant's expiry; when the relay says access ended (410) or the grant expired, purges
    /// that share's records instead and logs why. Shorthand for [`Doctor::fetch_share`] then
    /// [`FetchedShare::store`]; the vault is only used after the fetch, but the borrow lasts
    /// the whole call, so an app that shares its vault behind a lock calls the two itself.
    pub async fn sync_to_vault(
        &mut self,
        id: &LinkId,
        vault: &mut Vault,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<SyncOutcome> {
        self.fetch_share(id, progress, cancel).await?.store(vault)
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
