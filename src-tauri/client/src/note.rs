//! Doctor-authored FHIR resources travelling back to the patient (docs/protocol.md
//! "Relationship messages"). The body of a [`MessageKind::Note`](carekey_core::message::MessageKind::Note)
//! message is `bytes32(resource JSON) || signature [64]`, the signature by the doctor's card key
//! over `RECORD_SIG || 0x00 || resource bytes`. The resource bytes are serde_json's encoding of
//! the parsed value (keys sorted), the same bytes the vault's `record_signing_bytes` signs, so
//! the signature stays with the record as its provenance.

use carekey_core::keys::{Card, SigningSecret};
use carekey_core::label;
use carekey_core::wire::{Reader, Writer};
use serde_json::Value;

use crate::error::{ClientError, Result};

/// Largest note resource accepted.
pub const MAX_NOTE_BYTES: usize = 1024 * 1024;

/// The bytes a record signature covers.
pub fn signing_bytes(resource: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(resource).map_err(|_| ClientError::InvalidInput("resource is not JSON"))
}

/// A note as the patient receives it.
#[derive(Debug, Clone)]
pub struct Note {
    /// The FHIR resource.
    pub resource: Value,
    /// The author's signature (kept as provenance when accepted).
    pub signature: [u8; 64],
    /// The author's card (the device the patient paired with).
    pub author: Card,
}

/// Version byte of a stored note ([`Note::to_bytes`]).
pub const NOTE_STORE_VERSION: u8 = 1;

impl Note {
    /// The note for storage until the patient answers it (the app seals it in its vault):
    /// `version (1) || bytes16(author card) || bytes32(resource bytes) || signature [64]`, the
    /// core's `wire` conventions (docs/protocol.md "Conventions"). The resource bytes are the
    /// signed canonical bytes, so [`Note::from_bytes`] verifies the signature again.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bytes = signing_bytes(&self.resource)?;
        let mut w = Writer::new();
        w.u8(NOTE_STORE_VERSION);
        w.bytes16(&carekey_core::wire::Wire::to_bytes(&self.author));
        w.bytes32(&bytes);
        w.raw(&self.signature);
        Ok(w.into_bytes())
    }

    /// Decodes a stored note: version first, trailing bytes rejected; the author's card is
    /// checked (self-signature) and the note's record signature verified again, so a stored
    /// note that was altered is [`ClientError::Tampered`].
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "stored note");
        r.version(NOTE_STORE_VERSION)?;
        let author = Card::verified(r.bytes16()?)?;
        let body = r.rest();
        decode(body, &author)
    }
}

/// Encodes and signs a note body.
pub fn encode(author: &SigningSecret, resource: &Value) -> Result<Vec<u8>> {
    check_resource(resource)?;
    let bytes = signing_bytes(resource)?;
    if bytes.len() > MAX_NOTE_BYTES {
        return Err(ClientError::InvalidInput("note is too large"));
    }
    let sig = author.sign(label::RECORD_SIG, &bytes);
    let mut w = Writer::new();
    w.bytes32(&bytes);
    w.raw(&sig);
    Ok(w.into_bytes())
}

/// Decodes a note body and verifies the author's signature.
pub fn decode(body: &[u8], author: &Card) -> Result<Note> {
    let mut r = Reader::new(body, "note");
    let bytes = r.bytes32()?;
    let signature: [u8; 64] = r.array()?;
    r.finish()?;
    author
        .body
        .signing_key
        .verify(label::RECORD_SIG, bytes, &signature, "note")?;
    let resource: Value = serde_json::from_slice(bytes).map_err(|_| {
        ClientError::Tampered(carekey_core::Error::Malformed {
            what: "note",
            reason: "resource is not JSON",
        })
    })?;
    check_resource(&resource)?;
    // The signature covers the exact bytes; they must be the canonical encoding too, or the
    // vault (which re-encodes) could not verify it later.
    if signing_bytes(&resource)? != bytes {
        return Err(ClientError::Tampered(carekey_core::Error::Malformed {
            what: "note",
            reason: "resource is not in canonical form",
        }));
    }
    Ok(Note {
        resource,
        signature,
        author: author.clone(),
    })
}

fn check_resource(v: &Value) -> Result<()> {
    match v.get("resourceType").and_then(Value::as_str) {
        Some(t) if !t.is_empty() && t.len() < 64 => Ok(()),
        _ => Err(ClientError::InvalidInput(
            "a note must be a FHIR resource with a resourceType",
        )),
    }
}

/// Accepts a verified note into the patient's vault; the author's signature stays with the
/// record as its provenance (the vault checks it again before storing).
pub fn accept(vault: &mut carekey_vault::Vault, note: &Note) -> Result<carekey_vault::RecordId> {
    Ok(vault.accept_signed_record(note.resource.clone(), &note.author, &note.signature)?)
}
