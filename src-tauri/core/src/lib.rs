//! Carekey protocol core: pure functions and types, no I/O, no async.
//!
//! Module map (docs/protocol.md has every byte):
//! - [`keys`]: device identity, cards, secret types.
//! - [`envelope`]: context-bound XChaCha20-Poly1305 sealing, chunked streams.
//! - [`pairing`]: the QR payload and the check-up key schedule.
//! - [`grant`], [`epoch`], [`manifest`]: what a patient shares, with whom, under which keys.
//! - [`message`]: sign-then-seal relationship messages with a replay guard.
//! - [`audit`]: hash-chained signed event logs.
//! - [`wire`]: the one encode/decode trait; [`label`]: every domain-separation label.
#![forbid(unsafe_code)]

pub mod audit;
pub mod envelope;
pub mod error;
pub mod keys;
pub mod label;
pub mod wire;

pub use error::{Error, Result};
