//! The share at a check-up: seal the chosen records into a share, show its QR, wait for the
//! doctor's scan, and confirm (the doctor gets the grant) or reject after comparing check codes.

use carekey_client::patient::{PairingSession, Patient, ShareOptions};
use carekey_core::grant::{Category, Policy, Scope};
use carekey_core::keys::Card;
use carekey_vault::AuditEvent;
use serde::Serialize;

use super::access::{GrantScopeView, GranteeView, SHARES, ShareView, SharesState};
use super::{PatientApp, relationship_id, trust_wording};
use crate::error::{AppError, Result};
use crate::events::Throttled;
use crate::ipc::{self, PolicyChoice, ShareCategory, Validate};
use crate::qr;
use crate::session::{clinics, settings};
use crate::session::{hex, locked, now, random_id};
use crate::share::{self, Selection};
use crate::validate;

/// What `start_share` returns: the QR to show full screen. Its `Debug` leaves out the QR,
/// which carries the pairing's one-time secret.
#[derive(Clone, PartialEq, Serialize)]
pub struct ShareStarted {
    /// The share (hex).
    pub share: String,
    /// The pairing to wait on (hex).
    pub pairing: String,
    /// The QR as SVG.
    pub qr_svg: String,
    /// The QR text (for "copy code").
    pub qr_text: String,
    /// When the QR stops working (unix seconds).
    pub qr_expires_at: u64,
    /// Until when access lasts.
    pub expires_at: u64,
    /// FHIR records shared.
    pub records: usize,
    /// Attachments shared.
    pub attachments: usize,
    /// Categories present.
    pub categories: Vec<ShareCategory>,
}

impl std::fmt::Debug for ShareStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareStarted")
            .field("share", &self.share)
            .field("pairing", &self.pairing)
            .field("qr_expires_at", &self.qr_expires_at)
            .field("expires_at", &self.expires_at)
            .field("records", &self.records)
            .field("attachments", &self.attachments)
            .finish_non_exhaustive()
    }
}

/// The doctor who scanned, as the confirm screen shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorAtTheDoorView {
    /// The pairing (hex).
    pub pairing: String,
    /// The name their card states.
    pub name: String,
    /// Their licence id as stated.
    pub licence: Option<String>,
    /// The check code, `123-4567`.
    pub check_code: String,
    /// Whether the card's attestation is under a clinic key on this device's trust list (an
    /// attestation checked only against the key the card itself names proves nothing: anyone
    /// can attest their own card).
    pub attested: bool,
    /// Honest wording of that.
    pub trust: String,
}

/// A pairing in progress: its session while nobody waits on it.
#[derive(Debug)]
pub(super) enum PairingSlot {
    Waiting(Box<PairingSession>),
    /// Taken by a running wait.
    Busy,
    /// Answered: the doctor's card is known, the patient compares codes.
    Answered(Box<PairingSession>, Box<Card>),
}

impl PatientApp {
    // ------------------------------------------------------------------ share at check-up

    /// Seals the chosen records into a new share, opens a pairing and returns the QR.
    pub async fn start_share(&self, args: ipc::StartShare) -> Result<ShareStarted> {
        args.validate()?;
        let mut sel = Selection {
            categories: args
                .categories
                .iter()
                .map(|c| share::category_of(*c))
                .collect(),
            ..Selection::default()
        };
        for r in &args.records {
            sel.records.insert(crate::session::record_id(r)?);
        }
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let mut g = self.service().await?;
        let items = self
            .vault
            .run(move |v| share::items_from_vault(v, &sel))
            .await?;
        let expires_at = now().saturating_add(args.expires_in_secs);
        let policy = match args.policy {
            PolicyChoice::Never => Policy::Never,
            PolicyChoice::Ask => Policy::Ask,
            PolicyChoice::Allowed => Policy::Allowed,
        };
        let p = g.as_mut().ok_or_else(locked)?;
        let (records, attachments) = (items.records, items.attachments);
        let categories: Vec<ShareCategory> = items
            .categories
            .iter()
            .map(|c| share::share_category(*c))
            .collect();
        let share_id = p
            .create_share(
                items.items,
                ShareOptions {
                    expires_at,
                    policy,
                    delegation_depth: args.depth,
                },
                &sink,
                &op.cancel,
            )
            .await?;
        let session = p.start_pairing(&share_id).await?;
        let view = ShareView {
            id: hex(share_id.as_bytes()),
            created_at: now(),
            expires_at,
            policy: args.policy,
            depth: args.depth,
            categories,
            records,
            attachments,
            grantees: Vec::new(),
        };
        let stored = view.clone();
        let g = self
            .commit(g, move |v| {
                let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                st.version = settings::APP_STATE_VERSION;
                st.shares.push(stored);
                settings::save(v, SHARES, &st)
            })
            .await?;
        drop(g);
        self.show_qr(session, &view)
    }

    /// A fresh QR for a share made earlier ("new QR" on the QR screen, or a second doctor at
    /// the same check-up): a new pairing, the same records, expiry and policy.
    pub async fn new_qr(&self, args: ipc::IdRef) -> Result<ShareStarted> {
        args.validate()?;
        let view = self
            .shares()
            .await?
            .into_iter()
            .find(|s| s.id == args.id)
            .ok_or_else(|| AppError::not_found("that share"))?;
        if view.expires_at <= now() {
            return Err(AppError::new(
                "expired",
                "this share has expired: make a new one",
            ));
        }
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.id)?);
        let session = {
            let mut g = self.service().await?;
            let p = g.as_mut().ok_or_else(locked)?;
            p.start_pairing(&share_id).await?
        };
        self.show_qr(session, &view)
    }

    /// Keeps a pairing for `wait_for_doctor` and renders its QR.
    fn show_qr(&self, session: PairingSession, view: &ShareView) -> Result<ShareStarted> {
        let qr_text = session.qr_text();
        let svg = qr::render_svg(&qr_text, "QR code to show the doctor")?;
        let pairing = hex(&random_id());
        let qr_expires_at = carekey_core::pairing::QrPayload::parse(&qr_text)
            .map(|q| u64::from(q.expires_at))
            .unwrap_or(view.expires_at);
        self.pairings
            .lock()
            .map_err(|_| AppError::internal())?
            .insert(pairing.clone(), PairingSlot::Waiting(Box::new(session)));
        Ok(ShareStarted {
            share: view.id.clone(),
            pairing,
            qr_svg: svg.svg,
            qr_text,
            qr_expires_at,
            expires_at: view.expires_at,
            records: view.records,
            attachments: view.attachments,
            categories: view.categories.clone(),
        })
    }

    /// Waits up to `wait_secs` for the doctor's scan, holding no lock of the service: every
    /// other command answers meanwhile.
    pub async fn wait_for_doctor(&self, args: ipc::Wait) -> Result<DoctorAtTheDoorView> {
        args.validate()?;
        let mut session = {
            let mut m = self.pairings.lock().map_err(|_| AppError::internal())?;
            match m.insert(args.id.clone(), PairingSlot::Busy) {
                Some(PairingSlot::Waiting(s)) => *s,
                Some(other) => {
                    m.insert(args.id.clone(), other);
                    return Err(AppError::new(
                        "busy",
                        "this QR is already being waited on or was answered",
                    ));
                }
                None => {
                    m.remove(&args.id);
                    return Err(AppError::not_found("the pairing"));
                }
            }
        };
        let relay = self
            .patient
            .lock()
            .await
            .as_ref()
            .map(Patient::relay)
            .ok_or_else(locked)?;
        let op = self.ops.start();
        let got = session
            .wait_for_doctor(&relay, args.wait_secs, &op.cancel)
            .await;
        let trust = clinics::load(&self.vault).await?;
        let mut m = self.pairings.lock().map_err(|_| AppError::internal())?;
        match got {
            Ok(door) => {
                m.insert(
                    args.id.clone(),
                    PairingSlot::Answered(Box::new(session), Box::new(door.card.clone())),
                );
                Ok(DoctorAtTheDoorView {
                    pairing: args.id,
                    name: door.card.body.name.clone(),
                    licence: door.card.body.licence_id.clone(),
                    check_code: door.check_code.to_string(),
                    attested: trust.vouches_for(&door.card).is_some(),
                    trust: trust_wording(&trust, &door.card, None),
                })
            }
            Err(e) => {
                // Nobody answered yet: the QR stays valid for another wait. Anything else
                // (expired, closed) ends the pairing.
                if matches!(e, carekey_client::ClientError::NoAnswer) {
                    m.insert(args.id, PairingSlot::Waiting(Box::new(session)));
                } else {
                    m.remove(&args.id);
                }
                Err(e.into())
            }
        }
    }

    /// After comparing check codes: confirm (the doctor gets the grant) or reject (the doctor
    /// is told the patient declined). Returns the relationship id on confirm.
    ///
    /// `categories` narrows a confirm to those kinds of record (absent: the whole share). They
    /// are checked against the share before anything is sent; a refused list leaves the
    /// doctor at the door, so the patient can answer again.
    pub async fn answer_doctor(&self, args: ipc::AnswerDoctor) -> Result<Option<String>> {
        args.validate()?;
        let scope = match &args.categories {
            None => None,
            Some(chosen) => Some(self.narrower_scope(&args.id, chosen).await?),
        };
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        // Counted before the slot is taken: a share that cannot enforce the scope is refused
        // with the doctor still at the door.
        let covered = match &scope {
            None => None,
            Some((share_id, scope)) => {
                Some(p.records_in_scope(share_id, scope).ok_or_else(|| {
                    AppError::new(
                        "not_allowed",
                        "this share was made before a confirm could narrow it: confirm \
                             all of it, or reject and make a new share of only those kinds",
                    )
                })?)
            }
        };
        let slot = self
            .pairings
            .lock()
            .map_err(|_| AppError::internal())?
            .remove(&args.id);
        let Some(PairingSlot::Answered(session, card)) = slot else {
            return Err(AppError::not_found("a doctor's answer to this QR"));
        };
        let (session, card) = (*session, *card);
        let share_id = session.share_id();
        if !args.accept {
            // The doctor's app is told at once ("the patient declined"), not left to time out.
            p.decline(session).await?;
            let (share_id, doctor) = (hex(share_id.as_bytes()), card.body.name.clone());
            let g = self
                .commit(g, move |v| {
                    Ok(v.log_event(&AuditEvent::Declined { share_id, doctor })?)
                })
                .await?;
            drop(g);
            return Ok(None);
        }
        let trust = clinics::load(&self.vault).await?;
        let asked = match &scope {
            Some((_, s)) => GrantScopeView::of(s),
            None => GrantScopeView::of(&Scope::all()),
        };
        let index = match scope {
            // The slot's share is the one the scope was checked against (a pairing never
            // changes share); checked again rather than trusted.
            Some((checked, scope)) if checked == share_id => {
                p.confirm_with_scope(session, scope).await?
            }
            Some(_) => return Err(AppError::internal()),
            None => p.confirm(session).await?,
        };
        let paired_at = p
            .relationship(&index)
            .map(|r| r.paired_at)
            .unwrap_or_else(now);
        let rel = relationship_id(&card, paired_at);
        // What the Access screen will say this doctor sees: the scope the client signed into
        // the grant, read back. The grant was just made, so the fallback (what was asked, no
        // expiry known) only guards a confirm that did not record one.
        let (expires, sees) = p
            .active_grants(&share_id)
            .into_iter()
            .find(|g| g.relationship == index)
            .map_or((0, asked), |g| (g.expires_at, GrantScopeView::of(&g.scope)));
        let grantee = GranteeView {
            relationship: hex(&rel),
            name: card.body.name.clone(),
            trust: trust_wording(&trust, &card, Some(paired_at)),
            status: "active".to_owned(),
            expires_at: expires,
            scope: sees,
        };
        let share_hex = hex(share_id.as_bytes());
        let name = card.body.name.clone();
        let g = self
            .commit(g, move |v| {
                let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                let records = st
                    .shares
                    .iter_mut()
                    .find(|s| s.id == share_hex)
                    .map(|s| {
                        s.grantees.push(grantee);
                        s.records
                    })
                    .unwrap_or(0);
                // The audit line says what this doctor can read, not what the share holds.
                let records = covered.unwrap_or(records);
                settings::save(v, SHARES, &st)?;
                v.log_event(&AuditEvent::Shared {
                    share_id: share_hex,
                    grantee: name,
                    records,
                })?;
                Ok(())
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(Some(hex(&rel)))
    }

    /// The scope of a narrower confirm on the pairing `pairing`, with the share it is for:
    /// `chosen` must be a non-empty subset of the categories the share holds.
    async fn narrower_scope(
        &self,
        pairing: &str,
        chosen: &[ShareCategory],
    ) -> Result<(carekey_client::ShareId, Scope)> {
        let share_id = match self
            .pairings
            .lock()
            .map_err(|_| AppError::internal())?
            .get(pairing)
        {
            Some(PairingSlot::Answered(session, _)) => session.share_id(),
            _ => return Err(AppError::not_found("a doctor's answer to this QR")),
        };
        let share_hex = hex(share_id.as_bytes());
        let view = self
            .shares()
            .await?
            .into_iter()
            .find(|s| s.id == share_hex)
            .ok_or_else(|| AppError::not_found("that share"))?;
        validate::confirm_scope(chosen, &view.categories)?;
        let categories: Vec<Category> = chosen.iter().map(|c| share::category_of(*c)).collect();
        // No records listed: `Scope::new` fails only on too many.
        let scope = Scope::new(&categories, Vec::new()).map_err(|_| AppError::internal())?;
        Ok((share_id, scope))
    }
}
