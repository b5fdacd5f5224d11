//! Forwarding to a colleague (docs/protocol.md "Forwarding"; docs/protocol.md
//! "Forwarding").
//!
//! - A colleague hands the forwarding doctor a [`ColleagueInvite`]: its card, a fresh reader key
//!   for this share, the mailbox where the first message goes and the relationship id that
//!   message will carry, all signed by the colleague's card key. The signature is what stops a
//!   doctor from pairing a colleague's name with a reader key of its own (a borrowed card): the
//!   patient, the relay's notice and the colleague all see the same signed binding.
//! - Policy `ask`: the doctor sends a [`ForwardRequest`] (invite, scope, reason) as a
//!   relationship message; the patient answers with a [`ForwardAnswer`] and, when approving,
//!   grants the colleague directly with an [`Introduction`] carrying [`Access::Direct`].
//! - Policy `allowed`: the doctor signs a delegation link to the invite's reader key, registers
//!   it at the relay with a [`DelegationNotice`] sealed to the patient, and sends the colleague
//!   an [`Introduction`] carrying [`Access::Delegated`] (the chain, never its own token).
//! - Policy `never`: neither message is ever sent; the relay also refuses the link because the
//!   root registration has depth 0.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::grant::{DelegationLink, DelegationRoot, Scope, SignedGrant, verify_chain};
use crate::keys::{Card, DeviceIdentity, PublicKey, ReadToken, check_text};
use crate::label;
use crate::section::GrantKeys;
use crate::wire::{Reader, Wire, Writer};

const INVITE_VERSION: u8 = 1;
const REQUEST_VERSION: u8 = 1;
const ANSWER_VERSION: u8 = 1;
const INTRODUCTION_VERSION: u8 = 1;
const NOTICE_VERSION: u8 = 1;

/// Longest opaque mailbox address carried in an invite or introduction.
pub const MAX_ADDRESS: usize = 256;
/// Longest reason text in a forward request.
pub const MAX_REASON: usize = 1000;
/// Longest delegation chain (the relay's limit too).
pub const MAX_CHAIN: usize = 4;

/// A colleague's signed offer to receive a share (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColleagueInvite {
    /// The colleague's card.
    pub card: Card,
    /// Fresh reader key the colleague will sign fetch receipts with.
    pub reader_key: PublicKey,
    /// Where the first message goes (opaque relay mailbox address).
    pub address: Vec<u8>,
    /// Relationship id the first message must carry.
    pub relationship_id: [u8; 16],
    /// Unix seconds after which the invite is dead.
    pub expires_at: u64,
    /// Colleague's signature over everything above.
    pub signature: [u8; 64],
}

impl ColleagueInvite {
    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(INVITE_VERSION);
        w.obj(&self.card);
        w.obj(&self.reader_key);
        w.bytes16(&self.address);
        w.raw(&self.relationship_id);
        w.u64(self.expires_at);
        w.into_bytes()
    }

    /// Makes and signs an invite with the colleague's device key.
    pub fn sign(
        colleague: &DeviceIdentity,
        card: &Card,
        reader_key: PublicKey,
        address: Vec<u8>,
        relationship_id: [u8; 16],
        expires_at: u64,
    ) -> Result<Self> {
        if address.len() > MAX_ADDRESS {
            return Err(Error::Malformed {
                what: "colleague invite",
                reason: "address too long",
            });
        }
        let mut i = Self {
            card: card.clone(),
            reader_key,
            address,
            relationship_id,
            expires_at,
            signature: [0; 64],
        };
        i.signature = colleague
            .signing()
            .sign(label::FORWARD_INVITE_SIG, &i.unsigned_bytes());
        Ok(i)
    }

    /// Checks the card, the colleague's signature and the expiry.
    pub fn verify(&self, now: u64) -> Result<()> {
        self.card.verify()?;
        self.card.body.signing_key.verify(
            label::FORWARD_INVITE_SIG,
            &self.unsigned_bytes(),
            &self.signature,
            "colleague invite",
        )?;
        if now > self.expires_at {
            return Err(Error::Expired {
                what: "colleague invite",
            });
        }
        Ok(())
    }
}

impl Wire for ColleagueInvite {
    const WHAT: &'static str = "colleague invite";
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.unsigned_bytes());
        w.raw(&self.signature);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(INVITE_VERSION)?;
        let i = Self {
            card: r.obj()?,
            reader_key: r.obj()?,
            address: r.bytes16()?.to_vec(),
            relationship_id: r.array()?,
            expires_at: r.u64()?,
            signature: r.array()?,
        };
        if i.address.len() > MAX_ADDRESS {
            return Err(r.malformed("address too long"));
        }
        Ok(i)
    }
}

/// Policy `ask`: the doctor asks the patient to grant a colleague (body of a
/// `MessageKind::ForwardRequest`, so it is signed by the doctor and bound to the relationship).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest {
    /// The share the doctor holds.
    pub share_id: [u8; 16],
    /// The colleague's signed invite.
    pub invite: ColleagueInvite,
    /// What the colleague should see (must be within the doctor's scope).
    pub scope: Scope,
    /// Free text shown to the patient.
    pub reason: String,
}

impl ForwardRequest {
    /// Hash the answer refers to.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
}

impl Wire for ForwardRequest {
    const WHAT: &'static str = "forward request";
    fn encode(&self, w: &mut Writer) {
        w.u8(REQUEST_VERSION);
        w.raw(&self.share_id);
        w.obj(&self.invite);
        w.obj(&self.scope);
        w.str16(&self.reason);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(REQUEST_VERSION)?;
        let f = Self {
            share_id: r.array()?,
            invite: r.obj()?,
            scope: r.obj()?,
            reason: r.str16()?,
        };
        check_text("forward reason", &f.reason, 0, MAX_REASON)?;
        Ok(f)
    }
}

/// The patient's answer to a [`ForwardRequest`] (body of a `MessageKind::ForwardAnswer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAnswer {
    /// [`ForwardRequest::hash`] of the request answered.
    pub request_hash: [u8; 32],
    /// Whether the colleague was granted.
    pub approved: bool,
}

impl Wire for ForwardAnswer {
    const WHAT: &'static str = "forward answer";
    fn encode(&self, w: &mut Writer) {
        w.u8(ANSWER_VERSION);
        w.raw(&self.request_hash);
        w.u8(u8::from(self.approved));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(ANSWER_VERSION)?;
        Ok(Self {
            request_hash: r.array()?,
            approved: r.bool()?,
        })
    }
}

/// Access handed to a colleague under policy `allowed`: everything a reader needs except a
/// patient signature, plus the chain the relay verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedAccess {
    /// Share id.
    pub share_id: [u8; 16],
    /// Relay base URL.
    pub relay_url: String,
    /// Current epoch.
    pub epoch: u32,
    /// The current epoch's keys: the element keys of the colleague's scope (access kind 3),
    /// or the whole epoch key of a version-1 share (kind 2).
    pub keys: GrantKeys,
    /// The colleague's own read token (registered by the delegation).
    pub read_token: ReadToken,
    /// Relay hash of the root token the chain starts from (needed to delegate further).
    pub root_token_hash: [u8; 32],
    /// Root-first chain; the last link names the colleague's reader key and token.
    pub chain: Vec<DelegationLink>,
}

impl DelegatedAccess {
    /// The colleague's checks: the last link is to `my_reader` with this token, every link is
    /// signed by the previous child and only narrows (the relay checked the root end).
    pub fn verify(&self, my_reader: &PublicKey, now: u64) -> Result<()> {
        let (Some(first), Some(last)) = (self.chain.first(), self.chain.last()) else {
            return Err(Error::Delegation {
                index: 0,
                reason: "empty chain",
            });
        };
        if last.child_key != *my_reader || last.child_token_hash != self.read_token.relay_hash() {
            return Err(Error::WrongRecipient);
        }
        // The root registration is the patient's and only the relay sees it; the colleague
        // checks the chain from its first link on (same parent, one more depth).
        let root = DelegationRoot {
            reader_key: first.parent_key,
            scope: first.scope.clone(),
            expires_at: first.expires_at,
            depth: first.depth.saturating_add(1),
            groups: first.groups.clone(),
        };
        verify_chain(&self.share_id, &root, &self.chain, now)?;
        // The keys must be exactly those of the colleague's own scope, and the relay groups
        // its token was registered with those of the keys (a scoped share has both, a
        // version-1 share neither).
        let consistent = match &self.keys {
            GrantKeys::Scoped(k) => {
                k.covers_exactly(&last.scope) && last.groups.as_ref() == Some(&k.groups())
            }
            GrantKeys::Epoch(_) => last.groups.is_none(),
        };
        if !consistent {
            return Err(Error::Delegation {
                index: self.chain.len() - 1,
                reason: "the keys do not match the delegated scope",
            });
        }
        Ok(())
    }

    /// The last link (the colleague's own).
    pub fn own_link(&self) -> Option<&DelegationLink> {
        self.chain.last()
    }
}

fn write_chain(w: &mut Writer, chain: &[DelegationLink]) {
    // MAX_CHAIN is far below 255; a longer chain is refused when built and when read.
    w.u8(u8::try_from(chain.len()).unwrap_or(u8::MAX));
    for l in chain {
        w.obj(l);
    }
}

fn read_chain(r: &mut Reader<'_>) -> Result<Vec<DelegationLink>> {
    let n = usize::from(r.u8()?);
    if n == 0 || n > MAX_CHAIN {
        return Err(r.malformed("delegation chain length"));
    }
    (0..n).map(|_| r.obj()).collect()
}

/// How a colleague may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Policy `ask`, approved: a grant signed by the patient.
    Direct(SignedGrant),
    /// Policy `allowed`: a delegation from the doctor.
    Delegated(DelegatedAccess),
}

/// The first message to a colleague (body of a `MessageKind::Grant` opened with
/// [`crate::message::open_introduction`]; the sender's card comes first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introduction {
    /// Who sends it: the patient (direct) or the delegating doctor.
    pub sender: Card,
    /// The patient's card (verifies the manifest).
    pub patient: Card,
    /// Where the colleague answers the sender (empty: no answers expected).
    pub reply_address: Vec<u8>,
    /// The access.
    pub access: Access,
}

impl Wire for Introduction {
    const WHAT: &'static str = "introduction";
    fn encode(&self, w: &mut Writer) {
        w.obj(&self.sender);
        w.u8(INTRODUCTION_VERSION);
        w.obj(&self.patient);
        w.bytes16(&self.reply_address);
        match &self.access {
            Access::Direct(g) => {
                w.u8(1);
                w.obj(g);
            }
            Access::Delegated(d) => {
                w.u8(match d.keys {
                    GrantKeys::Epoch(_) => 2,
                    GrantKeys::Scoped(_) => 3,
                });
                w.raw(&d.share_id);
                w.str16(&d.relay_url);
                w.u32(d.epoch);
                match &d.keys {
                    GrantKeys::Epoch(k) => w.obj(k),
                    GrantKeys::Scoped(k) => w.obj(k),
                }
                w.obj(&d.read_token);
                w.raw(&d.root_token_hash);
                write_chain(w, &d.chain);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let sender = r.obj()?;
        r.version(INTRODUCTION_VERSION)?;
        let patient = r.obj()?;
        let reply_address = r.bytes16()?.to_vec();
        if reply_address.len() > MAX_ADDRESS {
            return Err(r.malformed("address too long"));
        }
        let access = match r.u8()? {
            1 => Access::Direct(r.obj()?),
            // 2: a version-1 share (the whole epoch key); 3: scoped element keys.
            kind @ (2 | 3) => Access::Delegated(DelegatedAccess {
                share_id: r.array()?,
                relay_url: r.str16()?,
                epoch: r.u32()?,
                keys: if kind == 3 {
                    GrantKeys::Scoped(r.obj()?)
                } else {
                    GrantKeys::Epoch(r.obj()?)
                },
                read_token: r.obj()?,
                root_token_hash: r.array()?,
                chain: read_chain(r)?,
            }),
            _ => return Err(r.malformed("unknown access kind")),
        };
        Ok(Self {
            sender,
            patient,
            reply_address,
            access,
        })
    }
}

/// Sealed to the patient and stored by the relay with a delegation registration, so the
/// patient sees who delegated to whom (opened with [`crate::message::open_introduction`] under
/// relationship id = share id; the delegating doctor's card comes first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationNotice {
    /// The delegating doctor.
    pub sender: Card,
    /// The colleague's signed invite (binds the colleague's card to the child key).
    pub invite: ColleagueInvite,
    /// Relay hash of the root token the chain starts from.
    pub root_token_hash: [u8; 32],
    /// Root-first chain as registered.
    pub chain: Vec<DelegationLink>,
}

impl DelegationNotice {
    /// The patient's checks against its own root registration: the chain verifies from the
    /// root, the first parent is the root grantee, and the last child is the invite's key.
    pub fn verify(&self, share_id: &[u8; 16], root: &DelegationRoot, now: u64) -> Result<()> {
        self.invite.card.verify()?;
        self.invite.card.body.signing_key.verify(
            label::FORWARD_INVITE_SIG,
            &self.invite.unsigned_bytes(),
            &self.invite.signature,
            "colleague invite",
        )?;
        verify_chain(share_id, root, &self.chain, now)?;
        match self.chain.last() {
            Some(l) if l.child_key == self.invite.reader_key => Ok(()),
            _ => Err(Error::Delegation {
                index: self.chain.len().saturating_sub(1),
                reason: "last link is not to the invited colleague",
            }),
        }
    }
}

impl Wire for DelegationNotice {
    const WHAT: &'static str = "delegation notice";
    fn encode(&self, w: &mut Writer) {
        w.obj(&self.sender);
        w.u8(NOTICE_VERSION);
        w.obj(&self.invite);
        w.raw(&self.root_token_hash);
        write_chain(w, &self.chain);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let sender = r.obj()?;
        r.version(NOTICE_VERSION)?;
        Ok(Self {
            sender,
            invite: r.obj()?,
            root_token_hash: r.array()?,
            chain: read_chain(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::Category;
    use crate::keys::{Role, RootSecret, SigningSecret};
    use rand_core::OsRng;

    fn party(name: &str) -> (DeviceIdentity, Card) {
        let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let card = id.card(name, Role::Doctor, None, 1).expect("valid card");
        (id, card)
    }

    fn invite(now: u64) -> (DeviceIdentity, ColleagueInvite) {
        let (c, c_card) = party("Dr. Colleague");
        let reader = SigningSecret::random(&mut OsRng);
        let i = ColleagueInvite::sign(&c, &c_card, reader.public(), vec![7; 48], [3; 16], now + 60)
            .expect("invite");
        (c, i)
    }

    #[test]
    fn invite_round_trips_and_verifies() {
        let (_, i) = invite(1000);
        let back = ColleagueInvite::from_bytes(&i.to_bytes()).expect("decodes");
        assert_eq!(back, i);
        back.verify(1000).expect("valid");
        assert!(matches!(back.verify(1061), Err(Error::Expired { .. })));
    }

    #[test]
    fn borrowed_card_with_own_reader_key_is_rejected() {
        // A doctor takes a colleague's card and swaps in a reader key of its own.
        let (_, mut i) = invite(1000);
        i.reader_key = SigningSecret::random(&mut OsRng).public();
        assert!(matches!(i.verify(1000), Err(Error::BadSignature { .. })));
        // Re-signing with the doctor's own key does not help: the card's key must sign.
        let (d, _) = party("Dr. Forger");
        let forged = ColleagueInvite::sign(
            &d,
            &i.card,
            i.reader_key,
            i.address.clone(),
            i.relationship_id,
            i.expires_at,
        )
        .expect("signs");
        assert!(matches!(
            forged.verify(1000),
            Err(Error::BadSignature { .. })
        ));
    }

    #[test]
    fn request_and_answer_round_trip() {
        let (_, i) = invite(1000);
        let req = ForwardRequest {
            share_id: [1; 16],
            invite: i,
            scope: Scope::new(&[Category::Observations], vec![]).expect("scope"),
            reason: "Second opinion on the lab results".into(),
        };
        let back = ForwardRequest::from_bytes(&req.to_bytes()).expect("decodes");
        assert_eq!(back, req);
        let a = ForwardAnswer {
            request_hash: req.hash(),
            approved: true,
        };
        assert_eq!(
            ForwardAnswer::from_bytes(&a.to_bytes()).expect("decodes"),
            a
        );
        let mut bad = req.to_bytes();
        bad.push(0);
        assert!(matches!(
            ForwardRequest::from_bytes(&bad),
            Err(Error::TrailingBytes { .. })
        ));
    }

    #[test]
    fn delegated_access_checks_own_link() {
        let parent = SigningSecret::random(&mut OsRng);
        let me = SigningSecret::random(&mut OsRng);
        let token = ReadToken::random(&mut OsRng);
        let link = DelegationLink::sign(
            &parent,
            [1; 16],
            me.public(),
            &token,
            Scope::all(),
            None,
            2000,
            0,
        );
        let (_, card) = party("Dr. Parent");
        let access = DelegatedAccess {
            share_id: [1; 16],
            relay_url: "https://relay.example".into(),
            epoch: 1,
            keys: GrantKeys::Epoch(crate::keys::EpochKey::random(&mut OsRng)),
            read_token: token,
            root_token_hash: [9; 32],
            chain: vec![link],
        };
        access.verify(&me.public(), 1000).expect("own link");
        let other = SigningSecret::random(&mut OsRng).public();
        assert!(matches!(
            access.verify(&other, 1000),
            Err(Error::WrongRecipient)
        ));
        let intro = Introduction {
            sender: card.clone(),
            patient: card,
            reply_address: vec![],
            access: Access::Delegated(access.clone()),
        };
        let back = Introduction::from_bytes(&intro.to_bytes()).expect("decodes");
        assert_eq!(back, intro);
        let mut swapped = access;
        swapped.read_token = ReadToken::random(&mut OsRng);
        assert!(swapped.verify(&me.public(), 1000).is_err());
    }
}
