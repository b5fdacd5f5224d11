//! Downloads: blob, batch, backup, manifest and SHL file bodies streamed from storage piece by
//! piece, so a slow reader holds two pieces of memory, not the whole blob (docs/relay.md
//! "Streaming").
//!
//! A handler checks and plans the download in its read transaction: the layout of the answer
//! as a list of segments, the bytes already in memory (length prefixes, small blobs, up to
//! [`INLINE_BYTES`] in all) and the cells still in storage. The audit entry is committed before
//! the answer starts, as before. The body ([`Download`]) then reads each piece of at most
//! [`PIECE_BYTES`] in a read transaction of its own, one piece ahead of hyper: the next read
//! starts when the previous piece is handed over, and no further one until hyper takes it. The
//! memory of one download is about two pieces plus hyper's write buffer, whatever the blob size
//! and however slowly the client reads. A client that stops reading is cut by the send timeout (`crate::server`).
//!
//! The wire format is unchanged: same bytes, `Content-Length` set (the body's exact size).
//! A cell deleted while its blob streams (the owner deleted the epoch, the share expired)
//! fails the next piece and the connection is cut before the announced length: the client sees
//! a truncated body, never other bytes.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::encoding::{from_db, to_db};
use crate::error::{RelayError, Result};
use crate::storage::{Cell, Storage, Tx, Value};

/// Largest piece read from storage at once and handed to hyper.
pub const PIECE_BYTES: usize = 256 << 10;

/// Blob bytes read into memory while planning: two pieces, what a streamed download holds
/// anyway (the piece hyper writes and the one read ahead), so the bound does not change. Why
/// not one piece: a check-up's batches of small records are a little over 256 KiB (the
/// largest Synthea patient: 17 batches of ≈ 310 KiB), and each then paid a second read
/// transaction and a blocking-pool hop for its last few records after the audit commit.
pub const INLINE_BYTES: usize = 2 * PIECE_BYTES;

/// One part of an answer body.
#[derive(Debug, Clone)]
enum Segment {
    /// Bytes in memory.
    Ready(Bytes),
    /// `len` bytes of a stored cell, from `offset` on.
    Stored { cell: Cell, offset: u64, len: u64 },
}

/// The bytes a download still has to send, in order.
#[derive(Debug, Default)]
pub struct Plan {
    segments: VecDeque<Segment>,
    left: u64,
    /// Bytes of blob data that may still be read into memory while planning.
    inline: usize,
}

impl Plan {
    /// An empty plan that reads at most [`INLINE_BYTES`] of blob bytes while planning.
    pub fn new() -> Self {
        Self {
            inline: INLINE_BYTES,
            ..Self::default()
        }
    }

    /// Bytes still to send.
    pub fn len(&self) -> u64 {
        self.left
    }

    /// True when nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    fn push_ready(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.left = self.left.saturating_add(b.len() as u64);
            self.segments.push_back(Segment::Ready(b));
        }
    }

    fn push_stored(&mut self, cell: Cell, len: u64) {
        if len > 0 {
            self.left = self.left.saturating_add(len);
            self.segments.push_back(Segment::Stored {
                cell,
                offset: 0,
                len,
            });
        }
    }

    /// Adds version `version` (`size` bytes) of backup slot `backup_id`, read now if it fits
    /// the inline budget.
    pub fn push_backup(
        &mut self,
        tx: &mut dyn Tx,
        backup_id: &[u8; 16],
        version: u64,
        size: u64,
    ) -> Result<()> {
        let cell = Cell::Backup {
            backup_id: *backup_id,
            version: to_db("version", version)?,
        };
        self.push_cell(tx, cell, size)
    }

    /// Adds one stored cell of `size` bytes, read now if it fits the inline budget.
    fn push_cell(&mut self, tx: &mut dyn Tx, cell: Cell, size: u64) -> Result<()> {
        if size <= self.inline as u64 {
            let n = usize::try_from(size).unwrap_or(usize::MAX);
            let data = tx.read_slice(&cell, 0, n, true)?;
            self.inline = self.inline.saturating_sub(data.len());
            self.push_ready(Bytes::from(data));
        } else {
            self.push_stored(cell, size);
        }
        Ok(())
    }

    /// Adds the current manifest of `share_id` and returns its version. 404 if the share has
    /// none yet. A manifest swapped while it streams fails the next piece (its version no
    /// longer matches), so a reader never gets a mix of two manifests.
    pub fn push_manifest(&mut self, tx: &mut dyn Tx, share_id: &[u8; 16]) -> Result<u64> {
        let short = || RelayError::Storage("short row".into());
        // Version, size and (when it fits the inline budget) the bytes in one statement: a
        // swap committed between two statements would otherwise leave a version whose bytes
        // are gone (the stale-retry runs in a read-write transaction, without a snapshot).
        let row = tx
            .query_opt(
                "SELECT manifest_version, LENGTH(manifest), \
                 CASE WHEN LENGTH(manifest) <= CAST($2 AS BIGINT) THEN manifest END \
                 FROM shares WHERE share_id = $1",
                &[share_id.into(), to_db("inline", self.inline as u64)?.into()],
            )?
            .ok_or(RelayError::NotFound("no such share"))?;
        let mut it = row.into_iter();
        let version = it.next().ok_or_else(short)?;
        let size = it.next().ok_or_else(short)?;
        let data = it.next().ok_or_else(short)?;
        if size.is_null() {
            return Err(RelayError::NotFound("no manifest yet"));
        }
        let version = version.int()?;
        let size = from_db(size.int()?)?;
        match data {
            Value::Bytes(b) => {
                self.inline = self.inline.saturating_sub(b.len());
                self.push_ready(Bytes::from(b));
            }
            _ => self.push_stored(
                Cell::Manifest {
                    share_id: *share_id,
                    version,
                },
                size,
            ),
        }
        from_db(version)
    }

    /// Adds file `idx` (`size` bytes) of the SMART Health Link `link_hash`.
    pub fn push_shl_file(
        &mut self,
        tx: &mut dyn Tx,
        link_hash: &[u8; 32],
        idx: i64,
        size: u64,
    ) -> Result<()> {
        let cell = Cell::ShlFile {
            link_hash: *link_hash,
            idx,
        };
        self.push_cell(tx, cell, size)
    }

    /// Adds the blob `blob_id` of `share_id`, preceded by its `u32` big-endian length when
    /// `framed` (a batch answer, relay-formats.md "Batch fetch"), and returns its size. 404 if
    /// there is no such blob. Small blobs are read now while the inline budget lasts.
    pub fn push_blob(
        &mut self,
        tx: &mut dyn Tx,
        share_id: &[u8; 16],
        blob_id: &[u8; 16],
        framed: bool,
    ) -> Result<u64> {
        let short = || RelayError::Storage("short row".into());
        let row = tx
            .query_opt(
                "SELECT b.size, b.sha256, p.parts_id, \
                 CASE WHEN p.parts_id IS NULL AND b.size <= $3 THEN b.data END \
                 FROM blobs b LEFT JOIN blob_parts p \
                 ON p.share_id = b.share_id AND p.blob_id = b.blob_id \
                 WHERE b.share_id = $1 AND b.blob_id = $2",
                &[
                    share_id.into(),
                    blob_id.into(),
                    to_db("inline", self.inline as u64)?.into(),
                ],
            )?
            .ok_or(RelayError::NotFound("no such blob"))?;
        let mut it = row.into_iter();
        let size = from_db(it.next().ok_or_else(short)?.int()?)?;
        let sha256: [u8; 32] = it.next().ok_or_else(short)?.array()?;
        let parts = it.next().ok_or_else(short)?;
        let data = it.next().ok_or_else(short)?;
        // The frame length is that of the bytes served: the stored row's when it is read now.
        let served = match &data {
            Value::Bytes(b) => b.len() as u64,
            _ => size,
        };
        if framed {
            let len = u32::try_from(served)
                .map_err(|_| RelayError::Storage("blob longer than a frame".into()))?;
            self.push_ready(Bytes::copy_from_slice(&len.to_be_bytes()));
        }
        if !parts.is_null() {
            let upload_id: [u8; 16] = parts.array()?;
            let mut sum = 0u64;
            for r in tx.query(
                "SELECT n, LENGTH(data) FROM upload_chunks WHERE upload_id = $1 ORDER BY n",
                &[(&upload_id).into()],
            )? {
                let n = r.first().ok_or_else(short)?.int()?;
                let len = from_db(r.get(1).ok_or_else(short)?.int()?)?;
                sum = sum.saturating_add(len);
                self.push_stored(Cell::Chunk { upload_id, n }, len);
            }
            if sum != size {
                return Err(RelayError::Storage(
                    "blob parts do not add up to its size".into(),
                ));
            }
        } else if data.is_null() {
            let cell = Cell::Blob {
                share_id: *share_id,
                blob_id: *blob_id,
                sha256,
            };
            self.push_stored(cell, size);
        } else {
            // Served as stored, as before (the client checks bytes and length against the
            // signed manifest; a relay whose rows were altered is detected there).
            let data = data.into_bytes()?;
            self.inline = self.inline.saturating_sub(data.len());
            self.push_ready(Bytes::from(data));
        }
        Ok(served)
    }

    /// The front bytes already in memory, up to `max` (None when the front is stored). A lone
    /// in-memory segment that fits is handed over without a copy.
    fn take_ready(&mut self, max: usize) -> Option<Bytes> {
        let Some(Segment::Ready(first)) = self.segments.front() else {
            return None;
        };
        let lone = !matches!(self.segments.get(1), Some(Segment::Ready(_)));
        if lone && first.len() <= max {
            let Some(Segment::Ready(b)) = self.segments.pop_front() else {
                return None;
            };
            self.left = self.left.saturating_sub(b.len() as u64);
            return Some(b);
        }
        let mut out: Vec<u8> = Vec::new();
        while out.len() < max {
            let Some(Segment::Ready(b)) = self.segments.front_mut() else {
                break;
            };
            let n = (max - out.len()).min(b.len());
            out.extend_from_slice(&b.split_to(n));
            if b.is_empty() {
                self.segments.pop_front();
            }
        }
        self.left = self.left.saturating_sub(out.len() as u64);
        Some(Bytes::from(out))
    }

    /// Reads the next piece (at most [`PIECE_BYTES`]) in `tx`.
    fn next_piece(&mut self, tx: &mut dyn Tx) -> Result<Bytes> {
        let mut out: Vec<u8> = Vec::new();
        while out.len() < PIECE_BYTES {
            let room = PIECE_BYTES - out.len();
            match self.segments.front_mut() {
                None => break,
                Some(Segment::Ready(b)) => {
                    let n = room.min(b.len());
                    out.extend_from_slice(&b.split_to(n));
                    if b.is_empty() {
                        self.segments.pop_front();
                    }
                }
                Some(Segment::Stored { cell, offset, len }) => {
                    let n = usize::try_from(*len).unwrap_or(usize::MAX).min(room);
                    let whole = *offset == 0 && n as u64 == *len;
                    let bytes = tx.read_slice(cell, *offset, n, whole)?;
                    out.extend_from_slice(&bytes);
                    *offset = offset.saturating_add(n as u64);
                    *len = len.saturating_sub(n as u64);
                    if *len == 0 {
                        self.segments.pop_front();
                    }
                }
            }
        }
        self.left = self.left.saturating_sub(out.len() as u64);
        Ok(Bytes::from(out))
    }

    /// True when every byte left is in memory.
    fn all_ready(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Ready(_)))
    }

    /// The `application/octet-stream` answer sending this plan: one in-memory body when
    /// everything is already read (small blobs and batches, as before), else a [`Download`].
    pub fn respond(self, storage: Arc<dyn Storage>) -> Response {
        self.respond_as("application/octet-stream", storage)
    }

    /// The answer sending this plan as `content_type` (see [`Plan::respond`]).
    pub fn respond_as(mut self, content_type: &'static str, storage: Arc<dyn Storage>) -> Response {
        let octets = [(header::CONTENT_TYPE, content_type)];
        if self.all_ready() {
            let len = usize::try_from(self.left).unwrap_or(usize::MAX);
            let body = self.take_ready(len).unwrap_or_default();
            return (octets, body).into_response();
        }
        let len = self.left;
        let mut resp = (octets, Body::new(Download::new(self, storage))).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        resp
    }
}

/// A read of the next piece, under way on the runtime while hyper writes the previous one.
type PieceTask = tokio::task::JoinHandle<Result<(Plan, Bytes)>>;

/// A response body reading its plan's pieces from storage, one piece ahead of hyper.
///
/// Why one ahead: a piece read costs a blocking-pool hop and a read transaction; started only
/// when hyper asks for the next frame, that cost adds to every piece of a batch answer (a
/// check-up is mostly 2 MiB batches, 8 pieces each). Started as soon as the previous piece is
/// handed over, it overlaps the socket write. Memory stays bounded: the piece hyper writes plus
/// the one read ahead, whatever the blob size and however slowly the client reads.
pub struct Download {
    /// The plan, while no read of it is under way.
    plan: Option<Plan>,
    /// The piece read ahead, when one is under way.
    reading: Option<PieceTask>,
    /// Bytes not yet handed to hyper (the plan's count drops when a piece is read ahead).
    left: u64,
    storage: Arc<dyn Storage>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl Download {
    fn new(plan: Plan, storage: Arc<dyn Storage>) -> Self {
        Self {
            left: plan.len(),
            plan: Some(plan),
            reading: None,
            storage,
        }
    }

    /// Starts reading the next piece when the plan's front is in storage.
    fn read_ahead(&mut self) {
        let stored_next = self
            .plan
            .as_ref()
            .is_some_and(|p| matches!(p.segments.front(), Some(Segment::Stored { .. })));
        if !stored_next || self.reading.is_some() {
            return;
        }
        let Some(mut plan) = self.plan.take() else {
            return;
        };
        let storage = Arc::clone(&self.storage);
        self.reading = Some(tokio::spawn(async move {
            storage
                .read(move |tx| {
                    let piece = plan.next_piece(tx)?;
                    Ok((plan, piece))
                })
                .await
        }));
    }

    /// Hands `piece` to hyper and starts reading the one after it.
    fn hand_over(&mut self, piece: Bytes) -> Poll<Option<Result<hyper::body::Frame<Bytes>>>> {
        self.left = self.left.saturating_sub(piece.len() as u64);
        self.read_ahead();
        Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
    }

    fn cut(&mut self, e: RelayError) -> Poll<Option<Result<hyper::body::Frame<Bytes>>>> {
        self.reading = None;
        self.plan = None;
        self.left = 0;
        // No ids or bytes in the log: only that a download was cut.
        tracing::warn!(error = %e, "download cut: a piece could not be read");
        Poll::Ready(Some(Err(e)))
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        // A client that went away must not leave a read running for nobody.
        if let Some(task) = self.reading.take() {
            task.abort();
        }
    }
}

impl HttpBody for Download {
    type Data = Bytes;
    type Error = RelayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Bytes>, RelayError>>> {
        let this = self.get_mut();
        if this.reading.is_none() {
            let Some(plan) = this.plan.as_mut() else {
                return Poll::Ready(None);
            };
            if plan.is_empty() {
                return Poll::Ready(None);
            }
            if let Some(b) = plan.take_ready(PIECE_BYTES) {
                return this.hand_over(b);
            }
            this.read_ahead();
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(reading).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok((plan, piece)))) => {
                this.reading = None;
                this.plan = Some(plan);
                this.hand_over(piece)
            }
            Poll::Ready(Ok(Err(e))) => this.cut(e),
            Poll::Ready(Err(_)) => this.cut(RelayError::Storage("piece read task failed".into())),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.reading.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_segments_are_taken_in_pieces() {
        let mut p = Plan::new();
        p.push_ready(Bytes::from_static(b"abcd"));
        p.push_ready(Bytes::from_static(b"efgh"));
        assert_eq!(p.len(), 8);
        assert_eq!(p.take_ready(3).as_deref(), Some(&b"abc"[..]));
        assert_eq!(p.take_ready(100).as_deref(), Some(&b"defgh"[..]));
        assert!(p.is_empty());
        assert_eq!(p.take_ready(100), None);
        let mut one = Plan::new();
        one.push_ready(Bytes::from_static(b"xyz"));
        assert_eq!(one.take_ready(3).as_deref(), Some(&b"xyz"[..]));
        assert!(one.is_empty());
    }

    async fn store_blob(
        storage: &Arc<dyn Storage>,
        share_id: [u8; 16],
        blob_id: [u8; 16],
        sha256: [u8; 32],
        row: Vec<u8>,
    ) {
        storage
            .transact(move |tx| {
                tx.exec(
                    "INSERT INTO blobs (share_id, blob_id, epoch, size, sha256, data) \
                     VALUES ($1, $2, 1, $3, $4, $5)",
                    &[
                        (&share_id).into(),
                        (&blob_id).into(),
                        Value::Int(row.len() as i64),
                        (&sha256).into(),
                        Value::Bytes(row),
                    ],
                )
            })
            .await
            .expect("insert");
    }

    /// A batch of small blobs within two pieces is read whole while planning (one body, no
    /// second read transaction); the blob that goes past them is left in storage.
    #[tokio::test]
    async fn small_batches_up_to_two_pieces_are_read_while_planning() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage: Arc<dyn Storage> =
            Arc::new(crate::storage::sqlite::SqliteStorage::open(dir.path()).expect("open"));
        let share_id = [1u8; 16];
        let blob = 150 << 10;
        for i in 0..4u8 {
            store_blob(&storage, share_id, [i; 16], [i; 32], vec![i; blob]).await;
        }
        let plan = |n: u8| {
            let storage = Arc::clone(&storage);
            async move {
                storage
                    .read(move |tx| {
                        let mut plan = Plan::new();
                        for i in 0..n {
                            plan.push_blob(tx, &share_id, &[i; 16], true)?;
                        }
                        Ok(plan)
                    })
                    .await
                    .expect("plans")
            }
        };
        // 450 KiB: more than one piece, within two.
        let three = plan(3).await;
        assert!(three.all_ready());
        assert_eq!(three.len(), 3 * (4 + blob as u64));
        // 600 KiB: the fourth blob is streamed.
        let four = plan(4).await;
        assert!(!four.all_ready());
        assert_eq!(four.len(), 4 * (4 + blob as u64));
    }

    /// The next piece is read while hyper writes the previous one: right after a frame is
    /// handed over, the read of the next is already under way, without another poll.
    #[tokio::test]
    async fn the_next_piece_is_read_ahead() {
        use http_body_util::BodyExt;

        let dir = tempfile::tempdir().expect("temp dir");
        let storage: Arc<dyn Storage> =
            Arc::new(crate::storage::sqlite::SqliteStorage::open(dir.path()).expect("open"));
        let (share_id, blob_id) = ([1u8; 16], [2u8; 16]);
        let data: Vec<u8> = (0..3 * PIECE_BYTES + 5).map(|i| (i % 251) as u8).collect();
        let sha256 = [3u8; 32];
        store_blob(&storage, share_id, blob_id, sha256, data.clone()).await;
        let mut plan = Plan::new();
        let cell = Cell::Blob {
            share_id,
            blob_id,
            sha256,
        };
        plan.push_stored(cell, data.len() as u64);
        let mut body = Download::new(plan, Arc::clone(&storage));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let piece = frame.expect("piece").into_data().expect("data frame");
            assert!(piece.len() <= PIECE_BYTES);
            got.extend_from_slice(&piece);
            frames += 1;
            if got.len() < data.len() {
                assert!(
                    body.reading.is_some(),
                    "no read under way after piece {frames}"
                );
            }
        }
        assert_eq!(frames, 4);
        assert_eq!(got, data);
        assert!(body.is_end_stream());
    }
}
