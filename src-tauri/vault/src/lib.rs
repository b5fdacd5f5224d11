//! Carekey encrypted vault (issue 3): FHIR records in SQLite where every stored value is an
//! `EncryptedValue` (the core's envelope), blind indexes for lookups, chunked encrypted
//! attachments, a signed local audit chain, and a recovery phrase + backup blob.
//!
//! Layout and figures: `docs/vault.md`. Entry point: [`Vault`].
#![forbid(unsafe_code)]

pub mod backup;
mod crypto;
mod error;
pub mod fhir;
mod schema;
mod types;
mod vault;

pub use backup::{BackupInfo, backup_id};
pub use carekey_core::envelope::Envelope as EncryptedValue;
pub use crypto::{KdfParams, RecoveryPhrase};
pub use error::{Position, Result, VaultError};
pub use fhir::{Code, KeyValue, NdjsonFile, RecordGroup, RoutedExport, route_by_patient};
pub use schema::SCHEMA_VERSION;
pub use types::*;
pub use vault::{CreateOptions, Vault, record_signing_bytes, verify_record_signature};
