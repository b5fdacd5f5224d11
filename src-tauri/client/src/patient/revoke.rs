//! Revocation by re-keying (docs/protocol.md "Revocation and expiry").

use carekey_core::epoch::{Epoch, EpochUpdate};
use carekey_core::message::{self, MessageKind};
use carekey_core::wire::Wire;
use rand_core::OsRng;

use crate::error::{ClientError, Result};
pub use crate::ids::DelegationId;
use crate::ids::{RelationshipId, ShareId};
use crate::progress::{Cancel, Progress, ProgressSink, Stage};

use super::{Patient, ShareState, register_blob_groups, share_elements};

impl Patient {
    /// Revokes the grant of relationship `id` on `share_id`, in the design brief's order:
    /// revoke the token (and its delegated subtree), new epoch with fresh content keys,
    /// upload, deliver the new epoch key to the remaining grantees, swap the manifest, delete
    /// the old epoch. If it fails part-way (the token is revoked but the re-key did not
    /// finish), calling it again for the same relationship finishes the re-key.
    pub async fn revoke(
        &mut self,
        share_id: &ShareId,
        id: &RelationshipId,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<()> {
        // A restored state may think a revoked doctor active (patient::reconcile).
        self.check_reconciled()?;
        let mut st = self
            .shares
            .remove(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        let r = self
            .revoke_inner(share_id, &mut st, id, progress, cancel)
            .await;
        self.shares.insert(*share_id, st);
        r
    }

    pub(super) async fn revoke_inner(
        &mut self,
        share_id: &ShareId,
        st: &mut ShareState,
        id: &RelationshipId,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<()> {
        // (1) Revoke at once. A grant already revoked means an earlier revoke was interrupted
        // (network, relay) after this step: calling again finishes the re-key.
        let g = st
            .grants
            .iter_mut()
            .filter(|g| g.relationship == *id)
            .min_by_key(|g| g.revoked)
            .ok_or(ClientError::InvalidInput("no grant for that relationship"))?;
        if !g.revoked {
            self.relay
                .revoke_token(&mut st.owner, share_id, &g.token.relay_hash())
                .await?;
            g.revoked = true;
        }
        // The relay revoked the whole subtree with it.
        for d in &mut st.delegations {
            if d.root_relationship == *id {
                d.revoked = true;
            }
        }
        self.rekey(share_id, st, progress, cancel).await
    }

    /// Revokes delegation `id` of `share_id` (any node of the tree the patient learnt of from
    /// [`Patient::delegations`]) and its whole subtree, then re-keys as [`Patient::revoke`]
    /// does: the remaining grantees get the new epoch's keys, and every doctor passing them
    /// down drops the revoked colleagues (the update names their tokens), so no revoked node
    /// receives a key of the new epoch, nor can its token fetch anything. The colleague's
    /// parent and every other node keep reading. Calling it again after an interruption
    /// finishes the re-key.
    pub async fn revoke_delegation(
        &mut self,
        share_id: &ShareId,
        id: &DelegationId,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<()> {
        self.check_reconciled()?;
        let mut st = self
            .shares
            .remove(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        let r = self
            .revoke_delegation_inner(share_id, &mut st, id, progress, cancel)
            .await;
        self.shares.insert(*share_id, st);
        r
    }

    pub(super) async fn revoke_delegation_inner(
        &mut self,
        share_id: &ShareId,
        st: &mut ShareState,
        id: &DelegationId,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<()> {
        let at = st
            .delegations
            .iter()
            .position(|d| d.id() == Some(*id))
            .ok_or(ClientError::InvalidInput("unknown delegation"))?;
        let d = &st.delegations[at];
        let token_hash = d.token_hash.ok_or(ClientError::InvalidInput(
            "a delegation saved before this version cannot be revoked alone (revoke its root)",
        ))?;
        if !d.revoked {
            // (1) At the relay, the token and its subtree at once (a token gone already, e.g.
            // with an ancestor, is fine).
            match self
                .relay
                .revoke_token(&mut st.owner, share_id, &token_hash)
                .await
            {
                Ok(()) | Err(ClientError::NotFound) => {}
                Err(e) => return Err(e),
            }
            // Here too: the node and everything below it.
            let mut keys = vec![st.delegations[at].child_key];
            st.delegations[at].revoked = true;
            loop {
                let mut more = false;
                for d in &mut st.delegations {
                    if !d.revoked && d.parent_key.is_some_and(|p| keys.contains(&p)) {
                        d.revoked = true;
                        keys.push(d.child_key);
                        more = true;
                    }
                }
                if !more {
                    break;
                }
            }
        }
        self.rekey(share_id, st, progress, cancel).await
    }

    /// Steps 2 to 5 of a revoke (docs/protocol.md "Revocation and expiry"): new epoch, new
    /// blobs in their groups, the new keys to every remaining grantee (naming the revoked
    /// delegated tokens), manifest swap, old epoch deleted.
    pub(super) async fn rekey(
        &mut self,
        share_id: &ShareId,
        st: &mut ShareState,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<()> {
        // (2) New epoch: fresh epoch key, fresh content key and blob id for every blob; upload.
        let old_epoch = st.epoch.number;
        let published = Epoch {
            number: old_epoch,
            key: st.epoch.key.clone(),
        };
        st.epoch = st.epoch.next(&mut OsRng)?;
        let uploaded = match self.upload_epoch(share_id, st, progress, cancel).await {
            Ok(m) => match &st.scoped {
                Some(sc) => {
                    // The new blobs join the (stable) groups before anyone learns of them.
                    let elements = share_elements(sc);
                    register_blob_groups(&self.relay, share_id, st, &m, &elements)
                        .await
                        .map(|()| m)
                }
                None => Ok(m),
            },
            Err(e) => Err(e),
        };
        let m = match uploaded {
            Ok(m) => m,
            Err(e) => {
                // The new key never left the device: go back to the published epoch, so
                // grants made meanwhile carry the key the relay's manifest opens with. Blobs
                // already uploaded under the new number go with that epoch's deletion later.
                st.epoch = published;
                return Err(e);
            }
        };
        // (3) Deliver the new epoch's keys to every remaining grantee: each gets those of its
        // own scope (or, in a version-1 share, the epoch key), with the revoked delegated
        // tokens, so no doctor passes the keys down to a revoked colleague.
        let mut revoked_tokens: Vec<[u8; 32]> = st
            .delegations
            .iter()
            .filter(|d| d.revoked)
            .filter_map(|d| d.token_hash)
            .collect();
        revoked_tokens.sort_unstable();
        revoked_tokens.dedup();
        let remaining: Vec<(RelationshipId, Vec<u8>)> = st
            .grants
            .iter()
            .filter(|g| !g.revoked)
            .map(|g| {
                let update = EpochUpdate {
                    share_id: share_id.to_bytes(),
                    epoch: st.epoch.number,
                    keys: st.grant_keys(share_id, &g.scope),
                    manifest_version: m.version,
                    revoked_tokens: revoked_tokens.clone(),
                };
                (g.relationship, update.to_bytes())
            })
            .collect();
        for (ri, update) in remaining {
            self.send_sealed(&ri, MessageKind::EpochUpdate, &update)
                .await?;
        }
        // (4) Compare-and-swap the manifest.
        self.swap_manifest(share_id, st, &m).await?;
        progress.report(Progress {
            stage: Stage::Rekeying,
            done: 1,
            total: 1,
        });
        // (5) Delete the old epochs' blobs: every epoch below the new one, not only the one
        // this re-key started from. A revoke interrupted after its epoch updates went out
        // leaves the epoch before it live, and the one that finishes it starts from the
        // unfinished epoch: deleting only that would leave blobs the revoked reader's old
        // keys open (docs/protocol.md "Revocation and expiry").
        self.relay
            .delete_epochs_below(&mut st.owner, share_id, st.epoch.number)
            .await?;
        Ok(())
    }

    /// Sign-then-seal to the doctor of relationship `id` (docs/protocol.md "Relationship
    /// messages"). Every key, grant and answer a doctor gets goes through here, so a restored
    /// state not reconciled yet sends nothing (docs/protocol.md "Restore and reconciliation").
    pub(super) async fn send(
        &mut self,
        id: &RelationshipId,
        kind: MessageKind,
        body: &[u8],
    ) -> Result<()> {
        self.check_reconciled()?;
        self.send_sealed(id, kind, body).await
    }

    /// [`Patient::send`] without the reconciliation check: for the re-key, whose callers
    /// checked (a revoke) or are the reconciliation itself.
    pub(super) async fn send_sealed(
        &mut self,
        id: &RelationshipId,
        kind: MessageKind,
        body: &[u8],
    ) -> Result<()> {
        let r = self
            .relationships
            .get_mut(id)
            .ok_or(ClientError::InvalidInput("unknown relationship"))?;
        r.send_seq += 1;
        let sealed = message::seal(
            &self.identity,
            &self.card,
            &r.rel.peer_card,
            &r.rel.id,
            r.send_seq,
            kind,
            body,
            &mut OsRng,
        )?;
        self.relay.append(&r.peer, sealed).await
    }
}
