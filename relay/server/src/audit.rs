//! Per-share audit hash chain (docs/protocol.md "Audit chains"; relay-formats.md "Relay audit chain").
//!
//! Appends happen inside the transaction of the event they record, after the share row was
//! locked, so appends are serialized per share even across relay instances on PostgreSQL.
//! The head is signed with the relay's own Ed25519 key when the owner reads the log.

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::encoding::{self, from_db, put_bytes32};
use crate::error::{RelayError, Result};
use crate::storage::{Tx, Value};

/// Domain label of an audit entry hash.
pub const ENTRY_LABEL: &[u8] = b"carekey/v1/relay-audit-entry";
/// Domain label of the relay's signature over an audit head.
pub const HEAD_LABEL: &[u8] = b"carekey/v1/relay-audit-head";
/// Domain label of the relay's signature over an audit head and a reader's challenge.
pub const FRESH_HEAD_LABEL: &[u8] = b"carekey/v1/relay-fresh-head";
/// `relay_meta` row holding the relay's audit signing key seed.
pub const KEY_META_NAME: &str = "audit_signing_key";
/// Most rows in one audit INSERT statement.
pub const INSERT_ROWS: usize = 16;
/// Most entries returned by one audit read.
pub const PAGE_SIZE: i64 = 1000;
/// Most entry body bytes in one audit read (at least one entry is always answered): a batch
/// fetch receipt is up to ~8.4 KB, so 1000 of them would make an ~11 MB answer.
pub const PAGE_BYTES: usize = 1 << 20;

/// Entry kinds (relay-formats.md "Relay audit chain").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A fetch; body = the receipt bytes.
    Fetch = 1,
    /// A token registered; body = token_hash || reader_key || expires_at u64 || depth u8.
    TokenRegistered = 2,
    /// A token revoked; body = token_hash.
    TokenRevoked = 3,
    /// A delegation registered; body = u16 n || n × bytes32(link).
    DelegationRegistered = 4,
    /// The share was created; body empty.
    ShareCreated = 5,
    /// The manifest was swapped; body = version u64.
    ManifestSwapped = 6,
    /// An epoch was deleted; body = epoch u32.
    EpochDeleted = 7,
    /// A token expired; body = token_hash.
    TokenExpired = 8,
    /// A SMART Health Link's manifest was requested; body = outcome u8 (0 served, 1 wrong
    /// passcode) || the self-asserted recipient, UTF-8, at most 100 bytes
    /// (crate::health_link::wire::audit_body).
    ShlManifestRequested = 9,
    /// A SMART Health Link was published; body = link_hash.
    ShlPublished = 10,
    /// A SMART Health Link was deleted by the owner; body = link_hash.
    ShlDeleted = 11,
}

/// `entry_hash` of relay-formats.md.
pub fn entry_hash(
    share_id: &[u8; 16],
    seq: u64,
    prev_hash: &[u8; 32],
    time: u64,
    kind: u8,
    body: &[u8],
) -> Result<[u8; 32]> {
    let mut m = Vec::with_capacity(ENTRY_LABEL.len() + 100 + body.len());
    m.extend_from_slice(ENTRY_LABEL);
    m.push(0);
    m.extend_from_slice(share_id);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev_hash);
    m.extend_from_slice(&time.to_be_bytes());
    m.push(kind);
    put_bytes32(&mut m, body)?;
    Ok(Sha256::digest(&m).into())
}

/// The message the relay signs for a head.
pub fn head_message(share_id: &[u8; 16], seq: u64, entry_hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_LABEL.len() + 57);
    m.extend_from_slice(HEAD_LABEL);
    m.push(0);
    m.extend_from_slice(share_id);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(entry_hash);
    m
}

/// The message the relay signs for a head read with `challenge` (docs/relay-formats.md
/// "Relay audit chain", `fresh_sig`): the head message under its own label, then the
/// challenge, so a recorded answer cannot pass for a later read.
pub fn fresh_head_message(
    share_id: &[u8; 16],
    seq: u64,
    entry_hash: &[u8; 32],
    challenge: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(FRESH_HEAD_LABEL.len() + 89);
    m.extend_from_slice(FRESH_HEAD_LABEL);
    m.push(0);
    m.extend_from_slice(share_id);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(entry_hash);
    m.extend_from_slice(challenge);
    m
}

/// A share's chain head, loaded once and advanced in memory by one or more appends in the
/// same transaction (the fetch group commit appends many entries of one share at once). The
/// caller must already hold the share row lock (see [`crate::owner::lock_share`]).
#[derive(Debug)]
pub struct Chain {
    share_id: [u8; 16],
    seq: u64,
    head: [u8; 32],
    dirty: bool,
}

impl Chain {
    /// Loads the current head of `share_id`.
    pub fn load(tx: &mut dyn Tx, share_id: &[u8; 16]) -> Result<Self> {
        let row = tx
            .query_opt(
                "SELECT audit_seq, audit_head FROM shares WHERE share_id = $1",
                &[share_id.into()],
            )?
            .ok_or(RelayError::NotFound("no such share"))?;
        Ok(Self {
            share_id: *share_id,
            seq: from_db(row[0].int()?)?,
            head: row[1].array()?,
            dirty: false,
        })
    }

    /// Inserts the next entry and returns its sequence number; [`Chain::store`] must follow.
    pub fn push(&mut self, tx: &mut dyn Tx, now: u64, kind: Kind, body: &[u8]) -> Result<u64> {
        self.push_many(tx, kind, &[(now, body)])?;
        Ok(self.seq)
    }

    /// Inserts one entry per `(time, body)`, in order, with multi-row INSERTs of
    /// [`INSERT_ROWS`], 4 or 1 rows (three distinct statements to keep prepared; few round
    /// trips on PostgreSQL). [`Chain::store`] must follow.
    pub fn push_many(
        &mut self,
        tx: &mut dyn Tx,
        kind: Kind,
        entries: &[(u64, &[u8])],
    ) -> Result<()> {
        let mut rest = entries;
        while !rest.is_empty() {
            // Statements of 16, 4 or 1 rows only: three distinct statements to keep prepared.
            let n = [INSERT_ROWS, 4, 1]
                .into_iter()
                .find(|&n| n <= rest.len())
                .unwrap_or(1);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut sql = String::from(
                "INSERT INTO audit (share_id, seq, prev_hash, time, kind, body, entry_hash) VALUES ",
            );
            let mut params = Vec::with_capacity(chunk.len() * 7);
            for (i, (time, body)) in chunk.iter().enumerate() {
                let seq = self.seq + 1;
                let prev = self.head;
                let h = entry_hash(&self.share_id, seq, &prev, *time, kind as u8, body)?;
                if i > 0 {
                    sql.push_str(", ");
                }
                let b = i * 7;
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                ));
                params.extend([
                    (&self.share_id).into(),
                    encoding::to_db("seq", seq)?.into(),
                    (&prev).into(),
                    encoding::to_db("time", *time)?.into(),
                    Value::Int(i64::from(kind as u8)),
                    (*body).into(),
                    (&h).into(),
                ]);
                self.seq = seq;
                self.head = h;
                self.dirty = true;
            }
            tx.exec(&sql, &params)?;
        }
        Ok(())
    }

    /// Writes the new head back to the share row (nothing if no entry was pushed).
    pub fn store(&self, tx: &mut dyn Tx) -> Result<()> {
        if self.dirty {
            tx.exec(
                "UPDATE shares SET audit_seq = $2, audit_head = $3 WHERE share_id = $1",
                &[
                    (&self.share_id).into(),
                    encoding::to_db("seq", self.seq)?.into(),
                    (&self.head).into(),
                ],
            )?;
        }
        Ok(())
    }
}

/// Appends one entry. The caller must already hold the share row lock (see
/// [`crate::owner::lock_share`]) in the same transaction.
pub fn append(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    now: u64,
    kind: Kind,
    body: &[u8],
) -> Result<u64> {
    // A fetch entry's body is its receipt: never log one twice (crate::replay).
    if kind == Kind::Fetch && !crate::replay::claim(tx, body)? {
        return Err(crate::replay::replayed());
    }
    let mut chain = Chain::load(tx, share_id)?;
    let seq = chain.push(tx, now, kind, body)?;
    chain.store(tx)?;
    Ok(seq)
}

/// Loads the relay's audit key, generating and storing it on first start. Every instance on
/// one database ends up with the same key.
pub async fn load_or_create_key(storage: &dyn crate::storage::Storage) -> Result<SigningKey> {
    let fresh: [u8; 32] = encoding::random();
    let seed: [u8; 32] = storage
        .transact(move |tx| {
            tx.exec(
                "INSERT INTO relay_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[KEY_META_NAME.into(), (&fresh).into()],
            )?;
            let row = tx
                .query_opt("SELECT value FROM relay_meta WHERE name = $1", &[KEY_META_NAME.into()])?
                .ok_or_else(|| RelayError::Storage("audit key missing".into()))?;
            row[0].array::<32>()
        })
        .await?;
    Ok(SigningKey::from_bytes(&seed))
}
