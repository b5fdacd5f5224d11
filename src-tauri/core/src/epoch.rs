//! Epochs: the key generations of a share (docs/protocol.md "Revocation and expiry").
//!
//! Every blob gets a fresh content key in every epoch, so the keys of epoch `n` (held by a
//! revoked grantee) open nothing of epoch `n + 1`. The new epoch key reaches each remaining
//! grantee as a sign-then-seal relationship message carrying an [`EpochUpdate`].

use rand_core::{CryptoRng, RngCore};

use crate::error::{Error, Result};
use crate::keys::EpochKey;
use crate::section::GrantKeys;
use crate::wire::{Reader, Wire, Writer};

/// Epoch update format version written for scoped keys: the grantee's element keys of the new
/// epoch (docs/protocol.md "Scoped keys").
pub const EPOCH_UPDATE_VERSION: u8 = 2;
/// The version-1 update (whole epoch key), still read.
pub const EPOCH_UPDATE_VERSION_EPOCH_KEY: u8 = 1;

/// One key generation of a share.
#[derive(Debug, PartialEq, Eq)]
pub struct Epoch {
    /// Number, from 1; only goes up.
    pub number: u32,
    /// The manifest-sealing key of this epoch.
    pub key: EpochKey,
}

impl Epoch {
    /// The first epoch of a new share.
    pub fn first<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self {
            number: 1,
            key: EpochKey::random(rng),
        }
    }
    /// The next epoch, with a fresh key.
    pub fn next<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Result<Self> {
        Ok(Self {
            number: self.number.checked_add(1).ok_or(Error::Malformed {
                what: "epoch",
                reason: "epoch counter exhausted",
            })?,
            key: EpochKey::random(rng),
        })
    }
}

/// What a remaining grantee receives after a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochUpdate {
    /// The share.
    pub share_id: [u8; 16],
    /// New epoch number.
    pub epoch: u32,
    /// The new epoch's keys: the recipient's element keys (version 2), or the whole epoch
    /// key (version 1).
    pub keys: GrantKeys,
    /// Manifest version sealed under it (the grantee must not accept an older one).
    pub manifest_version: u64,
    /// Relay hashes of the delegated tokens the patient revoked (version 2 only; sorted,
    /// unique): a doctor passing the update down drops the children they name, so a revoked
    /// delegate and its subtree never receive the new keys (docs/protocol.md "Revocation and
    /// expiry").
    pub revoked_tokens: Vec<[u8; 32]>,
}

/// Most revoked tokens one update names.
pub const MAX_REVOKED_TOKENS: usize = 4096;

impl Wire for EpochUpdate {
    const WHAT: &'static str = "epoch update";
    fn encode(&self, w: &mut Writer) {
        w.u8(match self.keys {
            GrantKeys::Epoch(_) => EPOCH_UPDATE_VERSION_EPOCH_KEY,
            GrantKeys::Scoped(_) => EPOCH_UPDATE_VERSION,
        });
        w.raw(&self.share_id);
        w.u32(self.epoch);
        match &self.keys {
            GrantKeys::Epoch(k) => w.obj(k),
            GrantKeys::Scoped(k) => w.obj(k),
        }
        w.u64(self.manifest_version);
        if let GrantKeys::Scoped(_) = self.keys {
            w.u16(u16::try_from(self.revoked_tokens.len()).unwrap_or(u16::MAX));
            for t in self.revoked_tokens.iter().take(usize::from(u16::MAX)) {
                w.raw(t);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let version = r.u8()?;
        if version != EPOCH_UPDATE_VERSION && version != EPOCH_UPDATE_VERSION_EPOCH_KEY {
            return Err(Error::UnknownVersion {
                what: Self::WHAT,
                version,
            });
        }
        let share_id = r.array()?;
        let epoch = r.u32()?;
        let keys = if version == EPOCH_UPDATE_VERSION {
            GrantKeys::Scoped(r.obj()?)
        } else {
            GrantKeys::Epoch(r.obj::<EpochKey>()?)
        };
        let manifest_version = r.u64()?;
        let mut revoked_tokens: Vec<[u8; 32]> = Vec::new();
        if version == EPOCH_UPDATE_VERSION {
            let n = usize::from(r.u16()?);
            if n > MAX_REVOKED_TOKENS || n > r.remaining() / 32 {
                return Err(r.malformed("too many revoked tokens"));
            }
            for _ in 0..n {
                let t: [u8; 32] = r.array()?;
                if revoked_tokens.last().is_some_and(|p| *p >= t) {
                    return Err(r.malformed("revoked tokens not sorted and unique"));
                }
                revoked_tokens.push(t);
            }
        }
        Ok(Self {
            share_id,
            epoch,
            keys,
            manifest_version,
            revoked_tokens,
        })
    }
}

impl EpochUpdate {
    /// Accepts an update only if it moves forward from the epoch the grantee holds.
    pub fn check_after(&self, current_epoch: u32) -> Result<()> {
        if self.epoch <= current_epoch {
            return Err(Error::Rollback {
                what: "epoch",
                have: u64::from(current_epoch),
                got: u64::from(self.epoch),
            });
        }
        Ok(())
    }
}
