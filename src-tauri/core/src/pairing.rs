//! The check-up QR and its key schedule (docs/protocol.md "Pairing"; docs/protocol.md
//! "Pairing").
//!
//! ```text
//! patient                                   doctor
//! eP, s, pairing id  ── QR (CAREKEY:…) ──▶  parse, eD
//!                                           dh1 = X25519(eD, eP)
//!                                           T0  = H(qr public part || eD_pub)
//!                                           k_reply = HKDF(salt s, dh1, info T0)
//!                    ◀── reply ────────────  eD_pub || seal(k_reply, card || reader key || sig(T1))
//! dh1, open reply, verify card + sig(T1)    T1 = H(T0 || card hash || reader key)
//! dh2 = X25519(eP, S_D)                     dh2 = X25519(S_D, eP)
//! session = HKDF(salt s, dh1 || dh2, info T1) → k_p2d, check code, relationship id
//! both show the check code; patient confirms
//!  ── confirm ──────────────────────────▶  seal(k_p2d, patient card || sig(T1) || signed grant)
//! ```
//!
//! The relay never sees `s`, so it cannot answer in the doctor's place; the check code derives
//! from the secret schedule (dh1, dh2), so a photographer of the QR cannot predict or grind the
//! doctor's code; dh2 needs the card's static key, so a borrowed card cannot continue; the
//! patient accepts one reply, then forgets `eP` and `s`.

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::aead::Aead;
use crate::envelope::{Context, ENVELOPE_VERSION, ObjectKind};
use crate::error::{Error, Result};
use crate::grant::SignedGrant;
use crate::keys::{
    Card, DeviceIdentity, DhPublic, OneTimeSecret, PublicKey, SymmetricKey, hkdf32, x25519,
};
use crate::label;
use crate::wire::{Reader, Wire, Writer};

/// QR payload format version.
pub const QR_VERSION: u8 = 1;
/// Pairing reply / confirmation format version.
pub const PAIRING_MSG_VERSION: u8 = 1;
/// URI scheme of the QR text (matched case-insensitively).
pub const QR_SCHEME: &str = "CAREKEY:";
/// Longest relay host+path (without scheme) a QR may carry: keeps the binary payload within
/// its [`MAX_QR_BINARY_LEN`] budget. Hosts up to [`QR_V7_URL_LEN`] characters keep the QR at
/// version ≤ 7 (ECC M, alphanumeric); longer ones grow it to version 8.
pub const MAX_QR_URL_LEN: usize = 49;
/// Longest relay host+path that still fits QR version 7 at ECC M (178 alphanumeric characters).
pub const QR_V7_URL_LEN: usize = 35;
/// Binary budget of the QR payload.
pub const MAX_QR_BINARY_LEN: usize = 120;

const FLAG_HTTPS: u8 = 1;

/// What the patient's QR carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrPayload {
    /// The relay's base URL (`https://…` or `http://…`).
    pub relay_url: String,
    /// The single-use mailbox id.
    pub pairing_id: [u8; 16],
    /// Patient's ephemeral X25519 public key.
    pub patient_ephemeral: DhPublic,
    /// The one-time secret (HKDF salt); never sent to the relay.
    pub secret: OneTimeSecret,
    /// Unix seconds after which the QR is dead.
    pub expires_at: u32,
}

impl QrPayload {
    fn split_url(url: &str) -> Result<(u8, &str)> {
        let (flags, rest) = if let Some(r) = url.strip_prefix("https://") {
            (FLAG_HTTPS, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (0, r)
        } else {
            return Err(Error::Malformed {
                what: "QR payload",
                reason: "relay URL must start with https:// or http://",
            });
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty()
            || rest.len() > MAX_QR_URL_LEN
            || !rest.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::Malformed {
                what: "QR payload",
                reason: "relay URL empty, too long for the QR, or not plain ASCII",
            });
        }
        Ok((flags, rest))
    }

    /// Binary without the secret: the public part every transcript hash starts from.
    fn public_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let (flags, rest) = Self::split_url(&self.relay_url).unwrap_or((0, ""));
        w.u8(QR_VERSION);
        w.u8(flags);
        w.raw(&self.pairing_id);
        w.raw(&self.patient_ephemeral.0);
        w.u32(self.expires_at);
        w.str16(rest);
        w.into_bytes()
    }

    /// The text to render as a QR code: `CAREKEY:` + uppercase base32 (QR alphanumeric mode).
    pub fn to_text(&self) -> String {
        let mut s = String::from(QR_SCHEME);
        s.push_str(&data_encoding::BASE32_NOPAD.encode(&self.to_bytes()));
        s
    }

    /// Parses scanned text; the scheme is case-insensitive, the base32 too.
    pub fn parse(text: &str) -> Result<Self> {
        let what = "QR payload";
        let t = text.trim();
        let body = match t.get(..QR_SCHEME.len()) {
            Some(p) if p.eq_ignore_ascii_case(QR_SCHEME) => &t[QR_SCHEME.len()..],
            _ => return Err(Error::Encoding { what }),
        };
        if body.len() > MAX_QR_BINARY_LEN * 2 {
            return Err(Error::Malformed {
                what,
                reason: "longer than any valid payload",
            });
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::Encoding { what })?;
        Self::from_bytes(&bytes)
    }

    /// Errors if `now` is past the expiry.
    pub fn check_fresh(&self, now: u64) -> Result<()> {
        if now > u64::from(self.expires_at) {
            return Err(Error::Expired { what: "pairing QR" });
        }
        Ok(())
    }
}

impl Wire for QrPayload {
    const WHAT: &'static str = "QR payload";
    fn encode(&self, w: &mut Writer) {
        let (flags, rest) = Self::split_url(&self.relay_url).unwrap_or((0, ""));
        w.u8(QR_VERSION);
        w.u8(flags);
        w.raw(&self.pairing_id);
        w.raw(&self.patient_ephemeral.0);
        w.raw(self.secret.expose_secret());
        w.u32(self.expires_at);
        w.u8(u8::try_from(rest.len()).unwrap_or(0));
        w.raw(rest.as_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(QR_VERSION)?;
        let flags = r.u8()?;
        if flags & !FLAG_HTTPS != 0 {
            return Err(r.malformed("unknown flags"));
        }
        let pairing_id = r.array()?;
        let patient_ephemeral = DhPublic(r.array()?);
        let secret = OneTimeSecret::from_bytes(r.array()?);
        let expires_at = r.u32()?;
        let n = r.u8()?;
        let host = core::str::from_utf8(r.take(usize::from(n))?)
            .map_err(|_| r.malformed("relay URL is not UTF-8"))?;
        let relay_url = format!(
            "{}{}",
            if flags & FLAG_HTTPS != 0 {
                "https://"
            } else {
                "http://"
            },
            host
        );
        // One encoding per URL: no trailing slash, nothing split_url would normalise.
        if Self::split_url(&relay_url)?.1 != host {
            return Err(r.malformed("relay URL not in canonical form"));
        }
        Ok(Self {
            relay_url,
            pairing_id,
            patient_ephemeral,
            secret,
            expires_at,
        })
    }
}

/// Longest return address (an opaque relay mailbox address) a pairing message may carry.
pub const MAX_ADDRESS_LEN: usize = 1024;

fn check_address(address: &[u8]) -> Result<()> {
    if address.len() > MAX_ADDRESS_LEN {
        return Err(Error::Malformed {
            what: "pairing return address",
            reason: "too long",
        });
    }
    Ok(())
}

fn read_address(r: &mut Reader<'_>) -> Result<Vec<u8>> {
    let a = r.bytes16()?.to_vec();
    check_address(&a)?;
    Ok(a)
}

/// What the patient signs: the transcript and its own return address.
fn patient_signed(t1: &[u8; 32], address: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(t1);
    w.bytes16(address);
    w.into_bytes()
}

/// Each pairing key (reply key, patient-to-doctor key) seals exactly one message, owned by one
/// sender: a counter nonce starting at 0 is safe (docs/protocol.md "Primitives").
const FIRST_COUNTER_NONCE: [u8; 12] = [0; 12];

fn seal_once(key: &SymmetricKey, ctx: &Context<'_>, plaintext: &[u8]) -> Vec<u8> {
    let mut buf = plaintext.to_vec();
    Aead::ChaCha20Poly1305
        .seal_in_place(
            key.expose_secret(),
            &FIRST_COUNTER_NONCE,
            &ctx.aad(label::ENVELOPE_AAD, ENVELOPE_VERSION),
            &mut buf,
        )
        .expect("12-byte nonce and a small message");
    buf
}

fn open_once(
    key: &SymmetricKey,
    ctx: &Context<'_>,
    sealed: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(sealed.to_vec());
    Aead::ChaCha20Poly1305.open_in_place(
        key.expose_secret(),
        &FIRST_COUNTER_NONCE,
        &ctx.aad(label::ENVELOPE_AAD, ENVELOPE_VERSION),
        &mut buf,
        what,
    )?;
    Ok(buf)
}

/// The check code both screens show (7 decimal digits, 23.2 bits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CheckCode(u32);

impl CheckCode {
    /// Number of distinct codes.
    pub const SPACE: u64 = 10_000_000;

    fn derive(bytes: &[u8; 32]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        // Bias of a 64-bit value reduced mod 10^7 is below 2^-40: negligible.
        Self((u64::from_be_bytes(b) % Self::SPACE) as u32)
    }
    /// The numeric value.
    pub fn value(&self) -> u32 {
        self.0
    }
}

impl core::fmt::Display for CheckCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:03}-{:04}", self.0 / 10_000, self.0 % 10_000)
    }
}

impl core::fmt::Debug for CheckCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CheckCode(<shown on screen only>)")
    }
}

/// Keys and values both sides derive once the reply is known.
struct Schedule {
    p2d: SymmetricKey,
    /// Seals the patient's "declined" answer: a key of its own, so `k_p2d` still seals
    /// exactly one message (the confirmation) and the decline needs no second nonce.
    decline: SymmetricKey,
    check: CheckCode,
    relationship_id: [u8; 16],
    t1: [u8; 32],
}

fn transcript0(qr: &QrPayload, doctor_eph: &DhPublic) -> [u8; 32] {
    let mut w = Writer::new();
    w.bytes16(&qr.public_bytes());
    w.raw(&doctor_eph.0);
    Sha256::digest(label::signed_message(
        label::PAIRING_TRANSCRIPT,
        w.as_slice(),
    ))
    .into()
}

fn transcript1(t0: &[u8; 32], card: &Card, reader_key: &PublicKey, address: &[u8]) -> [u8; 32] {
    let mut w = Writer::new();
    w.raw(t0);
    w.raw(&card.hash());
    w.raw(reader_key.as_bytes());
    w.bytes16(address);
    Sha256::digest(label::signed_message(
        label::PAIRING_TRANSCRIPT,
        w.as_slice(),
    ))
    .into()
}

fn reply_key(secret: &OneTimeSecret, dh1: &SymmetricKey, t0: &[u8; 32]) -> SymmetricKey {
    SymmetricKey::from_bytes(hkdf32(
        Some(secret.expose_secret()),
        dh1.expose_secret(),
        &[label::KDF_PAIRING_REPLY.as_bytes(), &[0], t0],
    ))
}

fn schedule(
    secret: &OneTimeSecret,
    dh1: &SymmetricKey,
    dh2: &SymmetricKey,
    t1: [u8; 32],
) -> Schedule {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(dh1.expose_secret());
    ikm[32..].copy_from_slice(dh2.expose_secret());
    let k = |l: &str| {
        hkdf32(
            Some(secret.expose_secret()),
            &ikm[..],
            &[l.as_bytes(), &[0], &t1],
        )
    };
    let rel = k(label::KDF_RELATIONSHIP_ID);
    let mut relationship_id = [0u8; 16];
    relationship_id.copy_from_slice(&rel[..16]);
    Schedule {
        p2d: SymmetricKey::from_bytes(k(label::KDF_PAIRING_P2D)),
        decline: SymmetricKey::from_bytes(k(label::KDF_PAIRING_DECLINE)),
        check: CheckCode::derive(&k(label::KDF_PAIRING_CHECK)),
        relationship_id,
        t1,
    }
}

/// The patient's side, from showing the QR to accepting one reply.
pub struct PatientPairing {
    qr: QrPayload,
    ephemeral: Option<x25519_dalek::StaticSecret>,
}

impl core::fmt::Debug for PatientPairing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PatientPairing")
            .field("open", &self.ephemeral.is_some())
            .finish_non_exhaustive()
    }
}

/// What the patient learns from an accepted reply, pending the check-code comparison.
pub struct PatientPending {
    /// The doctor's verified (self-signed) card.
    pub doctor_card: Card,
    /// The doctor's per-relationship pseudonymous reader key (for the read token).
    pub reader_key: PublicKey,
    /// Where the doctor receives messages (opaque to the core: a relay mailbox address).
    pub doctor_address: Vec<u8>,
    schedule: Schedule,
    pairing_id: [u8; 16],
}

impl core::fmt::Debug for PatientPending {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PatientPending")
            .field("doctor", &self.doctor_card.body.name)
            .finish_non_exhaustive()
    }
}

impl PatientPairing {
    /// Starts a pairing: fresh ephemeral key and one-time secret.
    /// `pairing_id` is the single-use mailbox the relay opened for the reply.
    pub fn start<R: RngCore + CryptoRng>(
        relay_url: &str,
        pairing_id: [u8; 16],
        expires_at: u32,
        rng: &mut R,
    ) -> Result<Self> {
        QrPayload::split_url(relay_url)?;
        let ephemeral = x25519_dalek::StaticSecret::random_from_rng(&mut *rng);
        let qr = QrPayload {
            relay_url: relay_url.trim_end_matches('/').to_owned(),
            pairing_id,
            patient_ephemeral: DhPublic(x25519_dalek::PublicKey::from(&ephemeral).to_bytes()),
            secret: OneTimeSecret::random(rng),
            expires_at,
        };
        Ok(Self {
            qr,
            ephemeral: Some(ephemeral),
        })
    }

    /// The QR to show.
    pub fn qr(&self) -> &QrPayload {
        &self.qr
    }

    /// Opens and checks one reply. The first valid reply closes the pairing (the ephemeral key
    /// and secret are dropped), so an old QR is dead; invalid replies leave it open.
    pub fn accept_reply(&mut self, reply: &[u8], now: u64) -> Result<PatientPending> {
        let eph = self.ephemeral.as_ref().ok_or(Error::PairingClosed)?;
        self.qr.check_fresh(now)?;
        let mut r = Reader::new(reply, "pairing reply");
        r.version(PAIRING_MSG_VERSION)?;
        let doctor_eph = DhPublic(r.array()?);
        let sealed = r.rest();
        let dh1 = x25519(eph, &doctor_eph)?;
        let t0 = transcript0(&self.qr, &doctor_eph);
        let k = reply_key(&self.qr.secret, &dh1, &t0);
        let ctx = Context::new(ObjectKind::PairingReply, &self.qr.pairing_id, 0);
        let pt = open_once(&k, &ctx, sealed, "pairing reply")?;
        let mut r = Reader::new(&pt, "pairing reply");
        let card = Card::verified(r.bytes16()?)?;
        let reader_key: PublicKey = r.obj()?;
        let doctor_address = read_address(&mut r)?;
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        let t1 = transcript1(&t0, &card, &reader_key, &doctor_address);
        card.body
            .signing_key
            .verify(label::PAIRING_DOCTOR_SIG, &t1, &sig, "pairing reply")?;
        let dh2 = x25519(eph, &card.body.dh_key)?;
        let schedule = schedule(&self.qr.secret, &dh1, &dh2, t1);
        // First valid reply wins: forget eP and s (dropping zeroizes them), so no other reply
        // can ever be opened and an old QR is dead.
        self.ephemeral = None;
        self.qr.secret = OneTimeSecret::from_bytes([0; 16]);
        Ok(PatientPending {
            doctor_card: card,
            reader_key,
            doctor_address,
            schedule,
            pairing_id: self.qr.pairing_id,
        })
    }
}

/// An established relationship: what both sides remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    /// Shared relationship id (mailbox naming, message binding).
    pub id: [u8; 16],
    /// The other side's card.
    pub peer_card: Card,
    /// Where the other side receives messages (opaque relay mailbox address).
    pub peer_address: Vec<u8>,
}

impl PatientPending {
    /// The code to compare with the doctor's screen.
    pub fn check_code(&self) -> CheckCode {
        self.schedule.check
    }

    /// After the patient confirmed the codes match: seals the patient's card, its transcript
    /// signature and the signed grant to the doctor.
    /// `patient_address` is where the patient receives the doctor's messages.
    pub fn confirm(
        self,
        patient: &DeviceIdentity,
        patient_card: &Card,
        grant: &SignedGrant,
        patient_address: &[u8],
    ) -> Result<(Relationship, Vec<u8>)> {
        check_address(patient_address)?;
        let sig = patient.signing().sign(
            label::PAIRING_PATIENT_SIG,
            &patient_signed(&self.schedule.t1, patient_address),
        );
        let mut w = Writer::new();
        w.bytes16(&patient_card.to_bytes());
        w.bytes16(patient_address);
        w.raw(&sig);
        w.bytes32(&grant.to_bytes());
        let ctx = Context::new(ObjectKind::PairingGrant, &self.pairing_id, 0);
        let mut out = Writer::new();
        out.u8(PAIRING_MSG_VERSION);
        out.raw(&seal_once(&self.schedule.p2d, &ctx, w.as_slice()));
        Ok((
            Relationship {
                id: self.schedule.relationship_id,
                peer_card: self.doctor_card,
                peer_address: self.doctor_address,
            },
            out.into_bytes(),
        ))
    }
}

/// Plaintext of the patient's "declined" answer (reason 0: the patient said no, e.g. the
/// check codes differ). Other values are reserved.
const DECLINED_PLAINTEXT: [u8; 1] = [0];

impl PatientPending {
    /// Instead of [`PatientPending::confirm`]: seals "declined" to the doctor under the
    /// session's decline key, so the doctor's screen stops waiting at once. Only the two
    /// parties of the session can make or open it (the key derives from `s`, `dh1`, `dh2`).
    pub fn decline(self) -> Vec<u8> {
        let ctx = Context::new(ObjectKind::PairingGrant, &self.pairing_id, 0);
        let mut out = Writer::new();
        out.u8(PAIRING_MSG_VERSION);
        out.raw(&seal_once(
            &self.schedule.decline,
            &ctx,
            &DECLINED_PLAINTEXT,
        ));
        out.into_bytes()
    }
}

/// The doctor's side, from scanning to receiving the grant.
pub struct DoctorPairing {
    schedule: Schedule,
    pairing_id: [u8; 16],
}

impl core::fmt::Debug for DoctorPairing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DoctorPairing(<redacted>)")
    }
}

/// What the doctor receives at the end of a pairing.
#[derive(Debug)]
pub struct DoctorOutcome {
    /// The relationship (with the patient's verified card).
    pub relationship: Relationship,
    /// The patient-signed grant (signature already verified against the patient's card).
    pub grant: SignedGrant,
}

impl DoctorPairing {
    /// Scans a QR: returns the doctor state and the reply bytes for the pairing mailbox.
    pub fn respond<R: RngCore + CryptoRng>(
        qr: &QrPayload,
        doctor: &DeviceIdentity,
        card: &Card,
        reader_key: &PublicKey,
        doctor_address: &[u8],
        now: u64,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>)> {
        if card.body.signing_key != doctor.signing_public()
            || card.body.dh_key != doctor.dh_public()
        {
            return Err(Error::InvalidKey {
                what: "card does not belong to this device",
            });
        }
        Self::respond_as(qr, doctor, card, reader_key, doctor_address, now, rng)
    }

    /// The reply computation, without the check that `card` is `doctor`'s (unit tests use it
    /// to play an attacker presenting a borrowed card).
    fn respond_as<R: RngCore + CryptoRng>(
        qr: &QrPayload,
        doctor: &DeviceIdentity,
        card: &Card,
        reader_key: &PublicKey,
        doctor_address: &[u8],
        now: u64,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>)> {
        qr.check_fresh(now)?;
        check_address(doctor_address)?;
        let eph = x25519_dalek::StaticSecret::random_from_rng(&mut *rng);
        let eph_pub = DhPublic(x25519_dalek::PublicKey::from(&eph).to_bytes());
        let dh1 = x25519(&eph, &qr.patient_ephemeral)?;
        let dh2 = doctor.dh(&qr.patient_ephemeral)?;
        let t0 = transcript0(qr, &eph_pub);
        let t1 = transcript1(&t0, card, reader_key, doctor_address);
        let sig = doctor.signing().sign(label::PAIRING_DOCTOR_SIG, &t1);
        let mut pt = Writer::new();
        pt.bytes16(&card.to_bytes());
        pt.obj(reader_key);
        pt.bytes16(doctor_address);
        pt.raw(&sig);
        let k = reply_key(&qr.secret, &dh1, &t0);
        let ctx = Context::new(ObjectKind::PairingReply, &qr.pairing_id, 0);
        let mut out = Writer::new();
        out.u8(PAIRING_MSG_VERSION);
        out.obj(&eph_pub);
        out.raw(&seal_once(&k, &ctx, pt.as_slice()));
        Ok((
            Self {
                schedule: schedule(&qr.secret, &dh1, &dh2, t1),
                pairing_id: qr.pairing_id,
            },
            out.into_bytes(),
        ))
    }

    /// The code the doctor's screen always shows.
    pub fn check_code(&self) -> CheckCode {
        self.schedule.check
    }

    /// Whether `bytes` is the patient's "declined" answer to this pairing
    /// ([`PatientPending::decline`]); anything else is an error and changes nothing.
    pub fn receive_decline(&self, bytes: &[u8]) -> Result<()> {
        let mut r = Reader::new(bytes, "pairing decline");
        r.version(PAIRING_MSG_VERSION)?;
        let sealed = r.rest();
        let ctx = Context::new(ObjectKind::PairingGrant, &self.pairing_id, 0);
        let pt = open_once(&self.schedule.decline, &ctx, sealed, "pairing decline")?;
        if pt.as_slice() != DECLINED_PLAINTEXT {
            return Err(Error::Malformed {
                what: "pairing decline",
                reason: "unknown reason",
            });
        }
        Ok(())
    }

    /// Opens the patient's confirmation: verifies the patient's card, its transcript signature
    /// and the grant signature. A failure leaves the state as it was, so a forged or misrouted
    /// message does not spend the pairing.
    pub fn receive_confirmation(&self, bytes: &[u8]) -> Result<DoctorOutcome> {
        let mut r = Reader::new(bytes, "pairing confirmation");
        r.version(PAIRING_MSG_VERSION)?;
        let sealed = r.rest();
        let ctx = Context::new(ObjectKind::PairingGrant, &self.pairing_id, 0);
        let pt = open_once(&self.schedule.p2d, &ctx, sealed, "pairing confirmation")?;
        let mut r = Reader::new(&pt, "pairing confirmation");
        let card = Card::verified(r.bytes16()?)?;
        let patient_address = read_address(&mut r)?;
        let sig: [u8; 64] = r.array()?;
        let grant = SignedGrant::from_bytes(r.bytes32()?)?;
        r.finish()?;
        card.body.signing_key.verify(
            label::PAIRING_PATIENT_SIG,
            &patient_signed(&self.schedule.t1, &patient_address),
            &sig,
            "pairing confirmation",
        )?;
        grant.verify(&card.body.signing_key)?;
        Ok(DoctorOutcome {
            relationship: Relationship {
                id: self.schedule.relationship_id,
                peer_card: card,
                peer_address: patient_address,
            },
            grant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Role, RootSecret, SigningSecret};
    use rand_core::OsRng;

    /// docs/threat-model.md T5: what keeps a photographer of the QR from showing the
    /// patient the real doctor's code is `dh1 = X25519(eD, eP)` alone. With the whole public
    /// transcript (QR, cards, reader key, address: `t1`) and `dh2` held fixed, only the DH
    /// input changes, from the real doctor's ephemeral to the photographer's, and the code
    /// changes with it (while the same inputs give the same code).
    #[test]
    fn check_code_changes_with_the_dh_input_alone() {
        let p = PatientPairing::start("https://r.example", [1; 16], u32::MAX, &mut OsRng)
            .expect("starts");
        let qr = p.qr();
        let e_doctor = x25519_dalek::StaticSecret::random_from_rng(OsRng);
        let e_photographer = x25519_dalek::StaticSecret::random_from_rng(OsRng);
        let dh1_real = crate::keys::x25519(&e_doctor, &qr.patient_ephemeral).expect("dh");
        let dh1_photo = crate::keys::x25519(&e_photographer, &qr.patient_ephemeral).expect("dh");
        let dh2 = SymmetricKey::from_bytes([0x42; 32]);
        let t1 = [0x17; 32];
        let real = schedule(&qr.secret, &dh1_real, &dh2, t1).check;
        assert_eq!(schedule(&qr.secret, &dh1_real, &dh2, t1).check, real);
        assert_ne!(
            schedule(&qr.secret, &dh1_photo, &dh2, t1).check,
            real,
            "the code must depend on dh1"
        );
    }

    #[test]
    fn borrowed_card_reply_is_rejected() {
        let victim = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let victim_card = victim
            .card("Dr. Famous", Role::Doctor, Some("L-1"), 1)
            .expect("card");
        let attacker = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let reader = SigningSecret::random(&mut OsRng).public();
        let mut p = PatientPairing::start("https://r.example", [1; 16], u32::MAX, &mut OsRng)
            .expect("starts");
        // The local API refuses to present a card that is not this device's.
        assert!(
            DoctorPairing::respond(
                p.qr(),
                &attacker,
                &victim_card,
                &reader,
                b"addr",
                1,
                &mut OsRng
            )
            .is_err()
        );
        // A hand-built reply with the victim's genuine card, signed by the attacker's key.
        let (_, reply) = DoctorPairing::respond_as(
            p.qr(),
            &attacker,
            &victim_card,
            &reader,
            b"addr",
            1,
            &mut OsRng,
        )
        .expect("computes");
        assert!(matches!(
            p.accept_reply(&reply, 1),
            Err(Error::BadSignature { .. })
        ));
        // The failure leaves the pairing open.
        let own = attacker
            .card("Mallory", Role::Doctor, None, 1)
            .expect("card");
        let (_, ok) =
            DoctorPairing::respond(p.qr(), &attacker, &own, &reader, b"addr", 1, &mut OsRng)
                .expect("responds");
        p.accept_reply(&ok, 1)
            .expect("a valid reply is still accepted");
    }

    #[test]
    fn reply_from_another_session_is_rejected() {
        // A genuine reply (valid signature, genuine card) made for one QR is useless for
        // another: a fresh QR has a fresh transcript and key.
        let victim = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let card = victim.card("Dr. V", Role::Doctor, None, 1).expect("card");
        let reader = SigningSecret::random(&mut OsRng).public();
        let p1 =
            PatientPairing::start("https://r.example", [1; 16], u32::MAX, &mut OsRng).expect("ok");
        let mut p2 =
            PatientPairing::start("https://r.example", [1; 16], u32::MAX, &mut OsRng).expect("ok");
        let (_, reply1) =
            DoctorPairing::respond(p1.qr(), &victim, &card, &reader, b"addr", 1, &mut OsRng)
                .expect("ok");
        assert!(p2.accept_reply(&reply1, 1).is_err());
    }

    #[test]
    fn decline_opens_only_as_a_decline_of_this_pairing() {
        let doctor = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let card = doctor.card("Dr. D", Role::Doctor, None, 1).expect("card");
        let reader = SigningSecret::random(&mut OsRng).public();
        let pairing = || {
            PatientPairing::start("https://r.example", [1; 16], u32::MAX, &mut OsRng).expect("ok")
        };
        let mut p = pairing();
        let (d, reply) =
            DoctorPairing::respond(p.qr(), &doctor, &card, &reader, b"addr", 1, &mut OsRng)
                .expect("ok");
        let declined = p.accept_reply(&reply, 1).expect("accepted").decline();
        d.receive_decline(&declined)
            .expect("a decline of this pairing");
        // It is no confirmation, and another pairing's doctor cannot read it as a decline.
        assert!(d.receive_confirmation(&declined).is_err());
        let mut p2 = pairing();
        let (d2, reply2) =
            DoctorPairing::respond(p2.qr(), &doctor, &card, &reader, b"addr", 1, &mut OsRng)
                .expect("ok");
        assert!(d2.receive_decline(&declined).is_err());
        let mut tampered = declined.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(d.receive_decline(&tampered).is_err());
        // A confirmation is no decline.
        let patient = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let pcard = patient.card("Pat", Role::Patient, None, 1).expect("card");
        let pending = p2.accept_reply(&reply2, 1).expect("accepted");
        let grant = crate::grant::Grant {
            share_id: [2; 16],
            relay_url: "https://r.example".into(),
            epoch: 1,
            keys: crate::section::GrantKeys::Epoch(crate::keys::EpochKey::random(&mut OsRng)),
            read_token: crate::keys::ReadToken::random(&mut OsRng),
            policy: crate::grant::Policy::Never,
            scope: crate::grant::Scope::all(),
            expires_at: u64::MAX,
            grantee: card.hash(),
            reader_key: reader,
            delegation_depth: 0,
            issued_at: 1,
        }
        .sign(patient.signing());
        let (_, confirmation) = pending
            .confirm(&patient, &pcard, &grant, b"paddr")
            .expect("confirms");
        assert!(d2.receive_decline(&confirmation).is_err());
        d2.receive_confirmation(&confirmation)
            .expect("still a confirmation");
    }
}
