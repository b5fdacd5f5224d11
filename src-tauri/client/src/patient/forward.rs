//! Forwarding to a colleague: requests, answers, the delegation tree (docs/protocol.md "Forwarding").

use std::collections::BTreeMap;

use carekey_core::forward::{
    Access, DelegationNotice, ForwardAnswer, ForwardRequest, Introduction,
};
use carekey_core::grant::{DelegationLink, DelegationRoot, Grant, Policy};
use carekey_core::keys::{Card, DeviceIdentity, ReadToken};
use carekey_core::message::{self, MessageKind, ReplayGuard};
use carekey_core::pairing::Relationship;
use carekey_core::wire::Wire;
use carekey_relay_api as api;
use rand_core::OsRng;

use crate::error::{ClientError, Result};
pub use crate::ids::ForwardRequestId;
use crate::ids::{RelationshipId, ShareId};
use crate::now;
use crate::relay::{MailboxAddress, b64};

use super::{
    DelegationRecord, DelegationView, ForwardRequestView, GrantRecord, Patient,
    PatientRelationship, ShareState, ensure_record_sections,
};

impl Patient {
    /// A forward request is only queued for the patient if the asking doctor holds an active
    /// grant on that share, the share's policy is not `never`, the scope stays within the
    /// doctor's, and the colleague's invite is signed by the colleague's card.
    pub(super) fn check_forward(&self, from: &RelationshipId, req: &ForwardRequest) -> Result<()> {
        let st = self
            .shares
            .get(&ShareId(req.share_id))
            .ok_or(ClientError::NotAllowed(
                "forward request for an unknown share",
            ))?;
        if st.options.policy == Policy::Never {
            return Err(ClientError::NotAllowed(
                "forwarding is not allowed for this share",
            ));
        }
        let g = st
            .grants
            .iter()
            .find(|g| g.relationship == *from && !g.revoked)
            .ok_or(ClientError::NotAllowed(
                "the asking doctor holds no active grant on this share",
            ))?;
        if !req.scope.is_within(&g.scope) {
            return Err(ClientError::NotAllowed(
                "the forward request widens the doctor's scope",
            ));
        }
        req.invite.verify(now())?;
        Ok(())
    }

    /// Forward requests waiting for the patient's decision, oldest first.
    pub fn forward_requests(&self) -> Vec<ForwardRequestView> {
        self.forward_requests
            .iter()
            .map(|p| ForwardRequestView {
                id: p.id,
                from: p.from,
                from_name: self
                    .relationships
                    .get(&p.from)
                    .map(|r| r.rel.peer_card.body.name.clone())
                    .unwrap_or_default(),
                colleague: p.request.invite.card.clone(),
                colleague_attested: p.request.invite.card.attestation.is_some(),
                share_id: ShareId(p.request.share_id),
                scope: p.request.scope.clone(),
                reason: p.request.reason.clone(),
            })
            .collect()
    }

    /// Approves or declines forward request `id`. Approving registers a read token for the
    /// colleague's reader key, signs a grant to the colleague's card and sends it (with the
    /// patient's card and a mailbox for notes) to the colleague's invite mailbox: the colleague
    /// becomes a relationship of its own (its id returned). The asking doctor gets the answer
    /// either way.
    pub async fn answer_forward(
        &mut self,
        id: &ForwardRequestId,
        approve: bool,
    ) -> Result<Option<RelationshipId>> {
        // A restored state must be reconciled first (patient::reconcile).
        self.check_reconciled()?;
        let at = self
            .forward_requests
            .iter()
            .position(|p| p.id == *id)
            .ok_or(ClientError::InvalidInput("unknown forward request"))?;
        let pf = self.forward_requests.remove(at);
        let answer = ForwardAnswer {
            request_hash: pf.request.hash(),
            approved: approve,
        }
        .to_bytes();
        if approve {
            // Re-check: the doctor may have been revoked since the request arrived (then the
            // request is dropped with the error).
            self.check_forward(&pf.from, &pf.request)?;
        }
        let outcome = if approve {
            self.grant_colleague(&pf.request).await.map(Some)
        } else {
            self.send(&pf.from, MessageKind::ForwardAnswer, &answer)
                .await
                .map(|()| None)
        };
        match outcome {
            Ok(Some(colleague)) => {
                // The colleague has its grant; the asking doctor's answer is a courtesy, and a
                // failure to deliver it is kept as an alert rather than undoing the grant.
                if let Err(e) = self
                    .send(&pf.from, MessageKind::ForwardAnswer, &answer)
                    .await
                {
                    self.alerts.push(e);
                }
                Ok(Some(colleague))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                // Nothing reached the colleague or the doctor (offline, relay refused): the
                // request stays on the patient's screen to be answered again.
                let at = at.min(self.forward_requests.len());
                self.forward_requests.insert(at, pf);
                Err(e)
            }
        }
    }

    /// Registers a token for the colleague, signs its grant and sends the introduction; only
    /// after the introduction is delivered does the colleague become a relationship.
    pub(super) async fn grant_colleague(&mut self, req: &ForwardRequest) -> Result<RelationshipId> {
        let inv = &req.invite;
        let address = MailboxAddress::from_bytes(&inv.address)?;
        // The colleague chose the relationship id (its invite, docs/protocol.md "Forwarding"):
        // one already in use here would alias another relationship's messages.
        let id = RelationshipId(inv.relationship_id);
        if self.relationships.contains_key(&id) {
            return Err(ClientError::NotAllowed(
                "the colleague's invite reuses a relationship id",
            ));
        }
        let share_id = ShareId(req.share_id);
        let inbox = self.relay.open_mailbox().await?;
        let st = self
            .shares
            .get_mut(&share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        let token = ReadToken::random(&mut OsRng);
        ensure_record_sections(&self.relay, &self.identity, &share_id, st, &req.scope).await?;
        let groups = st.token_groups(&share_id, &req.scope);
        self.relay
            .register_token(
                &mut st.owner,
                &share_id,
                &api::RootTokenRegistration {
                    token_hash: b64(&token.relay_hash()),
                    reader_key: b64(inv.reader_key.as_bytes()),
                    scope: b64(&req.scope.to_bytes()),
                    expires_at: st.options.expires_at,
                    depth: 0,
                    groups,
                },
            )
            .await?;
        let grant = Grant {
            share_id: req.share_id,
            relay_url: self.relay.base().to_owned(),
            epoch: st.epoch.number,
            keys: st.grant_keys(&share_id, &req.scope),
            read_token: token.clone(),
            // A colleague the patient granted may ask in turn, but not delegate.
            policy: Policy::Ask,
            scope: req.scope.clone(),
            expires_at: st.options.expires_at,
            grantee: inv.card.hash(),
            reader_key: inv.reader_key,
            delegation_depth: 0,
            issued_at: now(),
        }
        .sign(self.identity.signing());
        let intro = Introduction {
            sender: self.card.clone(),
            patient: self.card.clone(),
            reply_address: inbox.address.to_bytes(),
            access: Access::Direct(grant),
        };
        let sealed = message::seal(
            &self.identity,
            &self.card,
            &inv.card,
            &inv.relationship_id,
            1,
            MessageKind::Grant,
            &intro.to_bytes(),
            &mut OsRng,
        )?;
        self.relay.append(&address, sealed).await?;
        st.grants.push(GrantRecord {
            relationship: id,
            reader_key: inv.reader_key,
            token,
            scope: req.scope.clone(),
            depth: 0,
            expires_at: st.options.expires_at,
            revoked: false,
        });
        self.relationships.insert(
            id,
            PatientRelationship {
                rel: Relationship {
                    id: inv.relationship_id,
                    peer_card: inv.card.clone(),
                    peer_address: inv.address.clone(),
                },
                peer: address,
                inbox,
                send_seq: 1,
                guard: ReplayGuard::default(),
                paired_at: now(),
            },
        );
        Ok(id)
    }

    /// Reads the share's new delegation notices from the relay, verifies each against the
    /// patient's own grants (the chain from the root registration, the delegating doctor's
    /// signature, the colleague's signed invite), and returns the whole known tree. A notice
    /// that fails is reported as an error after the good ones are kept: the relay may have
    /// registered a delegation the patient cannot account for, which the UI must show.
    /// ([`Patient::access_log`] reads new notices too; one failing there is reported in
    /// [`Patient::take_alerts`] instead.)
    pub async fn delegations(&mut self, share_id: &ShareId) -> Result<Vec<DelegationView>> {
        if let Some(e) = self.read_new_notices(share_id).await? {
            return Err(e);
        }
        let st = self
            .shares
            .get(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        Ok(st
            .delegations
            .iter()
            .map(|d| DelegationView {
                id: d.id(),
                revoked: d.revoked,
                by: d.parent.body.name.clone(),
                colleague: d.colleague.body.name.clone(),
                root_relationship: d.root_relationship,
                level: d.level,
                expires_at: d.expires_at,
            })
            .collect())
    }

    /// Reads the notices after the share's cursor, page by page until none is left (the relay
    /// cuts pages at a byte budget, `NOTICE_PAGE_BYTES`), keeps each that verifies as a
    /// delegation of the tree, and returns the first that failed (the cursor moves past it
    /// either way).
    pub(super) async fn read_new_notices(
        &mut self,
        share_id: &ShareId,
    ) -> Result<Option<ClientError>> {
        let st = self
            .shares
            .get_mut(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        let mut first_error = None;
        for _ in 0..MAX_NOTICE_PAGES {
            let after = st.notice_cursor;
            let notices = self.relay.notices(&mut st.owner, share_id, after).await?;
            if notices.is_empty() {
                return Ok(first_error);
            }
            for n in notices {
                st.notice_cursor = st.notice_cursor.max(n.seq);
                match verify_notice(
                    &self.identity,
                    &self.card,
                    share_id,
                    st,
                    &self.relationships,
                    &n.body,
                    now(),
                ) {
                    Ok((d, _)) => st.delegations.push(d),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            moved_forward(st.notice_cursor, after)?;
        }
        Ok(first_error)
    }

    /// The chains (root first) of every notice the relay holds for the share that verifies
    /// against the patient's grants and known tree, read from the first notice on: what the
    /// access log compares its "delegation registered" entries with (docs/protocol.md "Audit
    /// chains"). Call [`Patient::read_new_notices`] first, so a delegate's parent is known.
    /// Each notice is verified as of the relay's time for it (when it was registered, in the
    /// same transaction as the log entry), capped at now: a delegation that expired since was
    /// still noticed.
    pub(super) async fn noticed_chains(
        &mut self,
        share_id: &ShareId,
    ) -> Result<Vec<Vec<DelegationLink>>> {
        let st = self
            .shares
            .get_mut(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        let mut chains = Vec::new();
        let mut after = 0;
        for _ in 0..MAX_NOTICE_PAGES {
            let page = self.relay.notices(&mut st.owner, share_id, after).await?;
            let Some(last) = page.last().map(|n| n.seq) else {
                return Ok(chains);
            };
            moved_forward(last, after)?;
            for n in page {
                if let Ok((_, chain)) = verify_notice(
                    &self.identity,
                    &self.card,
                    share_id,
                    st,
                    &self.relationships,
                    &n.body,
                    n.time.min(now()),
                ) {
                    chains.push(chain);
                }
            }
            after = last;
        }
        Err(ClientError::BadResponse {
            what: "notices (too many pages)",
        })
    }
}

/// Most notice pages [`Patient::noticed_chains`] and [`Patient::read_new_notices`] follow (a
/// relay page holds at most 500 notices and 1 MiB of them, `NOTICE_PAGE_*`).
const MAX_NOTICE_PAGES: usize = 1_000;

/// Each page of notices must end past the cursor it was asked from (`last` > `after`), or a
/// relay could keep the client reading the same page.
fn moved_forward(last: u64, after: u64) -> Result<()> {
    if last <= after {
        return Err(ClientError::BadResponse {
            what: "notices (a page did not move forward)",
        });
    }
    Ok(())
}

pub(super) fn verify_notice(
    me: &DeviceIdentity,
    my_card: &Card,
    share_id: &ShareId,
    st: &ShareState,
    relationships: &BTreeMap<RelationshipId, PatientRelationship>,
    sealed: &[u8],
    at: u64,
) -> Result<(DelegationRecord, Vec<DelegationLink>)> {
    let (sender, m) = message::open_introduction(me, my_card, share_id.as_bytes(), sealed)?;
    if m.kind != MessageKind::Notice {
        return Err(ClientError::Tampered(carekey_core::Error::Malformed {
            what: "delegation notice",
            reason: "not a notice",
        }));
    }
    let n = DelegationNotice::from_bytes(&m.body)?;
    if n.sender != sender {
        return Err(ClientError::Tampered(carekey_core::Error::WrongRecipient));
    }
    let g = st
        .grants
        .iter()
        .find(|g| g.token.relay_hash() == n.root_token_hash)
        .ok_or(ClientError::Tampered(carekey_core::Error::Delegation {
            index: 0,
            reason: "root is not one of the patient's grants",
        }))?;
    let root = DelegationRoot {
        reader_key: g.reader_key,
        scope: g.scope.clone(),
        expires_at: g.expires_at,
        depth: g.depth,
        groups: st
            .scoped
            .as_ref()
            .map(|sc| sc.groups.tags(share_id.as_bytes(), &g.scope)),
    };
    n.verify(share_id.as_bytes(), &root, at)?;
    // In a scoped share every link's relay groups must be exactly those of its scope: the
    // relay only checks they are within the parent's, the patient knows what they stand for.
    if let Some(sc) = &st.scoped
        && let Some((index, _)) = n.chain.iter().enumerate().find(|(_, l)| {
            l.groups.as_ref() != Some(&sc.groups.tags(share_id.as_bytes(), &l.scope))
        })
    {
        return Err(ClientError::Tampered(carekey_core::Error::Delegation {
            index,
            reason: "relay groups do not match the delegated scope",
        }));
    }
    // The notice's signer must be who holds the parent key: the root grantee for the first
    // level, an earlier (verified) colleague further down.
    let last = n.chain.len() - 1;
    let parent_key = n.chain[last].parent_key;
    let parent_card = if last == 0 {
        relationships.get(&g.relationship).map(|r| &r.rel.peer_card)
    } else {
        st.delegations
            .iter()
            .find(|d| d.child_key == parent_key)
            .map(|d| &d.colleague)
    };
    if parent_card.map(Card::hash) != Some(sender.hash()) {
        return Err(ClientError::Tampered(carekey_core::Error::Delegation {
            index: last,
            reason: "notice not signed by the delegating parent",
        }));
    }
    let record = DelegationRecord {
        parent: sender,
        colleague: n.invite.card.clone(),
        child_key: n.invite.reader_key,
        root_relationship: g.relationship,
        level: n.chain.len(),
        expires_at: n.chain[last].expires_at,
        token_hash: Some(n.chain[last].child_token_hash),
        parent_key: Some(parent_key),
        revoked: false,
    };
    Ok((record, n.chain))
}
