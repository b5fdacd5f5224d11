//! SMART Health Links and SMART Health Cards, the open (receiving) side, plus the encrypting
//! and signing halves the tests and a later publish side need.
//!
//! - [`link`]: `shlink:/…` and viewer URLs `…#shlink:/…` → [`Shlink`] (url, key, exp, flags,
//!   label, v), expiry and version checks.
//! - [`jwe`]: compact JWE, `alg: dir`, `enc: A256GCM`, optional `zip: DEF`, both directions.
//! - [`manifest`]: the manifest request body, the manifest response, and opening its files
//!   (embedded ones decrypted, `location` ones handed back as URLs to fetch).
//! - [`fhir`]: FHIR R4 Attachments written back inline (`data`, `size`, SHA-1 `hash`) for a
//!   published link, and the longest JWE a plaintext can make.
//! - [`shc`]: `shc:/` numeric QR text (also chunked), the ES256 JWS, verification against an
//!   issuer's JWK set, `.smart-health-card` files.
//! - `fetch` (feature `fetch`, on by default): the HTTP requests with `reqwest`. Everything
//!   else does no I/O.
//!
//! Specifications cited in comments:
//! - **SHL** = HL7 "SMART Health Cards and Links" IG (STU1), *SMART Health Links
//!   specification* (`links-specification.html`), by section title.
//! - **SHC** = the same IG, *SMART Health Cards specification* (`cards-specification.html`),
//!   by section title.
//! - RFC 7515 (JWS), 7516 (JWE), 7518 (JWA), 7638 (JWK thumbprint), 1951 (DEFLATE).
//!
//! This crate is apart from Carekey's own protocol (`carekey-core`): it uses AES-256-GCM and
//! ECDSA P-256 because the SMART specifications require them, and nothing of Carekey's own
//! sealing or signing depends on it. What is supported and refused: `docs/shl.md`.
//!
//! Every parser is bounded ([`limits`]) and returns [`ShlError`]; none panics on any input
//! (`fuzz/fuzz_targets/shl_parse.rs`).

mod encoding;
mod endpoint;
pub mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod fhir;
pub mod jwe;
mod jwk;
pub mod link;
pub mod manifest;
pub mod shc;
pub mod zip;

pub use error::{Result, ShlError};
pub use jwe::{Decrypted, EncryptOptions, JweHeader};
pub use link::{Flags, ShlKey, Shlink};
pub use manifest::{
    ContentType, DecryptedFile, FileBody, Manifest, ManifestEntry, ManifestFile, ManifestRequest,
    Opened, PendingFile, open_direct_file, open_manifest,
};
pub use shc::{HealthCard, IssuerKey, Jwk, Jwks, TrustStore, Verification};

/// Every bound the parsers enforce (docs/shl.md "Bounds").
pub mod limits {
    /// Scanned or pasted link text, viewer URL included. A QR code holds at most 4296
    /// characters.
    pub const MAX_LINK_TEXT_LEN: usize = 8 * 1024;
    /// The decoded link payload JSON.
    pub const MAX_LINK_PAYLOAD_LEN: usize = 6 * 1024;
    /// The payload's `url`. SHL "Establish a SMART Health Link Manifest URL" caps it at 128
    /// characters for sharers; links from tools that exceed that are still read, up to this.
    pub const MAX_LINK_URL_LEN: usize = 512;
    /// A manifest file's `location` (signed cloud-storage URLs are long).
    pub const MAX_LOCATION_URL_LEN: usize = 4 * 1024;
    /// The payload's `label`, in characters (SHL: "no longer than 80 characters").
    pub const MAX_LABEL_CHARS: usize = 80;
    /// The payload's `flag` string.
    pub const MAX_FLAG_LEN: usize = 16;
    /// Nesting of the link payload (extensions may hold objects).
    pub const MAX_LINK_JSON_DEPTH: usize = 16;
    /// Nesting of JOSE headers, JWKs, JWK sets and `.smart-health-card` files.
    pub const MAX_HEADER_JSON_DEPTH: usize = 8;
    /// Nesting of FHIR content, card payloads and manifests (which may hold a FHIR List).
    pub const MAX_CONTENT_JSON_DEPTH: usize = 64;
    /// A JOSE header's base64url text.
    pub const MAX_HEADER_LEN: usize = 4 * 1024;
    /// One file's plaintext: the ciphertext, and the output of inflating `zip: DEF`.
    pub const MAX_PLAINTEXT_LEN: usize = 16 * 1024 * 1024;
    /// A compact JWE (a [`MAX_PLAINTEXT_LEN`] ciphertext in base64url plus the small parts).
    pub const MAX_JWE_LEN: usize = MAX_PLAINTEXT_LEN / 3 * 4 + 8 * 1024;
    /// A manifest response body.
    pub const MAX_MANIFEST_LEN: usize = 32 * 1024 * 1024;
    /// Files in one manifest.
    pub const MAX_MANIFEST_FILES: usize = 256;
    /// The decrypted embedded files of one manifest together.
    pub const MAX_MANIFEST_PLAINTEXT_TOTAL: usize = 64 * 1024 * 1024;
    /// The manifest request's `recipient`.
    pub const MAX_RECIPIENT_LEN: usize = 256;
    /// The manifest request's `passcode`.
    pub const MAX_PASSCODE_LEN: usize = 256;
    /// One `shc:/` QR text. A QR code holds at most 7089 digits.
    pub const MAX_SHC_TEXT_LEN: usize = 8 * 1024;
    /// Chunks of a chunked `shc:/` code.
    pub const MAX_SHC_CHUNKS: usize = 16;
    /// One compact JWS (a card inside a SHL file can be far larger than a QR code's).
    pub const MAX_JWS_LEN: usize = 4 * 1024 * 1024;
    /// A card's payload after inflating.
    pub const MAX_CARD_PAYLOAD_LEN: usize = 16 * 1024 * 1024;
    /// Cards in one `.smart-health-card` file.
    pub const MAX_CARDS_PER_FILE: usize = 64;
    /// A JWK set (or one JWK) as JSON.
    pub const MAX_JWKS_LEN: usize = 256 * 1024;
    /// Keys in one JWK set.
    pub const MAX_JWKS_KEYS: usize = 64;
}
