//! The patient's services: share for a check-up, pair, confirm, read notes, see who opened
//! what, revoke by rotating keys (docs/protocol.md "Pairing", "Revocation and expiry",
//! "Audit chains").

mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use carekey_core::audit::{self, ChainKind, Head};
use carekey_core::capability::FetchReceipt;
use carekey_core::epoch::{Epoch, EpochUpdate};
use carekey_core::forward::{
    Access, DelegationNotice, ForwardAnswer, ForwardRequest, Introduction,
};
use carekey_core::grant::{Category, DelegationRoot, Grant, Policy, Scope};
use carekey_core::keys::{Card, DeviceIdentity, GroupSecret, PublicKey, ReadToken};
use carekey_core::manifest::{Manifest, ManifestEntry};
use carekey_core::message::{self, MessageKind, ReplayGuard};
use carekey_core::pairing::{CheckCode, PatientPairing, PatientPending, Relationship};
use carekey_core::section::{self as scoped, GrantKeys, ScopeElement, ScopeKeys};
use carekey_core::wire::Wire;
use carekey_relay_api as api;
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};
pub use crate::ids::DelegationId;
pub use crate::ids::ForwardRequestId;
use crate::ids::{PairingId, RelationshipId, ShareId};
use crate::note::{self, Note};
use crate::now;
use crate::progress::{Cancel, Progress, ProgressSink, Stage};
use crate::relay::{MailboxAddress, MailboxWaiter, OwnMailbox, OwnerCap, Relay, b64, unb64};

/// Most audit-log pages one read follows (the relay's page is 1,000 entries).
const MAX_AUDIT_PAGES: usize = 10_000;

/// One record the patient shares.
#[derive(Debug, Clone)]
pub struct ShareItem {
    /// Stable record id (scope matching).
    pub record_id: [u8; 16],
    /// Category.
    pub category: Category,
    /// Title shown in the doctor's list.
    pub title: String,
    /// The plaintext (FHIR JSON, or attachment bytes).
    pub data: Zeroizing<Vec<u8>>,
    /// Sealed as a chunked attachment (PDFs, images) rather than one envelope.
    pub attachment: bool,
}

/// What the patient chose on the share screen.
#[derive(Debug, Clone)]
pub struct ShareOptions {
    /// Unix seconds until which access lasts.
    pub expires_at: u64,
    /// Forwarding policy.
    pub policy: Policy,
    /// Delegation depth when the policy is `Allowed`.
    pub delegation_depth: u8,
}

#[derive(Debug)]
struct GrantRecord {
    relationship: RelationshipId,
    reader_key: PublicKey,
    token: ReadToken,
    scope: Scope,
    depth: u8,
    expires_at: u64,
    revoked: bool,
}

/// A delegation the patient learnt of from a relay notice (verified against its own grants).
#[derive(Debug, Clone)]
struct DelegationRecord {
    /// Who delegated (card of the parent).
    parent: Card,
    /// The colleague (from its signed invite).
    colleague: Card,
    /// The colleague's reader key (names it in the access log).
    child_key: PublicKey,
    /// The relationship whose root grant the chain hangs from.
    root_relationship: RelationshipId,
    /// Depth in the tree (1 = delegated by the root grantee).
    level: usize,
    expires_at: u64,
    /// The colleague's token at the relay (`None` in states saved before version 4).
    token_hash: Option<[u8; 32]>,
    /// The delegating parent's reader key (`None` in states saved before version 4).
    parent_key: Option<PublicKey>,
    /// Revoked (alone, with an ancestor, or with its root grant).
    revoked: bool,
}

impl DelegationRecord {
    fn id(&self) -> Option<DelegationId> {
        self.token_hash.as_ref().map(DelegationId::of_token)
    }
}

/// What a share made with scoped keys (docs/protocol.md "Scoped keys") keeps beyond a
/// version-1 share.
#[derive(Debug)]
struct ScopedShare {
    /// Derives the relay group tags of the share's elements (never leaves the device).
    groups: GroupSecret,
    /// Records some grant lists: each has its own manifest section and relay group.
    records: BTreeSet<[u8; 16]>,
    /// The live manifest (entries with their content keys), to re-seal it with a new record
    /// section when a grant lists a record no earlier grant did.
    manifest: Option<Manifest>,
    /// Whether `manifest` was saved to the vault since it last changed.
    manifest_saved: bool,
}

#[derive(Debug)]
struct ShareState {
    owner: OwnerCap,
    epoch: Epoch,
    manifest_version: u64,
    options: ShareOptions,
    items: Vec<ShareItem>,
    /// Whether `items` were saved to the vault (they never change after the share is made).
    items_saved: bool,
    grants: Vec<GrantRecord>,
    delegations: Vec<DelegationRecord>,
    notice_cursor: u64,
    audit_pin: Head,
    /// Verified events of the relay log up to `log_seq` (this session; after a restart the
    /// first read starts again from entry 1), so later reads fetch only what was appended.
    log: Vec<LoggedEvent>,
    log_seq: u64,
    /// Scoped keys and relay groups; `None` for a share made before them (it keeps the
    /// version-1 behaviour: grantees hold the epoch key, tokens read the whole share).
    scoped: Option<ScopedShare>,
}

impl ShareState {
    /// The keys a grant of `scope` carries in the current epoch.
    fn grant_keys(&self, share_id: &ShareId, scope: &Scope) -> GrantKeys {
        match &self.scoped {
            Some(sc) => GrantKeys::Scoped(ScopeKeys::derive(
                share_id.as_bytes(),
                self.epoch.number,
                &self.epoch.key,
                &sc.groups,
                scope,
            )),
            None => GrantKeys::Epoch(self.epoch.key.clone()),
        }
    }

    /// The relay groups a token of `scope` is registered with (`None`: version-1 share).
    fn token_groups(&self, share_id: &ShareId, scope: &Scope) -> Option<Vec<String>> {
        self.scoped.as_ref().map(|sc| {
            sc.groups
                .tags(share_id.as_bytes(), scope)
                .iter()
                .map(|t| b64(t))
                .collect()
        })
    }
}

/// Registers at the relay, for the blobs of `m`, the groups of `elements` (docs/protocol.md
/// "Scoped keys"): which blobs a token of each element may fetch. In requests of at most
/// [`api::MAX_GROUP_ROWS`] pairs.
async fn register_blob_groups(
    relay: &Relay,
    share_id: &ShareId,
    st: &mut ShareState,
    m: &Manifest,
    elements: &[ScopeElement],
) -> Result<()> {
    let Some(sc) = &st.scoped else {
        return Ok(());
    };
    let mut groups: Vec<api::BlobGroup> = Vec::new();
    let mut rows = 0;
    let mut batches = Vec::new();
    for el in elements {
        let blobs: Vec<String> = m
            .entries
            .iter()
            .filter(|e| el.covers(e))
            .map(|e| crate::relay::hex_id(&e.blob_id))
            .collect();
        let tag = b64(&sc.groups.tag(share_id.as_bytes(), el));
        for chunk in blobs.chunks(api::MAX_GROUP_ROWS) {
            if rows + chunk.len() > api::MAX_GROUP_ROWS {
                batches.push(std::mem::take(&mut groups));
                rows = 0;
            }
            rows += chunk.len();
            groups.push(api::BlobGroup {
                group: tag.clone(),
                blobs: chunk.to_vec(),
            });
        }
    }
    if !groups.is_empty() {
        batches.push(groups);
    }
    for groups in batches {
        relay
            .register_groups(
                &mut st.owner,
                share_id,
                &api::BlobGroupRegistration { groups },
            )
            .await?;
    }
    Ok(())
}

/// Every element a scoped share's blobs are grouped by: the categories and the listed records.
fn share_elements(sc: &ScopedShare) -> Vec<ScopeElement> {
    Category::ALL
        .iter()
        .map(|c| ScopeElement::Category(*c))
        .chain(sc.records.iter().map(|r| ScopeElement::Record(*r)))
        .collect()
}

/// Signs, seals (sectioned for a scoped share, one envelope for a version-1 share) and
/// compare-and-swaps `m` in as the share's manifest.
async fn swap_manifest(
    relay: &Relay,
    identity: &DeviceIdentity,
    share_id: &ShareId,
    st: &mut ShareState,
    m: &Manifest,
) -> Result<()> {
    let sealed = match &st.scoped {
        Some(sc) => {
            let records: Vec<[u8; 16]> = sc.records.iter().copied().collect();
            scoped::seal_sections(m, identity.signing(), &st.epoch.key, &records, &mut OsRng)
        }
        None => m.seal(identity.signing(), &st.epoch.key, &mut OsRng),
    };
    relay
        .put_manifest(
            &mut st.owner,
            share_id,
            m.version,
            st.manifest_version,
            sealed,
        )
        .await?;
    st.manifest_version = m.version;
    if let Some(sc) = &mut st.scoped {
        sc.manifest = Some(m.clone());
        sc.manifest_saved = false;
    }
    Ok(())
}

/// Before a grant of `scope`: every record `scope` lists gets its own manifest section and
/// relay group (a record no earlier grant listed: its blobs are put in the group and the live
/// manifest is re-sealed under the next version, same epoch and blobs).
async fn ensure_record_sections(
    relay: &Relay,
    identity: &DeviceIdentity,
    share_id: &ShareId,
    st: &mut ShareState,
    scope: &Scope,
) -> Result<()> {
    let Some(sc) = &mut st.scoped else {
        return Ok(());
    };
    let new: Vec<[u8; 16]> = scope
        .records()
        .iter()
        .filter(|r| !sc.records.contains(*r))
        .copied()
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let mut m = sc.manifest.clone().ok_or(ClientError::InvalidInput(
        "the share's manifest is not on this device",
    ))?;
    if m.epoch != st.epoch.number {
        // A revoke stopped after its epoch updates went out but before the manifest swap:
        // revoking again finishes it (docs/protocol.md "Revocation and expiry").
        return Err(ClientError::InvalidInput(
            "an interrupted revoke must be finished first",
        ));
    }
    let elements: Vec<ScopeElement> = new.iter().map(|r| ScopeElement::Record(*r)).collect();
    register_blob_groups(relay, share_id, st, &m, &elements).await?;
    if let Some(sc) = &mut st.scoped {
        sc.records.extend(new);
    }
    m.version = st.manifest_version + 1;
    m.issued_at = now();
    if let Err(e) = swap_manifest(relay, identity, share_id, st, &m).await {
        // Not published: the sections stay as they were (the groups registered are harmless
        // and are registered again next time).
        if let Some(sc) = &mut st.scoped {
            sc.records
                .retain(|r| !elements.contains(&ScopeElement::Record(*r)));
        }
        return Err(e);
    }
    Ok(())
}

/// One verified relay log entry, names resolved when the log is shown (a delegation notice
/// read later names a reader that was unknown before).
#[derive(Debug, Clone)]
struct LoggedEvent {
    time: u64,
    kind: u8,
    /// The reader key that signed a fetch receipt.
    reader: Option<PublicKey>,
    objects: Vec<String>,
}

#[derive(Debug)]
struct PatientRelationship {
    rel: Relationship,
    peer: MailboxAddress,
    inbox: OwnMailbox,
    send_seq: u64,
    guard: ReplayGuard,
    paired_at: u64,
}

/// A pairing in progress: show [`PairingSession::qr_text`] as a QR code.
#[derive(Debug)]
pub struct PairingSession {
    share_id: ShareId,
    pairing: PatientPairing,
    mailbox: PairingId,
    token: [u8; 32],
    pending: Option<PatientPending>,
}

impl PairingSession {
    /// The text to render as the QR code.
    pub fn qr_text(&self) -> String {
        self.pairing.qr().to_text()
    }

    /// The share this pairing grants.
    pub fn share_id(&self) -> ShareId {
        self.share_id
    }

    /// Waits (long-polling, no busy loop) up to `wait_secs` for a valid doctor's reply,
    /// through `relay` ([`Patient::relay`]): it needs no `Patient`, so an app holding the
    /// patient behind a lock does not hold it for the wait (docs/architecture.md "Long
    /// waits"). An invalid reply (wrong secret, borrowed card, garbage) is dropped and the
    /// wait goes on; if only invalid replies came, the last error is returned at the deadline.
    /// An expired QR is [`ClientError::Expired`] at once. The first valid reply closes the
    /// pairing here and at the relay (docs/protocol.md "Pairing").
    pub async fn wait_for_doctor(
        &mut self,
        relay: &Relay,
        wait_secs: u64,
        cancel: &Cancel,
    ) -> Result<DoctorAtTheDoor> {
        if self.pending.is_some() {
            return Err(ClientError::AlreadyUsed);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
        let mut last_error = None;
        let pending = loop {
            cancel.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(last_error.unwrap_or(ClientError::NoAnswer));
            }
            let wait = left.as_secs().clamp(1, crate::relay::LONG_POLL_SECS);
            let Some(reply) = relay.read_pairing(&self.mailbox, &self.token, wait).await? else {
                continue;
            };
            match self.pairing.accept_reply(&reply, now()) {
                Ok(p) => break p,
                Err(
                    e @ (carekey_core::Error::Expired { .. } | carekey_core::Error::PairingClosed),
                ) => {
                    return Err(e.into());
                }
                Err(e) => last_error = Some(e.into()),
            }
        };
        relay.close_pairing(&self.mailbox, &self.token).await?;
        let out = DoctorAtTheDoor {
            card: pending.doctor_card.clone(),
            check_code: pending.check_code(),
            attested: pending.doctor_card.attestation.is_some(),
        };
        self.pending = Some(pending);
        Ok(out)
    }
}

/// Who answered the QR: what the patient's screen shows before confirming.
#[derive(Debug, Clone)]
pub struct DoctorAtTheDoor {
    /// The doctor's self-signed card.
    pub card: Card,
    /// The check code to compare with the doctor's screen.
    pub check_code: CheckCode,
    /// Whether a clinic attested the card (else the UI says "the device you paired with").
    pub attested: bool,
}

/// One readable line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// Relay time, unix seconds.
    pub time: u64,
    /// Who (card name of the grantee whose reader key signed), or "unknown reader".
    pub who: String,
    /// What happened.
    pub what: AccessKind,
}

/// Kinds of access events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessKind {
    /// Fetched the manifest, one blob, or a batch of blobs under one receipt.
    Fetched {
        /// `manifest` or blob ids (hex), as the reader's signed receipt names them.
        objects: Vec<String>,
    },
    /// Other relay events (token registered/revoked, manifest swapped, epoch deleted...).
    Relay(u8),
}

/// The patient's services over one relay.
#[derive(Debug)]
pub struct Patient {
    identity: DeviceIdentity,
    card: Card,
    relay: Relay,
    relay_audit_key: Option<PublicKey>,
    shares: HashMap<ShareId, ShareState>,
    /// Keyed by the core relationship's own id (docs/protocol.md "Pairing"), so a handle
    /// names the same doctor after any other relationship comes or goes, and after a restart.
    relationships: BTreeMap<RelationshipId, PatientRelationship>,
    forward_requests: Vec<PendingForward>,
    alerts: Vec<ClientError>,
}

#[derive(Debug)]
struct PendingForward {
    /// Stable handle (saved with the state).
    id: ForwardRequestId,
    from: RelationshipId,
    request: ForwardRequest,
}

/// A doctor's request to forward a share to a colleague (policy `ask`), as the patient's
/// screen shows it.
#[derive(Debug, Clone)]
pub struct ForwardRequestView {
    /// Handle for [`Patient::answer_forward`] (stable across restarts).
    pub id: ForwardRequestId,
    /// Relationship of the asking doctor.
    pub from: RelationshipId,
    /// The asking doctor's card name.
    pub from_name: String,
    /// The colleague's card (signature checked; name as the colleague states it).
    pub colleague: Card,
    /// Whether a clinic attested the colleague's card.
    pub colleague_attested: bool,
    /// The share.
    pub share_id: ShareId,
    /// What the colleague would see.
    pub scope: Scope,
    /// The doctor's reason.
    pub reason: String,
}

/// What [`Patient::open_inbox`] found in a batch of inbox messages.
#[derive(Debug)]
pub struct Received {
    /// Verified notes, in mailbox order: store them, then [`Patient::ack_inbox`].
    pub notes: Vec<Note>,
    /// Forward requests queued for the patient's decision ([`Patient::forward_requests`]).
    pub forward_requests: Vec<ForwardRequestId>,
    /// The first message dropped (forged, replayed, re-addressed, a forward request the
    /// doctor may not make): the UI shows it as a security alert.
    pub rejected: Option<ClientError>,
}

/// A delegation in a share's tree, as the patient sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationView {
    /// Its handle for [`Patient::revoke_delegation`] (`None` for a delegation saved before
    /// it could be revoked alone).
    pub id: Option<DelegationId>,
    /// Whether it was revoked (alone, with an ancestor, or with its root grant).
    pub revoked: bool,
    /// Who delegated.
    pub by: String,
    /// To whom.
    pub colleague: String,
    /// Relationship of the root grantee the chain hangs from (revoking it revokes this).
    pub root_relationship: RelationshipId,
    /// 1 = delegated by the doctor the patient paired with, 2 = one further down.
    pub level: usize,
    /// Until when.
    pub expires_at: u64,
}

/// One of the patient's relationships, as [`Patient::relationship`] and
/// [`Patient::relationships`] show it.
#[derive(Debug, Clone)]
pub struct RelationshipView {
    /// Its stable id (the handle of [`Patient::inbox_waiter`], [`Patient::revoke`], ...).
    pub id: RelationshipId,
    /// The doctor's (or colleague's) card.
    pub card: Card,
    /// When they paired (or the colleague was granted), Unix seconds on this device.
    pub paired_at: u64,
}

/// An active grant of a share ([`Patient::active_grants`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantView {
    /// The relationship holding it.
    pub relationship: RelationshipId,
    /// Until when, Unix seconds.
    pub expires_at: u64,
}

/// Fetch events of one reader in words: "Dr. X fetched 12 objects" ([`summarize`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSummary {
    /// The reader's card name (or "unknown reader").
    pub who: String,
    /// How many objects (manifest reads and blobs) it fetched.
    pub fetched: usize,
}

impl Patient {
    /// The patient's identity and card, talking to `relay`.
    pub fn new(identity: DeviceIdentity, card: Card, relay: Relay) -> Self {
        Self {
            identity,
            card,
            relay,
            relay_audit_key: None,
            shares: HashMap::new(),
            relationships: BTreeMap::new(),
            forward_requests: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// The patient's card.
    pub fn card(&self) -> &Card {
        &self.card
    }

    /// A clone of the relay client (cheap: it shares the connection pool), for the waits that
    /// run without the patient ([`PairingSession::wait_for_doctor`]).
    pub fn relay(&self) -> Relay {
        self.relay.clone()
    }

    /// Seals and uploads a new share (epoch 1, manifest version 1).
    pub async fn create_share(
        &mut self,
        items: Vec<ShareItem>,
        options: ShareOptions,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<ShareId> {
        if options.policy != Policy::Allowed && options.delegation_depth != 0 {
            return Err(ClientError::InvalidInput(
                "delegation depth needs policy allowed",
            ));
        }
        if self.relay_audit_key.is_none() {
            // Pin the relay's audit key on first use (trust on first use, like a card).
            self.relay_audit_key = Some(self.relay.well_known().await?);
        }
        let mut owner = OwnerCap::generate();
        let share_id = self
            .relay
            .create_share(&mut owner, options.expires_at)
            .await?;
        let mut st = ShareState {
            owner,
            epoch: Epoch::first(&mut OsRng),
            manifest_version: 0,
            options,
            items,
            items_saved: false,
            grants: Vec::new(),
            delegations: Vec::new(),
            notice_cursor: 0,
            audit_pin: Head::EMPTY,
            log: Vec::new(),
            log_seq: 0,
            scoped: Some(ScopedShare {
                groups: GroupSecret::random(&mut OsRng),
                records: BTreeSet::new(),
                manifest: None,
                manifest_saved: false,
            }),
        };
        let m = self
            .upload_epoch(&share_id, &mut st, progress, cancel)
            .await?;
        if let Some(sc) = &st.scoped {
            let elements = share_elements(sc);
            register_blob_groups(&self.relay, &share_id, &mut st, &m, &elements).await?;
        }
        self.swap_manifest(&share_id, &mut st, &m).await?;
        self.shares.insert(share_id, st);
        Ok(share_id)
    }

    /// Seals every item under fresh content keys and blob ids of the current epoch and uploads
    /// the blobs; returns the next manifest (not yet swapped in).
    async fn upload_epoch(
        &self,
        share_id: &ShareId,
        st: &mut ShareState,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<Manifest> {
        let epoch = st.epoch.number;
        let mut entries = Vec::with_capacity(st.items.len());
        let mut blobs = Vec::with_capacity(st.items.len());
        let n = st.items.len() as u64;
        for (i, it) in st.items.iter().enumerate() {
            cancel.check()?;
            let (e, blob) = if it.attachment {
                ManifestEntry::seal_attachment(
                    it.record_id,
                    it.category,
                    &it.title,
                    epoch,
                    &it.data,
                    &mut OsRng,
                )?
            } else {
                ManifestEntry::seal_record(
                    it.record_id,
                    it.category,
                    &it.title,
                    epoch,
                    &it.data,
                    &mut OsRng,
                )
            };
            entries.push(e);
            blobs.push(blob);
            progress.report(Progress {
                stage: Stage::Sealing,
                done: i as u64 + 1,
                total: n,
            });
        }
        let total: u64 = blobs.iter().map(|b| b.len() as u64).sum();
        let mut done = 0;
        for (e, blob) in entries.iter().zip(&blobs) {
            cancel.check()?;
            self.relay
                .put_blob(
                    &mut st.owner,
                    share_id,
                    &crate::ids::BlobId(e.blob_id),
                    epoch,
                    blob,
                    progress,
                    cancel,
                    (done, total),
                )
                .await?;
            done += blob.len() as u64;
        }
        Ok(Manifest {
            share_id: share_id.to_bytes(),
            version: st.manifest_version + 1,
            epoch,
            issued_at: now(),
            entries,
        })
    }

    /// Signs, seals and compare-and-swaps `m` in as the share's manifest.
    async fn swap_manifest(
        &self,
        share_id: &ShareId,
        st: &mut ShareState,
        m: &Manifest,
    ) -> Result<()> {
        swap_manifest(&self.relay, &self.identity, share_id, st, m).await
    }

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

    /// [`Patient::confirm`] with a scope narrower than the share: the doctor receives only
    /// the keys of `scope`'s elements, and its token fetches only their blobs
    /// (docs/protocol.md "Scoped keys").
    pub async fn confirm_with_scope(
        &mut self,
        mut session: PairingSession,
        scope: Scope,
    ) -> Result<RelationshipId> {
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

    /// Relationship `id`: the doctor's card and when they paired.
    pub fn relationship(&self, id: &RelationshipId) -> Option<RelationshipView> {
        self.relationships.get(id).map(|r| view_of(*id, r))
    }

    /// Every relationship, oldest pairing first (ties by id).
    pub fn relationships(&self) -> Vec<RelationshipView> {
        let mut v: Vec<RelationshipView> = self
            .relationships
            .iter()
            .map(|(id, r)| view_of(*id, r))
            .collect();
        v.sort_by_key(|r| (r.paired_at, r.id));
        v
    }

    fn rel(&self, id: &RelationshipId) -> Result<&PatientRelationship> {
        self.relationships
            .get(id)
            .ok_or(ClientError::InvalidInput("unknown relationship"))
    }

    /// Reads the notes the doctor of relationship `id` sent (signature verified, replays
    /// and re-addressed messages rejected); processed messages are deleted at the relay.
    /// [`Patient::inbox_waiter`] + [`MailboxWaiter::wait`] + [`Patient::open_inbox`] +
    /// [`Patient::ack_inbox`] in one call, holding `&mut self` for the whole wait; an app
    /// that keeps the patient behind a lock uses the four steps instead. A rejected message
    /// is the error when nothing good came, else it goes to [`Patient::take_alerts`].
    pub async fn inbox(&mut self, id: &RelationshipId, wait_secs: u64) -> Result<Vec<Note>> {
        let msgs = self.inbox_waiter(id)?.wait(wait_secs).await?;
        let got = self.open_inbox(id, msgs)?;
        self.ack_inbox(id).await?;
        match (
            got.notes.is_empty() && got.forward_requests.is_empty(),
            got.rejected,
        ) {
            (true, Some(e)) => Err(e),
            // Good messages came too: return them, and keep the rejection for the UI's alert.
            (false, Some(e)) => {
                self.alerts.push(e);
                Ok(got.notes)
            }
            (_, None) => Ok(got.notes),
        }
    }

    /// A waiter on relationship `id`'s inbox: the relay client, the mailbox and its cursor,
    /// so the long-poll needs no `Patient` (docs/architecture.md "Long waits").
    pub fn inbox_waiter(&self, id: &RelationshipId) -> Result<MailboxWaiter> {
        let r = self.rel(id)?;
        Ok(MailboxWaiter::new(self.relay.clone(), r.inbox.clone()))
    }

    /// Opens and verifies messages a [`MailboxWaiter`] of relationship `id` returned
    /// (docs/protocol.md "Relationship messages"): notes (the doctor's record signature
    /// checked) and forward requests (queued for [`Patient::answer_forward`] when the doctor
    /// may ask). Advances the cursor and the replay guard but deletes nothing at the relay:
    /// the app stores the notes (e.g. [`Note::to_bytes`] sealed in its vault), saves the
    /// patient, then calls [`Patient::ack_inbox`], so a crash in between loses nothing (the
    /// messages are read again after a restart). A forged, replayed or re-addressed message
    /// is dropped, never stored; the first such error is [`Received::rejected`]. A message
    /// opened already (a relay serving it again, or a second waiter's copy of the same batch)
    /// is a replay: run one waiter per relationship at a time.
    pub fn open_inbox(
        &mut self,
        id: &RelationshipId,
        msgs: Vec<(u64, Vec<u8>)>,
    ) -> Result<Received> {
        let r = self
            .relationships
            .get_mut(id)
            .ok_or(ClientError::InvalidInput("unknown relationship"))?;
        let mut notes = Vec::new();
        let mut requests = Vec::new();
        let mut first_error = None;
        for (seq, sealed) in msgs {
            // Never backwards, whatever order the relay delivers in (see Doctor::sync).
            r.inbox.cursor = r.inbox.cursor.max(seq);
            match message::open(
                &self.identity,
                &self.card,
                &r.rel.peer_card,
                &r.rel.id,
                &mut r.guard,
                &sealed,
            ) {
                Ok(m) if m.kind == MessageKind::Note => {
                    match note::decode(&m.body, &r.rel.peer_card) {
                        Ok(n) => notes.push(n),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                Ok(m) if m.kind == MessageKind::ForwardRequest => {
                    match ForwardRequest::from_bytes(&m.body) {
                        Ok(req) => requests.push(req),
                        Err(e) => {
                            first_error.get_or_insert(e.into());
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e.into());
                }
            }
        }
        let mut forward_requests = Vec::new();
        for request in requests {
            match self.check_forward(id, &request) {
                Ok(()) => {
                    let handle = ForwardRequestId::random();
                    self.forward_requests.push(PendingForward {
                        id: handle,
                        from: *id,
                        request,
                    });
                    forward_requests.push(handle);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Ok(Received {
            notes,
            forward_requests,
            rejected: first_error,
        })
    }

    /// Deletes relationship `id`'s messages through the cursor at the relay: call once
    /// what [`Patient::open_inbox`] returned is stored.
    pub async fn ack_inbox(&mut self, id: &RelationshipId) -> Result<()> {
        let r = self.rel(id)?;
        if r.inbox.cursor > 0 {
            self.relay.delete_through(&r.inbox, r.inbox.cursor).await?;
        }
        Ok(())
    }

    /// Rejections that arrived alongside good messages (a forged, replayed or re-addressed
    /// message in the same batch as a genuine note): the UI shows them as security alerts.
    /// Taking them clears the list.
    pub fn take_alerts(&mut self) -> Vec<ClientError> {
        std::mem::take(&mut self.alerts)
    }

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

    async fn revoke_inner(
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

    async fn revoke_delegation_inner(
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
    async fn rekey(
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
            self.send(&ri, MessageKind::EpochUpdate, &update).await?;
        }
        // (4) Compare-and-swap the manifest.
        self.swap_manifest(share_id, st, &m).await?;
        progress.report(Progress {
            stage: Stage::Rekeying,
            done: 1,
            total: 1,
        });
        // (5) Delete the old epoch's blobs.
        self.relay
            .delete_epoch(&mut st.owner, share_id, old_epoch)
            .await?;
        Ok(())
    }

    /// Sign-then-seal to the doctor of relationship `id` (docs/protocol.md "Relationship
    /// messages").
    async fn send(&mut self, id: &RelationshipId, kind: MessageKind, body: &[u8]) -> Result<()> {
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

    /// Downloads what the share's relay-signed audit log appended since the last read (all of
    /// it on the first read), verifies that it extends the pinned head and that its head is
    /// signed by the pinned relay key, pins the new head, and returns every readable event so
    /// far. A truncated, forked or re-signed log is an error and changes nothing.
    pub async fn access_log(&mut self, share_id: &ShareId) -> Result<Vec<AccessEvent>> {
        let key = self
            .relay_audit_key
            .ok_or(ClientError::InvalidInput("no share created yet"))?;
        let st = self
            .shares
            .get_mut(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        // Incremental when this session already verified the log up to the pin: read from
        // the pinned entry itself, so the overlap proves the relay still has it (a fork or a
        // truncation below the pin fails `verify_extends`).
        let incremental = st.log_seq > 0 && st.log_seq == st.audit_pin.seq;
        let mut from = if incremental { st.log_seq } else { 1 };
        // The relay answers a page at a time: read on until the entries reach the signed head
        // of the last answer (the log may grow while it is read).
        let mut raw = Vec::new();
        let mut pages = 0;
        let log = loop {
            pages += 1;
            if pages > MAX_AUDIT_PAGES {
                return Err(ClientError::BadResponse {
                    what: "audit log (too many pages)",
                });
            }
            let page = self.relay.audit_log(&mut st.owner, share_id, from).await?;
            let last = page.entries.last().map(|e| e.seq);
            raw.extend(page.entries.iter().cloned());
            match last {
                // Each page must move forward, or a relay could keep the client reading; one
                // that does not (an older log served again) stops the reading and fails the
                // chain checks below, as any rolled-back log does.
                Some(l) if l >= from && l < page.head.seq => from = l + 1,
                _ => break page,
            }
        };
        let entries = raw
            .iter()
            .map(|e| {
                Ok(audit::Entry {
                    seq: e.seq,
                    prev_hash: unb64(&e.prev_hash, "audit prev hash")?,
                    time: e.time,
                    kind: e.kind,
                    body: data_encoding::BASE64URL_NOPAD
                        .decode(e.body.as_bytes())
                        .map_err(|_| ClientError::BadResponse { what: "audit body" })?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head = audit::verify_extends(
            ChainKind::Relay,
            share_id.as_bytes(),
            st.audit_pin,
            &entries,
        )?;
        let signed = Head {
            seq: log.head.seq,
            hash: unb64(&log.head.entry_hash, "audit head")?,
        };
        if signed != head {
            return Err(ClientError::Tampered(carekey_core::Error::AuditChain {
                seq: log.head.seq,
                reason: "signed head does not match the entries",
            }));
        }
        signed.verify(
            ChainKind::Relay,
            share_id.as_bytes(),
            &key,
            &unb64(&log.head.signature, "audit head signature")?,
        )?;
        // Everything verified: only now is anything kept.
        let known = if incremental { st.log_seq } else { 0 };
        let mut fresh = Vec::new();
        for e in entries.iter().filter(|e| e.seq > known) {
            if e.kind == 1 {
                let r = FetchReceipt::from_bytes(&e.body)?;
                // The relay cannot invent fetches: every one carries the reader's signature.
                r.verify()?;
                fresh.push(LoggedEvent {
                    time: e.time,
                    kind: e.kind,
                    reader: Some(r.reader_key),
                    objects: fetched_objects(&r.object_id),
                });
            } else {
                fresh.push(LoggedEvent {
                    time: e.time,
                    kind: e.kind,
                    reader: None,
                    objects: Vec::new(),
                });
            }
        }
        if !incremental {
            st.log.clear();
        }
        st.log.extend(fresh);
        st.log_seq = head.seq;
        st.audit_pin = head;
        let st = &*st;
        Ok(st
            .log
            .iter()
            .map(|e| match &e.reader {
                Some(reader) => AccessEvent {
                    time: e.time,
                    who: st
                        .grants
                        .iter()
                        .find(|g| g.reader_key == *reader)
                        .and_then(|g| self.relationships.get(&g.relationship))
                        .map(|x| x.rel.peer_card.body.name.clone())
                        .or_else(|| {
                            st.delegations
                                .iter()
                                .find(|d| d.child_key == *reader)
                                .map(|d| d.colleague.body.name.clone())
                        })
                        .unwrap_or_else(|| "unknown reader".to_owned()),
                    what: AccessKind::Fetched {
                        objects: e.objects.clone(),
                    },
                },
                None => AccessEvent {
                    time: e.time,
                    who: "relay".into(),
                    what: AccessKind::Relay(e.kind),
                },
            })
            .collect())
    }

    /// Grants of a share that are still active: who holds each, until when.
    pub fn active_grants(&self, share_id: &ShareId) -> Vec<GrantView> {
        self.shares.get(share_id).map_or_else(Vec::new, |s| {
            s.grants
                .iter()
                .filter(|g| !g.revoked)
                .map(|g| GrantView {
                    relationship: g.relationship,
                    expires_at: g.expires_at,
                })
                .collect()
        })
    }
}

// Forwarding to a colleague (docs/protocol.md "Forwarding").
impl Patient {
    /// A forward request is only queued for the patient if the asking doctor holds an active
    /// grant on that share, the share's policy is not `never`, the scope stays within the
    /// doctor's, and the colleague's invite is signed by the colleague's card.
    fn check_forward(&self, from: &RelationshipId, req: &ForwardRequest) -> Result<()> {
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
    async fn grant_colleague(&mut self, req: &ForwardRequest) -> Result<RelationshipId> {
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
    pub async fn delegations(&mut self, share_id: &ShareId) -> Result<Vec<DelegationView>> {
        let st = self
            .shares
            .get_mut(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        let notices = self
            .relay
            .notices(&mut st.owner, share_id, st.notice_cursor)
            .await?;
        let mut first_error = None;
        for (seq, sealed) in notices {
            st.notice_cursor = st.notice_cursor.max(seq);
            match verify_notice(
                &self.identity,
                &self.card,
                share_id,
                st,
                &self.relationships,
                &sealed,
            ) {
                Ok(d) => st.delegations.push(d),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
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
}

fn verify_notice(
    me: &DeviceIdentity,
    my_card: &Card,
    share_id: &ShareId,
    st: &ShareState,
    relationships: &BTreeMap<RelationshipId, PatientRelationship>,
    sealed: &[u8],
) -> Result<DelegationRecord> {
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
    n.verify(share_id.as_bytes(), &root, now())?;
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
    Ok(DelegationRecord {
        parent: sender,
        colleague: n.invite.card.clone(),
        child_key: n.invite.reader_key,
        root_relationship: g.relationship,
        level: n.chain.len(),
        expires_at: n.chain[last].expires_at,
        token_hash: Some(n.chain[last].child_token_hash),
        parent_key: Some(parent_key),
        revoked: false,
    })
}

/// The objects a receipt names: a batch receipt (relay-formats.md "Batch fetch") lists its
/// blob ids after `blobs:`, 32 hex characters each; anything else names one object.
fn fetched_objects(object_id: &str) -> Vec<String> {
    match object_id.strip_prefix(carekey_relay_api::BATCH_OBJECT_PREFIX) {
        Some(list) if !list.is_empty() && list.len() % 32 == 0 && list.is_ascii() => list
            .as_bytes()
            .chunks(32)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect(),
        _ => vec![object_id.to_owned()],
    }
}

/// Summarises fetch events per reader: "Dr. X fetched 12 objects", in order of first fetch.
pub fn summarize(events: &[AccessEvent]) -> Vec<ReaderSummary> {
    let mut out: Vec<ReaderSummary> = Vec::new();
    for e in events {
        if let AccessKind::Fetched { objects } = &e.what {
            match out.iter_mut().find(|s| s.who == e.who) {
                Some(s) => s.fetched += objects.len(),
                None => out.push(ReaderSummary {
                    who: e.who.clone(),
                    fetched: objects.len(),
                }),
            }
        }
    }
    out
}

fn view_of(id: RelationshipId, r: &PatientRelationship) -> RelationshipView {
    RelationshipView {
        id,
        card: r.rel.peer_card.clone(),
        paired_at: r.paired_at,
    }
}
