//! Request bodies (docs/relay.md "Limits"): each route that takes a body has a limit of its
//! own ([`route_limit`]: a message or pairing reply 256 KiB, a batch receipt 16 KiB, a blob
//! `--max-blob-bytes` within `--max-body-bytes`, a backup `--max-backup-bytes`), and [`guard`]
//! enforces it while the bytes arrive:
//!
//! - a `Content-Length` over the limit is answered 413 before a byte of the body is read (and,
//!   with `Expect: 100-continue`, before the client sends it);
//! - the body is counted frame by frame as it arrives (axum's length limit, set per route) and
//!   the upload is cut with 413 the moment it passes the limit, so at most limit + one frame is
//!   ever buffered, whatever the generic `--max-body-bytes`;
//! - a body that stops arriving for `--body-idle-timeout-secs` (a slow or stalled writer) is
//!   cut with 408 `body_timeout` (the whole request is still bounded by
//!   `--request-timeout-secs`).
//!
//! The bytes are then handed to the handler whole: each blob, chunk or backup is stored as one
//! value in one transaction, and writing it piecewise from the network into the database would
//! hold the write transaction (SQLite: the only writer) for as long as the client takes to send.
//! Large blobs already arrive as chunked uploads of at most `--max-body-bytes` per request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::{Instant, Sleep};

use crate::config::Config;
use crate::error::{RelayError, error_response};
use crate::rejection::BodyKind;

/// Largest batch fetch receipt body: 1 + 16 + 2 + 6 + 256 × 32 + 32 + 8 + 16 + 64 = 8,337
/// bytes, rounded up.
pub const MAX_BATCH_RECEIPT_BYTES: usize = 16 << 10;

/// The body limit of `method path` taking `kind`.
pub fn route_limit(c: &Config, method: &Method, path: &str, kind: BodyKind) -> usize {
    let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    match (method.as_str(), path, kind) {
        (_, _, BodyKind::None) => 0,
        ("PUT", "/v1/backups/{backup_id}", _) => to_usize(c.max_backup_bytes),
        ("PUT", "/v1/shares/{share_id}/blobs/{blob_id}", _) => {
            c.max_body_bytes.min(to_usize(c.max_blob_bytes))
        }
        ("POST", "/v1/shares/{share_id}/fetch", _) => c.max_body_bytes.min(MAX_BATCH_RECEIPT_BYTES),
        ("POST", "/shl/{link_id}", _) => c
            .max_body_bytes
            .min(crate::health_link::MAX_MANIFEST_REQUEST_BYTES),
        ("PUT", "/v1/pairing/{mailbox_id}", _)
        | ("POST", "/v1/mailboxes/{mailbox_id}/messages", _) => {
            c.max_body_bytes.min(crate::mailbox::MAX_MESSAGE_BYTES)
        }
        _ => c.max_body_bytes,
    }
}

/// Per-route layer for a route of `method` taking `kind` bodies of at most `limit` bytes (see
/// the module documentation). Requests of other methods pass (they end in the route's 405).
pub async fn guard(
    method: Method,
    kind: BodyKind,
    limit: usize,
    idle: Duration,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != method {
        return next.run(req).await;
    }
    if !kind.accepts(
        req.headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
    ) {
        return RelayError::UnsupportedMediaType(match kind {
            BodyKind::Json => "this route takes a JSON body (Content-Type: application/json)",
            _ => "this route takes raw bytes (Content-Type: application/octet-stream, or none)",
        })
        .into_response();
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return RelayError::TooLarge("request body larger than this route's limit").into_response();
    }
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stalled);
    let req = req.map(move |b| Body::new(IdleBody::new(b, idle, flag)));
    let resp = next.run(req).await;
    if stalled.load(Ordering::Relaxed) {
        return error_response(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body stopped arriving (see --body-idle-timeout-secs)",
        );
    }
    resp
}

/// A request body that fails when no frame arrives for `idle`.
struct IdleBody {
    inner: Body,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    stalled: Arc<AtomicBool>,
}

impl IdleBody {
    fn new(inner: Body, idle: Duration, stalled: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            stalled,
        }
    }
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + this.idle;
                this.sleep.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.stalled.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(axum::Error::new("request body idle timeout"))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
