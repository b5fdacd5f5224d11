//! Carekey protocol core: pure functions and types, no I/O, no async.
//!
//! Module map (docs/protocol.md has every byte):
//! - [`keys`]: device identity, cards, secret types.
//! - [`aead`]: the two AEADs behind one interface.
//! - [`envelope`]: context-bound XChaCha20-Poly1305 sealing, chunked streams.
//! - [`pairing`]: the QR payload and the check-up key schedule.
//! - [`grant`], [`epoch`], [`manifest`]: what a patient shares, with whom, under which keys.
//! - [`section`]: scoped keys (per category / record, per epoch) and the sectioned manifest.
//! - [`forward`]: colleague invites, forward requests, introductions, delegation notices.
//! - [`message`]: sign-then-seal relationship messages with a replay guard.
//! - [`audit`]: hash-chained signed event logs.
//! - [`capability`]: owner-write signatures and fetch receipts the relay checks.
//! - [`wire`]: the one encode/decode trait; [`label`]: every domain-separation label.
#![forbid(unsafe_code)]

pub mod aead;
pub mod audit;
pub mod capability;
pub mod envelope;
pub mod epoch;
pub mod error;
pub mod forward;
pub mod grant;
pub mod keys;
pub mod label;
pub mod manifest;
pub mod message;
pub mod pairing;
pub mod scope;
pub mod section;
pub mod wire;

pub use error::{Error, Result};
