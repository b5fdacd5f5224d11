//! The device identity and its card (docs/vault.md "Device identity and card").
//!
//! The identity is derived from the root secret (`DeviceIdentity::from_root`), so it never
//! changes. The card is signed once and stored sealed in the app-state table under a name
//! the vault reserves ([`CARD_STATE`]), so its hash — which grants and messages bind — stays
//! the same across restarts; a new card is issued only when the name, role or licence changes.

use carekey_core::keys::{Attestation, Card, DeviceIdentity, PublicKey, Role};
use carekey_core::label;
use carekey_core::wire::Wire;
use serde_json::Value;

use super::{Vault, now_secs, record_signing_bytes};
use crate::error::{Result, VaultError};

/// App-state name of the stored device card (the apps' own names start with `carekey/`).
const CARD_STATE: &str = "carekey-vault/device-card";

/// Version byte of the stored card value: `1 || card (core wire bytes)`.
const CARD_VERSION: u8 = 1;

impl Vault {
    /// This device's signing public key (derived from the root).
    pub fn signing_public(&mut self) -> Result<PublicKey> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        Ok(st.keys.identity.signing_public())
    }

    /// This device's long-term identity (Ed25519 + X25519), derived from the root secret: with
    /// [`Vault::device_card`] the app builds its patient or doctor service from the vault alone.
    pub fn device_identity(&mut self) -> Result<DeviceIdentity> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        Ok(DeviceIdentity::from_root(&st.keys.root))
    }

    /// This device's signed card, stable across restarts: the stored card when `name`, `role`
    /// and `licence` are the ones it carries, else (first start, or a profile edit) a new card
    /// signed now, which is stored and returned from then on.
    pub fn device_card(&mut self, name: &str, role: Role, licence: Option<&str>) -> Result<Card> {
        if let Some(card) = self.card()?
            && card.body.name == name
            && card.body.role == role
            && card.body.licence_id.as_deref() == licence
        {
            return Ok(card);
        }
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let card = st.keys.identity.card(name, role, licence, now_secs())?;
        let mut value = vec![CARD_VERSION];
        value.extend_from_slice(&card.to_bytes());
        self.put_state(CARD_STATE, &value)?;
        Ok(card)
    }

    /// The stored device card, if [`Vault::device_card`] issued one. A stored value that does
    /// not decode, is not signed by this device's key or fails its self-signature is reported
    /// as tampered.
    pub fn card(&mut self) -> Result<Option<Card>> {
        let Some(value) = self.get_state(CARD_STATE)? else {
            return Ok(None);
        };
        let bad = || VaultError::Tampered {
            what: "device card",
            id: CARD_STATE.to_owned(),
        };
        let (&version, bytes) = value.split_first().ok_or_else(bad)?;
        if version != CARD_VERSION {
            return Err(bad());
        }
        let card = Card::from_bytes(bytes).map_err(|_| bad())?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        let ours = card.body.signing_key == st.keys.identity.signing_public()
            && card.body.dh_key == st.keys.identity.dh_public();
        if !ours || card.verify().is_err() {
            return Err(bad());
        }
        Ok(Some(card))
    }

    /// Attaches a clinic's attestation to the stored device card (its hash, which grants and
    /// messages bind, is over the card body and does not change). The attestation must be a
    /// valid signature over this very card; whether a reader believes the clinic is their own
    /// trust list's business (docs/threat-model.md "Card trust").
    pub fn set_card_attestation(&mut self, attestation: Attestation) -> Result<Card> {
        let mut card = self
            .card()?
            .ok_or(VaultError::InvalidArgument("no device card yet"))?;
        card.attestation = Some(attestation);
        card.verify()
            .map_err(|_| VaultError::InvalidArgument("the attestation is not for this card"))?;
        let mut value = vec![CARD_VERSION];
        value.extend_from_slice(&card.to_bytes());
        self.put_state(CARD_STATE, &value)?;
        Ok(card)
    }

    /// Signs a resource as its author (doctor notes): verify with
    /// [`crate::verify_record_signature`].
    pub fn sign_record(&mut self, resource: &Value) -> Result<[u8; 64]> {
        self.touch()?;
        let st = self.state.as_ref().ok_or(VaultError::Locked)?;
        Ok(st
            .keys
            .identity
            .signing()
            .sign(label::RECORD_SIG, &record_signing_bytes(resource)))
    }
}
