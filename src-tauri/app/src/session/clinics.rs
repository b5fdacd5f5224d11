//! Clinic keys this device trusts: the trust list a card's attestation is checked against
//! (docs/threat-model.md "Card trust").
//!
//! A card may carry a clinic's attestation (core `keys::Attestation`). Its signature is checked
//! with every card, but against the key the attestation itself names, so anyone can attest
//! their own card as "St. Elsewhere". An attestation counts here only when its clinic key is one
//! the user added on purpose (a clinic's key QR or file, `CAREKEY-CLINIC:` text): then the
//! card reads "attested by `<the name the user gave that key>`"; otherwise it stays "the device
//! you paired with" and the clinic it names is shown as not verified.
//!
//! ## Clinic key text
//! `CAREKEY-CLINIC:` + uppercase base32 (RFC 4648, no padding) of the 32-byte Ed25519 key
//! followed by the clinic's name in UTF-8 (1–200 characters). The text carries no signature:
//! a clinic key is trusted because the user chose to import it from a source they trust (the
//! clinic's own desk, its website), not because of anything inside it.

use carekey_core::keys::{Attestation, Card, PublicKey};
use carekey_core::wire::Wire;
use carekey_vault::Vault;
use serde::{Deserialize, Serialize};

use super::{VaultCell, hex, now, settings};
use crate::error::{AppError, Result};

/// Scheme of a clinic key's text.
pub const CLINIC_SCHEME: &str = "CAREKEY-CLINIC:";
/// Scheme of a device card's text (what a clinic's tool signs: the Profile screen shows it).
pub const CARD_SCHEME: &str = "CAREKEY-CARD:";
/// Scheme of an attestation's text (what the clinic's tool hands back).
pub const ATTESTATION_SCHEME: &str = "CAREKEY-ATTESTATION:";
/// Longest card or attestation text accepted.
const MAX_SIGNED_TEXT: usize = 4096;
/// Longest clinic name (characters), as a card's clinic name.
pub const CLINIC_NAME_MAX_CHARS: usize = 200;
/// Most clinic keys one device keeps.
pub const MAX_TRUSTED_CLINICS: usize = 64;
/// State name of the trust list.
const TRUST_LIST: &str = "carekey/app/clinics/v1";
/// Version of the saved list.
const TRUST_LIST_VERSION: u32 = 1;

/// A clinic key as its text carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClinicKey {
    /// The name the clinic gives itself.
    pub name: String,
    /// Its attestation key.
    pub key: PublicKey,
}

/// One trusted clinic key, as Settings lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedClinic {
    /// The clinic's name (from its key text).
    pub name: String,
    /// The key (64 hex), for `untrust_clinic`.
    pub key: String,
    /// When it was added (unix seconds).
    pub added_at: u64,
}

/// The trust list (sealed in the vault's app state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustList {
    version: u32,
    clinics: Vec<TrustedClinic>,
}

impl ClinicKey {
    /// The key's text (see the module docs).
    pub fn to_text(&self) -> String {
        let mut b = self.key.as_bytes().to_vec();
        b.extend_from_slice(self.name.as_bytes());
        format!("{CLINIC_SCHEME}{}", data_encoding::BASE32_NOPAD.encode(&b))
    }

    /// Parses a clinic key's text (scanned or pasted; case and surrounding space ignored).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || AppError::invalid_input("clinic key: not a Carekey clinic key");
        let t = text.trim();
        let body = t
            .get(..CLINIC_SCHEME.len())
            .filter(|s| s.eq_ignore_ascii_case(CLINIC_SCHEME))
            .and_then(|_| t.get(CLINIC_SCHEME.len()..))
            .ok_or_else(bad)?;
        // 32 key bytes + 200 characters of at most 4 bytes each, in base32.
        if body.len() > (32 + 4 * CLINIC_NAME_MAX_CHARS) * 8 / 5 + 8 {
            return Err(bad());
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad())?;
        let (key, name) = bytes.split_at_checked(32).ok_or_else(bad)?;
        let key: [u8; 32] = key.try_into().map_err(|_| bad())?;
        let key = PublicKey::from_bytes(key).map_err(|_| bad())?;
        let name = std::str::from_utf8(name).map_err(|_| bad())?;
        let chars = name.chars().count();
        if name.trim() != name || !(1..=CLINIC_NAME_MAX_CHARS).contains(&chars) {
            return Err(AppError::invalid_input(
                "clinic key: the clinic's name is missing or too long",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }
}

impl TrustList {
    /// The list saved in `v` (empty when none was saved).
    pub fn load(v: &mut Vault) -> Result<Self> {
        let l: Self = settings::load(v, TRUST_LIST)?.unwrap_or_default();
        if l.version != 0 && l.version != TRUST_LIST_VERSION {
            return Err(AppError::new(
                "unsupported",
                "the trusted clinics were saved by a newer version of the app",
            ));
        }
        Ok(l)
    }

    /// Saves the list in `v`.
    pub fn save(&self, v: &mut Vault) -> Result<()> {
        let mut l = self.clone();
        l.version = TRUST_LIST_VERSION;
        settings::save(v, TRUST_LIST, &l)
    }

    /// Every trusted clinic, in the order they were added.
    pub fn clinics(&self) -> &[TrustedClinic] {
        &self.clinics
    }

    /// Adds `clinic` (the same key again only renames it).
    pub fn add(&mut self, clinic: &ClinicKey, now: u64) -> Result<()> {
        let key = hex(clinic.key.as_bytes());
        if let Some(c) = self.clinics.iter_mut().find(|c| c.key == key) {
            c.name.clone_from(&clinic.name);
            return Ok(());
        }
        if self.clinics.len() >= MAX_TRUSTED_CLINICS {
            return Err(AppError::invalid_input(
                "clinic key: this device already trusts the most clinics it keeps; remove one first",
            ));
        }
        self.clinics.push(TrustedClinic {
            name: clinic.name.clone(),
            key,
            added_at: now,
        });
        Ok(())
    }

    /// Removes the clinic with key `key` (64 hex); `not_found` when it is not listed.
    pub fn remove(&mut self, key: &str) -> Result<()> {
        let at = self
            .clinics
            .iter()
            .position(|c| c.key.eq_ignore_ascii_case(key))
            .ok_or_else(|| AppError::not_found("that clinic"))?;
        self.clinics.remove(at);
        Ok(())
    }

    /// The name (as the user added it) of the trusted clinic whose attestation `card` carries,
    /// when the attestation's key is on this list and its signature verifies; `None` otherwise.
    pub fn vouches_for(&self, card: &Card) -> Option<&str> {
        let a = card.attestation.as_ref()?;
        let key = hex(a.clinic_key.as_bytes());
        let clinic = self.clinics.iter().find(|c| c.key == key)?;
        // `verify` checks the card's own signature and the attestation's, over this card.
        card.verify().ok()?;
        Some(&clinic.name)
    }

    /// Honest wording of a card's trust: "attested by `<clinic>`" only under a key on this
    /// list; otherwise what the card says, marked as not verified. `seen` completes the
    /// sentence for a card without a trusted attestation ("the device you paired with on …").
    pub fn wording(&self, card: &Card, seen: &str) -> String {
        match (self.vouches_for(card), &card.attestation) {
            (Some(name), _) => format!("{seen}, attested by {name} (a clinic key you added)"),
            (None, Some(a)) => format!(
                "{seen} (its card names {}; not verified: that clinic's key is not on this device)",
                a.clinic_name
            ),
            (None, None) => seen.to_owned(),
        }
    }
}

/// `scheme` + uppercase base32 (RFC 4648, no padding) of `bytes`.
fn scheme_text(scheme: &str, bytes: &[u8]) -> String {
    format!("{scheme}{}", data_encoding::BASE32_NOPAD.encode(bytes))
}

/// The bytes of `scheme` text (case and surrounding space ignored), bounded.
fn scheme_bytes(scheme: &str, text: &str, what: &'static str) -> Result<Vec<u8>> {
    let t = text.trim();
    let bad = || AppError::invalid_input(what);
    if t.len() > MAX_SIGNED_TEXT {
        return Err(bad());
    }
    let body = t
        .get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .and_then(|_| t.get(scheme.len()..))
        .ok_or_else(bad)?;
    data_encoding::BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad())
}

/// A device card as text (`CAREKEY-CARD:` + base32 of its wire bytes).
pub fn card_text(card: &Card) -> String {
    scheme_text(CARD_SCHEME, &card.to_bytes())
}

/// A card's fingerprint as the doctor's Profile shows it and the clinic's tool prints it: the
/// first 16 bytes of the card's hash in hex, in groups of 4. The hash covers the body only, so
/// an attestation does not change it (docs/threat-model.md "Card trust").
pub fn card_fingerprint(card: &Card) -> String {
    hex(&card.hash()[..16])
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses and verifies a card's text (a clinic's tool reads it before attesting).
pub fn parse_card(text: &str) -> Result<Card> {
    let b = scheme_bytes(CARD_SCHEME, text, "card: not a Carekey card")?;
    Card::verified(&b).map_err(|_| AppError::invalid_input("card: not a Carekey card"))
}

/// An attestation as text (`CAREKEY-ATTESTATION:` + base32 of its wire bytes).
pub fn attestation_text(a: &Attestation) -> String {
    scheme_text(ATTESTATION_SCHEME, &a.to_bytes())
}

/// Parses an attestation's text (whether it is over a given card is checked on import).
pub fn parse_attestation(text: &str) -> Result<Attestation> {
    let what = "attestation: not a Carekey clinic attestation";
    let b = scheme_bytes(ATTESTATION_SCHEME, text, what)?;
    Attestation::from_bytes(&b).map_err(|_| AppError::invalid_input(what))
}

/// The trusted clinics (Settings on the patient app, Profile on the doctor app).
pub(super) async fn list(vault: &VaultCell) -> Result<Vec<TrustedClinic>> {
    vault
        .run(|v| Ok(TrustList::load(v)?.clinics().to_vec()))
        .await
}

/// The trust list, for wording cards.
pub(super) async fn load(vault: &VaultCell) -> Result<TrustList> {
    vault.run(TrustList::load).await
}

/// Adds the clinic key of `text` (scanned or pasted `CAREKEY-CLINIC:` text).
pub(super) async fn add(vault: &VaultCell, text: &str) -> Result<Vec<TrustedClinic>> {
    let key = ClinicKey::parse(text)?;
    vault
        .run(move |v| {
            let mut l = TrustList::load(v)?;
            l.add(&key, now())?;
            l.save(v)?;
            Ok(l.clinics().to_vec())
        })
        .await
}

/// Removes the clinic key `key` (64 hex).
pub(super) async fn remove(vault: &VaultCell, key: String) -> Result<Vec<TrustedClinic>> {
    vault
        .run(move |v| {
            let mut l = TrustList::load(v)?;
            l.remove(&key)?;
            l.save(v)?;
            Ok(l.clinics().to_vec())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use carekey_core::keys::{DeviceIdentity, Role, RootSecret};
    use rand_core::OsRng;

    fn card(name: &str) -> Card {
        DeviceIdentity::from_root(&RootSecret::random(&mut OsRng))
            .card(name, Role::Doctor, None, 1_700_000_000)
            .expect("card")
    }

    fn clinic(name: &str) -> (DeviceIdentity, ClinicKey) {
        let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let key = ClinicKey {
            name: name.to_owned(),
            key: id.signing().public(),
        };
        (id, key)
    }

    #[test]
    fn clinic_text_round_trips_and_bad_text_is_refused() {
        let (_, k) = clinic("St. Mary's Clinic");
        let text = k.to_text();
        assert!(text.starts_with(CLINIC_SCHEME));
        assert_eq!(ClinicKey::parse(&text).expect("parses"), k);
        assert_eq!(
            ClinicKey::parse(&format!("  {}\n", text.to_lowercase())).expect("lower"),
            k
        );
        for bad in [
            "",
            "CAREKEY-CLINIC:",
            "CAREKEY-INVITE:AAAA",
            "CAREKEY-CLINIC:!!!!",
            &text[..text.len() - 30],
            &format!("{CLINIC_SCHEME}{}", "A".repeat(5000)),
        ] {
            assert_eq!(
                ClinicKey::parse(bad).expect_err(bad).code,
                "invalid_input",
                "{bad}"
            );
        }
        // A key with no name, or a name with a control character.
        for name in [&b""[..], b"Bad\x07Name", b" padded"] {
            let mut b = k.key.as_bytes().to_vec();
            b.extend_from_slice(name);
            let t = format!("{CLINIC_SCHEME}{}", data_encoding::BASE32_NOPAD.encode(&b));
            assert!(ClinicKey::parse(&t).is_err(), "{name:?}");
        }
    }

    #[test]
    fn a_self_attested_card_is_not_vouched_for_and_a_pinned_one_is() {
        let (clinic_id, clinic_key) = clinic("St. Mary's Clinic");
        let mut attested = card("Dr. Ada Quinn");
        attested
            .attest(clinic_id.signing(), "St. Mary's Clinic")
            .expect("attest");
        // Self-attested: the doctor's own key signs "St. Elsewhere".
        let (self_id, _) = clinic("unused");
        let mut selfie = card("Dr. Eve Mallory");
        selfie
            .attest(self_id.signing(), "St. Mary's Clinic")
            .expect("attest");
        let mut list = TrustList::default();
        assert_eq!(list.vouches_for(&attested), None, "nothing pinned yet");
        list.add(&clinic_key, 1).expect("add");
        assert_eq!(list.vouches_for(&attested), Some("St. Mary's Clinic"));
        assert_eq!(list.vouches_for(&selfie), None, "a key nobody pinned");
        let w = list.wording(&selfie, "the device you paired with");
        assert!(
            w.contains("not verified") && !w.contains("attested by"),
            "{w}"
        );
        let w = list.wording(&attested, "the device you paired with");
        assert!(w.contains("attested by St. Mary's Clinic"), "{w}");
        // An attestation moved onto another card does not verify there.
        let mut moved = card("Dr. Eve Mallory");
        moved.attestation = attested.attestation.clone();
        assert_eq!(list.vouches_for(&moved), None);
        // Removing the key removes the trust.
        list.remove(&hex(clinic_key.key.as_bytes()))
            .expect("remove");
        assert_eq!(list.vouches_for(&attested), None);
        assert_eq!(list.remove("00").expect_err("gone").code, "not_found");
    }

    #[test]
    fn card_and_attestation_texts_round_trip_and_refuse_junk() {
        let (clinic_id, _) = clinic("St. Mary's Clinic");
        let mut c = card("Dr. Ada Quinn");
        assert_eq!(parse_card(&card_text(&c)).expect("card"), c);
        c.attest(clinic_id.signing(), "St. Mary's Clinic")
            .expect("attest");
        let a = c.attestation.clone().expect("attested");
        let text = attestation_text(&a);
        assert_eq!(parse_attestation(&text.to_lowercase()).expect("parses"), a);
        for bad in [
            "",
            ATTESTATION_SCHEME,
            "CAREKEY-CARD:AAAA",
            &text[..text.len() - 8],
        ] {
            assert_eq!(parse_attestation(bad).expect_err(bad).code, "invalid_input");
        }
        let huge = format!("{ATTESTATION_SCHEME}{}", "A".repeat(MAX_SIGNED_TEXT));
        assert!(parse_attestation(&huge).is_err());
        // A card whose body was edited fails its self-signature.
        let mut edited = card("Dr. Ada Quinn");
        edited.body.name = "Dr. Someone Else".into();
        assert!(parse_card(&card_text(&edited)).is_err());
    }

    #[test]
    fn the_list_is_bounded_and_adding_twice_renames() {
        let mut list = TrustList::default();
        let (_, k) = clinic("A");
        list.add(&k, 1).expect("add");
        list.add(
            &ClinicKey {
                name: "A renamed".into(),
                key: k.key,
            },
            2,
        )
        .expect("again");
        assert_eq!(list.clinics().len(), 1);
        assert_eq!(list.clinics()[0].name, "A renamed");
        for i in 1..MAX_TRUSTED_CLINICS {
            list.add(&clinic(&format!("C{i}")).1, 3).expect("room");
        }
        assert!(list.add(&clinic("one too many").1, 4).is_err());
    }
}
