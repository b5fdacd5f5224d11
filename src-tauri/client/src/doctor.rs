//! The doctor's services: scan the patient's QR, receive the grant, fetch and verify the shared
//! records, follow re-keys, write notes back (docs/protocol.md "Pairing", "Relationship
//! messages", "Revocation and expiry").

mod state;

use std::collections::BTreeMap;

use carekey_core::epoch::EpochUpdate;
use carekey_core::forward::{
    Access, ColleagueInvite, DelegatedAccess, DelegationNotice, ForwardAnswer, ForwardRequest,
    Introduction,
};
use carekey_core::grant::{Category, DelegationLink, Grant, Policy, Scope};
use carekey_core::keys::{Card, DeviceIdentity, ReadToken, SigningSecret};
use carekey_core::manifest::{BlobFormat, ManifestGuard};
use carekey_core::message::{self, MessageKind, ReplayGuard};
use carekey_core::pairing::{CheckCode, DoctorPairing, QrPayload, Relationship};
use carekey_core::section::GrantKeys;
use carekey_core::wire::Wire;
use carekey_relay_api as api;
use futures_util::StreamExt;
use rand_core::OsRng;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};
use crate::ids::{BlobId, InviteId, LinkId, PairingId, ShareId};
use crate::note;
use crate::now;
use crate::progress::{Cancel, Progress, ProgressSink, Stage};
use crate::relay::{MailboxAddress, MailboxWaiter, OwnMailbox, ReaderCap, Relay};

/// Requests a fetch keeps in flight: batches of small blobs, and large blobs fetched alone
/// (attachments: every one in flight is held in memory until its turn).
const FETCH_CONCURRENCY: usize = 16;
const FETCH_CONCURRENCY_LARGE: usize = 2;
/// Blobs up to this size are fetched in batches (relay-formats.md "Batch fetch"); larger ones
/// alone with a GET each.
const BATCH_BLOB_MAX: u64 = 256 << 10;
/// Bytes one batch asks for (well under the relay's default 8 MiB batch limit); with
/// [`FETCH_CONCURRENCY`] batches in flight this bounds what is held in memory at once.
const BATCH_BYTES: u64 = 2 << 20;

/// A scan in progress: show [`ScanSession::check_code`] and wait for the grant.
/// It carries everything the wait needs (relay client, mailbox, this doctor's card hash), so
/// [`ScanSession::wait_for_confirmation`] runs without the `Doctor` (docs/architecture.md
/// "Long waits").
#[derive(Debug)]
pub struct ScanSession {
    relay: Relay,
    pairing: DoctorPairing,
    inbox: OwnMailbox,
    reader: SigningSecret,
    /// Hash of the card this doctor answered with: the grant must name it.
    own_card: [u8; 32],
}

/// The patient's verified confirmation of a [`ScanSession`]: commit it with
/// [`Doctor::accept_grant`].
#[derive(Debug)]
pub struct Confirmation {
    outcome: carekey_core::pairing::DoctorOutcome,
}

impl Confirmation {
    /// The patient's verified card (for the screen before the records arrive).
    pub fn patient(&self) -> &Card {
        &self.outcome.relationship.peer_card
    }

    /// The share id and expiry of the grant.
    pub fn share(&self) -> LinkShare {
        let g = &self.outcome.grant.grant;
        LinkShare {
            share_id: ShareId(g.share_id),
            expires_at: g.expires_at,
        }
    }
}

/// The share a link reads ([`Doctor::share_of`], [`Confirmation::share`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkShare {
    /// The share (tags the records stored from it).
    pub share_id: ShareId,
    /// The grant's expiry, Unix seconds: the stored records are purged after it.
    pub expires_at: u64,
}

/// One of the doctor's links to a patient ([`Doctor::links`]).
#[derive(Debug, Clone)]
pub struct LinkView {
    /// Its stable id (the handle of [`Doctor::fetch`], [`Doctor::send_note`], ...).
    pub id: LinkId,
    /// The patient's card.
    pub patient: Card,
    /// The share and the grant's expiry.
    pub share: LinkShare,
    /// Whether access ended (revoked, expired): no fetch is tried again.
    pub ended: bool,
    /// Whether it came by delegation from another doctor (no channel to the patient).
    pub delegated: bool,
}

/// An invite made by [`Doctor::invite`]: hand `invite` (`Wire::to_bytes`) to the forwarding
/// doctor, then wait on `id`.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// Handle of [`Doctor::accept_introduction`] and [`Doctor::invite_waiter`].
    pub id: InviteId,
    /// The signed invite.
    pub invite: ColleagueInvite,
}

impl ScanSession {
    /// The code the doctor's screen always shows.
    pub fn check_code(&self) -> CheckCode {
        self.pairing.check_code()
    }

    /// Waits (long-poll) up to `wait_secs` for the patient's confirmation and verifies it:
    /// the patient's card, its transcript signature and the grant, addressed to this doctor's
    /// card and this session's reader key (docs/protocol.md "Pairing"). Needs no `Doctor`, so
    /// an app holding the doctor behind a lock does not hold it for the wait. Invalid messages
    /// (forged, replayed from another pairing, misaddressed) are dropped and the wait goes on,
    /// so whoever can write to the mailbox cannot spend the pairing; if only invalid messages
    /// came, the last error is returned at the deadline. The patient's sealed "declined"
    /// ([`crate::patient::Patient::decline`]) ends the wait at once with
    /// [`ClientError::Declined`]. Nothing is deleted at the relay until
    /// [`Doctor::accept_grant`].
    pub async fn wait_for_confirmation(
        &mut self,
        wait_secs: u64,
        cancel: &Cancel,
    ) -> Result<Confirmation> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
        let mut last_error = None;
        loop {
            cancel.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(last_error.unwrap_or(ClientError::NoAnswer));
            }
            let msgs = self
                .relay
                .fetch(
                    &self.inbox,
                    left.as_secs().clamp(1, crate::relay::LONG_POLL_SECS),
                )
                .await?;
            for (seq, bytes) in msgs {
                self.inbox.cursor = self.inbox.cursor.max(seq);
                match self.check_confirmation(&bytes) {
                    Ok(outcome) => return Ok(Confirmation { outcome }),
                    // The patient said no: stop waiting (docs/protocol.md "Pairing").
                    Err(_) if self.pairing.receive_decline(&bytes).is_ok() => {
                        return Err(ClientError::Declined);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
        }
    }

    /// Opens and checks the patient's confirmation: card, transcript signature, grant
    /// signature and validity, addressed to this card and this session's reader key.
    fn check_confirmation(&self, bytes: &[u8]) -> Result<carekey_core::pairing::DoctorOutcome> {
        let out = self.pairing.receive_confirmation(bytes)?;
        let g = &out.grant.grant;
        if g.grantee != self.own_card || g.reader_key != self.reader.public() {
            return Err(ClientError::Tampered(carekey_core::Error::WrongRecipient));
        }
        out.grant
            .verify_at(&out.relationship.peer_card.body.signing_key, now())?;
        Ok(out)
    }
}

/// Parses scanned or pasted QR text and checks it has not expired: text that is not a
/// pairing QR is [`ClientError::InvalidInput`], an old QR [`ClientError::Expired`] (never
/// `tampered`: the patient only needs to show a new one).
pub fn parse_qr(qr_text: &str) -> Result<QrPayload> {
    let qr =
        QrPayload::parse(qr_text).map_err(|_| ClientError::InvalidInput(crate::error::NOT_A_QR))?;
    qr.check_fresh(now())?;
    Ok(qr)
}

/// One record received from a patient.
#[derive(Debug, Clone)]
pub struct SharedRecord {
    /// The patient's record id.
    pub record_id: [u8; 16],
    /// Category.
    pub category: Category,
    /// Title.
    pub title: String,
    /// Whether it is an attachment (else FHIR JSON).
    pub attachment: bool,
    /// Verified plaintext.
    pub data: Zeroizing<Vec<u8>>,
}

#[derive(Debug)]
struct PatientLink {
    relay: Relay,
    /// Relationship id, the patient's card (verifies manifests) and where notes go.
    rel: Relationship,
    /// Where notes go; `None` for a delegated link (no relationship with the patient).
    peer: Option<MailboxAddress>,
    /// Whose messages (epoch updates) this link accepts when not the patient: the delegating
    /// doctor of a delegated link.
    upstream: Option<Card>,
    grant: Grant,
    /// Root-first delegation chain ending at this doctor (empty for a patient's grant).
    chain: Vec<DelegationLink>,
    /// Relay hash of the root token the chain starts from (own token for a patient's grant).
    root_token_hash: [u8; 32],
    reader: SigningSecret,
    inbox: OwnMailbox,
    guard: ReplayGuard,
    send_seq: u64,
    manifests: ManifestGuard,
    ended: bool,
    /// Colleagues this doctor delegated to: they get the epoch updates it receives.
    children: Vec<Downstream>,
    /// Answers to this doctor's forward requests: (request hash, approved).
    answers: Vec<([u8; 32], bool)>,
    /// The epoch and keys before the last epoch update, until a manifest of the new epoch has
    /// been read: a revoke interrupted after its epoch updates went out but before the
    /// manifest swap leaves the previous epoch's manifest live, and this doctor reads on.
    prev_epoch: Option<(u32, GrantKeys)>,
    /// (category, record id) of every record the last manifest read listed in this doctor's
    /// scope. In memory only: after a restart it is empty until the next fetch, so a scope
    /// narrowed before that keeps the categories and drops single picked records (narrower,
    /// never wider).
    known_entries: Vec<(Category, [u8; 16])>,
}

/// A colleague this doctor delegated to.
#[derive(Debug)]
struct Downstream {
    /// The delegated scope: each re-key passes down only its elements' keys (`None` in states
    /// saved before scoped keys: the update is passed on as it came).
    scope: Option<Scope>,
    /// The colleague's token hash: an epoch update naming it (revoked by the patient) drops
    /// the colleague here (`None` in states saved before version 3).
    token_hash: Option<[u8; 32]>,
    card: Card,
    relationship_id: [u8; 16],
    address: MailboxAddress,
    send_seq: u64,
}

/// An invite this doctor (as the colleague) handed out and waits on.
#[derive(Debug)]
struct PendingInvite {
    relay: Relay,
    inbox: OwnMailbox,
    reader: SigningSecret,
    invite: ColleagueInvite,
}

/// The doctor's services.
#[derive(Debug)]
pub struct Doctor {
    identity: DeviceIdentity,
    card: Card,
    /// Keyed by the relationship id each link's messages are bound to (docs/protocol.md
    /// "Relationship messages"): stable across restarts and across other links ending.
    links: BTreeMap<LinkId, PatientLink>,
    /// Keyed by the invite's relationship id.
    invites: BTreeMap<InviteId, PendingInvite>,
    /// Clients of the closed relays this doctor holds an operator's enrollment key for, keyed
    /// by base URL ([`Doctor::set_enrollment_key`]); not saved with the state (the app keeps
    /// the keys in its vault and sets them after loading).
    enrolled: BTreeMap<String, Relay>,
}

impl Doctor {
    /// The doctor's identity and card.
    pub fn new(identity: DeviceIdentity, card: Card) -> Self {
        Self {
            identity,
            card,
            links: BTreeMap::new(),
            invites: BTreeMap::new(),
            enrolled: BTreeMap::new(),
        }
    }

    /// Sets (or with `None` removes) the operator's enrollment key of the closed relay at
    /// `relay_url` (docs/relay.md "Enrollment"): sent only to that relay, when this doctor
    /// opens a mailbox there (a scan's reply mailbox, a colleague invite). A key is never
    /// sent to another relay.
    pub fn set_enrollment_key(&mut self, relay_url: &str, key: Option<&str>) -> Result<()> {
        let relay = Relay::new(relay_url)?;
        let base = relay.base().to_owned();
        match key {
            Some(k) => {
                self.enrolled.insert(base, relay.with_enrollment_key(k)?);
            }
            None => {
                self.enrolled.remove(&base);
            }
        }
        Ok(())
    }

    /// The client for `relay_url`: with its enrollment key when this doctor holds one.
    fn relay_for(&self, relay_url: &str) -> Result<Relay> {
        let relay = Relay::new(relay_url)?;
        Ok(self.enrolled.get(relay.base()).cloned().unwrap_or(relay))
    }

    /// Replaces this doctor's card by the same card with a clinic attestation (after the
    /// vault stored it). Refused unless it is this card (same hash) and every signature on it
    /// verifies: relationships, grants and messages bind the hash, which does not change.
    pub fn set_card(&mut self, card: Card) -> Result<()> {
        if card.hash() != self.card.hash() {
            return Err(ClientError::InvalidInput("not this device's card"));
        }
        card.verify()?;
        self.card = card;
        Ok(())
    }

    /// Answers a scanned QR: opens this relationship's mailbox on the patient's relay, sends
    /// the sealed reply (card, fresh reader key, mailbox address, transcript signature).
    ///
    /// Text that is not a QR is [`ClientError::InvalidInput`], an old QR
    /// [`ClientError::Expired`], a QR another doctor answered already (or the patient closed)
    /// [`ClientError::AlreadyUsed`].
    pub async fn scan(&self, qr_text: &str) -> Result<ScanSession> {
        let qr = parse_qr(qr_text)?;
        let relay = self.relay_for(&qr.relay_url)?;
        let inbox = relay.open_mailbox().await?;
        let reader = SigningSecret::random(&mut OsRng);
        let (pairing, reply) = DoctorPairing::respond(
            &qr,
            &self.identity,
            &self.card,
            &reader.public(),
            &inbox.address.to_bytes(),
            now(),
            &mut OsRng,
        )?;
        relay
            .reply_pairing(&PairingId(qr.pairing_id), reply)
            .await?;
        Ok(ScanSession {
            relay,
            pairing,
            inbox,
            reader,
            own_card: self.card.hash(),
        })
    }

    /// Waits (long-poll) for the patient's confirmation; verifies the patient's card, its
    /// transcript signature and the grant, and remembers the patient. Returns the link id.
    /// [`ScanSession::wait_for_confirmation`] then [`Doctor::accept_grant`], holding
    /// `&mut self` for the whole wait (an app behind a lock uses the two steps).
    pub async fn wait_for_grant(
        &mut self,
        mut session: ScanSession,
        wait_secs: u64,
        cancel: &Cancel,
    ) -> Result<LinkId> {
        let c = session.wait_for_confirmation(wait_secs, cancel).await?;
        self.accept_grant(session, c).await
    }

    /// Commits a confirmation [`ScanSession::wait_for_confirmation`] returned: deletes the
    /// processed messages at the relay and remembers the patient. Returns the link id, the
    /// pairing's relationship id (save the doctor afterwards).
    pub async fn accept_grant(&mut self, session: ScanSession, c: Confirmation) -> Result<LinkId> {
        let out = c.outcome;
        if out.grant.grant.reader_key != session.reader.public()
            || out.grant.grant.grantee != self.card.hash()
        {
            return Err(ClientError::InvalidInput(
                "this confirmation belongs to another scan",
            ));
        }
        let peer = MailboxAddress::from_bytes(&out.relationship.peer_address)?;
        let id = LinkId(out.relationship.id);
        if self.links.contains_key(&id) {
            // Derived from both sides' fresh ephemeral keys: a repeat means a broken pairing.
            return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                what: "pairing",
                reason: "relationship id already in use",
            }));
        }
        session
            .relay
            .delete_through(&session.inbox, session.inbox.cursor)
            .await?;
        self.links.insert(
            id,
            PatientLink {
                relay: session.relay,
                peer: Some(peer),
                upstream: None,
                chain: Vec::new(),
                root_token_hash: out.grant.grant.read_token.relay_hash(),
                grant: out.grant.grant,
                reader: session.reader,
                inbox: session.inbox,
                guard: ReplayGuard::default(),
                send_seq: 0,
                manifests: ManifestGuard::default(),
                ended: false,
                children: Vec::new(),
                answers: Vec::new(),
                rel: out.relationship,
                prev_epoch: None,
                known_entries: Vec::new(),
            },
        );
        Ok(id)
    }

    /// The patient's card of link `id`.
    pub fn patient(&self, id: &LinkId) -> Option<&Card> {
        self.links.get(id).map(|l| &l.rel.peer_card)
    }

    /// The share id and expiry of link `id` (to tag and purge stored records).
    pub fn share_of(&self, id: &LinkId) -> Option<LinkShare> {
        self.links.get(id).map(PatientLink::share)
    }

    /// Every link, oldest grant first (ties by id).
    pub fn links(&self) -> Vec<LinkView> {
        let mut v: Vec<(u64, LinkView)> = self
            .links
            .iter()
            .map(|(id, l)| {
                (
                    l.grant.issued_at,
                    LinkView {
                        id: *id,
                        patient: l.rel.peer_card.clone(),
                        share: l.share(),
                        ended: l.ended,
                        delegated: l.peer.is_none(),
                    },
                )
            })
            .collect();
        v.sort_by_key(|(at, l)| (*at, l.id));
        v.into_iter().map(|(_, l)| l).collect()
    }

    /// Processes waiting relationship messages of link `id`: epoch updates (passed on to
    /// the colleagues this doctor delegated to) and answers to forward requests.
    pub async fn sync(&mut self, id: &LinkId, wait_secs: u64) -> Result<()> {
        let l = self
            .links
            .get_mut(id)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        let msgs = l.relay.fetch(&l.inbox, wait_secs).await?;
        let mut first_error = None;
        let mut updates = Vec::new();
        for (seq, sealed) in msgs {
            // Never backwards: a relay (or network) that reorders a batch must not make the
            // next fetch deliver again what was processed (a false replay alarm).
            l.inbox.cursor = l.inbox.cursor.max(seq);
            let from = l.upstream.as_ref().unwrap_or(&l.rel.peer_card);
            let m = match message::open(
                &self.identity,
                &self.card,
                from,
                &l.rel.id,
                &mut l.guard,
                &sealed,
            ) {
                Ok(m) => m,
                Err(e) => {
                    first_error.get_or_insert(e.into());
                    continue;
                }
            };
            match m.kind {
                MessageKind::EpochUpdate => {
                    let u = match EpochUpdate::from_bytes(&m.body) {
                        Ok(u) => u,
                        Err(e) => {
                            first_error.get_or_insert(e.into());
                            continue;
                        }
                    };
                    if u.share_id != l.grant.share_id {
                        continue;
                    }
                    if let Err(e) = u.check_after(l.grant.epoch) {
                        first_error.get_or_insert(e.into());
                        continue;
                    }
                    // A re-key changes the keys' secrets, never what they are for: the same
                    // elements and relay groups (or, in a version-1 share, an epoch key).
                    let same_shape = match (&l.grant.keys, &u.keys) {
                        (GrantKeys::Scoped(a), GrantKeys::Scoped(b)) => {
                            a.same_elements_and_groups(b)
                        }
                        (GrantKeys::Epoch(_), GrantKeys::Epoch(_)) => true,
                        _ => false,
                    };
                    if !same_shape {
                        first_error.get_or_insert(ClientError::Tampered(
                            carekey_core::Error::Malformed {
                                what: "epoch update",
                                reason: "keys for another scope",
                            },
                        ));
                        continue;
                    }
                    let keys = std::mem::replace(&mut l.grant.keys, u.keys.clone());
                    l.prev_epoch = Some((l.grant.epoch, keys));
                    l.grant.epoch = u.epoch;
                    updates.push((m.body, u));
                }
                // Only the patient answers forward requests.
                MessageKind::ForwardAnswer if l.upstream.is_none() => {
                    match ForwardAnswer::from_bytes(&m.body) {
                        Ok(a) => l.answers.push((a.request_hash, a.approved)),
                        Err(e) => {
                            first_error.get_or_insert(e.into());
                        }
                    }
                }
                _ => {}
            }
        }
        if l.inbox.cursor > 0 {
            l.relay.delete_through(&l.inbox, l.inbox.cursor).await?;
        }
        // Pass re-keys down the delegation tree: each colleague gets the keys of its own
        // scope only (docs/protocol.md "Scoped keys"); one whose token was revoked gets them
        // but can no longer fetch anything with them.
        for (body, u) in updates {
            // Colleagues the patient revoked (with their subtrees at the relay) get nothing
            // more from this doctor, and are forgotten.
            l.children.retain(|c| {
                c.token_hash
                    .is_none_or(|h| u.revoked_tokens.binary_search(&h).is_err())
            });
            for c in &mut l.children {
                let body = match (&u.keys, &c.scope) {
                    (GrantKeys::Scoped(k), Some(scope)) => EpochUpdate {
                        keys: GrantKeys::Scoped(k.subset(scope)?),
                        ..u.clone()
                    }
                    .to_bytes(),
                    _ => body.clone(),
                };
                c.send_seq += 1;
                let sealed = message::seal(
                    &self.identity,
                    &self.card,
                    &c.card,
                    &c.relationship_id,
                    c.send_seq,
                    MessageKind::EpochUpdate,
                    &body,
                    &mut OsRng,
                )?;
                l.relay.append(&c.address, sealed).await?;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Fetches the manifest and every blob of link `id`, verifying the patient's signature,
    /// the manifest version (no rollback) and each blob's signed hash. A 410 ends the link
    /// (the caller purges what it stored from this share); a 404 from a re-key race syncs the
    /// new epoch key and retries once.
    pub async fn fetch(
        &mut self,
        id: &LinkId,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<Vec<SharedRecord>> {
        let mut retried = false;
        loop {
            match self.fetch_once(id, progress, cancel).await {
                Err(ClientError::NotFound | ClientError::Tampered(_)) if !retried => {
                    // A re-key may have swapped the manifest under us: take the new key, retry.
                    retried = true;
                    self.sync(id, 0).await?;
                }
                Err(ClientError::AccessEnded) => {
                    if let Some(l) = self.links.get_mut(id) {
                        l.ended = true;
                    }
                    return Err(ClientError::AccessEnded);
                }
                other => return other,
            }
        }
    }

    async fn fetch_once(
        &mut self,
        id: &LinkId,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<Vec<SharedRecord>> {
        let l = self
            .links
            .get_mut(id)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        let t = now();
        if l.ended || t > l.grant.expires_at {
            l.ended = true;
            return Err(ClientError::AccessEnded);
        }
        let cap = ReaderCap {
            token: &l.grant.read_token,
            reader: &l.reader,
            share_id: ShareId(l.grant.share_id),
        };
        let (_, sealed) = l.relay.get_manifest(&cap, t).await?;
        let patient_key = &l.rel.peer_card.body.signing_key;
        // Only this doctor's sections open: the entries (blob ids, content keys) of its scope
        // (docs/protocol.md "Scoped keys").
        let m =
            match l
                .grant
                .keys
                .open_manifest(&sealed, &l.grant.share_id, l.grant.epoch, patient_key)
            {
                Ok(m) => m,
                // The patient's re-key sent us the new epoch key but has not swapped the manifest
                // yet (interrupted revoke, docs/protocol.md "Revocation and expiry"): the previous epoch's manifest,
                // still signed by the patient and no older than any we read (guard below), is live.
                Err(e) => match &l.prev_epoch {
                    Some((epoch, keys)) => keys
                        .open_manifest(&sealed, &l.grant.share_id, *epoch, patient_key)
                        .map_err(|_| e)?,
                    None => return Err(e.into()),
                },
            };
        l.manifests.accept(&m)?;
        if m.epoch == l.grant.epoch {
            l.prev_epoch = None;
        }
        let entries: Vec<_> = m
            .entries
            .iter()
            .filter(|e| l.grant.scope.covers(e.category, &e.record_id))
            .collect();
        l.known_entries = entries.iter().map(|e| (e.category, e.record_id)).collect();
        let total: u64 = entries.iter().map(|e| e.size).sum();
        // Small records go in batches: one request and one receipt naming every blob of the
        // batch, so the relay verifies one signature and appends one audit entry per batch
        // (it was one per blob: the relay's CPU per GET was the check-up's floor). Large
        // attachments are fetched alone, two at a time, so memory stays bounded.
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut large: Vec<usize> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut open_bytes = 0u64;
        for (i, e) in entries.iter().enumerate() {
            if e.size > BATCH_BLOB_MAX {
                large.push(i);
                continue;
            }
            if open.len() == api::MAX_BATCH_BLOBS || open_bytes + e.size > BATCH_BYTES {
                batches.push(std::mem::take(&mut open));
                open_bytes = 0;
            }
            open.push(i);
            open_bytes += e.size;
        }
        if !open.is_empty() {
            batches.push(open);
        }
        let relay = &l.relay;
        let cap = &cap;
        let entries = &entries;
        let mut slots: Vec<Option<SharedRecord>> = entries.iter().map(|_| None).collect();
        let mut done = 0;
        let mut opened = |i: usize, blob: &[u8]| -> Result<()> {
            let e = entries
                .get(i)
                .ok_or(ClientError::BadResponse { what: "batch" })?;
            let data = e.open_blob(m.epoch, blob)?;
            done += blob.len() as u64;
            progress.report(Progress {
                stage: Stage::Downloading,
                done,
                total,
            });
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(SharedRecord {
                    record_id: e.record_id,
                    category: e.category,
                    title: e.title.clone(),
                    attachment: e.format == BlobFormat::Chunked,
                    data,
                });
            }
            Ok(())
        };
        // Futures built in loops, not with closures: a closure over `&ManifestEntry` makes the
        // future not `Send` (higher-ranked lifetime), and the apps run this on a thread pool
        // (tests/send_futures.rs checks).
        let mut gets = Vec::with_capacity(batches.len());
        for idx in batches {
            let mut ids = Vec::with_capacity(idx.len());
            let mut sizes = Vec::with_capacity(idx.len());
            for &i in &idx {
                if let Some(e) = entries.get(i) {
                    ids.push(BlobId(e.blob_id));
                    sizes.push(e.size);
                }
            }
            gets.push(async move {
                cancel.check()?;
                // Read no more than the signed manifest states (crate::answer).
                let blobs = relay.get_blobs_sized(cap, &ids, &sizes, t).await?;
                Ok::<_, ClientError>((idx, blobs))
            });
        }
        let mut stream = futures_util::stream::iter(gets).buffered(FETCH_CONCURRENCY);
        while let Some(r) = stream.next().await {
            let (idx, blobs) = r?;
            for (i, blob) in idx.into_iter().zip(blobs) {
                opened(i, &blob)?;
            }
        }
        let mut gets = Vec::with_capacity(large.len());
        for i in large {
            let (blob_id, size) = entries
                .get(i)
                .map(|e| (BlobId(e.blob_id), e.size))
                .unwrap_or_default();
            gets.push(async move {
                cancel.check()?;
                let blob = relay.get_blob_sized(cap, &blob_id, size, t).await?;
                Ok::<_, ClientError>((i, blob))
            });
        }
        let mut stream = futures_util::stream::iter(gets).buffered(FETCH_CONCURRENCY_LARGE);
        while let Some(r) = stream.next().await {
            let (i, blob) = r?;
            opened(i, &blob)?;
        }
        slots
            .into_iter()
            .map(|s| s.ok_or(ClientError::BadResponse { what: "batch" }))
            .collect()
    }

    /// Signs a FHIR resource (note, observation, medication) and sends it to the patient of
    /// link `id` through the relationship mailbox (docs/protocol.md "Relationship messages").
    pub async fn send_note(&mut self, id: &LinkId, resource: &Value) -> Result<()> {
        let l = self
            .links
            .get_mut(id)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        let peer = l.peer.as_ref().ok_or(ClientError::NotAllowed(
            "a delegated colleague has no channel to the patient",
        ))?;
        let body = note::encode(self.identity.signing(), resource)?;
        l.send_seq += 1;
        let sealed = message::seal(
            &self.identity,
            &self.card,
            &l.rel.peer_card,
            &l.rel.id,
            l.send_seq,
            MessageKind::Note,
            &body,
            &mut OsRng,
        )?;
        l.relay.append(peer, sealed).await
    }
}

/// What a doctor may do with a link's share: policy and remaining delegation depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardRights {
    /// The patient's forwarding policy.
    pub policy: Policy,
    /// Delegation levels left below this doctor (0 unless `Allowed`).
    pub depth: u8,
}

// Forwarding to a colleague (docs/protocol.md "Forwarding"; core `forward` module).
impl Doctor {
    /// The relay URL of link `id` (a colleague opens its invite mailbox there).
    pub fn relay_url(&self, id: &LinkId) -> Option<&str> {
        self.links.get(id).map(|l| l.relay.base())
    }

    /// The part of this doctor's scope on link `id` that lies in `categories`, for a forward
    /// or delegation narrower than what this doctor holds (docs/protocol.md "Forwarding": a
    /// delegate's scope is within the delegator's). Categories this doctor holds whole stay
    /// whole; records it holds one by one are kept when the last manifest read placed them in
    /// one of `categories`. Returns the scope and how many records of the last manifest read
    /// it covers (0 before any read in this session: a UI refuses a forward of nothing).
    /// `None` for an unknown link.
    pub fn scope_within(&self, id: &LinkId, categories: &[Category]) -> Option<(Scope, usize)> {
        let l = self.links.get(id)?;
        let parent = &l.grant.scope;
        let whole: Vec<Category> = categories
            .iter()
            .copied()
            .filter(|c| parent.categories() & c.bit() != 0)
            .collect();
        let picked: Vec<[u8; 16]> = l
            .known_entries
            .iter()
            .filter(|(c, r)| categories.contains(c) && parent.records().binary_search(r).is_ok())
            .map(|(_, r)| *r)
            .collect();
        // At most the parent's records, so within MAX_SCOPE_RECORDS: `new` cannot fail here.
        let scope = Scope::new(&whole, picked).ok()?;
        let covered = l
            .known_entries
            .iter()
            .filter(|(c, r)| scope.covers(*c, r))
            .count();
        Some((scope, covered))
    }

    /// What the patient allows this doctor to do with link `id`'s share.
    pub fn forward_rights(&self, id: &LinkId) -> Option<ForwardRights> {
        self.links.get(id).map(|l| ForwardRights {
            policy: l.grant.policy,
            depth: l.grant.delegation_depth,
        })
    }

    /// As the colleague: opens a mailbox on `relay_url` (the forwarding doctor's relay),
    /// makes a fresh reader key and signs an invite valid for `valid_secs`. Hand the invite
    /// (`Wire::to_bytes`) to the forwarding doctor; then [`Doctor::accept_introduction`] with
    /// the returned id (docs/protocol.md "Forwarding").
    pub async fn invite(&mut self, relay_url: &str, valid_secs: u64) -> Result<Invitation> {
        let relay = self.relay_for(relay_url)?;
        let inbox = relay.open_mailbox().await?;
        let reader = SigningSecret::random(&mut OsRng);
        let mut relationship_id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut relationship_id);
        let invite = ColleagueInvite::sign(
            &self.identity,
            &self.card,
            reader.public(),
            inbox.address.to_bytes(),
            relationship_id,
            now().saturating_add(valid_secs),
        )?;
        let id = InviteId(relationship_id);
        self.invites.insert(
            id,
            PendingInvite {
                relay,
                inbox,
                reader,
                invite: invite.clone(),
            },
        );
        Ok(Invitation { id, invite })
    }

    /// Policy `ask`: asks the patient of link `id` to grant the colleague of `invite`
    /// (`scope` defaults to this doctor's). Returns the request hash; the answer arrives with
    /// [`Doctor::sync`] and is read with [`Doctor::forward_answer`].
    pub async fn request_forward(
        &mut self,
        id: &LinkId,
        invite: &ColleagueInvite,
        scope: Option<Scope>,
        reason: &str,
    ) -> Result<[u8; 32]> {
        let l = self
            .links
            .get_mut(id)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        if l.grant.policy == Policy::Never {
            return Err(ClientError::NotAllowed(
                "the patient does not allow forwarding these records",
            ));
        }
        let peer = l.peer.as_ref().ok_or(ClientError::NotAllowed(
            "a delegated colleague has no channel to the patient",
        ))?;
        invite.verify(now())?;
        let scope = scope.unwrap_or_else(|| l.grant.scope.clone());
        if !scope.is_within(&l.grant.scope) {
            return Err(ClientError::InvalidInput(
                "the colleague's scope is wider than yours",
            ));
        }
        let req = ForwardRequest {
            share_id: l.grant.share_id,
            invite: invite.clone(),
            scope,
            reason: reason.to_owned(),
        };
        let hash = req.hash();
        l.send_seq += 1;
        let sealed = message::seal(
            &self.identity,
            &self.card,
            &l.rel.peer_card,
            &l.rel.id,
            l.send_seq,
            MessageKind::ForwardRequest,
            &req.to_bytes(),
            &mut OsRng,
        )?;
        l.relay.append(peer, sealed).await?;
        Ok(hash)
    }

    /// The patient's answer to forward request `request_hash` of link `id`, once synced.
    pub fn forward_answer(&self, id: &LinkId, request_hash: &[u8; 32]) -> Option<bool> {
        self.links.get(id).and_then(|l| {
            l.answers
                .iter()
                .find(|(h, _)| h == request_hash)
                .map(|(_, a)| *a)
        })
    }

    /// Policy `allowed`: delegates link `id`'s share to the colleague of `invite` (scope
    /// and expiry default to this doctor's and can only narrow). Registers the link at the
    /// relay with a notice sealed to the patient naming the colleague, then introduces the
    /// colleague. Never hands on this doctor's own token.
    pub async fn delegate(
        &mut self,
        id: &LinkId,
        invite: &ColleagueInvite,
        scope: Option<Scope>,
        expires_at: Option<u64>,
    ) -> Result<()> {
        let l = self
            .links
            .get_mut(id)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        if l.grant.policy != Policy::Allowed || l.grant.delegation_depth == 0 {
            return Err(ClientError::NotAllowed(
                "the patient does not allow delegating these records",
            ));
        }
        let t = now();
        if l.ended || t > l.grant.expires_at {
            return Err(ClientError::AccessEnded);
        }
        invite.verify(t)?;
        let scope = scope.unwrap_or_else(|| l.grant.scope.clone());
        if !scope.is_within(&l.grant.scope) {
            return Err(ClientError::InvalidInput(
                "the colleague's scope is wider than yours",
            ));
        }
        let expires = expires_at.map_or(l.grant.expires_at, |e| e.min(l.grant.expires_at));
        // Only keys this doctor holds can be handed down, and only those of the colleague's
        // scope; its token gets exactly their relay groups (the relay checks they are within
        // this doctor's own).
        let keys = match &l.grant.keys {
            GrantKeys::Scoped(k) => GrantKeys::Scoped(k.subset(&scope)?),
            GrantKeys::Epoch(k) => GrantKeys::Epoch(k.clone()),
        };
        let token = ReadToken::random(&mut OsRng);
        let token_hash = token.relay_hash();
        let mut chain = l.chain.clone();
        chain.push(DelegationLink::sign(
            &l.reader,
            l.grant.share_id,
            invite.reader_key,
            &token,
            scope.clone(),
            keys.groups(),
            expires,
            l.grant.delegation_depth - 1,
        ));
        let notice = DelegationNotice {
            sender: self.card.clone(),
            invite: invite.clone(),
            root_token_hash: l.root_token_hash,
            chain: chain.clone(),
        };
        // Notices are first contact with the patient from (possibly) a stranger: sealed under
        // relationship id = share id, opened with `open_introduction`.
        let sealed_notice = message::seal(
            &self.identity,
            &self.card,
            &l.rel.peer_card,
            &l.grant.share_id,
            1,
            MessageKind::Notice,
            &notice.to_bytes(),
            &mut OsRng,
        )?;
        l.relay
            .register_delegation(
                &ShareId(l.grant.share_id),
                &l.root_token_hash,
                &chain,
                &sealed_notice,
            )
            .await?;
        let intro = Introduction {
            sender: self.card.clone(),
            patient: l.rel.peer_card.clone(),
            reply_address: Vec::new(),
            access: Access::Delegated(DelegatedAccess {
                share_id: l.grant.share_id,
                relay_url: l.grant.relay_url.clone(),
                epoch: l.grant.epoch,
                keys,
                read_token: token,
                root_token_hash: l.root_token_hash,
                chain,
            }),
        };
        let address = MailboxAddress::from_bytes(&invite.address)?;
        let sealed = message::seal(
            &self.identity,
            &self.card,
            &invite.card,
            &invite.relationship_id,
            1,
            MessageKind::Grant,
            &intro.to_bytes(),
            &mut OsRng,
        )?;
        l.relay.append(&address, sealed).await?;
        l.children.push(Downstream {
            scope: Some(scope),
            token_hash: Some(token_hash),
            card: invite.card.clone(),
            relationship_id: invite.relationship_id,
            address,
            send_seq: 1,
        });
        Ok(())
    }

    /// As the colleague: waits (long-poll) for the introduction on invite `id` — a
    /// patient's grant (policy `ask`) or a doctor's delegation (policy `allowed`) — verifies
    /// it and remembers the patient. Returns the new link's id.
    pub async fn accept_introduction(
        &mut self,
        id: &InviteId,
        wait_secs: u64,
        cancel: &Cancel,
    ) -> Result<LinkId> {
        let mut p = self
            .invites
            .remove(id)
            .ok_or(ClientError::InvalidInput("unknown invite"))?;
        let r = self.accept_inner(&mut p, wait_secs, cancel).await;
        match r {
            Ok(link) => Ok(link),
            Err(e) => {
                // Keep waiting possible after a timeout or a rejected message.
                self.invites.insert(*id, p);
                Err(e)
            }
        }
    }

    /// As the colleague: a waiter on invite `id`'s mailbox, so the wait for the
    /// introduction needs no `Doctor` (docs/architecture.md "Long waits"); open what it
    /// returns with [`Doctor::open_introduction_messages`].
    pub fn invite_waiter(&self, id: &InviteId) -> Result<MailboxWaiter> {
        let p = self
            .invites
            .get(id)
            .ok_or(ClientError::InvalidInput("unknown invite"))?;
        Ok(MailboxWaiter::new(p.relay.clone(), p.inbox.clone()))
    }

    /// As the colleague: opens messages an [`Doctor::invite_waiter`] returned. The first valid
    /// introduction (verified as in [`Doctor::accept_introduction`]) becomes a link, returned
    /// as `Some(id)`, and is deleted at the relay; save the doctor afterwards. Forged or
    /// misaddressed messages are dropped (the cursor moves past them) and `None` means: keep
    /// waiting with a fresh waiter. Messages at or below the invite's cursor are skipped.
    pub async fn open_introduction_messages(
        &mut self,
        id: &InviteId,
        msgs: Vec<(u64, Vec<u8>)>,
    ) -> Result<Option<LinkId>> {
        let mut p = self
            .invites
            .remove(id)
            .ok_or(ClientError::InvalidInput("unknown invite"))?;
        let floor = p.inbox.cursor;
        for (seq, sealed) in msgs {
            if seq <= floor {
                continue;
            }
            p.inbox.cursor = p.inbox.cursor.max(seq);
            if let Ok(link) = self.open_introduction(&p, &sealed) {
                let l = self.links.get(&link).ok_or(ClientError::NoAnswer)?;
                // The link exists now; a failed delete is retried by the next `sync`.
                let _ = l.relay.delete_through(&l.inbox, seq).await;
                return Ok(Some(link));
            }
        }
        self.invites.insert(*id, p);
        Ok(None)
    }

    async fn accept_inner(
        &mut self,
        p: &mut PendingInvite,
        wait_secs: u64,
        cancel: &Cancel,
    ) -> Result<LinkId> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
        let mut last_error = None;
        loop {
            cancel.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(last_error.unwrap_or(ClientError::NoAnswer));
            }
            let msgs = p.relay.fetch(&p.inbox, left.as_secs().clamp(1, 25)).await?;
            for (seq, sealed) in msgs {
                p.inbox.cursor = p.inbox.cursor.max(seq);
                match self.open_introduction(p, &sealed) {
                    Ok(link) => {
                        let l = self.links.get(&link).ok_or(ClientError::NoAnswer)?;
                        l.relay.delete_through(&l.inbox, seq).await?;
                        return Ok(link);
                    }
                    // A forged or misaddressed introduction is dropped; keep waiting.
                    Err(e) => last_error = Some(e),
                }
            }
        }
    }

    fn open_introduction(&mut self, p: &PendingInvite, sealed: &[u8]) -> Result<LinkId> {
        let (sender, m) = message::open_introduction(
            &self.identity,
            &self.card,
            &p.invite.relationship_id,
            sealed,
        )?;
        if m.kind != MessageKind::Grant {
            return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                what: "introduction",
                reason: "not a grant",
            }));
        }
        let intro = Introduction::from_bytes(&m.body)?;
        if intro.sender != sender {
            return Err(ClientError::Tampered(carekey_core::Error::WrongRecipient));
        }
        intro.patient.verify()?;
        let t = now();
        let me = p.reader.public();
        let (grant, chain, root_token_hash, upstream, peer) = match intro.access {
            Access::Direct(g) => {
                // Policy ask: the patient itself sends it and signs the grant to us.
                if sender != intro.patient {
                    return Err(ClientError::Tampered(carekey_core::Error::WrongRecipient));
                }
                g.verify_at(&intro.patient.body.signing_key, t)?;
                if g.grant.grantee != self.card.hash() || g.grant.reader_key != me {
                    return Err(ClientError::Tampered(carekey_core::Error::WrongRecipient));
                }
                let peer = MailboxAddress::from_bytes(&intro.reply_address)?;
                let root = g.grant.read_token.relay_hash();
                (g.grant, Vec::new(), root, None, Some(peer))
            }
            Access::Delegated(d) => {
                d.verify(&me, t)?;
                let own = d.own_link().cloned().ok_or(ClientError::Tampered(
                    carekey_core::Error::Delegation {
                        index: 0,
                        reason: "empty chain",
                    },
                ))?;
                let grant = Grant {
                    share_id: d.share_id,
                    relay_url: d.relay_url,
                    epoch: d.epoch,
                    keys: d.keys,
                    read_token: d.read_token,
                    policy: if own.depth > 0 {
                        Policy::Allowed
                    } else {
                        Policy::Never
                    },
                    scope: own.scope,
                    expires_at: own.expires_at,
                    grantee: self.card.hash(),
                    reader_key: me,
                    delegation_depth: own.depth,
                    issued_at: t,
                };
                (grant, d.chain, d.root_token_hash, Some(sender), None)
            }
        };
        if grant.relay_url != p.relay.base() {
            return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                what: "introduction",
                reason: "names another relay",
            }));
        }
        let id = LinkId(p.invite.relationship_id);
        if self.links.contains_key(&id) {
            return Err(ClientError::Tampered(carekey_core::Error::Malformed {
                what: "introduction",
                reason: "relationship id already in use",
            }));
        }
        self.links.insert(
            id,
            PatientLink {
                relay: p.relay.clone(),
                rel: Relationship {
                    id: p.invite.relationship_id,
                    peer_card: intro.patient,
                    peer_address: intro.reply_address,
                },
                peer,
                upstream,
                grant,
                chain,
                root_token_hash,
                reader: SigningSecret::from_seed(p.reader.expose_secret()),
                inbox: p.inbox.clone(),
                // The introduction was sequence 1 of its sender.
                guard: ReplayGuard::from_highest(m.seq),
                send_seq: 0,
                manifests: ManifestGuard::default(),
                ended: false,
                children: Vec::new(),
                answers: Vec::new(),
                prev_epoch: None,
                known_entries: Vec::new(),
            },
        );
        Ok(id)
    }
}

impl PatientLink {
    fn share(&self) -> LinkShare {
        LinkShare {
            share_id: ShareId(self.grant.share_id),
            expires_at: self.grant.expires_at,
        }
    }
}

impl Doctor {
    /// Marks every link whose grant expired at `now` as ended (no fetch is tried again).
    pub(crate) fn end_expired_links(&mut self, now: u64) {
        for l in self.links.values_mut() {
            if now > l.grant.expires_at {
                l.ended = true;
            }
        }
    }
}

#[cfg(feature = "test-export")]
impl Doctor {
    /// Copies of every key and token link `id` holds. Exists only for the revocation proof
    /// (`tests/revocation.rs`, feature `test-export`, never in an app build).
    pub fn held_secrets_for_test(&self, id: &LinkId) -> Option<crate::test_export::HeldSecrets> {
        let l = self.links.get(id)?;
        Some(crate::test_export::HeldSecrets {
            share_id: ShareId(l.grant.share_id),
            epoch: l.grant.epoch,
            keys: l.grant.keys.clone(),
            read_token: l.grant.read_token.clone(),
            chain: l.chain.clone(),
            root_token_hash: l.root_token_hash,
            reader: SigningSecret::from_seed(l.reader.expose_secret()),
            patient_key: l.rel.peer_card.body.signing_key,
            relationship_id: l.rel.id,
            inbox_read_token: *l.inbox.read_token,
            peer_write_token: l.peer.as_ref().map(|p| *p.write_token),
        })
    }
}
