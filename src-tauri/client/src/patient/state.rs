//! The patient's saved state (crate::persist has the conventions).

use std::collections::HashMap;

use carekey_core::audit::Head;
use carekey_core::epoch::Epoch;
use carekey_core::forward::ForwardRequest;
use carekey_core::grant::{Category, Policy};
use carekey_core::keys::{Card, DeviceIdentity, PublicKey};
use carekey_core::message::ReplayGuard;
use carekey_core::pairing::Relationship;
use carekey_core::wire::{Reader, Writer, read_opt, write_opt};
use carekey_vault::Vault;
use zeroize::Zeroizing;

use super::{
    DelegationRecord, ForwardRequestId, GrantRecord, Patient, PatientRelationship, PendingForward,
    ShareItem, ShareOptions, ShareState,
};
use crate::error::{ClientError, Result};
use crate::persist::{
    STATE_VERSION, count, now_micros, read_address, read_mailbox, read_secret, write_address,
    write_mailbox, write_secret,
};
use crate::relay::{OwnerCap, Relay};

/// Version of the patient's main state written now: 2 adds the stable id of each pending
/// forward request (version 1, [`STATE_VERSION`], is still read; its requests get fresh ids).
const PATIENT_STATE_VERSION: u8 = 2;

/// Vault state name of the patient's main state.
const MAIN: &str = "carekey/patient/v1";

fn items_name(share_id: &[u8; 16]) -> String {
    format!(
        "carekey/patient/v1/items/{}",
        crate::relay::hex_id(share_id)
    )
}

fn write_items(items: &[ShareItem]) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::new();
    w.u8(STATE_VERSION);
    w.u32(count(items.len()));
    for it in items {
        w.raw(&it.record_id);
        w.u8(it.category as u8);
        w.str16(&it.title);
        w.bytes32(&it.data);
        w.u8(u8::from(it.attachment));
    }
    Zeroizing::new(w.into_bytes())
}

fn read_items(b: &[u8]) -> Result<Vec<ShareItem>> {
    let mut r = Reader::new(b, "saved share items");
    r.version(STATE_VERSION)?;
    let n = r.u32()?;
    let mut items = Vec::new();
    for _ in 0..n {
        items.push(ShareItem {
            record_id: r.array()?,
            category: Category::from_index(r.u8()?)
                .ok_or_else(|| r.malformed("unknown category"))?,
            title: r.str16()?,
            data: Zeroizing::new(r.bytes32()?.to_vec()),
            attachment: r.bool()?,
        });
    }
    r.finish()?;
    Ok(items)
}

impl Patient {
    /// Saves the patient's state into `vault` (sealed, bound to its name). Shared items are
    /// written once per share, the rest every time. Call after every state-changing call.
    pub fn save_to(&mut self, vault: &mut Vault) -> Result<()> {
        for (id, st) in &mut self.shares {
            if !st.items_saved {
                vault.put_state(&items_name(id), &write_items(&st.items))?;
                st.items_saved = true;
            }
        }
        vault.put_state(MAIN, &self.encode_state())?;
        Ok(())
    }

    /// Loads the patient's saved state from `vault`, or `None` when nothing was saved yet.
    pub fn load_from(
        vault: &mut Vault,
        identity: DeviceIdentity,
        card: Card,
        relay: Relay,
    ) -> Result<Option<Self>> {
        let Some(main) = vault.get_state(MAIN)? else {
            return Ok(None);
        };
        let mut p = Self::new(identity, card, relay);
        p.decode_state(&main, vault)?;
        Ok(Some(p))
    }

    fn encode_state(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(PATIENT_STATE_VERSION);
        w.str16(self.relay.base());
        write_opt(&mut w, &self.relay_audit_key);
        // Shares in id order, so equal states encode equally.
        let mut ids: Vec<&[u8; 16]> = self.shares.keys().collect();
        ids.sort();
        w.u32(count(ids.len()));
        for id in ids {
            let st = &self.shares[id];
            w.raw(id);
            let (key, counter) = st.owner.parts();
            write_secret(&mut w, key);
            w.u64(counter);
            w.u32(st.epoch.number);
            w.obj(&st.epoch.key);
            w.u64(st.manifest_version);
            w.u64(st.options.expires_at);
            w.obj(&st.options.policy);
            w.u8(st.options.delegation_depth);
            w.u32(count(st.grants.len()));
            for g in &st.grants {
                w.u32(count(g.relationship));
                w.obj(&g.reader_key);
                w.obj(&g.token);
                w.obj(&g.scope);
                w.u8(g.depth);
                w.u64(g.expires_at);
                w.u8(u8::from(g.revoked));
            }
            w.u32(count(st.delegations.len()));
            for d in &st.delegations {
                w.obj(&d.parent);
                w.obj(&d.colleague);
                w.obj(&d.child_key);
                w.u32(count(d.root_relationship));
                w.u32(count(d.level));
                w.u64(d.expires_at);
            }
            w.u64(st.notice_cursor);
            w.u64(st.audit_pin.seq);
            w.raw(&st.audit_pin.hash);
        }
        w.u32(count(self.relationships.len()));
        for r in &self.relationships {
            w.raw(&r.rel.id);
            w.obj(&r.rel.peer_card);
            w.bytes16(&r.rel.peer_address);
            write_address(&mut w, &r.peer);
            write_mailbox(&mut w, &r.inbox);
            w.u64(r.send_seq);
            w.u64(r.guard.highest());
            w.u64(r.paired_at);
        }
        w.u32(count(self.forward_requests.len()));
        for f in &self.forward_requests {
            w.raw(&f.id.0);
            w.u32(count(f.from));
            w.obj(&f.request);
        }
        Zeroizing::new(w.into_bytes())
    }

    fn decode_state(&mut self, b: &[u8], vault: &mut Vault) -> Result<()> {
        let mut r = Reader::new(b, "saved patient state");
        let version = r.u8()?;
        if version != STATE_VERSION && version != PATIENT_STATE_VERSION {
            return Err(r.malformed("unknown saved patient state version").into());
        }
        if r.str16()? != self.relay.base() {
            return Err(ClientError::InvalidInput(
                "the saved state belongs to another relay",
            ));
        }
        self.relay_audit_key = read_opt::<PublicKey>(&mut r)?;
        let floor = now_micros();
        let n = r.u32()?;
        let mut shares = HashMap::new();
        for _ in 0..n {
            let id: [u8; 16] = r.array()?;
            let key = read_secret(&mut r)?;
            let counter = r.u64()?;
            let owner = OwnerCap::resume(key, counter, floor);
            let epoch = Epoch {
                number: r.u32()?,
                key: r.obj()?,
            };
            let manifest_version = r.u64()?;
            let options = ShareOptions {
                expires_at: r.u64()?,
                policy: r.obj::<Policy>()?,
                delegation_depth: r.u8()?,
            };
            let mut grants = Vec::new();
            for _ in 0..r.u32()? {
                grants.push(GrantRecord {
                    relationship: r.u32()? as usize,
                    reader_key: r.obj()?,
                    token: r.obj()?,
                    scope: r.obj()?,
                    depth: r.u8()?,
                    expires_at: r.u64()?,
                    revoked: r.bool()?,
                });
            }
            let mut delegations = Vec::new();
            for _ in 0..r.u32()? {
                delegations.push(DelegationRecord {
                    parent: r.obj()?,
                    colleague: r.obj()?,
                    child_key: r.obj()?,
                    root_relationship: r.u32()? as usize,
                    level: r.u32()? as usize,
                    expires_at: r.u64()?,
                });
            }
            let notice_cursor = r.u64()?;
            let audit_pin = Head {
                seq: r.u64()?,
                hash: r.array()?,
            };
            let items = match vault.get_state(&items_name(&id))? {
                Some(b) => read_items(&b)?,
                None => {
                    return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                        what: "saved patient state",
                        reason: "a share's items are missing",
                    }));
                }
            };
            shares.insert(
                id,
                ShareState {
                    owner,
                    epoch,
                    manifest_version,
                    options,
                    items,
                    items_saved: true,
                    grants,
                    delegations,
                    notice_cursor,
                    audit_pin,
                    log: Vec::new(),
                    log_seq: 0,
                },
            );
        }
        let mut relationships = Vec::new();
        for _ in 0..r.u32()? {
            relationships.push(PatientRelationship {
                rel: Relationship {
                    id: r.array()?,
                    peer_card: r.obj()?,
                    peer_address: r.bytes16()?.to_vec(),
                },
                peer: read_address(&mut r)?,
                inbox: read_mailbox(&mut r)?,
                send_seq: r.u64()?,
                guard: ReplayGuard::from_highest(r.u64()?),
                paired_at: r.u64()?,
            });
        }
        let mut forward_requests = Vec::new();
        for _ in 0..r.u32()? {
            // Version 1 states predate stable ids: those requests get fresh ones.
            let id = if version >= 2 {
                ForwardRequestId(r.array()?)
            } else {
                ForwardRequestId::random()
            };
            forward_requests.push(PendingForward {
                id,
                from: r.u32()? as usize,
                request: r.obj::<ForwardRequest>()?,
            });
        }
        r.finish()?;
        // Indices must point at relationships that exist.
        let nrel = relationships.len();
        let bad = shares.values().any(|s| {
            s.grants.iter().any(|g| g.relationship >= nrel)
                || s.delegations.iter().any(|d| d.root_relationship >= nrel)
        }) || forward_requests.iter().any(|f| f.from >= nrel);
        if bad {
            return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                what: "saved patient state",
                reason: "relationship index out of range",
            }));
        }
        self.shares = shares;
        self.relationships = relationships;
        self.forward_requests = forward_requests;
        Ok(())
    }
}
