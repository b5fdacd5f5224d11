//! Hash-chained, head-signed event logs (docs/protocol.md "Audit chains").
//!
//! One format serves the vault's local log and the relay's per-share log (byte layout in
//! docs/relay-formats.md "Relay audit chain"); they differ only in their labels, so an entry of
//! one can never verify as the other. Verification walks the chain and names the first entry
//! that breaks it; a pinned head lets a later download prove it extends what was seen before
//! (no truncation, no fork).

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::keys::{PublicKey, SigningSecret};
use crate::label;
use crate::wire::{Reader, Wire, Writer};

/// Which log a chain is: selects its domain labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// A device's own log, kept in its vault.
    Local,
    /// The relay's per-share log.
    Relay,
}

impl ChainKind {
    fn entry_label(self) -> &'static str {
        match self {
            ChainKind::Local => label::AUDIT_ENTRY_HASH,
            ChainKind::Relay => label::RELAY_AUDIT_ENTRY_HASH,
        }
    }
    fn head_label(self) -> &'static str {
        match self {
            ChainKind::Local => label::AUDIT_HEAD_SIG,
            ChainKind::Relay => label::RELAY_AUDIT_HEAD_SIG,
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position, from 1.
    pub seq: u64,
    /// Hash of the previous entry (zeros for the first).
    pub prev_hash: [u8; 32],
    /// Unix seconds (the writer's clock; informational).
    pub time: u64,
    /// Event kind (meaning depends on the log).
    pub kind: u8,
    /// Event body.
    pub body: Vec<u8>,
}

const ENTRY_VERSION: u8 = 1;

impl Wire for Entry {
    const WHAT: &'static str = "audit entry";
    fn encode(&self, w: &mut Writer) {
        w.u8(ENTRY_VERSION);
        w.u64(self.seq);
        w.raw(&self.prev_hash);
        w.u64(self.time);
        w.u8(self.kind);
        w.bytes32(&self.body);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.version(ENTRY_VERSION)?;
        Ok(Self {
            seq: r.u64()?,
            prev_hash: r.array()?,
            time: r.u64()?,
            kind: r.u8()?,
            body: r.bytes32()?.to_vec(),
        })
    }
}

impl Entry {
    /// The entry hash of docs/relay-formats.md (same layout for both chain kinds).
    pub fn hash(&self, chain: ChainKind, scope: &[u8; 16]) -> [u8; 32] {
        let mut w = Writer::new();
        w.raw(scope);
        w.u64(self.seq);
        w.raw(&self.prev_hash);
        w.u64(self.time);
        w.u8(self.kind);
        w.bytes32(&self.body);
        Sha256::digest(label::signed_message(chain.entry_label(), w.as_slice())).into()
    }
}

/// The head of a chain: sequence number and hash of its last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Last sequence number (0 for an empty chain).
    pub seq: u64,
    /// Hash of the last entry (zeros for an empty chain).
    pub hash: [u8; 32],
}

impl Head {
    /// The head of an empty chain.
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: [0; 32],
    };

    fn signed_body(&self, scope: &[u8; 16]) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(scope);
        w.u64(self.seq);
        w.raw(&self.hash);
        w.into_bytes()
    }

    /// Signs this head.
    pub fn sign(&self, chain: ChainKind, scope: &[u8; 16], key: &SigningSecret) -> [u8; 64] {
        key.sign(chain.head_label(), &self.signed_body(scope))
    }

    /// The relay's signature of this head bound to a reader's `challenge`
    /// (docs/relay-formats.md "Relay audit chain", `fresh_sig`).
    pub fn sign_fresh(
        &self,
        scope: &[u8; 16],
        challenge: &[u8; 32],
        key: &SigningSecret,
    ) -> [u8; 64] {
        key.sign(
            label::RELAY_AUDIT_HEAD_FRESH_SIG,
            &self.fresh_body(scope, challenge),
        )
    }

    /// Verifies a relay head signature bound to `challenge`: the head is the relay's head at
    /// the time of the read that carried this challenge, not a recorded older answer.
    pub fn verify_fresh(
        &self,
        scope: &[u8; 16],
        challenge: &[u8; 32],
        key: &PublicKey,
        sig: &[u8; 64],
    ) -> Result<()> {
        key.verify(
            label::RELAY_AUDIT_HEAD_FRESH_SIG,
            &self.fresh_body(scope, challenge),
            sig,
            "audit head",
        )
        .map_err(|_| Error::AuditChain {
            seq: self.seq,
            reason: "head is not signed for this read (stale or replayed answer)",
        })
    }

    fn fresh_body(&self, scope: &[u8; 16], challenge: &[u8; 32]) -> Vec<u8> {
        let mut body = self.signed_body(scope);
        body.extend_from_slice(challenge);
        body
    }

    /// Verifies a head signature.
    pub fn verify(
        &self,
        chain: ChainKind,
        scope: &[u8; 16],
        key: &PublicKey,
        sig: &[u8; 64],
    ) -> Result<()> {
        key.verify(
            chain.head_label(),
            &self.signed_body(scope),
            sig,
            "audit head",
        )
        .map_err(|_| Error::AuditChain {
            seq: self.seq,
            reason: "head signature is invalid",
        })
    }
}

/// An append-only chain being written.
#[derive(Debug, Clone)]
pub struct Chain {
    kind: ChainKind,
    scope: [u8; 16],
    head: Head,
}

impl Chain {
    /// A chain continuing from `head` (use [`Head::EMPTY`] for a new one).
    pub fn resume(kind: ChainKind, scope: [u8; 16], head: Head) -> Self {
        Self { kind, scope, head }
    }
    /// Current head.
    pub fn head(&self) -> Head {
        self.head
    }
    /// Makes the next entry and advances the head.
    pub fn append(&mut self, time: u64, kind: u8, body: Vec<u8>) -> Entry {
        let e = Entry {
            seq: self.head.seq + 1,
            prev_hash: self.head.hash,
            time,
            kind,
            body,
        };
        self.head = Head {
            seq: e.seq,
            hash: e.hash(self.kind, &self.scope),
        };
        e
    }
}

/// Verifies that `entries` (ascending, contiguous) extend `pinned`, and returns the new head.
///
/// `entries` may start at or before the pinned entry (the overlap must match the pin) or right
/// after it. Errors name the first entry that breaks the chain: a gap, a wrong `prev_hash`, a
/// different entry where the pin was, or a log shorter than the pin (truncation).
pub fn verify_extends(
    kind: ChainKind,
    scope: &[u8; 16],
    pinned: Head,
    entries: &[Entry],
) -> Result<Head> {
    let Some(first) = entries.first() else {
        return if pinned.seq == 0 {
            Ok(pinned)
        } else {
            Err(Error::AuditChain {
                seq: pinned.seq,
                reason: "log is shorter than the pinned head (truncated)",
            })
        };
    };
    if first.seq == 0 || first.seq > pinned.seq + 1 {
        return Err(Error::AuditChain {
            seq: first.seq,
            reason: "log does not start at or before the entry after the pinned head",
        });
    }
    if first.seq == 1 && first.prev_hash != [0; 32] {
        return Err(Error::AuditChain {
            seq: 1,
            reason: "first entry does not start from the empty chain",
        });
    }
    if first.seq == pinned.seq + 1 && first.prev_hash != pinned.hash {
        return Err(Error::AuditChain {
            seq: first.seq,
            reason: "does not extend the pinned head (forked log)",
        });
    }
    let mut head: Option<Head> = None;
    for e in entries {
        if let Some(h) = head {
            if e.seq != h.seq + 1 {
                return Err(Error::AuditChain {
                    seq: e.seq,
                    reason: "sequence gap",
                });
            }
            if e.prev_hash != h.hash {
                return Err(Error::AuditChain {
                    seq: e.seq,
                    reason: "previous-hash link does not match",
                });
            }
        }
        let h = Head {
            seq: e.seq,
            hash: e.hash(kind, scope),
        };
        if h.seq == pinned.seq && h.hash != pinned.hash {
            return Err(Error::AuditChain {
                seq: h.seq,
                reason: "differs from the pinned entry (forked or rewritten log)",
            });
        }
        head = Some(h);
    }
    let head = head.expect("entries is not empty");
    if head.seq < pinned.seq {
        return Err(Error::AuditChain {
            seq: head.seq,
            reason: "log is shorter than the pinned head (truncated)",
        });
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> (Vec<Entry>, Head) {
        let mut c = Chain::resume(ChainKind::Local, [1; 16], Head::EMPTY);
        let es = (0..n)
            .map(|i| c.append(1000 + i, 1, format!("event {i}").into_bytes()))
            .collect();
        (es, c.head())
    }

    #[test]
    fn verifies_and_pinpoints_tampering() {
        let (mut es, head) = chain(10);
        let s = [1; 16];
        assert_eq!(
            verify_extends(ChainKind::Local, &s, Head::EMPTY, &es),
            Ok(head)
        );
        // Wrong kind: every entry hash differs, so the link after entry 1 breaks.
        assert!(verify_extends(ChainKind::Relay, &s, Head::EMPTY, &es).is_err());
        es[4].body = b"tampered".to_vec();
        assert_eq!(
            verify_extends(ChainKind::Local, &s, Head::EMPTY, &es),
            Err(Error::AuditChain {
                seq: 6,
                reason: "previous-hash link does not match"
            })
        );
    }

    #[test]
    fn pin_catches_truncation_and_fork() {
        let (es, head) = chain(10);
        let s = [1; 16];
        let pin = verify_extends(ChainKind::Local, &s, Head::EMPTY, &es[..6]).expect("ok");
        assert_eq!(
            verify_extends(ChainKind::Local, &s, pin, &es[6..]),
            Ok(head)
        );
        assert_eq!(verify_extends(ChainKind::Local, &s, pin, &es), Ok(head));
        assert!(verify_extends(ChainKind::Local, &s, head, &es[..8]).is_err());
        let (other, _) = {
            let mut c = Chain::resume(ChainKind::Local, s, pin);
            let _ = &es;
            let mut v = es[..6].to_vec();
            v.push(c.append(5, 2, b"forked".to_vec()));
            (v, c.head())
        };
        assert!(verify_extends(ChainKind::Local, &s, head, &other).is_err());
    }
}
