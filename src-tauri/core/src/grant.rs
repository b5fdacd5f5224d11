//! Grants and delegation links (docs/protocol.md "Grants, scope, delegation", "Forwarding").
//!
//! A grant is what the patient signs for one grantee: which share, under which epoch key, with
//! which read token, for how long, and whether it may be forwarded. A delegation link is what a
//! grantee signs to forward under policy `allowed`; the relay verifies links itself, byte for
//! byte as docs/relay-formats.md "Delegation link" fixes them.

use crate::error::{Error, Result};
use crate::keys::{PublicKey, ReadToken, SigningSecret};
use crate::label;
use crate::section::{GROUP_LEN, GrantKeys, GroupTag, MAX_ELEMENTS};
// Scopes live in their own module (section.rs and manifest.rs use them without grants);
// re-exported here, where they have always been named.
pub use crate::scope::{Category, MAX_SCOPE_RECORDS, Scope};
use crate::wire::{Reader, Wire, Writer};

/// Grant format version written for scoped keys (docs/protocol.md "Scoped keys"): the grant
/// carries the keys of its scope's elements, not the epoch key.
pub const GRANT_VERSION: u8 = 2;
/// The version-1 grant (whole epoch key), still read and re-encoded as it came.
pub const GRANT_VERSION_EPOCH_KEY: u8 = 1;
/// Delegation link format version with relay groups (docs/relay-formats.md "Delegation link").
pub const DELEGATION_VERSION: u8 = 2;
/// The version-1 link (no relay groups), still read.
pub const DELEGATION_VERSION_UNSCOPED: u8 = 1;
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

/// What the patient grants one grantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Opaque share id on the relay.
    pub share_id: [u8; 16],
    /// Relay base URL.
    pub relay_url: String,
    /// Current epoch number.
    pub epoch: u32,
    /// The keys of the current epoch: the scope's element keys (version 2), or the whole
    /// epoch key of a version-1 grant.
    pub keys: GrantKeys,
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
        match &self.keys {
            GrantKeys::Epoch(_) => w.u8(GRANT_VERSION_EPOCH_KEY),
            GrantKeys::Scoped(_) => w.u8(GRANT_VERSION),
        }
        w.raw(&self.share_id);
        w.str16(&self.relay_url);
        w.u32(self.epoch);
        match &self.keys {
            GrantKeys::Epoch(k) => w.obj(k),
            GrantKeys::Scoped(k) => w.obj(k),
        }
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
        let version = r.u8()?;
        if version != GRANT_VERSION && version != GRANT_VERSION_EPOCH_KEY {
            return Err(Error::UnknownVersion {
                what: Self::WHAT,
                version,
            });
        }
        let g = Self {
            share_id: r.array()?,
            relay_url: r.str16()?,
            epoch: r.u32()?,
            keys: if version == GRANT_VERSION {
                GrantKeys::Scoped(r.obj()?)
            } else {
                GrantKeys::Epoch(r.obj()?)
            },
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
        if let GrantKeys::Scoped(k) = &g.keys
            && !k.covers_exactly(&g.scope)
        {
            return Err(r.malformed("keys are not exactly those of the scope"));
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
    /// The root token's relay groups (`None`: a version-1 token readable share-wide).
    pub groups: Option<Vec<GroupTag>>,
}

impl From<&Grant> for DelegationRoot {
    fn from(g: &Grant) -> Self {
        Self {
            reader_key: g.reader_key,
            scope: g.scope.clone(),
            expires_at: g.expires_at,
            depth: g.delegation_depth,
            groups: g.keys.groups(),
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
    /// The child token's relay groups (⊆ parent's), sorted; `None` in a version-1 link.
    pub groups: Option<Vec<GroupTag>>,
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
        w.u8(if self.groups.is_some() {
            DELEGATION_VERSION
        } else {
            DELEGATION_VERSION_UNSCOPED
        });
        w.raw(&self.share_id);
        w.obj(&self.parent_key);
        w.obj(&self.child_key);
        w.raw(&self.child_token_hash);
        w.obj(&self.scope);
        if let Some(g) = &self.groups {
            w.u16(u16::try_from(g.len()).unwrap_or(u16::MAX));
            for t in g.iter().take(usize::from(u16::MAX)) {
                w.raw(t);
            }
        }
        w.u64(self.expires_at);
        w.u8(self.depth);
        w.into_bytes()
    }

    /// Makes and signs a link from `parent` to a child: version 2 with the child's relay
    /// `groups` (sorted and de-duplicated here), version 1 without.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        parent: &SigningSecret,
        share_id: [u8; 16],
        child_key: PublicKey,
        child_token: &ReadToken,
        scope: Scope,
        groups: Option<Vec<GroupTag>>,
        expires_at: u64,
        depth: u8,
    ) -> Self {
        let groups = groups.map(|mut g| {
            g.sort_unstable();
            g.dedup();
            g
        });
        let mut l = Self {
            share_id,
            parent_key: parent.public(),
            child_key,
            child_token_hash: child_token.relay_hash(),
            scope,
            groups,
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
        let version = r.u8()?;
        if version != DELEGATION_VERSION && version != DELEGATION_VERSION_UNSCOPED {
            return Err(Error::UnknownVersion {
                what: Self::WHAT,
                version,
            });
        }
        let share_id = r.array()?;
        let parent_key = r.obj()?;
        let child_key = r.obj()?;
        let child_token_hash = r.array()?;
        let scope = r.obj()?;
        let groups = if version == DELEGATION_VERSION {
            let n = usize::from(r.u16()?);
            if n > MAX_ELEMENTS || n > r.remaining() / GROUP_LEN {
                return Err(r.malformed("too many relay groups"));
            }
            let mut g: Vec<GroupTag> = Vec::with_capacity(n);
            for _ in 0..n {
                let t: GroupTag = r.array()?;
                if g.last().is_some_and(|p| *p >= t) {
                    return Err(r.malformed("relay groups not sorted and unique"));
                }
                g.push(t);
            }
            Some(g)
        } else {
            None
        };
        Ok(Self {
            share_id,
            parent_key,
            child_key,
            child_token_hash,
            scope,
            groups,
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
    let mut groups = root.groups.as_ref();
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
        // Under a scoped parent the child must be scoped too, within the parent's groups
        // (the relay checks the same, docs/relay-formats.md "Delegation link").
        if let Some(p) = groups {
            match &l.groups {
                Some(c) if c.iter().all(|g| p.binary_search(g).is_ok()) => {}
                _ => return fail("widens or drops the relay groups"),
            }
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
        groups = l.groups.as_ref();
    }
    Ok(())
}
