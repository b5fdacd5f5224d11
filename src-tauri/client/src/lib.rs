//! Carekey client services: the UI-agnostic layer both apps' commands call.
//!
//! - [`relay`]: the HTTP client of the relay (timeouts, retries, typed errors, progress).
//! - [`patient`]: share for a check-up, pair, confirm, notes inbox, access log, revoke.
//! - [`doctor`]: scan, receive the grant, fetch and verify, follow re-keys, write notes.
//! - [`note`]: signed FHIR resources travelling back to the patient.
//! - [`progress`]: progress callbacks and cancellation for long work.
//!
//! Every error is a [`ClientError`] with a stable [`ClientError::code`] for the UI.
#![forbid(unsafe_code)]

pub mod doctor;
pub mod error;
pub mod note;
pub mod patient;
pub mod progress;
pub mod relay;
#[cfg(feature = "test-export")]
pub mod test_export;

pub use error::{ClientError, Result};
