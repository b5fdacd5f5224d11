//! Sign-then-seal relationship messages (docs/protocol.md "Relationship messages").
//!
//! The sender signs `(domain label, version, sender card hash, recipient card hash,
//! relationship id, sequence number, kind, body)` with its card key, then seals the signed
//! message to the recipient's static X25519 key under a fresh ephemeral key. Naming both parties
//! inside the signature stops a recipient from re-sealing a message to a third party as if it
//! were addressed to them; the sequence number with [`ReplayGuard`] stops replays and
//! reordering. Static-static DH is never the authentication: the signature is.

use rand_core::{CryptoRng, RngCore};

use crate::envelope::{self, Context, Envelope, ObjectKind};
use crate::error::{Error, Result};
use crate::keys::{Card, DeviceIdentity, DhPublic, SymmetricKey, hkdf32, x25519};
use crate::label;
use crate::wire::{Reader, Wire, Writer};

/// Sealed message format version.
pub const MESSAGE_VERSION: u8 = 1;
/// Largest message body.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What a message carries (the body's format depends on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A new epoch key after a rotation ([`crate::epoch::EpochUpdate`]).
    EpochUpdate = 1,
    /// A signed FHIR resource written by the doctor.
    Note = 2,
    /// A doctor asks the patient to grant a colleague.
    ForwardRequest = 3,
    /// The patient's answer to a forward request.
    ForwardAnswer = 4,
    /// A grant sent outside pairing (forwarding, re-grants).
    Grant = 5,
    /// A notice (delegation registered, access revoked, share expired).
    Notice = 6,
}

impl MessageKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::EpochUpdate,
            2 => Self::Note,
            3 => Self::ForwardRequest,
            4 => Self::ForwardAnswer,
            5 => Self::Grant,
            6 => Self::Notice,
            _ => return None,
        })
    }
}

/// An opened, verified message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Relationship it belongs to.
    pub relationship_id: [u8; 16],
    /// Sender's sequence number.
    pub seq: u64,
    /// Kind.
    pub kind: MessageKind,
    /// Body.
    pub body: Vec<u8>,
}

fn signed_part(
    sender: &[u8; 32],
    recipient: &[u8; 32],
    relationship_id: &[u8; 16],
    seq: u64,
    kind: MessageKind,
    body: &[u8],
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(MESSAGE_VERSION);
    w.raw(sender);
    w.raw(recipient);
    w.raw(relationship_id);
    w.u64(seq);
    w.u8(kind as u8);
    w.bytes32(body);
    w.into_bytes()
}

fn message_key(
    shared: &SymmetricKey,
    eph: &DhPublic,
    recipient: &DhPublic,
    relationship_id: &[u8; 16],
) -> SymmetricKey {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(&eph.0);
    salt[32..].copy_from_slice(&recipient.0);
    SymmetricKey::from_bytes(hkdf32(
        Some(&salt),
        shared.expose_secret(),
        &[label::KDF_MESSAGE.as_bytes(), &[0], relationship_id],
    ))
}

/// Signs and seals one message from `sender` to `recipient`.
#[allow(clippy::too_many_arguments)]
pub fn seal<R: RngCore + CryptoRng>(
    sender: &DeviceIdentity,
    sender_card: &Card,
    recipient: &Card,
    relationship_id: &[u8; 16],
    seq: u64,
    kind: MessageKind,
    body: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>> {
    if body.len() > MAX_BODY {
        return Err(Error::Malformed {
            what: "message",
            reason: "body too large",
        });
    }
    let part = signed_part(
        &sender_card.hash(),
        &recipient.hash(),
        relationship_id,
        seq,
        kind,
        body,
    );
    let sig = sender.signing().sign(label::MESSAGE_SIG, &part);
    seal_signed(&part, &sig, recipient, relationship_id, rng)
}

/// Seals an already signed message to `recipient` under a fresh ephemeral key.
fn seal_signed<R: RngCore + CryptoRng>(
    part: &[u8],
    sig: &[u8; 64],
    recipient: &Card,
    relationship_id: &[u8; 16],
    rng: &mut R,
) -> Result<Vec<u8>> {
    let mut pt = Writer::new();
    pt.bytes32(part);
    pt.raw(sig);
    let eph = x25519_dalek::StaticSecret::random_from_rng(&mut *rng);
    let eph_pub = DhPublic(x25519_dalek::PublicKey::from(&eph).to_bytes());
    let shared = x25519(&eph, &recipient.body.dh_key)?;
    let k = message_key(&shared, &eph_pub, &recipient.body.dh_key, relationship_id);
    let ctx = Context::new(ObjectKind::Message, relationship_id, 0);
    let env = envelope::seal(&k, &ctx, pt.as_slice(), rng);
    let mut out = Writer::new();
    out.u8(MESSAGE_VERSION);
    out.obj(&eph_pub);
    out.obj(&env);
    Ok(out.into_bytes())
}

/// Opens a message sent to `me` by `sender` in `relationship_id`; checks addressing, the
/// signature and the sequence number. The guard only advances on success.
pub fn open(
    me: &DeviceIdentity,
    my_card: &Card,
    sender: &Card,
    relationship_id: &[u8; 16],
    guard: &mut ReplayGuard,
    sealed: &[u8],
) -> Result<Message> {
    let pt = unseal(me, relationship_id, sealed)?;
    let (part, sig, fields) = parse(&pt)?;
    // The signature is checked first: only then do its fields mean anything.
    sender
        .body
        .signing_key
        .verify(label::MESSAGE_SIG, part, &sig, "message")?;
    fields.check_addressing(sender, my_card, relationship_id)?;
    guard.check(fields.message.seq)?;
    guard.highest = fields.message.seq;
    Ok(fields.message)
}

/// Opens the first message of a relationship whose sender the recipient does not know yet
/// (docs/protocol.md "Forwarding": the patient's grant to a colleague, a doctor's
/// delegation, a delegation notice to the patient). The body starts with the sender's card;
/// the card's self-signature, then the message signature under that card's key, then the
/// addressing are checked before anything else is read. Returns the sender's card; the
/// caller decides whether that card is one it will trust (it is only proven self-consistent).
pub fn open_introduction(
    me: &DeviceIdentity,
    my_card: &Card,
    relationship_id: &[u8; 16],
    sealed: &[u8],
) -> Result<(Card, Message)> {
    let pt = unseal(me, relationship_id, sealed)?;
    let (part, sig, fields) = parse(&pt)?;
    let mut r = Reader::new(&fields.message.body, "introduction");
    let sender: Card = r.obj()?;
    sender.verify()?;
    sender
        .body
        .signing_key
        .verify(label::MESSAGE_SIG, part, &sig, "message")?;
    fields.check_addressing(&sender, my_card, relationship_id)?;
    Ok((sender, fields.message))
}

struct Fields {
    from: [u8; 32],
    to: [u8; 32],
    message: Message,
}

impl Fields {
    fn check_addressing(&self, sender: &Card, me: &Card, relationship_id: &[u8; 16]) -> Result<()> {
        if self.from != sender.hash()
            || self.to != me.hash()
            || self.message.relationship_id != *relationship_id
        {
            return Err(Error::WrongRecipient);
        }
        Ok(())
    }
}

/// Splits the plaintext into the signed part, its signature and the part's fields.
fn parse(pt: &[u8]) -> Result<(&[u8], [u8; 64], Fields)> {
    let mut r = Reader::new(pt, "message");
    let part = r.bytes32()?;
    let sig: [u8; 64] = r.array()?;
    r.finish()?;
    let mut p = Reader::new(part, "message");
    p.version(MESSAGE_VERSION)?;
    let from: [u8; 32] = p.array()?;
    let to: [u8; 32] = p.array()?;
    let relationship_id: [u8; 16] = p.array()?;
    let seq = p.u64()?;
    let kind = MessageKind::from_u8(p.u8()?).ok_or_else(|| p.malformed("unknown kind"))?;
    let body = p.bytes32()?.to_vec();
    p.finish()?;
    Ok((
        part,
        sig,
        Fields {
            from,
            to,
            message: Message {
                relationship_id,
                seq,
                kind,
                body,
            },
        },
    ))
}

/// Decrypts the outer layer: `bytes32(signed part) || signature`.
fn unseal(
    me: &DeviceIdentity,
    relationship_id: &[u8; 16],
    sealed: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut r = Reader::new(sealed, "message");
    r.version(MESSAGE_VERSION)?;
    let eph: DhPublic = r.obj()?;
    let env = Envelope::decode(&mut r)?;
    r.finish()?;
    let shared = me.dh(&eph)?;
    let k = message_key(&shared, &eph, &me.dh_public(), relationship_id);
    let ctx = Context::new(ObjectKind::Message, relationship_id, 0);
    envelope::open(&k, &ctx, &env).map_err(|_| Error::Decrypt { what: "message" })
}

/// Highest sequence number accepted from one sender in one relationship.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    highest: u64,
}

impl ReplayGuard {
    /// Resumes from a stored value.
    pub fn from_highest(highest: u64) -> Self {
        Self { highest }
    }
    /// The value to store.
    pub fn highest(&self) -> u64 {
        self.highest
    }
    /// Errors unless `seq` is above everything accepted (sequence numbers start at 1).
    pub fn check(&self, seq: u64) -> Result<()> {
        if seq <= self.highest {
            return Err(Error::Replay {
                highest: self.highest,
                got: seq,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Role, RootSecret};
    use rand_core::OsRng;

    fn party(name: &str) -> (DeviceIdentity, Card) {
        let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let card = id.card(name, Role::Patient, None, 1).expect("valid card");
        (id, card)
    }

    #[test]
    fn readdressed_message_is_rejected() {
        let (d, d_card) = party("Dr. D");
        let (p, p_card) = party("Pat");
        let (o, o_card) = party("Other");
        let rel = [5; 16];
        let m = seal(
            &d,
            &d_card,
            &p_card,
            &rel,
            1,
            MessageKind::Note,
            b"hi",
            &mut OsRng,
        )
        .expect("seals");
        // The recipient, who can open it, re-seals the doctor-signed content to someone else.
        let pt = unseal(&p, &rel, &m).expect("opens");
        let mut r = Reader::new(&pt, "test");
        let part = r.bytes32().expect("part").to_vec();
        let sig: [u8; 64] = r.array().expect("sig");
        let resealed = seal_signed(&part, &sig, &o_card, &rel, &mut OsRng).expect("seals");
        let mut g = ReplayGuard::default();
        assert_eq!(
            open(&o, &o_card, &d_card, &rel, &mut g, &resealed).err(),
            Some(Error::WrongRecipient)
        );
        assert_eq!(g.highest(), 0);
        // The real recipient still accepts the original.
        open(&p, &p_card, &d_card, &rel, &mut g, &m).expect("opens");
    }
}
