//! SMART Health Link rows (migration 4, `storage/migrations.rs`): `shl_links` (one per link,
//! named by the hash of its id, with the passcode hash and the attempts left), `shl_files`
//! (the JWE text of each file) and `shl_tickets` (short-lived `location` tickets, by hash).
//! Every function runs inside the caller's transaction; callers that change a link hold the
//! share row lock first ([`crate::owner::lock_share`]), so attempts are counted exactly.

use crate::encoding::{from_db, to_db};
use crate::error::Result;
use crate::quota::{self, QuotaLimits};
use crate::storage::{Tx, Value};

/// A stored link.
#[derive(Debug, Clone)]
pub struct LinkRow {
    /// The share whose audit log records its use.
    pub share_id: [u8; 16],
    /// Passcode salt and hash; both empty for a link without a passcode.
    pub salt: Vec<u8>,
    /// Argon2id hash of the passcode.
    pub hash: Vec<u8>,
    /// Failed attempts left (0: the link is dead).
    pub attempts_left: u32,
    /// Unix seconds.
    pub expires_at: u64,
}

impl LinkRow {
    /// Whether the link needs a passcode.
    pub fn has_passcode(&self) -> bool {
        !self.hash.is_empty()
    }

    /// Whether a viewer may still use it at `now`.
    pub fn live(&self, now: u64) -> bool {
        self.attempts_left > 0 && self.expires_at > now
    }
}

/// What a new link stores.
#[derive(Debug)]
pub struct NewLink<'a> {
    /// Hash of its id.
    pub link_hash: [u8; 32],
    /// Its share.
    pub share_id: [u8; 16],
    /// (content type, JWE text) per file.
    pub files: &'a [(String, String)],
    /// Salt (empty: no passcode).
    pub salt: &'a [u8],
    /// Hash (empty: no passcode).
    pub hash: &'a [u8],
    /// Failed attempts allowed.
    pub attempts: u32,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix seconds.
    pub now: u64,
}

impl NewLink<'_> {
    /// Bytes charged to the share's creator: the JWE texts.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, j)| j.len() as u64).sum()
    }
}

/// Inserts `l` and charges one object and its bytes to the share's creator.
pub fn insert(tx: &mut dyn Tx, limits: &QuotaLimits, l: &NewLink<'_>) -> Result<()> {
    let bytes = to_db("bytes", l.bytes())?;
    quota::charge_share(tx, limits, &l.share_id, 1, bytes)?;
    tx.exec(
        "INSERT INTO shl_links (link_hash, share_id, passcode_salt, passcode_hash, attempts_left, \
         expires_at, created_at, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            (&l.link_hash).into(),
            (&l.share_id).into(),
            l.salt.into(),
            l.hash.into(),
            i64::from(l.attempts).into(),
            to_db("expires_at", l.expires_at)?.into(),
            to_db("now", l.now)?.into(),
            bytes.into(),
        ],
    )?;
    for (i, (ct, jwe)) in l.files.iter().enumerate() {
        tx.exec(
            "INSERT INTO shl_files (link_hash, idx, content_type, jwe) VALUES ($1, $2, $3, $4)",
            &[
                (&l.link_hash).into(),
                to_db("index", i as u64)?.into(),
                ct.as_str().into(),
                jwe.as_bytes().into(),
            ],
        )?;
    }
    Ok(())
}

/// Loads link `link_hash`.
pub fn load(tx: &mut dyn Tx, link_hash: &[u8; 32]) -> Result<Option<LinkRow>> {
    let Some(r) = tx.query_opt(
        "SELECT share_id, passcode_salt, passcode_hash, attempts_left, expires_at FROM shl_links \
         WHERE link_hash = $1",
        &[link_hash.into()],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(LinkRow {
        share_id: r[0].array()?,
        salt: r[1].bytes()?.to_vec(),
        hash: r[2].bytes()?.to_vec(),
        attempts_left: u32::try_from(from_db(r[3].int()?)?).unwrap_or(0),
        expires_at: from_db(r[4].int()?)?,
    }))
}

/// Counts one failed attempt; returns the attempts left. At 0 the files and tickets go and
/// their bytes are released (the row stays until `exp`, so the link answers 404).
pub fn count_failure(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    link_hash: &[u8; 32],
    left: u32,
) -> Result<u32> {
    let left = left.saturating_sub(1);
    tx.exec(
        "UPDATE shl_links SET attempts_left = $2 WHERE link_hash = $1",
        &[link_hash.into(), i64::from(left).into()],
    )?;
    if left == 0 {
        let bytes = tx
            .query_opt(
                "SELECT bytes FROM shl_links WHERE link_hash = $1",
                &[link_hash.into()],
            )?
            .map_or(Ok(0), |r| r[0].int())?;
        quota::charge_share(tx, &QuotaLimits::NONE, share_id, 0, -bytes)?;
        tx.exec(
            "UPDATE shl_links SET bytes = 0 WHERE link_hash = $1",
            &[link_hash.into()],
        )?;
        // Dead: the ciphertext has no further use (SHL "SMART Health Link Manifest Request":
        // past the allowed attempts the link "SHALL be made inactive").
        tx.exec(
            "DELETE FROM shl_files WHERE link_hash = $1",
            &[link_hash.into()],
        )?;
        tx.exec(
            "DELETE FROM shl_tickets WHERE link_hash = $1",
            &[link_hash.into()],
        )?;
    }
    Ok(left)
}

/// The files of a link: (index, content type, JWE text).
pub fn files(tx: &mut dyn Tx, link_hash: &[u8; 32]) -> Result<Vec<(i64, String, Vec<u8>)>> {
    tx.query(
        "SELECT idx, content_type, jwe FROM shl_files WHERE link_hash = $1 ORDER BY idx",
        &[link_hash.into()],
    )?
    .into_iter()
    .map(|mut r| {
        let jwe = std::mem::replace(&mut r[2], Value::Null).into_bytes()?;
        let ct = match &r[1] {
            Value::Text(t) => t.clone(),
            _ => return Err(crate::error::RelayError::Storage("content type".into())),
        };
        Ok((r[0].int()?, ct, jwe))
    })
    .collect()
}

/// Stores a `location` ticket for file `idx` until `expires_at`.
pub fn insert_ticket(
    tx: &mut dyn Tx,
    ticket_hash: &[u8; 32],
    link_hash: &[u8; 32],
    idx: i64,
    expires_at: u64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO shl_tickets (ticket_hash, link_hash, idx, expires_at) VALUES ($1, $2, $3, $4)",
        &[
            ticket_hash.into(),
            link_hash.into(),
            idx.into(),
            to_db("expires_at", expires_at)?.into(),
        ],
    )?;
    Ok(())
}

/// Where the JWE a ticket names lives and its size, if the ticket and its link are both still
/// live at `now`: (link hash, file index, bytes).
pub fn file_by_ticket(
    tx: &mut dyn Tx,
    ticket_hash: &[u8; 32],
    now: u64,
) -> Result<Option<([u8; 32], i64, u64)>> {
    let now = to_db("now", now)?;
    let row = tx.query_opt(
        "SELECT t.link_hash, t.idx, LENGTH(f.jwe) FROM shl_tickets t \
         JOIN shl_links l ON l.link_hash = t.link_hash \
         JOIN shl_files f ON f.link_hash = t.link_hash AND f.idx = t.idx \
         JOIN shares s ON s.share_id = l.share_id \
         WHERE t.ticket_hash = $1 AND t.expires_at > $2 AND l.expires_at > $2 \
         AND l.attempts_left > 0 AND s.expires_at > $2",
        &[ticket_hash.into(), now.into()],
    )?;
    let Some(r) = row else { return Ok(None) };
    let short = || crate::error::RelayError::Storage("short row".into());
    let link_hash: [u8; 32] = r.first().ok_or_else(short)?.array()?;
    let idx = r.get(1).ok_or_else(short)?.int()?;
    let size = from_db(r.get(2).ok_or_else(short)?.int()?)?;
    Ok(Some((link_hash, idx, size)))
}

/// Deletes link `link_hash` of `share_id` with its files and tickets, releasing its quota.
/// Returns whether it existed.
pub fn delete(tx: &mut dyn Tx, share_id: &[u8; 16], link_hash: &[u8; 32]) -> Result<bool> {
    let Some(r) = tx.query_opt(
        "SELECT bytes FROM shl_links WHERE link_hash = $1 AND share_id = $2",
        &[link_hash.into(), share_id.into()],
    )?
    else {
        return Ok(false);
    };
    let bytes = r[0].int()?;
    quota::charge_share(tx, &QuotaLimits::NONE, share_id, -1, -bytes)?;
    for table in ["shl_tickets", "shl_files", "shl_links"] {
        tx.exec(
            &format!("DELETE FROM {table} WHERE link_hash = $1"),
            &[link_hash.into()],
        )?;
    }
    Ok(true)
}

/// Deletes every link of a share (the share is being purged; its quota is released by
/// [`quota::release_share`], which counts the links).
pub fn purge_share(tx: &mut dyn Tx, share_id: &[u8; 16]) -> Result<()> {
    let p: [Value; 1] = [share_id.into()];
    for table in ["shl_tickets", "shl_files"] {
        tx.exec(
            &format!(
                "DELETE FROM {table} WHERE link_hash IN (SELECT link_hash FROM shl_links WHERE share_id = $1)"
            ),
            &p,
        )?;
    }
    tx.exec("DELETE FROM shl_links WHERE share_id = $1", &p)?;
    Ok(())
}

/// Sweeps links past their `exp` and tickets past theirs (at most `batch` links); returns how
/// many links went.
pub fn sweep(tx: &mut dyn Tx, now: u64, batch: i64) -> Result<u64> {
    let now = to_db("now", now)?;
    tx.exec(
        "DELETE FROM shl_tickets WHERE expires_at <= $1",
        &[now.into()],
    )?;
    let rows = tx.query(
        "SELECT share_id, link_hash FROM shl_links WHERE expires_at <= $1 LIMIT $2",
        &[now.into(), batch.into()],
    )?;
    let mut n = 0;
    for r in rows {
        let (sid, lh): ([u8; 16], [u8; 32]) = (r[0].array()?, r[1].array()?);
        if delete(tx, &sid, &lh)? {
            n += 1;
        }
    }
    Ok(n)
}
