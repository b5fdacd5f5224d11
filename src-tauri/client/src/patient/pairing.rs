//! Pairing at the check-up: the QR, the doctor at the door, confirm or decline (docs/protocol.md "Pairing").

use carekey_core::grant::{Grant, Policy, Scope};
use carekey_core::keys::ReadToken;
use carekey_core::message::ReplayGuard;
use carekey_core::pairing::PatientPairing;
use carekey_core::wire::Wire;
use carekey_relay_api as api;
use rand_core::OsRng;

use crate::error::{ClientError, Result};
use crate::ids::{RelationshipId, ShareId};
use crate::now;
use crate::progress::Cancel;
use crate::relay::{MailboxAddress, b64};

use super::{
    DoctorAtTheDoor, GrantRecord, PairingSession, Patient, PatientRelationship,
    ensure_record_sections,
};

impl Patient {
    /// Opens a pairing mailbox for `share_id` and makes the QR.
    pub async fn start_pairing(&mut self, share_id: &ShareId) -> Result<PairingSession> {
        if !self.shares.contains_key(share_id) {
            return Err(ClientError::InvalidInput("unknown share"));
        }
        let opened = self.relay.open_pairing().await?;
        let expires = u32::try_from(opened.expires_at).map_err(|_| ClientError::BadResponse {
            what: "pairing expiry",
        })?;
        let pairing = PatientPairing::start(self.relay.base(), opened.id.0, expires, &mut OsRng)?;
        Ok(PairingSession {
            share_id: *share_id,
            pairing,
            mailbox: opened.id,
            token: opened.token,
            pending: None,
        })
    }

    /// Waits up to `wait_secs` for a valid doctor's reply: [`PairingSession::wait_for_doctor`]
    /// with this patient's relay (kept for callers that do not hold the patient behind a lock).
    pub async fn wait_for_doctor(
        &self,
        session: &mut PairingSession,
        wait_secs: u64,
        cancel: &Cancel,
    ) -> Result<DoctorAtTheDoor> {
        session
            .wait_for_doctor(&self.relay, wait_secs, cancel)
            .await
    }

    /// After the patient saw matching codes: registers the doctor's read token, signs the
    /// grant and sends it with the patient's card over the pairing channel. Returns the new
    /// relationship's id (the core relationship's own, docs/protocol.md "Pairing"). The
    /// doctor gets the whole share; [`Patient::confirm_with_scope`] grants less.
    pub async fn confirm(&mut self, session: PairingSession) -> Result<RelationshipId> {
        self.confirm_with_scope(session, Scope::all()).await
    }

    /// How many of `share_id`'s FHIR records (attachments not counted) a grant of `scope`
    /// would cover, for the app's check before [`Patient::confirm_with_scope`] and its audit
    /// line. `None` for a share this device does not hold, or one made before scoped keys:
    /// its grantees hold the epoch key and read the whole share whatever the grant says, so a
    /// narrower scope would not be enforced there.
    pub fn records_in_scope(&self, share_id: &ShareId, scope: &Scope) -> Option<usize> {
        let st = self.shares.get(share_id)?;
        st.scoped.as_ref()?;
        Some(
            st.items
                .iter()
                .filter(|it| !it.attachment && scope.covers(it.category, &it.record_id))
                .count(),
        )
    }

    /// [`Patient::confirm`] with a scope narrower than the share: the doctor receives only
    /// the keys of `scope`'s elements, and its token fetches only their blobs
    /// (docs/protocol.md "Scoped keys").
    pub async fn confirm_with_scope(
        &mut self,
        mut session: PairingSession,
        scope: Scope,
    ) -> Result<RelationshipId> {
        // A restored state may hold a dead epoch key (patient::reconcile).
        self.check_reconciled()?;
        let pending = session
            .pending
            .take()
            .ok_or(ClientError::InvalidInput("no doctor has answered yet"))?;
        let doctor_address = MailboxAddress::from_bytes(&pending.doctor_address)?;
        let inbox = self.relay.open_mailbox().await?;
        let st = self
            .shares
            .get_mut(&session.share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        let token = ReadToken::random(&mut OsRng);
        let depth = if st.options.policy == Policy::Allowed {
            st.options.delegation_depth
        } else {
            0
        };
        ensure_record_sections(&self.relay, &self.identity, &session.share_id, st, &scope).await?;
        let groups = st.token_groups(&session.share_id, &scope);
        self.relay
            .register_token(
                &mut st.owner,
                &session.share_id,
                &api::RootTokenRegistration {
                    token_hash: b64(&token.relay_hash()),
                    reader_key: b64(pending.reader_key.as_bytes()),
                    scope: b64(&scope.to_bytes()),
                    expires_at: st.options.expires_at,
                    depth,
                    groups,
                },
            )
            .await?;
        let grant = Grant {
            share_id: session.share_id.to_bytes(),
            relay_url: self.relay.base().to_owned(),
            epoch: st.epoch.number,
            keys: st.grant_keys(&session.share_id, &scope),
            read_token: token.clone(),
            policy: st.options.policy,
            scope,
            expires_at: st.options.expires_at,
            grantee: pending.doctor_card.hash(),
            reader_key: pending.reader_key,
            delegation_depth: depth,
            issued_at: now(),
        }
        .sign(self.identity.signing());
        let reader_key = pending.reader_key;
        let (rel, confirmation) = pending.confirm(
            &self.identity,
            &self.card,
            &grant,
            &inbox.address.to_bytes(),
        )?;
        let id = RelationshipId(rel.id);
        if self.relationships.contains_key(&id) {
            // Derived from both sides' fresh ephemeral keys: a repeat means a broken pairing.
            return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                what: "pairing",
                reason: "relationship id already in use",
            }));
        }
        self.relay.append(&doctor_address, confirmation).await?;
        st.grants.push(GrantRecord {
            relationship: id,
            reader_key,
            token,
            scope: grant.grant.scope.clone(),
            depth,
            expires_at: grant.grant.expires_at,
            revoked: false,
        });
        self.relationships.insert(
            id,
            PatientRelationship {
                rel,
                peer: doctor_address,
                inbox,
                send_seq: 0,
                guard: ReplayGuard::default(),
                paired_at: now(),
            },
        );
        Ok(id)
    }

    /// The patient says no (the check codes differ, or the patient changed their mind)
    /// instead of [`Patient::confirm`]: nothing is shared. If a doctor answered, it gets a
    /// sealed "declined" on the pairing channel (docs/protocol.md "Pairing", decline), so its
    /// [`crate::doctor::ScanSession::wait_for_confirmation`] ends at once with
    /// [`ClientError::Declined`]; before any answer the pairing mailbox is closed, so the QR
    /// is dead.
    pub async fn decline(&mut self, mut session: PairingSession) -> Result<()> {
        let Some(pending) = session.pending.take() else {
            return match self
                .relay
                .close_pairing(&session.mailbox, &session.token)
                .await
            {
                // Gone already (expired and swept): nothing can answer it.
                Ok(()) | Err(ClientError::NotFound | ClientError::AccessEnded) => Ok(()),
                Err(e) => Err(e),
            };
        };
        let doctor_address = MailboxAddress::from_bytes(&pending.doctor_address)?;
        self.relay.append(&doctor_address, pending.decline()).await
    }
}
