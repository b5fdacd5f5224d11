//! Test-only views of secrets a device holds, for the revocation proof
//! (`tests/revocation.rs`). Compiled only with the `test-export` feature, which no app build
//! enables: the tests turn it on through a dev-dependency of this crate on itself.

use carekey_core::grant::DelegationLink;
use carekey_core::keys::{PublicKey, ReadToken, SigningSecret};
use carekey_core::section::GrantKeys;

/// Every key and token a doctor's link to one share holds right now.
///
/// Exists only for the revocation proof: the test collects these before the revoke and shows
/// that none of them reads anything of the new epoch, live or from a copy of the relay's data.
#[derive(Debug)]
pub struct HeldSecrets {
    /// The share.
    pub share_id: crate::ids::ShareId,
    /// Epoch the link holds the keys of.
    pub epoch: u32,
    /// That epoch's keys: the element keys of the link's scope (or a version-1 epoch key).
    pub keys: GrantKeys,
    /// The bearer read token.
    pub read_token: ReadToken,
    /// Root-first delegation chain ending at this link (empty for a patient's grant).
    pub chain: Vec<DelegationLink>,
    /// Relay hash of the root token the chain starts from.
    pub root_token_hash: [u8; 32],
    /// The per-relationship reader key that signs fetch receipts.
    pub reader: SigningSecret,
    /// The patient's card signing key (verifies manifests).
    pub patient_key: PublicKey,
    /// The relationship id (binds messages).
    pub relationship_id: [u8; 16],
    /// Read capability of the doctor's own relationship mailbox.
    pub inbox_read_token: [u8; 32],
    /// Write capability of the patient's relationship mailbox (`None` for a delegated link,
    /// which has no channel to the patient).
    pub peer_write_token: Option<[u8; 32]>,
}
