//! The patient's services: share for a check-up, pair, confirm, read notes, see who opened
//! what, revoke by rotating keys (docs/protocol.md "Pairing", "Revocation and expiry",
//! "Audit chains").

mod access;
mod forward;
mod inbox;
mod link;
mod pairing;
mod reconcile;
mod revoke;
mod share;
mod state;

pub use access::{RECEIPT_SKEW_WARN_SECS, summarize};
pub use link::{
    DEFAULT_MAX_ATTEMPTS, LINK_WARNING, LINKS_RECORD, LinkOptions, LinkPasscode, LinkView,
    PublishedLink, link_warning,
};
pub use reconcile::Reconciled;
pub(crate) use state::RESTORED_MARK;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use carekey_core::audit::Head;
use carekey_core::epoch::Epoch;
use carekey_core::forward::ForwardRequest;
use carekey_core::grant::{Category, Policy, Scope};
use carekey_core::keys::{Card, DeviceIdentity, GroupSecret, PublicKey, ReadToken};
use carekey_core::manifest::Manifest;
use carekey_core::message::ReplayGuard;
use carekey_core::pairing::{CheckCode, PatientPairing, PatientPending, Relationship};
use carekey_core::section::{self as scoped, GrantKeys, ScopeElement, ScopeKeys};
use carekey_relay_api as api;
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};
pub use crate::ids::DelegationId;
pub use crate::ids::ForwardRequestId;
use crate::ids::{PairingId, RelationshipId, ShareId};
use crate::note::Note;
use crate::now;
use crate::progress::Cancel;
use crate::relay::{MailboxAddress, OwnMailbox, OwnerCap, Relay, b64};

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
    /// The entry's sequence number in the relay log.
    seq: u64,
    /// The reader-signed time for a fetch, the relay's time otherwise.
    time: u64,
    kind: u8,
    /// The reader key that signed a fetch receipt.
    reader: Option<PublicKey>,
    /// The receipt's nonce: a (reader, nonce) pair seen twice is a replayed receipt.
    nonce: Option<[u8; 16]>,
    objects: Vec<String>,
    /// What the checks of `access_log` found wrong with this entry.
    warnings: Vec<AccessWarning>,
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

/// A pairing in progress: show [`PairingSession::qr_text`] as a QR code. Its pairing
/// mailbox's read token is zeroized on drop and, with the QR's one-time secrets, left out of
/// `Debug` (docs/threat-model.md T17).
pub struct PairingSession {
    share_id: ShareId,
    pairing: PatientPairing,
    mailbox: PairingId,
    token: Zeroizing<[u8; 32]>,
    pending: Option<PatientPending>,
}

#[cfg(feature = "test-export")]
impl PairingSession {
    /// A copy of the pairing mailbox's read token. Exists only for the Debug-output proof
    /// (`tests/debug_output.rs`, feature `test-export`, never in an app build).
    pub fn mailbox_token_for_test(&self) -> [u8; 32] {
        *self.token
    }
}

impl std::fmt::Debug for PairingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingSession")
            .field("share_id", &self.share_id)
            .field("mailbox", &self.mailbox)
            .field("token", &"<redacted>")
            .field("answered", &self.pending.is_some())
            .finish_non_exhaustive()
    }
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
    /// Unix seconds: for a fetch the time the reader signed in its receipt (the relay cannot
    /// change it), for other events the relay's time.
    pub time: u64,
    /// Who: the card name of the grantee or verified delegate whose reader key signed, or
    /// [`UNACCOUNTED_READER`] (with [`AccessWarning::UnaccountedReader`]).
    pub who: String,
    /// What happened.
    pub what: AccessKind,
    /// What is wrong with this entry (empty for an entry that checks out): the UI shows
    /// each as a security warning on the line.
    pub warnings: Vec<AccessWarning>,
}

/// The name shown for a fetch signed by a reader key no grant and no verified delegation
/// names (the relay, or someone it registered, reading; never a legitimate reader).
pub const UNACCOUNTED_READER: &str = "unaccounted-for reader";

/// Why an access-log line cannot be taken at face value (issue 11; docs/protocol.md
/// "Audit chains" and docs/threat-model.md T15, T22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessWarning {
    /// The same receipt (reader key and nonce) is in the log earlier, at entry `first_seq`:
    /// the relay appended it again, it is not a second fetch (not counted by [`summarize`]).
    RepeatedReceipt {
        /// The entry that logged it first.
        first_seq: u64,
    },
    /// The reader's signed time is further than [`RECEIPT_SKEW_WARN_SECS`] from the
    /// time the relay logged it.
    ClockSkew {
        /// The relay's time for the entry.
        relay_time: u64,
    },
    /// No grant and no verified delegation names the reader key that signed the receipt.
    UnaccountedReader,
    /// A delegation registered at the relay without a verified notice of exactly this chain:
    /// a delegation the patient was not told of, or told of under a decoy chain.
    UnnoticedDelegation,
}

/// Kinds of access events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessKind {
    /// Fetched the manifest, one blob, or a batch of blobs under one receipt.
    Fetched {
        /// `manifest` or blob ids (hex), as the reader's signed receipt names them.
        objects: Vec<String>,
    },
    /// Someone opened a SMART Health Link of the share (relay audit kind 9): `who` is the
    /// recipient name the viewer stated, which nobody checked.
    LinkDownloaded {
        /// False: a wrong passcode was tried (an attempt was used up).
        served: bool,
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
    /// SMART Health Links published this session or loaded with
    /// [`Patient::load_links_from`] (their own vault record, apart from the main state).
    links: Vec<link::LinkRecord>,
    /// Restored from a backup and not reconciled with the relay yet: writes are refused
    /// (patient::reconcile).
    unreconciled: bool,
    /// Reconciled since the vault's "restored" mark was read: `save_to` removes the mark.
    restored_mark_stale: bool,
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

/// An active grant of a share ([`Patient::active_grants`]): what was signed into it, read
/// back from the patient's own record of the grant, so a screen says what the doctor can read
/// rather than what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantView {
    /// The relationship holding it.
    pub relationship: RelationshipId,
    /// Until when, Unix seconds.
    pub expires_at: u64,
    /// What it lets its holder read (categories and single records), as signed.
    pub scope: Scope,
    /// How many times its holder may forward it (0: never; docs/protocol.md "Forwarding").
    pub depth: u8,
}

/// Fetch events of one reader in words: "Dr. X fetched 12 objects" ([`summarize`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSummary {
    /// The reader's card name (or [`UNACCOUNTED_READER`]).
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
            links: Vec::new(),
            unreconciled: false,
            restored_mark_stale: false,
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

    /// Rejections that arrived alongside good messages (a forged, replayed or re-addressed
    /// message in the same batch as a genuine note): the UI shows them as security alerts.
    /// Taking them clears the list.
    pub fn take_alerts(&mut self) -> Vec<ClientError> {
        std::mem::take(&mut self.alerts)
    }
}

fn view_of(id: RelationshipId, r: &PatientRelationship) -> RelationshipView {
    RelationshipView {
        id,
        card: r.rel.peer_card.clone(),
        paired_at: r.paired_at,
    }
}
