//! Grants and delegation links (docs/protocol.md "Grants, scope, delegation", "Forwarding").
//!
//! A grant is what the patient signs for one grantee: which share, under which epoch key, with
//! which read token, for how long, and whether it may be forwarded. A delegation link is what a
//! grantee signs to forward under policy `allowed`; the relay verifies links itself, byte for
//! byte as docs/relay-formats.md "Delegation link" fixes them.

use crate::error::{Error, Result};
use crate::keys::{EpochKey, PublicKey, ReadToken, SigningSecret};
use crate::label;
use crate::wire::{Reader, Wire, Writer};

/// Grant format version.
pub const GRANT_VERSION: u8 = 1;
/// Delegation link format version.
pub const DELEGATION_VERSION: u8 = 1;
/// Most record ids a scope may list.
pub const MAX_SCOPE_RECORDS: usize = 4096;
/// Deepest delegation a patient may allow.
pub const MAX_DELEGATION_DEPTH: u8 = 4;

/// Forwarding policy chosen by the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The grantee may not forward.
    Never = 0,
    /// The grantee may ask; the patient grants the colleague directly.
    Ask = 1,
    /// The grantee may delegate (within the grant's depth); the patient is notified.
    Allowed = 2,
}

impl Wire for Policy {
    const WHAT: &'static str = "policy";
    fn encode(&self, w: &mut Writer) {
        w.u8(*self as u8);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match r.u8()? {
            0 => Ok(Policy::Never),
            1 => Ok(Policy::Ask),
            2 => Ok(Policy::Allowed),
            _ => Err(r.malformed("unknown policy")),
        }
    }
}

/// Record categories a scope can name (bit positions of docs/relay-formats.md "Scope").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Category {
    Allergies = 0,
    Conditions = 1,
    Medications = 2,
    Immunizations = 3,
    Procedures = 4,
    Observations = 5,
    Documents = 6,
    Encounters = 7,
    Notes = 8,
    Other = 9,
    Demographics = 10,
}

impl Category {
    /// All categories.
    pub const ALL: [Category; 11] = [
        Category::Allergies,
        Category::Conditions,
        Category::Medications,
        Category::Immunizations,
        Category::Procedures,
        Category::Observations,
        Category::Documents,
        Category::Encounters,
        Category::Notes,
        Category::Other,
        Category::Demographics,
    ];
    /// The scope bit.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
    /// From a bit position.
    pub fn from_index(i: u8) -> Option<Self> {
        Self::ALL.get(usize::from(i)).copied()
    }
}

const KNOWN_CATEGORY_BITS: u32 = (1 << 11) - 1;

/// What a grant covers: whole categories plus single records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    categories: u32,
    records: Vec<[u8; 16]>,
}

impl Scope {
    /// Every category.
    pub fn all() -> Self {
        Self {
            categories: KNOWN_CATEGORY_BITS,
            records: Vec::new(),
        }
    }
    /// A scope of categories and records (ids are sorted and de-duplicated).
    pub fn new(categories: &[Category], mut records: Vec<[u8; 16]>) -> Result<Self> {
        records.sort_unstable();
        records.dedup();
        if records.len() > MAX_SCOPE_RECORDS {
            return Err(Error::Malformed {
                what: "scope",
                reason: "too many records",
            });
        }
        Ok(Self {
            categories: categories.iter().fold(0, |a, c| a | c.bit()),
            records,
        })
    }
    /// Does the scope cover this record?
    pub fn covers(&self, category: Category, record_id: &[u8; 16]) -> bool {
        self.categories & category.bit() != 0 || self.records.binary_search(record_id).is_ok()
    }
    /// Category bits.
    pub fn categories(&self) -> u32 {
        self.categories
    }
    /// Listed record ids.
    pub fn records(&self) -> &[[u8; 16]] {
        &self.records
    }
    /// `self ⊆ parent` in the sense of docs/relay-formats.md "Scope".
    pub fn is_within(&self, parent: &Scope) -> bool {
        self.categories & !parent.categories == 0
            && self
                .records
                .iter()
                .all(|r| parent.records.binary_search(r).is_ok())
    }
}

impl Wire for Scope {
    const WHAT: &'static str = "scope";
    fn encode(&self, w: &mut Writer) {
        w.u32(self.categories);
        w.u16(u16::try_from(self.records.len()).unwrap_or(u16::MAX));
        for r in self.records.iter().take(usize::from(u16::MAX)) {
            w.raw(r);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let categories = r.u32()?;
        if categories & !KNOWN_CATEGORY_BITS != 0 {
            return Err(r.malformed("unknown category bits"));
        }
        let n = usize::from(r.u16()?);
        if n > MAX_SCOPE_RECORDS {
            return Err(r.malformed("too many records"));
        }
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let id: [u8; 16] = r.array()?;
            if records.last().is_some_and(|p| *p >= id) {
                return Err(r.malformed("record ids not sorted and unique"));
            }
            records.push(id);
        }
        Ok(Self {
            categories,
            records,
        })
    }
}

/// What the patient grants one grantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Opaque share id on the relay.
    pub share_id: [u8; 16],
    /// Relay base URL.
    pub relay_url: String,
    /// Current epoch number.
    pub epoch: u32,
    /// Current epoch key (opens the manifest).
    pub epoch_key: EpochKey,
    /// Bearer read token for the relay.
    pub read_token: ReadToken,
    /// Forwarding policy.
    pub policy: Policy,
    /// What is shared.
    pub scope: Scope,
    /// Unix seconds after which access ends.
    pub expires_at: u64,
    /// Card hash of the grantee.
    pub grantee: [u8; 32],
    /// The grantee's pseudonymous reader key registered with the token.
    pub reader_key: PublicKey,
    /// How many delegation levels are allowed below the grantee (0 unless policy `Allowed`).
    pub delegation_depth: u8,
    /// Unix seconds.
    pub issued_at: u64,
}

impl Wire for Grant {
    const WHAT: &'static str = "grant";
    fn encode(&self, w: &mut Writer) {
        w.u8(GRANT_VERSION);
        w.raw(&self.share_id);
        w.str16(&self.relay_url);
        w.u32(self.epoch);
        w.obj(&self.epoch_key);
        w.obj(&self.read_token);
        w.obj(&self.policy);
        w.obj(&self.scope);
        w.u64(self.expires_at);
        w.raw(&self.grantee);
        w.obj(&self.reader_key);
        w.u8(self.delegation_depth);
        w.u64(self.issued_at);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(GRANT_VERSION)?;
        let g = Self {
            share_id: r.array()?,
            relay_url: r.str16()?,
            epoch: r.u32()?,
            epoch_key: r.obj()?,
            read_token: r.obj()?,
            policy: r.obj()?,
            scope: r.obj()?,
            expires_at: r.u64()?,
            grantee: r.array()?,
            reader_key: r.obj()?,
            delegation_depth: r.u8()?,
            issued_at: r.u64()?,
        };
        if g.delegation_depth > MAX_DELEGATION_DEPTH
            || (g.policy != Policy::Allowed && g.delegation_depth != 0)
        {
            return Err(r.malformed("delegation depth inconsistent with policy"));
        }
        Ok(g)
    }
}

impl Grant {
    /// Signs the grant with the patient's card key.
    pub fn sign(self, patient: &SigningSecret) -> SignedGrant {
        let signature = patient.sign(label::GRANT_SIG, &self.to_bytes());
        SignedGrant {
            grant: self,
            signature,
        }
    }
}

/// A grant with the patient's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedGrant {
    /// The grant.
    pub grant: Grant,
    /// Patient's signature over `GRANT_SIG || grant`.
    pub signature: [u8; 64],
}

impl Wire for SignedGrant {
    const WHAT: &'static str = "signed grant";
    fn encode(&self, w: &mut Writer) {
        w.obj(&self.grant);
        w.raw(&self.signature);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            grant: r.obj()?,
            signature: r.array()?,
        })
    }
}

impl SignedGrant {
    /// Verifies the patient's signature.
    pub fn verify(&self, patient: &PublicKey) -> Result<()> {
        patient.verify(
            label::GRANT_SIG,
            &self.grant.to_bytes(),
            &self.signature,
            "grant",
        )
    }
    /// Verifies and checks the expiry.
    pub fn verify_at(&self, patient: &PublicKey, now: u64) -> Result<()> {
        self.verify(patient)?;
        if now > self.grant.expires_at {
            return Err(Error::Expired { what: "grant" });
        }
        Ok(())
    }
}

/// The authority a delegation chain starts from: a root token registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationRoot {
    /// The grantee's reader key.
    pub reader_key: PublicKey,
    /// The grant's scope.
    pub scope: Scope,
    /// The grant's expiry.
    pub expires_at: u64,
    /// The grant's delegation depth.
    pub depth: u8,
}

impl From<&Grant> for DelegationRoot {
    fn from(g: &Grant) -> Self {
        Self {
            reader_key: g.reader_key,
            scope: g.scope.clone(),
            expires_at: g.expires_at,
            depth: g.delegation_depth,
        }
    }
}

/// One signed step of a delegation chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationLink {
    /// The share.
    pub share_id: [u8; 16],
    /// Signer (the parent's reader key).
    pub parent_key: PublicKey,
    /// The child's reader key.
    pub child_key: PublicKey,
    /// Relay hash of the child's read token.
    pub child_token_hash: [u8; 32],
    /// Child scope (⊆ parent's).
    pub scope: Scope,
    /// Child expiry (≤ parent's).
    pub expires_at: u64,
    /// Remaining depth (< parent's).
    pub depth: u8,
    /// Parent's signature.
    pub signature: [u8; 64],
}

impl DelegationLink {
    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(DELEGATION_VERSION);
        w.raw(&self.share_id);
        w.obj(&self.parent_key);
        w.obj(&self.child_key);
        w.raw(&self.child_token_hash);
        w.obj(&self.scope);
        w.u64(self.expires_at);
        w.u8(self.depth);
        w.into_bytes()
    }

    /// Makes and signs a link from `parent` to a child.
    pub fn sign(
        parent: &SigningSecret,
        share_id: [u8; 16],
        child_key: PublicKey,
        child_token: &ReadToken,
        scope: Scope,
        expires_at: u64,
        depth: u8,
    ) -> Self {
        let mut l = Self {
            share_id,
            parent_key: parent.public(),
            child_key,
            child_token_hash: child_token.relay_hash(),
            scope,
            expires_at,
            depth,
            signature: [0; 64],
        };
        l.signature = parent.sign(label::DELEGATION_SIG, &l.unsigned_bytes());
        l
    }
}

impl Wire for DelegationLink {
    const WHAT: &'static str = "delegation link";
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.unsigned_bytes());
        w.raw(&self.signature);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(DELEGATION_VERSION)?;
        Ok(Self {
            share_id: r.array()?,
            parent_key: r.obj()?,
            child_key: r.obj()?,
            child_token_hash: r.array()?,
            scope: r.obj()?,
            expires_at: r.u64()?,
            depth: r.u8()?,
            signature: r.array()?,
        })
    }
}

/// Verifies a root-first chain against its root registration; the first bad link is named.
pub fn verify_chain(
    share_id: &[u8; 16],
    root: &DelegationRoot,
    chain: &[DelegationLink],
    now: u64,
) -> Result<()> {
    let (mut key, mut scope, mut expires, mut depth) =
        (root.reader_key, &root.scope, root.expires_at, root.depth);
    for (index, l) in chain.iter().enumerate() {
        let fail = |reason| Err(Error::Delegation { index, reason });
        if l.share_id != *share_id {
            return fail("belongs to another share");
        }
        if l.parent_key != key {
            return fail("parent key does not match the previous link");
        }
        l.parent_key
            .verify(
                label::DELEGATION_SIG,
                &l.unsigned_bytes(),
                &l.signature,
                "delegation link",
            )
            .or_else(|_| fail("signature is invalid"))?;
        if !l.scope.is_within(scope) {
            return fail("widens the scope");
        }
        if l.expires_at > expires {
            return fail("extends the expiry");
        }
        if l.depth >= depth {
            return fail("delegates past the allowed depth");
        }
        if now > l.expires_at {
            return fail("expired");
        }
        (key, scope, expires, depth) = (l.child_key, &l.scope, l.expires_at, l.depth);
    }
    Ok(())
}
