//! A hostile relay that answers with endless bodies (docs/threat-model.md "Hostile relay"):
//! the client reads every answer under its cap (`carekey_client::answer`) and fails with a
//! typed error having taken a bounded number of bytes: a blob or batch past the sizes the
//! signed manifest states is `Tampered(HashMismatch)` (it cannot be the signed blob), the
//! manifest, mailbox pages, audit and notice pages past their caps are `TooLarge`, and a
//! declared `Content-Length` past the cap is refused before reading. An endless error body is
//! not read either.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use carekey_client::relay::{OwnerCap, ReaderCap, Relay};
use carekey_client::{BlobId, ClientError, ShareId};
use carekey_core::keys::{ReadToken, SigningSecret};
use http_body_util::Full;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Frame};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand_core::OsRng;

/// What the hostile relay would send in total per answer: far more than any cap.
const ENDLESS: u64 = 1 << 30;
/// Bytes a stopped read may still have taken: the cap, socket buffers and one chunk.
const SLACK: u64 = 24 << 20;

/// A body of `ENDLESS` bytes in 64 KiB frames, counting what hyper took from it.
struct Endless {
    sent: Arc<AtomicU64>,
    left: u64,
}

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(64 << 10);
        self.left -= n;
        self.sent.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'A'; n as usize])))))
    }
}

struct Hostile {
    url: String,
    sent: Arc<AtomicU64>,
}

/// The hostile relay: opening a mailbox works (small JSON); a batch fetch declares a 1 GiB
/// `Content-Length` (and would send it); `POST .../messages` is a 409 with an endless body;
/// everything else is a 200 with an endless chunked body.
async fn hostile() -> Hostile {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let sent = Arc::clone(&counter);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let sent = Arc::clone(&sent);
                    async move {
                        let path = req.uri().path().to_owned();
                        let endless = || {
                            BoxBody::new(Endless {
                                sent: Arc::clone(&sent),
                                left: ENDLESS,
                            })
                        };
                        let resp = if path == "/v1/mailboxes" {
                            let m = serde_json::json!({
                                "mailbox_id": "00".repeat(16),
                                "write_token": "A".repeat(43),
                                "read_token": "A".repeat(43),
                                "expires_at": 4_000_000_000u64,
                            });
                            Response::new(BoxBody::new(Full::new(Bytes::from(m.to_string()))))
                        } else if path.ends_with("/fetch") {
                            let mut r = Response::new(endless());
                            r.headers_mut()
                                .insert("content-length", ENDLESS.to_string().parse().unwrap());
                            r
                        } else if path.ends_with("/messages") && req.method() == "POST" {
                            let mut r = Response::new(endless());
                            *r.status_mut() = hyper::StatusCode::CONFLICT;
                            r
                        } else {
                            let mut r = Response::new(endless());
                            r.headers_mut()
                                .insert("carekey-manifest-version", "1".parse().unwrap());
                            r
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Hostile { url, sent }
}

impl Hostile {
    /// Runs `f` and checks it failed fast, having taken at most `cap + SLACK` bytes.
    async fn refused<T: std::fmt::Debug>(
        &self,
        what: &str,
        cap: u64,
        f: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> ClientError {
        let before = self.sent.load(Ordering::Relaxed);
        let t = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer in 60 s"))
            .expect_err(what);
        // The server may still be filling the socket: let it settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let taken = self.sent.load(Ordering::Relaxed) - before;
        assert!(
            taken <= cap + SLACK,
            "{what}: the client let the relay send {taken} bytes (cap {cap})"
        );
        assert!(t.elapsed() < Duration::from_secs(30), "{what}: too slow");
        err
    }
}

fn too_large(e: &ClientError, what: &str) {
    assert!(
        matches!(e, ClientError::TooLarge { .. }),
        "{what}: expected TooLarge, got {e:?}"
    );
    assert_eq!(e.code(), "too_large");
    // The message names the answer, never its bytes.
    assert!(!e.to_string().contains("AAAA"), "{e}");
}

/// A blob longer than its signed size is not the signed blob.
fn signed_size(e: &ClientError, what: &str) {
    assert!(
        matches!(e, ClientError::Tampered(carekey_core::Error::HashMismatch)),
        "{what}: expected Tampered(HashMismatch), got {e:?}"
    );
    assert!(!e.to_string().contains("AAAA"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_answers_are_cut_at_their_caps() {
    let h = hostile().await;
    let relay = Relay::new(&h.url).unwrap();
    let token = ReadToken::random(&mut OsRng);
    let reader = SigningSecret::random(&mut OsRng);
    let cap = ReaderCap {
        token: &token,
        reader: &reader,
        share_id: ShareId([1; 16]),
    };
    let now = 1_900_000_000;
    // A blob whose manifest states 1,000 bytes.
    let e = h
        .refused(
            "blob",
            1000,
            relay.get_blob_sized(&cap, &BlobId([2; 16]), 1000, now),
        )
        .await;
    signed_size(&e, "blob");
    // Without a stated size: the default blob cap.
    let e = h
        .refused(
            "blob (default cap)",
            carekey_client::answer::BLOB_MAX,
            relay.get_blob(&cap, &BlobId([2; 16]), now),
        )
        .await;
    too_large(&e, "blob (default cap)");
    // The manifest.
    let e = h
        .refused(
            "manifest",
            carekey_client::answer::MANIFEST_MAX,
            relay.get_manifest(&cap, now),
        )
        .await;
    too_large(&e, "manifest");
    // A batch declaring 1 GiB: refused before a byte is read.
    let e = h
        .refused(
            "batch",
            0,
            relay.get_blobs_sized(&cap, &[BlobId([3; 16])], &[100], now),
        )
        .await;
    signed_size(&e, "batch");
    // Audit and notice pages (owner reads).
    let mut owner = OwnerCap::generate();
    let e = h
        .refused(
            "audit page",
            carekey_client::answer::AUDIT_PAGE_MAX,
            relay.audit_log(&mut owner, &ShareId([1; 16]), 0, &[7; 32]),
        )
        .await;
    too_large(&e, "audit page");
    let e = h
        .refused(
            "notice page",
            carekey_client::answer::NOTICE_PAGE_MAX,
            relay.notices(&mut owner, &ShareId([1; 16]), 0),
        )
        .await;
    too_large(&e, "notice page");
    // A mailbox page.
    let mb = relay.open_mailbox().await.unwrap();
    let e = h
        .refused(
            "mailbox page",
            carekey_client::answer::MAILBOX_PAGE_MAX,
            relay.fetch(&mb, 0),
        )
        .await;
    too_large(&e, "mailbox page");
    // An endless error body: the status is enough, the body is not read past its cap.
    let e = h
        .refused(
            "error body",
            carekey_client::answer::ERROR_BODY_MAX,
            relay.append(&mb.address, b"sealed".to_vec()),
        )
        .await;
    match e {
        ClientError::Conflict { code } => assert_eq!(code, "unknown"),
        e => panic!("error body: expected Conflict, got {e:?}"),
    }
}
