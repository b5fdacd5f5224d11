//! What clients sign for the relay: owner writes and fetch receipts (docs/relay-formats.md).
//!
//! The relay verifies these with its own code (it must not depend on this crate); the byte
//! layouts here and there are cross-checked by the workspace tests.

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::keys::{PublicKey, SigningSecret};
use crate::label;
use crate::wire::{Reader, Wire, Writer};

/// Fetch receipt format version.
pub const RECEIPT_VERSION: u8 = 1;

/// The bytes an owner write signature covers (after the label).
pub fn owner_write_body(
    method: &str,
    path_and_query: &str,
    origin: &str,
    body: &[u8],
    counter: u64,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.str16(method);
    w.str16(path_and_query);
    w.str16(origin);
    w.raw(&Sha256::digest(body));
    w.u64(counter);
    w.into_bytes()
}

/// Signs an owner write with the share's pseudonymous owner key.
pub fn sign_owner_write(
    owner: &SigningSecret,
    method: &str,
    path_and_query: &str,
    origin: &str,
    body: &[u8],
    counter: u64,
) -> [u8; 64] {
    owner.sign(
        label::OWNER_WRITE_SIG,
        &owner_write_body(method, path_and_query, origin, body, counter),
    )
}

/// A grantee's signed statement that it fetched one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReceipt {
    /// The share.
    pub share_id: [u8; 16],
    /// The object fetched (blob id in hex, or `manifest`).
    pub object_id: String,
    /// The grantee's reader key.
    pub reader_key: PublicKey,
    /// The grantee's clock, unix seconds.
    pub time: u64,
    /// Random, so two fetches never have the same receipt.
    pub nonce: [u8; 16],
    /// Signature by `reader_key`.
    pub signature: [u8; 64],
}

impl FetchReceipt {
    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(RECEIPT_VERSION);
        w.raw(&self.share_id);
        w.str16(&self.object_id);
        w.obj(&self.reader_key);
        w.u64(self.time);
        w.raw(&self.nonce);
        w.into_bytes()
    }

    /// Makes and signs a receipt.
    pub fn sign<R: RngCore + CryptoRng>(
        reader: &SigningSecret,
        share_id: [u8; 16],
        object_id: &str,
        time: u64,
        rng: &mut R,
    ) -> Self {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let mut r = Self {
            share_id,
            object_id: object_id.to_owned(),
            reader_key: reader.public(),
            time,
            nonce,
            signature: [0; 64],
        };
        r.signature = reader.sign(label::FETCH_RECEIPT_SIG, &r.unsigned_bytes());
        r
    }

    /// Verifies the signature (the patient checks receipts in the relay's log this way).
    pub fn verify(&self) -> Result<()> {
        self.reader_key.verify(
            label::FETCH_RECEIPT_SIG,
            &self.unsigned_bytes(),
            &self.signature,
            "fetch receipt",
        )
    }
}

impl Wire for FetchReceipt {
    const WHAT: &'static str = "fetch receipt";
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.unsigned_bytes());
        w.raw(&self.signature);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(RECEIPT_VERSION)?;
        Ok(Self {
            share_id: r.array()?,
            object_id: r.str16()?,
            reader_key: r.obj()?,
            time: r.u64()?,
            nonce: r.array()?,
            signature: r.array()?,
        })
    }
}
