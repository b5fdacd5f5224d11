//! Upload bodies (issue 14 part 5): every route's own body limit is enforced as the bytes arrive
//! (a declared `Content-Length` over it: 413 before any byte is read; a streamed body: cut just
//! past the limit, never buffered up to `--max-body-bytes`), and a body that stops arriving is
//! cut with 408 `body_timeout` after `--body-idle-timeout-secs`, in-process and over a real
//! loopback socket. The guard runs before any storage access: SQLite only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, StatusCode};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A body of `frames` frames of `size` bytes, one every `every` (zero: at once), counting the
/// bytes the relay pulled; after the frames it stalls forever if `stall`.
struct Source {
    left: usize,
    size: usize,
    every: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    stall: bool,
    pulled: Arc<AtomicUsize>,
}

impl Source {
    fn body(frames: usize, size: usize, every: Duration, stall: bool) -> (Body, Arc<AtomicUsize>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let s = Self {
            left: frames,
            size,
            every,
            timer: None,
            stall,
            pulled: Arc::clone(&pulled),
        };
        (Body::new(s), pulled)
    }
}

impl HttpBody for Source {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            // A stalled client: never ready, never wakes anyone.
            return if this.stall {
                Poll::Pending
            } else {
                Poll::Ready(None)
            };
        }
        if !this.every.is_zero() {
            let t = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.every)));
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.timer = None;
        }
        this.left -= 1;
        this.pulled.fetch_add(this.size, Ordering::Relaxed);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
            7u8;
            this.size
        ])))))
    }
}

#[track_caller]
fn json_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"], code, "{}", r.text());
}

async fn mailbox(h: &Harness) -> serde_json::Value {
    h.send(
        Request::builder()
            .method("POST")
            .uri("/v1/mailboxes")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .json()
}

fn append(m: &serde_json::Value, body: Body, declared: Option<usize>) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri(format!(
            "/v1/mailboxes/{}/messages",
            m["mailbox_id"].as_str().unwrap()
        ))
        .header(
            "authorization",
            format!("Bearer {}", m["write_token"].as_str().unwrap()),
        );
    if let Some(n) = declared {
        b = b.header("content-length", n.to_string());
    }
    b.body(body).unwrap()
}

#[tokio::test]
async fn declared_length_over_the_route_limit_is_413_before_the_body() {
    let h = Backend::Sqlite.harness().await.unwrap();
    let m = mailbox(&h).await;
    // A message route (256 KiB) told 300 KiB are coming: refused before one byte is pulled.
    let (body, pulled) = Source::body(5, 60 << 10, Duration::ZERO, true);
    let r = h.send(append(&m, body, Some(300 << 10))).await;
    json_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert_eq!(pulled.load(Ordering::Relaxed), 0);
    // A blob of 100 MB declared against the 1 MiB body limit: the same.
    let o = h.create_share().await;
    let pq = format!(
        "/v1/shares/{}/blobs/{}?epoch=1",
        o.share_hex,
        hex(&rand::<16>())
    );
    let mut req = Harness::owner_request(&o.key, "PUT", &pq, vec![], 5);
    let (body, pulled) = Source::body(1, 1, Duration::ZERO, true);
    *req.body_mut() = body;
    req.headers_mut()
        .insert("content-length", "100000000".parse().unwrap());
    json_error(
        &h.send(req).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert_eq!(pulled.load(Ordering::Relaxed), 0);
    // Within the limit: accepted.
    let r = h
        .send(append(
            &m,
            Body::from(vec![1u8; 256 << 10]),
            Some(256 << 10),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

#[tokio::test]
async fn streamed_bodies_are_cut_just_past_the_route_limit() {
    let h = Backend::Sqlite.harness().await.unwrap();
    let m = mailbox(&h).await;
    // 16 × 64 KiB = 1 MiB offered (the generic body limit) to a 256 KiB route.
    let (body, pulled) = Source::body(16, 64 << 10, Duration::ZERO, false);
    let r = h.send(append(&m, body, None)).await;
    json_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let n = pulled.load(Ordering::Relaxed);
    assert!(n <= (256 << 10) + (64 << 10), "pulled {n} bytes");
    // A batch fetch receipt is at most ~8.4 KB: its route takes 16 KiB.
    let o = h.create_share().await;
    let (body, pulled) = Source::body(8, 4 << 10, Duration::ZERO, false);
    let req = Request::builder()
        .method("POST")
        .uri(format!("/v1/shares/{}/fetch", o.share_hex))
        .header("authorization", format!("Bearer {}", b64(&rand::<32>())))
        .body(body)
        .unwrap();
    json_error(
        &h.send(req).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert!(pulled.load(Ordering::Relaxed) <= 20 << 10);
}

#[tokio::test]
async fn stalled_bodies_are_cut_slow_steady_ones_are_not() {
    let mut c = test_config();
    c.body_idle_timeout = Duration::from_secs(1);
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let o = h.create_share().await;
    let pq = |b: &[u8; 16]| format!("/v1/shares/{}/blobs/{}?epoch=1", o.share_hex, hex(b));
    // One frame, then nothing: 408 body_timeout after about a second (bounded: 10 s).
    let mut req = Harness::owner_request(&o.key, "PUT", &pq(&rand::<16>()), vec![], 5);
    let (body, _) = Source::body(1, 1000, Duration::ZERO, true);
    *req.body_mut() = body;
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), h.send(req))
        .await
        .expect("a stalled body must not hold the request");
    json_error(&r, StatusCode::REQUEST_TIMEOUT, "body_timeout");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Slow but never idle for a second: stored. (The signature covers the exact bytes.)
    let data = vec![7u8; 5 * 1000];
    let id = rand::<16>();
    let mut req = Harness::owner_request(&o.key, "PUT", &pq(&id), data, 6);
    let (body, _) = Source::body(5, 1000, Duration::from_millis(300), false);
    *req.body_mut() = body;
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["size"], 5000);
}

/// The same over a real socket: a client that sends its headers and part of the body, then
/// nothing, gets a JSON 408 within a few seconds; one that declares too much gets its 413
/// without sending the body (also with `Expect: 100-continue`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_socket() {
    let mut c = test_config();
    c.body_idle_timeout = Duration::from_secs(1);
    let h = Backend::Sqlite.harness_with(c).await.unwrap();
    let m = mailbox(&h).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(carekey_relay::server::serve(
        listener,
        h.app.clone(),
        Duration::from_secs(10),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let head = |len: usize, expect: bool| {
        format!(
            "POST /v1/mailboxes/{}/messages HTTP/1.1\r\nHost: relay.test\r\n\
             Authorization: Bearer {}\r\nContent-Length: {len}\r\n{}Connection: close\r\n\r\n",
            m["mailbox_id"].as_str().unwrap(),
            m["write_token"].as_str().unwrap(),
            if expect {
                "Expect: 100-continue\r\n"
            } else {
                ""
            }
        )
    };
    let answer = |mut s: tokio::net::TcpStream| async move {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("answered within 5 s")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    // Stalled half-way.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head(1000, false).as_bytes()).await.unwrap();
    s.write_all(&[1u8; 100]).await.unwrap();
    let a = answer(s).await;
    assert!(a.starts_with("HTTP/1.1 408"), "{a}");
    assert!(a.contains(r#""error":"body_timeout""#), "{a}");
    // Too much declared, with and without Expect.
    for expect in [false, true] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head(10 << 20, expect).as_bytes())
            .await
            .unwrap();
        let a = answer(s).await;
        assert!(a.starts_with("HTTP/1.1 413"), "{a}");
        assert!(!a.contains("100 Continue"), "{a}");
        assert!(a.contains(r#""error":"too_large""#), "{a}");
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(40), srv)
        .await
        .unwrap()
        .unwrap();
}
