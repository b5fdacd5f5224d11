//! The share's verified access log (docs/protocol.md "Audit chains").

use std::collections::{BTreeMap, HashMap};

use carekey_core::audit::{self, ChainKind, Head};
use carekey_core::capability::FetchReceipt;
use carekey_core::grant::DelegationLink;
use carekey_core::keys::PublicKey;
use carekey_core::wire::{Reader, Wire};

use crate::error::{ClientError, Result};
use crate::ids::{RelationshipId, ShareId};
use crate::relay::{Relay, unb64};

use super::{
    AccessEvent, AccessKind, AccessWarning, GrantView, LoggedEvent, Patient, PatientRelationship,
    ReaderSummary, ShareState, UNACCOUNTED_READER,
};

/// Most audit-log pages one read follows (the relay's page is 1,000 entries).
const MAX_AUDIT_PAGES: usize = 10_000;
/// Relay audit entry kind of a fetch (relay-formats.md "Relay audit chain").
const KIND_FETCH: u8 = 1;
/// Relay audit entry kind of a delegation registration (relay-formats.md "Relay audit chain").
const KIND_DELEGATION_REGISTERED: u8 = 4;
/// How far a receipt's signed time may be from the relay's time for its entry before the line
/// is flagged: the relay's own window for accepting a receipt (600 s by default, docs/relay.md),
/// so a genuine fetch is never flagged and a receipt appended again later is.
pub const RECEIPT_SKEW_WARN_SECS: u64 = 600;

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
        let from = if incremental { st.log_seq } else { 1 };
        let (entries, head) = read_verified_log(&self.relay, &key, share_id, st, from).await?;
        let known = if incremental { st.log_seq } else { 0 };
        // Every delegation registered must have been noticed to the patient with exactly the
        // registered chain (docs/protocol.md "Audit chains"): the relay stores the notice in
        // the transaction that appends the entry, so it is there by the time the entry is.
        let registers_delegations = entries
            .iter()
            .any(|e| e.seq > known && e.kind == KIND_DELEGATION_REGISTERED);
        let noticed = if registers_delegations {
            if let Some(e) = self.read_new_notices(share_id).await? {
                self.alerts.push(e);
            }
            self.noticed_chains(share_id).await?
        } else {
            Vec::new()
        };
        let st = self
            .shares
            .get_mut(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        // A receipt is unique (its nonce is random): one the log holds twice was appended
        // again by the relay. Within what this session verified (from entry 1 on).
        let mut seen: HashMap<(PublicKey, [u8; 16]), u64> = st
            .log
            .iter()
            .filter(|_| incremental)
            .filter_map(|e| Some(((e.reader?, e.nonce?), e.seq)))
            .collect();
        let mut fresh = Vec::new();
        let mut alerts = Vec::new();
        for e in entries.iter().filter(|e| e.seq > known) {
            let mut warnings = Vec::new();
            if e.kind == KIND_FETCH {
                let r = FetchReceipt::from_bytes(&e.body)?;
                // The relay cannot invent fetches: every one carries the reader's signature.
                r.verify()?;
                // ... nor move a genuine receipt from another share's log into this one.
                if r.share_id != share_id.to_bytes() {
                    return Err(ClientError::Tampered(carekey_core::Error::AuditChain {
                        seq: e.seq,
                        reason: "a fetch receipt names another share",
                    }));
                }
                if let Some(first_seq) = seen.get(&(r.reader_key, r.nonce)) {
                    warnings.push(AccessWarning::RepeatedReceipt {
                        first_seq: *first_seq,
                    });
                    alerts.push(tamper(e.seq, "a fetch receipt is logged twice"));
                } else {
                    seen.insert((r.reader_key, r.nonce), e.seq);
                }
                // The reader signed its time; the relay's is only what the relay says.
                if r.time.abs_diff(e.time) > RECEIPT_SKEW_WARN_SECS {
                    warnings.push(AccessWarning::ClockSkew { relay_time: e.time });
                }
                if reader_name(&self.relationships, st, &r.reader_key).is_none() {
                    alerts.push(tamper(e.seq, "a fetch by a reader no grant names"));
                }
                fresh.push(LoggedEvent {
                    seq: e.seq,
                    time: r.time,
                    kind: e.kind,
                    reader: Some(r.reader_key),
                    nonce: Some(r.nonce),
                    objects: fetched_objects(&r.object_id),
                    warnings,
                });
            } else if e.kind == super::link::AUDIT_KIND_LINK_REQUESTED {
                fresh.push(super::link::logged_request(e.seq, e.time, &e.body));
            } else {
                if e.kind == KIND_DELEGATION_REGISTERED
                    && !registered_chain(&e.body).is_some_and(|c| noticed.contains(&c))
                {
                    warnings.push(AccessWarning::UnnoticedDelegation);
                    alerts.push(tamper(e.seq, "a delegation without a matching notice"));
                }
                fresh.push(LoggedEvent {
                    seq: e.seq,
                    time: e.time,
                    kind: e.kind,
                    reader: None,
                    nonce: None,
                    objects: Vec::new(),
                    warnings,
                });
            }
        }
        // Everything verified: only now is anything kept.
        if !incremental {
            st.log.clear();
        }
        st.log.extend(fresh);
        st.log_seq = head.seq;
        st.audit_pin = head;
        self.alerts.extend(alerts);
        let st = self
            .shares
            .get(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        Ok(st
            .log
            .iter()
            .map(|e| match &e.reader {
                Some(reader) => {
                    let who = reader_name(&self.relationships, st, reader);
                    let mut warnings = e.warnings.clone();
                    if who.is_none() {
                        warnings.push(AccessWarning::UnaccountedReader);
                    }
                    AccessEvent {
                        time: e.time,
                        who: who.unwrap_or_else(|| UNACCOUNTED_READER.to_owned()),
                        what: AccessKind::Fetched {
                            objects: e.objects.clone(),
                        },
                        warnings,
                    }
                }
                None if e.kind == super::link::AUDIT_KIND_LINK_REQUESTED => {
                    super::link::access_event(e)
                }
                None => AccessEvent {
                    time: e.time,
                    who: "relay".into(),
                    what: AccessKind::Relay(e.kind),
                    warnings: e.warnings.clone(),
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
                    scope: g.scope.clone(),
                    depth: g.depth,
                })
                .collect()
        })
    }
}

/// The name of whoever holds `reader`: a grantee (its card) or a verified delegate (the
/// colleague's card from its signed invite).
fn reader_name(
    relationships: &BTreeMap<RelationshipId, PatientRelationship>,
    st: &ShareState,
    reader: &PublicKey,
) -> Option<String> {
    st.grants
        .iter()
        .find(|g| g.reader_key == *reader)
        .and_then(|g| relationships.get(&g.relationship))
        .map(|x| x.rel.peer_card.body.name.clone())
        .or_else(|| {
            st.delegations
                .iter()
                .find(|d| d.child_key == *reader)
                .map(|d| d.colleague.body.name.clone())
        })
}

/// The chain a "delegation registered" entry records (relay-formats.md "Relay audit chain":
/// `u16 n || n × bytes32(link)`), or `None` if it does not parse (then no notice matches).
fn registered_chain(body: &[u8]) -> Option<Vec<DelegationLink>> {
    let mut r = Reader::new(body, "delegation registered entry");
    let n = r.u16().ok()?;
    let mut chain = Vec::new();
    for _ in 0..n {
        chain.push(DelegationLink::from_bytes(r.bytes32().ok()?).ok()?);
    }
    r.finish().ok()?;
    Some(chain)
}

/// A tamper alert naming the log entry it is about (never its contents).
fn tamper(seq: u64, reason: &'static str) -> ClientError {
    ClientError::Tampered(carekey_core::Error::AuditChain { seq, reason })
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
        // A receipt the relay appended again is not a second fetch.
        let repeated = e
            .warnings
            .iter()
            .any(|w| matches!(w, AccessWarning::RepeatedReceipt { .. }));
        if let AccessKind::Fetched { objects } = &e.what
            && !repeated
        {
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

/// Reads a share's relay audit log from entry `from` to the relay's signed head, a page at a
/// time, and verifies it (docs/protocol.md "Audit chains"): the entries extend the pinned head
/// (`st.audit_pin`), their last hash is the head the relay signed, and that signature is under
/// the pinned relay key. Returns the entries read and the new head; pins nothing.
/// Checks `head.fresh_signature` over `challenge` under the pinned relay key; a missing one
/// is refused like a wrong one (a front end that strips it must not pass).
fn verify_fresh(
    head: &carekey_relay_api::AuditHead,
    share_id: &ShareId,
    key: &PublicKey,
    challenge: &[u8; 32],
) -> Result<()> {
    let stale = || {
        ClientError::Tampered(carekey_core::Error::AuditChain {
            seq: head.seq,
            reason: "head is not signed for this read (stale or replayed answer)",
        })
    };
    let sig = head.fresh_signature.as_deref().ok_or_else(stale)?;
    let signed = Head {
        seq: head.seq,
        hash: unb64(&head.entry_hash, "audit head")?,
    };
    signed
        .verify_fresh(
            share_id.as_bytes(),
            challenge,
            key,
            &unb64(sig, "audit head fresh signature")?,
        )
        .map_err(|_| stale())
}

pub(super) async fn read_verified_log(
    relay: &Relay,
    key: &PublicKey,
    share_id: &ShareId,
    st: &mut ShareState,
    mut from: u64,
) -> Result<(Vec<audit::Entry>, Head)> {
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
        // A new challenge per page: every answer, the last one above all, must be the
        // relay's head now, not a recorded older answer (docs/protocol.md "Restore and
        // reconciliation").
        let mut challenge = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut challenge);
        let page = relay
            .audit_log(&mut st.owner, share_id, from, &challenge)
            .await?;
        verify_fresh(&page.head, share_id, key, &challenge)?;
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
        key,
        &unb64(&log.head.signature, "audit head signature")?,
    )?;
    Ok((entries, head))
}
