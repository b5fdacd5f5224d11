//! Group commit of fetch audit entries (docs/protocol.md "Audit chains": every fetch is logged durably).
//!
//! A reader GET first checks its token and receipt and reads the object in a read-only
//! transaction (in parallel with other reads), then hands its audit entry to this module and
//! waits. One writer task per relay instance takes everything queued, appends all entries in
//! ONE write transaction (so one commit, one fsync, for the whole batch), and only then wakes
//! every waiter: the object is still served only after its receipt is durably in the chain.
//!
//! Inside the batch, entries are grouped by share in share-id order (so batches of several
//! instances on one PostgreSQL lock share rows in the same order and cannot deadlock); each
//! share row is locked (`FOR UPDATE` on PostgreSQL) before its entries are appended, so the
//! chain order per share stays serialized across instances. Because the read happened in an
//! earlier transaction, the batch re-checks, under the lock, what could have changed since:
//! the share still live, the token still active and unexpired, the blob still stored, the
//! manifest version unchanged. If the batch transaction fails as a whole, every entry is
//! retried in a transaction of its own, so one bad entry cannot fail the others. A receipt
//! already in a chain (same reader key and nonce) is refused, 409 `receipt_replayed`
//! (crate::replay).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::audit::{Chain, Kind};
use crate::credential::STATUS_ACTIVE;
use crate::encoding::from_db;
use crate::error::{RelayError, Result};
use crate::owner;
use crate::replay;
use crate::storage::{Storage, Tx};

/// Most entries appended in one transaction.
pub const MAX_BATCH: usize = 1024;

/// The object a fetch read, re-checked when its entry is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A blob (ids are never reused for other bytes, so "still stored" is enough).
    Blob([u8; 16]),
    /// Several blobs of one batch fetch (one receipt, one entry): all must still be stored.
    Blobs(Vec<[u8; 16]>),
    /// The manifest at this version.
    Manifest(u64),
}

/// One fetch to log.
#[derive(Debug, Clone)]
pub struct FetchEntry {
    /// The share read.
    pub share_id: [u8; 16],
    /// Hash of the bearer token presented.
    pub token_hash: [u8; 32],
    /// What was read.
    pub object: Fetched,
    /// The doctor-signed receipt (the audit entry body).
    pub receipt: Vec<u8>,
    /// Request time (the entry's time).
    pub now: u64,
}

/// What happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Appended and committed: serve the object.
    Committed,
    /// The manifest changed between the read and the append: nothing was logged; read again.
    Stale,
}

#[derive(Debug)]
struct Job {
    entry: FetchEntry,
    done: oneshot::Sender<Result<Logged>>,
}

/// Handle to the writer task of one relay instance.
#[derive(Debug, Clone)]
pub struct FetchLog {
    queue: mpsc::UnboundedSender<Job>,
}

impl FetchLog {
    /// Starts the writer task on the current runtime.
    pub fn spawn(storage: Arc<dyn Storage>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(storage, rx));
        Self { queue }
    }

    /// Queues `entry` and waits until it is durably committed (or refused).
    pub async fn append(&self, entry: FetchEntry) -> Result<Logged> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Job { entry, done })
            .map_err(|_| RelayError::Storage("fetch log writer stopped".into()))?;
        wait.await
            .map_err(|_| RelayError::Storage("fetch log writer dropped an entry".into()))?
    }
}

async fn writer(storage: Arc<dyn Storage>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        commit(storage.as_ref(), jobs).await;
    }
}

async fn commit(storage: &dyn Storage, jobs: Vec<Job>) {
    let (entries, waiters): (Vec<FetchEntry>, Vec<_>) =
        jobs.into_iter().map(|j| (j.entry, j.done)).unzip();
    let entries = Arc::new(entries);
    let batch = Arc::clone(&entries);
    let started = std::time::Instant::now();
    let out = storage
        .transact_log(Box::new(move |tx| {
            append_batch(tx, &batch).map(|v| Box::new(v) as Box<dyn Any + Send>)
        }))
        .await
        .and_then(|b| {
            b.downcast::<Vec<Result<Logged>>>()
                .map(|b| *b)
                .map_err(|_| RelayError::Storage("batch result type mismatch".into()))
        });
    // Sizes and timings only: never ids, tokens or receipts.
    tracing::debug!(
        entries = entries.len(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        ok = out.is_ok(),
        "fetch log batch"
    );
    match out {
        Ok(results) => {
            for (w, r) in waiters.into_iter().zip(results) {
                // A waiter that went away (client gone) still had its fetch logged.
                let _ = w.send(r);
            }
        }
        Err(_) => {
            // Something failed at the database level (connection, deadlock, commit): nothing
            // of the batch is committed. Retry each entry alone so one cannot fail the rest.
            for (i, w) in waiters.into_iter().enumerate() {
                let e = entries[i].clone();
                let r = storage
                    .transact(move |tx| {
                        let mut v = append_batch(tx, std::slice::from_ref(&e))?;
                        v.pop()
                            .unwrap_or_else(|| Err(RelayError::Storage("empty batch".into())))
                    })
                    .await;
                let _ = w.send(r);
            }
        }
    }
}

/// Appends every entry (grouped by share, share-id order) in the caller's transaction.
/// Returns one result per entry; a database-level error aborts the whole batch instead
/// (the transaction may be unusable, e.g. aborted on PostgreSQL).
pub fn append_batch(tx: &mut dyn Tx, entries: &[FetchEntry]) -> Result<Vec<Result<Logged>>> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // Stable: arrival order is kept within a share.
    order.sort_by_key(|&i| entries[i].share_id);
    let mut out: Vec<Option<Result<Logged>>> = entries.iter().map(|_| None).collect();
    let mut i = 0;
    while i < order.len() {
        let share_id = entries[order[i]].share_id;
        let mut j = i;
        while j < order.len() && entries[order[j]].share_id == share_id {
            j += 1;
        }
        let group = &order[i..j];
        for (k, r) in group
            .iter()
            .zip(append_share(tx, &share_id, entries, group)?)
        {
            if let Some(slot) = out.get_mut(*k) {
                *slot = Some(r);
            }
        }
        i = j;
    }
    out.into_iter()
        .map(|r| r.ok_or_else(|| RelayError::Storage("fetch entry without result".into())))
        .collect()
}

fn is_db_error(e: &RelayError) -> bool {
    matches!(e, RelayError::Storage(_))
}

/// Locks one share and appends the entries `idx` of it.
fn append_share(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    entries: &[FetchEntry],
    idx: &[usize],
) -> Result<Vec<Result<Logged>>> {
    let now_min = idx.iter().map(|&k| entries[k].now).min().unwrap_or(0);
    let sh = match owner::lock_share(tx, share_id, now_min) {
        Ok(sh) => sh,
        Err(e) if is_db_error(&e) => return Err(e),
        Err(e) => {
            // Deleted or expired since the read: every fetch of it is refused alike.
            return Ok(idx
                .iter()
                .map(|_| {
                    Err(match &e {
                        RelayError::Gone(m) => RelayError::Gone(m),
                        _ => RelayError::NotFound("no such share"),
                    })
                })
                .collect());
        }
    };
    let mut chain = Chain::load(tx, share_id)?;
    let mut tokens: HashMap<[u8; 32], Option<(i64, u64)>> = HashMap::new();
    let mut blobs: HashMap<[u8; 16], bool> = HashMap::new();
    let mut results = Vec::with_capacity(idx.len());
    let mut logged: Vec<(u64, &[u8])> = Vec::with_capacity(idx.len());
    for &k in idx {
        let e = &entries[k];
        let r = check(
            tx,
            share_id,
            sh.manifest_version,
            e,
            &mut tokens,
            &mut blobs,
        )?;
        if r.as_ref().is_ok_and(|l| *l == Logged::Committed) {
            logged.push((e.now, &e.receipt));
        }
        results.push(r);
    }
    chain.push_many(tx, Kind::Fetch, &logged)?;
    chain.store(tx)?;
    Ok(results)
}

/// Re-checks, under the share lock, what may have changed since the entry's read.
/// `Ok(Err(_))`: refused (nothing logged); `Err(_)`: database failure (aborts the batch).
fn check(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    manifest_version: u64,
    e: &FetchEntry,
    tokens: &mut HashMap<[u8; 32], Option<(i64, u64)>>,
    blobs: &mut HashMap<[u8; 16], bool>,
) -> Result<Result<Logged>> {
    let tok = match tokens.get(&e.token_hash) {
        Some(t) => *t,
        None => {
            let t = tx
                .query_opt(
                    "SELECT status, expires_at FROM tokens WHERE share_id = $1 AND token_hash = $2",
                    &[share_id.into(), (&e.token_hash).into()],
                )?
                .map(|r| Ok::<_, RelayError>((r[0].int()?, from_db(r[1].int()?)?)))
                .transpose()?;
            tokens.insert(e.token_hash, t);
            t
        }
    };
    match tok {
        None => return Ok(Err(RelayError::Unauthorized("unknown read token"))),
        Some((status, expires_at)) if status != STATUS_ACTIVE || expires_at <= e.now => {
            return Ok(Err(RelayError::Gone("read token revoked or expired")));
        }
        Some(_) => {}
    }
    match &e.object {
        Fetched::Blob(blob_id) => {
            if !still_stored(tx, share_id, blob_id, blobs)? {
                return Ok(Err(RelayError::NotFound("no such blob")));
            }
        }
        Fetched::Blobs(ids) => {
            for blob_id in ids {
                if !still_stored(tx, share_id, blob_id, blobs)? {
                    return Ok(Err(RelayError::NotFound("no such blob")));
                }
            }
        }
        Fetched::Manifest(v) => {
            if *v != manifest_version {
                return Ok(Ok(Logged::Stale));
            }
        }
    }
    // Last, so a refused fetch does not use up its receipt: the same receipt is never
    // logged twice (crate::replay; also twice within this batch).
    match replay::claim(tx, &e.receipt) {
        Ok(true) => Ok(Ok(Logged::Committed)),
        Ok(false) => Ok(Err(replay::replayed())),
        // Malformed receipt bytes refuse this entry only, not the batch.
        Err(err) if !is_db_error(&err) => Ok(Err(err)),
        Err(err) => Err(err),
    }
}

/// Whether `blob_id` is still stored (memoized for the batch).
fn still_stored(
    tx: &mut dyn Tx,
    share_id: &[u8; 16],
    blob_id: &[u8; 16],
    blobs: &mut HashMap<[u8; 16], bool>,
) -> Result<bool> {
    if let Some(s) = blobs.get(blob_id) {
        return Ok(*s);
    }
    let s = tx
        .query_opt(
            "SELECT 1 FROM blobs WHERE share_id = $1 AND blob_id = $2",
            &[share_id.into(), blob_id.into()],
        )?
        .is_some();
    blobs.insert(*blob_id, s);
    Ok(s)
}
