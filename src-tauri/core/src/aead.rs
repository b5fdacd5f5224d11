//! The two AEADs the protocol uses, behind one small interface (docs/protocol.md "Primitives").
//!
//! - XChaCha20-Poly1305 with random 192-bit nonces for keys that seal many messages, possibly
//!   from several devices ([`crate::envelope`]).
//! - ChaCha20-Poly1305 with a counter nonce only for short-lived keys owned by one sender, one
//!   key per direction ([`crate::pairing`] reply and confirmation).
//!
//! Buffers are processed in place (no copy of a large attachment); tags are appended.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Tag, XChaCha20Poly1305};

use crate::error::{Error, Result};

/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// Which AEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    /// RFC 8439, 96-bit nonce.
    ChaCha20Poly1305,
    /// draft-irtf-cfrg-xchacha, 192-bit nonce.
    XChaCha20Poly1305,
}

impl Aead {
    /// Nonce length in bytes.
    pub fn nonce_len(self) -> usize {
        match self {
            Aead::ChaCha20Poly1305 => 12,
            Aead::XChaCha20Poly1305 => 24,
        }
    }

    fn check_nonce(self, nonce: &[u8]) -> Result<()> {
        if nonce.len() != self.nonce_len() {
            return Err(Error::Malformed {
                what: "AEAD nonce",
                reason: "wrong nonce length",
            });
        }
        Ok(())
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_in_place(
        self,
        key: &[u8; 32],
        nonce: &[u8],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.check_nonce(nonce)?;
        let k = Key::from_slice(key);
        let tag = match self {
            Aead::ChaCha20Poly1305 => ChaCha20Poly1305::new(k).encrypt_in_place_detached(
                nonce.into(),
                aad,
                buf.as_mut_slice(),
            ),
            Aead::XChaCha20Poly1305 => XChaCha20Poly1305::new(k).encrypt_in_place_detached(
                nonce.into(),
                aad,
                buf.as_mut_slice(),
            ),
        }
        .map_err(|_| Error::Malformed {
            what: "AEAD plaintext",
            reason: "longer than the cipher allows",
        })?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Verifies and decrypts `buf` (ciphertext || tag) in place, removing the tag.
    pub fn open_in_place(
        self,
        key: &[u8; 32],
        nonce: &[u8],
        aad: &[u8],
        buf: &mut Vec<u8>,
        what: &'static str,
    ) -> Result<()> {
        self.check_nonce(nonce)?;
        let n = buf
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::Truncated { what })?;
        let tag = *Tag::from_slice(&buf[n..]);
        buf.truncate(n);
        let k = Key::from_slice(key);
        match self {
            Aead::ChaCha20Poly1305 => ChaCha20Poly1305::new(k).decrypt_in_place_detached(
                nonce.into(),
                aad,
                buf.as_mut_slice(),
                &tag,
            ),
            Aead::XChaCha20Poly1305 => XChaCha20Poly1305::new(k).decrypt_in_place_detached(
                nonce.into(),
                aad,
                buf.as_mut_slice(),
                &tag,
            ),
        }
        .map_err(|_| {
            // Leave no unauthenticated plaintext behind.
            zeroize::Zeroize::zeroize(buf);
            Error::Decrypt { what }
        })
    }
}
