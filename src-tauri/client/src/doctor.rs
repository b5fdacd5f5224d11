//! The doctor's services: scan the patient's QR, receive the grant, fetch and verify the shared
//! records, follow re-keys, write notes back (DESIGN.md "Check-up pairing", "Doctor writes
//! back", "Revocation = key rotation").

use carekey_core::epoch::EpochUpdate;
use carekey_core::grant::{Category, Grant};
use carekey_core::keys::{Card, DeviceIdentity, SigningSecret};
use carekey_core::manifest::{BlobFormat, Manifest, ManifestGuard};
use carekey_core::message::{self, MessageKind, ReplayGuard};
use carekey_core::pairing::{CheckCode, DoctorPairing, QrPayload, Relationship};
use carekey_core::wire::Wire;
use rand_core::OsRng;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};
use crate::note;
use crate::progress::{Cancel, Progress, ProgressSink, Stage};
use crate::relay::{MailboxAddress, OwnMailbox, ReaderCap, Relay};

/// A scan in progress: show [`ScanSession::check_code`] and wait for the grant.
#[derive(Debug)]
pub struct ScanSession {
    relay: Relay,
    pairing: DoctorPairing,
    inbox: OwnMailbox,
    reader: SigningSecret,
}

impl ScanSession {
    /// The code the doctor's screen always shows.
    pub fn check_code(&self) -> CheckCode {
        self.pairing.check_code()
    }
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
    rel: Relationship,
    peer: MailboxAddress,
    grant: Grant,
    reader: SigningSecret,
    inbox: OwnMailbox,
    guard: ReplayGuard,
    send_seq: u64,
    manifests: ManifestGuard,
    ended: bool,
}

/// The doctor's services.
#[derive(Debug)]
pub struct Doctor {
    identity: DeviceIdentity,
    card: Card,
    links: Vec<PatientLink>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Doctor {
    /// The doctor's identity and card.
    pub fn new(identity: DeviceIdentity, card: Card) -> Self {
        Self {
            identity,
            card,
            links: Vec::new(),
        }
    }

    /// Answers a scanned QR: opens this relationship's mailbox on the patient's relay, sends
    /// the sealed reply (card, fresh reader key, mailbox address, transcript signature).
    pub async fn scan(&self, qr_text: &str) -> Result<ScanSession> {
        let qr = QrPayload::parse(qr_text)?;
        qr.check_fresh(now())?;
        let relay = Relay::new(&qr.relay_url)?;
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
        relay.reply_pairing(&qr.pairing_id, reply).await?;
        Ok(ScanSession {
            relay,
            pairing,
            inbox,
            reader,
        })
    }

    /// Waits (long-poll) for the patient's confirmation; verifies the patient's card, its
    /// transcript signature and the grant, and remembers the patient. Returns the link index.
    pub async fn wait_for_grant(
        &mut self,
        mut session: ScanSession,
        wait_secs: u64,
        cancel: &Cancel,
    ) -> Result<usize> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
        let (seq, bytes) = loop {
            cancel.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(ClientError::NoAnswer);
            }
            let mut msgs = session
                .relay
                .fetch(&session.inbox, left.as_secs().clamp(1, 25))
                .await?;
            if !msgs.is_empty() {
                break msgs.swap_remove(0);
            }
        };
        session.inbox.cursor = seq;
        let out = session.pairing.receive_confirmation(&bytes)?;
        let g = &out.grant.grant;
        if g.grantee != self.card.hash() || g.reader_key != session.reader.public() {
            return Err(ClientError::Tampered(carekey_core::Error::WrongRecipient));
        }
        out.grant
            .verify_at(&out.relationship.peer_card.body.signing_key, now())?;
        let peer = MailboxAddress::from_bytes(&out.relationship.peer_address)?;
        session
            .relay
            .delete_through(&session.inbox, session.inbox.cursor)
            .await?;
        self.links.push(PatientLink {
            relay: session.relay,
            peer,
            grant: out.grant.grant,
            reader: session.reader,
            inbox: session.inbox,
            guard: ReplayGuard::default(),
            send_seq: 0,
            manifests: ManifestGuard::default(),
            ended: false,
            rel: out.relationship,
        });
        Ok(self.links.len() - 1)
    }

    /// The patient's card of link `index`.
    pub fn patient(&self, index: usize) -> Option<&Card> {
        self.links.get(index).map(|l| &l.rel.peer_card)
    }

    /// The share id and expiry of link `index` (to tag and purge stored records).
    pub fn share_of(&self, index: usize) -> Option<([u8; 16], u64)> {
        self.links
            .get(index)
            .map(|l| (l.grant.share_id, l.grant.expires_at))
    }

    /// Processes waiting relationship messages (epoch updates) of link `index`.
    pub async fn sync(&mut self, index: usize, wait_secs: u64) -> Result<()> {
        let l = self
            .links
            .get_mut(index)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        let msgs = l.relay.fetch(&l.inbox, wait_secs).await?;
        let mut first_error = None;
        for (seq, sealed) in msgs {
            l.inbox.cursor = seq;
            let m = match message::open(
                &self.identity,
                &self.card,
                &l.rel.peer_card,
                &l.rel.id,
                &mut l.guard,
                &sealed,
            ) {
                Ok(m) => m,
                Err(e) => {
                    first_error.get_or_insert(ClientError::Tampered(e));
                    continue;
                }
            };
            if m.kind == MessageKind::EpochUpdate {
                let u = EpochUpdate::from_bytes(&m.body)?;
                if u.share_id != l.grant.share_id {
                    continue;
                }
                u.check_after(l.grant.epoch)?;
                l.grant.epoch = u.epoch;
                l.grant.epoch_key = u.epoch_key;
            }
        }
        if l.inbox.cursor > 0 {
            l.relay.delete_through(&l.inbox, l.inbox.cursor).await?;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Fetches the manifest and every blob of link `index`, verifying the patient's signature,
    /// the manifest version (no rollback) and each blob's signed hash. A 410 ends the link
    /// (the caller purges what it stored from this share); a 404 from a re-key race syncs the
    /// new epoch key and retries once.
    pub async fn fetch(
        &mut self,
        index: usize,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<Vec<SharedRecord>> {
        let mut retried = false;
        loop {
            match self.fetch_once(index, progress, cancel).await {
                Err(ClientError::NotFound | ClientError::Tampered(_)) if !retried => {
                    // A re-key may have swapped the manifest under us: take the new key, retry.
                    retried = true;
                    self.sync(index, 0).await?;
                }
                Err(ClientError::AccessEnded) => {
                    if let Some(l) = self.links.get_mut(index) {
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
        index: usize,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<Vec<SharedRecord>> {
        let l = self
            .links
            .get_mut(index)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
        let t = now();
        if l.ended || t > l.grant.expires_at {
            l.ended = true;
            return Err(ClientError::AccessEnded);
        }
        let cap = ReaderCap {
            token: &l.grant.read_token,
            reader: &l.reader,
            share_id: l.grant.share_id,
        };
        let (_, sealed) = l.relay.get_manifest(&cap, t).await?;
        let m = Manifest::open(
            &sealed,
            &l.grant.share_id,
            l.grant.epoch,
            &l.grant.epoch_key,
            &l.rel.peer_card.body.signing_key,
        )?;
        l.manifests.accept(&m)?;
        let entries: Vec<_> = m
            .entries
            .iter()
            .filter(|e| l.grant.scope.covers(e.category, &e.record_id))
            .collect();
        let total: u64 = entries.iter().map(|e| e.size).sum();
        let mut done = 0;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            cancel.check()?;
            let blob = l.relay.get_blob(&cap, &e.blob_id, t).await?;
            let data = e.open_blob(m.epoch, &blob)?;
            done += blob.len() as u64;
            progress.report(Progress {
                stage: Stage::Downloading,
                done,
                total,
            });
            out.push(SharedRecord {
                record_id: e.record_id,
                category: e.category,
                title: e.title.clone(),
                attachment: e.format == BlobFormat::Chunked,
                data,
            });
        }
        Ok(out)
    }

    /// Signs a FHIR resource (note, observation, medication) and sends it to the patient of
    /// link `index` through the relationship mailbox.
    pub async fn send_note(&mut self, index: usize, resource: &Value) -> Result<()> {
        let l = self
            .links
            .get_mut(index)
            .ok_or(ClientError::InvalidInput("unknown patient"))?;
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
        l.relay.append(&l.peer, sealed).await
    }
}

#[cfg(feature = "test-export")]
impl Doctor {
    /// Copies of every key and token link `index` holds. Exists only for the revocation proof
    /// (`tests/revocation.rs`, feature `test-export`, never in an app build).
    pub fn held_secrets_for_test(&self, index: usize) -> Option<crate::test_export::HeldSecrets> {
        let l = self.links.get(index)?;
        Some(crate::test_export::HeldSecrets {
            share_id: l.grant.share_id,
            epoch: l.grant.epoch,
            epoch_key: l.grant.epoch_key.clone(),
            read_token: l.grant.read_token.clone(),
            reader: SigningSecret::from_seed(l.reader.expose_secret()),
            patient_key: l.rel.peer_card.body.signing_key,
            relationship_id: l.rel.id,
            inbox_read_token: l.inbox.read_token,
            peer_write_token: l.peer.write_token,
        })
    }
}
