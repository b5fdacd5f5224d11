//! What the relay checks of a SMART Health Link's bytes (docs/relay.md "SMART Health Links";
//! relay-formats.md "SMART Health Link"): the form of each uploaded JWE (never its content:
//! the relay holds no key), the passcode hash, the hashes that name links and tickets in the
//! database, and the body of the audit entry a manifest request leaves.

use argon2::{Algorithm, Argon2, Params, Version};
use carekey_relay_api as api;
use data_encoding::BASE64URL_NOPAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{RelayError, Result};

/// Domain label of the stored hash of a link id (the database never holds the id the URL
/// carries, as it never holds read tokens).
pub const LINK_HASH_LABEL: &[u8] = b"carekey/v1/shl-link-id";
/// Domain label of the stored hash of a `location` ticket.
pub const TICKET_HASH_LABEL: &[u8] = b"carekey/v1/shl-ticket";
/// Longest JOSE protected header accepted (base64url characters).
const MAX_JWE_HEADER_LEN: usize = 4096;

/// Outcome byte of an audit entry of kind `ShlManifestRequested`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// The manifest was answered.
    Served = 0,
    /// The passcode was wrong (an attempt was counted).
    WrongPasscode = 1,
}

/// SHA-256 of `label 0x00 id`.
fn labelled_hash(label: &[u8], id: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update([0]);
    h.update(id);
    h.finalize().into()
}

/// The stored name of link `id`.
pub fn link_hash(id: &[u8; api::SHL_LINK_ID_LEN]) -> [u8; 32] {
    labelled_hash(LINK_HASH_LABEL, id)
}

/// The stored name of ticket `t`.
pub fn ticket_hash(t: &[u8; api::SHL_TICKET_LEN]) -> [u8; 32] {
    labelled_hash(TICKET_HASH_LABEL, t)
}

/// A 32-byte id from its 43 base64url characters; anything else is `None` (answered 404: a
/// viewer's mistyped link is simply not a link).
pub fn parse_b64_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() > 64 {
        return None;
    }
    BASE64URL_NOPAD
        .decode(s.as_bytes())
        .ok()
        .and_then(|v| v.try_into().ok())
}

fn b64url_part(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn bad_file(message: &'static str) -> RelayError {
    RelayError::bad("bad_jwe", message)
}

/// Checks that `jwe` has the form SHL "Encrypting and Decrypting Files" fixes: compact
/// serialization (RFC 7516 §7.1), protected header `alg: dir`, `enc: A256GCM`, an empty
/// encrypted key (RFC 7518 §4.5), a 96-bit IV and a 128-bit tag (§5.3). So what is stored is
/// a JWE, never a plaintext the client sent by mistake.
pub fn check_jwe(jwe: &str) -> Result<()> {
    let parts: Vec<&str> = jwe.split('.').collect();
    let [header, key, iv, ct, tag] = parts[..] else {
        return Err(bad_file("a file is not a compact JWE (five parts)"));
    };
    if !parts.iter().all(|p| b64url_part(p)) {
        return Err(bad_file("a JWE part is not base64url"));
    }
    if !key.is_empty() {
        return Err(bad_file("a JWE with alg dir has an empty encrypted key"));
    }
    if header.len() > MAX_JWE_HEADER_LEN || ct.is_empty() {
        return Err(bad_file("a JWE header is too long or its ciphertext empty"));
    }
    let dec = |p: &str| BASE64URL_NOPAD.decode(p.as_bytes()).ok();
    if dec(iv).map(|v| v.len()) != Some(12) || dec(tag).map(|v| v.len()) != Some(16) {
        return Err(bad_file("a JWE needs a 12-byte IV and a 16-byte tag"));
    }
    if dec(ct).is_none() {
        return Err(bad_file("a JWE ciphertext is not base64url"));
    }
    let header = dec(header).ok_or_else(|| bad_file("a JWE header is not base64url"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| bad_file("a JWE header is not JSON"))?;
    if header.get("alg").and_then(|v| v.as_str()) != Some("dir")
        || header.get("enc").and_then(|v| v.as_str()) != Some("A256GCM")
    {
        return Err(bad_file("a JWE must be alg dir, enc A256GCM"));
    }
    Ok(())
}

/// Argon2id of `passcode` under `salt` with the fixed parameters of relay-formats.md "SMART
/// Health Link passcode" (the client computed the stored hash with the same ones).
pub fn passcode_hash(passcode: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(
        api::SHL_PASSCODE_M_KIB,
        api::SHL_PASSCODE_T,
        api::SHL_PASSCODE_P,
        Some(api::SHL_PASSCODE_HASH_LEN),
    )
    .map_err(|_| RelayError::Storage("argon2 parameters".into()))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passcode, salt, out.as_mut())
        .map_err(|_| RelayError::Storage("argon2 hash failed".into()))?;
    Ok(out)
}

/// Whether `offered` hashes to `stored` (compared in constant time).
pub fn passcode_matches(offered: &[u8], salt: &[u8], stored: &[u8]) -> Result<bool> {
    let h = passcode_hash(offered, salt)?;
    Ok(bool::from(h.as_ref().ct_eq(stored)))
}

/// The recipient as logged: control characters dropped, cut to
/// [`api::SHL_RECIPIENT_LOGGED_MAX`] bytes at a character boundary. It is self-asserted:
/// the audit log says "downloaded by `<recipient>`" because the viewer said so, nothing more.
pub fn logged_recipient(recipient: &str) -> String {
    let mut out = String::new();
    for c in recipient.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > api::SHL_RECIPIENT_LOGGED_MAX {
            break;
        }
        out.push(c);
    }
    out
}

/// Body of a `ShlManifestRequested` audit entry: `outcome u8 || recipient (UTF-8)`.
pub fn audit_body(outcome: Outcome, recipient: &str) -> Vec<u8> {
    let r = logged_recipient(recipient);
    let mut b = Vec::with_capacity(1 + r.len());
    b.push(outcome as u8);
    b.extend_from_slice(r.as_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwe(header: &str) -> String {
        let h = BASE64URL_NOPAD.encode(header.as_bytes());
        format!(
            "{h}..{}.{}.{}",
            BASE64URL_NOPAD.encode(&[1; 12]),
            BASE64URL_NOPAD.encode(b"ct"),
            BASE64URL_NOPAD.encode(&[2; 16])
        )
    }

    #[test]
    fn jwe_form() {
        assert!(check_jwe(&jwe(r#"{"alg":"dir","enc":"A256GCM"}"#)).is_ok());
        assert!(check_jwe(&jwe(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)).is_err());
        assert!(check_jwe(&jwe(r#"{"alg":"dir","enc":"A128GCM"}"#)).is_err());
        assert!(check_jwe(r#"{"resourceType":"Bundle"}"#).is_err());
        assert!(check_jwe("a.b.c.d").is_err());
    }

    #[test]
    fn recipient_is_capped_and_clean() {
        let long = "é".repeat(80);
        let r = logged_recipient(&long);
        assert!(r.len() <= api::SHL_RECIPIENT_LOGGED_MAX && r.len().is_multiple_of(2));
        assert_eq!(logged_recipient("Dr\nX\u{7}"), "DrX");
    }

    #[test]
    fn ids() {
        let id = [7u8; 32];
        let s = BASE64URL_NOPAD.encode(&id);
        assert_eq!(parse_b64_id::<32>(&s), Some(id));
        assert_eq!(parse_b64_id::<32>("short"), None);
        assert_ne!(link_hash(&id), ticket_hash(&id));
    }
}
