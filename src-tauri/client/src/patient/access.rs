//! The share's verified access log (docs/protocol.md "Audit chains").

use carekey_core::audit::{self, ChainKind, Head};
use carekey_core::capability::FetchReceipt;
use carekey_core::wire::Wire;

use crate::error::{ClientError, Result};
use crate::ids::ShareId;
use crate::relay::unb64;

use super::{AccessEvent, AccessKind, GrantView, LoggedEvent, Patient, ReaderSummary};

/// Most audit-log pages one read follows (the relay's page is 1,000 entries).
const MAX_AUDIT_PAGES: usize = 10_000;

impl Patient {
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
            } else if e.kind == super::link::AUDIT_KIND_LINK_REQUESTED {
                fresh.push(super::link::logged_request(e.time, &e.body));
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
                None if e.kind == super::link::AUDIT_KIND_LINK_REQUESTED => {
                    super::link::access_event(e)
                }
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

/// The objects a receipt names: a batch receipt (relay-formats.md "Batch fetch") lists its
/// blob ids after `blobs:`, 32 hex characters each; anything else names one object.
pub(super) fn fetched_objects(object_id: &str) -> Vec<String> {
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
