//! The patient's saved state (crate::persist has the conventions).

use std::collections::{BTreeMap, HashMap};

use carekey_core::audit::Head;
use carekey_core::epoch::Epoch;
use carekey_core::forward::ForwardRequest;
use carekey_core::grant::{Category, Policy};
use carekey_core::keys::{Card, DeviceIdentity, GroupSecret, PublicKey};
use carekey_core::manifest::Manifest;
use carekey_core::message::ReplayGuard;
use carekey_core::pairing::Relationship;
use carekey_core::wire::Wire;
use carekey_core::wire::{Reader, Writer, read_opt, write_opt};
use carekey_vault::Vault;
use zeroize::Zeroizing;

use super::{
    DelegationRecord, ForwardRequestId, GrantRecord, Patient, PatientRelationship, PendingForward,
    ScopedShare, ShareItem, ShareOptions, ShareState,
};
use crate::error::{ClientError, Result};
use crate::ids::{RelationshipId, ShareId};
use crate::persist::{
    STATE_VERSION, count, now_micros, read_address, read_mailbox, read_secret, write_address,
    write_mailbox, write_secret,
};
use crate::relay::{OwnerCap, Relay};

/// Version of the patient's main state written now. 2 added the stable id of each pending
/// forward request (version 1, [`STATE_VERSION`], is still read; its requests get fresh ids).
/// 3 names relationships by their 16-byte id where 1 and 2 wrote a `u32` index into the list
/// of relationships (grants, delegation roots, forward requests); 1 and 2 are still read, each
/// index mapped to the id of the relationship at that place in their list. 4 adds each share's
/// scoped keys (docs/protocol.md "Scoped keys": the group secret and the records listed by
/// grants; a share of an older state has none and keeps the version-1 behaviour) and, for each
/// known delegation, its token hash, its parent's key and whether it was revoked (older
/// states' delegations can only be revoked with their root).
const PATIENT_STATE_VERSION: u8 = 4;

/// The first version that saves scoped shares.
const SCOPED_SHARES_VERSION: u8 = 4;

/// The first version that names relationships by id.
const RELATIONSHIP_IDS_VERSION: u8 = 3;

/// Vault state name of the patient's main state.
const MAIN: &str = "carekey/patient/v1";

/// Vault state name of the mark `backup::restore_from_relay` leaves in a restored vault: the
/// patient state loaded from it must be reconciled with the relay before any write
/// (patient::reconcile). Removed by the first save after the reconciliation.
pub(crate) const RESTORED_MARK: &str = "carekey/patient/v1/restored";

fn items_name(share_id: &ShareId) -> String {
    format!("carekey/patient/v1/items/{share_id}")
}

/// Vault state name of a scoped share's live manifest (its entries and content keys).
fn manifest_name(share_id: &ShareId) -> String {
    format!("carekey/patient/v1/manifest/{share_id}")
}

/// A relationship named in a saved state: by id (version 3), or by its index in the saved
/// list of relationships (versions 1 and 2), resolved once the list is read.
enum RelRef {
    Id(RelationshipId),
    Index(u32),
}

fn read_rel_ref(r: &mut Reader<'_>, version: u8) -> Result<RelRef> {
    Ok(if version >= RELATIONSHIP_IDS_VERSION {
        RelRef::Id(RelationshipId(r.array()?))
    } else {
        RelRef::Index(r.u32()?)
    })
}

fn out_of_range() -> ClientError {
    ClientError::Tampered(carekey_core::Error::Malformed {
        what: "saved patient state",
        reason: "names a relationship it does not hold",
    })
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
            if let Some(sc) = &mut st.scoped
                && !sc.manifest_saved
            {
                if let Some(m) = &sc.manifest {
                    vault.put_state(&manifest_name(id), &Zeroizing::new(m.to_bytes()))?;
                }
                sc.manifest_saved = true;
            }
        }
        vault.put_state(MAIN, &self.encode_state())?;
        if self.restored_mark_stale {
            vault.delete_state(RESTORED_MARK)?;
            self.restored_mark_stale = false;
        }
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
        p.unreconciled = vault.get_state(RESTORED_MARK)?.is_some();
        Ok(Some(p))
    }

    fn encode_state(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(PATIENT_STATE_VERSION);
        w.str16(self.relay.base());
        write_opt(&mut w, &self.relay_audit_key);
        // Shares in id order, so equal states encode equally.
        let mut ids: Vec<&ShareId> = self.shares.keys().collect();
        ids.sort();
        w.u32(count(ids.len()));
        for id in ids {
            let st = &self.shares[id];
            w.raw(id.as_bytes());
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
                w.raw(g.relationship.as_bytes());
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
                w.raw(d.root_relationship.as_bytes());
                w.u32(count(d.level));
                w.u64(d.expires_at);
                match &d.token_hash {
                    Some(h) => {
                        w.u8(1);
                        w.raw(h);
                    }
                    None => w.u8(0),
                }
                write_opt(&mut w, &d.parent_key);
                w.u8(u8::from(d.revoked));
            }
            w.u64(st.notice_cursor);
            w.u64(st.audit_pin.seq);
            w.raw(&st.audit_pin.hash);
            match &st.scoped {
                None => w.u8(0),
                Some(sc) => {
                    w.u8(1);
                    w.obj(&sc.groups);
                    w.u32(count(sc.records.len()));
                    for r in &sc.records {
                        w.raw(r);
                    }
                }
            }
        }
        // In id order (the map's), so equal states encode equally.
        w.u32(count(self.relationships.len()));
        for r in self.relationships.values() {
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
            w.raw(f.id.as_bytes());
            w.raw(f.from.as_bytes());
            w.obj(&f.request);
        }
        Zeroizing::new(w.into_bytes())
    }

    fn decode_state(&mut self, b: &[u8], vault: &mut Vault) -> Result<()> {
        let mut r = Reader::new(b, "saved patient state");
        let version = r.u8()?;
        if !(STATE_VERSION..=PATIENT_STATE_VERSION).contains(&version) {
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
        // Relationship references, resolved once the relationships are read: (share, grant
        // or delegation index, reference).
        let mut grant_refs = Vec::new();
        let mut delegation_refs = Vec::new();
        for _ in 0..n {
            let id = ShareId(r.array()?);
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
                grant_refs.push((id, grants.len(), read_rel_ref(&mut r, version)?));
                grants.push(GrantRecord {
                    relationship: RelationshipId::default(),
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
                let parent = r.obj()?;
                let colleague = r.obj()?;
                let child_key = r.obj()?;
                delegation_refs.push((id, delegations.len(), read_rel_ref(&mut r, version)?));
                let level = r.u32()? as usize;
                let expires_at = r.u64()?;
                let (token_hash, parent_key, revoked) = if version >= SCOPED_SHARES_VERSION {
                    let h = if r.bool()? {
                        Some(r.array::<32>()?)
                    } else {
                        None
                    };
                    (h, read_opt::<PublicKey>(&mut r)?, r.bool()?)
                } else {
                    (None, None, false)
                };
                delegations.push(DelegationRecord {
                    parent,
                    colleague,
                    child_key,
                    root_relationship: RelationshipId::default(),
                    level,
                    expires_at,
                    token_hash,
                    parent_key,
                    revoked,
                });
            }
            let notice_cursor = r.u64()?;
            let audit_pin = Head {
                seq: r.u64()?,
                hash: r.array()?,
            };
            let scoped = if version >= SCOPED_SHARES_VERSION && r.bool()? {
                let groups: GroupSecret = r.obj()?;
                let mut records = std::collections::BTreeSet::new();
                for _ in 0..r.u32()? {
                    records.insert(r.array::<16>()?);
                }
                let manifest = vault
                    .get_state(&manifest_name(&id))?
                    .map(|b| Manifest::from_bytes(&b))
                    .transpose()?;
                Some(ScopedShare {
                    groups,
                    records,
                    manifest,
                    manifest_saved: true,
                })
            } else {
                None
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
                    scoped,
                },
            );
        }
        // The saved list's order: what the indices of versions 1 and 2 point into.
        let mut order = Vec::new();
        let mut relationships = BTreeMap::new();
        for _ in 0..r.u32()? {
            let rel = PatientRelationship {
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
            };
            let id = RelationshipId(rel.rel.id);
            order.push(id);
            if relationships.insert(id, rel).is_some() {
                return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                    what: "saved patient state",
                    reason: "two relationships with one id",
                }));
            }
        }
        // Every reference must name a relationship the state holds.
        let resolve = |x: RelRef| -> Result<RelationshipId> {
            let id = match x {
                RelRef::Id(id) => id,
                RelRef::Index(i) => *order.get(i as usize).ok_or_else(out_of_range)?,
            };
            if relationships.contains_key(&id) {
                Ok(id)
            } else {
                Err(out_of_range())
            }
        };
        for (share, at, x) in grant_refs {
            let id = resolve(x)?;
            if let Some(g) = shares
                .get_mut(&share)
                .and_then(|s: &mut ShareState| s.grants.get_mut(at))
            {
                g.relationship = id;
            }
        }
        for (share, at, x) in delegation_refs {
            let id = resolve(x)?;
            if let Some(d) = shares
                .get_mut(&share)
                .and_then(|s: &mut ShareState| s.delegations.get_mut(at))
            {
                d.root_relationship = id;
            }
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
                from: resolve(read_rel_ref(&mut r, version)?)?,
                request: r.obj::<ForwardRequest>()?,
            });
        }
        r.finish()?;
        self.shares = shares;
        self.relationships = relationships;
        self.forward_requests = forward_requests;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use carekey_core::forward::ColleagueInvite;
    use carekey_core::grant::Scope;
    use carekey_core::keys::{ReadToken, RootSecret, SigningSecret};
    use rand_core::OsRng;

    use super::*;
    use crate::relay::{MailboxAddress, OwnMailbox};

    const RELAY: &str = "http://127.0.0.1:9";

    fn identity(name: &str, role: carekey_core::keys::Role) -> (DeviceIdentity, Card) {
        let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
        let card = id.card(name, role, None, 1).expect("card signs");
        (id, card)
    }

    fn mailbox(n: u8) -> OwnMailbox {
        OwnMailbox {
            address: MailboxAddress {
                id: crate::ids::MailboxId([n; 16]),
                write_token: Zeroizing::new([n; 32]),
            },
            read_token: Zeroizing::new([n ^ 0xff; 32]),
            cursor: u64::from(n),
        }
    }

    fn relationship(id: u8, card: Card, paired_at: u64) -> PatientRelationship {
        PatientRelationship {
            rel: Relationship {
                id: [id; 16],
                peer_card: card,
                peer_address: mailbox(id).address.to_bytes(),
            },
            peer: mailbox(id).address,
            inbox: mailbox(id.wrapping_add(1)),
            send_seq: 3,
            guard: ReplayGuard::from_highest(2),
            paired_at,
        }
    }

    /// The version-2 writer as it was (relationships as indices into the saved list), kept
    /// frozen so the test below proves such a state still loads.
    fn encode_v2(p: &Patient, order: &[RelationshipId]) -> Zeroizing<Vec<u8>> {
        // An id missing from `order` is written as an index past the list.
        let index =
            |id: &RelationshipId| order.iter().position(|o| o == id).map_or(u32::MAX, count);
        let mut w = Writer::new();
        w.u8(2);
        w.str16(p.relay.base());
        write_opt(&mut w, &p.relay_audit_key);
        w.u32(count(p.shares.len()));
        for (id, st) in &p.shares {
            w.raw(id.as_bytes());
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
                w.u32(index(&g.relationship));
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
                w.u32(index(&d.root_relationship));
                w.u32(count(d.level));
                w.u64(d.expires_at);
            }
            w.u64(st.notice_cursor);
            w.u64(st.audit_pin.seq);
            w.raw(&st.audit_pin.hash);
        }
        w.u32(count(order.len()));
        for id in order {
            let r = &p.relationships[id];
            w.raw(&r.rel.id);
            w.obj(&r.rel.peer_card);
            w.bytes16(&r.rel.peer_address);
            write_address(&mut w, &r.peer);
            write_mailbox(&mut w, &r.inbox);
            w.u64(r.send_seq);
            w.u64(r.guard.highest());
            w.u64(r.paired_at);
        }
        w.u32(count(p.forward_requests.len()));
        for f in &p.forward_requests {
            w.raw(f.id.as_bytes());
            w.u32(index(&f.from));
            w.obj(&f.request);
        }
        Zeroizing::new(w.into_bytes())
    }

    #[test]
    fn version_2_state_loads_with_relationships_by_id() {
        use carekey_core::keys::Role;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vault = Vault::create(
            &dir.path().join("v"),
            "pass phrase",
            &carekey_vault::CreateOptions {
                kdf: carekey_vault::KdfParams {
                    m_kib: 8 * 1024,
                    t: 1,
                    p: 1,
                },
            },
        )
        .expect("vault")
        .0;
        let root = RootSecret::random(&mut OsRng);
        let pid = || DeviceIdentity::from_root(&root);
        let pcard = pid()
            .card("Pat", Role::Patient, None, 1)
            .expect("card signs");
        let (_, doc_a) = identity("Dr. A", Role::Doctor);
        let (_, doc_b) = identity("Dr. B", Role::Doctor);
        let (col_id, col_card) = identity("Dr. C", Role::Doctor);
        let relay = || Relay::new(RELAY).expect("loopback relay URL");
        let mut p = Patient::new(pid(), pcard.clone(), relay());
        // The saved list puts B (higher id) before A, so index order differs from id order.
        let (a, b) = (RelationshipId([0x11; 16]), RelationshipId([0xee; 16]));
        p.relationships.insert(a, relationship(0x11, doc_a, 200));
        p.relationships
            .insert(b, relationship(0xee, doc_b.clone(), 100));
        let order = [b, a];
        let share = ShareId([7; 16]);
        let grant = |relationship| GrantRecord {
            relationship,
            reader_key: SigningSecret::random(&mut OsRng).public(),
            token: ReadToken::random(&mut OsRng),
            scope: Scope::all(),
            depth: 1,
            expires_at: 5_000,
            revoked: false,
        };
        let invite = ColleagueInvite::sign(
            &col_id,
            &col_card,
            SigningSecret::random(&mut OsRng).public(),
            mailbox(9).address.to_bytes(),
            [0x33; 16],
            u64::MAX / 2,
        )
        .expect("invite signs");
        p.shares.insert(
            share,
            ShareState {
                owner: OwnerCap::generate(),
                epoch: Epoch::first(&mut OsRng),
                manifest_version: 1,
                options: ShareOptions {
                    expires_at: 5_000,
                    policy: Policy::Allowed,
                    delegation_depth: 1,
                },
                items: Vec::new(),
                items_saved: false,
                grants: vec![grant(a), grant(b)],
                delegations: vec![DelegationRecord {
                    parent: doc_b,
                    colleague: col_card,
                    child_key: invite.reader_key,
                    root_relationship: b,
                    level: 1,
                    expires_at: 5_000,
                    token_hash: None,
                    parent_key: None,
                    revoked: false,
                }],
                notice_cursor: 4,
                audit_pin: Head::EMPTY,
                log: Vec::new(),
                log_seq: 0,
                scoped: None,
            },
        );
        p.forward_requests.push(PendingForward {
            id: ForwardRequestId([0x44; 16]),
            from: a,
            request: ForwardRequest {
                share_id: share.to_bytes(),
                invite,
                scope: Scope::all(),
                reason: "second opinion".into(),
            },
        });
        // The items go as ever; the main state as version 2 wrote it.
        p.save_to(&mut vault).expect("save");
        vault
            .put_state(MAIN, &encode_v2(&p, &order))
            .expect("put v2");

        let q = Patient::load_from(&mut vault, pid(), pcard.clone(), relay())
            .expect("version 2 loads")
            .expect("state saved");
        let st = &q.shares[&share];
        assert_eq!(
            st.grants.iter().map(|g| g.relationship).collect::<Vec<_>>(),
            [a, b]
        );
        assert_eq!(st.delegations[0].root_relationship, b);
        assert_eq!(q.forward_requests[0].from, a);
        assert_eq!(q.forward_requests[0].id, ForwardRequestId([0x44; 16]));
        assert_eq!(
            q.relationships()
                .iter()
                .map(|r| (r.id, r.paired_at))
                .collect::<Vec<_>>(),
            [(b, 100), (a, 200)]
        );
        assert_eq!(q.forward_requests()[0].from_name, "Dr. A");
        // Saved again, it is version 3 and reads back the same (owner counters aside: they
        // resume at the clock, see crate::persist).
        let mut q = q;
        assert_eq!(q.encode_state()[0], PATIENT_STATE_VERSION);
        assert!(
            q.shares[&share].scoped.is_none(),
            "an old share stays version 1"
        );
        q.save_to(&mut vault).expect("save v4");
        let r = Patient::load_from(&mut vault, pid(), pcard.clone(), relay())
            .expect("version 3 loads")
            .expect("state saved");
        let st = &r.shares[&share];
        assert_eq!(
            st.grants.iter().map(|g| g.relationship).collect::<Vec<_>>(),
            [a, b]
        );
        assert_eq!(st.delegations[0].root_relationship, b);
        assert_eq!(r.forward_requests[0].from, a);
        assert_eq!(r.relationships.keys().copied().collect::<Vec<_>>(), [a, b]);

        // A version-2 index past the list is refused, not guessed.
        vault.put_state(MAIN, &encode_v2(&p, &[b])).expect("put v2");
        let err = Patient::load_from(&mut vault, pid(), pcard, relay())
            .expect_err("an index past the list");
        assert_eq!(err.code(), "tampered");
    }
}
