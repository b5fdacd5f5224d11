//! After a restore: reconciling every share with what the relay's signed audit log says
//! happened (docs/protocol.md "Restore and reconciliation").
//!
//! A backup is a snapshot: whatever was done after it (a revoke, a re-key, a grant) is not in
//! the restored state, and the relay may even serve an older backup than its newest (a
//! hostile front end). Restored as is, a revoked doctor would look active and receive the next
//! epoch's keys. So a restored patient refuses every write ([`Patient::send`],
//! [`Patient::revoke`]) until [`Patient::reconcile`] has, for each share, read the whole
//! relay-signed audit log (it must extend the restored pin), and
//! - marked revoked every grant and delegation whose token the relay revoked or expired;
//! - revoked at the relay every root token it registered that the state does not know (a
//!   grant made after the backup: the patient can no longer see or manage it);
//! - when the relay's manifest version is above the state's or the state's epoch was deleted
//!   (the state is behind: its epoch key is not the live one), repaired the share by a re-key
//!   to an epoch number above any the relay saw, sent only to the grants still active;
//! - before all that, read the delegation notices posted after the backup (so a delegation
//!   made and ended since is listed, and listed ended), and afterwards dropped every restored
//!   forward request that is stale: answered with an approval after the backup (a token for
//!   the colleague's reader key is in the log), or from a doctor whose grant has ended.

use std::collections::{BTreeSet, HashSet};

use carekey_core::audit::{self, Head};

use super::{Patient, ShareState};
use crate::error::{ClientError, Result};
use crate::ids::ShareId;
use crate::persist::now_micros;
use crate::progress::{Cancel, ProgressSink};

/// Audit entry kinds the reconciliation reads (docs/relay-formats.md "Relay audit chain").
const KIND_TOKEN_REGISTERED: u8 = 2;
const KIND_TOKEN_REVOKED: u8 = 3;
const KIND_MANIFEST_SWAPPED: u8 = 6;
const KIND_EPOCH_DELETED: u8 = 7;
const KIND_TOKEN_EXPIRED: u8 = 8;

/// What the reconciliation of one share found and did, for the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The share.
    pub share_id: ShareId,
    /// Grants the restored state held as active that the relay had revoked or expired: now
    /// marked revoked (they receive nothing again).
    pub grants_marked_revoked: usize,
    /// Delegations likewise marked revoked.
    pub delegations_marked_revoked: usize,
    /// Root tokens registered after the backup (unknown to the state), now revoked.
    pub unknown_tokens_revoked: usize,
    /// The state was behind the relay (newer manifest, or its epoch deleted) and the share
    /// was re-keyed to the grants still active.
    pub rekeyed: bool,
    /// The relay no longer has the share (expired or deleted): every grant of it is now
    /// marked revoked.
    pub gone: bool,
    /// Restored forward requests for this share that were dropped: approved after the backup
    /// (the colleague's token, registered then, was revoked above), or asked by a doctor whose
    /// grant has ended since. A request declined after the backup leaves no trace at the relay
    /// and comes back; answering it again is the patient's own new choice.
    pub forward_requests_dropped: usize,
}

/// What the relay's verified log says about one share.
struct RelayHistory {
    head: Head,
    /// Root tokens registered: (hash, reader key).
    registered: Vec<([u8; 32], [u8; 32])>,
    /// Tokens revoked or expired (hashes).
    ended: HashSet<[u8; 32]>,
    /// Highest manifest version swapped in.
    manifest_version: u64,
    /// Epochs deleted.
    deleted_epochs: BTreeSet<u32>,
}

fn malformed(reason: &'static str) -> ClientError {
    ClientError::Tampered(carekey_core::Error::Malformed {
        what: "relay audit entry",
        reason,
    })
}

impl RelayHistory {
    fn read(entries: &[audit::Entry], head: Head) -> Result<Self> {
        let mut h = Self {
            head,
            registered: Vec::new(),
            ended: HashSet::new(),
            manifest_version: 0,
            deleted_epochs: BTreeSet::new(),
        };
        for e in entries {
            match e.kind {
                KIND_TOKEN_REGISTERED => {
                    // body = token_hash [32] || reader_key [32] || expires_at u64 || depth u8
                    let field = |at: usize| {
                        e.body
                            .get(at..at + 32)
                            .and_then(|b| <[u8; 32]>::try_from(b).ok())
                            .ok_or_else(|| malformed("short token registration"))
                    };
                    h.registered.push((field(0)?, field(32)?));
                }
                KIND_TOKEN_REVOKED | KIND_TOKEN_EXPIRED => {
                    let hash = <[u8; 32]>::try_from(e.body.as_slice())
                        .map_err(|_| malformed("token hash length"))?;
                    h.ended.insert(hash);
                }
                KIND_MANIFEST_SWAPPED => {
                    let v = <[u8; 8]>::try_from(e.body.as_slice())
                        .map_err(|_| malformed("manifest version length"))?;
                    h.manifest_version = h.manifest_version.max(u64::from_be_bytes(v));
                }
                KIND_EPOCH_DELETED => {
                    let v = <[u8; 4]>::try_from(e.body.as_slice())
                        .map_err(|_| malformed("epoch length"))?;
                    h.deleted_epochs.insert(u32::from_be_bytes(v));
                }
                _ => {}
            }
        }
        Ok(h)
    }

    /// Whether `st` is behind what the relay holds: its epoch key is not the live one.
    fn is_ahead_of(&self, st: &ShareState) -> bool {
        self.manifest_version > st.manifest_version
            || self.deleted_epochs.contains(&st.epoch.number)
    }

    /// The highest epoch number the relay may hold blobs (and doctors keys) of: one above the
    /// highest deleted (each finished re-key deletes the epoch it replaced), or the state's own.
    fn live_epoch(&self, st: &ShareState) -> u32 {
        let after_deleted = self
            .deleted_epochs
            .last()
            .map_or(0, |e| e.saturating_add(1));
        st.epoch.number.max(after_deleted)
    }
}

impl Patient {
    /// Whether this state came from a restore and was not reconciled yet: every write is
    /// refused until [`Patient::reconcile`] succeeds.
    pub fn needs_reconcile(&self) -> bool {
        self.unreconciled
    }

    /// Marks the state as restored from a backup (see the module docs): writes are refused
    /// until [`Patient::reconcile`]. `Patient::load_from` does it for a vault restored by
    /// `backup::restore_from_relay`.
    pub fn mark_restored(&mut self) {
        self.unreconciled = true;
    }

    /// Refuses a write while the restored state is not reconciled.
    pub(super) fn check_reconciled(&self) -> Result<()> {
        if self.unreconciled {
            return Err(ClientError::NotAllowed(
                "the restored state must be reconciled with the relay first",
            ));
        }
        Ok(())
    }

    /// Reconciles every share with the relay's signed audit log, repairing what is behind
    /// (module docs); returns what it did per share, in share-id order. Safe to call again
    /// after a failure (nothing is half-applied to a share: its state changes only once its
    /// log verified, and a failed re-key leaves the share behind, to be repaired by the next
    /// call). Writes are allowed again once every share reconciled.
    pub async fn reconcile(
        &mut self,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<Vec<Reconciled>> {
        // Messages sent after the backup used sequence numbers the state does not have: go
        // on from the clock (as owner counters do, crate::persist), so the doctors' replay
        // guards accept the next message.
        let floor = now_micros();
        for r in self.relationships.values_mut() {
            r.send_seq = r.send_seq.max(floor);
        }
        let mut ids: Vec<ShareId> = self.shares.keys().copied().collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            cancel.check()?;
            // Delegations made after the backup are only known from their notices: read them
            // first, so the token status below marks those that ended since.
            match self.read_new_notices(&id).await {
                Ok(None) => {}
                Ok(Some(bad)) => self.alerts.push(bad),
                // Gone at the relay: reconcile_share ends the share's grants.
                Err(ClientError::NotFound | ClientError::AccessEnded) => {}
                Err(e) => return Err(e),
            }
            let mut st = self
                .shares
                .remove(&id)
                .ok_or(ClientError::InvalidInput("unknown share"))?;
            let r = self.reconcile_share(&id, &mut st, progress, cancel).await;
            self.shares.insert(id, st);
            let (mut done, approved_since) = r?;
            done.forward_requests_dropped = self.drop_stale_forward_requests(&id, &approved_since);
            out.push(done);
        }
        if self.unreconciled {
            self.unreconciled = false;
            self.restored_mark_stale = true;
        }
        Ok(out)
    }

    async fn reconcile_share(
        &mut self,
        share_id: &ShareId,
        st: &mut ShareState,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<(Reconciled, HashSet<[u8; 32]>)> {
        let history = match self.relay_history(share_id, st).await {
            Ok(h) => h,
            // The share expired or was deleted at the relay: nobody reads it any more, and
            // nothing can be written to it. Failing closed, so a share that is gone does not
            // keep the restored state from ever being reconciled.
            Err(ClientError::NotFound | ClientError::AccessEnded) => {
                let grants = st.grants.iter().filter(|g| !g.revoked).count();
                let delegations = st.delegations.iter().filter(|d| !d.revoked).count();
                st.grants.iter_mut().for_each(|g| g.revoked = true);
                st.delegations.iter_mut().for_each(|d| d.revoked = true);
                let done = Reconciled {
                    share_id: *share_id,
                    grants_marked_revoked: grants,
                    delegations_marked_revoked: delegations,
                    unknown_tokens_revoked: 0,
                    rekeyed: false,
                    gone: true,
                    forward_requests_dropped: 0,
                };
                return Ok((done, HashSet::new()));
            }
            Err(e) => return Err(e),
        };
        if history.manifest_version < st.manifest_version {
            // The relay has less than the backup saw: a rolled-back relay; nothing to repair
            // from here.
            return Err(ClientError::Tampered(carekey_core::Error::Rollback {
                what: "share manifest at the relay",
                have: st.manifest_version,
                got: history.manifest_version,
            }));
        }
        let mut done = Reconciled {
            share_id: *share_id,
            grants_marked_revoked: 0,
            delegations_marked_revoked: 0,
            unknown_tokens_revoked: 0,
            rekeyed: false,
            gone: false,
            forward_requests_dropped: 0,
        };
        // Token status: what the relay ended stays ended (the relay revoked subtrees entry by
        // entry, so the set names every delegated token too).
        for g in &mut st.grants {
            if !g.revoked && history.ended.contains(&g.token.relay_hash()) {
                g.revoked = true;
                done.grants_marked_revoked += 1;
            }
        }
        for d in &mut st.delegations {
            let ended = d.token_hash.is_some_and(|h| history.ended.contains(&h));
            let root_ended = st
                .grants
                .iter()
                .any(|g| g.revoked && g.relationship == d.root_relationship);
            if !d.revoked && (ended || root_ended) {
                d.revoked = true;
                done.delegations_marked_revoked += 1;
            }
        }
        st.audit_pin = history.head;
        // Tokens the state does not know: granted after the backup, to a doctor whose pairing
        // is lost with it. Nobody could see or revoke them here, so they end now.
        let known: HashSet<[u8; 32]> = st.grants.iter().map(|g| g.token.relay_hash()).collect();
        // Reader keys granted after the backup: a restored forward request for one of them
        // was approved since (see drop_stale_forward_requests).
        let mut granted_since = HashSet::new();
        for (hash, reader_key) in &history.registered {
            if known.contains(hash) {
                continue;
            }
            granted_since.insert(*reader_key);
            if !history.ended.contains(hash) {
                match self.relay.revoke_token(&mut st.owner, share_id, hash).await {
                    Ok(()) | Err(ClientError::NotFound) => done.unknown_tokens_revoked += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        // Epoch: a state behind the relay holds a dead epoch key. Re-key from above every
        // epoch number the relay (and so any doctor) may have seen: the live one, or the
        // clock in seconds, whichever is higher, for epochs begun by an interrupted re-key
        // that left no trace in the log (as owner counters resume from the clock).
        if history.is_ahead_of(st) {
            let (restored_epoch, restored_version) = (st.epoch.number, st.manifest_version);
            let live = history.live_epoch(st);
            let clock = u32::try_from(crate::now()).unwrap_or(u32::MAX - 1);
            st.manifest_version = history.manifest_version;
            st.epoch.number = live.max(clock);
            if let Err(e) = self.rekey(share_id, st, progress, cancel).await {
                // Still behind: the next reconcile repairs it.
                st.epoch.number = st.epoch.number.min(restored_epoch);
                st.manifest_version = restored_version;
                return Err(e);
            }
            // The relay's live epoch and any left between it and the restored one hold blobs
            // under keys the revoked grantees may know: every epoch below the new one goes
            // (the re-key's last step already asked; asking again is harmless).
            self.relay
                .delete_epochs_below(&mut st.owner, share_id, st.epoch.number)
                .await?;
            done.rekeyed = true;
        }
        Ok((done, granted_since))
    }

    /// Drops the restored forward requests of `share_id` that are stale (module docs):
    /// approved after the backup (the colleague's reader key is in `granted_since`), or no
    /// longer answerable (`check_forward` refuses: the asking doctor's grant ended, the
    /// colleague's invite expired). Returns how many went.
    fn drop_stale_forward_requests(
        &mut self,
        share_id: &ShareId,
        granted_since: &HashSet<[u8; 32]>,
    ) -> usize {
        let stale: Vec<bool> = self
            .forward_requests
            .iter()
            .map(|p| {
                p.request.share_id == share_id.0
                    && (granted_since.contains(p.request.invite.reader_key.as_bytes())
                        || self.check_forward(&p.from, &p.request).is_err())
            })
            .collect();
        let before = self.forward_requests.len();
        let mut at = stale.iter();
        self.forward_requests
            .retain(|_| !at.next().copied().unwrap_or(false));
        before - self.forward_requests.len()
    }

    /// Reads the share's whole audit log, verifies that it extends the restored pin and that
    /// its head is signed by the pinned relay key (as `Patient::access_log` does).
    async fn relay_history(&self, share_id: &ShareId, st: &mut ShareState) -> Result<RelayHistory> {
        let key = self
            .relay_audit_key
            .ok_or(ClientError::InvalidInput("no share created yet"))?;
        let (entries, head) =
            super::access::read_verified_log(&self.relay, &key, share_id, st, 1).await?;
        RelayHistory::read(&entries, head)
    }
}
