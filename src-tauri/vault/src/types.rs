//! Public value types the app commands exchange (all `serde`, none holds a secret).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::fhir::{Code, KeyValue, RecordGroup};

/// Opaque record id: HMAC of "Type/id" under the vault's records key (hex in JSON).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(pub [u8; 32]);

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}
impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({self})")
    }
}
impl FromStr for RecordId {
    type Err = crate::VaultError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .map_err(|_| crate::VaultError::InvalidArgument("record id is not 64 hex digits"))?;
        Ok(Self(v.try_into().map_err(|_| {
            crate::VaultError::InvalidArgument("record id is not 64 hex digits")
        })?))
    }
}
impl Serialize for RecordId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}
impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Entered on this device (signed by the device key).
    SelfEntered,
    /// Imported from a file (bundle, bulk export); `source` is the caller's label.
    Imported {
        /// Label of the import (file name, "Synthea export"…).
        source: String,
    },
    /// Accepted from a signed author (a doctor's note).
    Received,
    /// Received through a share (doctor app): removed when the share is purged or expires.
    /// [`crate::Vault::list_source`] lists the records of one share.
    Shared {
        /// The share id (32 lowercase hex digits), as in the grant. Summaries stored before
        /// this field existed read as `""` (the share is still known to
        /// [`crate::Vault::list_source`] through the `records.source` blind index).
        #[serde(default)]
        share_id: String,
        /// The share's label.
        label: String,
        /// Unix seconds after which the record is purged.
        expires_at: u64,
    },
}

/// Signature status shown on a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SignatureStatus {
    /// The signature verifies; `signer` is the card name ("this device" for self-entered).
    Valid {
        /// Who signed (self-asserted card name unless attested).
        signer: String,
        /// Hex of the signer's card hash (empty for this device).
        card_hash: String,
    },
    /// A signature is present and does not verify: the record changed after signing.
    Invalid,
    /// No signature (imported data): provenance is the import source only.
    Unsigned,
}

/// One attachment of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// Opaque id (hex) to fetch it with [`crate::Vault::attachment`].
    pub id: String,
    /// MIME type if known.
    pub content_type: Option<String>,
    /// Title if any.
    pub title: Option<String>,
    /// Plaintext size in bytes.
    pub size: u64,
}

/// What the UI lists for one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSummary {
    /// Opaque id.
    pub id: RecordId,
    /// FHIR resource type.
    pub fhir_type: String,
    /// FHIR logical id.
    pub fhir_id: String,
    /// UI category.
    pub category: RecordGroup,
    /// Display title.
    pub title: String,
    /// Clinically relevant date (FHIR dateTime text) if any.
    pub date: Option<String>,
    /// Values to show (result, status, dosage…).
    pub key_values: Vec<KeyValue>,
    /// Codes (system, code, display).
    pub codes: Vec<Code>,
    /// Author as the resource names it (or the signer's card name).
    pub author: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// Signature status at the time it was stored (re-check with `verify_record`).
    pub signature: SignatureStatus,
    /// Attachments.
    pub attachments: Vec<AttachmentInfo>,
}

/// A full record: its summary and the FHIR resource (attachments inlined as base64 again).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Summary.
    pub summary: RecordSummary,
    /// The FHIR resource JSON.
    pub resource: serde_json::Value,
}

/// All records of the vault, plus rows that failed authentication.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    /// Readable records, newest date first.
    pub records: Vec<RecordSummary>,
    /// Rows that are damaged or tampered with (each fails with `Tampered` when opened).
    pub damaged: Vec<RecordId>,
}

/// Progress of an import (the client has its own `progress::Progress` for network work).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportProgress {
    /// Items done.
    pub done: usize,
    /// Items in total.
    pub total: usize,
}

/// Progress callback and cancellation flag of an import.
#[derive(Default)]
pub struct ImportControl<'a> {
    /// Called every 64 items and at the end.
    pub progress: Option<&'a mut dyn FnMut(ImportProgress)>,
    /// Checked between items; when set, the import rolls back and returns `Cancelled`.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for ImportControl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportControl")
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

/// A share a doctor's vault received records through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareSource {
    /// The share id (from the grant).
    pub share_id: [u8; 16],
    /// Unix seconds after which its records are purged.
    pub expires_at: u64,
    /// Label shown in the UI (patient's card name).
    pub label: String,
}

/// How to label imported records.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Source label kept as provenance (file name, "Synthea export"); default "import".
    pub source: Option<String>,
    /// Set in the doctor app: the records belong to this share and are purged with it.
    pub share: Option<ShareSource>,
}

/// What an import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Resources stored (new or replaced).
    pub records: usize,
    /// Of which replaced an existing record with the same type and id.
    pub replaced: usize,
    /// Attachments stored.
    pub attachments: usize,
    /// Count per resource type.
    pub by_type: BTreeMap<String, usize>,
}

/// Why a share's records left the doctor's vault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeReason {
    /// Not recorded.
    #[default]
    Unknown,
    /// The relay answered 410: the patient revoked access (or the token expired there).
    Revoked,
    /// The share's expiry passed on this device's clock.
    Expired,
    /// Replaced by a newer copy of the same share.
    Replaced,
}

/// Events of the local audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// Vault created.
    Created,
    /// An import committed.
    Imported {
        /// Import label.
        source: String,
        /// Records stored.
        records: usize,
    },
    /// A record entered on this device.
    RecordAdded {
        /// Its id.
        record: RecordId,
    },
    /// A record deleted.
    RecordDeleted {
        /// Its id.
        record: RecordId,
    },
    /// Records exported as a bundle.
    Exported {
        /// How many.
        records: usize,
    },
    /// A share was created (logged by the client).
    Shared {
        /// Share id (hex).
        share_id: String,
        /// Grantee card name.
        grantee: String,
        /// Records shared.
        records: usize,
    },
    /// A share or grantee was revoked (logged by the client).
    Revoked {
        /// Share id (hex).
        share_id: String,
        /// Grantee card name.
        grantee: String,
    },
    /// A signed note was accepted into the vault.
    NoteAccepted {
        /// Its id.
        record: RecordId,
        /// Author card name.
        author: String,
    },
    /// Records of a share purged (doctor app: revoked or expired).
    Purged {
        /// Share id (hex).
        share_id: String,
        /// Records removed.
        records: usize,
        /// Why (entries written before this field existed read as `unknown`).
        #[serde(default)]
        reason: PurgeReason,
    },
    /// Passphrase changed (root re-wrapped).
    PassphraseChanged,
    /// A backup blob was made.
    BackupMade {
        /// Backup version.
        version: u64,
    },
    /// The vault was restored from a backup.
    Restored {
        /// Backup version.
        version: u64,
    },
    /// The patient rejected a doctor at the check-up (codes did not match, or not wanted).
    Declined {
        /// Share id (hex).
        share_id: String,
        /// The name the doctor's card stated.
        doctor: String,
    },
    /// The patient answered a doctor's request to forward to a colleague.
    ForwardAnswered {
        /// Share id (hex).
        share_id: String,
        /// The asking doctor's card name.
        doctor: String,
        /// The colleague's card name.
        colleague: String,
        /// Approved (the colleague was granted access) or declined.
        approved: bool,
    },
}

impl AuditEvent {
    /// The kind byte in the chain entry.
    pub fn kind(&self) -> u8 {
        match self {
            AuditEvent::Created => 1,
            AuditEvent::Imported { .. } => 2,
            AuditEvent::RecordAdded { .. } => 3,
            AuditEvent::RecordDeleted { .. } => 4,
            AuditEvent::Exported { .. } => 5,
            AuditEvent::Shared { .. } => 6,
            AuditEvent::Revoked { .. } => 7,
            AuditEvent::NoteAccepted { .. } => 8,
            AuditEvent::Purged { .. } => 9,
            AuditEvent::PassphraseChanged => 10,
            AuditEvent::BackupMade { .. } => 11,
            AuditEvent::Restored { .. } => 12,
            AuditEvent::Declined { .. } => 13,
            AuditEvent::ForwardAnswered { .. } => 14,
        }
    }
}

/// One decrypted audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Sequence number from 1.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// The event.
    pub event: AuditEvent,
}

/// A backup ready to upload.
#[derive(Debug, Clone)]
pub struct Backup {
    /// Version counter (only goes up).
    pub version: u64,
    /// Relay object id (derived from the root and key generation).
    pub id: [u8; 16],
    /// The blob (see docs/vault.md "Backup blob").
    pub blob: Vec<u8>,
}
