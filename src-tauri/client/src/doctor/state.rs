//! The doctor's saved state (crate::persist has the conventions).

use carekey_core::forward::ColleagueInvite;
use carekey_core::grant::{DelegationLink, Grant, Scope};
use carekey_core::keys::{Card, DeviceIdentity, EpochKey};
use carekey_core::manifest::ManifestGuard;
use carekey_core::message::ReplayGuard;
use carekey_core::pairing::Relationship;
use carekey_core::section::{GrantKeys, ScopeKeys};
use carekey_core::wire::{Reader, Writer, read_opt, write_opt};
use carekey_vault::Vault;
use zeroize::Zeroizing;

use std::collections::BTreeMap;

use super::{Doctor, Downstream, PatientLink, PendingInvite};
use crate::error::{ClientError, Result};
use crate::ids::{InviteId, LinkId};
use crate::persist::{
    STATE_VERSION, count, read_address, read_mailbox, read_secret, write_address, write_mailbox,
    write_secret,
};
use crate::relay::Relay;

/// Version of the doctor's state written now: 2 adds the previous epoch key of each link
/// (version 1, [`STATE_VERSION`], is still read). Links are keyed by their relationship id,
/// which every version stores, and invites by theirs (inside the signed invite), so the
/// typed ids needed no new version; links are written in id order, invites without the
/// empty slots of older versions. 3 (scoped keys, docs/protocol.md "Scoped keys") saves the
/// previous epoch's keys as either an epoch key or scoped element keys, and the scope of each
/// colleague this doctor delegated to (re-keys pass down only its keys) and its token hash (an
/// update naming it revoked drops it); 1 and 2 still load.
const DOCTOR_STATE_VERSION: u8 = 3;

/// The first version with scoped previous-epoch keys and delegated scopes.
const SCOPED_KEYS_VERSION: u8 = 3;

fn write_keys(w: &mut Writer, k: &GrantKeys) {
    match k {
        GrantKeys::Epoch(k) => {
            w.u8(1);
            w.obj(k);
        }
        GrantKeys::Scoped(k) => {
            w.u8(2);
            w.obj(k);
        }
    }
}

fn read_keys(r: &mut Reader<'_>) -> Result<GrantKeys> {
    Ok(match r.u8()? {
        1 => GrantKeys::Epoch(r.obj::<EpochKey>()?),
        2 => GrantKeys::Scoped(r.obj::<ScopeKeys>()?),
        _ => return Err(r.malformed("unknown kind of keys").into()),
    })
}

/// Vault state name of the doctor's state.
const MAIN: &str = "carekey/doctor/v1";

fn write_chain(w: &mut Writer, chain: &[DelegationLink]) {
    w.u32(count(chain.len()));
    for l in chain {
        w.obj(l);
    }
}

fn read_chain(r: &mut Reader<'_>) -> Result<Vec<DelegationLink>> {
    let n = r.u32()?;
    if n as usize > carekey_core::forward::MAX_CHAIN {
        return Err(r.malformed("delegation chain too long").into());
    }
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(r.obj()?);
    }
    Ok(v)
}

impl Doctor {
    /// Saves the doctor's state (links to patients, pending invites) into `vault`. Call
    /// after every state-changing call.
    pub fn save_to(&self, vault: &mut Vault) -> Result<()> {
        vault.put_state(MAIN, &self.encode_state())?;
        Ok(())
    }

    /// Loads the saved state from `vault`, or `None` when nothing was saved yet.
    pub fn load_from(
        vault: &mut Vault,
        identity: DeviceIdentity,
        card: Card,
    ) -> Result<Option<Self>> {
        let Some(b) = vault.get_state(MAIN)? else {
            return Ok(None);
        };
        let mut d = Self::new(identity, card);
        d.decode_state(&b)?;
        Ok(Some(d))
    }

    fn encode_state(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(DOCTOR_STATE_VERSION);
        w.u32(count(self.links.len()));
        for l in self.links.values() {
            w.str16(l.relay.base());
            w.raw(&l.rel.id);
            w.obj(&l.rel.peer_card);
            w.bytes16(&l.rel.peer_address);
            match &l.peer {
                Some(a) => {
                    w.u8(1);
                    write_address(&mut w, a);
                }
                None => w.u8(0),
            }
            write_opt(&mut w, &l.upstream);
            w.obj(&l.grant);
            write_chain(&mut w, &l.chain);
            w.raw(&l.root_token_hash);
            write_secret(&mut w, &l.reader);
            write_mailbox(&mut w, &l.inbox);
            w.u64(l.guard.highest());
            w.u64(l.send_seq);
            w.u64(l.manifests.newest());
            w.u8(u8::from(l.ended));
            w.u32(count(l.children.len()));
            for c in &l.children {
                write_opt(&mut w, &c.scope);
                match &c.token_hash {
                    Some(h) => {
                        w.u8(1);
                        w.raw(h);
                    }
                    None => w.u8(0),
                }
                w.obj(&c.card);
                w.raw(&c.relationship_id);
                write_address(&mut w, &c.address);
                w.u64(c.send_seq);
            }
            w.u32(count(l.answers.len()));
            for (h, a) in &l.answers {
                w.raw(h);
                w.u8(u8::from(*a));
            }
            match &l.prev_epoch {
                Some((epoch, keys)) => {
                    w.u8(1);
                    w.u32(*epoch);
                    write_keys(&mut w, keys);
                }
                None => w.u8(0),
            }
        }
        w.u32(count(self.invites.len()));
        for p in self.invites.values() {
            w.u8(1);
            w.str16(p.relay.base());
            write_mailbox(&mut w, &p.inbox);
            write_secret(&mut w, &p.reader);
            w.obj(&p.invite);
        }
        Zeroizing::new(w.into_bytes())
    }

    fn decode_state(&mut self, b: &[u8]) -> Result<()> {
        let mut r = Reader::new(b, "saved doctor state");
        let version = r.u8()?;
        if !(STATE_VERSION..=DOCTOR_STATE_VERSION).contains(&version) {
            return Err(r.malformed("unknown saved doctor state version").into());
        }
        let mut links = BTreeMap::new();
        for _ in 0..r.u32()? {
            let relay = Relay::new(&r.str16()?)?;
            let rel = Relationship {
                id: r.array()?,
                peer_card: r.obj()?,
                peer_address: r.bytes16()?.to_vec(),
            };
            let peer = if r.bool()? {
                Some(read_address(&mut r)?)
            } else {
                None
            };
            let upstream = read_opt::<Card>(&mut r)?;
            let grant: Grant = r.obj()?;
            let chain = read_chain(&mut r)?;
            let root_token_hash = r.array()?;
            let reader = read_secret(&mut r)?;
            let inbox = read_mailbox(&mut r)?;
            let guard = ReplayGuard::from_highest(r.u64()?);
            let send_seq = r.u64()?;
            let manifests = ManifestGuard::from_newest(r.u64()?);
            let ended = r.bool()?;
            let mut children = Vec::new();
            for _ in 0..r.u32()? {
                let (scope, token_hash) = if version >= SCOPED_KEYS_VERSION {
                    let scope = read_opt::<Scope>(&mut r)?;
                    let h = if r.bool()? {
                        Some(r.array::<32>()?)
                    } else {
                        None
                    };
                    (scope, h)
                } else {
                    (None, None)
                };
                children.push(Downstream {
                    scope,
                    token_hash,
                    card: r.obj()?,
                    relationship_id: r.array()?,
                    address: read_address(&mut r)?,
                    send_seq: r.u64()?,
                });
            }
            let mut answers = Vec::new();
            for _ in 0..r.u32()? {
                answers.push((r.array()?, r.bool()?));
            }
            // Version 1 states predate the previous-epoch fallback.
            let prev_epoch = if version >= 2 && r.bool()? {
                let epoch = r.u32()?;
                if version >= SCOPED_KEYS_VERSION {
                    Some((epoch, read_keys(&mut r)?))
                } else {
                    let key = Zeroizing::new(r.array::<32>()?);
                    Some((epoch, GrantKeys::Epoch(EpochKey::from_bytes(*key))))
                }
            } else {
                None
            };
            let id = LinkId(rel.id);
            let link = PatientLink {
                relay,
                rel,
                peer,
                upstream,
                grant,
                chain,
                root_token_hash,
                reader,
                inbox,
                guard,
                send_seq,
                manifests,
                ended,
                children,
                answers,
                prev_epoch,
                known_entries: Vec::new(),
            };
            if links.insert(id, link).is_some() {
                return Err(duplicate());
            }
        }
        let mut invites = BTreeMap::new();
        for _ in 0..r.u32()? {
            // Older versions kept a slot for each invite already answered (flag 0).
            if r.bool()? {
                let relay = Relay::new(&r.str16()?)?;
                let p = PendingInvite {
                    relay,
                    inbox: read_mailbox(&mut r)?,
                    reader: read_secret(&mut r)?,
                    invite: r.obj::<ColleagueInvite>()?,
                };
                if invites
                    .insert(InviteId(p.invite.relationship_id), p)
                    .is_some()
                {
                    return Err(duplicate());
                }
            }
        }
        r.finish()?;
        self.links = links;
        self.invites = invites;
        Ok(())
    }
}

fn duplicate() -> ClientError {
    ClientError::Tampered(carekey_core::Error::Malformed {
        what: "saved doctor state",
        reason: "two links or invites with one id",
    })
}
