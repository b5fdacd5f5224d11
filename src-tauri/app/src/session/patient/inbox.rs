//! The inbox: notes doctors wrote back (kept sealed in the vault until accepted or
//! dismissed) and doctors' requests to forward to a colleague.

use carekey_client::note::Note;
use carekey_client::patient::ForwardRequestId;
use carekey_vault::AuditEvent;
use serde::{Deserialize, Serialize};

use super::access::{GrantScopeView, GranteeView, SHARES, SharesState};
use super::{PatientApp, day, relationship_id, trust_wording};
use crate::error::{AppError, Result};
use crate::events::AppEvent;
use crate::ipc::{self, Validate};
use crate::session::{clinics, settings};
use crate::session::{hex, locked, now, random_id};
use crate::validate;

/// State name of the notes received and not yet answered.
const INBOX: &str = "carekey/app/patient/inbox/v1";

/// A note kept sealed in the vault until the patient accepts or dismisses it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredNote {
    id: String,
    relationship: String,
    received_at: u64,
    /// `carekey_client::note::Note::to_bytes`, base64.
    note: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InboxState {
    version: u32,
    notes: Vec<StoredNote>,
}

/// What the Inbox lists for one note.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxNoteView {
    /// Note id (hex) for `answer_note`.
    pub id: String,
    /// Author's card name.
    pub author: String,
    /// "signature valid, from the device you paired with on …".
    pub signature: String,
    /// FHIR resource type.
    pub resource_type: String,
    /// A title for the list.
    pub title: String,
    /// When it arrived (unix seconds).
    pub received_at: u64,
    /// The resource (for the detail view).
    pub resource: serde_json::Value,
}

impl PatientApp {
    // ------------------------------------------------------------------ inbox

    /// Polls every relationship's mailbox once (up to `wait_secs` for the first), keeps each
    /// verified note sealed in the vault, and only then deletes it at the relay: a crash
    /// between receive and accept loses nothing. Returns the notes waiting.
    pub async fn check_inbox(&self, wait_secs: u64) -> Result<Vec<InboxNoteView>> {
        let waiters = {
            let g = self.patient.lock().await;
            let p = g.as_ref().ok_or_else(locked)?;
            let mut w = Vec::new();
            for r in p.relationships() {
                w.push((
                    r.id,
                    relationship_id(&r.card, r.paired_at),
                    p.inbox_waiter(&r.id)?,
                ));
            }
            w
        };
        for (n, (index, rel, waiter)) in waiters.into_iter().enumerate() {
            // Only the first mailbox long-polls; the rest are read as they are.
            let wait = if n == 0 { wait_secs } else { 0 };
            let msgs = waiter.wait(wait).await?;
            if msgs.is_empty() {
                continue;
            }
            let mut g = self.service().await?;
            let p = g.as_mut().ok_or_else(locked)?;
            let received = p.open_inbox(&index, msgs)?;
            let mut stored = Vec::new();
            for note in &received.notes {
                let bytes = note.to_bytes()?;
                stored.push(StoredNote {
                    id: hex(&random_id()),
                    relationship: hex(&rel),
                    received_at: now(),
                    note: data_encoding::BASE64.encode(&bytes),
                });
            }
            let requests = p.forward_requests().len();
            // Save notes and the advanced cursor first, then acknowledge at the relay.
            let mut g = self
                .commit(g, move |v| {
                    let mut st: InboxState = settings::load(v, INBOX)?.unwrap_or_default();
                    st.version = settings::APP_STATE_VERSION;
                    st.notes.extend(stored);
                    settings::save(v, INBOX, &st)
                })
                .await?;
            let p = g.as_mut().ok_or_else(locked)?;
            p.ack_inbox(&index).await?;
            let g = self.commit(g, |_| Ok(())).await?;
            drop(g);
            // The relay no longer holds what came: only a backup brings it back on a new
            // device (docs/protocol.md "Restore and reconciliation").
            self.schedule_backup();
            let notes = self.inbox().await?.len();
            self.events.emit(AppEvent::InboxChanged {
                notes,
                forward_requests: requests,
            });
            if let Some(e) = received.rejected {
                let e = AppError::from(e);
                self.events.emit(AppEvent::Problem {
                    code: e.code,
                    message: e.message,
                });
            }
        }
        self.inbox().await
    }

    /// The notes waiting in the vault (signatures re-verified as they are read).
    pub async fn inbox(&self) -> Result<Vec<InboxNoteView>> {
        let st: InboxState = self
            .vault
            .run(|v| Ok(settings::load(v, INBOX)?.unwrap_or_default()))
            .await?;
        let trust = clinics::load(&self.vault).await?;
        let mut out = Vec::new();
        for s in st.notes {
            let note = decode_note(&s.note)?;
            let ty = note
                .resource
                .get("resourceType")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("Resource")
                .to_owned();
            let title = note
                .resource
                .pointer("/code/text")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(&ty)
                .to_owned();
            out.push(InboxNoteView {
                id: s.id,
                author: note.author.body.name.clone(),
                signature: format!(
                    "signature valid, from {}",
                    trust_wording(&trust, &note.author, Some(s.received_at))
                ),
                resource_type: ty,
                title,
                received_at: s.received_at,
                resource: note.resource,
            });
        }
        Ok(out)
    }

    /// Accepts a note into the vault (kept with its signature) or dismisses it.
    pub async fn answer_note(&self, args: ipc::Answer) -> Result<()> {
        args.validate()?;
        self.vault
            .run(move |v| {
                let mut st: InboxState = settings::load(v, INBOX)?.unwrap_or_default();
                let at = st
                    .notes
                    .iter()
                    .position(|n| n.id == args.id)
                    .ok_or_else(|| AppError::not_found("the note"))?;
                if args.accept {
                    let note = decode_note(&st.notes[at].note)?;
                    let record = carekey_client::note::accept(v, &note)?;
                    v.log_event(&AuditEvent::NoteAccepted {
                        record,
                        author: note.author.body.name.clone(),
                    })?;
                }
                st.notes.remove(at);
                settings::save(v, INBOX, &st)
            })
            .await?;
        self.schedule_backup();
        Ok(())
    }

    /// Approves or declines a doctor's request to forward to a colleague.
    pub async fn answer_forward(&self, args: ipc::Answer) -> Result<()> {
        args.validate()?;
        let id = ForwardRequestId(validate::hex_id("request", &args.id)?);
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let request = p
            .forward_requests()
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| AppError::not_found("the forward request"))?;
        let granted = p.answer_forward(&id, args.accept).await?;
        let share_hex = hex(request.share_id.as_bytes());
        // An approved colleague holds a grant of the patient's own, like a doctor at a
        // check-up: listed under the share (with what it covers) so it can be revoked there.
        let grantee = match granted {
            Some(index) => {
                let trust = clinics::load(&self.vault).await?;
                let card = &request.colleague;
                let paired_at = p
                    .relationship(&index)
                    .map(|r| r.paired_at)
                    .unwrap_or_else(now);
                let expires_at = p
                    .active_grants(&request.share_id)
                    .into_iter()
                    .find(|g| g.relationship == index)
                    .map(|g| g.expires_at)
                    .unwrap_or(0);
                let seen = format!(
                    "a colleague {} asked you to approve on {} (self-asserted card)",
                    request.from_name,
                    day(paired_at)
                );
                Some(GranteeView {
                    relationship: hex(&relationship_id(card, paired_at)),
                    name: card.body.name.clone(),
                    trust: trust.wording(card, &seen),
                    status: "active".to_owned(),
                    expires_at,
                    scope: GrantScopeView::of(&request.scope),
                })
            }
            None => None,
        };
        let event = AuditEvent::ForwardAnswered {
            share_id: share_hex.clone(),
            doctor: request.from_name,
            colleague: request.colleague.body.name.clone(),
            approved: args.accept,
        };
        let g = self
            .commit(g, move |v| {
                if let Some(grantee) = grantee {
                    let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                    if let Some(s) = st.shares.iter_mut().find(|s| s.id == share_hex) {
                        s.grantees.push(grantee);
                    }
                    settings::save(v, SHARES, &st)?;
                }
                Ok(v.log_event(&event)?)
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(())
    }
}

fn decode_note(b64: &str) -> Result<Note> {
    let bytes = data_encoding::BASE64
        .decode(b64.as_bytes())
        .map_err(|_| AppError::new("tampered", "a stored note cannot be read"))?;
    Ok(Note::from_bytes(&bytes)?)
}
