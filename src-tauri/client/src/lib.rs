//! Carekey client services: the UI-agnostic layer both apps' commands call.
//!
//! - [`relay`]: the HTTP client of the relay (timeouts, retries, typed errors, progress).
//! - [`answer`]: the byte caps every relay answer is read under (a hostile relay cannot
//!   exhaust the app's memory).
//! - [`patient`]: share for a check-up, pair, confirm, notes inbox, access log, revoke.
//! - [`doctor`]: scan, receive the grant, fetch and verify, follow re-keys, write notes.
//! - [`backup`]: encrypted vault backup to the relay, restore from the 24-word phrase.
//! - [`note`]: signed FHIR resources travelling back to the patient.
//! - [`store`]: the doctor's vault copy of shared records, purged on revoke and expiry.
//! - [`progress`]: progress callbacks and cancellation for long work.
//! - [`ids`]: the typed ids of the API (shares, blobs, mailboxes, pairings, relationships,
//!   patient links, invites, forward requests), hex in their text form.
//!
//! Every error is a [`ClientError`] with a stable [`ClientError::code`] for the UI.
#![forbid(unsafe_code)]

pub mod answer;
pub mod backup;
pub mod doctor;
pub mod error;
pub mod ids;
pub mod note;
pub mod patient;
mod persist;
pub mod progress;
pub mod relay;
pub mod store;
#[cfg(feature = "test-export")]
pub mod test_export;

pub use error::{ClientError, Result};
pub use ids::{
    BlobId, DelegationId, ForwardRequestId, InviteId, LinkId, MailboxId, PairingId, RelationshipId,
    ShareId,
};

/// Unix seconds on the device clock (0 before 1970): expiries, grant and receipt times.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
