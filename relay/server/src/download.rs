//! Downloads: blob, batch and backup bodies streamed from storage piece by piece, so a slow
//! reader holds one piece of memory, not the whole blob (docs/relay.md "Streaming").
//!
//! A handler checks and plans the download in its read transaction: the layout of the answer
//! as a list of segments, the bytes already in memory (length prefixes, small blobs, up to
//! [`PIECE_BYTES`] in all) and the cells still in storage. The audit entry is committed before
//! the answer starts, as before. The body ([`Download`]) then reads the next piece of at most
//! [`PIECE_BYTES`] in a read transaction of its own only when hyper asks for more, which it
//! does once the previous piece was written to the socket: the memory of one download is about
//! one piece plus hyper's write buffer, whatever the blob size and however slowly the client
//! reads. A client that stops reading is cut by the send timeout (`crate::server`).
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
    /// An empty plan that reads at most [`PIECE_BYTES`] of blob bytes while planning.
    pub fn new() -> Self {
        Self {
            inline: PIECE_BYTES,
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
    pub fn respond(mut self, storage: Arc<dyn Storage>) -> Response {
        let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
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

type PieceFuture = Pin<Box<dyn Future<Output = Result<(Plan, Bytes)>> + Send>>;

/// A response body reading its plan's pieces from storage as hyper asks for them.
pub struct Download {
    plan: Option<Plan>,
    left: u64,
    storage: Arc<dyn Storage>,
    reading: Option<PieceFuture>,
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
            storage,
            reading: None,
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
            let Some(mut plan) = this.plan.take() else {
                return Poll::Ready(None);
            };
            if plan.is_empty() {
                return Poll::Ready(None);
            }
            if let Some(b) = plan.take_ready(PIECE_BYTES) {
                this.left = plan.len();
                this.plan = Some(plan);
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(b))));
            }
            let storage = Arc::clone(&this.storage);
            this.reading = Some(Box::pin(async move {
                storage
                    .read(move |tx| {
                        let piece = plan.next_piece(tx)?;
                        Ok((plan, piece))
                    })
                    .await
            }));
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        match reading.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok((plan, piece))) => {
                this.reading = None;
                this.left = plan.len();
                this.plan = Some(plan);
                Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
            }
            Poll::Ready(Err(e)) => {
                this.reading = None;
                this.left = 0;
                // No ids or bytes in the log: only that a download was cut.
                tracing::warn!(error = %e, "download cut: a piece could not be read");
                Poll::Ready(Some(Err(e)))
            }
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
}
