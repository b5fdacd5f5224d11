//! Every domain-separation label of the protocol, in one place (docs/protocol.md "Labels").
//!
//! Signed messages are `label || 0x00 || structure`; HKDF `info` strings are the label alone (or
//! label || 0x00 || transcript). No label is a prefix of another, and each key or signature
//! purpose has exactly one label, so one key never serves two purposes.

// ---- signatures ----
/// Self-signature of a card body.
pub const CARD_SIG: &str = "carekey/v1/card-self";
/// Clinic attestation over a card hash.
pub const CARD_ATTESTATION: &str = "carekey/v1/card-attestation";
/// Hash of a card (the identity others pin).
pub const CARD_HASH: &str = "carekey/v1/card-hash";
/// Doctor's signature over the pairing transcript.
pub const PAIRING_DOCTOR_SIG: &str = "carekey/v1/pairing-doctor";
/// Patient's signature over the pairing transcript.
pub const PAIRING_PATIENT_SIG: &str = "carekey/v1/pairing-patient";
/// Patient's signature of a grant.
pub const GRANT_SIG: &str = "carekey/v1/grant";
/// Parent's signature of a delegation link (docs/relay-formats.md).
pub const DELEGATION_SIG: &str = "carekey/v1/delegation";
/// Patient's signature of a share manifest.
pub const MANIFEST_SIG: &str = "carekey/v1/manifest";
/// Sender's signature of a relationship message (sign-then-seal).
pub const MESSAGE_SIG: &str = "carekey/v1/message";
/// Grantee's signature of a fetch receipt (docs/relay-formats.md).
pub const FETCH_RECEIPT_SIG: &str = "carekey/v1/fetch-receipt";
/// Share owner's signature of a relay write (docs/relay-formats.md).
pub const OWNER_WRITE_SIG: &str = "carekey/v1/owner-write";
/// Signature of an audit chain head.
pub const AUDIT_HEAD_SIG: &str = "carekey/v1/audit-head";
/// Relay's signature of its per-share audit chain head (docs/relay-formats.md).
pub const RELAY_AUDIT_HEAD_SIG: &str = "carekey/v1/relay-audit-head";
/// Relay's signature of its audit chain head bound to the reader's challenge, which proves
/// the head is current (docs/relay-formats.md "Relay audit chain", `fresh_sig`).
pub const RELAY_AUDIT_HEAD_FRESH_SIG: &str = "carekey/v1/relay-fresh-head";
/// Author's signature over a FHIR resource (provenance).
pub const RECORD_SIG: &str = "carekey/v1/record";
/// A colleague's signature of its forwarding invite (card, reader key, mailbox).
pub const FORWARD_INVITE_SIG: &str = "carekey/v1/forward-invite";
/// Patient's signature of one section of a scoped manifest (docs/protocol.md "Scoped keys").
pub const SECTION_SIG: &str = "carekey/v1/section";

// ---- hashes ----
/// Hash of a local audit chain entry.
pub const AUDIT_ENTRY_HASH: &str = "carekey/v1/audit-entry";
/// Hash of a relay audit chain entry (docs/relay-formats.md).
pub const RELAY_AUDIT_ENTRY_HASH: &str = "carekey/v1/relay-audit-entry";
/// Read token hash the relay stores (docs/relay-formats.md).
pub const READ_TOKEN_HASH: &str = "carekey/v1/read-token";
/// Pairing transcript hash.
pub const PAIRING_TRANSCRIPT: &str = "carekey/v1/pairing-transcript";
/// Root over the chunk hashes of a chunked attachment.
pub const CHUNK_ROOT: &str = "carekey/v1/chunk-root";

// ---- AEAD associated data ----
/// Prefix of the AAD of every envelope.
pub const ENVELOPE_AAD: &str = "carekey/v1/envelope";
/// Prefix of the AAD of every chunk of a chunked stream.
pub const CHUNK_AAD: &str = "carekey/v1/chunk-aad";

// ---- HKDF info strings ----
/// Key that seals the doctor's pairing reply.
pub const KDF_PAIRING_REPLY: &str = "carekey/v1/kdf/pairing-reply";
/// Session key, patient to doctor.
pub const KDF_PAIRING_P2D: &str = "carekey/v1/kdf/pairing-p2d";
/// Key that seals the patient's "declined" answer to a pairing (instead of the confirmation).
pub const KDF_PAIRING_DECLINE: &str = "carekey/v1/kdf/pairing-decline";
/// Short authentication string (check code).
pub const KDF_PAIRING_CHECK: &str = "carekey/v1/kdf/pairing-check";
/// Relationship id.
pub const KDF_RELATIONSHIP_ID: &str = "carekey/v1/kdf/relationship-id";
/// Sealing key of a relationship message (ephemeral-static).
pub const KDF_MESSAGE: &str = "carekey/v1/kdf/message";
/// Device Ed25519 signing key from the root secret.
pub const KDF_DEVICE_SIGNING: &str = "carekey/v1/kdf/device-signing";
/// Device X25519 static key from the root secret.
pub const KDF_DEVICE_DH: &str = "carekey/v1/kdf/device-dh";
/// Vault key from the root secret.
pub const KDF_VAULT: &str = "carekey/v1/kdf/vault-key";
/// Backup sealing key from the root secret (with a generation index).
pub const KDF_BACKUP_KEY: &str = "carekey/v1/kdf/backup-key";
/// Backup write capability (owner key) from the root secret (with a generation index).
pub const KDF_BACKUP_OWNER: &str = "carekey/v1/kdf/backup-owner";
/// Backup object id from the root secret (with a generation index).
pub const KDF_BACKUP_ID: &str = "carekey/v1/kdf/backup-id";
/// Blind-index MAC key for lookups (per table, with the table name appended).
pub const KDF_BLIND_INDEX: &str = "carekey/v1/kdf/blind-index";
/// Key that wraps per-record content keys in a vault.
pub const KDF_VAULT_WRAP: &str = "carekey/v1/kdf/vault-wrap";
/// Secret of one scope element (category or record) in one epoch, from the epoch key.
pub const KDF_SCOPE_ELEMENT: &str = "carekey/v1/kdf/scope-element";
/// AEAD key of a manifest section, from its element secret.
pub const KDF_SECTION_KEY: &str = "carekey/v1/kdf/section-key";
/// Opaque locator of a manifest section in the sealed manifest, from its element secret.
pub const KDF_SECTION_LOCATOR: &str = "carekey/v1/kdf/section-locator";
/// The relay's opaque group tag of a scope element, from the share's group secret.
pub const KDF_RELAY_GROUP: &str = "carekey/v1/kdf/relay-group";

/// `label || 0x00 || body`: the exact bytes a signature covers.
pub fn signed_message(label: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label.len() + 1 + body.len());
    m.extend_from_slice(label.as_bytes());
    m.push(0);
    m.extend_from_slice(body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &[
        CARD_SIG,
        CARD_ATTESTATION,
        CARD_HASH,
        PAIRING_DOCTOR_SIG,
        PAIRING_PATIENT_SIG,
        GRANT_SIG,
        DELEGATION_SIG,
        MANIFEST_SIG,
        MESSAGE_SIG,
        FETCH_RECEIPT_SIG,
        OWNER_WRITE_SIG,
        AUDIT_HEAD_SIG,
        RELAY_AUDIT_HEAD_SIG,
        RELAY_AUDIT_HEAD_FRESH_SIG,
        RECORD_SIG,
        FORWARD_INVITE_SIG,
        SECTION_SIG,
        AUDIT_ENTRY_HASH,
        RELAY_AUDIT_ENTRY_HASH,
        READ_TOKEN_HASH,
        PAIRING_TRANSCRIPT,
        CHUNK_ROOT,
        ENVELOPE_AAD,
        CHUNK_AAD,
        KDF_PAIRING_REPLY,
        KDF_PAIRING_P2D,
        KDF_PAIRING_DECLINE,
        KDF_PAIRING_CHECK,
        KDF_RELATIONSHIP_ID,
        KDF_MESSAGE,
        KDF_DEVICE_SIGNING,
        KDF_DEVICE_DH,
        KDF_VAULT,
        KDF_BACKUP_KEY,
        KDF_BACKUP_OWNER,
        KDF_BACKUP_ID,
        KDF_BLIND_INDEX,
        KDF_VAULT_WRAP,
        KDF_SCOPE_ELEMENT,
        KDF_SECTION_KEY,
        KDF_SECTION_LOCATOR,
        KDF_RELAY_GROUP,
    ];

    #[test]
    fn labels_are_distinct_and_prefix_free() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(!a.contains('\0'));
            for (j, b) in ALL.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{a} is a prefix of {b}");
                }
            }
        }
    }
}
