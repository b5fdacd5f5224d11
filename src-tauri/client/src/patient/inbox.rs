//! The notes doctors send back (docs/protocol.md "Messages").

use carekey_core::forward::ForwardRequest;
use carekey_core::message::{self, MessageKind};
use carekey_core::wire::Wire;

use crate::error::{ClientError, Result};
pub use crate::ids::ForwardRequestId;
use crate::ids::RelationshipId;
use crate::note::{self, Note};
use crate::relay::MailboxWaiter;

use super::{Patient, PendingForward, Received};

impl Patient {
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
}
