//! Device identities, cards, and the secret types (docs/protocol.md "Keys and identities",
//! "Primitives").
//!
//! Secret types zeroize on drop, print `<redacted>`, have no `serde` impls and no `Clone` unless
//! a flow needs one; the only way to their bytes is an explicit `expose_secret`. Wire encodings of
//! secrets exist only inside structures that are always sealed (grant, manifest).

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::label;
use crate::wire::{Reader, Wire, Writer};

/// Declares a fixed-size secret type.
macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;
            /// Fresh random secret from the OS RNG (or a test RNG).
            pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
                let mut b = [0u8; $len];
                rng.fill_bytes(&mut b);
                Self(b)
            }
            /// Wraps existing bytes (decoded from a sealed structure or derived).
            pub fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
            /// The secret bytes: every call site is a place to audit.
            pub fn expose_secret(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            /// Constant time.
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }
        impl Eq for $name {}

        impl Wire for $name {
            const WHAT: &'static str = stringify!($name);
            fn encode(&self, w: &mut Writer) {
                w.raw(&self.0);
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self> {
                Ok(Self(r.array()?))
            }
        }
    };
}

secret_type!(
    /// The 32-byte root of a device: everything else derives from it; shown once as the
    /// 24-word recovery phrase.
    RootSecret,
    32
);
secret_type!(
    /// Symmetric key of one share epoch: seals the manifest.
    EpochKey,
    32
);
secret_type!(
    /// Fresh symmetric key of one blob in one epoch.
    ContentKey,
    32
);
secret_type!(
    /// Bearer read token; the relay only ever sees its hash.
    ReadToken,
    32
);
secret_type!(
    /// The one-time secret of a pairing QR: never sent to the relay.
    OneTimeSecret,
    16
);
secret_type!(
    /// A directional session key or another derived AEAD key.
    SymmetricKey,
    32
);
secret_type!(
    /// The secret of one scope element (a category or a record) in one share epoch,
    /// derived from the epoch key (docs/protocol.md "Scoped keys"): opens that element's
    /// manifest section and nothing else. Grantees hold these, never the epoch key.
    SectionSecret,
    32
);
secret_type!(
    /// Per-share secret the patient derives the relay's opaque group tags from (docs/protocol.md
    /// "Scoped keys"); never leaves the patient's device.
    GroupSecret,
    32
);

/// A 32-byte symmetric key that may seal envelopes (content, epoch, session, vault keys).
pub trait SealingKey {
    /// The key bytes.
    fn key_bytes(&self) -> &[u8; 32];
}

// Only keys whose purpose is sealing may seal: the root secret and read tokens may not.
macro_rules! sealing_key {
    ($($name:ident),*) => {$(
        impl SealingKey for $name {
            fn key_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }
    )*};
}
sealing_key!(EpochKey, ContentKey, SymmetricKey);

impl ReadToken {
    /// `SHA-256("carekey/v1/read-token" 0x00 || token)`: the only form the relay stores.
    pub fn relay_hash(&self) -> [u8; 32] {
        Sha256::digest(label::signed_message(label::READ_TOKEN_HASH, &self.0)).into()
    }
}

/// HKDF-SHA256 (RFC 5869) into `out`; `info` is the concatenation of its parts. Errors only if
/// `out` is longer than 255 × 32 bytes.
pub fn hkdf_sha256(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<()> {
    hkdf::Hkdf::<Sha256>::new(salt, ikm)
        .expand_multi_info(info, out)
        .map_err(|_| Error::Malformed {
            what: "HKDF output",
            reason: "longer than 255 hash lengths",
        })
}

/// HKDF-SHA256 into 32 bytes.
pub(crate) fn hkdf32(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf_sha256(salt, ikm, info, &mut out).expect("32 bytes is far below the HKDF limit");
    out
}

impl RootSecret {
    /// A 32-byte key derived for one purpose (`label`), with an optional sub-index.
    pub fn derive(&self, purpose: &str, index: u32) -> SymmetricKey {
        SymmetricKey(hkdf32(
            None,
            &self.0,
            &[purpose.as_bytes(), &[0], &index.to_be_bytes()],
        ))
    }
}

/// Roles a card can claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A patient device.
    Patient = 1,
    /// A clinician device.
    Doctor = 2,
}

impl Wire for Role {
    const WHAT: &'static str = "role";
    fn encode(&self, w: &mut Writer) {
        w.u8(*self as u8);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match r.u8()? {
            1 => Ok(Role::Patient),
            2 => Ok(Role::Doctor),
            _ => Err(r.malformed("unknown role")),
        }
    }
}

/// An Ed25519 public key, checked on construction.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Public, but linkable: print only a short prefix.
        write!(f, "PublicKey({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl PublicKey {
    /// Accepts only canonical encodings of points that are not of small order.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self> {
        let what = "Ed25519 public key";
        let vk = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::InvalidKey { what })?;
        if vk.is_weak() || !canonical_point(&bytes) {
            return Err(Error::InvalidKey { what });
        }
        Ok(Self(bytes))
    }
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Verifies `sig` over `label || 0x00 || body` with `verify_strict`, also rejecting a
    /// non-canonical `R` (see docs/protocol.md "Signatures" for the CCTV edge-case policy).
    pub fn verify(
        &self,
        label: &str,
        body: &[u8],
        sig: &[u8; 64],
        what: &'static str,
    ) -> Result<()> {
        verify_raw(&self.0, &label::signed_message(label, body), sig, what)
    }
}

/// Strict Ed25519 verification of a raw message: canonical `A` and `R`, no small-order `A` or
/// `R`, `s < L`, cofactorless equation.
pub fn verify_raw(key: &[u8; 32], msg: &[u8], sig: &[u8; 64], what: &'static str) -> Result<()> {
    let bad = Error::BadSignature { what };
    let vk = VerifyingKey::from_bytes(key).map_err(|_| bad.clone())?;
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig[..32]);
    // `A` was just decompressed: check its canonical encoding from that point instead of
    // decompressing it again (a sectioned manifest verifies one signature per section).
    if vk.to_edwards().compress().to_bytes() != *key || !canonical_point(&r) {
        return Err(bad);
    }
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    vk.verify_strict(msg, &sig).map_err(|_| bad)
}

/// True if `bytes` decompresses to a point whose canonical encoding is `bytes` (rejects
/// `y ≥ p` and the negative-zero `x`).
fn canonical_point(bytes: &[u8; 32]) -> bool {
    // VerifyingKey::from_bytes decompresses; its `to_bytes` returns the input bytes, so
    // recompute the canonical encoding from the point itself.
    match VerifyingKey::from_bytes(bytes) {
        Ok(vk) => vk.to_edwards().compress().to_bytes() == *bytes,
        Err(_) => false,
    }
}

impl Wire for PublicKey {
    const WHAT: &'static str = "Ed25519 public key";
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Self::from_bytes(r.array()?)
    }
}

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DhPublic(pub [u8; 32]);

impl core::fmt::Debug for DhPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DhPublic({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl Wire for DhPublic {
    const WHAT: &'static str = "X25519 public key";
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self(r.array()?))
    }
}

/// X25519 with the all-zero check of docs/protocol.md "Primitives".
pub fn x25519(secret: &x25519_dalek::StaticSecret, peer: &DhPublic) -> Result<SymmetricKey> {
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
    if !shared.was_contributory() {
        return Err(Error::ZeroSharedSecret);
    }
    Ok(SymmetricKey(*shared.as_bytes()))
}

/// An Ed25519 signing key (zeroized on drop by ed25519-dalek).
pub struct SigningSecret(SigningKey);

impl core::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl SigningSecret {
    /// Fresh random key (per-share owner keys, per-relationship reader keys).
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }
    /// From 32 seed bytes (derived keys).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }
    /// The seed, for sealed storage only.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }
    /// Signs `label || 0x00 || body`.
    pub fn sign(&self, label: &str, body: &[u8]) -> [u8; 64] {
        self.0.sign(&label::signed_message(label, body)).to_bytes()
    }
}

/// The long-term keys of one install: Ed25519 to sign, X25519 to receive sealed messages.
pub struct DeviceIdentity {
    signing: SigningSecret,
    dh: x25519_dalek::StaticSecret,
}

impl core::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("signing_public", &self.signing.public())
            .finish_non_exhaustive()
    }
}

impl DeviceIdentity {
    /// Derives the identity from the root secret, so the recovery phrase re-creates it.
    pub fn from_root(root: &RootSecret) -> Self {
        let s = root.derive(label::KDF_DEVICE_SIGNING, 0);
        let d = root.derive(label::KDF_DEVICE_DH, 0);
        Self {
            signing: SigningSecret::from_seed(s.expose_secret()),
            dh: x25519_dalek::StaticSecret::from(*d.expose_secret()),
        }
    }
    /// Signing half.
    pub fn signing(&self) -> &SigningSecret {
        &self.signing
    }
    /// Signing public key.
    pub fn signing_public(&self) -> PublicKey {
        self.signing.public()
    }
    /// X25519 static public key.
    pub fn dh_public(&self) -> DhPublic {
        DhPublic(x25519_dalek::PublicKey::from(&self.dh).to_bytes())
    }
    /// X25519 with the static key (all-zero rejected).
    pub fn dh(&self, peer: &DhPublic) -> Result<SymmetricKey> {
        x25519(&self.dh, peer)
    }
    /// Makes and self-signs a card for this identity.
    pub fn card(
        &self,
        name: &str,
        role: Role,
        licence_id: Option<&str>,
        created_at: u64,
    ) -> Result<Card> {
        check_text("card name", name, 1, 200)?;
        if let Some(l) = licence_id {
            check_text("card licence id", l, 1, 100)?;
        }
        let body = CardBody {
            name: name.to_owned(),
            role,
            licence_id: licence_id.map(str::to_owned),
            signing_key: self.signing_public(),
            dh_key: self.dh_public(),
            created_at,
        };
        let signature = self.signing.sign(label::CARD_SIG, &body.to_bytes());
        Ok(Card {
            body,
            signature,
            attestation: None,
        })
    }
}

/// Length and character checks for human text carried in signed structures.
pub(crate) fn check_text(what: &'static str, s: &str, min: usize, max: usize) -> Result<()> {
    if s.len() < min || s.len() > max {
        return Err(Error::Malformed {
            what,
            reason: "length out of range",
        });
    }
    if s.chars().any(char::is_control) {
        return Err(Error::Malformed {
            what,
            reason: "control characters",
        });
    }
    Ok(())
}

/// The self-asserted part of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardBody {
    /// Display name.
    pub name: String,
    /// Claimed role.
    pub role: Role,
    /// Licence id (doctors).
    pub licence_id: Option<String>,
    /// Ed25519 key that signs for this device.
    pub signing_key: PublicKey,
    /// X25519 key that receives sealed messages.
    pub dh_key: DhPublic,
    /// Unix seconds.
    pub created_at: u64,
}

const CARD_VERSION: u8 = 1;

impl Wire for CardBody {
    const WHAT: &'static str = "card";
    fn encode(&self, w: &mut Writer) {
        w.u8(CARD_VERSION);
        w.str16(&self.name);
        w.obj(&self.role);
        match &self.licence_id {
            None => w.u8(0),
            Some(l) => {
                w.u8(1);
                w.str16(l);
            }
        }
        w.obj(&self.signing_key);
        w.obj(&self.dh_key);
        w.u64(self.created_at);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(CARD_VERSION)?;
        let name = r.str16()?;
        let role = r.obj()?;
        let licence_id = if r.bool()? { Some(r.str16()?) } else { None };
        Ok(Self {
            name,
            role,
            licence_id,
            signing_key: r.obj()?,
            dh_key: r.obj()?,
            created_at: r.u64()?,
        })
    }
}

/// A clinic's signature over a card hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The clinic's Ed25519 key (the UI decides whether it trusts it).
    pub clinic_key: PublicKey,
    /// The clinic's name as it signed it.
    pub clinic_name: String,
    /// Signature over `CARD_ATTESTATION || card hash || clinic name`.
    pub signature: [u8; 64],
}

impl Wire for Attestation {
    const WHAT: &'static str = "card attestation";
    fn encode(&self, w: &mut Writer) {
        w.obj(&self.clinic_key);
        w.str16(&self.clinic_name);
        w.raw(&self.signature);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            clinic_key: r.obj()?,
            clinic_name: r.str16()?,
            signature: r.array()?,
        })
    }
}

/// A signed card: the public identity of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// What the device says about itself.
    pub body: CardBody,
    /// Self-signature by `body.signing_key`.
    pub signature: [u8; 64],
    /// Optional clinic attestation.
    pub attestation: Option<Attestation>,
}

impl Wire for Card {
    const WHAT: &'static str = "card";
    fn encode(&self, w: &mut Writer) {
        w.obj(&self.body);
        w.raw(&self.signature);
        crate::wire::write_opt(w, &self.attestation);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            body: r.obj()?,
            signature: r.array()?,
            attestation: crate::wire::read_opt(r)?,
        })
    }
}

impl Card {
    /// Decodes and verifies the self-signature (and the attestation signature if present).
    pub fn verified(bytes: &[u8]) -> Result<Self> {
        let c = Self::from_bytes(bytes)?;
        c.verify()?;
        Ok(c)
    }
    /// Checks the self-signature and, if present, the attestation signature.
    pub fn verify(&self) -> Result<()> {
        check_text("card name", &self.body.name, 1, 200)?;
        self.body.signing_key.verify(
            label::CARD_SIG,
            &self.body.to_bytes(),
            &self.signature,
            "card",
        )?;
        if let Some(a) = &self.attestation {
            a.clinic_key.verify(
                label::CARD_ATTESTATION,
                &attestation_body(&self.hash(), &a.clinic_name),
                &a.signature,
                "card attestation",
            )?;
        }
        Ok(())
    }
    /// The identity hash others pin: over the body only, so adding an attestation keeps it.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(label::signed_message(
            label::CARD_HASH,
            &self.body.to_bytes(),
        ))
        .into()
    }
    /// A clinic attests this card.
    pub fn attest(&mut self, clinic: &SigningSecret, clinic_name: &str) -> Result<()> {
        check_text("clinic name", clinic_name, 1, 200)?;
        let signature = clinic.sign(
            label::CARD_ATTESTATION,
            &attestation_body(&self.hash(), clinic_name),
        );
        self.attestation = Some(Attestation {
            clinic_key: clinic.public(),
            clinic_name: clinic_name.to_owned(),
            signature,
        });
        Ok(())
    }
}

fn attestation_body(card_hash: &[u8; 32], clinic_name: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(card_hash);
    w.str16(clinic_name);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let k = EpochKey::random(&mut OsRng);
        assert_eq!(format!("{k:?}"), "EpochKey(<redacted>)");
        let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        assert!(!format!("{id:?}").contains("dh"));
        assert_eq!(format!("{:?}", id.signing()), "SigningSecret(<redacted>)");
    }

    #[test]
    fn card_roundtrip_verify_and_tamper() {
        let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let mut card = id
            .card(
                "Dr. Ada Lovelace",
                Role::Doctor,
                Some("GMC-1234"),
                1_700_000_000,
            )
            .expect("valid card");
        let clinic = SigningSecret::random(&mut OsRng);
        card.attest(&clinic, "St. Elsewhere").expect("valid name");
        let bytes = card.to_bytes();
        let back = Card::verified(&bytes).expect("verifies");
        assert_eq!(back, card);
        // Any flipped bit in the body breaks a signature or the decoding.
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 1;
            assert!(Card::verified(&t).is_err(), "bit flip at {i} accepted");
        }
    }

    #[test]
    fn identity_is_a_function_of_the_root() {
        let root = RootSecret::from_bytes([7; 32]);
        let a = DeviceIdentity::from_root(&root);
        let b = DeviceIdentity::from_root(&root);
        assert_eq!(a.signing_public(), b.signing_public());
        assert_eq!(a.dh_public(), b.dh_public());
        assert_ne!(a.signing_public().as_bytes(), &a.dh_public().0);
    }

    #[test]
    fn x25519_rejects_low_order_points() {
        let s = x25519_dalek::StaticSecret::random_from_rng(OsRng);
        assert_eq!(
            x25519(&s, &DhPublic([0; 32])).err(),
            Some(Error::ZeroSharedSecret)
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(
            x25519(&s, &DhPublic(one)).err(),
            Some(Error::ZeroSharedSecret)
        );
    }
}
