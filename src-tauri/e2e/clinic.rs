//! A clinic for the WebKit end-to-end tests, made with the project's own core API (what
//! `carekey clinic keygen` and `carekey clinic attest` do): its key text for a phone to pin,
//! and its attestation of a doctor's card text. Included by the patient and doctor tests
//! (`#[path]`), which depend on carekey-core for it.

use carekey_core::keys::SigningSecret;

/// A clinic made for the test with the core API (what `carekey clinic keygen` does): its
/// signing key and the `CAREKEY-CLINIC:` text a phone pins. A fixed seed is enough: the key
/// lives only in this run's devices.
pub fn test_clinic(name: &str, seed: u8) -> (SigningSecret, String) {
    let secret = SigningSecret::from_seed(&[seed; 32]);
    let text = carekey_app::session::ClinicKey {
        name: name.to_owned(),
        key: secret.public(),
    }
    .to_text();
    (secret, text)
}

/// The clinic's attestation of a doctor's `CAREKEY-CARD:` text, as `carekey clinic attest`
/// makes it (the card is verified first): the `CAREKEY-ATTESTATION:` text.
pub fn attest_card(card_text: &str, clinic: &SigningSecret, name: &str) -> String {
    let mut card = carekey_app::session::parse_card(card_text).expect("the Profile's card text");
    card.attest(clinic, name).expect("attest");
    let a = card.attestation.expect("attested");
    carekey_app::session::attestation_text(&a)
}
